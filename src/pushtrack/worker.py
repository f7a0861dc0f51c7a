"""Building the worker: every job kind and the handler that runs it."""

from __future__ import annotations

from pushtrack.config import Settings
from pushtrack.delivery.dispatcher import Dispatcher
from pushtrack.jobs.runner import Handler, Worker
from pushtrack.store import Store


def handlers(settings: Settings, store: Store) -> dict[str, Handler]:
    """Each feature contributes the handlers of its job kinds here (besides dispatch)."""
    table: dict[str, Handler] = {}
    return table


def build_worker(settings: Settings, store: Store, **options: float) -> Worker:
    """A worker for every job kind; ``options`` override Worker fields (tests)."""
    dispatcher = Dispatcher(
        store,
        max_attempts=settings.max_attempts,
        backoff_seconds=settings.retry_backoff_seconds,
    )
    worker = Worker(
        store,
        {"dispatch": dispatcher.handle, **handlers(settings, store)},
        concurrency=settings.worker_concurrency,
        lease_seconds=settings.worker_lease_seconds,
        closers=[dispatcher.aclose],
    )
    for name, value in options.items():
        setattr(worker, name, value)
    return worker
