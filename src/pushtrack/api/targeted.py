"""createTargetedMessage: a notification to the devices a filter expression selects.

The request is a notification's fields (as createMessage's, see
``api/messages.py``) plus ``devices_filter``, text in Pushwoosh's filter
language, and no ``application``: the filter names its applications with
``A("CODE")`` and ``AT("CODE", ...)``.

Decisions of our own:

- One message per application the filter names (first mention first), each
  over that application's devices that the whole expression selects there
  (``A("X")`` holds only on X's devices, ``AT("X", ...)`` only on X's tags);
  ``Messages`` lists their codes in that order. A filter that names no
  application is a 210. All the messages are written in one transaction.
- Every application named must belong to the token's account (else 210, as
  an unknown application) and be allowed by its restrictions (else 403).
- ``T("tag", ...)`` must name a tag defined in at least one of those
  applications, with an operator that fits its type (else 210 naming it).
- The filter says who receives: createMessage's targeting fields
  (``devices``, ``platforms``, ``users``) are refused with 210. Audience
  messages get no TrackingCodes (as in createMessage); every delivery is
  tracked like any other.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from pushtrack.api import messages
from pushtrack.api.context import Call
from pushtrack.api.errors import ArgumentError
from pushtrack.domain import targeting as t
from pushtrack.store.base import App, MessagePlan, Targeting
from pushtrack.store.targeting import SelectionError

WHERE = "request"

#: createMessage fields that say who receives; a filter does that here.
_TARGETING = ("devices", "platforms", "users")


class CreateTargetedMessage(messages.NotificationIn, kw_only=True, forbid_unknown_fields=True):
    devices_filter: Annotated[str, msgspec.Meta(max_length=t.MAX_FILTER_LENGTH)]


async def create_targeted_message(call: Call, r: CreateTargetedMessage) -> dict[str, Any]:
    for name in _TARGETING:
        if getattr(r, name) is not None:
            raise ArgumentError(
                f'"{name}" is not supported by createTargetedMessage (devices_filter says who'
                " receives)"
            )
    try:
        node = t.parse_filter(r.devices_filter)
    except t.TargetingError as exc:
        raise ArgumentError(f"devices_filter: {exc.message}") from None
    codes = t.applications(node)
    if not codes:
        raise ArgumentError('devices_filter: names no application (use A("APPLICATION-CODE"))')
    apps: list[App] = []
    for code in codes:
        try:
            apps.append(await call.app_for(code))
        except ArgumentError:
            raise ArgumentError(f"devices_filter: application {code} not found") from None
    try:
        await call.ctx.store.targeting.check(apps, node, field="devices_filter", indexed=False)
    except SelectionError as exc:
        raise ArgumentError(exc.message) from None
    messages._check(r, WHERE)  # createMessage's checks of a notification
    notification = msgspec.structs.asdict(r)
    del notification["devices_filter"]
    for key in [k for k, v in notification.items() if v is None]:
        del notification[key]
    plan = MessagePlan(
        notification=notification,
        targeting=Targeting(selection=node),
        send_at=messages.send_at(r, call.ctx.store_clock(), WHERE),
        local_time=messages.local_time(r),
        campaign=r.campaign,
    )
    created = await call.ctx.store.create_messages_for([(app, plan) for app in apps])
    return {"Messages": [m.code for m in created]}
