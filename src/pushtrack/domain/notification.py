"""What a createMessage notification says to its devices: content and platform options.

``Content`` holds every content and platform-option field of a Pushwoosh
createMessage notification that pushtrack acts on, validated once at the edge
(``msgspec.convert``): each field's type and limits, then, in
``__post_init__``, the rules that span fields (``check``). Targeting and
scheduling fields are not here; the API's request type inherits from
``Content`` and adds them (a subclass that defines ``__post_init__`` must call
``super().__post_init__()``; its ``platforms`` field, if any, narrows the size
check to those platforms).

Every field Pushwoosh documents for a notification's content is either

- honoured: it reaches the payload or the gateway request (``domain/payload.py``
  builds both; see ``docs/api.md`` for where each one goes),
- in ``IGNORED``: accepted and dropped, because dropping it changes neither who
  receives the push nor what they see, or
- in ``UNSUPPORTED``: declared here only to be refused with a 210
  ``"<field>" is not supported`` and the reason.

``fields(content)`` is the dict of given fields that ``build_template`` takes.

What depends on the application's gateways (payload sizes, and what APNs asks of
the push type its gateway sends: priority, Live Activity and widget payloads,
Push to Talk expiry) is checked by ``check_for_app`` once the application is known.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Annotated, Any
from urllib.parse import urlsplit

import msgspec

from pushtrack.domain import payload
from pushtrack.domain.platforms import Platform

# -- field types --------------------------------------------------------------------------

Text = Annotated[str, msgspec.Meta(max_length=4096)]
Localized = Text | dict[Annotated[str, msgspec.Meta(min_length=1, max_length=16)], Text]
#: Titles, sound and icon names, identifiers.
Short = Annotated[str, msgspec.Meta(max_length=256)]
Url = Annotated[str, msgspec.Meta(min_length=1, max_length=2048)]
#: Seconds a gateway keeps an undelivered push (FCM's and Web Push's maximum: 4 weeks).
Ttl = Annotated[int, msgspec.Meta(ge=0, le=2_419_200)]
#: 0/1 as Pushwoosh documents it, or a JSON boolean.
Flag = bool | Annotated[int, msgspec.Meta(ge=0, le=1)]
Count = Annotated[int, msgspec.Meta(ge=0, le=2_147_483_647)]
#: A badge number, or "+n" / "-n" to change the device's badge by n.
Badge = Count | Annotated[str, msgspec.Meta(pattern=r"^[+-]?[0-9]{1,9}$")]
#: What Android's ``Color.parseColor`` reads: #RRGGBB, #AARRGGBB or one of its names.
Color = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^(#[0-9A-Fa-f]{6}|#[0-9A-Fa-f]{8}|black|darkgray|gray|lightgray|white|red"
        r"|green|blue|yellow|cyan|magenta|aqua|fuchsia|darkgrey|grey|lightgrey|lime|maroon"
        r"|navy|olive|purple|silver|teal)$"
    ),
]
DrawerPriority = Annotated[int, msgspec.Meta(ge=-2, le=2)]
DeliveryPriority = Annotated[str, msgspec.Meta(pattern=r"^(?i:normal|high)$")]
#: apns-priority: 10 at once, 5 when the device's power allows, 1 when it suits the device.
ApnsPriority = Annotated[int, msgspec.Meta(ge=1, le=10)]
CollapseId = Annotated[str, msgspec.Meta(min_length=1, max_length=payload.APNS_COLLAPSE_ID_BYTES)]
RootParams = dict[str, Any]


class ContentError(ValueError):
    """A notification's fields do not make a push pushtrack can send; names the field."""

    def __init__(self, field: str, reason: str, *, message: str | None = None) -> None:
        super().__init__(message or f"{field}: {reason}")
        self.field = field
        self.reason = reason


# -- what is accepted and ignored, what is refused ----------------------------------------

#: Fields accepted and dropped: dropping them changes neither who receives nor what they see.
IGNORED: dict[str, str] = {
    "minimize_link": (
        "pushtrack never shortens links: devices get the link as given, which opens"
        " the same page a shortened one would"
    ),
}

