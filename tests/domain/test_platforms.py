"""Device types and their names."""

from __future__ import annotations

from pushtrack.domain import platforms
from pushtrack.domain.platforms import UNKNOWN, Platform, name_of, platform_of


def test_every_platform_has_its_name() -> None:
    assert name_of(3) == "android"
    assert name_of(17) == "huawei android"
    assert {name_of(int(p)) for p in Platform} == {p.api_name for p in Platform}


def test_a_type_that_is_no_platform_has_one_fallback() -> None:
    assert platform_of(0) is None
    assert platform_of(4) is None
    assert platform_of(11) is Platform.CHROME
    assert name_of(0) == name_of(4) == UNKNOWN == "unknown"


def test_filter_names_read_back() -> None:
    """The filter language's names (``A("APP", ["OSX"])``) live beside the others, and
    every name its canonical text writes reads back as the same device type."""
    for code, name in platforms.FILTER_NAMES.items():
        assert platforms.filter_code(name) == code
        assert platforms.filter_code(name.lower().replace("_", " ")) == code
    assert platforms.FILTER_NAMES[Platform.MACOS] == "OSX"
    assert platforms.filter_code("huawei-android") == Platform.HUAWEI
    assert platforms.filter_code("sms") is None  # written as a number: 18
    assert {18, 19, 21, 4, 6} <= platforms.FILTER_NUMBERS
    assert 14 not in platforms.FILTER_NUMBERS
