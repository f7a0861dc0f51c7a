"""Tag types as Pushwoosh defines them: stored values, wire values, what a condition means.

A tag belongs to one application and has one type. A device's value of a tag
is stored as rows ``(num, txt)``: one row for a scalar, one row per element
for a list. ``num`` is a 64-bit integer, ``txt`` a string:

=========  =====================================  =================================
type       stored                                 on the wire (getTags)
=========  =====================================  =================================
integer    num                                    the integer
string     txt                                    the string
list       txt, one row per element               list of strings, in stored order
date       num = seconds since the epoch (UTC)    ``"YYYY-MM-DD HH:MM:SS"`` (ours)
boolean    num = 0 or 1                           true / false
version    num = encoded, txt = as given          the string as given
decimal    num = value * 10**6 (6 decimals)         a number
=========  =====================================  =================================

``compile_condition`` turns ``(type, operator, operand)`` into a ``Predicate``
over those stored rows; the store writes the SQL. Semantics of our own:
``NOTEQ``/``NOTIN`` select only devices that have the tag (``NOTSET`` selects
those that do not); a list tag ``EQ`` with a scalar means "contains", with a
list "contains every one", ``IN`` "contains any", ``NOTIN`` "contains none";
a date operand is a whole day, minute or second as precise as written
(``"2024-05-01"`` is that UTC day), an integer date operand is a number of
days ago (``GTE 7``: at least seven days ago).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from enum import IntEnum
from typing import Any, Literal

import msgspec

from pushtrack.domain.targeting import NO_OPERAND, Operand, Scalar

#: Longest string tag value (and list element), in characters.
MAX_TEXT = 1024
#: Most elements in a list tag.
MAX_LIST_ITEMS = 200
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
DECIMAL_SCALE = 10**6
DAY_S = 86_400
VERSION_PART_MAX = 999_999
_YEAR_10000 = 253_402_300_800


class TagType(IntEnum):
    """Pushwoosh's tag type numbers (addTag ``type``)."""

    INTEGER = 1
    STRING = 2
    LIST = 3
    DATE = 4
    BOOLEAN = 5
    DECIMAL = 6
    VERSION = 7

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, value: Any) -> TagType | None:
        """A type from its number (1-7) or its name (``"integer"``...); None if neither."""
        if isinstance(value, bool):
            return None
        if isinstance(value, int):
            try:
                return cls(value)
            except ValueError:
                return None
        if isinstance(value, str):
            return cls.__members__.get(value.strip().upper())
        return None


#: Comparison operators allowed per type (NOTSET and ANY are allowed for every type).
OPERATORS_FOR: dict[TagType, frozenset[str]] = {
    TagType.INTEGER: frozenset({"EQ", "NOTEQ", "IN", "NOTIN", "GTE", "LTE", "BETWEEN"}),
    TagType.DATE: frozenset({"EQ", "NOTEQ", "IN", "NOTIN", "GTE", "LTE", "BETWEEN"}),
    TagType.VERSION: frozenset({"EQ", "NOTEQ", "IN", "NOTIN", "GTE", "LTE", "BETWEEN"}),
    TagType.DECIMAL: frozenset({"EQ", "NOTEQ", "IN", "NOTIN", "GTE", "LTE", "BETWEEN"}),
    TagType.STRING: frozenset({"EQ", "NOTEQ", "IN", "NOTIN"}),
    TagType.LIST: frozenset({"EQ", "IN", "NOTIN"}),
    TagType.BOOLEAN: frozenset({"EQ"}),
}

#: Types whose values live in ``num`` (the rest in ``txt``).
NUMERIC: frozenset[TagType] = frozenset(
    {TagType.INTEGER, TagType.DATE, TagType.BOOLEAN, TagType.VERSION, TagType.DECIMAL}
)


#: Built-in tags (Pushwoosh's names): string tags read from the device's own
#: columns (registerDevice sets them), not settable with setTags. Compared
#: with the string operators; ``Language`` case-insensitively.
BUILTIN: dict[str, str] = {
    "Language": "language",
    "Application Version": "app_version",
    "Device Model": "device_model",
    "OS Version": "os_version",
}


