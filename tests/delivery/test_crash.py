"""Crash safety: a worker killed mid-message loses nothing and repeats nothing that ended.

What it had in flight (docs/api.md §7.3) goes again to APNs, with the same ``apns-id``,
and not at all to FCM (it ends ``failed``, outcome unknown): nothing reaches FCM twice.
"""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pushtrack.store.base import DeviceIn, MessagePlan, Targeting
from tests.delivery._support import apns_token
from tests.gateways import ApnsServer, FcmServer, WebPushServer
from tests.support import Service, run, service

#: Deliveries of the kill -9 mid-message test (``CRASH_N`` for a bigger run): enough that
#: the kill lands with thousands still to go and batches in flight.
DELIVERIES = int(os.environ.get("CRASH_N", "5000"))
PUSHTRACK = str(Path(sys.executable).with_name("pushtrack"))


def start_worker(url: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PUSHTRACK_WORKER_LEASE_SECONDS": "2",
        "PUSHTRACK_DATABASE": url,
        # a request a loaded machine lets time out is tried again in seconds, not minutes
        "PUSHTRACK_RETRY_BACKOFF_SECONDS": "1",
        "PUSHTRACK_RETRY_MAX_BACKOFF_SECONDS": "5",
    }
    # The worker's log goes to CRASH_LOG when set (for debugging this test).
    with open(os.environ.get("CRASH_LOG", os.devnull), "ab") as log:
        return subprocess.Popen([PUSHTRACK, "worker"], env=env, stdout=log, stderr=log)


