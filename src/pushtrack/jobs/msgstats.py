"""getMsgStats, the scheduled legacy statistics: hourly rows per Pushwoosh action."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pushtrack.config import Settings
from pushtrack.domain.timeutil import to_wire
from pushtrack.jobs.runner import Done, Handler, Outcome
from pushtrack.store import Store
from pushtrack.store.jobs import Job
from pushtrack.store.retention import window_start
from pushtrack.store.stats import Totals

KIND = "msg_stats"

#: Pushwoosh's action names and the counter each one reads.
ACTIONS: tuple[tuple[str, str], ...] = (
    ("send", "sends"),
    ("delivery", "deliveries"),
    ("open", "opens"),
    ("inboxopen", "inbox_opens"),
)


def hourly_report(totals: Sequence[Totals]) -> dict[str, Any]:
    """``{"formatter": "hourly", "rows": [...], "conversion": {...}}`` from hourly counters.

    Every hour that has any counter gets one row per action (platforms summed).
    """
    hours: dict[int, dict[str, int]] = {}
    overall = {column: 0 for _, column in ACTIONS}
    overall["errors"] = 0
    for t in totals:
        sums = hours.setdefault(t.bucket, {column: 0 for _, column in ACTIONS})
        for column in sums:
            sums[column] += getattr(t, column)
        for column in overall:
            overall[column] += getattr(t, column)
    rows = [
        {"datetime": to_wire(hour), "action": action, "count": sums[column]}
        for hour, sums in sorted(hours.items())
        for action, column in ACTIONS
    ]
    return {"formatter": "hourly", "rows": rows, "conversion": overall}


def handler(settings: Settings, store: Store) -> Handler:
    """The ``msg_stats`` job: params ``message_id``."""

    async def handle(job: Job) -> Outcome:
        since = window_start(store.clock(), settings.retention_days)
        totals = await store.stats.counters(job.params["message_id"], "hour", since)
        return Done(hourly_report(totals))

    return handle
