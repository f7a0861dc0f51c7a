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

from pushtrack.config import Settings
from pushtrack.jobs.runner import Done, Handler, Outcome
from pushtrack.store import Store
from pushtrack.store.jobs import Job
from pushtrack.store.messages import EXPAND

KIND = EXPAND


def handler(settings: Settings, store: Store) -> Handler:
    """The ``expand_audience`` job: params ``message_id``."""

    async def handle(job: Job) -> Outcome:
        message_id = int(job.params["message_id"])
        exp = await store.expansion.load(message_id)
        if exp is None:
            return Done({"message": "gone"})
        after = exp.cursor
        written = 0
        status = None
        while after is not None:
            step = await store.expansion.step(exp, after, settings.expansion_batch)
            if not step.won:  # moved by someone else (or cancelled): look again
                now = await store.expansion.load(message_id)
                after = now.cursor if now is not None else None
                continue
            written += step.deliveries
            after, status = step.cursor, step.status
        return Done({"deliveries": written, "message": status})

    return handle
