"""Building what a device receives.

A message is stored once per (platform, language) as a *template*: everything
of the payload except the two per-delivery keys, ``p`` (the hash a device
reports back with pushStat/messageDeliveryEvent) and ``md`` (metadata naming
the message and the user). ``render`` adds them. Keys are encoded sorted, so a
payload's bytes are the same wherever it is rendered (gateway, export).

The payload keys are those Pushwoosh's SDKs read, so an app built with them
finds every value where it looks:

- iOS and macOS: ``aps`` (``alert`` {``title``, ``subtitle``, ``body``}, ``badge``,
  ``pw_badge`` for "+n"/"-n" badges that the SDK's notification service
  extension applies, ``sound``, ``category``, ``thread-id``,
  ``content-available``, ``mutable-content``), and at the root ``l`` (link),
  ``r`` (remote page), ``rm`` (rich media), ``u`` (the sender's data as a JSON
  string), ``attachment`` (from root params).
- Safari: ``aps`` {``alert`` {``title``, ``body``, ``action``}, ``url-args``}.
- Android, Huawei, Amazon: ``title`` (the text), ``header``, ``s`` (sound),
  ``i`` (icon), ``ci`` (custom icon), ``b`` (banner), ``pw_badges``, ``vib``,
  ``led``, ``pri``, ``ibc``, ``pw_silent``, ``l``, ``rm``, ``u``.
- Chrome, Firefox: ``body``, ``header``, ``i``, ``image``, ``buttons`` (a JSON
  string of [{title, url}]), ``duration``, ``requireInteraction``, ``silent``,
  ``l``, ``u``.

Root params (``ios_root_params``, ...) are merged in last (``aps`` key by key).
Gateway options that are not part of the payload are kept beside the template
in ``Template.options``: ``ttl`` (seconds), ``push_type`` and ``priority`` (APNs:
alert or background as the payload says, background at priority 5),
``apns_priority`` (APNs, the sender's ``ios_priority``), ``priority``
("high"/"normal", FCM), ``collapse_id`` (every gateway).

``APNS_PUSH_TYPES`` holds what Apple asks of each ``apns-push-type``: the topic
suffix, the payload limit and the priorities APNs takes.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any, NamedTuple

import msgspec

from pushtrack.domain.platforms import Platform

APPLE = frozenset({Platform.IOS, Platform.MACOS, Platform.SAFARI})
ANDROID_LIKE = frozenset({Platform.ANDROID, Platform.AMAZON, Platform.HUAWEI})
BROWSERS = frozenset({Platform.CHROME, Platform.FIREFOX})

#: Largest payload each gateway takes, in bytes of JSON (Web Push: 4096 bytes of
#: aes128gcm record, less its 86-byte header, padding delimiter and 16-byte tag).
LIMITS: dict[Platform, int] = {
    **dict.fromkeys(APPLE, 4096),
    **dict.fromkeys(ANDROID_LIKE, 4096),
    **dict.fromkeys(BROWSERS, 3993),
}


class ApnsPushType(NamedTuple):
    """What APNs asks of one ``apns-push-type`` ("Sending notification requests to APNs")."""

    suffix: str  # appended to the bundle id in apns-topic
    limit: int  # bytes of payload
    priorities: frozenset[int]  # apns-priority values that fit it
    priority: int  # the one sent when the notification names none


_ANY_PRIORITY = frozenset({10, 5, 1})
#: Every APNs push type pushtrack sends. alert and background follow from each payload;
#: the others are an application's gateway setting ``push_type`` (a VoIP app's "voip").
#: mdm is not here: MDM pushes need the MDM push certificate, and pushtrack signs with a
#: token key.
APNS_PUSH_TYPES: dict[str, ApnsPushType] = {
    "alert": ApnsPushType("", 4096, _ANY_PRIORITY, 10),
    # content-available alone: APNs refuses priority 10 for it
    "background": ApnsPushType("", 4096, frozenset({5, 1}), 5),
    "voip": ApnsPushType(".voip", 5120, _ANY_PRIORITY, 10),
    "complication": ApnsPushType(".complication", 4096, _ANY_PRIORITY, 10),
    "fileprovider": ApnsPushType(".pushkit.fileprovider", 4096, _ANY_PRIORITY, 10),
    # 10 when the location query needs an answer at once, else 5
    "location": ApnsPushType(".location-query", 4096, frozenset({10, 5}), 10),
    # Live Activity updates: 10 counts against the activity's budget, 5 does not
    "liveactivity": ApnsPushType(".push-type.liveactivity", 4096, frozenset({10, 5}), 10),
    # Push to Talk: priority 10 and apns-expiration 0, always
    "pushtotalk": ApnsPushType(".voip-ptt", 4096, frozenset({10}), 10),
    "widgets": ApnsPushType(".push-type.widgets", 4096, _ANY_PRIORITY, 10),
}
#: The push types an application's APNs gateway may be set to send every push as.
APNS_GATEWAY_PUSH_TYPES = tuple(t for t in APNS_PUSH_TYPES if t not in ("alert", "background"))
#: apns-collapse-id: at most this many bytes.
APNS_COLLAPSE_ID_BYTES = 64


def limit_of(platform: Platform, apns_push_type: str | None = None) -> int:
    """The largest payload a platform's gateway takes (APNs: for that push type)."""
    if apns_push_type is not None and platform in APPLE:
        return APNS_PUSH_TYPES[apns_push_type].limit
    return LIMITS.get(platform, 4096)


