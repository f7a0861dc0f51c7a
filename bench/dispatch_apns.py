"""dispatch-apns: deliveries per second from queued to delivered through a local APNs server.

The APNs server of the test suite (TLS, HTTP/2, ES256 provider tokens checked
on every request) runs in its own process. Deliveries to iOS devices are
queued through the store facade and a real ``pushtrack worker`` sends them
with the APNs gateway. The baseline is a bare httpx HTTP/2 client loop
(``bench.apns_bare``, in a process of its own like the worker), with the
gateway's concurrency and connection limits, posting the same requests to the
same server.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from bench.dispatching import CONCURRENCY, drain
from bench.harness import ROOT, Bench, Figure
from bench.procs import apns_peer, clean_env
from bench.tenant import Tenant, create_deliveries, create_tenant, register_devices, with_store

NAME = "dispatch-apns"
#: The APNs gateway's default: streams in flight.
STREAMS = 100
IOS = (1,)


def _populate(url: str, settings: dict[str, str], devices: int, deliveries: int) -> Tenant:
    async def go(store: Any) -> Tenant:
        tenant = await create_tenant(store)
        await store.dispatch.set_gateway("default", tenant.app.code, 1, "apns", settings)
        await register_devices(store, tenant.app, devices, platforms=IOS)
        await create_deliveries(store, tenant.app, deliveries, devices)
        return tenant

    return with_store(url, go)


def run(bench: Bench) -> Figure:
    total = bench.size(8_000, 300)
    devices = bench.size(10_000, 1_000)
    fig = Figure(NAME, unit="deliveries/s")
    fig.sizes = {
        "deliveries": total,
        "devices": devices,
        "worker_concurrency": CONCURRENCY,
        "streams": STREAMS,
        "queued_via": "store facade (Store.create_messages)",
    }
    url = bench.database(NAME)
    with apns_peer(bench) as (peer, settings):
        _populate(url, settings, devices, total)
        done = drain(bench, url, total, NAME)
        if done.delivered != total:
            raise RuntimeError(f"{done.delivered} of {total} delivered ({done.failed} failed)")
        fig.value = total / done.seconds
        fig.peak_rss_mb = done.peak_rss_mb
        base_seconds = _bare_in_process_of_its_own(bench, settings, total, devices)
        fig.extra["apns_server_peak_rss_mb"] = peer.peak_rss_mb()
    fig.baseline = total / base_seconds
    fig.check(("≥ 0.7 of baseline", (fig.ratio or 0.0) >= 0.7))
    if not fig.target_met:
        fig.notes += done.profile
    return fig


def _bare_in_process_of_its_own(
    bench: Bench, settings: dict[str, str], total: int, devices: int
) -> float:
    argv = [sys.executable, "-m", "bench.apns_bare", str(total), str(devices), str(STREAMS)]
    out = subprocess.run(
        argv,
        input=json.dumps(settings),
        capture_output=True,
        text=True,
        env=clean_env(bench, PYTHONPATH=str(ROOT)),
        timeout=900,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"the bare APNs loop failed: {out.stderr.strip()[-2000:]}")
    seconds: float = json.loads(out.stdout)["seconds"]
    return seconds
