"""retention: dropping a day of events while fanout runs: drop time, and the fanout dip.

A day of 1,000,000 events (full scale) sixteen days old, past the 14-day
window, is written with bare executemany in the product's schema
(``bench.trail``); devices are registered through the store facade. Fanout
(createMessage of 1000 devices over keep-alive connections to a real
``pushtrack serve``) runs for a few seconds alone, then while ``pushtrack
purge`` drops the old day in its own process, then alone again as long as
before. The figure is fanout's rate during the drop; the baseline is its rate
without the drop, before and after together (so both sides of the drop's
database size count), in the same run.
"""

from __future__ import annotations

import json
from typing import Any

from bench import fanout, loadgen
from bench.harness import Bench, Figure, percentile, stopwatch
from bench.procs import BIN, Proc, clean_env, pushtrack_server
from bench.profiling import Profile
from bench.rawdb import Raw
from bench.tenant import Tenant, create_tenant, register_devices, with_store
from bench.trail import EVENTS_PER_DELIVERY, populate
from pushtrack.domain.timeutil import DAY_US, HOUR_US, day_of, now_us

NAME = "retention"
RETENTION_DAYS = 14


def _tenant(url: str, devices: int) -> Tenant:
    async def go(store: Any) -> Tenant:
        tenant = await create_tenant(store)
        await register_devices(store, tenant.app, devices)
        return tenant

    return with_store(url, go)


def run(bench: Bench) -> Figure:
    events = bench.size(1_000_000, 20_000, override=bench.events and bench.events // 10)
    devices = bench.size(10_000, 2_000)
    alone = bench.size(8, 2)  # seconds of fanout alone before the drop
    fig = Figure(NAME, unit="deliveries/s")
    url = bench.database(NAME)
    tenant = _tenant(url, devices)
    old_day = day_of(now_us()) - (RETENTION_DAYS + 2) * DAY_US
    trail = populate(
        url,
        tenant.app.id,
        devices=devices,
        deliveries=int(events / EVENTS_PER_DELIVERY),
        start_us=old_day,
        span_us=22 * HOUR_US,
        with_devices=False,
    )
    # Built as they are sent: enough for a long drop without holding them all.
    reqs = fanout.Requests(tenant, 1_000_000, devices)
    sent = 0

    def fan(port: int, **kw: Any) -> loadgen.Load:
        """Fanout with the requests not sent yet (each message is new)."""
        nonlocal sent
        part = reqs[sent:]
        load = loadgen.run(port, part, connections=fanout.CLIENTS, check=fanout.accepted, **kw)
        if load.failures:
            raise RuntimeError(f"{load.failures} createMessage failed: {load.first_failure}")
        sent += load.count
        return load

    with pushtrack_server(bench, url) as (server, port):
        fan(port, timeout=0.5)  # warm-up
        # The sampler runs beside each part (its cost is in the baseline too); only the
        # drop's samples are kept.
        with Profile(bench, server.pid, "server before the drop"):
            before = fan(port, timeout=alone)
        argv = [str(BIN / "pushtrack"), "purge", "--json", "--database", url]
        with (
            Proc(bench, "purge", argv, clean_env(bench)) as purge,
            Profile(bench, server.pid, "server during the drop") as prof,
            stopwatch() as dropping,
        ):
            during = fan(port, until=lambda: purge.popen.poll() is not None)
            purge.popen.wait()
            drop_seconds = dropping()
        with Profile(bench, server.pid, "server after the drop"):
            after = fan(port, timeout=alone)
        fig.peak_rss_mb = server.peak_rss_mb()
    if purge.popen.returncode != 0:
        raise RuntimeError(f"pushtrack purge failed:\n{purge.log_tail()}")
    report = json.loads(purge.log_tail(1))
    with Raw(url) as db:
        left = db.scalar("SELECT COUNT(*) FROM events WHERE ts < ?", (old_day + DAY_US,))
    if left:
        raise RuntimeError(f"{left} of the old day's {trail.events} events are still there")

    fig.sizes = {
        **trail.sizes(),
        "fanout_clients": fanout.CLIENTS,
        "devices_per_request": fanout.PER_REQUEST,
        "dropped": {k: v for k, v in report.items() if k != "before"},
    }
    fig.value = during.count * fanout.PER_REQUEST / during.elapsed
    fig.baseline = (
        (before.count + after.count) * fanout.PER_REQUEST / (before.elapsed + after.elapsed)
    )
    fig.p50_ms = percentile(during.latencies_ms, 50)
    fig.p99_ms = percentile(during.latencies_ms, 99)
    dip = 1 - (fig.ratio or 0.0)
    fig.extra["drop_seconds"] = drop_seconds
    fig.extra["dip_percent"] = 100 * dip
    fig.extra["baseline_p99_ms"] = percentile(before.latencies_ms + after.latencies_ms, 99)
    fig.check(("dip < 10%", dip < 0.1))
    if not fig.target_met:
        fig.notes += prof.summary
    return fig
