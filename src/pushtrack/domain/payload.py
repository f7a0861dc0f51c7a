"""Building what a device receives.

A message is stored once per (platform, language) as a *template*: everything
of the payload except the two per-delivery keys, ``p`` (the hash a device
reports back with pushStat/messageDeliveryEvent) and ``md`` (metadata naming
the message and the user). ``render`` adds them. Keys are encoded sorted, so a
payload's bytes are the same wherever it is rendered (gateway, export).

Gateway options that are not part of the payload (time to live, collapse id,
priority) are kept beside the template in ``Template.options``.
"""

from __future__ import annotations

from typing import Any

import msgspec

from pushtrack.domain.platforms import Platform

APPLE = frozenset({Platform.IOS, Platform.MACOS, Platform.SAFARI})
ANDROID_LIKE = frozenset({Platform.ANDROID, Platform.AMAZON, Platform.HUAWEI})
BROWSERS = frozenset({Platform.CHROME, Platform.FIREFOX})

_encoder = msgspec.json.Encoder(order="sorted")


class Template(msgspec.Struct, frozen=True):
    body: dict[str, Any]
    options: dict[str, Any]


def pick_language(value: str | dict[str, str] | None, language: str | None) -> str | None:
    """The text of a per-language field for a device language (then English, then any)."""
    if value is None or isinstance(value, str):
        return value
    if not value:
        return None
    if language and language in value:
        return value[language]
    if "en" in value:
        return value["en"]
    return next(iter(value.values()))


def build_template(
    notification: dict[str, Any], platform: Platform, language: str | None
) -> Template:
    """The payload template of a validated createMessage notification for one platform."""
    n = notification
    text = pick_language(n.get("content"), language) or ""
    title = pick_language(n.get("title"), language)
    subtitle = pick_language(n.get("subtitle"), language)
    body: dict[str, Any] = {"pw_msg": "1"}
    options: dict[str, Any] = {}
    if n.get("data") is not None:
        body["u"] = n["data"]
    if platform in APPLE:
        title = (
            n.get("ios_title", title)
            if platform is not Platform.SAFARI
            else (n.get("safari_title", title))
        )
        subtitle = n.get("ios_subtitle", subtitle)
        alert: str | dict[str, str] = text
        if title or subtitle:
            alert = {"body": text}
            if title:
                alert["title"] = title
            if subtitle:
                alert["subtitle"] = subtitle
        aps: dict[str, Any] = {"alert": alert, "sound": n.get("ios_sound", "")}
        if "ios_badges" in n:
            aps["badge"] = n["ios_badges"]
        if "ios_category_id" in n:
            aps["category"] = str(n["ios_category_id"])
        body["aps"] = aps
        body.update(n.get("ios_root_params") or {})
        if "ios_ttl" in n:
            options["ttl"] = n["ios_ttl"]
        if platform is Platform.SAFARI and "safari_ttl" in n:
            options["ttl"] = n["safari_ttl"]
        if platform is Platform.SAFARI and "safari_url_args" in n:
            aps["url-args"] = n["safari_url_args"]
    elif platform in ANDROID_LIKE:
        body["title"] = n.get("android_header", title) or ""
        body["body"] = text
        for key, target in (("android_sound", "sound"), ("android_icon", "icon")):
            if key in n:
                body[target] = n[key]
        body.update(n.get("android_root_params") or {})
        if "android_gcm_ttl" in n:
            options["ttl"] = n["android_gcm_ttl"]
    else:
        prefix = "firefox" if platform is Platform.FIREFOX else "chrome"
        body["title"] = n.get(f"{prefix}_title", title) or ""
        body["body"] = text
        if f"{prefix}_icon" in n:
            body["icon"] = n[f"{prefix}_icon"]
        if f"{prefix}_gcm_ttl" in n:
            options["ttl"] = n[f"{prefix}_gcm_ttl"]
        elif f"{prefix}_ttl" in n:
            options["ttl"] = n[f"{prefix}_ttl"]
    return Template(body=body, options=options)


def render(template_body: dict[str, Any], p: str, message_id: int, user_id: str) -> dict[str, Any]:
    """The full payload of one delivery."""
    payload = dict(template_body)
    payload["p"] = p
    payload["md"] = {"mid": message_id, "user_id": user_id}
    return payload


def encode(payload: dict[str, Any]) -> bytes:
    """Compact JSON with sorted keys."""
    return _encoder.encode(payload)