#: Room kept for what ``render`` adds (``p`` and ``md`` with a user id of up to 255
#: ASCII characters) when a template's size is checked.
RESERVE = 320

_ELLIPSIS = "…"
_encoder = msgspec.json.Encoder(order="sorted")

#: Android-like platforms' field prefix and TTL field (Amazon names a few differently).
_ANDROID_FIELDS: dict[Platform, tuple[str, str]] = {
    Platform.ANDROID: ("android", "android_gcm_ttl"),
    Platform.HUAWEI: ("huawei_android", "huawei_android_gcm_ttl"),
    Platform.AMAZON: ("adm", "adm_ttl"),
}


class Template(msgspec.Struct, frozen=True):
    body: dict[str, Any]
    options: dict[str, Any]


def pick_language(value: Any, language: str | None) -> str | None:
    """The text of a per-language field for a device language (then English, then any)."""
    if value is None or isinstance(value, str):
        return value
    if not isinstance(value, Mapping) or not value:
        return None
    if language and language in value:
        text = value[language]
    elif "en" in value:
        text = value["en"]
    else:
        text = next(iter(value.values()))
    return text if isinstance(text, str) else None


def build_template(
    notification: Mapping[str, Any], platform: Platform, language: str | None
) -> Template:
    """The payload template of a validated createMessage notification for one platform.

    ``notification`` is the dict of given fields (``domain.notification.fields``);
    keys it does not know are left alone. It never raises for a validated notification.
    """
    if platform is Platform.SAFARI:
        return _safari(notification, language)
    if platform in APPLE:
        return _apple(notification, platform, language)
    if platform in ANDROID_LIKE:
        return _android(notification, platform, language)
    return _browser(notification, platform, language)


def size_of(
    template: Template, platform: Platform, apns_push_type: str | None = None
) -> tuple[int, int]:
    """(bytes a rendered payload may take, the gateway's limit) of a template; an Apple
    platform's limit is that of ``apns_push_type`` when its gateway sends every push as one."""
    return len(encode(template.body)) + RESERVE, limit_of(platform, apns_push_type)


def render(template_body: dict[str, Any], p: str, message_id: int, user_id: str) -> dict[str, Any]:
    """The full payload of one delivery."""
    payload = dict(template_body)
    payload["p"] = p
    payload["md"] = {"mid": message_id, "user_id": user_id}
    return payload


def encode(payload: Any) -> bytes:
    """Compact JSON with sorted keys."""
    return _encoder.encode(payload)


# -- shared -------------------------------------------------------------------------------


def _text(n: Mapping[str, Any], language: str | None) -> str:
    return pick_language(n.get("content"), language) or ""


def _common(n: Mapping[str, Any]) -> dict[str, Any]:
    """Keys every Pushwoosh SDK reads the same way: pw_msg, u, l."""
    body: dict[str, Any] = {"pw_msg": "1"}
    data = n.get("data")
    if isinstance(data, Mapping):
        body["u"] = encode(data).decode()
    elif isinstance(data, str) and data:
        body["u"] = data
    if isinstance(n.get("link"), str):
        body["l"] = n["link"]
    return body


def _rich_media(url: str) -> dict[str, str]:
    """``rm`` as the SDKs read it: the page's .zip and a version stamp (ours: from the URL)."""
    return {"url": url, "ts": str(zlib.crc32(url.encode()))}


def _flag(value: Any) -> bool:
    return bool(value) and value not in ("0", "false")


