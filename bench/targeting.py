"""targeting: a tag condition over 1,000,000 devices, expanded while callbacks keep coming.

1,000,000 devices (full scale) and their integer tag ``segment`` (0-9, so one
value matches 10%) are written with bare executemany in the product's schema;
the application, its tokens and the tag's definition come from the store
facade, as do scheduled deliveries (explicit device lists) whose opens the
callbacks report. A real ``pushtrack serve --no-worker`` takes the requests
and a real ``pushtrack worker`` expands the audience.

First, pushStat callbacks alone (16 keep-alive connections) for a few
seconds. Then createTargetedMessage with ``A("APP") * T("segment", EQ, 3)``,
scheduled for tomorrow so that only the expansion runs: its answer latency and
the time until the message's expansion is over (its cursor cleared), alone.
Then the same for segment 4 while the callbacks run again: the callbacks'
latency meanwhile, and the expansion's time under that load. Last, createMessage
to the whole application (1,000,000 devices): its answer latency, then
deleteMessage stops it.

The figure is the expansion's rate alone (deliveries written per second); the
baseline is the bare engine doing the same work in the same run: the same
selection query in keyset pages of 1000 and, per page, one transaction that
inserts the deliveries and their ``created`` events with executemany.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx

from bench import loadgen
from bench.harness import Bench, Figure, percentile, stopwatch
from bench.procs import pushtrack_server, pushtrack_worker
from bench.profiling import Profile
from bench.rawdb import Raw, sync_sequences
from bench.tenant import PLATFORMS, Tenant, create_tenant, hwid, with_store
from bench.trail import _indexes_later
from pushtrack.domain import codes
from pushtrack.domain.tags import TagType
from pushtrack.domain.timeutil import DAY_US, now_us
from pushtrack.store.base import MessagePlan, Targeting

NAME = "targeting"
SEGMENTS = 10
CHOSEN = 3
CONNECTIONS = 16
WARMUP = 500
POLL = 0.02
PAGE = 1000
#: Devices written per bulk insert.
CHUNK = 100_000


def _tenant(url: str) -> tuple[Tenant, int]:
    """Application, tokens and the tag's definition, through the store facade."""

    async def go(store: Any) -> tuple[Tenant, int]:
        tenant = await create_tenant(store)
        tag = await store.targeting.add_tag(tenant.app, "segment", TagType.INTEGER)
        return tenant, int(tag.id)

    return with_store(url, go)


def _write_devices(url: str, app_id: int, tag_id: int, n: int) -> None:
    """``n`` devices (bench.tenant's naming) and their ``segment`` tag, in bulk."""
    now = now_us()
    with Raw(url, bulk=True) as db, _indexes_later(db, ("devices", "tag_values")):
        db.begin()
        for start in range(0, n, CHUNK):
            db.insert(
                "devices",
                "id, app_id, hwid, push_token, device_type, language, user_id, subscribed,"
                " created_at, updated_at",
                [
                    (i + 1, app_id, hwid(i), f"{i:064x}", PLATFORMS[i % len(PLATFORMS)], "en",
                     f"user-{i}", 1, now, now)
                    for i in range(start, min(n, start + CHUNK))
                ],
            )  # fmt: skip
            db.insert(
                "tag_values",
                "device_id, tag_id, num, txt",
                [(i + 1, tag_id, i % SEGMENTS, None) for i in range(start, min(n, start + CHUNK))],
            )
        db.commit()
        sync_sequences(db, ("devices",))


def _callback_deliveries(url: str, tenant: Tenant, n: int, devices: int) -> None:
    """``n`` deliveries due tomorrow (so nothing dispatches them meanwhile), 1000 a message."""

    async def go(store: Any) -> None:
        tomorrow = store.clock() + DAY_US
        for first in range(0, n, 10_000):
            plans = [
                MessagePlan(
                    notification={"content": "Flash sale"},
                    targeting=Targeting(
                        devices=tuple(hwid((k + j) % devices) for j in range(min(1000, n - k)))
                    ),
                    send_at=tomorrow,
                )
                for k in range(first, min(first + 10_000, n), 1000)
            ]
            await store.create_messages(tenant.app, plans)

    with_store(url, go)


class Watch:
    """Polls (in a thread) until a message's expansion is over; records when."""

    def __init__(self, url: str, code: str) -> None:
        self.url, self.code = url, code
        self.done_at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Watch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        with Raw(self.url) as db:
            while not self._stop.is_set():
                row = db.execute("SELECT expand_after FROM messages WHERE code = ?", (self.code,))
                if row and row[0][0] is None:
                    self.done_at = time.perf_counter()
                    return
                time.sleep(POLL)

    def wait(self, timeout: float) -> float:
        self._thread.join(timeout)
        if self.done_at is None:
            raise RuntimeError(f"the expansion of {self.code} did not end within {timeout}s")
        return self.done_at


