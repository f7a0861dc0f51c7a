"""dispatch-apns: deliveries per second from queued to delivered through a local APNs server.

The APNs server of the test suite (TLS, HTTP/2, ES256 provider tokens checked
on every request) runs in its own process. Deliveries to iOS devices are
queued through the store facade and a real ``pushtrack worker`` sends them
with the APNs gateway. The baseline is a bare httpx HTTP/2 client loop, with
the gateway's concurrency and connection limits, posting the same requests
to the same server.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import uuid
from typing import Any

import httpx
import jwt
import msgspec

from bench.dispatching import CONCURRENCY, drain
from bench.harness import Bench, Figure
from bench.procs import apns_peer
from bench.tenant import Tenant, create_deliveries, create_tenant, register_devices, with_store

NAME = "dispatch-apns"
#: The APNs gateway's defaults: streams in flight, connections.
STREAMS = 100
MAX_CONNECTIONS = 100
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
        base_seconds = asyncio.run(_bare(settings, total, devices))
        fig.extra["apns_server_peak_rss_mb"] = peer.peak_rss_mb()
    fig.baseline = total / base_seconds
    fig.check(("≥ 0.7 of baseline", (fig.ratio or 0.0) >= 0.7))
    if not fig.target_met:
        fig.notes += done.profile
    return fig


async def _bare(settings: dict[str, str], total: int, devices: int) -> float:
    """Seconds for a bare HTTP/2 loop to post ``total`` notifications with the same limits."""
    token = jwt.encode(
        {"iss": settings["team_id"], "iat": int(time.time())},
        settings["key"],
        algorithm="ES256",
        headers={"kid": settings["key_id"]},
    )
    headers = {
        "authorization": f"bearer {token}",
        "content-type": "application/json",
        "apns-topic": settings["topic"],
        "apns-push-type": "alert",
        "apns-priority": "10",
    }
    encoder = msgspec.json.Encoder(order="sorted")
    streams = asyncio.Semaphore(STREAMS)
    failures: list[str] = []
    async with httpx.AsyncClient(
        base_url=settings["base_url"],
        http2=True,
        verify=ssl.create_default_context(cafile=settings["ca_file"]),
        limits=httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=16),
    ) as client:

        async def one(i: int) -> None:
            body = encoder.encode(
                {
                    "aps": {"alert": "Flash sale", "sound": ""},
                    "md": {"mid": 1 + i // 1000, "user_id": f"user-{i % devices}"},
                    "p": uuid.uuid4().hex[:11],
                    "pw_msg": "1",
                }
            )
            async with streams:
                resp = await client.post(
                    f"/3/device/{i % devices:064x}", headers=headers, content=body
                )
            if resp.status_code != 200:
                failures.append(f"{resp.status_code} {resp.text}")

        await one(0)  # the connection, as the worker's first batch opens it
        start = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(total)))
        seconds = time.perf_counter() - start
    if failures:
        raise RuntimeError(f"{len(failures)} bare APNs requests failed: {failures[0]}")
    return seconds
