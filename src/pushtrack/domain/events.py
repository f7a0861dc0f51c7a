"""Conditions on the attributes of events devices post (getEventStatistics' ``attributes``).

``{"name": "plan", "operator": "EQ", "values": ["gold"]}``. Operators: ``EQ``
and ``IN`` (the attribute equals one of the values; for a list attribute, one
of its items does), ``NOTEQ`` and ``NOTIN`` (none does), ``GTE`` and ``LTE``
(a number, compared with the one value), ``BETWEEN`` (a number within two
values). Values compare by their text, the way SDKs send them (the iOS SDK
sends numbers as strings): ``5`` equals ``"5"``, ``true`` equals ``"true"``.
An event without the attribute matches no condition on it (ours).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import msgspec


class AttributeFilter(msgspec.Struct, frozen=True):
    """One condition: ``name operator values``."""

    name: str
    operator: str
    values: tuple[Any, ...]


#: operator -> how many values it takes (None: one or more)
OPERATORS: dict[str, int | None] = {
    "EQ": 1,
    "NOTEQ": 1,
    "IN": None,
    "NOTIN": None,
    "GTE": 1,
    "LTE": 1,
    "BETWEEN": 2,
}


def text(value: Any) -> str:
    """A scalar as SDKs would send it in text: ``true``, ``5``, ``2.5``, ``gold``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def problem(f: AttributeFilter) -> str | None:
    """What is wrong with a condition, or None."""
    if f.operator not in OPERATORS:
        return f"operator must be one of {', '.join(OPERATORS)}"
    wanted = OPERATORS[f.operator]
    if wanted is None and not f.values:
        return f"{f.operator} takes one or more values"
    if wanted is not None and len(f.values) != wanted:
        return f"{f.operator} takes {wanted} value{'s' if wanted > 1 else ''}"
    if f.operator in ("GTE", "LTE", "BETWEEN") and any(number(v) is None for v in f.values):
        return f"{f.operator} compares numbers"
    for v in f.values:
        if isinstance(v, dict | list) or v is None:
            return "values must be strings, numbers or booleans"
    return None


def _holds(f: AttributeFilter, value: Any) -> bool:
    items = value if isinstance(value, list) else [value]
    if f.operator in ("EQ", "IN", "NOTEQ", "NOTIN"):
        wanted = {text(v) for v in f.values}
        hit = any(text(item) in wanted for item in items if not isinstance(item, dict | list))
        return hit if f.operator in ("EQ", "IN") else not hit
    bounds = [number(v) for v in f.values]
    for item in items:
        n = number(item)
        if n is None:
            continue
        if f.operator == "GTE" and bounds[0] is not None and n >= bounds[0]:
            return True
        if f.operator == "LTE" and bounds[0] is not None and n <= bounds[0]:
            return True
        if (
            f.operator == "BETWEEN"
            and bounds[0] is not None
            and bounds[1] is not None
            and bounds[0] <= n <= bounds[1]
        ):
            return True
    return False


def matcher(filters: Sequence[AttributeFilter]) -> Callable[[dict[str, Any]], bool]:
    """True for the attributes that meet every condition."""

    def keep(attributes: dict[str, Any]) -> bool:
        for f in filters:
            if f.name not in attributes or attributes[f.name] is None:
                return False
            if not _holds(f, attributes[f.name]):
                return False
        return True

    return keep
