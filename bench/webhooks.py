"""webhooks: trail events per second delivered to a local webhook receiver.

The trail holds ``created`` for each of the deliveries (queued for later, so nothing
else writes meanwhile); an endpoint added before them starts at the head, and a real
``pushtrack worker`` process POSTs them, signed, in batches (``webhook_batch``), to a
receiver in this process that acknowledges each POST at once. Timed from the worker's
start-up line until the receiver has every event. The baseline is the receiver
itself: the same batches POSTed from one kept-open connection as fast as it answers.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from bench.dispatching import POLL, wait_for_log
from bench.harness import Bench, Figure
from bench.procs import BIN, Proc, clean_env, free_port
from bench.profiling import Profile
from bench.tenant import create_tenant, hwid, register_devices, with_store
from pushtrack.sealing import Sealer, new_key
from pushtrack.store.base import MessagePlan, Targeting

NAME = "webhooks"
#: Events per POST (the worker's ``webhook_batch``).
BATCH = 500
#: The key the endpoint's secret is sealed with (the worker is given it), as a service
#: stores every webhook secret.
KEY = new_key()


class _Receiver:
    """Counts the events it is POSTed (by id) and answers 204 at once."""

    def __init__(self) -> None:
        self.ids: set[str] = set()
        self.posts = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                events = json.loads(body)["events"]
                with receiver.lock:
                    receiver.posts += 1
                    receiver.ids.update(e["id"] for e in events)
                self.send_response(204)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def count(self) -> int:
        with self.lock:
            return len(self.ids)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _populate(url: str, deliveries: int, devices: int, hook: str) -> None:
    async def go(store: Any) -> None:
        tenant = await create_tenant(store)
        await register_devices(store, tenant.app, devices)
        sealed = Sealer([KEY]).seal_text("bench-secret-0123456789")
        await store.webhooks.add("default", tenant.app.id, hook, sealed, None, sealed=True)
        later = store.clock() + 30 * 86_400_000_000  # queued, never due during the run
        for first in range(0, deliveries, 10_000):
            plans = [
                MessagePlan(
                    notification={"content": "webhooks"},
                    targeting=Targeting(
                        devices=tuple(
                            hwid((k + j) % devices) for j in range(min(1000, deliveries - k))
                        )
                    ),
                    send_at=later,
                )
                for k in range(first, min(first + 10_000, deliveries), 1000)
            ]
            await store.create_messages(tenant.app, plans)

    with_store(url, go)


def _baseline(receiver: _Receiver, events: int) -> float:
    """Events per second the receiver takes from one kept-open connection."""
    batch = json.dumps(
        {"events": [{"id": f"b-{i}", "status": "created", "hwid": hwid(i)} for i in range(BATCH)]}
    ).encode()
    conn = http.client.HTTPConnection("127.0.0.1", receiver.port)
    posts = max(1, events // BATCH)
    start = time.perf_counter()
    for _ in range(posts):
        conn.request("POST", "/hook", body=batch, headers={"Content-Type": "application/json"})
        conn.getresponse().read()
    seconds = time.perf_counter() - start
    conn.close()
    return posts * BATCH / seconds


def run(bench: Bench) -> Figure:
    total = bench.size(200_000, 5_000)
    devices = bench.size(10_000, 1_000)
    fig = Figure(NAME, unit="events/s")
    fig.sizes = {"events": total, "devices": devices, "batch": BATCH}
    url = bench.database(NAME)
    receiver = _Receiver()
    try:
        _populate(url, total, devices, f"http://127.0.0.1:{receiver.port}/hook")
        env = clean_env(
            bench,
            PUSHTRACK_OUTBOUND_ALLOW="127.0.0.1",
            PUSHTRACK_WEBHOOK_BATCH=str(BATCH),
            PUSHTRACK_SECRET_KEY=KEY,
        )
        argv = [str(BIN / "pushtrack"), "worker", "--database", url]
        with Proc(bench, f"{NAME}-worker", argv, env) as worker:
            wait_for_log(worker, "running")
            start = time.perf_counter()
            deadline = time.monotonic() + 600
            with Profile(bench, worker.pid, f"{NAME} worker") as prof:
                while receiver.count() < total:
                    if worker.popen.poll() is not None:
                        raise RuntimeError(f"the worker exited:\n{worker.log_tail()}")
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"only {receiver.count()} of {total} events arrived")
                    time.sleep(POLL / 10)
            seconds = time.perf_counter() - start
            fig.peak_rss_mb = worker.peak_rss_mb()
        fig.value = total / seconds
        fig.extra["posts"] = receiver.posts
        fig.baseline = _baseline(receiver, total)
        fig.notes += prof.summary
    finally:
        receiver.close()
    return fig
