"""fanout: tracked deliveries accepted per second by createMessage over HTTP.

Devices are registered first through the store facade (``Store.register_device``,
many in flight), then several keep-alive clients post createMessage requests of
1000 devices each to a real ``pushtrack serve`` process, tracking on. The
baseline inserts the same rows per request (the message, its payloads, 1000
deliveries (each carrying its ``created`` time), the (user id, device) pairs they
carry (already there after the first round: a probe each), the dispatch job;
``created`` bumps no counter) with bare executemany, one transaction per batch of
the same size.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, overload

from bench import loadgen
from bench.harness import Bench, Figure, percentile, stopwatch
from bench.procs import pushtrack_server
from bench.profiling import Profile
from bench.rawdb import Raw, create_schema
from bench.tenant import Tenant, create_tenant, device, hwid, register_devices, with_store
from pushtrack.domain import codes
from pushtrack.domain.timeutil import now_us
from pushtrack.store.base import DeviceIn

NAME = "fanout"
PER_REQUEST = 1000
CLIENTS = 4


def _tenant(bench: Bench, url: str, devices: int) -> Tenant:
    async def go(store: Any) -> Tenant:
        tenant = await create_tenant(store)
        await register_devices(store, tenant.app, devices)
        return tenant

    return with_store(url, go)


class Requests(Sequence[bytes]):
    """createMessage requests of 1000 devices each, built when the load generator takes them."""

    def __init__(self, tenant: Tenant, n: int, devices: int, first: int = 0) -> None:
        self.tenant, self.n, self.devices, self.first = tenant, n, devices, first

    def __len__(self) -> int:
        return self.n

    @overload
    def __getitem__(self, index: int) -> bytes: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[bytes]: ...

    def __getitem__(self, index: int | slice) -> bytes | Sequence[bytes]:
        if isinstance(index, slice):
            start, stop, _ = index.indices(self.n)
            return Requests(self.tenant, max(0, stop - start), self.devices, self.first + start)
        if not 0 <= index < self.n:
            raise IndexError(index)
        r = self.first + index
        start = r * PER_REQUEST % self.devices
        body = {
            "request": {
                "auth": self.tenant.server_token,
                "application": self.tenant.app.code,
                "notifications": [
                    {
                        "content": "Your order has shipped",
                        "data": {"order": r},
                        "devices": [hwid(start + j) for j in range(PER_REQUEST)],
                    }
                ],
            }
        }
        return loadgen.post("/json/1.3/createMessage", body)


def requests(tenant: Tenant, n: int, devices: int, first: int = 0) -> list[bytes]:
    """``n`` requests, built beforehand (so building them is not timed)."""
    return list(Requests(tenant, n, devices, first))


def accepted(body: bytes) -> bool:
    return b'"status_code":200' in body and b'"TrackingCodes"' in body


def run(bench: Bench) -> Figure:
    deliveries = bench.size(1_000_000, 20_000, override=bench.deliveries)
    n = max(1, deliveries // PER_REQUEST)
    devices = bench.size(10_000, 2_000)
    fig = Figure(NAME, unit="deliveries/s")
    fig.sizes = {
        "deliveries": n * PER_REQUEST,
        "devices_per_request": PER_REQUEST,
        "clients": CLIENTS,
        "registered_devices": devices,
        "devices_registered_via": "store facade (Store.register_device)",
    }
    url = bench.database(NAME)
    tenant = _tenant(bench, url, devices)
    warm = requests(tenant, CLIENTS, devices, first=n)
    work = requests(tenant, n, devices)
    with pushtrack_server(bench, url) as (server, port):
        loadgen.run(port, warm, connections=CLIENTS, check=accepted)
        cpu0 = server.cpu_seconds() or 0.0
        with Profile(bench, server.pid, "fanout server") as prof:
            load = loadgen.run(port, work, connections=CLIENTS, check=accepted)
        cpu = (server.cpu_seconds() or 0.0) - cpu0
        fig.peak_rss_mb = server.peak_rss_mb()
    if load.failures:
        raise RuntimeError(f"{load.failures} createMessage requests failed: {load.first_failure}")
    fig.value = load.count * PER_REQUEST / load.elapsed
    fig.p50_ms = percentile(load.latencies_ms, 50)
    fig.p99_ms = percentile(load.latencies_ms, 99)
    fig.extra["server_cpu_per_second"] = cpu / load.elapsed
    fig.baseline = baseline(bench, tenant, n, devices)
    ratio = fig.ratio or 0.0
    fig.check(("≥ 100,000/s", fig.value >= 100_000), ("≥ 0.5 of baseline", ratio >= 0.5))
    if not fig.target_met:
        fig.notes += prof.summary
    return fig


def baseline(bench: Bench, tenant: Tenant, n: int, devices: int) -> float:
    """Deliveries per second writing the same rows with bare executemany."""
    url = bench.database(NAME + "-baseline")
    create_schema(url)
    app_id = tenant.app.id
    # What the product reads from its devices table: (id, device).
    known = [(i + 1, device(i)) for i in range(devices)]
    with Raw(url) as db, stopwatch() as elapsed:
        db.execute("INSERT INTO accounts (id, name, created_at) VALUES (1, 'default', 0)")
        db.execute(
            "INSERT INTO applications (id, code, account_id, name, tracking, open_logging,"
            " device_token_required, created_at) VALUES (?, ?, 1, 'bench', 1, 1, 1, ?)",
            (app_id, tenant.app.code, now_us()),
        )
        for r in range(n):
            start = r * PER_REQUEST % devices
            _insert_batch(db, app_id, r, known[start : start + PER_REQUEST])
        return n * PER_REQUEST / elapsed()


def _insert_batch(db: Raw, app_id: int, r: int, devs: list[tuple[int, DeviceIn]]) -> None:
    size = len(devs)
    now = now_us()
    message_id = r + 1
    first_delivery = r * size + 1
    hashes = codes.payload_hashes(size)
    platforms = sorted({d.device_type for _, d in devs})
    payload_of = {p: message_id * 10 + k for k, p in enumerate(platforms)}
    db.begin()
    db.many(
        "INSERT INTO payloads (id, message_id, platform, language, body, options)"
        " VALUES (?, ?, ?, NULL, ?, '{}')",
        [
            (pid, message_id, p, '{"aps":{"alert":"Your order has shipped"}}')
            for p, pid in payload_of.items()
        ],
    )
    db.insert(
        "deliveries",
        "id, message_id, device_id, payload_id, target_id, hwid, user_id,"
        " platform, hash, state, next_at, created_at",
        [
            (
                first_delivery + j,
                message_id,
                device_id,
                payload_of[d.device_type],
                d.hwid,
                d.hwid,
                d.user_id,
                d.device_type,
                hashes[j],
                1,
                now,
                now,
            )
            for j, (device_id, d) in enumerate(devs)
        ],
    )
    pairs = sorted({(d.user_id, device_id) for device_id, d in devs if d.user_id is not None})
    for start in range(0, len(pairs), 500):
        part = pairs[start : start + 500]
        values = ",".join(["(?, ?)"] * len(part))
        db.execute(
            f"INSERT INTO user_devices (user_id, device_id) VALUES {values}"
            " ON CONFLICT (user_id, device_id) DO NOTHING",
            [v for pair in part for v in pair],
        )
    db.execute(
        "INSERT INTO messages (id, code, app_id, campaign, notification, send_at, status,"
        " deliveries, created_at) VALUES (?, ?, ?, NULL, ?, ?, 'pending', ?, ?)",
        (
            message_id,
            codes.message_code(),
            app_id,
            '{"content":"Your order has shipped"}',
            now,
            size,
            now,
        ),
    )
    db.execute(
        "INSERT INTO jobs (request_id, kind, account_id, params, state, run_at, created_at,"
        " updated_at, message_id) VALUES (?, 'dispatch', NULL, ?, 'pending', ?, ?, ?, ?)",
        (os.urandom(16).hex(), f'{{"message_id":{message_id}}}', now, now, now, message_id),
    )
    db.commit()
