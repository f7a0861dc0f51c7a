"""The retention job: keeps tracking data inside the window, every hour, forever.

One ``retention`` job exists per database (a fixed request id makes sure of
it); every worker makes sure of it when it starts. Its handler purges and
hands the job back due an hour later, so it never ends and never fails for
good: a failed purge is logged and tried again at the next round.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from pathlib import Path

from pushtrack.config import Settings
from pushtrack.domain.jobs import JobKind
from pushtrack.domain.timeutil import HOUR_US, to_wire, window_start
from pushtrack.jobs.runner import Handler, Later, Outcome
from pushtrack.store import Store
from pushtrack.store.jobs import Job
from pushtrack.store.retention import PurgeReport

log = logging.getLogger("pushtrack.jobs.retention")

KIND = JobKind.RETENTION
#: How often the periodic purge runs.
EVERY_US = HOUR_US


async def purge(store: Store, settings: Settings, now: int | None = None) -> PurgeReport:
    """Remove what is older than the window at ``now`` (the store's clock by default)."""
    now = store.clock() if now is None else now
    before = window_start(now, settings.retention_days)
    report = await store.retention.purge_rows(before)
    while files := await store.retention.stale_files(now, before):
        for record in files:
            await asyncio.to_thread(partial(Path(record.path).unlink, missing_ok=True))
        report.files += await store.retention.forget_files([f.id for f in files])
    return report


def summary(report: PurgeReport) -> str:
    """The purge as one log line: what was removed (counts above zero) and the window's
    start, e.g. ``retention: removed events: 2, jobs: 1 (older than 2024-05-01 12:00:00 UTC)``."""
    counts = [
        f"{name.replace('_', ' ')}: {value:,}"
        for name in report.__struct_fields__
        if name != "before" and (value := getattr(report, name))
    ]
    removed = ", ".join(counts) if counts else "nothing"
    return f"retention: removed {removed} (older than {to_wire(report.before)} UTC)"


async def ensure_scheduled(store: Store) -> None:
    """Make sure the one periodic retention job exists (and is not stuck as failed)."""
    await store.retention.ensure_periodic(KIND, store.clock())


def handler(settings: Settings, store: Store) -> Handler:
    async def handle(job: Job) -> Outcome:
        try:
            report = await purge(store, settings)
        except Exception:
            log.exception("retention purge failed; trying again next round")
        else:
            log.info("%s", summary(report))
        return Later(store.clock() + EVERY_US)

    return handle