_WINDOWS = "pushtrack has no Windows gateway"
_LIVE_ACTIVITY = (
    "Live Activities are not named by id here: an application whose APNs gateway sends"
    " liveactivity pushes sends each push as an update, its aps from ios_root_params"
)
#: Fields Pushwoosh documents for a notification that pushtrack does not do: each is
#: refused with 210 ``"<field>" is not supported`` and the reason.
UNSUPPORTED: dict[str, str] = {
    "page_id": "HTML pages are hosted by Pushwoosh; send a link instead",
    "rich_page_id": "Rich Pages are hosted by Pushwoosh; send a link instead",
    "dynamic_content_placeholders": "pushtrack sends the content as given (no templates)",
    "template_bindings": "pushtrack sends the content as given (no templates)",
    "inbox_date": "pushtrack has no message inbox",
    "inbox_image": "pushtrack has no message inbox",
    "inbox_days": "pushtrack has no message inbox",
    "capping_days": "pushtrack does no frequency capping",
    "capping_count": "pushtrack does no frequency capping",
    "capping_exclude": "pushtrack does no frequency capping",
    "capping_avoid": "pushtrack does no frequency capping",
    "live_activity": _LIVE_ACTIVITY,
    "live_activity_id": _LIVE_ACTIVITY,
    "transactionId": "pushtrack does not deduplicate createMessage calls",
    "wp_type": _WINDOWS,
    "wp_background": _WINDOWS,
    "wp_backbackground": _WINDOWS,
    "wp_backtitle": _WINDOWS,
    "wp_backcontent": _WINDOWS,
    "wp_count": _WINDOWS,
    "wns_content": _WINDOWS,
    "wns_type": _WINDOWS,
    "wns_tag": _WINDOWS,
    "wns_cache": _WINDOWS,
    "wns_ttl": _WINDOWS,
    "blackberry_header": "pushtrack has no BlackBerry gateway",
}

#: Keys of the payload that delivery tracking owns; root params may not set them.
RESERVED_KEYS = frozenset({"p", "md", "pw_msg"})
#: A Web Push ``Topic`` header (RFC 8030 §5.4): at most 32 characters of base64url.
_WEB_TOPIC = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_BROWSERS = frozenset(int(p) for p in payload.BROWSERS)
#: Keys FCM refuses in a message's data (the whole message would fail).
_FCM_RESERVED = re.compile(r"^(from|notification|message_type|google.*|gcm.*)$")

#: Fields that only change how a shown push looks or sounds: meaningless in a silent push.
_DISPLAY: dict[str, tuple[str, ...]] = {
    "ios": (
        "ios_title",
        "ios_subtitle",
        "ios_sound",
        "ios_category_id",
        "ios_critical",
        "ios_thread_id",
    ),
    "android": (
        "android_header",
        "android_sound",
        "android_icon",
        "android_custom_icon",
        "android_banner",
        "android_led",
        "android_vibration",
        "android_ibc",
        "android_priority",
    ),
    "huawei_android": (
        "huawei_android_header",
        "huawei_android_sound",
        "huawei_android_icon",
        "huawei_android_custom_icon",
        "huawei_android_banner",
        "huawei_android_led",
        "huawei_android_vibration",
        "huawei_android_ibc",
        "huawei_android_priority",
    ),
}
#: Display fields of platforms that have no silent flag (silent only without content).
_OTHER_DISPLAY = (
    "title",
    "subtitle",
    "mac_sound",
    "adm_header",
    "adm_sound",
    "adm_icon",
    "adm_custom_icon",
    "adm_banner",
    "adm_priority",
    "safari_title",
    "safari_action",
    "chrome_title",
    "chrome_icon",
    "chrome_image",
    "chrome_duration",
    "chrome_button_text1",
    "chrome_button_text2",
    "firefox_title",
    "firefox_icon",
)


