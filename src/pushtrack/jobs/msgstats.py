"""getMsgStats, the scheduled legacy statistics: rows per Pushwoosh action and time bucket.

The bucket width (Pushwoosh's ``formatter``) follows the time span the report
covers, by Pushwoosh's rule for its scheduled statistics: ``yearly`` over a year,
``monthly`` over a month, ``daily`` over a day, ``hourly`` over three hours,
``minutely`` otherwise. **(ours)** The span is the message's recorded activity
inside the retention window: from the start of the minute of its first counted
event to the end of the minute of its last.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from pushtrack.config import Settings
from pushtrack.domain.jobs import JobKind, MsgStatsParams
from pushtrack.domain.timeutil import DAY_US, HOUR_US, US, to_wire, window_start
from pushtrack.jobs.runner import Done, Handler, Outcome
from pushtrack.store import Store
from pushtrack.store.jobs import Job
from pushtrack.store.stats import MINUTE_US, Interval, Totals

KIND = JobKind.MSG_STATS

#: Pushwoosh's action names and the counter each one reads.
ACTIONS: tuple[tuple[str, str], ...] = (
    ("send", "sends"),
    ("delivery", "deliveries"),
    ("open", "opens"),
    ("inboxopen", "inbox_opens"),
)

MINUTELY, HOURLY, DAILY, MONTHLY, YEARLY = "minutely", "hourly", "daily", "monthly", "yearly"


def _datetime(ts_us: int) -> datetime:
    return datetime.fromtimestamp(ts_us // US, UTC)


def _us(dt: datetime) -> int:
    return int(dt.timestamp()) * US


def _add_months(ts_us: int, months: int) -> int:
    """``ts_us`` moved ``months`` calendar months on (the day clamped to the month's end)."""
    dt = _datetime(ts_us)
    index = dt.year * 12 + dt.month - 1 + months
    year, month = divmod(index, 12)
    month += 1
    following = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=UTC)
    last_day = (following - datetime(year, month, 1, tzinfo=UTC)).days
    moved = dt.replace(year=year, month=month, day=min(dt.day, last_day))
    return _us(moved) + ts_us % US


def formatter(start: int, end: int) -> str:
    """Pushwoosh's formatter for a report covering ``[start, end)`` (microseconds)."""
    if end > _add_months(start, 12):
        return YEARLY
    if end > _add_months(start, 1):
        return MONTHLY
    if end - start > DAY_US:
        return DAILY
    if end - start > 3 * HOUR_US:
        return HOURLY
    return MINUTELY


def bucket(ts_us: int, fmt: str) -> int:
    """The start of the ``fmt`` bucket holding ``ts_us`` (UTC)."""
    if fmt == MINUTELY:
        return ts_us - ts_us % MINUTE_US
    if fmt == HOURLY:
        return ts_us - ts_us % HOUR_US
    if fmt == DAILY:
        return ts_us - ts_us % DAY_US
    dt = _datetime(ts_us)
    first = dt.replace(month=1 if fmt == YEARLY else dt.month, day=1, hour=0, minute=0, second=0)
    return _us(first)


def report(totals: Sequence[Totals], fmt: str) -> dict[str, Any]:
    """``{"formatter", "rows", "conversion"}`` from counters finer than ``fmt``'s buckets.

    Every bucket that has any counter gets one row per action (platforms summed),
    its ``count`` a string as Pushwoosh sends it; ``conversion`` holds the totals
    of sends and opens, and no goal events (``events`` is always empty).
    """
    buckets: dict[int, dict[str, int]] = {}
    for t in totals:
        sums = buckets.setdefault(bucket(t.bucket, fmt), {column: 0 for _, column in ACTIONS})
        for column in sums:
            sums[column] += getattr(t, column)
    rows = [
        {"datetime": to_wire(start), "action": action, "count": str(sums[column])}
        for start, sums in sorted(buckets.items())
        for action, column in ACTIONS
    ]
    return {
        "formatter": fmt,
        "rows": rows,
        "conversion": {
            "send": sum(t.sends for t in totals),
            "open": sum(t.opens for t in totals),
            "events": [],
        },
    }


def handler(settings: Settings, store: Store) -> Handler:
    """The ``msg_stats`` job: params ``message_id``."""

    async def handle(job: Job) -> Outcome:
        message_id = job.params_as(MsgStatsParams).message_id
        since = window_start(store.clock(), settings.retention_days)
        span = await store.stats.activity_span(message_id, since)
        if span is None:
            return Done(report([], MINUTELY))
        fmt = formatter(span[0], span[1] + MINUTE_US)
        # minutes for a minutely report; hours, summed further, for the others
        interval: Interval = "minute" if fmt == MINUTELY else "hour"
        return Done(report(await store.stats.counters(message_id, interval, since), fmt))

    return handle
