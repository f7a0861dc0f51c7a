"""getEventStatistics, a scheduled request: how often an event was posted, by the hour."""

from __future__ import annotations

from typing import Any

from pushtrack.config import Settings
from pushtrack.domain.events import AttributeFilter, matcher
from pushtrack.domain.jobs import EventStatsParams, JobKind
from pushtrack.domain.timeutil import HOUR_US, to_wire, window_start
from pushtrack.jobs.runner import Done, Handler, Outcome
from pushtrack.store import Store
from pushtrack.store.jobs import Job

KIND = JobKind.EVENT_STATS


def hourly_rows(counts: dict[int, int], start: int, end: int) -> list[dict[str, Any]]:
    """One row per hour of ``[start, end)``, in Pushwoosh's shape: ``{"date", "count"}``."""
    return [
        {"date": to_wire(hour)[:16], "count": counts.get(hour, 0)}
        for hour in range(start, end, HOUR_US)
    ]


def handler(settings: Settings, store: Store) -> Handler:
    """The ``event_stats`` job (``EventStatsParams``)."""

    async def handle(job: Job) -> Outcome:
        p = job.params_as(EventStatsParams)
        filters = [AttributeFilter(a.name, a.operator, tuple(a.values)) for a in p.attributes]
        # only what is inside the retention window exists (the purge may lag behind)
        since = max(p.start, window_start(store.clock(), settings.retention_days))
        counts = await store.devices.event_counts(
            p.app_id, p.event, since, p.end, matcher(filters) if filters else None
        )
        return Done(hourly_rows(counts, p.start, p.end))

    return handle
