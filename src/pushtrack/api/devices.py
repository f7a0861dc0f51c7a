"""Device methods: what Pushwoosh's SDKs call.

registerDevice, unregisterDevice, applicationOpen, registerUser, setBadge,
checkDevice, postEvent, pushStat and messageDeliveryEvent. They take a device
API token in the ``Authorization`` header (or none, where the application
allows it); ``auth`` in the body is refused by the boundary.

Pushwoosh's SDKs send the same context with every call (``SdkContext``: the
SDK version, the device type, its language and time zone, ...). Every device
method accepts it. Methods that report the device's state (registerDevice,
applicationOpen, registerUser) record what it carries; the others leave the
device as it is, since the SDKs send the same values with applicationOpen at
every start. Fields no method acts on are listed in ``IGNORED`` with the
reason ignoring them changes neither who receives a push nor what they see.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import msgspec

from pushtrack.api.context import Call
from pushtrack.api.errors import ArgumentError
from pushtrack.delivery.webpush import Subscription
from pushtrack.domain import platforms
from pushtrack.domain.notification import refuse_unsupported
from pushtrack.domain.platforms import ACCEPTED, Platform
from pushtrack.domain.status import Status
from pushtrack.domain.timeutil import DAY_US, US, zone_offset
from pushtrack.store.base import DeviceIn, DeviceSeen, EventIn
from pushtrack.store.targeting import TagError

Text = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
LongText = Annotated[str, msgspec.Meta(max_length=4096)]
Short = Annotated[str, msgspec.Meta(max_length=128)]
Version = Annotated[str, msgspec.Meta(max_length=64)]
MAX_TZ = 18 * 3600
#: A Unix time in seconds (up to the year 5138; any larger fits no database column).
Seconds = Annotated[int, msgspec.Meta(ge=0, le=10**11)]
#: A language code (ISO 639-1 or 639-2), optionally with BCP 47 subtags (``en-US``,
#: ``zh-Hant-TW``): the Web SDK sends ``navigator.language``, the Android SDK
#: ``Locale.toLanguageTag()`` for Chinese.
_LANGUAGE = re.compile(r"^(?P<code>[A-Za-z]{2,3})(?:-[A-Za-z0-9]{1,8})*$")
#: An offset in seconds as text, as the iOS SDK sends it ("3600", "-18000"); "+0100"
#: (hours and minutes?) is not one.
_OFFSET = re.compile(r"^-?(?:0|[1-9][0-9]{0,5})$")
#: Device types whose notifications carry an application badge (``aps.badge``).
BADGED = frozenset({Platform.IOS.value, Platform.MACOS.value})
#: How far ahead of the server's clock a device's timestamp may be (clock skew).
CLOCK_SKEW_US = 5 * 60 * US

#: Fields Pushwoosh's SDKs or reference send that no method here acts on, and why
#: ignoring them changes neither who receives a push nor what they see.
IGNORED: dict[str, str] = {
    "v": "the SDK's version; nothing here depends on it",
    "package": "the app's bundle id; the application code already names the application",
    "android_package": "the app's package name; the application code already names it",
    "device_name": "Phone or Tablet, for display; not used for sending",
    "notificationTypes": (
        "the alert/badge/sound permissions the user granted; the platform enforces them"
    ),
    "time_sensitive_notifications": "an iOS permission the platform enforces",
    "scheduled_summary": "an iOS setting the platform enforces",
    "jailbroken": "informational; not used for sending",
    "sounds": "the sound files the app ships, for composing; a message names its sound",
    "gateway": (
        "the APNs environment the app was built for; the application's APNs gateway"
        " setting chooses sandbox or production here"
    ),
    "voip_push_token": "no VoIP pushes here; the regular push_token is used",
    "idfa": "the advertising identifier; not used",
    "fcm_token": (
        "a key for FCM's legacy XMPP channel to Chrome, which Google retired; browsers"
        " are sent to by Web Push with push_token, public_key and auth_token"
    ),
    "fcm_push_set": "goes with fcm_token (see there)",
    "timestampCurrent": (
        "the device's wall clock at the time of the call; its time zone comes from"
        " timezone (postEvent keeps it with the event)"
    ),
}


class SdkContext(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """What Pushwoosh's SDKs send with every device call (Android, iOS, Web)."""

    application: Text
    hwid: Text
    userId: Text | None = None
    device_type: int | None = None
    language: Annotated[str, msgspec.Meta(max_length=35)] | None = None
    #: Offset in seconds (an integer, or its text as the iOS SDK sends it) or an IANA name.
    timezone: int | Annotated[str, msgspec.Meta(max_length=64)] | None = None
    device_model: Short | None = None
    app_version: Version | None = None
    os_version: Version | None = None
    # accepted and ignored: see IGNORED
    v: Any = None
    package: Any = None
    android_package: Any = None
    device_name: Any = None
    notificationTypes: Any = None
    time_sensitive_notifications: Any = None
    scheduled_summary: Any = None
    jailbroken: Any = None