def _post(http: httpx.Client, path: str, body: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """One request on a warm keep-alive connection; (milliseconds, envelope)."""
    t = time.perf_counter()
    resp = http.post(path, json={"request": body})
    ms = (time.perf_counter() - t) * 1000
    out: dict[str, Any] = resp.json()
    return ms, out


def ok(body: bytes) -> bool:
    return b'"status_code":200' in body


def _targeted(http: httpx.Client, tenant: Tenant, segment: int, when: str) -> tuple[float, str]:
    """createTargetedMessage to one segment; (answer milliseconds, message code)."""
    expr = f'A("{tenant.app.code}") * T("segment", EQ, {segment})'
    body = {
        "auth": tenant.server_token,
        "devices_filter": expr,
        "content": "10% off",
        "send_date": when,
    }
    ms, out = _post(http, "/json/1.3/createTargetedMessage", body)
    if out.get("status_code") != 200:
        raise RuntimeError(f"createTargetedMessage: {out}")
    (code,) = out["response"]["Messages"]
    return ms, str(code)


def _check_expanded(url: str, code: str, matched: int) -> None:
    with Raw(url) as db:
        mid, count = db.execute("SELECT id, deliveries FROM messages WHERE code = ?", (code,))[0]
        written, distinct = db.execute(
            "SELECT COUNT(*), COUNT(DISTINCT device_id) FROM deliveries WHERE message_id = ?",
            (mid,),
        )[0]
    if not written == distinct == count == matched:
        raise RuntimeError(
            f"{matched} devices selected, but {written} deliveries to {distinct} devices"
            f" (message says {count})"
        )


def run(bench: Bench) -> Figure:
    devices = bench.size(1_000_000, 50_000)
    callbacks = bench.size(300_000, 5_000)
    callback_devices = min(devices, bench.size(10_000, 1_000))
    alone_seconds = bench.size(5, 1)
    fig = Figure(NAME, unit="deliveries/s")
    url = bench.database(NAME)
    tenant, tag_id = _tenant(url)
    with stopwatch() as loading:
        _write_devices(url, tenant.app.id, tag_id, devices)
    _callback_deliveries(url, tenant, callbacks + WARMUP, callback_devices)
    if not url.startswith("sqlite:"):
        with Raw(url) as db:  # as autovacuum would soon after loads this size
            db.execute("ANALYZE")
    with Raw(url) as db:
        pairs = db.execute(
            "SELECT hwid, hash FROM deliveries WHERE device_id IS NOT NULL ORDER BY id"
        )
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
    matched = devices // SEGMENTS
    fig.sizes = {
        "devices": devices,
        "selected": matched,
        "condition": f'T("segment", EQ, n) of {SEGMENTS} values',
        "devices_written_via": "bare executemany in the product's schema (bench/targeting.py)",
        "callback_connections": CONNECTIONS,
        "expansion_batch": "default",
    }
    fig.extra["load_seconds"] = loading()
    auth = {"auth": tenant.server_token}
    tomorrow = time.strftime("%Y-%m-%d %H:%M", time.gmtime(time.time() + 86400))

    with (
        pushtrack_server(bench, url) as (server, port),
        pushtrack_worker(bench, url, 4) as worker,
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http,
    ):
        http.get("/health")
        loadgen.run(port, warm, connections=CONNECTIONS, check=ok)
        # 1. callbacks alone
        half = work[: len(work) // 2]  # the rest is for the callbacks during an expansion
        alone = loadgen.run(port, half, connections=CONNECTIONS, check=ok, timeout=alone_seconds)
        rest = work[alone.count :]

        # The first filter a process parses builds the parser; a refused request does that.
        cold = {**auth, "devices_filter": 'A("0000-00000")', "content": "x"}
        fig.extra["first_filter_ms"], _ = _post(http, "/json/1.3/createTargetedMessage", cold)

        # 2. an expansion alone
        sent_at = time.perf_counter()
        quiet_ms, quiet = _targeted(http, tenant, CHOSEN, tomorrow)
        with Watch(url, quiet) as watch:
            quiet_seconds = watch.wait(600) - sent_at

        # 3. an expansion while the callbacks keep coming
        sent_at = time.perf_counter()
        busy_ms, busy = _targeted(http, tenant, CHOSEN + 1, tomorrow)
        with (
            Watch(url, busy) as watch,
            Profile(bench, worker.pid, "worker during the expansion") as prof,
        ):
            during = loadgen.run(
                port,
                rest,
                connections=CONNECTIONS,
                check=ok,
                until=lambda: watch.done_at is not None,
            )
            busy_seconds = watch.wait(600) - sent_at

        # 4. createMessage to the whole application answers at once too; then it is deleted
        whole = {
            **auth,
            "application": tenant.app.code,
            "notifications": [{"content": "everyone", "send_date": tomorrow}],
        }
        whole_ms, out = _post(http, "/json/1.3/createMessage", whole)
        if out.get("status_code") != 200:
            raise RuntimeError(f"createMessage: {out}")
        (everyone,) = out["response"]["Messages"]
        _, out = _post(http, "/json/1.3/deleteMessage", {**auth, "message": everyone})
        if out.get("status_code") != 200:
            raise RuntimeError(f"deleteMessage: {out}")
        fig.peak_rss_mb = worker.peak_rss_mb()
        fig.extra["server_peak_rss_mb"] = server.peak_rss_mb()
    for load, what in ((alone, "alone"), (during, "during the expansion")):
        if load.failures:
            raise RuntimeError(f"{load.failures} pushStat failed {what}: {load.first_failure}")
    _check_expanded(url, quiet, matched)
    _check_expanded(url, busy, matched)

    fig.value = matched / quiet_seconds
    fig.baseline = baseline(url, tenant, tag_id)
    fig.p50_ms = percentile(during.latencies_ms, 50)
    fig.p99_ms = percentile(during.latencies_ms, 99)
    fig.extra.update(
        {
            "create_targeted_ms": max(quiet_ms, busy_ms),
            "create_whole_app_ms": whole_ms,
            "expansion_seconds": quiet_seconds,
            "expansion_with_callbacks_seconds": busy_seconds,
            "callbacks_during_per_s": during.rate,
            "callbacks_during_count": during.count,
            "callbacks_alone_per_s": alone.rate,
            "callbacks_alone_p50_ms": percentile(alone.latencies_ms, 50),
            "callbacks_alone_p99_ms": percentile(alone.latencies_ms, 99),
        }
    )
    if during.count == len(rest):
        fig.notes.append("the callback requests ran out before the expansion ended")
    if not during.count:
        fig.notes.append("the expansion ended before any callback was answered")
    fig.check(
        ("createMessage answers < 500 ms", max(quiet_ms, busy_ms, whole_ms) < 500),
        ("expansion < 60 s (with callbacks too)", max(quiet_seconds, busy_seconds) < 60),
        ("callback p99 during expansion < 20 ms", fig.p99_ms < 20),
    )
    if not fig.target_met:
        fig.notes += prof.summary
    return fig


def baseline(url: str, tenant: Tenant, tag_id: int) -> float:
    """Deliveries per second: the same selection in pages of 1000, each page's deliveries
    and ``created`` events inserted in one transaction, with the bare engine."""
    with Raw(url) as db, stopwatch() as elapsed:
        message_id = int(db.scalar("SELECT MAX(id) FROM messages")) + 1_000_000
        next_id = int(db.scalar("SELECT MAX(id) FROM deliveries")) + 1_000_000
        after = 0
        total = 0
        while True:
            page = db.execute(
                "SELECT d.id, d.hwid, d.push_token, d.device_type, d.language, d.user_id,"
                " d.subscribed, d.timezone FROM devices d WHERE d.app_id = ? AND d.subscribed = 1"
                " AND d.id > ? AND EXISTS (SELECT 1 FROM tag_values v WHERE v.device_id = d.id"
                " AND v.tag_id = ? AND v.num = ?) ORDER BY d.id LIMIT ?",
                (tenant.app.id, after, tag_id, CHOSEN, PAGE),
            )
            if not page:
                break
            now = now_us()
            hashes = codes.payload_hashes(len(page))
            db.begin()
            db.insert(
                "deliveries",
                "id, message_id, device_id, payload_id, target_id, hwid,"
                " user_id, platform, hash, state, next_at, created_at",
                [
                    (next_id + j, message_id, d[0], None, d[1], d[1], d[5], d[3],
                     hashes[j], 1, now, now)
                    for j, d in enumerate(page)
                ],
            )  # fmt: skip
            db.many(
                "INSERT INTO user_devices (user_id, device_id) VALUES (?, ?)"
                " ON CONFLICT (user_id, device_id) DO NOTHING",
                sorted({(d[5], d[0]) for d in page if d[5] is not None}),
            )
            db.commit()
            next_id += len(page)
            total += len(page)
            after = page[-1][0]
        return total / elapsed()
