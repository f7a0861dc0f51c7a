"""Tag methods: setTags and getTags (device), addTag, listTags and deleteTag (server).

Tags are per device and application. A tag's type is declared with addTag or
taken from the first value a device sets (integer, boolean, list, string;
decimal for a fractional number); date and version tags must be declared.
**(ours)** addTag, listTags and deleteTag name an ``application``: tag
definitions belong to one application here, not to the account.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from pushtrack.api.context import Call
from pushtrack.api.errors import ArgumentError
from pushtrack.domain.tags import TagType
from pushtrack.store.targeting import MAX_TAG_NAME, MAX_TAGS_PER_CALL, TagError

Text = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
TagName = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TAG_NAME)]


class SetTags(msgspec.Struct, forbid_unknown_fields=True):
    application: Text
    hwid: Text
    tags: Annotated[dict[str, Any], msgspec.Meta(max_length=MAX_TAGS_PER_CALL)]


class GetTags(msgspec.Struct, forbid_unknown_fields=True):
    application: Text
    hwid: Text


class TagSpec(msgspec.Struct, forbid_unknown_fields=True):
    name: TagName
    #: 1 integer, 2 string, 3 list, 4 date, 5 boolean, 6 decimal, 7 version (or the name).
    type: int | str
    #: Tags are always per application here: ``false`` is refused.
    application_specific: bool | None = None
    #: Tags belong to devices here: ``true`` is refused.
    user_specific: bool | None = None


class AddTag(msgspec.Struct, forbid_unknown_fields=True):
    application: Text
    tag: TagSpec


class ListTags(msgspec.Struct, forbid_unknown_fields=True):
    application: Text


class TagRef(msgspec.Struct, forbid_unknown_fields=True):
    name: TagName


class DeleteTag(msgspec.Struct, forbid_unknown_fields=True):
    application: Text
    tag: TagRef


async def set_tags(call: Call, r: SetTags) -> dict[str, Any]:
    """Set tags of a registered device; ``null`` removes one. A bad value is a 210
    naming the tag, and nothing of the call is written."""
    app = await call.device_app_for(r.application)
    try:
        known = await call.ctx.store.targeting.set_tags(app, r.hwid, r.tags)
    except TagError as exc:
        raise ArgumentError(f"tags: {exc.message}") from None
    if not known:
        raise ArgumentError(f"hwid: device {r.hwid} is not registered")
    return {"skipped": []}


async def get_tags(call: Call, r: GetTags) -> dict[str, Any]:
    """A device's tags in their wire form: ``{"result": {name: value}}``."""
    app = await call.device_app_for(r.application)
    tags = await call.ctx.store.targeting.get_tags(app, r.hwid)
    if tags is None:
        raise ArgumentError(f"hwid: device {r.hwid} is not registered")
    return {"result": tags}


async def add_tag(call: Call, r: AddTag) -> dict[str, Any]:
    app = await call.app_for(r.application)
    tag_type = TagType.parse(r.tag.type)
    if tag_type is None:
        raise ArgumentError(
            "tag.type: must be 1 (integer), 2 (string), 3 (list), 4 (date), 5 (boolean),"
            " 6 (decimal) or 7 (version)"
        )
    if r.tag.application_specific is False:
        raise ArgumentError(
            '"application_specific" is not supported (false): tags belong to one application'
        )
    if r.tag.user_specific:
        raise ArgumentError('"user_specific" is not supported (true): tags belong to devices')
    try:
        await call.ctx.store.targeting.add_tag(app, r.tag.name, tag_type)
    except TagError as exc:
        raise ArgumentError(f"tag: {exc.message}") from None
    return {"result": True}


async def list_tags(call: Call, r: ListTags) -> dict[str, Any]:
    app = await call.app_for(r.application)
    found = await call.ctx.store.targeting.list_tags(app)
    return {
        "tags": [
            {
                "name": d.name,
                "type": int(d.type),
                "isApplicationSpecific": True,
                # (ours) the type's name, and whether addTag declared it
                "type_name": d.type.label,
                "declared": d.declared,
            }
            for d in found
        ]
    }


async def delete_tag(call: Call, r: DeleteTag) -> dict[str, Any]:
    """Remove a tag's definition and every device's value of it."""
    app = await call.app_for(r.application)
    if not await call.ctx.store.targeting.delete_tag(app, r.tag.name):
        raise ArgumentError(f'tag: no tag "{r.tag.name}" in application {app.code}')
    return {"result": True}
