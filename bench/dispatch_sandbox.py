"""dispatch-sandbox: deliveries per second from queued to delivered through the sandbox gateway.

Deliveries are queued through the store facade (``Store.create_messages``,
which writes the dispatch jobs); the application sends every platform through
the sandbox gateway with no failures and no latency, so what is measured is the
pipeline itself: claiming jobs, loading due deliveries, building payloads,
recording ``sent`` and the outcomes. A real ``pushtrack worker`` process does
the work (on PostgreSQL two of them, the engine's scale-out claim), timed from
its start-up line until every delivery has ended.
"""

from __future__ import annotations

from typing import Any

from bench.dispatching import CONCURRENCY, drain
from bench.harness import Bench, Figure
from bench.tenant import (
    PLATFORMS,
    Tenant,
    create_deliveries,
    create_tenant,
    register_devices,
    with_store,
)

NAME = "dispatch-sandbox"
#: Worker processes per engine: SQLite has one writer per file; PostgreSQL's target is
#: measured with two workers sharing the database.
WORKERS = {"sqlite": 1, "postgresql": 2}


def _populate(url: str, devices: int, deliveries: int) -> Tenant:
    async def go(store: Any) -> Tenant:
        tenant = await create_tenant(store)
        for platform in PLATFORMS:
            await store.dispatch.set_gateway("default", tenant.app.code, platform, "sandbox", {})
        await register_devices(store, tenant.app, devices)
        await create_deliveries(store, tenant.app, deliveries, devices)
        return tenant

    return with_store(url, go)


def run(bench: Bench) -> Figure:
    total = bench.size(200_000, 5_000)
    devices = bench.size(10_000, 1_000)
    workers = WORKERS.get(bench.engine, 1)
    fig = Figure(NAME, unit="deliveries/s")
    fig.sizes = {
        "deliveries": total,
        "devices": devices,
        "worker_processes": workers,
        "worker_concurrency": CONCURRENCY,
        "sandbox": "failure_rate 0, retry_rate 0, latency 0",
        "queued_via": "store facade (Store.create_messages)",
    }
    url = bench.database(NAME)
    _populate(url, devices, total)
    done = drain(bench, url, total, NAME, workers=workers)
    if done.delivered != total:
        raise RuntimeError(f"{done.delivered} of {total} delivered ({done.failed} failed)")
    fig.value = total / done.seconds
    fig.peak_rss_mb = done.peak_rss_mb
    fig.check(("≥ 50,000/s", fig.value >= 50_000))
    if not fig.target_met:
        fig.notes += done.profile
    return fig
