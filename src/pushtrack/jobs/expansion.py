"""The ``expand_audience`` job: an audience message's deliveries, a bounded step at a time.

createMessage records an audience message and this job; the job walks the
audience by device id in steps of ``expansion_batch`` devices (at most 1000),
each step its own short write transaction that also moves the message's
cursor (see ``store/expansion.py``). Stopped at any point (crash, SIGTERM,
lost lease, deleteMessage), it resumes from the cursor: every device gets
exactly one delivery. Each step enqueues the dispatch job of its deliveries,
so sending starts while the expansion goes on.
"""

from __future__ import annotations

import asyncio
import logging

from pushtrack.config import Settings
from pushtrack.domain.jobs import ExpandParams
from pushtrack.jobs.runner import Done, Handler, Outcome
from pushtrack.store import Store
from pushtrack.store.jobs import Job
from pushtrack.store.messages import EXPAND
from pushtrack.store.targeting import SelectionError

KIND = EXPAND
#: Pause after each step, as a multiple of the time its write transaction ran.
REST = 1.0

log = logging.getLogger("pushtrack.jobs")


def handler(settings: Settings, store: Store) -> Handler:
    """The ``expand_audience`` job: params ``message_id``."""

    async def handle(job: Job) -> Outcome:
        message_id = job.params_as(ExpandParams).message_id
        exp = await store.expansion.load(message_id)
        if exp is None:
            return Done({"message": "gone"})
        after = exp.cursor
        written = 0
        status = None
        while after is not None:
            try:
                read = await store.expansion.read(exp, after, settings.expansion_batch)
            except SelectionError as exc:
                # A tag the selection names was declared again with another type:
                # stop here rather than guess (what was written is still sent).
                log.error("message %s: expansion stopped: %s", message_id, exc.message)
                status = await store.expansion.stop(message_id)
                return Done({"deliveries": written, "message": status, "error": exc.message})
            step = await store.expansion.write(exp, read)
            # Rest as long as the write held the writer: other writers (callbacks,
            # fan-out) get at least half of it while an audience expands.
            await asyncio.sleep(step.held * REST)
            if not step.won:  # moved by someone else (or cancelled): look again
                now = await store.expansion.load(message_id)
                after = now.cursor if now is not None else None
                continue
            written += step.deliveries
            after, status = step.cursor, step.status
        return Done({"deliveries": written, "message": status})

    return handle
