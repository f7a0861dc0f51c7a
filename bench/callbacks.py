"""callbacks: pushStat requests per second, and latency, under keep-alive load.

Deliveries are made through the store facade (``Store.create_messages``), and
each request reports the open of a different one, as devices do, with a device
token, to a real ``pushtrack serve`` process. The baseline is the same requests
against a trivial route on the same server stack (``bench.baseline_app``),
which answers the same envelope.

On PostgreSQL the same load then runs against two ``serve`` processes on the
same database, each with as many connections as the one had (the scale-out
claim), reported beside the one (``extra.two_servers_*``).
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

from bench import loadgen
from bench.harness import Bench, Figure, percentile, timed
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
    servers = 2 if bench.engine == "postgresql" else 1
    fig = Figure(NAME, unit="req/s")
    fig.sizes = {
        "requests": count,
        "connections": CONNECTIONS,
        "devices": devices,
        "deliveries_via": "store facade (Store.create_messages)",
    }
    url = bench.database(NAME)
    # one delivery per request: the one-server run, then (PostgreSQL) the two-server run
    runs = [count] + [count * 2] * (servers > 1)
    tenant = _populate(url, devices, sum(runs) + WARMUP * len(runs))
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
    warm, work = reqs[:WARMUP], reqs[WARMUP : WARMUP + count]

    with pushtrack_server(bench, url) as (server, port):
        loadgen.run(port, warm, connections=CONNECTIONS, check=ok)
        cpu0 = server.cpu_seconds() or 0.0
        with Profile(bench, server.pid, "callbacks server") as prof:
            load = loadgen.run(port, work, connections=CONNECTIONS, check=ok)
        cpu = (server.cpu_seconds() or 0.0) - cpu0
        fig.peak_rss_mb = server.peak_rss_mb()
    if load.failures:
        raise RuntimeError(f"{load.failures} pushStat requests failed: {load.first_failure}")
    if servers > 1:
        rest = reqs[WARMUP + count :]
        two = _scale_out(bench, url, servers, rest[:WARMUP], rest[WARMUP:])
        fig.extra["two_servers_connections"] = CONNECTIONS * servers
        fig.extra["two_servers_rate"] = two.rate
        fig.extra["two_servers_vs_one"] = two.rate / load.rate if load.rate else None
        fig.extra["two_servers_p50_ms"] = percentile(two.latencies_ms, 50)
        fig.extra["two_servers_p99_ms"] = percentile(two.latencies_ms, 99)
    with Raw(url) as db:
        opened = db.scalar("SELECT COUNT(*) FROM events WHERE status = 5")
    if opened != len(reqs):
        raise RuntimeError(f"{len(reqs)} opens reported but {opened} recorded")

    with baseline_server(bench) as (base_server, port):
        loadgen.run(port, warm, connections=CONNECTIONS, check=ok)
        base_cpu0 = base_server.cpu_seconds() or 0.0
        base = loadgen.run(port, work, connections=CONNECTIONS, check=ok)
        base_cpu = (base_server.cpu_seconds() or 0.0) - base_cpu0

    fig.value = load.rate
    fig.baseline = base.rate
    fig.p50_ms = percentile(load.latencies_ms, 50)
    fig.p99_ms = percentile(load.latencies_ms, 99)
    fig.extra["baseline_p50_ms"] = percentile(base.latencies_ms, 50)
    fig.extra["baseline_p99_ms"] = percentile(base.latencies_ms, 99)
    # CPU the server process spent per request, beside the trivial route's: the rate
    # depends on what else the two shared cores run (the load generator, PostgreSQL,
    # other tenants of the machine); CPU per request much less so
    fig.extra["server_cpu_us_per_request"] = cpu / count * 1e6
    fig.extra["baseline_cpu_us_per_request"] = base_cpu / count * 1e6
    fig.extra["cpu_ratio"] = base_cpu / cpu if cpu else None
    if bench.engine == "postgresql":
        # acknowledged means committed: each request waits for a commit at least, so
        # CONNECTIONS clients cannot exceed CONNECTIONS / (one commit's latency)
        commit_ms = percentile(_commit_latencies(url), 50)
        fig.extra["bare_commit_p50_ms"] = commit_ms
        fig.extra["commit_bound_rate"] = CONNECTIONS / commit_ms * 1000 if commit_ms else None
    share = 0.5 if bench.engine == "postgresql" else 0.6
    fig.check(
        ("≥ 5,000 req/s", fig.value >= 5_000),
        (f"≥ {share} of baseline", (fig.ratio or 0.0) >= share),
        ("p99 < 20 ms", fig.p99_ms < 20),
    )
    if not fig.target_met:
        fig.notes += prof.summary
    return fig


def _commit_latencies(url: str, count: int = 300) -> list[float]:
    """Milliseconds of single-row INSERT transactions on the bare engine (autocommit)."""
    with Raw(url) as db:
        db.execute("CREATE TABLE bench_commit_probe (n integer)")
        try:
            return timed(lambda: db.execute("INSERT INTO bench_commit_probe VALUES (1)"), count)
        finally:
            db.execute("DROP TABLE bench_commit_probe")


def _scale_out(
    bench: Bench, url: str, servers: int, warm: list[bytes], work: list[bytes]
) -> loadgen.Load:
    """The same load against ``servers`` serve processes on one database, each with
    ``CONNECTIONS`` connections."""
    with ExitStack() as stack:
        ports = [
            stack.enter_context(pushtrack_server(bench, url, name=f"server-{i + 1}"))[1]
            for i in range(servers)
        ]
        loadgen.run(ports, warm, connections=CONNECTIONS * servers, check=ok)
        load = loadgen.run(ports, work, connections=CONNECTIONS * servers, check=ok)
    if load.failures:
        raise RuntimeError(f"{load.failures} pushStat requests failed: {load.first_failure}")
    return load
