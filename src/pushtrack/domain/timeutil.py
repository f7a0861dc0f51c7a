"""Time on the wire ("YYYY-MM-DD HH:MM:SS", UTC) and in the store (integer microseconds)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

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
