"""Audience messages: recorded at once, expanded by a job in bounded steps, exactly once."""

from __future__ import annotations

import asyncio
import collections
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pushtrack import config
from pushtrack.domain.tags import TagType
from pushtrack.domain.targeting import parse_filter
from pushtrack.jobs import expansion
from pushtrack.jobs.dispatch import Dispatcher
from pushtrack.jobs.runner import Worker
from pushtrack.store.base import DeviceIn, MessagePlan, Targeting
from pushtrack.worker import build_worker
from tests.delivery.test_crash import PUSHTRACK, wait_for
from tests.support import Service, json_value, run, service

SETTINGS = {"max_attempts": 3, "retry_backoff_seconds": 0.05, "worker_lease_seconds": 5}
US = 1_000_000


@pytest.fixture
def svc(database_url: str) -> Iterator[Service]:
    with service(database_url, **SETTINGS) as s:
        yield s


def settings_of(svc: Service, **more: Any) -> config.Settings:
    return config.load({"database": svc.store.url, **SETTINGS, **more}, env={})


def work(svc: Service, seconds: float = 60, **more: Any) -> None:
    """Run a full worker (expansion and dispatch) until nothing is due."""
    worker = build_worker(settings_of(svc, **more), svc.store, poll_seconds=0.02)
    run(worker.run_until_idle(seconds))


def dispatch_only(svc: Service) -> None:
    """Run only the dispatch jobs that are due."""
    worker = Worker(svc.store, {"dispatch": Dispatcher(svc.store).handle}, poll_seconds=0.02)
    run(worker.run_until_idle(60, horizon=0))


async def _populate(svc: Service, devices: list[DeviceIn]) -> None:
    for start in range(0, len(devices), 500):
        await asyncio.gather(
            *(svc.store.register_device(svc.app, d) for d in devices[start : start + 500])
        )


def populate(svc: Service, devices: list[DeviceIn]) -> None:
    run(_populate(svc, devices))


def ios(i: int, **fields: Any) -> DeviceIn:
    fields.setdefault("push_token", f"tok-{i}")
    return DeviceIn(hwid=f"hw-{i:05d}", device_type=1, **fields)


def create(svc: Service, **notification: Any) -> tuple[str, int]:
    """createMessage with one audience notification, no expansion; (code, message id)."""
    notification.setdefault("content", "hello")
    out = svc.server("createMessage", notifications=[notification])
    assert out["status_code"] == 200, out
    assert set(out["response"]) == {"Messages"}  # no TrackingCodes for an audience
    (code,) = out["response"]["Messages"]
    (mid,) = svc.db.rows("SELECT id FROM messages WHERE code = ?", (code,))[0]
    return code, int(mid)


def message(svc: Service, mid: int) -> tuple[str, int, int | None]:
    """(status, deliveries, expand_after) of a message."""
    (row,) = svc.db.rows(
        "SELECT status, deliveries, expand_after FROM messages WHERE id = ?", (mid,)
    )
    return str(row[0]), int(row[1]), row[2]


def devices_of(svc: Service, mid: int) -> list[int]:
    """The device of every delivery of a message (repeats kept)."""
    return [
        int(r[0])
        for r in svc.db.rows("SELECT device_id FROM deliveries WHERE message_id = ?", (mid,))
    ]


def events_per_delivery(svc: Service, mid: int) -> collections.Counter[tuple[int, int]]:
    """(delivery, status) -> how often: the events, and ``created`` (the rows' created_at)."""
    return collections.Counter(
        (int(r[0]), int(r[1]))
        for r in svc.db.rows(
            "SELECT e.delivery_id, e.status FROM events e JOIN deliveries d"
            " ON d.id = e.delivery_id WHERE d.message_id = ?"
            " UNION ALL SELECT id, 1 FROM deliveries WHERE message_id = ?"
            " AND created_at IS NOT NULL",
            (mid, mid),
        )
    )


def expand_jobs(svc: Service) -> list[str]:
    return [
        str(r[0]) for r in svc.db.rows("SELECT state FROM jobs WHERE kind = ?", (expansion.KIND,))
    ]