def wait_for(predicate: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


async def populate(svc: Service, tokens: list[str], device_type: int = 1) -> None:
    for start in range(0, len(tokens), 1000):
        await asyncio.gather(
            *(
                svc.store.register_device(
                    svc.app, DeviceIn(hwid=f"h{i}", device_type=device_type, push_token=tokens[i])
                )
                for i in range(start, min(start + 1000, len(tokens)))
            )
        )


def send_to(
    svc: Service,
    kind: tuple[int, str, dict[str, Any]],
    tokens: list[str],
    content: str = "crash",
) -> None:
    """The application's gateway ``kind`` (device type, gateway kind, settings), a device
    per token, and a message to all of them, due now (no worker runs yet)."""
    device_type, gateway, settings = kind
    run(svc.store.dispatch.set_gateway("default", svc.app.code, device_type, gateway, settings))
    run(populate(svc, tokens, device_type))
    plan = MessagePlan(
        notification={"content": content}, targeting=Targeting(), send_at=svc.store.clock()
    )
    run(svc.store.create_messages(svc.app, [plan]))


def ended_in(db: Any) -> Callable[[], int]:
    """How many deliveries have ended (delivered or failed), read when called."""
    return lambda: db.count_where("deliveries", "state IN (3, 4)")


@pytest.mark.slow
def test_kill_9_mid_message_then_resume(
    database_url: str, apns_server: ApnsServer, apns_settings: dict[str, Any]
) -> None:
    """APNs: what had ended before the kill is not sent again; what was in flight is,
    with the ``apns-id`` of its first request; each delivery ends once."""
    with service(database_url) as svc:
        run(svc.store.dispatch.set_gateway("default", svc.app.code, 1, "apns", apns_settings))
        tokens = [apns_token() for _ in range(DELIVERIES)]
        run(populate(svc, tokens))
        # A share of the devices are refused for good, so both terminal statuses occur.
        for token in tokens[::50]:
            apns_server.failures[token] = (400, "BadDeviceToken")
        plan = MessagePlan(
            notification={"content": "crash test"}, targeting=Targeting(), send_at=svc.store.clock()
        )
        run(svc.store.create_messages(svc.app, [plan]))
        db = svc.db

        def ended() -> int:
            return db.count_where("deliveries", "state IN (3, 4)")

        worker = start_worker(database_url)
        try:
            wait_for(
                lambda: ended() >= DELIVERIES // 10, 300, "the first worker to end some deliveries"
            )
        finally:
            worker.send_signal(signal.SIGKILL)
            worker.wait()
        ended_before = {
            row[0]
            for row in db.rows(
                "SELECT push_token FROM devices d JOIN deliveries x"
                " ON x.device_id = d.id WHERE x.state IN (3, 4)"
            )
        }
        assert 0 < len(ended_before) < DELIVERIES
        seen_before = len(apns_server.received)

        worker = start_worker(database_url)
        try:
            wait_for(lambda: ended() == DELIVERIES, 600, "the second worker to finish")
            # SIGTERM: the worker stops promptly and cleanly
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(timeout=20) == 0
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()

        per_delivery = collections.Counter(
            (row[0], row[1])
            for row in db.rows(
                "SELECT delivery_id, status FROM events UNION ALL"
                " SELECT id, 1 FROM deliveries WHERE created_at IS NOT NULL"
            )
        )
        ids = [row[0] for row in db.rows("SELECT id FROM deliveries")]
        assert len(ids) == DELIVERIES
        for delivery in ids:
            assert per_delivery[(delivery, 1)] == 1  # created
            assert per_delivery[(delivery, 2)] == 1  # sent
            assert per_delivery[(delivery, 3)] + per_delivery[(delivery, 4)] == 1
        # nothing that had ended before the crash reached the gateway again
        resent = collections.Counter(r.token for r in apns_server.received[seen_before:])
        assert not ended_before & set(resent)
        # and everything else reached it at least once; what reached it again (it was
        # in flight at the kill) carried the apns-id of its first request
        assert {r.token for r in apns_server.received} == set(tokens)
        ids_of: dict[str, set[str | None]] = collections.defaultdict(set)
        for token, apns_id in apns_server.arrived_ids:
            ids_of[token].add(apns_id)
        assert all(len(ids) == 1 and None not in ids for ids in ids_of.values())
        refused = {
            row[0]
            for row in db.rows(
                "SELECT v.push_token FROM events e JOIN deliveries x ON x.id = e.delivery_id"
                " JOIN devices v ON v.id = x.device_id"
                " WHERE e.status = 4 AND e.description = 'BadDeviceToken'"
            )
        }
        assert refused == set(tokens[::50])
        assert db.rows("SELECT status FROM messages") == [("done",)]


def test_sigterm_releases_in_flight_work_at_once(
    database_url: str, apns_server: ApnsServer, apns_settings: dict[str, Any]
) -> None:
    with service(database_url) as svc:
        run(svc.store.dispatch.set_gateway("default", svc.app.code, 1, "apns", apns_settings))
        tokens = [apns_token() for _ in range(1000)]
        run(populate(svc, tokens))
        apns_server.latency = 0.1  # slow enough that SIGTERM lands mid-batch
        plan = MessagePlan(
            notification={"content": "graceful"}, targeting=Targeting(), send_at=svc.store.clock()
        )
        run(svc.store.create_messages(svc.app, [plan]))
        db = svc.db
        env_lease = os.environ.get("PUSHTRACK_WORKER_LEASE_SECONDS")
        os.environ["PUSHTRACK_WORKER_LEASE_SECONDS"] = "600"  # only a release frees the jobs
        try:
            worker = subprocess.Popen(
                [PUSHTRACK, "worker"],
                env={**os.environ, "PUSHTRACK_DATABASE": database_url},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        finally:
            if env_lease is None:
                os.environ.pop("PUSHTRACK_WORKER_LEASE_SECONDS")
            else:
                os.environ["PUSHTRACK_WORKER_LEASE_SECONDS"] = env_lease
        try:
            wait_for(lambda: db.count_where("deliveries", "state = 2") > 0, 60, "sending")
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(timeout=20) == 0
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
        assert db.count_where("jobs", "state = 'running'") == 0
        assert db.count_where("jobs", "lease_owner IS NOT NULL") == 0
        unfinished = db.count_where("deliveries", "state IN (1, 2)")
        assert unfinished > 0
        # another worker takes over at once, without waiting for any lease to run out
        apns_server.latency = 0.0
        from pushtrack import config
        from pushtrack.worker import build_worker

        settings = config.load({"database": database_url}, env={})
        run(build_worker(settings, svc.store, poll_seconds=0.05).run_until_idle(60))
        assert db.count_where("deliveries", "state IN (1, 2)") == 0
        assert db.count_where("events", "status = 2") == len(tokens)
        # what was in flight at SIGTERM was answered then, not sent again by the next worker
        assert collections.Counter(apns_server.arrived) == dict.fromkeys(tokens, 1)


def test_a_worker_stopped_mid_batch_sends_nothing_twice(
    database_url: str, apns_server: ApnsServer, apns_settings: dict[str, Any]
) -> None:
    """The worker stops (SIGTERM, or a lost lease) while a batch is with APNs: the requests
    written are answered and recorded before it stops; those not written stay due and go
    with the next worker, once. Nothing reaches APNs twice."""
    from pushtrack import config
    from pushtrack.worker import build_worker

    with service(database_url) as svc:
        settings = {**apns_settings, "concurrency": 10}
        run(svc.store.dispatch.set_gateway("default", svc.app.code, 1, "apns", settings))
        tokens = [apns_token() for _ in range(300)]
        run(populate(svc, tokens))
        apns_server.latency = 0.3
        plan = MessagePlan(
            notification={"content": "stop"}, targeting=Targeting(), send_at=svc.store.clock()
        )
        run(svc.store.create_messages(svc.app, [plan]))
        db = svc.db
        worker_settings = config.load({"database": database_url}, env={})

        async def stop_mid_batch() -> float:
            worker = build_worker(worker_settings, svc.store, poll_seconds=0.05)
            stop = asyncio.Event()
            running = asyncio.create_task(worker.run(stop))
            while apns_server.http2.taken < 10:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            stop.set()
            began = time.monotonic()
            await running
            return time.monotonic() - began

        took = run(stop_mid_batch())
        reached = len(apns_server.arrived)
        assert 10 <= reached < len(tokens)
        assert took < 5  # a few answers' time, not the rest of the batch
        # what reached APNs was answered and recorded before the worker stopped; the rest
        # was not tried
        assert db.count_where("deliveries", "state = 3") == reached
        assert (
            db.count_where("deliveries", "state IN (1, 2) AND attempts = 0")
            == len(tokens) - reached
        )

        apns_server.latency = 0.0
        run(build_worker(worker_settings, svc.store, poll_seconds=0.05).run_until_idle(60))
        # nothing reached APNs twice: what was in flight was not sent again
        assert collections.Counter(apns_server.arrived) == dict.fromkeys(tokens, 1)
        # what reached APNs before the stop was answered and recorded then, and the rest
        # was not tried: each delivery counts one try
        assert collections.Counter(r.token for r in apns_server.received) == dict.fromkeys(
            tokens, 1
        )
        assert db.count_where("deliveries", "state = 3") == len(tokens)
        assert db.count_where("events", "status = 2") == len(tokens)  # one `sent` each
        assert db.rows("SELECT MIN(attempts), MAX(attempts) FROM deliveries") == [(1, 1)]


def kill_mid_batch(database_url: str, arrived: Any, sent: Any, least: int) -> None:
    """Start a worker and kill -9 it once ``least`` requests reached the stand-in and
    deliveries are ``sent`` with no outcome (requests in flight: the stand-in is slow)."""
    worker = start_worker(database_url)
    try:
        wait_for(lambda: len(arrived) >= least and sent() > 0, 120, "requests in flight")
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()


def finish_with_a_new_worker(database_url: str, ended: Any, total: int) -> None:
    worker = start_worker(database_url)
    try:
        wait_for(lambda: ended() == total, 120, "the second worker to finish")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=20) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


def one_terminal_status_each(db: Any) -> None:
    per_delivery = collections.Counter(
        (row[0], row[1]) for row in db.rows("SELECT delivery_id, status FROM events")
    )
    for (delivery,) in db.rows("SELECT id FROM deliveries"):
        assert per_delivery[(delivery, 2)] == 1  # sent
        assert per_delivery[(delivery, 3)] + per_delivery[(delivery, 4)] == 1


def test_kill_9_mid_batch_to_fcm_fails_what_was_in_flight_never_sends_it_twice(
    database_url: str, fcm_server: FcmServer, fcm_settings: dict[str, Any]
) -> None:
    """A worker killed while its requests are with FCM: the next worker does not send
    those deliveries again (FCM could deliver them twice); they end ``failed``, outcome
    unknown, counted and in the trail like any failure."""
    with service(database_url) as svc:
        tokens = [f"fcm-{i:04d}" for i in range(200)]
        send_to(svc, (3, "fcm", {**fcm_settings, "concurrency": 20}), tokens, "crash")
        fcm_server.latency = 1.0
        db = svc.db
        ended = ended_in(db)

        kill_mid_batch(
            database_url, fcm_server.arrived, lambda: db.count_where("deliveries", "state = 2"), 20
        )
        in_flight = {row[0] for row in db.rows("SELECT id FROM deliveries WHERE state = 2")}
        assert in_flight
        reached = collections.Counter(fcm_server.arrived)
        assert reached
        assert max(reached.values()) == 1

        fcm_server.latency = 0.0
        finish_with_a_new_worker(database_url, ended, len(tokens))
        one_terminal_status_each(db)
        # no token reached FCM twice
        assert max(collections.Counter(fcm_server.arrived).values()) == 1
        # those in flight at the kill ended failed, outcome unknown, without a new request
        failed = {
            row[0]: row[1:]
            for row in db.rows(
                "SELECT delivery_id, description, failure_class FROM events WHERE status = 4"
            )
        }
        assert set(failed) == in_flight
        for description, failure_class in failed.values():
            assert description.startswith("Outcome unknown: the worker stopped while sending")
            assert failure_class == "outcome_unknown"
        assert db.rows("SELECT SUM(errors) FROM counters") == [(len(in_flight),)]
        assert db.count_where("deliveries", "state = 3") == len(tokens) - len(in_flight)
        assert db.count_where("deliveries", "in_flight <> 0") == 0
        assert db.rows("SELECT status FROM messages") == [("done",)]


def test_kill_9_mid_batch_to_web_push_fails_what_was_in_flight_never_sends_it_twice(
    database_url: str, webpush_server: WebPushServer, webpush_settings: dict[str, Any]
) -> None:
    """The same for Web Push: a push service is never sent a push twice."""
    with service(database_url) as svc:
        subscribers = [webpush_server.subscribe() for _ in range(60)]
        send_to(
            svc,
            (11, "webpush", {**webpush_settings, "concurrency": 10}),
            [s.token for s in subscribers],
            "crash",
        )
        webpush_server.latency = 1.0
        db = svc.db
        ended = ended_in(db)

        kill_mid_batch(
            database_url, webpush_server.arrived,
            lambda: db.count_where("deliveries", "state = 2"), 10,
        )  # fmt: skip
        in_flight = db.count_where("deliveries", "state = 2")
        assert in_flight > 0

        webpush_server.latency = 0.0
        finish_with_a_new_worker(database_url, ended, len(subscribers))
        one_terminal_status_each(db)
        assert max(collections.Counter(webpush_server.arrived).values()) == 1
        assert db.count_where("deliveries", "state = 4") == in_flight
        assert (
            db.count_where("events", "status = 4 AND failure_class = 'outcome_unknown'")
            == in_flight
        )
        # getMessageLog tells it like any failure
        hwid = db.rows("SELECT hwid FROM deliveries WHERE state = 4 ORDER BY id LIMIT 1")[0][0]
        steps = [(r["action"], r["failure_class"], r["description"]) for r in svc.log(hwid=hwid)]
        assert [s[:2] for s in steps] == [
            ("created", None), ("sent", None), ("failed", "outcome_unknown")
        ]  # fmt: skip
        assert steps[2][2].startswith("Outcome unknown: the worker stopped while sending it")


@pytest.mark.slow
def test_a_lease_taken_over_from_a_stalled_worker_sends_nothing_to_fcm_twice(
    database_url: str, fcm_server: FcmServer, fcm_settings: dict[str, Any]
) -> None:
    """A worker stalls (SIGSTOP) with requests at FCM; its lease runs out and another
    worker takes the job over; then the first one wakes up. No token reaches FCM twice:
    the new worker does not send what the stalled one had in flight."""
    with service(database_url) as svc:
        tokens = [f"fcm-{i:04d}" for i in range(60)]
        send_to(svc, (3, "fcm", {**fcm_settings, "concurrency": 10}), tokens, "stall")
        fcm_server.latency = 1.0
        db = svc.db
        ended = ended_in(db)

        stalled = start_worker(database_url)
        try:
            wait_for(lambda: len(fcm_server.arrived) >= 10, 60, "requests in flight")
            stalled.send_signal(signal.SIGSTOP)
            assert ended() == 0
            fcm_server.latency = 0.0
            finish_with_a_new_worker(database_url, ended, len(tokens))
            stalled.send_signal(signal.SIGCONT)
            time.sleep(3)  # it finds its lease lost and stops its batch
            stalled.send_signal(signal.SIGTERM)
            assert stalled.wait(timeout=30) == 0
        finally:
            if stalled.poll() is None:
                stalled.send_signal(signal.SIGCONT)
                stalled.kill()
                stalled.wait()
        one_terminal_status_each(db)
        assert max(collections.Counter(fcm_server.arrived).values()) == 1
        unknown = "status = 4 AND failure_class = 'outcome_unknown'"
        assert db.count_where("deliveries", "state = 4") == len(tokens)
        assert db.count_where("events", unknown) == len(tokens)


@pytest.mark.slow
def test_kill_9_while_retrying_to_fcm_fails_the_retries_in_flight(
    database_url: str, fcm_server: FcmServer, fcm_settings: dict[str, Any]
) -> None:
    """Deliveries tried before (a 503 with Retry-After) are in flight again while their
    retry is with FCM: a worker killed then leaves them to the next one, which does not
    send them a third time; they end ``failed``, outcome unknown."""
    with service(database_url) as svc:
        tokens = [f"fcm-{i:04d}" for i in range(60)]
        send_to(svc, (3, "fcm", {**fcm_settings, "concurrency": 10}), tokens, "retry")
        fcm_server.storm(len(tokens), retry_after="3")  # every first try: again in 3 s
        db = svc.db
        ended = ended_in(db)

        worker = start_worker(database_url)
        try:
            wait_for(
                lambda: db.count_where("deliveries", "attempts = 1") == len(tokens),
                60,
                "the first tries to be answered 503 and recorded",
            )
            fcm_server.latency = 1.0  # the retries stay with FCM a while
            wait_for(lambda: len(fcm_server.arrived) >= len(tokens) + 10, 60, "retries in flight")
        finally:
            worker.send_signal(signal.SIGKILL)
            worker.wait()
        retried = {t for t, n in collections.Counter(fcm_server.arrived).items() if n == 2}
        assert retried
        assert ended() == 0

        fcm_server.latency = 0.0
        finish_with_a_new_worker(database_url, ended, len(tokens))
        one_terminal_status_each(db)
        # no token reached FCM a third time: what was in flight was not sent again
        assert max(collections.Counter(fcm_server.arrived).values()) == 2
        unknown = {
            row[0]
            for row in db.rows(
                "SELECT v.push_token FROM events e JOIN deliveries x ON x.id = e.delivery_id"
                " JOIN devices v ON v.id = x.device_id"
                " WHERE e.status = 4 AND e.failure_class = 'outcome_unknown'"
            )
        }
        assert retried <= unknown
        assert db.count_where("deliveries", "state = 4") == len(unknown)
        assert db.rows("SELECT MIN(attempts), MAX(attempts) FROM deliveries") == [(2, 2)]


def test_kill_9_mid_batch_to_apns_sends_again_with_the_same_apns_id(
    database_url: str, apns_server: ApnsServer, apns_settings: dict[str, Any]
) -> None:
    """A worker killed while its requests are with APNs: the next worker sends those
    deliveries again, each with the ``apns-id`` of its first request (the same
    notification to Apple)."""
    with service(database_url) as svc:
        tokens = [apns_token() for _ in range(200)]
        send_to(svc, (1, "apns", {**apns_settings, "concurrency": 20}), tokens)
        apns_server.latency = 1.0
        db = svc.db
        ended = ended_in(db)

        kill_mid_batch(
            database_url, apns_server.arrived, lambda: db.count_where("deliveries", "state = 2"), 20
        )
        assert db.count_where("deliveries", "state = 2") > 0
        first_ids = {}
        for token, apns_id in apns_server.arrived_ids:
            first_ids.setdefault(token, apns_id)

        apns_server.latency = 0.0
        finish_with_a_new_worker(database_url, ended, len(tokens))
        one_terminal_status_each(db)
        assert db.count_where("deliveries", "state = 3") == len(tokens)
        # what was in flight went again, with the apns-id of its first request
        again = collections.Counter(apns_server.arrived)
        assert max(again.values()) == 2
        assert set(again) == set(tokens)
        for token, apns_id in apns_server.arrived_ids:
            assert apns_id is not None
            assert apns_id == first_ids.setdefault(token, apns_id)
        # one id per delivery, and the one its `delivered` event keeps
        assert len({i for _, i in apns_server.arrived_ids}) == len(tokens)
        kept = {
            row[0]: row[1]
            for row in db.rows(
                "SELECT v.push_token, e.gateway_id FROM events e"
                " JOIN deliveries x ON x.id = e.delivery_id JOIN devices v ON v.id = x.device_id"
                " WHERE e.status = 3"
            )
        }
        assert kept == first_ids


def test_a_worker_stopped_while_a_batch_starts_hands_it_back_unsent(
    tmp_path: Path, fcm_server: FcmServer, fcm_settings: dict[str, Any]
) -> None:
    """The worker stops while a batch's transaction (which marks its deliveries sent and
    in flight) is still running: that transaction commits all the same, but nothing was
    written to FCM, so its deliveries go back due, unsent, and the next worker sends
    them (not "outcome unknown", which is for requests that may have reached FCM)."""
    import sqlite3

    from pushtrack import config
    from pushtrack.domain.jobs import JobKind
    from pushtrack.worker import build_worker

    url = f"sqlite:///{tmp_path}/stop.db"
    with service(url) as svc:
        tokens = [f"fcm-{i:04d}" for i in range(5)]
        send_to(svc, (3, "fcm", fcm_settings), tokens, "stopped")
        worker = build_worker(config.load({"database": url}, env={}), svc.store)
        handle = worker.handlers[JobKind.DISPATCH]

        async def stop_while_starting() -> None:
            # the message's audience first: its expansion queues the dispatch job
            (expand,) = await svc.store.jobs.claim(worker.owner, [JobKind.EXPAND], 1, 30)
            await worker.handlers[JobKind.EXPAND](expand)
            (job,) = await svc.store.jobs.claim(worker.owner, [JobKind.DISPATCH], 1, 30)
            # another process holds SQLite's write lock: the batch's transaction waits
            other = sqlite3.connect(f"{tmp_path}/stop.db", isolation_level=None)
            other.execute("BEGIN IMMEDIATE")
            task = asyncio.create_task(handle(job))
            await asyncio.sleep(0.3)  # the batch is starting, queued behind the lock
            task.cancel()
            await asyncio.sleep(0.1)
            other.execute("COMMIT")  # it commits now, after the stop
            other.close()
            with pytest.raises(asyncio.CancelledError):
                await task
            await svc.store.jobs.reschedule(job.id, worker.owner, svc.store.clock())
            for close in worker.closers:
                await close()

        run(stop_while_starting())
        db = svc.db
        assert fcm_server.arrived == []
        assert db.count_where("deliveries", "in_flight <> 0") == 0
        assert db.count_where("deliveries", "state IN (3, 4)") == 0
        # the next worker sends each once
        run(build_worker(config.load({"database": url}, env={}), svc.store).run_until_idle(30))
        assert sorted(fcm_server.arrived) == sorted(tokens)
        assert db.count_where("deliveries", "state = 3") == len(tokens)
        assert db.rows("SELECT COUNT(*) FROM events WHERE status = 4") == [(0,)]
