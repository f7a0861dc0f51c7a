"""Device types and their names."""

from __future__ import annotations

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