def _merge_root(body: dict[str, Any], params: Any, *, apple: bool = False) -> None:
    """Merge root params into a payload; on Apple platforms ``aps`` merges key by key."""
    if not isinstance(params, Mapping):
        return
    for key, value in params.items():
        if key in ("p", "md", "pw_msg"):
            continue  # delivery tracking owns these
        if apple and key == "aps" and isinstance(value, Mapping):
            body.setdefault("aps", {}).update(value)
        else:
            body[key] = value


def _ttl(n: Mapping[str, Any], name: str, options: dict[str, Any]) -> None:
    """The gateway options every platform shares: its ttl field, and ``collapse_id``."""
    value = n.get(name)
    if isinstance(value, int) and not isinstance(value, bool):
        options["ttl"] = value
    if isinstance(n.get("collapse_id"), str):
        options["collapse_id"] = n["collapse_id"]


def _badge(value: Any) -> tuple[int | None, str | None]:
    """(absolute badge, relative "+n"/"-n") of a badges field."""
    if isinstance(value, bool):
        return None, None
    if isinstance(value, int):
        return value, None
    if isinstance(value, str) and value:
        if value[0] in "+-":
            return None, value
        if value.isdigit():
            return int(value), None
    return None, None


# -- Apple --------------------------------------------------------------------------------


def _apple(n: Mapping[str, Any], platform: Platform, language: str | None) -> Template:
    ios = platform is Platform.IOS
    prefix = "ios" if ios else "mac"
    body = _common(n)
    options: dict[str, Any] = {}
    text = _text(n, language)
    silent = not text or (ios and _flag(n.get("ios_silent")))
    aps: dict[str, Any] = {}
    if not silent:
        title = (n.get("ios_title") if ios else None) or pick_language(n.get("title"), language)
        subtitle = (n.get("ios_subtitle") if ios else None) or pick_language(
            n.get("subtitle"), language
        )
        alert: str | dict[str, str] = text
        if title or subtitle:
            alert = {"body": text}
            if title:
                alert["title"] = title
            if subtitle:
                alert["subtitle"] = subtitle
        aps["alert"] = alert
        sound = n.get(f"{prefix}_sound", "default")
        if ios and _flag(n.get("ios_critical")):
            aps["sound"] = {"critical": 1, "name": sound or "default", "volume": 1.0}
        elif sound:
            aps["sound"] = sound
        if ios and n.get("ios_category_id") is not None:
            aps["category"] = str(n["ios_category_id"])
        if ios and n.get("ios_thread_id"):
            aps["thread-id"] = n["ios_thread_id"]
    if not (ios and _flag(n.get("ios_silent"))):
        absolute, relative = _badge(n.get(f"{prefix}_badges"))
        if absolute is not None:
            aps["badge"] = absolute
        elif relative is not None and ios:
            # The Pushwoosh notification service extension adds it to the device's badge.
            aps["pw_badge"] = relative
            aps["mutable-content"] = 1
    body["aps"] = aps
    if isinstance(n.get("remote_page"), str):
        body["r"] = n["remote_page"]
    if isinstance(n.get("rich_media"), str):
        body["rm"] = _rich_media(n["rich_media"])
    _merge_root(body, n.get(f"{prefix}_root_params"), apple=True)
    aps = body["aps"]
    if "attachment" in body:
        aps["mutable-content"] = 1  # the notification service extension downloads it
    if ios and (_flag(n.get("apns_trim_content")) or _flag(n.get("ios_trim_content"))):
        _trim(body, LIMITS[platform] - RESERVE)
    if any(key in aps for key in ("alert", "sound", "badge")):
        options["push_type"] = "alert"
    else:
        # APNs: a background push has content-available and goes at priority 5
        aps["content-available"] = 1
        options["push_type"] = "background"
        options["priority"] = 5
    priority = n.get("ios_priority") if ios else None
    if isinstance(priority, int) and not isinstance(priority, bool):
        options["apns_priority"] = priority
    _ttl(n, f"{prefix}_ttl", options)
    return Template(body=body, options=options)


