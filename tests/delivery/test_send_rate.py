"""send_rate: a message's deliveries go out at no more than its rate, across its jobs.

Measured from the ``sent`` events the store records (the time each delivery was
handed to the gateway), with generous bounds: the rate caps how many go in any
one second, and so how long the whole message takes at least.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec
import pytest

from pushtrack import config
from pushtrack.domain.notification import Content, fields
from pushtrack.domain.status import Status
from pushtrack.store import messages as store_messages
from pushtrack.store.base import DeviceIn, MessagePlan, Targeting
from pushtrack.worker import build_worker
from tests.support import Service, run, service

SETTINGS = {"max_attempts": 2, "retry_backoff_seconds": 0.05, "worker_lease_seconds": 5}


@pytest.fixture
def sender(database_url: str) -> Iterator[Service]:
    with service(database_url, **SETTINGS) as svc:
        run(svc.store.dispatch.set_gateway("default", svc.app.code, 1, "sandbox", {}))
        yield svc


def send(svc: Service, devices: int, **notification: Any) -> int:
    for i in range(devices):
        run(svc.store.register_device(svc.app, DeviceIn(f"d{i}", 1, push_token=f"t{i}")))
    content = msgspec.convert({"content": "Hi", **notification}, Content)
    plan = MessagePlan(
        notification=fields(content),
        targeting=Targeting(devices=tuple(f"d{i}" for i in range(devices))),
        send_at=svc.store.clock(),
    )
    (created,) = run(svc.store.create_messages(svc.app, [plan]))
    return int(created.id)


def work(svc: Service, concurrency: int = 4) -> None:
    settings = config.load({"database": svc.store.url, **SETTINGS}, env={})
    worker = build_worker(settings, svc.store, poll_seconds=0.05)
    worker.concurrency = concurrency
    run(worker.run_until_idle(60))


def sent_times(svc: Service, message_id: int) -> list[float]:
    """When each delivery of a message was handed to its gateway, in seconds."""
    rows = svc.db.rows(
        "SELECT e.ts FROM events e JOIN deliveries d ON d.id = e.delivery_id"
        " WHERE d.message_id = ? AND e.status = ? ORDER BY e.ts",
        (message_id, int(Status.SENT)),
    )
    return [ts / 1e6 for (ts,) in rows]


def busiest_second(times: list[float]) -> int:
    """The most sends that any one-second window holds."""
    return max(sum(1 for u in times if t <= u < t + 1.0) for t in times)


def test_send_rate_spreads_deliveries_across_jobs(
    sender: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = sender
    # small dispatch jobs, run four at a time: the rate must hold across them
    monkeypatch.setattr(store_messages, "DISPATCH_CHUNK", 10)
    rate, devices = 20, 60
    message_id = send(svc, devices, send_rate=rate)
    assert svc.db.count_where("jobs", "kind = 'dispatch'") == devices // 10
    work(svc)

    times = sent_times(svc, message_id)
    assert len(times) == devices
    assert svc.db.rows("SELECT status FROM messages WHERE id = ?", (message_id,)) == [("done",)]
    # at most a second's worth plus one burst (a quarter second's worth) in any second
    assert busiest_second(times) <= rate + rate // 4 + 1
    # so 60 take at least (60 - one second's worth - a burst) / rate seconds
    assert times[-1] - times[0] >= (devices - rate - rate // 4) / rate


def test_without_send_rate_nothing_waits(sender: Service) -> None:
    svc = sender
    message_id = send(svc, 60)
    work(svc)
    times = sent_times(svc, message_id)
    assert len(times) == 60
    assert busiest_second(times) > 25  # far above the rate of the test above


def test_a_throttled_message_can_still_be_cancelled(sender: Service) -> None:
    svc = sender
    message_id = send(svc, 30, send_rate=5)
    code = svc.db.rows("SELECT code FROM messages WHERE id = ?", (message_id,))[0][0]

    async def cancel_midway() -> None:
        import asyncio

        settings = config.load({"database": svc.store.url, **SETTINGS}, env={})
        worker = build_worker(settings, svc.store, poll_seconds=0.05)
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        while svc.db.count_where("events", f"status = {int(Status.SENT)}") < 3:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        await svc.store.delete_message("default", None, code)
        await asyncio.sleep(0.5)
        stop.set()
        await task

    run(cancel_midway())
    sent = len(sent_times(svc, message_id))
    assert 3 <= sent < 30
    failed = svc.db.count_where("events", f"status = {int(Status.FAILED)}")
    assert failed == 30 - sent  # every delivery not sent ends failed/Cancelled
