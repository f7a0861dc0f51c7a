"""Message methods: createMessage, deleteMessage."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from pushtrack.api.context import Call
from pushtrack.api.errors import ArgumentError, ForbiddenError
from pushtrack.domain.platforms import ACCEPTED
from pushtrack.domain.timeutil import US
from pushtrack.store.base import AccessError, ConflictError, MessagePlan, Targeting

MAX_DEVICES = 1000
MAX_NOTIFICATIONS = 100

Entry = Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]
Localized = Annotated[str, msgspec.Meta(max_length=4096)] | dict[str, str]


class NotificationIn(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=True):
    send_date: str = "now"
    timezone: str | None = None
    ignore_user_timezone: bool | None = None
    content: Localized | None = None
    title: Localized | None = None
    subtitle: Localized | None = None
    data: dict[str, Any] | None = None
    campaign: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    devices: Annotated[list[Entry], msgspec.Meta(max_length=MAX_DEVICES)] | None = None
    platforms: list[int] | None = None
    users: Annotated[list[Entry], msgspec.Meta(max_length=MAX_DEVICES)] | None = None
    # iOS
    ios_badges: int | str | None = None
    ios_sound: str | None = None
    ios_ttl: Annotated[int, msgspec.Meta(ge=0)] | None = None
    ios_category_id: int | str | None = None
    ios_root_params: dict[str, Any] | None = None
    ios_title: str | None = None
    ios_subtitle: str | None = None
    # Android and its kin
    android_header: str | None = None
    android_sound: str | None = None
    android_icon: str | None = None
    android_gcm_ttl: Annotated[int, msgspec.Meta(ge=0)] | None = None
    android_root_params: dict[str, Any] | None = None
    # Web
    chrome_title: str | None = None
    chrome_icon: str | None = None
    chrome_gcm_ttl: Annotated[int, msgspec.Meta(ge=0)] | None = None
    firefox_title: str | None = None
    firefox_icon: str | None = None
    firefox_ttl: Annotated[int, msgspec.Meta(ge=0)] | None = None
    safari_title: str | None = None
    safari_ttl: Annotated[int, msgspec.Meta(ge=0)] | None = None
    safari_url_args: list[str] | None = None


class CreateMessage(msgspec.Struct, forbid_unknown_fields=True):
    application: str
    notifications: Annotated[
        list[NotificationIn], msgspec.Meta(min_length=1, max_length=MAX_NOTIFICATIONS)
    ]


class DeleteMessage(msgspec.Struct, forbid_unknown_fields=True):
    message: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


def local_time(n: NotificationIn) -> bool:
    """Is a dated send meant for each device's own clock?

    Pushwoosh sends at each user's local time unless told to ignore it; here a
    date without ``timezone`` is UTC unless ``ignore_user_timezone`` is given as
    false: then each device gets it at that wall-clock time in its registered
    time zone.
    """
    return (
        n.send_date not in ("", "now") and n.timezone is None and (n.ignore_user_timezone is False)
    )


def send_at(n: NotificationIn, now_us: int, where: str) -> int:
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


def _check(n: NotificationIn, where: str) -> None:
    if n.content in (None, "", {}) and not n.data:
        raise ArgumentError(f"{where}.content: required (or data for a silent push)")
    for bad in n.platforms or ():
        if bad not in ACCEPTED:
            raise ArgumentError(f"{where}.platforms: {bad} is not a known device type")
    if n.devices is not None and not n.devices:
        raise ArgumentError(f"{where}.devices: must name at least one device")


async def create_message(call: Call, r: CreateMessage) -> dict[str, Any]:
    app = await call.app_for(r.application)
    now = call.ctx.store_clock()
    plans = []
    for i, n in enumerate(r.notifications):
        where = f"notifications[{i}]"
        _check(n, where)
        plans.append(
            MessagePlan(
                notification=msgspec.structs.asdict(n),
                targeting=Targeting(
                    devices=tuple(n.devices) if n.devices is not None else None,
                    # distinct values: a long list of repeats must not become as many SQL params
                    platforms=tuple(dict.fromkeys(n.platforms)) if n.platforms else None,
                    users=tuple(dict.fromkeys(n.users)) if n.users else None,
                ),
                send_at=send_at(n, now, where),
                local_time=local_time(n),
                campaign=n.campaign,
            )
        )
    for plan in plans:
        _strip_none(plan.notification)
    created = await call.ctx.store.create_messages(app, plans)
    response: dict[str, Any] = {"Messages": [m.code for m in created]}
    codes = [c for m in created if m.tracking_codes is not None for c in m.tracking_codes]
    if app.tracking and any(m.tracking_codes is not None for m in created):
        response["TrackingCodes"] = codes
    return response


def _strip_none(d: dict[str, Any]) -> None:
    for key in [k for k, v in d.items() if v is None]:
        del d[key]


async def delete_message(call: Call, r: DeleteMessage) -> None:
    assert call.token is not None
    try:
        await call.ctx.store.delete_message(call.token.account, call.token.apps, r.message)
    except AccessError:
        raise ForbiddenError from None
    except ConflictError as exc:
        raise ArgumentError(f"message: {exc}") from None
