"""Building the worker: every job kind and the handler that runs it."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from pushtrack.config import Settings
from pushtrack.delivery import outbound
from pushtrack.domain.jobs import JobKind
from pushtrack.jobs import eventstats, expansion, msgstats, retention, tracklog, webhooks
from pushtrack.jobs.dispatch import Dispatcher, RetryPolicy
from pushtrack.jobs.runner import Handler, Worker
from pushtrack.sealing import Sealer
from pushtrack.store import Store

log = logging.getLogger("pushtrack.worker")


def handlers(settings: Settings, store: Store) -> dict[str, Handler]:
    """Each feature contributes the handlers of its job kinds here (besides dispatch)."""
    table: dict[str, Handler] = {
        tracklog.KIND: tracklog.handler(settings, store),
        msgstats.KIND: msgstats.handler(settings, store),
        eventstats.KIND: eventstats.handler(settings, store),
        retention.KIND: retention.handler(settings, store),
        expansion.KIND: expansion.handler(settings, store),
    }
    return table


class ServiceWorker(Worker):
    """The worker with its periodic jobs: on start it makes sure they exist. Webhook
    endpoints run beside it in a pool of their own (``hooks``), so a slow endpoint never
    takes a slot sending or exports need."""

    hooks: Worker | None = None

    async def run(self, stop: asyncio.Event) -> None:
        try:
            await retention.ensure_scheduled(self.store)
        except Exception:
            log.exception("could not schedule the retention job; the next start will")
        if self.hooks is None:
            await super().run(stop)
            return
        side = asyncio.create_task(self.hooks.run(stop))
        try:
            await super().run(stop)
        finally:
            if not stop.is_set():
                side.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await side


def build_worker(
    settings: Settings, store: Store, *, poll_seconds: float = Worker.poll_seconds
) -> Worker:
    """A worker for every job kind, shaped by ``settings``; ``poll_seconds`` is how long
    it waits for new jobs when it finds none (tests shorten it)."""
    dispatcher = Dispatcher(
        store,
        policy=RetryPolicy.of(settings),
        sealer=Sealer.load(settings),
        outbound_allow=outbound.parse_allow(settings.outbound_allow),
    )
    hook_handler, sender = webhooks.handler(settings, store)
    worker = ServiceWorker(
        store,
        {JobKind.DISPATCH: dispatcher.handle, **handlers(settings, store)},
        concurrency=settings.worker_concurrency,
        lease_seconds=settings.worker_lease_seconds,
        poll_seconds=poll_seconds,
        closers=[dispatcher.aclose],
    )
    worker.hooks = Worker(
        store,
        {webhooks.KIND: hook_handler},
        concurrency=settings.webhook_concurrency,
        lease_seconds=settings.worker_lease_seconds,
        # endpoints that have everything hand their jobs back for webhook_poll_ms; new
        # endpoints wait at most this long (claims are writes: not 50 a second)
        poll_seconds=max(poll_seconds, 0.25),
        closers=[sender.aclose],
        # an endpoint's job hands itself back after a failed POST; one that raises
        # (the store unreachable) is tried again, never given up
        max_attempts=2**31,
    )
    return worker
