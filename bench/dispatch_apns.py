"""dispatch-apns: deliveries per second from queued to ended through the APNs gateway.

The peer is **nginx** with TLS and HTTP/2 on loopback (``bench.nginx_peer``),
answering APNs-shaped responses: 200 with an ``apns-id``, and from distinct
device tokens 400 ``BadDeviceToken`` and 410 ``Unregistered`` (one token in
eight). Deliveries to iOS devices are queued through the store facade and a
real ``pushtrack worker`` sends them with the APNs gateway (one connection,
``STREAMS`` streams). The baseline is ``h2load`` (Debian ``nghttp2-client``)
with the same connection and stream counts against the same nginx.

Where nginx cannot be had (no root, no apt), the run falls back to the local
Python APNs server of the test suite, with a bare loop of the gateway's HTTP/2
client (``bench.apns_bare``) as the baseline, and says so in its notes: that
server, not the client, is then the ceiling.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bench.dispatching import CONCURRENCY, drain
from bench.harness import ROOT, Bench, Figure
from bench.nginx_peer import BAD_SUFFIX, GONE_SUFFIX, h2load, nginx_peer
from bench.procs import apns_peer, clean_env, free_port
from bench.tenant import Tenant, create_deliveries, create_tenant, register_devices, with_store

NAME = "dispatch-apns"
#: The APNs gateway's default: streams in flight, on one connection.
STREAMS = 100
CONNECTIONS = 1
IOS = (1,)
TARGET = 10_000.0
KEY_ID = "BENCHKEY01"
TEAM_ID = "BENCHTEAM1"
TOPIC = "com.example.bench"


def _populate(url: str, settings: dict[str, str], devices: int, deliveries: int) -> Tenant:
    async def go(store: Any) -> Tenant:
        tenant = await create_tenant(store)
        await store.dispatch.set_gateway("default", tenant.app.code, 1, "apns", settings)
        await register_devices(store, tenant.app, devices, platforms=IOS)
        await create_deliveries(store, tenant.app, deliveries, devices)
        return tenant

    return with_store(url, go)


def _refused(total: int, devices: int) -> int:
    """Deliveries nginx answers 400 or 410 (their device token ends in one of those digits)."""
    return sum(1 for i in range(total) if f"{i % devices:x}"[-1] in (BAD_SUFFIX, GONE_SUFFIX))


def run(bench: Bench) -> Figure:
    total = bench.size(30_000, 300)
    devices = max(total, bench.size(30_000, 1_000))  # one delivery per device at most
    fig = Figure(NAME, unit="deliveries/s")
    fig.sizes = {
        "deliveries": total,
        "devices": devices,
        "worker_concurrency": CONCURRENCY,
        "connections": CONNECTIONS,
        "streams": STREAMS,
        "queued_via": "store facade (Store.create_messages)",
    }
    url = bench.database(NAME)
    with nginx_peer(free_port()) as peer:
        if peer is None:
            return _against_the_python_peer(bench, fig, url, total, devices)
        fig.extra["peer"] = "nginx (TLS, HTTP/2)"
        settings = {**_credentials(), "base_url": peer.url, "ca_file": peer.ca_file}
        _populate(url, settings, devices, total)
        done = drain(bench, url, total, NAME)
        refused = _refused(total, devices)
        if (done.delivered, done.failed) != (total - refused, refused):
            raise RuntimeError(
                f"{done.delivered} delivered and {done.failed} failed; "
                f"expected {total - refused} and {refused}"
            )
        fig.value = total / done.seconds
        fig.peak_rss_mb = done.peak_rss_mb
        fig.extra["refused_by_the_peer"] = refused
        fig.baseline = _h2load(peer.url, settings, total)
    fig.extra["baseline"] = f"h2load -c {CONNECTIONS} -m {STREAMS} against the same nginx"
    if fig.baseline is None:
        fig.notes.append("h2load could not be had: no baseline")
    fig.check((f"≥ {TARGET:,.0f} deliveries/s", (fig.value or 0.0) >= TARGET))
    if not fig.target_met:
        fig.notes += done.profile
    return fig


def _credentials() -> dict[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return {"key": pem, "key_id": KEY_ID, "team_id": TEAM_ID, "topic": TOPIC}


def _h2load(url: str, settings: dict[str, str], total: int) -> float | None:
    """h2load's requests/s posting an APNs-shaped request with the gateway's headers."""
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
    body = json.dumps(
        {
            "aps": {"alert": "Flash sale", "sound": ""},
            "md": {"mid": 1, "user_id": "user-1"},
            "p": "0123456789a",
            "pw_msg": "1",
        }
    ).encode()
    return h2load(
        f"{url}/3/device/{1:064x}",
        requests=max(total, 10_000),
        connections=CONNECTIONS,
        streams=STREAMS,
        headers=headers,
        body=body,
    )


def _against_the_python_peer(
    bench: Bench, fig: Figure, url: str, total: int, devices: int
) -> Figure:
    fig.notes.append(
        "nginx could not be had (needs root and apt-get): measured against the local "
        "Python APNs server instead, which is then the ceiling"
    )
    fig.extra["peer"] = "local Python APNs server"
    total = min(total, 3_000)
    fig.sizes["deliveries"] = total
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
    fig.extra["baseline"] = "a bare loop of the gateway's HTTP/2 client against the same server"
    fig.check(("≥ 0.7 of baseline", (fig.ratio or 0.0) >= 0.7))
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
