"""lookup, lookup-user, lookup-campaign: getMessageLog over 14 days of a large trail: p50/p99.

The trail (10,000,000 events over 14 days at full scale) is written with bare
executemany in the product's schema (``bench.trail``: the service itself would
take longer than the suite may); the three workloads of one run share it.
Requests go one at a time over one keep-alive connection to a real
``pushtrack serve`` process: ``lookup`` asks for a random device's whole trail
(by hwid), ``lookup-user`` for a random user's (by user_id), ``lookup-campaign``
for a random campaign's first page (by campaign_code; a campaign is two messages
of 1000 deliveries). Each baseline is the bare indexed query for the same
values, in this process.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from bench import loadgen
from bench.harness import Bench, Figure, percentile, timed
from bench.procs import pushtrack_server
from bench.profiling import Profile
from bench.rawdb import Raw
from bench.tenant import Tenant, create_tenant, hwid, with_store
from bench.trail import EVENTS_PER_DELIVERY, Trail, campaign, populate
from pushtrack.domain.timeutil import DAY_US, now_us

NAME = "lookup"
DAYS = 14

_ROWS = (
    "SELECT e.id, e.ts, e.status, e.description, d.legacy_code, d.id, d.hwid, d.target_id,"
    " d.user_id, d.platform, d.message_id FROM deliveries d JOIN events e ON e.delivery_id = d.id"
)
#: The bare queries: deliveries by the index each lookup uses, their events by delivery.
BARE = {
    "hwid": f"{_ROWS} WHERE d.device_id = (SELECT id FROM devices WHERE app_id = ? AND hwid = ?)"
    " ORDER BY e.ts, e.id LIMIT 1001",
    "user_id": f"{_ROWS} WHERE d.device_id IN"
    " (SELECT device_id FROM user_devices WHERE user_id = ?) AND d.user_id = ?"
    " ORDER BY e.ts, e.id LIMIT 1001",
    "campaign_code": "SELECT e.id, e.ts, e.status, e.description, d.legacy_code, d.id, d.hwid,"
    " d.target_id, d.user_id, d.platform, d.message_id FROM messages m"
    " JOIN deliveries d ON d.message_id = m.id JOIN events e ON e.delivery_id = d.id"
    " WHERE m.campaign = ? ORDER BY e.ts, e.id LIMIT 1001",
}

#: One populated trail per run (id of the run's Bench -> its database and what was
#: written there), shared by the three workloads.
_TRAILS: dict[int, tuple[str, Tenant, Trail, int]] = {}


def has_rows(body: bytes) -> bool:
    return body.startswith(b'{"data":[{')


def _trail(bench: Bench) -> tuple[str, Tenant, Trail, int]:
    if id(bench) not in _TRAILS:
        url = bench.database(NAME)
        events = bench.size(10_000_000, 100_000, override=bench.events)
        devices = bench.size(100_000, 2_000)
        tenant = with_store(url, create_tenant)
        trail = populate(
            url,
            tenant.app.id,
            devices=devices,
            deliveries=int(events / EVENTS_PER_DELIVERY),
            start_us=now_us() - DAYS * DAY_US,
            span_us=DAYS * DAY_US,
        )
        _TRAILS[id(bench)] = (url, tenant, trail, devices)
    return _TRAILS[id(bench)]


def run(bench: Bench) -> Figure:
    """By hwid: a random device's whole trail."""
    return _lookup(bench, NAME, "hwid", lambda rnd, trail, devices: hwid(rnd.randrange(devices)))


def run_user(bench: Bench) -> Figure:
    """By user_id: a random user's whole trail (each device has its user here)."""

    def pick(rnd: random.Random, trail: Trail, devices: int) -> str:
        return f"user-{rnd.randrange(devices)}"

    return _lookup(bench, "lookup-user", "user_id", pick)


def run_campaign(bench: Bench) -> Figure:
    """By campaign_code: a random campaign's first page (1000 of about 6,000 events)."""

    def pick(rnd: random.Random, trail: Trail, devices: int) -> str:
        return campaign(trail.first_message_id + rnd.randrange(trail.messages))

    return _lookup(bench, "lookup-campaign", "campaign_code", pick)


def _lookup(
    bench: Bench, name: str, field: str, pick: Callable[[random.Random, Trail, int], str]
) -> Figure:
    count = bench.size(2_000, 200)
    fig = Figure(name, unit="ms (p99)")
    url, tenant, trail, devices = _trail(bench)
    fig.sizes = {**trail.sizes(), "requests": count, "connections": 1, "by": field}
    rnd = random.Random(11)
    wanted = [pick(rnd, trail, devices) for _ in range(count)]
    headers = {"Authorization": f"Token {tenant.server_token}"}
    reqs = [loadgen.post("/api/v2/statistics/getMessageLog", {field: v}, headers) for v in wanted]
    with pushtrack_server(bench, url) as (server, port):
        loadgen.run(port, reqs[: max(10, count // 20)], connections=1, check=has_rows)
        with Profile(bench, server.pid, f"{name} server") as prof:
            load = loadgen.run(port, reqs, connections=1, check=has_rows)
        fig.peak_rss_mb = server.peak_rss_mb()
    if load.failures:
        raise RuntimeError(f"{load.failures} getMessageLog requests failed: {load.first_failure}")

    fig.p50_ms = percentile(load.latencies_ms, 50)
    fig.p99_ms = percentile(load.latencies_ms, 99)
    fig.value = fig.p99_ms
    bare = _bare(url, tenant.app.id, field, wanted)
    fig.baseline = percentile(bare, 99)
    fig.extra["baseline_p50_ms"] = percentile(bare, 50)
    fig.extra["requests_per_second"] = load.rate
    fig.check(("p99 < 10 ms", fig.p99_ms < 10))
    if not fig.target_met:
        fig.notes += prof.summary
    return fig


def _bare(url: str, app_id: int, field: str, wanted: list[str]) -> list[float]:
    """Milliseconds of the bare indexed query for each value, fetching every row."""
    sql = BARE[field]

    def args(v: str) -> tuple[Any, ...]:
        if field == "hwid":
            return (app_id, v)
        return (v, v) if field == "user_id" else (v,)

    with Raw(url) as db:
        for v in wanted[: max(10, len(wanted) // 20)]:  # the warm-up the server had
            db.execute(sql, args(v))
        it = iter(wanted)
        return timed(lambda: db.execute(sql, args(next(it))), len(wanted))
