"""Time on the wire ("YYYY-MM-DD HH:MM:SS", UTC) and in the store (integer microseconds)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

US = 1_000_000
HOUR_US = 3600 * US
DAY_US = 86400 * US


def now_us() -> int:
    return time.time_ns() // 1000


def to_wire(ts_us: int) -> str:
    return datetime.fromtimestamp(ts_us // US, UTC).strftime("%Y-%m-%d %H:%M:%S")


def parse_wire(text: str) -> int:
    """Parse "YYYY-MM-DD HH:MM:SS" (UTC) into microseconds; ValueError if malformed."""
    dt = datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    return int(dt.timestamp()) * US


def parse_day(text: str) -> int:
    """Parse "YYYY-MM-DD" into the microsecond of that UTC day's start."""
    dt = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    return int(dt.timestamp()) * US


def day_of(ts_us: int) -> int:
    return ts_us - ts_us % DAY_US


def window_start(now: int, days: int) -> int:
    """The first microsecond inside a retention window of ``days`` ending at ``now``."""
    return now - days * DAY_US


def zone(name: str) -> ZoneInfo | None:
    """The IANA time zone of that name, or None if there is none."""
    if not name or name.startswith(("/", ".")) or ".." in name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def zone_offset(name: str, at_us: int) -> int | None:
    """The UTC offset (seconds) of a time zone at an instant, or None for an unknown zone."""
    found = zone(name)
    if found is None:
        return None
    offset = datetime.fromtimestamp(at_us // US, UTC).astimezone(found).utcoffset()
    return int(offset.total_seconds()) if offset is not None else 0


def local_to_utc(wall_us: int, offset: int | None, zone_name: str | None) -> int:
    """The instant a device's clock shows ``wall_us`` (a wall-clock time read as UTC).

    With a zone name, that zone's offset at that wall-clock time (summer time
    included); otherwise the fixed ``offset`` in seconds (none: UTC). A time the
    clocks skip takes the offset from before the change; a time they repeat, its
    first occurrence.
    """
    found = zone(zone_name) if zone_name else None
    if found is not None:
        wall = datetime.fromtimestamp(wall_us // US, UTC).replace(tzinfo=found, fold=0)
        return int(wall.timestamp()) * US + wall_us % US
    return wall_us - (offset or 0) * US
