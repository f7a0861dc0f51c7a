"""Settings that shape the worker, each shown to change what it does: a worker runs in
this process with the setting against a live service (real database, loopback
receivers, the sandbox gateway), and the effect is observed from outside."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from pushtrack.worker import build_worker
from tests.gateways.webhook_receiver import Receiver
from tests.support import Service, run, service


def work_until(svc: Service, done: Callable[[], bool], seconds: float, **settings: Any) -> None:
    """Run a worker with ``settings`` (short webhook waits otherwise) until ``done()``
    or ``seconds`` have passed."""
    assert svc.settings is not None
    defaults = {
        "webhook_linger_ms": 0,
        "webhook_poll_ms": 20,
        "webhook_backoff_seconds": 0.05,
        "webhook_max_backoff_seconds": 0.2,
    }
    worker = build_worker(
        msgspec.structs.replace(svc.settings, **(defaults | settings)),
        svc.store,
        poll_seconds=0.02,
    )

    async def go() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while not done() and loop.time() < deadline:  # noqa: ASYNC110 - another thread's state
            await asyncio.sleep(0.05)
        stop.set()
        await task

    run(go())


def hook(svc: Service, receiver: Receiver) -> None:
    made = svc.v2(
        "webhooks/addWebhook",
        {"application": svc.app.code, "url": receiver.url, "statuses": ["created"]},
    )
    assert made.status_code == 200, made.text
    receiver.secret = made.json()["secret"]


def test_webhook_batch_caps_the_events_of_one_post(database_url: str) -> None:
    with service(database_url, outbound_allow="127.0.0.1") as svc, Receiver() as rx:
        hook(svc, rx)
        rx.start()
        hwids = [f"h{i}" for i in range(5)]
        for hwid in hwids:
            svc.register(hwid)
        sent = svc.send(devices=hwids)  # five ``created`` events, committed together
        work_until(svc, lambda: len(rx.unique()) >= 5, 30, webhook_batch=2)
        assert sorted(e["tracking_code"] for e in rx.unique().values()) == sorted(
            sent["TrackingCodes"]
        )
        assert [len(b) for b in rx.batches] == [2, 2, 1]


def test_webhook_timeout_gives_up_on_an_endpoint_that_does_not_answer(
    database_url: str,
) -> None:
    with service(database_url, outbound_allow="127.0.0.1") as svc, Receiver() as rx:
        hook(svc, rx)
        rx.answers = ["slow"] * 100
        rx.slow_seconds = 5.0
        rx.start()
        svc.register("a")
        svc.send(devices=["a"])
        # 0.3 s per POST: the endpoint is tried again and again while one answer takes 5 s
        # (with the default 10 s, the first POST would still be waiting)
        work_until(svc, lambda: rx.requests >= 3, 4, webhook_timeout_seconds=0.3)
        assert rx.requests >= 3
        (listed,) = svc.v2("webhooks/listWebhooks", {}).json()["items"]
        assert listed["delivered"] == 0
        assert "timed out" in listed["last_error"]


@pytest.mark.parametrize("concurrency", [1, 2])
def test_webhook_concurrency_bounds_the_endpoints_served_at_once(
    database_url: str, concurrency: int
) -> None:
    with (
        service(database_url, outbound_allow="127.0.0.1") as svc,
        Receiver() as one,
        Receiver() as two,
    ):
        for rx in (one, two):
            hook(svc, rx)
            rx.answers = ["slow"] * 10
            rx.slow_seconds = 4.0
            rx.start()
        svc.register("a")
        svc.send(devices=["a"])
        # each endpoint's POST takes 4 s: within 2 s only ``concurrency`` of them are reached
        work_until(svc, lambda: False, 2, webhook_concurrency=concurrency)
        assert one.requests + two.requests == concurrency


@pytest.mark.parametrize("concurrency", [1, 2])
def test_worker_concurrency_bounds_the_jobs_run_at_once(
    database_url: str, concurrency: int
) -> None:
    with service(database_url) as svc:
        run(
            svc.store.dispatch.set_gateway(
                svc.account, svc.app.code, 1, "sandbox", {"latency_ms": 3000}
            )
        )
        svc.register("a")
        svc.register("b")
        svc.send(devices=["a"])  # two messages: a dispatch job each
        svc.send(devices=["b"])
        sending: set[int] = set()

        def watch() -> bool:
            # a job marks its deliveries sent, then waits 3 s for the sandbox's answer
            rows = svc.db.rows("SELECT DISTINCT message_id FROM deliveries WHERE state = 2")
            sending.update(r[0] for r in rows)
            return len(sending) == 2

        work_until(svc, watch, 2, worker_concurrency=concurrency)
        assert len(sending) == concurrency