_NO_EMAIL = {"email": "no email channel here; devices register with hwid and push_token"}


class RegisterDevice(SdkContext, kw_only=True):
    device_type: int
    push_token: LongText | None = None
    tags: dict[str, Any] | None = None
    #: A browser subscription's keys when push_token is its endpoint (Web SDK).
    public_key: Annotated[str, msgspec.Meta(max_length=256)] | None = None
    auth_token: Annotated[str, msgspec.Meta(max_length=128)] | None = None
    # accepted and ignored: see IGNORED
    sounds: Any = None
    gateway: Any = None
    voip_push_token: Any = None
    idfa: Any = None
    fcm_token: Any = None
    fcm_push_set: Any = None
    #: refused: pushtrack has no email channel (null counts as absent)
    email: Any = None

    def __post_init__(self) -> None:
        refuse_unsupported(self, _NO_EMAIL)


class UnregisterDevice(SdkContext, kw_only=True):
    pass


class DeviceReport(SdkContext, kw_only=True):
    hash: Text
    #: The payload's ``md`` as the SDK read it: an object, or the JSON text FCM carried
    #: it as (every FCM data value is a string). Accepted, not used: ``hash`` names the
    #: delivery.
    metaData: dict[str, Any] | Annotated[str, msgspec.Meta(max_length=4096)] | None = None


class ApplicationOpen(SdkContext, kw_only=True):
    #: When the application was opened (seconds, UTC); default: when the call arrives.
    timestampUTC: Seconds | None = None
    timestampCurrent: Any = None


class RegisterUser(SdkContext, kw_only=True):
    #: The user; empty (or left out): the hwid, as Pushwoosh does.
    userId: Annotated[str, msgspec.Meta(max_length=255)] | None = None
    #: Time zone offset in seconds: ``tz_offset`` in Pushwoosh's reference, ``ts_offset``
    #: as the Web SDK sends it.
    tz_offset: int | None = None
    ts_offset: int | None = None


class SetBadge(SdkContext, kw_only=True):
    #: The badge the application shows now: ``badge`` in Pushwoosh's reference and
    #: iOS SDK, ``badges`` as Pushwoosh's Python library (pypushwoosh) sends it.
    badge: Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)] | None = None
    badges: Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)] | None = None


class CheckDevice(SdkContext, kw_only=True):
    pass


class PostEvent(SdkContext, kw_only=True):
    event: Text
    attributes: dict[str, Any]
    #: When it happened (seconds, UTC); default: when the call arrives.
    timestampUTC: Seconds | None = None
    #: The device's wall clock then (seconds), kept with the event.
    timestampCurrent: Seconds | None = None


# -- checking what SDKs send ----------------------------------------------------------------


def device_type(value: int) -> int:
    if value not in ACCEPTED:
        raise ArgumentError(platforms.unknown_type("device_type", value))
    return value


