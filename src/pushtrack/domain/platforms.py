"""Platforms: Pushwoosh's integer device types and the lower-case names of the v2 API."""

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
    TYPE_18 = 18
    TYPE_19 = 19
    TYPE_21 = 21

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
    Platform.INTERNET_EXPLORER: "internet explorer",
    Platform.HUAWEI: "huawei android",
    # Pushwoosh lists these codes too; no gateway here serves them.
    Platform.TYPE_18: "type 18",
    Platform.TYPE_19: "type 19",
    Platform.TYPE_21: "type 21",
}

BY_NAME: dict[str, Platform] = {name: platform for platform, name in _NAMES.items()}

#: Device types accepted by registerDevice and createMessage.
ACCEPTED: frozenset[int] = frozenset(int(p) for p in Platform)


def from_name(name: str) -> Platform | None:
    """The platform for a v2 lower-case name, or None."""
    return BY_NAME.get(name.strip().lower())
