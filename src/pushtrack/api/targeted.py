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
- The notification is checked against each application's gateways (sizes, APNs
  push types) as createMessage checks it; a refusal names the application when
  the filter names several.
- The filter says who receives: createMessage's targeting fields
  (``devices``, ``platforms``, ``users``, ``conditions``, ``filter``) are
  refused with 210 ``"<field>" is not supported``. Audience
  messages get no TrackingCodes (as in createMessage); every delivery is
  tracked like any other.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from pushtrack.api import filters, messages
from pushtrack.api.context import Call
from pushtrack.domain import targeting as t
from pushtrack.domain.notification import Content, fields, refuse_unsupported
from pushtrack.store.base import MessagePlan, Targeting

WHERE = "request"

#: createMessage's targeting: the filter says who receives here (ours).
REFUSED_TARGETING: dict[str, str] = dict.fromkeys(
    ("devices", "platforms", "users", "conditions", "conditions_operator", "filter"),
    "devices_filter says who receives a createTargetedMessage",
)


class CreateTargetedMessage(Content, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    """A notification's content (``Content``), when, and ``devices_filter``."""

    devices_filter: Annotated[str, msgspec.Meta(max_length=t.MAX_FILTER_LENGTH)]
    # -- when (as createMessage's notification)
    send_date: str = "now"
    timezone: str | None = None
    ignore_user_timezone: bool | None = None
    campaign: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    # -- refused (see REFUSED_TARGETING)
    devices: Any = None
    platforms: Any = None
    users: Any = None
    conditions: Any = None
    conditions_operator: Any = None
    filter: Any = None

    def __post_init__(self) -> None:
        refuse_unsupported(self, REFUSED_TARGETING)
        super().__post_init__()


async def create_targeted_message(call: Call, r: CreateTargetedMessage) -> dict[str, Any]:
    node, apps = await filters.devices_filter_selection(call, r.devices_filter)
    for app in apps:
        call.ctx.message_limiter.check(f"a{app.id}")
    for app in apps:
        push_types = await messages.apns_push_types(call, app)
        messages.check_content_for_app(r, push_types, "", app if len(apps) > 1 else None)
    notification = fields(r)  # as createMessage keeps a notification's given fields
    del notification["devices_filter"]  # kept, as a tree, in the message's targeting
    plan = MessagePlan(
        notification=notification,
        targeting=Targeting(selection=node),
        send_at=messages.send_at(r, call.ctx.store_clock(), WHERE),
        local_time=messages.local_time(r),
        campaign=r.campaign,
    )
    created = await call.ctx.store.create_messages_for([(app, plan) for app in apps])
    return {"Messages": [m.code for m in created]}