class TagValueError(ValueError):
    """A value or condition that does not fit a tag; ``message`` names the tag."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


# -- values as set by devices -------------------------------------------------------------

Row = tuple[int | None, str | None]


class ListChange(msgspec.Struct, frozen=True):
    """``{"operation": "append" | "remove", "value": [...]}`` on a list tag."""

    operation: Literal["append", "remove"]
    items: tuple[str, ...]


def infer_type(value: Any) -> TagType | None:
    """The type a tag gets from its first value, when nobody declared it.

    Dates and versions look like strings, so they must be declared first.
    """
    if isinstance(value, bool):
        return TagType.BOOLEAN
    if isinstance(value, int):
        return TagType.INTEGER
    if isinstance(value, float):
        return TagType.DECIMAL
    if isinstance(value, str):
        return TagType.STRING
    if isinstance(value, list) or (isinstance(value, dict) and "operation" in value):
        return TagType.LIST
    return None


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise TagValueError(f'tag "{name}": expected a string')
    if len(value) > MAX_TEXT:
        raise TagValueError(f'tag "{name}": longer than {MAX_TEXT} characters')
    return value


def _list_items(value: Any, name: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise TagValueError(f'tag "{name}": expected a list of strings')
    if len(value) > MAX_LIST_ITEMS:
        raise TagValueError(f'tag "{name}": more than {MAX_LIST_ITEMS} elements')
    items: list[str] = []
    for item in value:
        if not isinstance(item, str):
            raise TagValueError(f'tag "{name}": list elements must be strings')
        items.append(_text(item, name))
    return tuple(dict.fromkeys(items))


def _version(value: str, name: str) -> int:
    parts = value.strip().split(".")
    if not 1 <= len(parts) <= 3 or not all(p.isdigit() and p.isascii() for p in parts):
        raise TagValueError(f'tag "{name}": {value!r} is not a version (like "1.2.3")')
    numbers = [int(p) for p in parts] + [0] * (3 - len(parts))
    if any(n > VERSION_PART_MAX for n in numbers):
        raise TagValueError(f'tag "{name}": version parts must be at most {VERSION_PART_MAX}')
    return (numbers[0] * 1_000_000 + numbers[1]) * 1_000_000 + numbers[2]


_DATE_FORMATS = (
    ("%Y-%m-%d %H:%M:%S", 1),
    ("%Y-%m-%dT%H:%M:%S", 1),
    ("%Y-%m-%d %H:%M", 60),
    ("%Y-%m-%dT%H:%M", 60),
    ("%Y-%m-%d", DAY_S),
)


def parse_date(text: str) -> tuple[int, int] | None:
    """``(first second, seconds covered)`` of a date as written; None if it is not one."""
    stripped = text.strip().removesuffix("Z")
    for fmt, width in _DATE_FORMATS:
        try:
            parsed = datetime.strptime(stripped, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
        return int(parsed.timestamp()), width
    return None


def _date_value(value: Any, name: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        if not 0 <= value < _YEAR_10000:
            raise TagValueError(f'tag "{name}": timestamp out of range')
        return value
    if isinstance(value, str):
        parsed = parse_date(value)
        if parsed is not None:
            return parsed[0]
    raise TagValueError(f'tag "{name}": expected a date ("YYYY-MM-DD HH:MM") or a UNIX timestamp')


def _bool_value(value: Any) -> int | None:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int) and value in (0, 1):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return 1 if value.strip().lower() == "true" else 0
    return None


def _decimal_value(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TagValueError(f'tag "{name}": expected a number')
    if isinstance(value, float) and not math.isfinite(value):
        raise TagValueError(f'tag "{name}": expected a finite number')
    scaled = round(value * DECIMAL_SCALE)
    if not INT64_MIN <= scaled <= INT64_MAX:
        raise TagValueError(f'tag "{name}": number out of range')
    return int(scaled)


def stored_rows(tag_type: TagType, name: str, value: Any) -> list[Row] | ListChange:
    """The rows that hold ``value`` (a replacement), or a ``ListChange`` to apply.

    ``TagValueError`` names the tag when the value does not fit its type.
    ``None`` (removal) is handled by the caller.
    """
    if tag_type is TagType.LIST:
        if isinstance(value, dict):
            keys = set(value)
            if keys != {"operation", "value"}:
                raise TagValueError(
                    f'tag "{name}": a list change is {{"operation": "append" or "remove",'
                    ' "value": [...]}'
                )
            op = value["operation"]
            if op not in ("append", "remove"):
                raise TagValueError(f'tag "{name}": operation must be "append" or "remove"')
            items = value["value"]
            if isinstance(items, str):
                items = [items]
            return ListChange(operation=op, items=_list_items(items, name))
        return [(None, item) for item in _list_items(value, name)]
    if tag_type is TagType.STRING:
        return [(None, _text(value, name))]
    if tag_type is TagType.INTEGER:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TagValueError(f'tag "{name}": expected an integer')
        if not INT64_MIN <= value <= INT64_MAX:
            raise TagValueError(f'tag "{name}": integer out of range')
        return [(value, None)]
    if tag_type is TagType.BOOLEAN:
        flag = _bool_value(value)
        if flag is None:
            raise TagValueError(f'tag "{name}": expected true or false')
        return [(flag, None)]
    if tag_type is TagType.DATE:
        return [(_date_value(value, name), None)]
    if tag_type is TagType.VERSION:
        text = _text(value, name)
        return [(_version(text, name), text.strip())]
    return [(_decimal_value(value, name), None)]


def wire_value(tag_type: TagType, rows: Sequence[Row]) -> Any:
    """A stored value in its wire form (``rows`` in stored order)."""
    if tag_type is TagType.LIST:
        return [txt for _, txt in rows]
    num, txt = rows[0]
    if tag_type is TagType.STRING or tag_type is TagType.VERSION:
        return txt
    assert num is not None
    if tag_type is TagType.BOOLEAN:
        return bool(num)
    if tag_type is TagType.DATE:
        return datetime.fromtimestamp(num, UTC).strftime("%Y-%m-%d %H:%M:%S")
    if tag_type is TagType.DECIMAL:
        return num / DECIMAL_SCALE
    return num


# -- conditions --------------------------------------------------------------------------


class Present(msgspec.Struct, frozen=True):
    """The device has the tag (``ANY``); with ``negate``, it has not (``NOTSET``)."""

    negate: bool = False


class Values(msgspec.Struct, frozen=True):
    """Some stored value equals one of ``values`` (in column ``column``).

    ``every``: each of ``values`` is stored (a list containing them all).
    ``negate``: the device has the tag and no stored value is among ``values``.
    """

    column: Literal["num", "txt"]
    values: tuple[int, ...] | tuple[str, ...]
    negate: bool = False
    every: bool = False


class Ranges(msgspec.Struct, frozen=True):
    """Some stored ``num`` lies in one of the closed ranges (None: unbounded).

    ``negate``: the device has the tag and no stored value lies in any of them.
    """

    ranges: tuple[tuple[int | None, int | None], ...]
    negate: bool = False


Predicate = Present | Values | Ranges


def check_operator(tag_type: TagType, name: str, op: str) -> None:
    if op not in NO_OPERAND and op not in OPERATORS_FOR[tag_type]:
        raise TagValueError(f'operator {op} is not allowed for {tag_type.label} tag "{name}"')


def _shape(op: str, operand: Operand, name: str) -> tuple[Scalar, ...]:
    """The operand's values, checked against the operator's shape."""
    if op in ("IN", "NOTIN"):
        if not isinstance(operand, tuple) or not operand:
            raise TagValueError(f'tag "{name}": {op} needs a non-empty list')
        return operand
    if op == "BETWEEN":
        if not isinstance(operand, tuple) or len(operand) != 2:
            raise TagValueError(f'tag "{name}": BETWEEN needs a list of two values [min, max]')
        return operand
    if isinstance(operand, tuple):
        if op == "EQ" and operand:
            return operand
        raise TagValueError(f'tag "{name}": {op} needs a single value')
    assert operand is not None
    return (operand,)


def _span(tag_type: TagType, name: str, value: Scalar, now_s: int) -> tuple[int, int]:
    """The closed range of stored ``num`` values that a numeric operand stands for."""
    if tag_type is TagType.INTEGER:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TagValueError(f'tag "{name}": expected an integer, got {value!r}')
        return value, value
    if tag_type is TagType.DECIMAL:
        scaled = _decimal_value(value, name)
        return scaled, scaled
    if tag_type is TagType.VERSION:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise TagValueError(f'tag "{name}": expected a version, got {value!r}')
        encoded = _version(value, name)
        return encoded, encoded
    if tag_type is TagType.BOOLEAN:
        flag = _bool_value(value)
        if flag is None:
            raise TagValueError(
                f'tag "{name}": a boolean is compared with 0, 1, true, false, "true" or "false"'
            )
        return flag, flag
    # DATE: a date as precise as written, or a whole number of days ago.
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise TagValueError(f'tag "{name}": days ago must not be negative')
        # days_ago(v) = floor((now - v) / DAY) == value
        return now_s - (value + 1) * DAY_S + 1, now_s - value * DAY_S
    if isinstance(value, str):
        parsed = parse_date(value)
        if parsed is not None:
            return parsed[0], parsed[0] + parsed[1] - 1
    raise TagValueError(
        f'tag "{name}": expected a date ("YYYY-MM-DD HH:MM") or a number of days, got {value!r}'
    )


def _days_ago(tag_type: TagType, value: Scalar) -> bool:
    return tag_type is TagType.DATE and isinstance(value, int) and not isinstance(value, bool)


def _text_operand(tag_type: TagType, name: str, value: Scalar) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # Pushwoosh's client writes numbers for string tags too
    raise TagValueError(f'tag "{name}": expected a string, got {value!r}')


def compile_condition(
    tag_type: TagType, name: str, op: str, operand: Operand, now_s: int
) -> Predicate:
    """What ``T(name, op, operand)`` means over a tag of ``tag_type``.

    ``now_s`` (seconds, UTC) anchors "days ago" date operands.
    ``TagValueError`` names the tag when the operator or operand does not fit.
    """
    check_operator(tag_type, name, op)
    if op == "ANY":
        return Present()
    if op == "NOTSET":
        return Present(negate=True)
    values = _shape(op, operand, name)
    negate = op in ("NOTEQ", "NOTIN")
    if tag_type not in NUMERIC:
        texts = tuple(dict.fromkeys(_text_operand(tag_type, name, v) for v in values))
        every = tag_type is TagType.LIST and op == "EQ" and len(texts) > 1
        if op == "EQ" and len(texts) > 1 and not every:
            raise TagValueError(f'tag "{name}": EQ needs a single value')
        return Values(column="txt", values=texts, negate=negate, every=every)
    if op == "EQ" and len(values) > 1:
        raise TagValueError(f'tag "{name}": EQ needs a single value')
    spans = [_span(tag_type, name, v, now_s) for v in values]
    if op == "GTE" or op == "LTE":
        lo, hi = spans[0]
        # For "days ago" the order is reversed: more days ago is an earlier date.
        if (op == "GTE") != _days_ago(tag_type, values[0]):
            return Ranges(ranges=((lo, None),))
        return Ranges(ranges=((None, hi),))
    if op == "BETWEEN":
        (lo_a, hi_a), (lo_b, hi_b) = spans
        return Ranges(ranges=((min(lo_a, lo_b), max(hi_a, hi_b)),))
    if all(lo == hi for lo, hi in spans):
        nums = tuple(dict.fromkeys(lo for lo, _ in spans))
        return Values(column="num", values=nums, negate=negate)
    return Ranges(ranges=tuple(spans), negate=negate)


def check_condition(tag_type: TagType, name: str, op: str, operand: Operand) -> None:
    """Raise ``TagValueError`` if the condition does not fit the tag."""
    compile_condition(tag_type, name, op, operand, 0)
