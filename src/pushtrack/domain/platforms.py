"""Platforms: Pushwoosh's integer device types and the names its statistics methods use.

getMessageLog spells platforms in lower case with spaces (``"huawei android"``),
messages:list in upper case with underscores (``"HUAWEI_ANDROID"``); both are read
through ``from_name``, which folds one spelling into the other, and written through
``name_of``. The filter language (``A("APP", ["IOS", "OSX"])``) has spellings of its
own: ``FILTER_NAMES`` and ``filter_code``. Every device type → name table is here.
"""

from __future__ import annotations

from enum import IntEnum


class Platform(IntEnum):
    IOS = 1
    BLACKBERRY = 2
    ANDROID = 3
    WINDOWS_PHONE = 5
    MACOS = 7
    WINDOWS = 8
    AMAZON = 9
    SAFARI = 10
    CHROME = 11
    FIREFOX = 12
    INTERNET_EXPLORER = 13
    HUAWEI = 17
    SMS = 18
    XIAOMI = 19
    WHATSAPP = 21

    @property
    def api_name(self) -> str:
        return _NAMES[self]


_NAMES: dict[Platform, str] = {
    Platform.IOS: "ios",
    Platform.BLACKBERRY: "blackberry",
    Platform.ANDROID: "android",
    Platform.WINDOWS_PHONE: "windows phone",
    Platform.MACOS: "osx",
    Platform.WINDOWS: "windows",
    Platform.AMAZON: "amazon",
    Platform.SAFARI: "safari",
    Platform.CHROME: "chrome",
    Platform.FIREFOX: "firefox",
    Platform.INTERNET_EXPLORER: "ie",
    Platform.HUAWEI: "huawei android",
    # Pushwoosh's device types for these; no gateway here serves them.
    Platform.SMS: "sms",
    Platform.XIAOMI: "xiaomi",
    Platform.WHATSAPP: "whatsapp",
}

BY_NAME: dict[str, Platform] = {name: platform for platform, name in _NAMES.items()}

#: Platforms Pushwoosh's statistics filters name that have no device type here
#: (registerDevice accepts none for them), so no device or delivery is ever on one:
#: a filter naming one is understood and selects nothing.
DEVICELESS: frozenset[str] = frozenset({"email", "baidu android"})

#: Device types accepted by registerDevice and createMessage.
ACCEPTED: frozenset[int] = frozenset(int(p) for p in Platform)

#: The accepted device types as error messages list them: ``1 (ios), 3 (android), ...``.
LISTED: str = ", ".join(f"{int(p)} ({p.api_name})" for p in Platform)


def unknown_type(field: str, value: object) -> str:
    """The error text for a device type that is none of ``ACCEPTED``."""
    return f"{field}: {value} is not a known device type; known: {LISTED}"


#: The name of a device type that is no ``Platform`` (0 where a delivery matched no
#: device, or a type no longer accepted): one spelling everywhere (ours).
UNKNOWN = "unknown"


def platform_of(device_type: int) -> Platform | None:
    """The platform of a device type, or None when it is no ``Platform``."""
    try:
        return Platform(device_type)
    except ValueError:
        return None


def name_of(device_type: int) -> str:
    """The statistics name of a device type (``3`` -> ``"android"``); ``UNKNOWN`` when it
    is no ``Platform``. getMessageLog, the CLI and the dispatcher's descriptions all
    spell platforms through this."""
    platform = platform_of(device_type)
    return UNKNOWN if platform is None else platform.api_name


def normal_name(name: str) -> str:
    """A platform name as ``BY_NAME`` spells it: ``"HUAWEI_ANDROID"`` -> ``"huawei android"``."""
    return " ".join(name.replace("_", " ").lower().split())


def from_name(name: str) -> Platform | None:
    """The platform a statistics name (either spelling, any case) stands for, or None."""
    return BY_NAME.get(normal_name(name))


def is_deviceless(name: str) -> bool:
    """Is ``name`` a Pushwoosh platform no device here can be on (see ``DEVICELESS``)?"""
    return normal_name(name) in DEVICELESS


# -- the filter language's spelling: ``A("APP", ["IOS", "ANDROID"])`` ----------------------

#: The name the filter language's canonical text (``targeting.render``) writes for each
#: device type it names, as Pushwoosh's Python client writes them: upper case, macOS
#: as ``OSX``, and two retired phones that are no ``Platform`` (no device is ever on
#: them). The others (SMS, Xiaomi, WhatsApp) are written as numbers.
FILTER_NAMES: dict[int, str] = {
    Platform.IOS: "IOS",
    Platform.BLACKBERRY: "BLACKBERRY",
    Platform.ANDROID: "ANDROID",
    4: "ASHA",
    Platform.WINDOWS_PHONE: "WINDOWS_PHONE",
    6: "BADA",
    Platform.MACOS: "OSX",
    Platform.WINDOWS: "WINDOWS",
    Platform.AMAZON: "AMAZON",
    Platform.SAFARI: "SAFARI",
    Platform.CHROME: "CHROME",
    Platform.FIREFOX: "FIREFOX",
    Platform.INTERNET_EXPLORER: "INTERNET_EXPLORER",
    Platform.HUAWEI: "HUAWEI",
}

#: Names a filter's platform list may use: ``FILTER_NAMES`` and a few spellings of our own.
FILTER_CODES: dict[str, int] = {
    **{name: int(code) for code, name in FILTER_NAMES.items()},
    "WP": int(Platform.WINDOWS_PHONE),
    "MACOS": int(Platform.MACOS),
    "MAC": int(Platform.MACOS),
    "IE": int(Platform.INTERNET_EXPLORER),
    "HUAWEI_ANDROID": int(Platform.HUAWEI),
}

#: Device types a filter's platform list may give as numbers (ours).
FILTER_NUMBERS: frozenset[int] = frozenset({*FILTER_NAMES, *ACCEPTED})


def filter_code(name: str) -> int | None:
    """The device type a filter's platform name stands for (any case; spaces or hyphens
    for underscores), or None."""
    return FILTER_CODES.get(name.strip().upper().replace(" ", "_").replace("-", "_"))
