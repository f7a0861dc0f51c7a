"""Probes for supervisors: ``/healthz`` (the process answers) and ``/readyz`` (it can
serve); ``/metrics`` for Prometheus.

``/health`` (kept as it was) and ``/healthz`` touch nothing. ``/readyz`` asks the
store one cheap question, within ``READY_TIMEOUT_S``: which migrations the database
has. A store that does not answer, or whose schema is not the one this code
expects, is a 503 with the problems in plain words.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from pushtrack import metrics as m
from pushtrack.api.context import Context
from pushtrack.store.base import StoreError
from pushtrack.store.jobs import JobState

#: The longest a readiness probe waits for the store.
READY_TIMEOUT_S = 5.0


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def readyz(ctx: Context) -> Callable[[Request], Awaitable[Response]]:
    async def probe(request: Request) -> Response:
        problems = await _problems(ctx)
        if problems:
            return JSONResponse({"status": "unavailable", "problems": problems}, status_code=503)
        return JSONResponse({"status": "ready"})

    return probe


async def _problems(ctx: Context) -> list[str]:
    try:
        applied, known = await asyncio.wait_for(ctx.store.schema_versions(), READY_TIMEOUT_S)
    except TimeoutError:
        return [f"store: no answer within {READY_TIMEOUT_S:g} s"]
    except StoreError as exc:
        return [f"store: {exc}"]
    except Exception as exc:  # noqa: BLE001 - a probe reports every fault, it never raises
        return [f"store: unreachable ({type(exc).__name__})"]
    problems = []
    if applied != known:
        problems.append(f"store: schema at migration {applied}, this pushtrack expects {known}")
    if ctx.worker_alive is not None and not ctx.worker_alive():
        problems.append("worker: the worker of this process has stopped")
    return problems


def metrics(ctx: Context) -> Callable[[Request], Awaitable[Response]]:
    """Prometheus' text format; the job queue gauges are read from the store first
    (within ``READY_TIMEOUT_S``; a store that does not answer leaves them as they were)."""

    async def scrape(request: Request) -> Response:
        try:
            depth = await asyncio.wait_for(ctx.store.jobs.queue_depth(), READY_TIMEOUT_S)
        except (TimeoutError, StoreError):
            depth = None
        if depth is not None:
            m.JOBS_QUEUED.clear()
            m.JOB_OLDEST_SECONDS.clear()
            now = ctx.store_clock()
            for q in depth:
                m.JOBS_QUEUED.labels(q.kind, "due").set(q.due)
                m.JOBS_QUEUED.labels(q.kind, JobState.RUNNING).set(q.running)
                waited = 0.0 if q.oldest_due_at is None else (now - q.oldest_due_at) / 1e6
                m.JOB_OLDEST_SECONDS.labels(q.kind).set(max(0.0, waited))
        try:
            failing = await asyncio.wait_for(ctx.store.webhooks.failing_count(), READY_TIMEOUT_S)
        except (TimeoutError, StoreError):
            failing = None
        if failing is not None:
            m.WEBHOOKS_FAILING.set(failing)
        body = await asyncio.to_thread(generate_latest)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return scrape