# -- recorded at once, expanded by the job ---------------------------------------------------


def test_create_answers_before_expansion_and_writes_no_delivery(svc: Service) -> None:
    populate(svc, [ios(i) for i in range(50)])
    before = svc.db.counts()
    _code, mid = create(svc, platforms=[1], data={"k": 1})
    after = svc.db.counts()
    # the request wrote the message and its expansion job, nothing else
    assert {t: after[t] - before[t] for t in after if after[t] != before[t]} == {
        "messages": 1,
        "jobs": 1,
    }
    assert message(svc, mid) == ("pending", 0, 0)
    assert expand_jobs(svc) == ["pending"]
    (targeting,) = svc.db.rows("SELECT targeting FROM messages WHERE id = ?", (mid,))[0]
    assert "platforms" in targeting

    svc.expand()
    assert sorted(devices_of(svc, mid)) == sorted(
        int(r[0]) for r in svc.db.rows("SELECT id FROM devices")
    )
    assert message(svc, mid) == ("pending", 50, None)
    assert expand_jobs(svc) == ["done"]


def test_audience_expands_in_steps_with_one_delivery_per_device(svc: Service) -> None:
    # 2,500 iOS devices in the audience; languages met for the first time in later steps
    wanted = [
        ios(i, language="en" if i < 1200 else "fr" if i < 2000 else "de") for i in range(2500)
    ]
    others = [DeviceIn(hwid=f"and-{i}", device_type=3, push_token=f"a-{i}") for i in range(300)]
    off = [ios(i) for i in range(2500, 2550)]
    populate(svc, wanted + others + off)
    for d in off:
        assert run(svc.store.unregister_device(svc.app, d.hwid))

    _, mid = create(svc, platforms=[1], content={"en": "Hello", "de": "Hallo"})
    svc.expand()

    expected = {
        int(r[0])
        for r in svc.db.rows(
            "SELECT id FROM devices WHERE device_type = 1 AND subscribed = 1 AND app_id = ?",
            (svc.app.id,),
        )
    }
    assert len(expected) == 2500
    got = devices_of(svc, mid)
    assert len(got) == 2500
    assert set(got) == expected  # exactly one delivery per device of the audience
    assert message(svc, mid) == ("pending", 2500, None)
    # one step per `expansion_batch` devices, each with a dispatch job over its own deliveries
    params = [
        json.loads(r[0])
        for r in svc.db.rows(
            "SELECT params FROM jobs WHERE kind = 'dispatch' AND message_id = ?", (mid,)
        )
    ]
    assert all(p["message_id"] == mid and p["app_id"] == svc.app.id for p in params)
    ranges = sorted((int(p["first"]), int(p["last"])) for p in params)
    assert svc.settings is not None
    assert len(ranges) == -(-2500 // svc.settings.expansion_batch) > 1
    ids = sorted(
        int(r[0]) for r in svc.db.rows("SELECT id FROM deliveries WHERE message_id = ?", (mid,))
    )
    assert sum(1 for d in ids for lo, hi in ranges if lo <= d <= hi) == 2500
    # every delivery tracked like any other: its own code and one `created` event
    events = events_per_delivery(svc, mid)
    assert sorted(events.items()) == sorted(((d, 1), 1) for d in ids)
    assert len(svc.hashes()) == 2500  # a tracking code each, all distinct
    # one payload template per (platform, language), whichever step met it first
    templates = {
        (int(r[0]), r[1]): int(r[2])
        for r in svc.db.rows(
            "SELECT platform, language, id FROM payloads WHERE message_id = ?", (mid,)
        )
    }
    assert set(templates) == {(1, "en"), (1, None), (1, "de")}
    chosen = collections.Counter(
        (str(r[0]), int(r[1]))
        for r in svc.db.rows(
            "SELECT v.language, d.payload_id FROM deliveries d JOIN devices v"
            " ON v.id = d.device_id WHERE d.message_id = ?",
            (mid,),
        )
    )
    assert chosen == {
        ("en", templates[(1, "en")]): 1200,
        ("fr", templates[(1, None)]): 800,
        ("de", templates[(1, "de")]): 500,
    }

    # sent like any other message; done once the last delivery ended
    run(svc.store.dispatch.set_gateway("default", svc.app.code, 1, "sandbox", {}))
    work(svc)
    assert message(svc, mid) == ("done", 2500, None)
    assert svc.db.count_where("deliveries", f"message_id = {mid} AND state = 3") == 2500


def test_a_selection_expands_to_exactly_the_devices_it_selects(svc: Service) -> None:
    devices = [
        ios(i, tags={"level": i % 10, "vip": i % 7 == 0}, language="de" if i % 3 else None)
        for i in range(2300)
    ]
    populate(svc, devices)
    node = parse_filter('(T("level", GTE, 7) + T("vip", EQ, 1)) \\ T("level", EQ, 9)')
    plan = MessagePlan(
        notification={"content": {"en": "Hi", "de": "Hallo"}},
        targeting=Targeting(platforms=(1,), selection=node),
        send_at=svc.store.clock(),
    )
    (created,) = run(svc.store.create_messages(svc.app, [plan]))
    assert created.tracking_codes is None
    mid = created.id
    assert devices_of(svc, mid) == []
    (stored,) = svc.db.rows("SELECT targeting FROM messages WHERE id = ?", (mid,))[0]
    svc.expand()

    chosen = {f"hw-{i:05d}" for i in range(2300) if (i % 10 >= 7 or i % 7 == 0) and i % 10 != 9}
    got = [
        str(r[0]) for r in svc.db.rows("SELECT hwid FROM deliveries WHERE message_id = ?", (mid,))
    ]
    assert sorted(got) == sorted(chosen)  # each selected device once, nothing else
    assert message(svc, mid) == ("pending", len(chosen), None)
    exp = run(svc.store.expansion.load(mid))
    assert exp.selection == node  # kept with the message, as it was given
    assert "level" in stored


def test_a_selection_that_no_longer_fits_its_tag_stops_the_expansion(svc: Service) -> None:
    populate(svc, [ios(i, tags={"level": i % 5}) for i in range(30)])
    node = parse_filter('T("level", GTE, 3)')
    plan = MessagePlan(
        notification={"content": "x"},
        targeting=Targeting(selection=node),
        send_at=svc.store.clock(),
    )
    (created,) = run(svc.store.create_messages(svc.app, [plan]))
    # the tag is deleted and declared again as text: GTE no longer means anything
    assert run(svc.store.targeting.delete_tag(svc.app, "level"))
    run(svc.store.targeting.add_tag(svc.app, "level", TagType.STRING))
    svc.expand()
    assert message(svc, created.id) == ("done", 0, None)  # never widened, never stuck
    (result,) = svc.db.rows("SELECT result FROM jobs WHERE kind = ?", (expansion.KIND,))[0]
    assert "level" in json_value(result)["error"]


def test_two_steps_from_one_cursor_apply_once(svc: Service) -> None:
    populate(svc, [ios(i) for i in range(1500)])
    _, mid = create(svc)
    exp = run(svc.store.expansion.load(mid))
    assert exp is not None
    assert exp.cursor == 0

    async def twice() -> list[Any]:
        return list(
            await asyncio.gather(svc.store.expansion.step(exp, 0), svc.store.expansion.step(exp, 0))
        )

    steps = run(twice())
    assert sorted(s.won for s in steps) == [False, True]
    (won,) = [s for s in steps if s.won]
    assert won.deliveries == 1000
    assert len(devices_of(svc, mid)) == 1000
    # a step from a stale cursor writes nothing
    stale = run(svc.store.expansion.step(exp, 0))
    assert not stale.won
    svc.expand()
    assert sorted(devices_of(svc, mid)) == sorted(
        int(r[0]) for r in svc.db.rows("SELECT id FROM devices")
    )
    assert message(svc, mid) == ("pending", 1500, None)


def test_not_done_while_expanding_and_an_empty_audience_is_done(svc: Service) -> None:
    populate(svc, [ios(i) for i in range(1200)])
    run(svc.store.dispatch.set_gateway("default", svc.app.code, 1, "sandbox", {}))
    _, mid = create(svc)
    exp = run(svc.store.expansion.load(mid))
    first = run(svc.store.expansion.step(exp, 0))
    assert first.deliveries == 1000
    dispatch_only(svc)  # every delivery so far ends, but the audience is not all there
    assert svc.db.count_where("deliveries", f"message_id = {mid} AND state = 3") == 1000
    assert message(svc, mid) == ("sending", 1000, first.cursor)
    work(svc)
    assert message(svc, mid) == ("done", 1200, None)
    assert svc.db.count_where("deliveries", f"message_id = {mid} AND state = 3") == 1200

    code, empty = create(svc, users=["nobody"])
    assert message(svc, empty) == ("pending", 0, 0)
    svc.expand()
    assert message(svc, empty) == ("done", 0, None)
    out = svc.server("deleteMessage", message=code)
    assert out["status_code"] == 210
    assert "already done" in out["status_message"]


# -- deleteMessage during expansion -----------------------------------------------------------


def test_delete_between_steps_stops_the_expansion(svc: Service) -> None:
    populate(svc, [ios(i) for i in range(2500)])
    run(svc.store.dispatch.set_gateway("default", svc.app.code, 1, "sandbox", {}))
    code, mid = create(svc, send_date="2099-01-01 00:00")
    exp = run(svc.store.expansion.load(mid))
    first = run(svc.store.expansion.step(exp, 0))
    assert message(svc, mid) == ("scheduled", 1000, first.cursor)

    out = svc.server("deleteMessage", message=code)
    assert out["status_code"] == 200, out
    assert message(svc, mid) == ("cancelled", 1000, None)
    assert expand_jobs(svc) == ["cancelled"]
    # a step that read its devices before the delete loses: nothing more is written
    assert not run(svc.store.expansion.step(exp, first.cursor)).won
    work(svc, seconds=5)
    assert len(devices_of(svc, mid)) == 1000
    events = events_per_delivery(svc, mid)
    descriptions = collections.Counter(
        r[0]
        for r in svc.db.rows(
            "SELECT e.description FROM events e JOIN deliveries d ON d.id = e.delivery_id"
            " WHERE d.message_id = ? AND e.status = 4",
            (mid,),
        )
    )
    assert descriptions == {"Cancelled": 1000}
    assert sum(n for (_, status), n in events.items() if status == 1) == 1000
    assert svc.db.count_where("jobs", "kind = 'dispatch' AND state <> 'cancelled'") == 0


def test_delete_while_a_worker_expands(svc: Service) -> None:
    n = 5000
    populate(svc, [ios(i) for i in range(n)])
    run(svc.store.dispatch.set_gateway("default", svc.app.code, 1, "sandbox", {}))
    code, mid = create(svc)
    worker = build_worker(settings_of(svc, expansion_batch=20), svc.store, poll_seconds=0.02)

    async def race() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        while svc.db.count_where("deliveries", f"message_id = {mid}") == 0:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        out = await asyncio.to_thread(svc.server, "deleteMessage", message=code)
        assert out["status_code"] == 200, out
        stop.set()
        await task

    run(race())
    work(svc)
    written = devices_of(svc, mid)
    assert 0 < len(written) < n  # it stopped mid-way
    assert len(set(written)) == len(written)
    status, count, cursor = message(svc, mid)
    assert (status, count, cursor) == ("cancelled", len(written), None)
    # every delivery ended, exactly once; what was not sent is cancelled
    assert svc.db.count_where("deliveries", f"message_id = {mid} AND state IN (1, 2)") == 0
    events = events_per_delivery(svc, mid)
    for d in {
        int(r[0]) for r in svc.db.rows("SELECT id FROM deliveries WHERE message_id = ?", (mid,))
    }:
        assert events[(d, 1)] == 1
        assert events[(d, 3)] + events[(d, 4)] == 1
    assert set(expand_jobs(svc)) <= {"cancelled", "done"}


# -- when: scheduled and local-time audiences, tracking off -------------------------------------


def test_scheduled_and_local_time_audiences(svc: Service) -> None:
    populate(svc, [ios(0, timezone=3 * 3600), ios(1, timezone=0), ios(2, timezone=-5 * 3600)])
    wall = (datetime.now(UTC) + timedelta(hours=2)).replace(second=0, microsecond=0)
    text = wall.strftime("%Y-%m-%d %H:%M")
    _, mid = create(svc, send_date=text, ignore_user_timezone=False)
    svc.expand()
    due = {
        str(r[0]): int(r[1])
        for r in svc.db.rows("SELECT hwid, next_at FROM deliveries WHERE message_id = ?", (mid,))
    }
    at = int(wall.timestamp()) * US
    assert abs(due["hw-00000"] - svc.store.clock()) < 60 * US  # 2 hours ahead there: now
    assert due["hw-00001"] == at
    assert due["hw-00002"] == at + 5 * 3600 * US
    (run_at,) = svc.db.rows(
        "SELECT run_at FROM jobs WHERE kind = 'dispatch' AND params LIKE ?",
        (f'{{"message_id":{mid},%',),
    )[0]
    assert run_at == min(due.values())

    _, later = create(svc, send_date="2099-06-01 12:00")
    svc.expand()
    assert message(svc, later) == ("scheduled", 3, None)
    assert {
        int(r[0])
        for r in svc.db.rows("SELECT next_at FROM deliveries WHERE message_id = ?", (later,))
    } == {int(datetime(2099, 6, 1, 12, tzinfo=UTC).timestamp()) * US}


def test_tracking_off_audience_is_tracked_the_same(svc: Service) -> None:
    quiet = svc.new_app("untracked", tracking=False)
    for i in range(3):
        run(svc.store.register_device(quiet, ios(i)))
    body = {
        "auth": svc.server_token,
        "application": quiet.code,
        "notifications": [{"content": "x"}],
    }
    out = svc.call("createMessage", body).json()
    assert out["status_code"] == 200, out
    assert set(out["response"]) == {"Messages"}
    svc.expand()
    (code,) = out["response"]["Messages"]
    rows = svc.log(message_code=code)
    assert [r["action"] for r in rows] == ["created"] * 3
    assert len({r["tracking_code"] for r in rows}) == 3


# -- a worker killed mid-expansion ---------------------------------------------------------------


def start_worker(url: str, batch: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PUSHTRACK_DATABASE": url,
        "PUSHTRACK_WORKER_LEASE_SECONDS": "2",
        "PUSHTRACK_EXPANSION_BATCH": str(batch),
    }
    with open(os.environ.get("CRASH_LOG", os.devnull), "ab") as log:
        return subprocess.Popen([PUSHTRACK, "worker"], env=env, stdout=log, stderr=log)


def test_kill_9_mid_expansion_then_resume(database_url: str) -> None:
    n = 8000
    with service(database_url) as svc:
        populate(svc, [ios(i) for i in range(n)])
        run(svc.store.dispatch.set_gateway("default", svc.app.code, 1, "sandbox", {}))
        _, mid = create(svc)

        # one device per step: thousands of steps, so the kill lands mid-expansion
        worker = start_worker(database_url, batch=1)
        try:
            wait_for(lambda: len(devices_of(svc, mid)) >= 200, 120, "the expansion to start")
        finally:
            worker.send_signal(signal.SIGKILL)
            worker.wait()
        written = len(devices_of(svc, mid))
        status, count, cursor = message(svc, mid)
        assert cursor is not None, (status, count, written)
        assert 0 < written < n
        assert count == written
        assert status != "done"

        worker = start_worker(database_url, batch=250)  # resumed at another step size
        try:
            wait_for(lambda: message(svc, mid)[0] == "done", 300, "the second worker to finish")
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(timeout=20) == 0
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()

        got = devices_of(svc, mid)
        assert len(got) == n
        assert set(got) == {int(r[0]) for r in svc.db.rows("SELECT id FROM devices")}
        assert message(svc, mid) == ("done", n, None)
        events = events_per_delivery(svc, mid)
        for d in (int(r[0]) for r in svc.db.rows("SELECT id FROM deliveries")):
            assert events[(d, 1)] == 1  # created
            assert events[(d, 2)] == 1  # sent
            assert events[(d, 3)] == 1  # delivered (the sandbox delivers everything)
        assert svc.db.trail() == 3 * n
