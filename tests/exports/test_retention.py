"""The retention window: the exact boundary, what the purge removes, the periodic job."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from pushtrack.domain.timeutil import to_wire
from pushtrack.jobs.retention import purge
from pushtrack.worker import build_worker
from tests.exports._support import Clock, clocked_service, create, tracking_log
from tests.support import Service, run

START = "2024-04-17 12:00:00"  # the window's first second when the clock reads NOW
NOW = "2024-05-01 12:00:00"


def actions(svc: Service, **filters: Any) -> list[tuple[str, str]]:
    return [(r["timestamp"], r["action"]) for r in svc.log(**filters)]


def totals(svc: Service, code: str, interval: str = "hour") -> list[tuple[str, str, str]]:
    resp = svc.v2(
        "statistics/messages/totalsByIntervals", {"message_code": code, "interval": interval}
    )
    assert resp.status_code == 200, resp.text
    return [
        (m["timestamp"], c, m[c])
        for m in resp.json()["metrics"]
        for c in ("errors", "opens")
        if m[c] != "0"
    ]


def listed(svc: Service) -> list[str]:
    resp = svc.v2("messages:list", {"filters": {"application": svc.app.code}})
    assert resp.status_code == 200, resp.text
    return [i["code"] for i in resp.json()["items"]]


def test_the_window_boundary_to_the_second(database_url: str, tmp_path: Path) -> None:
    clock = Clock("2024-04-17 11:59:59")  # one second before the window start
    with clocked_service(database_url, tmp_path, clock) as (svc, settings):
        svc.register("hw-1")
        svc.register("hw-2")
        old = create(svc, content="old", devices=["hw-2", "ghost"])["Messages"][0]
        kept = create(svc, content="kept", devices=["hw-1"])["Messages"][0]
        ((p,),) = svc.db.rows("SELECT hash FROM deliveries WHERE hwid = 'hw-1'")
        clock.set("2024-04-17 12:00:01")  # one second after it
        assert svc.device("pushStat", hwid="hw-1", hash=p)["status_code"] == 200
        new = create(svc, content="new", devices=["hw-2"])["Messages"][0]
        clock.set(NOW)

        def check(purged: bool) -> None:
            after = ("2024-04-17 12:00:01", "opened")
            assert actions(svc, message_code=kept) == [after]
            assert actions(svc, message_code=old) == []
            # (at one instant, a delivery's `created` comes before any event)
            assert actions(svc, date_from="2024-04-17 00:00:00", date_to=NOW) == [
                ("2024-04-17 12:00:01", "created"),
                after,
            ]
            csv = tracking_log(svc, settings, date="2024-04-17").decode().splitlines()
            assert [(r.split(";")[0], r.split(";")[4]) for r in csv] == [
                ('"2024-04-17 12:00:01"', "created"),
                ('"2024-04-17 12:00:01"', "opened"),
            ]
            assert totals(svc, kept) == [("2024-04-17 12:00:00", "opens", "1")]
            assert totals(svc, kept, "minute") == [("2024-04-17 12:00:00", "opens", "1")]
            assert totals(svc, kept, "day") == [("2024-04-17 00:00:00", "opens", "1")]
            assert listed(svc) == [new]
            # `old` counted the ghost's failure in the hour that ended as the window began
            resp = svc.v2("statistics/messages/totalsByIntervals", {"message_code": old})
            if purged:
                assert resp.status_code == 400
            else:
                assert resp.json()["metrics"] == []

        check(purged=False)  # the queries hide what is out, before any purge
        assert svc.db.count_where("events", "ts < 1713355200000000") == 1
        report = run(purge(svc.store, settings))
        # the ghost's failure (the deliveries' `created` are their rows': hw-2's and the
        # ghost's go with `old`, hw-1's stays with `kept` but is out of the window)
        assert report.events == 1
        assert report.messages == 1  # `old`: nothing of it is left inside the window
        assert svc.db.count_where("events", "ts < 1713355200000000") == 0
        assert svc.db.rows("SELECT code FROM messages ORDER BY id") == [(kept,), (new,)]
        assert svc.db.count_where("counters", "hour < 1713355200000000") == 0
        assert svc.db.count_where("counters_minute", "minute < 1713355200000000") == 0
        check(purged=True)  # and the same after it

        clock.advance(2)  # now the window starts after the events at 12:00:01
        assert actions(svc, message_code=kept) == []
        assert totals(svc, kept) == []
        assert listed(svc) == []
        run(purge(svc.store, settings))
        assert svc.db.count("events") == 0  # (created_at of a row kept is out of the window)
        # The hour bucket of the open still reaches into the window: stored (never shown)
        # until it has left it whole, and its message with it.
        assert svc.db.rows("SELECT code FROM messages") == [(kept,)]
        assert svc.db.count("counters") == 1
        clock.set("2024-05-01 13:00:00")
        run(purge(svc.store, settings))
        assert svc.db.count("messages") == 0
        assert svc.db.count("deliveries") == 0
        assert svc.db.count("counters") == 0
        assert svc.db.count("counters_minute") == 0
        assert svc.db.count("payloads") == 0


def test_a_shorter_window_and_old_jobs(database_url: str, tmp_path: Path) -> None:
    clock = Clock(NOW)
    with clocked_service(database_url, tmp_path, clock, retention_days=2) as (svc, settings):
        svc.register("hw-1")
        create(svc, content="x", devices=["hw-1"])
        svc.server("getTrackingLog")
        run(build_worker(settings, svc.store, poll_seconds=0.02).run_until_idle(30))
        assert svc.db.count("files") == 1
        assert svc.db.count_where("jobs", "state = 'done'") >= 1
        clock.advance(2 * 86400)  # the events, at NOW, are the window's first microsecond
        report = run(purge(svc.store, settings))
        assert (report.events, report.jobs, report.files) == (0, 0, 1)  # the file: past its TTL
        assert not list((tmp_path / "files").glob("*"))
        clock.advance(1)
        report = run(purge(svc.store, settings))
        # failed (no gateway); its `created` is the delivery row's, gone with its message
        assert report.events == 1
        assert report.jobs >= 2  # the dispatch and the export
        assert svc.db.count("events") == 0  # (created_at of a row kept is out of the window)
        assert svc.db.count_where("jobs", "state = 'done'") == 0
        # The periodic job itself is never purged.
        assert svc.db.rows("SELECT kind, state FROM jobs") == [("retention", "pending")]


def test_workers_keep_one_periodic_purge(
    database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pushtrack.jobs.retention")
    clock = Clock(NOW)
    hour = 3600 * 1_000_000
    with clocked_service(database_url, tmp_path, clock) as (svc, settings):
        svc.register("hw-1")
        create(svc, content="x", devices=["hw-1"])  # no gateway: dispatch fails it at once

        def start_worker() -> list[tuple[Any, ...]]:
            run(build_worker(settings, svc.store, poll_seconds=0.02).run_until_idle(30))
            return svc.db.rows(
                "SELECT request_id, state, run_at FROM jobs WHERE kind = 'retention'"
            )

        assert start_worker() == [("periodic:retention", "pending", clock() + hour)]
        assert svc.db.trail() == 2  # created, failed: no gateway
        clock.advance(15 * 86400)
        # A second start makes no second job; the one that exists is due and runs.
        caplog.clear()
        assert start_worker() == [("periodic:retention", "pending", clock() + hour)]
        assert svc.db.count("events") == 0  # (created_at of a row kept is out of the window)
        # The purge logs one readable line: the counts it removed and the window's start.
        before = to_wire(clock() - settings.retention_days * 86400 * 1_000_000)
        [line] = [r.getMessage() for r in caplog.records if r.name == "pushtrack.jobs.retention"]
        # (events leave as rows on SQLite, as a dropped day partition on PostgreSQL)
        assert line.startswith("retention: removed ")
        assert "messages: 1, deliveries: 1, jobs: 1" in line
        assert line.endswith(f" (older than {before} UTC)")
        assert svc.db.count("messages") == 0
        assert svc.db.rows("SELECT kind FROM jobs") == [("retention",)]
        # A retention job that ended (by hand, or a bug) comes back at the next start.
        svc.db.execute("UPDATE jobs SET state = 'failed' WHERE kind = 'retention'")
        assert start_worker() == [("periodic:retention", "pending", clock() + hour)]