class Content(msgspec.Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    """The content and platform options of one createMessage notification."""

    # -- every platform
    content: Localized | None = None
    title: Localized | None = None
    subtitle: Localized | None = None
    #: An object, or a JSON string holding one (decoded on validation); travels as ``u``.
    data: dict[str, Any] | Annotated[str, msgspec.Meta(max_length=16384)] | None = None
    link: Url | None = None
    minimize_link: bool | Annotated[int, msgspec.Meta(ge=0, le=2)] | None = None
    #: (ours) the https URL of a Rich Media .zip; travels as ``rm``.
    rich_media: Url | None = None
    #: A web page the iOS/macOS SDK shows on open; travels as ``r``.
    remote_page: Url | None = None
    #: Deliveries per second for this message (ours: Pushwoosh takes 100-1000).
    send_rate: Annotated[int, msgspec.Meta(ge=1, le=1000)] | None = None
    #: (ours) a newer push with the same id replaces one not yet shown: APNs
    #: apns-collapse-id, FCM android.collapse_key, Web Push Topic.
    collapse_id: CollapseId | None = None
    # -- iOS
    ios_title: Short | None = None
    ios_subtitle: Short | None = None
    ios_badges: Badge | None = None
    ios_sound: Short | None = None
    ios_critical: Flag | None = None
    ios_ttl: Ttl | None = None
    ios_silent: Flag | None = None
    #: (ours) apns-priority: 10, 5 or 1 (what the push type takes; see check_for_app).
    ios_priority: ApnsPriority | None = None
    ios_category_id: Count | Short | None = None
    ios_thread_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    ios_root_params: RootParams | None = None
    apns_trim_content: Flag | None = None
    #: Pushwoosh's older name of ``apns_trim_content``.
    ios_trim_content: Flag | None = None
    # -- macOS
    mac_badges: Count | None = None
    mac_sound: Short | None = None
    mac_root_params: RootParams | None = None
    mac_ttl: Ttl | None = None
    # -- Safari
    safari_title: Short | None = None
    safari_action: Short | None = None
    safari_url_args: Annotated[list[Short], msgspec.Meta(max_length=32)] | None = None
    safari_ttl: Ttl | None = None
    # -- Android
    android_header: Short | None = None
    android_sound: Short | None = None
    android_icon: Short | None = None
    android_custom_icon: Url | None = None
    android_banner: Url | None = None
    android_badges: Badge | None = None
    android_gcm_ttl: Ttl | None = None
    android_vibration: Flag | None = None
    android_led: Color | None = None
    android_priority: DrawerPriority | None = None
    android_delivery_priority: DeliveryPriority | None = None
    android_ibc: Color | None = None
    android_silent: Flag | None = None
    android_root_params: RootParams | None = None
    # -- Huawei
    huawei_android_header: Short | None = None
    huawei_android_sound: Short | None = None
    huawei_android_icon: Short | None = None
    huawei_android_custom_icon: Url | None = None
    huawei_android_banner: Url | None = None
    huawei_android_badges: Badge | None = None
    huawei_android_gcm_ttl: Ttl | None = None
    huawei_android_vibration: Flag | None = None
    huawei_android_led: Color | None = None
    huawei_android_priority: DrawerPriority | None = None
    huawei_android_delivery_priority: DeliveryPriority | None = None
    huawei_android_ibc: Color | None = None
    huawei_android_silent: Flag | None = None
    huawei_android_root_params: RootParams | None = None
    # -- Amazon
    adm_header: Short | None = None
    adm_sound: Short | None = None
    adm_icon: Short | None = None
    adm_custom_icon: Url | None = None
    adm_banner: Url | None = None
    adm_ttl: Ttl | None = None
    adm_priority: DrawerPriority | None = None
    adm_root_params: RootParams | None = None
    # -- Chrome
    chrome_title: Short | None = None
    chrome_icon: Url | None = None
    chrome_image: Url | None = None
    chrome_gcm_ttl: Ttl | None = None
    #: Seconds the browser shows the push; 0: until the user acts on it.
    chrome_duration: Annotated[int, msgspec.Meta(ge=0, le=86_400)] | None = None
    chrome_button_text1: Short | None = None
    chrome_button_url1: Url | None = None
    chrome_button_text2: Short | None = None
    chrome_button_url2: Url | None = None
    chrome_root_params: RootParams | None = None
    # -- Firefox
    firefox_title: Short | None = None
    firefox_icon: Url | None = None
    firefox_ttl: Ttl | None = None
    firefox_root_params: RootParams | None = None
    # -- refused (see UNSUPPORTED); null is taken as absent
    page_id: Any = None
    rich_page_id: Any = None
    dynamic_content_placeholders: Any = None
    template_bindings: Any = None
    inbox_date: Any = None
    inbox_image: Any = None
    inbox_days: Any = None
    capping_days: Any = None
    capping_count: Any = None
    capping_exclude: Any = None
    capping_avoid: Any = None
    live_activity: Any = None
    live_activity_id: Any = None
    transactionId: Any = None
    wp_type: Any = None
    wp_background: Any = None
    wp_backbackground: Any = None
    wp_backtitle: Any = None
    wp_backcontent: Any = None
    wp_count: Any = None
    wns_content: Any = None
    wns_type: Any = None
    wns_tag: Any = None
    wns_cache: Any = None
    wns_ttl: Any = None
    blackberry_header: Any = None

    def __post_init__(self) -> None:
        if isinstance(self.data, str):
            self.data = _decode_data(self.data)
        # a request type's targeting may name the platforms: sizes are checked for those
        check(self, getattr(self, "platforms", None))


def fields(content: Content) -> dict[str, Any]:
    """The given fields of a validated notification (None left out), for ``build_template``."""
    given: dict[str, Any] = msgspec.to_builtins(content)  # omit_defaults: only what is given
    return given


def _decode_data(text: str) -> dict[str, Any]:
    try:
        value = msgspec.json.decode(text)
    except msgspec.DecodeError:
        raise ContentError("data", "expected an object or a JSON string holding one") from None
    if not isinstance(value, dict):
        raise ContentError("data", "the JSON string must hold an object")
    return value


def refuse_unsupported(struct: Any, table: Mapping[str, str]) -> None:
    """Refuse the first field of ``table`` (name -> reason) that ``struct`` was given
    (null counts as absent): ``"<field>" is not supported: <reason>``. Request types
    declare such fields only to refuse them by name rather than as unknown."""
    for name, reason in table.items():
        if getattr(struct, name) is not None:
            raise ContentError(name, reason, message=f'"{name}" is not supported: {reason}')


def _blank(value: Any) -> bool:
    return value is None or value == "" or value == {}


def check(content: Content, platforms: Iterable[int] | None = None) -> None:
    """The rules that span fields; ``ContentError`` naming the field for the first broken one.

    ``platforms``: where the notification may go, when the sender said so (a
    ``collapse_id`` that Web Push cannot take is refused only when it may reach a
    browser). Sizes and push types depend on the application's gateways:
    ``check_for_app``.
    """
    n = content
    refuse_unsupported(n, UNSUPPORTED)
    silent_flags = [
        f for f in ("ios_silent", "android_silent", "huawei_android_silent") if getattr(n, f)
    ]
    if _blank(n.content) and not n.data and not silent_flags:
        raise ContentError("content", "required (or data, or a silent flag, for a silent push)")
    if _blank(n.content):
        # no content: a silent push everywhere; what only changes its looks makes no sense
        for name in (*_OTHER_DISPLAY, *(f for group in _DISPLAY.values() for f in group)):
            if getattr(n, name) is not None:
                raise ContentError(
                    name, "a push without content is silent and shows nothing; add content"
                )
    for prefix, names in _DISPLAY.items():
        flag = f"{prefix}_silent"
        if getattr(n, flag):
            # APNs: a background push carries content-available alone, not even a badge
            shown = (*names, "ios_badges") if prefix == "ios" else names
            for name in shown:
                if getattr(n, name) is not None:
                    raise ContentError(name, f"{flag} makes a push that shows nothing")
    if n.ios_priority is not None and n.ios_priority not in (1, 5, 10):
        raise ContentError("ios_priority", "expected 10 (at once), 5 or 1 (as APNs takes them)")
    if n.collapse_id is not None:
        _check_collapse_id(n.collapse_id, platforms)
    for i in (1, 2):
        if getattr(n, f"chrome_button_url{i}") and not getattr(n, f"chrome_button_text{i}"):
            raise ContentError(f"chrome_button_url{i}", f"needs chrome_button_text{i}")
    if n.rich_media is not None:
        url = urlsplit(n.rich_media)
        if url.scheme != "https" or not url.hostname or not url.path.endswith(".zip"):
            raise ContentError(
                "rich_media",
                "expected the https URL of a Rich Media .zip (pushtrack hosts no Rich Media,"
                " so a Pushwoosh Rich Media code cannot be resolved)",
            )
    for name in (
        "ios_root_params",
        "mac_root_params",
        "android_root_params",
        "huawei_android_root_params",
        "adm_root_params",
        "chrome_root_params",
        "firefox_root_params",
    ):
        _check_root(name, getattr(n, name))


def _check_collapse_id(value: str, platforms: Iterable[int] | None) -> None:
    if len(value.encode()) > payload.APNS_COLLAPSE_ID_BYTES:
        raise ContentError(
            "collapse_id",
            f"at most {payload.APNS_COLLAPSE_ID_BYTES} bytes (APNs refuses a longer"
            " apns-collapse-id)",
        )
    web = platforms is None or any(int(p) in _BROWSERS for p in platforms)
    if web and not _WEB_TOPIC.match(value):
        raise ContentError(
            "collapse_id",
            "Web Push takes it as its Topic: at most 32 letters, digits, - or _"
            " (name platforms without Chrome and Firefox for a longer id)",
        )


def check_for_app(content: Content, apns_push_types: Mapping[int, str] | None = None) -> None:
    """The rules that depend on the application's gateways; ``ContentError`` naming the field.

    ``apns_push_types``: the push type an Apple platform's APNs gateway sends every
    push as (its ``push_type`` setting), by platform; a platform not in it sends
    alert or background pushes as each payload says. Checked: the payload's size
    for each platform it may reach (an Apple platform's limit is its push type's),
    and what APNs asks of the push type: the priorities it takes (a background push
    never 10), a Live Activity's ``event`` and ``timestamp``, a widget push's
    ``content-changed``, a Push to Talk push's expiry of 0.
    """
    push_types = {Platform(p): t for p, t in (apns_push_types or {}).items()}
    platforms = getattr(content, "platforms", None)
    _check_size(content, platforms, push_types)
    named = None if platforms is None else {int(p) for p in platforms}
    given: dict[str, Any] | None = None
    for platform in (Platform.IOS, Platform.MACOS):
        if named is not None and int(platform) not in named:
            continue
        setting = push_types.get(platform)
        if platform is Platform.MACOS and setting is None:
            continue  # alert or background as the payload says; no priority field
        given = fields(content) if given is None else given
        _check_apns(content, given, platform, setting)


def _check_apns(
    content: Content, given: Mapping[str, Any], platform: Platform, setting: str | None
) -> None:
    ios = platform is Platform.IOS
    prefix = "ios" if ios else "mac"
    template = payload.build_template(given, platform, None)
    push_type = setting or str(template.options.get("push_type", "alert"))
    rules = payload.APNS_PUSH_TYPES[push_type]
    priority = content.ios_priority if ios else None
    if priority is not None and priority not in rules.priorities:
        allowed = " or ".join(str(p) for p in sorted(rules.priorities, reverse=True))
        what = (
            "a push without content (or with ios_silent) is a background push"
            if setting is None
            else f"the application's APNs gateway sends {push_type} pushes"
        )
        raise ContentError("ios_priority", f"{what}, which APNs takes at priority {allowed}")
    ttl = given.get(f"{prefix}_ttl")
    if push_type == "pushtotalk" and ttl:
        raise ContentError(
            f"{prefix}_ttl",
            "Push to Talk pushes are delivered at once or not at all (apns-expiration 0);"
            " leave it out or 0",
        )
    aps = template.body.get("aps")
    aps = aps if isinstance(aps, dict) else {}
    root = f"{prefix}_root_params"
    if push_type == "liveactivity":
        _check_live_activity(aps, root)
    elif push_type == "widgets" and aps.get("content-changed") is not True:
        raise ContentError(
            root, 'a widget push needs "aps": {"content-changed": true} (the gateway sends widgets)'
        )


_LIVE_EVENTS = ("start", "update", "end")


def _is_time(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_live_activity(aps: Mapping[str, Any], root: str) -> None:
    """What APNs asks of a Live Activity push's ``aps`` (set through the root params)."""
    need = "a Live Activity push (the gateway sends liveactivity) needs"
    event = aps.get("event")
    if event not in _LIVE_EVENTS:
        raise ContentError(root, f'{need} "aps": {{"event": "start", "update" or "end"}}')
    if not _is_time(aps.get("timestamp")):
        raise ContentError(root, f"{need} aps.timestamp, the UNIX time of the update in seconds")
    if event != "end" and not isinstance(aps.get("content-state"), dict):
        raise ContentError(root, f'{need} aps.content-state (an object) for "{event}"')
    if event == "start":
        if not isinstance(aps.get("attributes-type"), str) or not aps["attributes-type"]:
            raise ContentError(root, f'{need} aps.attributes-type (a string) for "start"')
        if not isinstance(aps.get("attributes"), dict):
            raise ContentError(root, f'{need} aps.attributes (an object) for "start"')
        if "alert" not in aps:
            raise ContentError(root, f'{need} an alert (content) for "start"')
    for key in ("stale-date", "dismissal-date"):
        if key in aps and not _is_time(aps[key]):
            raise ContentError(root, f"aps.{key} must be a UNIX time in seconds")


def _check_root(name: str, params: Mapping[str, Any] | None) -> None:
    if not params:
        return
    taken = sorted(RESERVED_KEYS & params.keys())
    if taken:
        raise ContentError(name, f'"{taken[0]}" is reserved for delivery tracking')
    if name.startswith(("ios", "mac")):
        if "aps" in params and not isinstance(params["aps"], dict):
            raise ContentError(name, '"aps" must be an object')
    elif not name.startswith(("chrome", "firefox")):
        for key in params:
            if _FCM_RESERVED.match(key):
                raise ContentError(name, f'"{key}" is a key FCM does not allow in data')


#: The platforms a size is checked for, one of each payload shape.
_SIZED = (
    Platform.IOS,
    Platform.MACOS,
    Platform.SAFARI,
    Platform.ANDROID,
    Platform.HUAWEI,
    Platform.AMAZON,
    Platform.CHROME,
    Platform.FIREFOX,
)


#: Bytes a template may add to the given fields' own JSON (keys, aps, ...), doubled
#: values aside: what lets a small notification skip measuring its templates.
_TEMPLATE_OVERHEAD = 512


def _check_size(
    n: Content, platforms: Iterable[int] | None, push_types: Mapping[Platform, str]
) -> None:
    given = fields(n)
    # A template holds at most the given values, some of them re-encoded as JSON
    # strings (which can double them): a notification this small fits everywhere.
    if 2 * len(msgspec.json.encode(given)) + _TEMPLATE_OVERHEAD + payload.RESERVE <= min(
        payload.LIMITS.values()
    ):
        return
    language = _largest_language(given)
    wanted: tuple[Platform, ...] = _SIZED
    if platforms is not None:
        named = {int(p) for p in platforms}
        wanted = tuple(p for p in _SIZED if int(p) in named)
    too_big: list[tuple[Platform, int, int]] = []
    for platform in wanted:
        template = payload.build_template(given, platform, language)
        size, limit = payload.size_of(template, platform, push_types.get(platform))
        if size > limit:
            too_big.append((platform, size, limit))
    if not too_big or (platforms is None and len(too_big) < len(wanted)):
        return
    platform, size, limit = too_big[0]
    hint = " (or set apns_trim_content)" if platform is Platform.IOS else ""
    raise ContentError(
        "content",
        f"the {platform.api_name} payload would be about {size} bytes, over the gateway's"
        f" limit of {limit}; shorten the content or data{hint}",
    )


def _largest_language(n: Mapping[str, Any]) -> str | None:
    """The language whose texts are longest: the one to measure a payload's size with."""
    best: tuple[int, str | None] = (-1, None)
    languages: set[str | None] = {None}
    for name in ("content", "title", "subtitle"):
        value = n.get(name)
        if isinstance(value, dict):
            languages.update(value)
    for language in languages:
        size = sum(
            len((payload.pick_language(n.get(name), language) or "").encode())
            for name in ("content", "title", "subtitle")
        )
        best = max(best, (size, language), key=lambda t: t[0])
    return best[1]
