"""callbacks: pushStat requests per second, and latency, under keep-alive load.

Deliveries are made through the store facade (``Store.create_messages``), and
each request reports the open of a different one, as devices do, with a device
token, to a real ``pushtrack serve`` process. The baseline is the same requests
against a trivial route on the same server stack (``bench.baseline_app``),
which answers the same envelope.
"""

from __future__ import annotations

from typing import Any

from bench import loadgen
from bench.harness import Bench, Figure, percentile
from bench.procs import baseline_server, pushtrack_server
from bench.profiling import Profile
from bench.rawdb import Raw
from bench.tenant import Tenant, create_deliveries, create_tenant, register_devices, with_store

NAME = "callbacks"
CONNECTIONS = 16
WARMUP = 500


def _populate(url: str, devices: int, deliveries: int) -> Tenant:
    async def go(store: Any) -> Tenant:
        tenant = await create_tenant(store)
        await register_devices(store, tenant.app, devices)
        await create_deliveries(store, tenant.app, deliveries, devices)
        return tenant

    return with_store(url, go)


def ok(body: bytes) -> bool:
    return b'"status_code":200' in body


def run(bench: Bench) -> Figure:
    count = bench.size(100_000, 3_000)
    devices = bench.size(10_000, 1_000)
    fig = Figure(NAME, unit="req/s")
    fig.sizes = {
        "requests": count,
        "connections": CONNECTIONS,
        "devices": devices,
        "deliveries_via": "store facade (Store.create_messages)",
    }
    url = bench.database(NAME)
    tenant = _populate(url, devices, count + WARMUP)
    with Raw(url) as db:
        pairs = db.execute("SELECT hwid, hash FROM deliveries ORDER BY id")
    headers = {"Authorization": f"Token {tenant.device_token}"}
    reqs = [
        loadgen.post(
            "/json/1.3/pushStat",
            {"request": {"application": tenant.app.code, "hwid": h, "hash": p}},
            headers,
        )
        for h, p in pairs
    ]
    warm, work = reqs[:WARMUP], reqs[WARMUP:]

    with pushtrack_server(bench, url) as (server, port):
        loadgen.run(port, warm, connections=CONNECTIONS, check=ok)
        with Profile(bench, server.pid, "callbacks server") as prof:
            load = loadgen.run(port, work, connections=CONNECTIONS, check=ok)
        fig.peak_rss_mb = server.peak_rss_mb()
    if load.failures:
        raise RuntimeError(f"{load.failures} pushStat requests failed: {load.first_failure}")
    with Raw(url) as db:
        opened = db.scalar("SELECT COUNT(*) FROM events WHERE status = 5")
    if opened != len(reqs):
        raise RuntimeError(f"{len(reqs)} opens reported but {opened} recorded")

    with baseline_server(bench) as (_, port):
        loadgen.run(port, warm, connections=CONNECTIONS, check=ok)
        base = loadgen.run(port, work, connections=CONNECTIONS, check=ok)

    fig.value = load.rate
    fig.baseline = base.rate
    fig.p50_ms = percentile(load.latencies_ms, 50)
    fig.p99_ms = percentile(load.latencies_ms, 99)
    fig.extra["baseline_p50_ms"] = percentile(base.latencies_ms, 50)
    fig.extra["baseline_p99_ms"] = percentile(base.latencies_ms, 99)
    fig.check(
        ("≥ 5,000 req/s", fig.value >= 5_000),
        ("≥ 0.6 of baseline", (fig.ratio or 0.0) >= 0.6),
        ("p99 < 20 ms", fig.p99_ms < 20),
    )
    if not fig.target_met:
        fig.notes += prof.summary
    return fig
