"""Webhooks end to end: every event of a 10,000-delivery message reaches a local
receiver (signature checked), exactly once after de-duplication by id and in order,
although the receiver is down at first, answers 500s, is slow, and the worker is
killed with kill -9 mid-stream."""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import os
import signal
import subprocess
from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from pushtrack.store.base import DeviceIn, MessagePlan, Targeting
from pushtrack.worker import build_worker
from tests.delivery.test_crash import PUSHTRACK, wait_for
from tests.gateways.webhook_receiver import Receiver
from tests.support import Service, run, secret_env, service

DELIVERIES = int(os.environ.get("WEBHOOK_N", "4000"))
#: Worker settings: small batches, short waits, a loopback receiver allowed.
WORKER_ENV = {
    "PUSHTRACK_WORKER_LEASE_SECONDS": "2",
    "PUSHTRACK_OUTBOUND_ALLOW": "127.0.0.1",
    "PUSHTRACK_WEBHOOK_BATCH": "500",
    "PUSHTRACK_WEBHOOK_LINGER_MS": "20",
    "PUSHTRACK_WEBHOOK_TIMEOUT_SECONDS": "1",
    "PUSHTRACK_WEBHOOK_BACKOFF_SECONDS": "0.2",
    "PUSHTRACK_WEBHOOK_MAX_BACKOFF_SECONDS": "1",
    "PUSHTRACK_WEBHOOK_POLL_MS": "100",
}


def start_worker(url: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, **WORKER_ENV, **secret_env(url), "PUSHTRACK_DATABASE": url}
    with open(os.environ.get("WEBHOOK_LOG", os.devnull), "ab") as log:
        return subprocess.Popen([PUSHTRACK, "worker"], env=env, stdout=log, stderr=log)


async def populate(svc: Service, n: int) -> None:
    for start in range(0, n, 1000):
        await asyncio.gather(
            *(
                svc.store.register_device(
                    svc.app, DeviceIn(hwid=f"h{i}", device_type=1, push_token=f"tok{i}")
                )
                for i in range(start, min(start + 1000, n))
            )
        )


def _position(event_id: str) -> tuple[int, int]:
    at, key = event_id.split("-")
    return int(at), int(key)


