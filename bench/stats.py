"""stats: totalsByIntervals of a message with 1,000,000 deliveries: p50/p99.

One message's trail (its deliveries sent one every 10 ms, so about three hours
of sends, then opens up to an hour later; about 3.1 events a delivery, with
hourly and per-minute counters that agree) is written with bare executemany
in the product's schema (``bench.trail``). Requests go one at a time over one
keep-alive connection to a real ``pushtrack serve`` process. The figure is the
default hourly interval; the per-minute one is reported beside it.
"""

from __future__ import annotations

from bench import loadgen
from bench.harness import Bench, Figure, percentile
from bench.procs import pushtrack_server
from bench.profiling import Profile
from bench.rawdb import Raw
from bench.trail import one_message

NAME = "stats"
PATH = "/api/v2/statistics/messages/totalsByIntervals"


def has_metrics(body: bytes) -> bool:
    return body.startswith(b'{"metrics":[{')


def run(bench: Bench) -> Figure:
    deliveries = bench.size(1_000_000, 20_000, override=bench.deliveries)
    count = bench.size(2_000, 200)
    fig = Figure(NAME, unit="ms (p99)")
    url = bench.database(NAME)
    tenant, trail, code = one_message(url, deliveries)
    with Raw(url) as db:
        hourly = db.scalar(
            "SELECT COUNT(*) FROM counters WHERE message_id = ?", (trail.first_message_id,)
        )
    fig.sizes = {**trail.sizes(), "requests": count, "connections": 1, "hourly_rows": hourly}
    headers = {"Authorization": f"Token {tenant.server_token}"}

    def requests(interval: str) -> list[bytes]:
        body = {"message_code": code, "interval": interval}
        return [loadgen.post(PATH, body, headers)] * count

    with pushtrack_server(bench, url) as (server, port):
        loadgen.run(port, requests("hour")[:50], connections=1, check=has_metrics)
        with Profile(bench, server.pid, "stats server") as prof:
            hour = loadgen.run(port, requests("hour"), connections=1, check=has_metrics)
        minute = loadgen.run(port, requests("minute"), connections=1, check=has_metrics)
        fig.peak_rss_mb = server.peak_rss_mb()
    for load in (hour, minute):
        if load.failures:
            raise RuntimeError(f"{load.failures} requests failed: {load.first_failure}")
    fig.p50_ms = percentile(hour.latencies_ms, 50)
    fig.p99_ms = percentile(hour.latencies_ms, 99)
    fig.value = fig.p99_ms
    fig.extra["minute_p50_ms"] = percentile(minute.latencies_ms, 50)
    fig.extra["minute_p99_ms"] = percentile(minute.latencies_ms, 99)
    fig.extra["requests_per_second"] = hour.rate
    fig.check(("p99 < 5 ms", fig.p99_ms < 5))
    if not fig.target_met:
        fig.notes += prof.summary
    return fig