def _trim(body: dict[str, Any], budget: int) -> None:
    """Shorten the alert text, ending it with an ellipsis, to the longest that fits."""
    aps = body["aps"]
    alert = aps.get("alert")
    text = alert.get("body") if isinstance(alert, dict) else alert
    if not isinstance(text, str) or not text or len(encode(body)) <= budget:
        return

    def put(shown: str) -> None:
        if isinstance(alert, dict):
            alert["body"] = shown
        else:
            aps["alert"] = shown

    def shortened(keep: int) -> str:
        return text[:keep].rstrip() + _ELLIPSIS if keep else ""

    low, high = 0, len(text) - 1  # the longest prefix that fits lies in [low, high]
    while low < high:
        middle = (low + high + 1) // 2
        put(shortened(middle))
        if len(encode(body)) <= budget:
            low = middle
        else:
            high = middle - 1
    put(shortened(low))


def _safari(n: Mapping[str, Any], language: str | None) -> Template:
    body = _common(n)
    options: dict[str, Any] = {}
    alert: dict[str, str] = {
        "title": n.get("safari_title") or pick_language(n.get("title"), language) or "",
        "body": _text(n, language),
    }
    if n.get("safari_action"):
        alert["action"] = n["safari_action"]
    args = n.get("safari_url_args")
    body["aps"] = {"alert": alert, "url-args": list(args) if isinstance(args, list) else []}
    options["push_type"] = "alert"
    _ttl(n, "safari_ttl", options)
    return Template(body=body, options=options)


# -- Android, Huawei, Amazon ----------------------------------------------------------------


def _android(n: Mapping[str, Any], platform: Platform, language: str | None) -> Template:
    prefix, ttl = _ANDROID_FIELDS[platform]
    body = _common(n)
    options: dict[str, Any] = {}
    text = _text(n, language)
    if text:
        body["title"] = text  # the SDK's name for the message text
    header = n.get(f"{prefix}_header") or pick_language(n.get("title"), language)
    if header and text:
        body["header"] = header
    for field, key in (
        ("sound", "s"),
        ("icon", "i"),
        ("custom_icon", "ci"),
        ("banner", "b"),
        ("led", "led"),
        ("ibc", "ibc"),
    ):
        value = n.get(f"{prefix}_{field}")
        if isinstance(value, str):
            body[key] = value
    absolute, relative = _badge(n.get(f"{prefix}_badges"))
    if absolute is not None or relative is not None:
        body["pw_badges"] = relative if relative is not None else str(absolute)
    if n.get(f"{prefix}_vibration") is not None:
        body["vib"] = "1" if _flag(n[f"{prefix}_vibration"]) else "0"
    priority = n.get(f"{prefix}_priority")
    if isinstance(priority, int) and not isinstance(priority, bool):
        body["pri"] = str(priority)
    if not text or _flag(n.get(f"{prefix}_silent")):
        body["pw_silent"] = "1"
    if isinstance(n.get("rich_media"), str):
        body["rm"] = _rich_media(n["rich_media"])
    _merge_root(body, n.get(f"{prefix}_root_params"))
    delivery = n.get(f"{prefix}_delivery_priority")
    if isinstance(delivery, str):
        options["priority"] = delivery.lower()
    _ttl(n, ttl, options)
    return Template(body=body, options=options)


# -- browsers -----------------------------------------------------------------------------


def _browser(n: Mapping[str, Any], platform: Platform, language: str | None) -> Template:
    chrome = platform is Platform.CHROME
    prefix = {Platform.CHROME: "chrome", Platform.FIREFOX: "firefox"}.get(platform, "")
    body = _common(n)
    options: dict[str, Any] = {}
    text = _text(n, language)
    body["body"] = text
    if not text:
        body["silent"] = 1  # the SDK shows nothing
    header = n.get(f"{prefix}_title") or pick_language(n.get("title"), language)
    if header:
        body["header"] = header
    if isinstance(n.get(f"{prefix}_icon"), str):
        body["i"] = n[f"{prefix}_icon"]
    if chrome:
        if isinstance(n.get("chrome_image"), str):
            body["image"] = n["chrome_image"]
        buttons = [
            {"title": n[f"chrome_button_text{i}"], "url": n.get(f"chrome_button_url{i}") or ""}
            for i in (1, 2)
            if n.get(f"chrome_button_text{i}")
        ]
        if buttons:
            body["buttons"] = encode(buttons).decode()
        duration = n.get("chrome_duration")
        if isinstance(duration, int) and not isinstance(duration, bool):
            body["duration"] = duration
            if duration == 0:
                body["requireInteraction"] = True
    if prefix:
        _merge_root(body, n.get(f"{prefix}_root_params"))
        _ttl(n, "chrome_gcm_ttl" if chrome else "firefox_ttl", options)
    return Template(body=body, options=options)
