"""Message methods: createMessage, deleteMessage."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from pushtrack.api import filters
from pushtrack.api.context import Call
from pushtrack.api.errors import ArgumentError
from pushtrack.domain import payload
from pushtrack.domain import platforms as platform_names
from pushtrack.domain import targeting as t
from pushtrack.domain.notification import (
    Content,
    ContentError,
    check_for_app,
    fields,
    refuse_unsupported,
)
from pushtrack.domain.platforms import ACCEPTED
from pushtrack.domain.timeutil import US
from pushtrack.store.base import AccessError, App, ConflictError, MessagePlan, Targeting

MAX_DEVICES = 1000
MAX_NOTIFICATIONS = 100
MAX_CONDITIONS = 100

Entry = Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]

#: Targeting Pushwoosh documents that pushtrack does not do: refused by name, never
#: ignored (ignoring one would send to more devices than meant). null counts as absent.
UNSUPPORTED_TARGETING: dict[str, str] = {
    "segment": "segments are not kept here; use conditions or a saved filter",
    "preset": "presets are not kept here; send the notification's own fields",
    "geozone": "pushtrack does no geolocation targeting",
    "devices_filter": "createMessage takes conditions or a saved filter by name;"
    " a filter expression goes to createTargetedMessage",
}


class NotificationIn(Content, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    """One notification of createMessage: its content (``Content``), when and to whom."""

    # -- when
    send_date: str = "now"
    timezone: str | None = None
    ignore_user_timezone: bool | None = None
    campaign: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    # -- to whom (all given targeting narrows)
    devices: Annotated[list[Entry], msgspec.Meta(max_length=MAX_DEVICES)] | None = None
    platforms: list[int] | None = None
    users: Annotated[list[Entry], msgspec.Meta(max_length=MAX_DEVICES)] | None = None
    #: tag conditions, ``[["tag", "OP", operand], ...]`` (docs/api.md §4.2)
    conditions: Annotated[list[Any], msgspec.Meta(max_length=MAX_CONDITIONS)] | None = None
    conditions_operator: Literal["AND", "OR", "and", "or"] | None = None
    #: the name of a saved filter
    filter: Annotated[str, msgspec.Meta(min_length=1, max_length=128)] | None = None
    # -- refused (see UNSUPPORTED_TARGETING)
    segment: Any = None
    preset: Any = None
    geozone: Any = None
    devices_filter: Any = None

    def __post_init__(self) -> None:
        refuse_unsupported(self, UNSUPPORTED_TARGETING)
        for bad in self.platforms or ():
            if bad not in ACCEPTED:
                raise ValueError(platform_names.unknown_type("platforms", bad))
        if self.devices is not None and not self.devices:
            raise ValueError("devices: must name at least one device")
        if self.conditions is not None and not self.conditions:
            raise ValueError("conditions: must hold at least one condition")
        if self.conditions_operator is not None and self.conditions is None:
            raise ValueError("conditions_operator: goes with conditions")
        super().__post_init__()


class CreateMessage(msgspec.Struct, forbid_unknown_fields=True):
    application: str | None = None
    notifications: Annotated[
        list[NotificationIn], msgspec.Meta(min_length=1, max_length=MAX_NOTIFICATIONS)
    ] = msgspec.field(default_factory=list)
    #: refused: application groups are not kept here
    applications_group: Any = None

    def __post_init__(self) -> None:
        refuse_unsupported(
            self,
            {"applications_group": "application groups are not kept here; name the application"},
        )
        if not self.application:
            raise ValueError("application: required")
        if not self.notifications:
            raise ValueError("notifications: expected array of length >= 1")


class DeleteMessage(msgspec.Struct, forbid_unknown_fields=True):
    message: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class When(Protocol):
    """The fields that say when a notification is sent (createMessage's and
    createTargetedMessage's alike)."""

    send_date: str
    timezone: str | None
    ignore_user_timezone: bool | None


def local_time(n: When) -> bool:
    """Is a dated send meant for each device's own clock?

    Pushwoosh sends at each user's local time unless told to ignore it; here a
    date without ``timezone`` is UTC unless ``ignore_user_timezone`` is given as
    false: then each device gets it at that wall-clock time in its registered
    time zone.
    """
    return (
        n.send_date not in ("", "now") and n.timezone is None and (n.ignore_user_timezone is False)
    )


def send_at(n: When, now_us: int, where: str) -> int:
    """When a notification is due, in microseconds UTC (a past date means now).

    For local-time sends, the wall-clock time read as UTC: each device's due
    time is that, less its offset.
    """
    if n.send_date in ("", "now"):
        if n.timezone is not None:
            _zone(n.timezone, where)
        return now_us
    try:
        local = datetime.strptime(n.send_date, "%Y-%m-%d %H:%M")
    except ValueError:
        try:
            local = datetime.strptime(n.send_date, "%Y-%m-%d %H:%M:%S")
        except ValueError:
            raise ArgumentError(
                f'{where}.send_date: expected "now" or "YYYY-MM-DD HH:mm", got {n.send_date!r}'
            ) from None
    zone = _zone(n.timezone, where) if n.timezone else UTC
    due = int(local.replace(tzinfo=zone).timestamp()) * US
    return due if local_time(n) else max(due, now_us)


def _zone(name: str, where: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ArgumentError(f"{where}.timezone: unknown time zone {name!r}") from None


async def apns_push_types(call: Call, app: App) -> dict[int, str]:
    """Platform -> the push type the application's APNs gateway there sends every push as."""
    found: dict[int, str] = {}
    for platform, (kind, settings, _version) in (
        await call.ctx.store.dispatch.gateways(app.id)
    ).items():
        push_type = settings.get("push_type") if kind == "apns" else None
        if isinstance(push_type, str) and push_type.strip() in payload.APNS_PUSH_TYPES:
            found[platform] = push_type.strip()
    return found


def check_content_for_app(
    n: Content, push_types: dict[int, str], where: str, app: App | None = None
) -> None:
    """``check_for_app`` in the API's words: 210 naming the field (and the application,
    when a request goes to several)."""
    try:
        check_for_app(n, push_types)
    except ContentError as exc:
        field = f"{where}.{exc.field}" if where else exc.field
        whose = f" (application {app.code})" if app is not None else ""
        raise ArgumentError(f"{field}: {exc.reason}{whose}") from None


async def create_message(call: Call, r: CreateMessage) -> dict[str, Any]:
    app = await call.app_for(r.application)
    call.ctx.message_limiter.check(f"a{app.id}")
    now = call.ctx.store_clock()
    push_types = await apns_push_types(call, app)
    plans = []
    for i, n in enumerate(r.notifications):
        where = f"notifications[{i}]"
        check_content_for_app(n, push_types, where)
        plans.append(
            MessagePlan(
                notification=fields(n),
                targeting=Targeting(
                    devices=tuple(n.devices) if n.devices is not None else None,
                    # distinct values: a long list of repeats must not become as many SQL params
                    platforms=tuple(dict.fromkeys(n.platforms)) if n.platforms else None,
                    users=tuple(dict.fromkeys(n.users)) if n.users else None,
                    selection=await _selection(call, app, n, where),
                ),
                send_at=send_at(n, now, where),
                local_time=local_time(n),
                campaign=n.campaign,
            )
        )
    created = await call.ctx.store.create_messages(app, plans)
    response: dict[str, Any] = {"Messages": [m.code for m in created]}
    codes = [c for m in created if m.tracking_codes is not None for c in m.tracking_codes]
    if app.tracking and any(m.tracking_codes is not None for m in created):
        response["TrackingCodes"] = codes
    return response


async def _selection(call: Call, app: App, n: NotificationIn, where: str) -> t.Node | None:
    """The notification's tag conditions and saved filter as one checked selection."""
    parts: list[t.Node] = []
    if n.conditions is not None:
        parts.append(
            await filters.conditions_selection(
                call,
                app,
                n.conditions,
                n.conditions_operator.upper() if n.conditions_operator else None,
                field=f"{where}.conditions",
                operator_field=f"{where}.conditions_operator",
            )
        )
    if n.filter is not None:
        parts.append(await filters.saved_selection(call, app, n.filter, field=f"{where}.filter"))
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else t.Intersection(tuple(parts))


async def delete_message(call: Call, r: DeleteMessage) -> None:
    assert call.token is not None
    try:
        await call.ctx.store.delete_message(call.token.account, call.token.apps, r.message)
    except AccessError:
        # the same answer as for a code that names nothing: a token restricted to
        # some applications cannot tell whether another's message exists
        raise ArgumentError("message: message not found") from None
    except ConflictError as exc:
        raise ArgumentError(f"message: {exc}") from None
