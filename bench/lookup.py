"""lookup: getMessageLog by hwid over 14 days of a large trail: p50/p99.

The trail (10,000,000 events over 14 days at full scale) is written with bare
executemany in the product's schema (``bench.trail``: the service itself would
take longer than the suite may). Requests go one at a time over one keep-alive
connection to a real ``pushtrack serve`` process, each for a random device's
whole trail. The baseline is the bare indexed query for the same devices,
in this process.
"""

from __future__ import annotations

import random

from bench import loadgen
from bench.harness import Bench, Figure, percentile, timed
from bench.procs import pushtrack_server
from bench.profiling import Profile
from bench.rawdb import Raw
from bench.tenant import create_tenant, hwid, with_store
from bench.trail import EVENTS_PER_DELIVERY, populate
from pushtrack.domain.timeutil import DAY_US, now_us

NAME = "lookup"
DAYS = 14

#: The bare query: a device's deliveries by the hwid index, their events by delivery.
BARE = (
    "SELECT e.id, e.ts, e.status, e.description, d.tracking_code, d.hwid, d.target_id,"
    " d.user_id, d.platform, d.message_id FROM deliveries d JOIN events e ON e.delivery_id = d.id"
    " WHERE d.hwid = ? ORDER BY e.ts, e.id LIMIT 1001"
)


def has_rows(body: bytes) -> bool:
    return body.startswith(b'{"data":[{')


def run(bench: Bench) -> Figure:
    events = bench.size(10_000_000, 100_000, override=bench.events)
    devices = bench.size(100_000, 2_000)
    count = bench.size(2_000, 200)
    deliveries = int(events / EVENTS_PER_DELIVERY)
    fig = Figure(NAME, unit="ms (p99)")
    url = bench.database(NAME)
    tenant = with_store(url, create_tenant)
    trail = populate(
        url,
        tenant.app.id,
        devices=devices,
        deliveries=deliveries,
        start_us=now_us() - DAYS * DAY_US,
        span_us=DAYS * DAY_US,
    )
    fig.sizes = {**trail.sizes(), "requests": count, "connections": 1}
    rnd = random.Random(11)
    wanted = [hwid(rnd.randrange(devices)) for _ in range(count)]
    headers = {"Authorization": f"Token {tenant.server_token}"}
    reqs = [loadgen.post("/api/v2/statistics/getMessageLog", {"hwid": h}, headers) for h in wanted]
    with pushtrack_server(bench, url) as (server, port):
        loadgen.run(port, reqs[: max(10, count // 20)], connections=1, check=has_rows)
        with Profile(bench, server.pid, "lookup server") as prof:
            load = loadgen.run(port, reqs, connections=1, check=has_rows)
        fig.peak_rss_mb = server.peak_rss_mb()
    if load.failures:
        raise RuntimeError(f"{load.failures} getMessageLog requests failed: {load.first_failure}")

    fig.p50_ms = percentile(load.latencies_ms, 50)
    fig.p99_ms = percentile(load.latencies_ms, 99)
    fig.value = fig.p99_ms
    bare = _bare(url, wanted)
    fig.baseline = percentile(bare, 99)
    fig.extra["baseline_p50_ms"] = percentile(bare, 50)
    fig.extra["requests_per_second"] = load.rate
    fig.check(("p99 < 10 ms", fig.p99_ms < 10))
    if not fig.target_met:
        fig.notes += prof.summary
    return fig


def _bare(url: str, wanted: list[str]) -> list[float]:
    """Milliseconds of the bare indexed query for each device, fetching every row."""
    with Raw(url) as db:
        for h in wanted[: max(10, len(wanted) // 20)]:  # the warm-up the server had
            db.execute(BARE, (h,))
        it = iter(wanted)
        return timed(lambda: db.execute(BARE, (next(it),)), len(wanted))