def language(value: str | None) -> str | None:
    """The language code of a language tag (``en-US`` -> ``en``), lower-case.

    (ours) Region and script subtags are dropped: a message's content is chosen,
    and devices are targeted, by language code.
    """
    if value is None:
        return None
    found = _LANGUAGE.match(value)
    if found is None:
        raise ArgumentError(
            "language: must be an ISO 639-1 or 639-2 language code (like en, de, haw),"
            " optionally with a region (en-US)"
        )
    return found["code"].lower()


def timezone(value: int | str | None, now: int) -> tuple[int | None, str | None]:
    """(offset in seconds, IANA zone name) of a ``timezone`` field.

    An IANA name is kept with the offset it has now; local-time sends use the
    zone's offset at the send time (summer time included).
    """
    if value is None:
        return None, None
    name: str | None = None
    if isinstance(value, int):
        offset = value
    elif _OFFSET.match(value):
        offset = int(value)
    else:
        found = zone_offset(value, now)
        if found is None:
            raise ArgumentError(
                f"timezone: {value!r} is neither an offset in seconds nor an IANA time zone"
            )
        offset, name = found, value
    if abs(offset) > MAX_TZ:
        raise ArgumentError("timezone: offset in seconds must be within ±18 hours")
    return offset, name


def occurred(timestamp: int | None, now: int) -> int:
    """When something a device reports happened: its ``timestampUTC`` (seconds), unless
    that is missing, ahead of the server's clock, or more than a year old: then now (ours)."""
    if timestamp is None:
        return now
    at = timestamp * US
    if at > now + CLOCK_SKEW_US or at < now - 366 * DAY_US:
        return now
    return min(at, now)


def _seen(call: Call, r: SdkContext, *, user_id: str | None, opened_at: int | None) -> DeviceSeen:
    offset, zone = timezone(r.timezone, call.ctx.store_clock())
    return DeviceSeen(
        hwid=r.hwid,
        device_type=device_type(r.device_type) if r.device_type is not None else None,
        language=language(r.language),
        timezone=offset,
        tz_name=zone,
        user_id=user_id,
        app_version=r.app_version,
        device_model=r.device_model,
        os_version=r.os_version,
        opened_at=opened_at,
    )


def _web_keys(r: RegisterDevice) -> tuple[str | None, str | None]:
    """A browser subscription's keys, checked against the endpoint in push_token."""
    if r.public_key is None and r.auth_token is None:
        return None, None
    if r.public_key is None or r.auth_token is None:
        missing, given = (
            ("public_key", "auth_token") if r.public_key is None else ("auth_token", "public_key")
        )
        raise ArgumentError(f"{missing}: required with {given}")
    if not r.push_token:
        raise ArgumentError("push_token: required with public_key and auth_token (the endpoint)")
    try:
        Subscription.of_parts(r.push_token, r.public_key, r.auth_token)
    except ValueError as exc:
        field = {"p256dh": "public_key", "auth": "auth_token"}.get(str(exc).split(" ")[0])
        if field is None:
            raise ArgumentError(
                "push_token: with public_key and auth_token it must be the subscription's"
                f" https endpoint ({exc})"
            ) from None
        raise ArgumentError(f"{field}: {str(exc).split(' ', 1)[1]}") from None
    return r.public_key, r.auth_token


# -- the methods ----------------------------------------------------------------------------


async def register_device(call: Call, r: RegisterDevice) -> None:
    app = await call.device_app_for(r.application)
    device_type(r.device_type)
    if r.push_token is not None and not r.push_token.strip():
        # (ours) "" would otherwise either keep an old token or register a dead one.
        raise ArgumentError(
            "push_token: must not be empty (leave it out to register the device without one;"
            " unregisterDevice removes one)"
        )
    offset, zone = timezone(r.timezone, call.ctx.store_clock())
    p256dh, auth = _web_keys(r)
    device = DeviceIn(
        hwid=r.hwid,
        device_type=r.device_type,
        push_token=r.push_token,
        language=language(r.language),
        timezone=offset,
        tags=r.tags,
        user_id=r.userId,
        app_version=r.app_version,
        device_model=r.device_model,
        os_version=r.os_version,
        tz_name=zone,
        web_p256dh=p256dh,
        web_auth=auth,
    )
    try:
        await call.ctx.store.register_device(app, device)
    except TagError as exc:
        raise ArgumentError(f"tags: {exc.message}") from None


