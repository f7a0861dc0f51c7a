"""Building the worker: every job kind and the handler that runs it."""

from __future__ import annotations

from pushtrack.config import Settings
from pushtrack.jobs.runner import Handler, Worker
from pushtrack.store import Store


def handlers(settings: Settings, store: Store) -> dict[str, Handler]:
    """Each feature contributes the handlers of its job kinds here."""
    table: dict[str, Handler] = {}
    return table


def build_worker(settings: Settings, store: Store, **options: float) -> Worker:
    return Worker(store, handlers(settings, store), **options)  # type: ignore[arg-type]