@pytest.mark.slow
def test_every_event_arrives_once_in_order_through_outages_and_a_kill_9(
    database_url: str,
) -> None:
    with service(database_url, outbound_allow="127.0.0.1") as svc, Receiver() as receiver:
        # the sandbox gateway fails some deliveries for good, so failed events occur too
        run(
            svc.store.dispatch.set_gateway(
                svc.account, svc.app.code, 1, "sandbox", {"failure_rate": 0.1, "seed": 7}
            )
        )
        run(populate(svc, DELIVERIES))
        added = svc.v2("webhooks/addWebhook", {"application": svc.app.code, "url": receiver.url})
        assert added.status_code == 200, added.text
        receiver.secret = added.json()["secret"]
        plan = MessagePlan(
            notification={"content": "webhook test"},
            targeting=Targeting(),
            send_at=svc.store.clock(),
        )
        run(svc.store.create_messages(svc.app, [plan]))
        db = svc.db

        def ended() -> int:
            return db.count_where("deliveries", "state IN (3, 4)")

        # the receiver is down while the first worker starts sending
        worker = start_worker(database_url)
        try:
            wait_for(lambda: ended() >= DELIVERIES // 10, 120, "deliveries to end")
            assert receiver.requests == 0
            receiver.answers = ["500", "500", "slow", "ok", "500", "slow"]
            receiver.start()
            wait_for(lambda: len(receiver.unique()) >= DELIVERIES // 2, 120, "events to arrive")
        finally:
            worker.send_signal(signal.SIGKILL)
            worker.wait()
        worker = start_worker(database_url)
        try:
            wait_for(lambda: ended() == DELIVERIES, 300, "every delivery to end")
            total = 3 * DELIVERIES  # created, sent, then delivered or failed
            wait_for(lambda: len(receiver.unique()) >= total, 120, "every event to arrive")
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(timeout=20) == 0
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()

        assert receiver.bad_signatures == 0
        unique = receiver.unique()
        assert len(unique) == 3 * DELIVERIES
        # one id per event: no event arrived under two ids
        facts = collections.Counter((e["tracking_code"], e["status"]) for e in unique.values())
        assert max(facts.values()) == 1
        per_status = collections.Counter(e["status"] for e in unique.values())
        assert per_status["created"] == per_status["sent"] == DELIVERIES
        assert per_status["delivered"] + per_status["failed"] == DELIVERIES
        assert per_status["failed"] > 0
        # in order: events first arrive in the order of their ids' positions
        first_seen = [_position(i) for i in unique]
        assert first_seen == sorted(first_seen)
        # some were sent more than once (a 500, a slow answer, the kill), none lost
        assert len(receiver.events()) > len(unique)
        fields = {
            "id", "status", "tracking_code", "message_code", "application_code", "hwid",
            "user_id", "platform", "description", "timestamp", "gateway_id", "attempt",
            "failure_class",
        }  # fmt: skip
        assert all(set(e) == fields for e in unique.values())
        listed = svc.v2("webhooks/listWebhooks", {"application": svc.app.code}).json()
        (hook,) = listed["items"]
        assert hook["failing"] is False
        assert hook["failing_since"] is None
        assert hook["delivered"] >= 3 * DELIVERIES


def _work_until(
    svc: Service, done: Callable[[], bool], seconds: float = 60, **overrides: Any
) -> None:
    """Run a worker in this process (short webhook waits, and ``overrides`` of the
    service's settings) until ``done()`` or ``seconds``."""
    assert svc.settings is not None
    settings = msgspec.structs.replace(
        svc.settings,
        **{
            "webhook_linger_ms": 0,
            "webhook_poll_ms": 20,
            "webhook_backoff_seconds": 0.05,
            "webhook_max_backoff_seconds": 0.2,
            **overrides,
        },
    )
    worker = build_worker(settings, svc.store, poll_seconds=0.02)

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


def test_status_filter_replay_and_removal(database_url: str) -> None:
    with service(database_url, outbound_allow="127.0.0.1") as svc, Receiver() as receiver:
        receiver.start()
        for hwid in ("a", "b"):
            svc.register(hwid)
        made = svc.v2(
            "webhooks/addWebhook",
            {"application": svc.app.code, "url": receiver.url, "statuses": ["created"]},
        )
        assert made.status_code == 200, made.text
        added = made.json()
        receiver.secret = added["secret"]
        assert added["statuses"] == ["created"]
        sent = svc.send(devices=["a", "b"])
        _work_until(svc, lambda: len(receiver.unique()) >= 2)
        unique = receiver.unique()
        assert sorted(e["tracking_code"] for e in unique.values()) == sorted(sent["TrackingCodes"])
        assert {e["status"] for e in unique.values()} == {"created"}
        assert {e["message_code"] for e in unique.values()} == {sent["Messages"][0]}
        # replay: everything again from a time within retention
        before = len(receiver.events())
        today = dt.datetime.now(dt.UTC)
        replayed = svc.v2(
            "webhooks/replayWebhook",
            {"application": svc.app.code, "url": receiver.url, "since": today.strftime("%Y-%m-%d")},
        )
        assert replayed.status_code == 200, replayed.text
        _work_until(svc, lambda: len(receiver.events()) >= before + 2)
        again = receiver.events()[before:]
        assert sorted(e["id"] for e in again) == sorted(unique)
        # removed: nothing more is sent
        out = svc.v2("webhooks/removeWebhook", {"application": svc.app.code, "url": receiver.url})
        assert out.json() == {"removed": True}
        count = len(receiver.events())
        svc.send(devices=["a"])
        _work_until(svc, lambda: False, seconds=1.0)
        assert len(receiver.events()) == count
        assert svc.v2("webhooks/listWebhooks", {}).json() == {"items": []}


def test_an_endpoint_that_is_down_or_slow_delays_only_itself(database_url: str) -> None:
    with (
        service(database_url, outbound_allow="127.0.0.1") as svc,
        Receiver() as up,
        Receiver() as slow,
        Receiver() as down,
    ):
        for receiver in (up, slow, down):
            made = svc.v2(
                "webhooks/addWebhook",
                {"application": svc.app.code, "url": receiver.url, "statuses": ["created"]},
            )
            # each receiver holds its own port from the start: ports picked apart and
            # bound later could be one port twice, the second endpoint then refused as
            # "already a webhook"
            assert made.status_code == 200, made.text
            receiver.secret = made.json()["secret"]
        up.start()
        slow.start()
        slow.slow_seconds = 5.0
        slow.answers = ["slow"] * 100
        for hwid in ("a", "b", "c"):
            svc.register(hwid)
        sent = svc.send(devices=["a", "b", "c"])

        def down_tried() -> bool:
            rows = svc.db.rows("SELECT failing_since FROM webhooks WHERE url = ?", (down.url,))
            return rows[0][0] is not None

        def done() -> bool:
            return len(up.unique()) >= 3 and down_tried() and slow.requests >= 1

        _work_until(svc, done, seconds=30)
        # the slow endpoint's first POST is still waiting for its answer
        assert slow.requests == 1
        assert slow.batches
        assert sorted(e["tracking_code"] for e in up.unique().values()) == sorted(
            sent["TrackingCodes"]
        )
        assert up.bad_signatures == 0
        assert down.requests == 0  # never reached: it is down
        listed = {h["url"]: h for h in svc.v2("webhooks/listWebhooks", {}).json()["items"]}
        assert listed[up.url]["delivered"] == 3
        assert listed[down.url]["delivered"] == 0
        assert listed[down.url]["failing_since"] is not None


def test_events_carry_what_get_message_log_shows_and_the_devices_confirmation(
    database_url: str,
) -> None:
    """Each event's gateway id, try count and failure class are getMessageLog's, and a
    device's confirmation after the gateway's delivery arrives as an event of its own."""
    with service(database_url, outbound_allow="127.0.0.1") as svc, Receiver() as receiver:
        run(
            svc.store.dispatch.set_gateway(
                svc.account, svc.app.code, 1, "sandbox", {"failure_rate": 0.5, "seed": 3}
            )
        )
        hwids = [f"d{i:02}" for i in range(30)]
        for hwid in hwids:
            svc.register(hwid)
        made = svc.v2("webhooks/addWebhook", {"application": svc.app.code, "url": receiver.url})
        assert made.status_code == 200, made.text
        receiver.secret = made.json()["secret"]
        receiver.start()
        sent = svc.send(devices=hwids)
        _work_until(svc, lambda: len(receiver.unique()) >= 3 * len(hwids))
        delivered = [e for e in receiver.unique().values() if e["status"] == "delivered"]
        assert delivered
        confirming = delivered[0]
        out = svc.device(
            "messageDeliveryEvent",
            hwid=confirming["hwid"],
            hash=svc.hash_of(confirming["tracking_code"]),
        )
        assert out["status_code"] == 200, out
        _work_until(svc, lambda: len(receiver.unique()) >= 3 * len(hwids) + 1)

        events = {(e["tracking_code"], e["status"]): e for e in receiver.unique().values()}
        assert len(events) == 3 * len(hwids) + 1
        logged = {
            (r["tracking_code"], r["action"]): r for r in svc.log(message_code=sent["Messages"][0])
        }
        assert set(events) == set(logged)
        for key, event in events.items():
            row = logged[key]
            assert (event["gateway_id"], event["failure_class"], event["description"]) == (
                row["gateway_id"],
                row["failure_class"],
                row["description"],
            ), key
            # tries so far when it was sent: an ended delivery's are final
            if event["status"] in ("delivered", "failed", "confirmed"):
                assert event["attempt"] == row["attempts"] == 1, key
            else:
                assert event["attempt"] <= row["attempts"], key
        by_status: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
        for event in events.values():
            by_status[event["status"]].append(event)
        assert all(e["gateway_id"].startswith("sandbox-") for e in by_status["delivered"])
        assert by_status["failed"]
        assert all(
            e["failure_class"] in ("token_dead", "token_invalid") for e in by_status["failed"]
        )
        assert all(e["gateway_id"] is None for e in by_status["created"] + by_status["sent"])
        (confirmed,) = by_status["confirmed"]
        assert (confirmed["tracking_code"], confirmed["description"]) == (
            confirming["tracking_code"],
            "Confirmed by device",
        )
        assert receiver.bad_signatures == 0