async def unregister_device(call: Call, r: UnregisterDevice) -> None:
    app = await call.device_app_for(r.application)
    await call.ctx.store.unregister_device(app, r.hwid)


async def application_open(call: Call, r: ApplicationOpen) -> None:
    """Record an open: the device's ``last_open`` and what it reports about itself.

    A device not registered yet is recorded (without a push token) when the call
    names its device_type, as Pushwoosh does.
    """
    app = await call.device_app_for(r.application)
    now = call.ctx.store_clock()
    seen = _seen(call, r, user_id=r.userId, opened_at=occurred(r.timestampUTC, now))
    if not await call.ctx.store.devices.record_seen(app, seen):
        raise ArgumentError(f"device_type: required to record the device {r.hwid!r}")


async def register_user(call: Call, r: RegisterUser) -> None:
    """Bind a user id to the device (an empty one binds the hwid, as Pushwoosh does)."""
    app = await call.device_app_for(r.application)
    if r.timezone is None:
        offset = r.tz_offset if r.tz_offset is not None else r.ts_offset
        if offset is not None:
            r = msgspec.structs.replace(r, timezone=offset)
    seen = _seen(call, r, user_id=r.userId or r.hwid, opened_at=None)
    if not await call.ctx.store.devices.record_seen(app, seen):
        raise ArgumentError(f"device_type: required to record the device {r.hwid!r}")


async def set_badge(call: Call, r: SetBadge) -> None:
    """Keep the badge the application shows, for auto-incrementing badges."""
    app = await call.device_app_for(r.application)
    if r.badge is not None and r.badges is not None and r.badge != r.badges:
        raise ArgumentError("badges: differs from badge (give one of them)")
    badge = r.badge if r.badge is not None else r.badges
    if badge is None:
        raise ArgumentError("badge: required")
    found = await call.ctx.store.devices.set_badge(app, r.hwid, badge, BADGED)
    if found is None:
        raise ArgumentError(f"hwid: {r.hwid} is not registered")
    if found not in BADGED:
        # Pushwoosh's words; (ours) macOS devices keep a badge too.
        raise ArgumentError("Badges can be set on iOS devices only")


async def check_device(call: Call, r: CheckDevice) -> dict[str, bool]:
    app = await call.device_app_for(r.application)
    state = await call.ctx.store.devices.check(app, r.hwid)
    return {"exist": state.exists, "push_token_exist": state.subscribed}


async def post_event(call: Call, r: PostEvent) -> dict[str, str]:
    """Record an event the device posted, with its attributes.

    Pushwoosh answers the code of an in-app message bound to the event; none
    are kept here, so it is empty (ours), which the SDKs read as nothing to show.
    """
    app = await call.device_app_for(r.application)
    now = call.ctx.store_clock()
    event = EventIn(
        hwid=r.hwid,
        name=r.event,
        attributes=r.attributes,
        occurred_at=occurred(r.timestampUTC, now),
        user_id=r.userId,
        local_time=r.timestampCurrent,
    )
    await call.ctx.store.devices.post_event(app, event)
    return {"code": ""}


async def _report(call: Call, r: DeviceReport, status: Status) -> None:
    app = await call.device_app_for(r.application)
    # An unknown hash is answered like a known one: SDKs retry on errors, and a
    # report about a delivery that aged out of retention is not the device's fault.
    await call.ctx.store.record_device_report(app, r.hwid, r.hash, status)


async def push_stat(call: Call, r: DeviceReport) -> None:
    await _report(call, r, Status.OPENED)


async def message_delivery_event(call: Call, r: DeviceReport) -> None:
    await _report(call, r, Status.DELIVERED)
