"""The shared HTTP helpers: Retry-After, ttl options."""

from __future__ import annotations

import email.utils

import pytest

from pushtrack.delivery._http import parse_retry_after, positive_ttl

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 2.5 ", 2.5),
        ("0", 0.0),
        ("-5", 0.0),
        (email.utils.formatdate(NOW + 90, usegmt=True), 90.0),
        (email.utils.formatdate(NOW - 90, usegmt=True), 0.0),
        ("Wed, 21 Oct 2015 07:28:00", None),  # no zone: ambiguous
        ("nan", None),
        ("tomorrow", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == expected


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"ttl": 60}, 60),
        ({"ttl": "60"}, 60),
        ({"ttl": 1.9}, 1),
        ({"ttl": -3}, 0),
        ({"ttl": True}, None),
        ({"ttl": "soon"}, None),
        ({}, None),
        ({"ttl": None}, None),
    ],
)
def test_positive_ttl(options: dict[str, object], expected: int | None) -> None:
    assert positive_ttl(options) == expected
