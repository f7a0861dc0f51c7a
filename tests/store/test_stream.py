"""Cursors never pass a row committed late: a writer held open across a page boundary
loses nothing to a reader of the stream (store/stream.py) or of getMessageLog, on both
engines. On PostgreSQL the writer's rows commit after later ones; on SQLite (one writer)
the later writer simply waits."""

from __future__ import annotations

import threading
from typing import Any

from pushtrack.domain.status import Status
from pushtrack.store.events import append_events
from pushtrack.store.stream import START, Filter, Position
from tests.support import Service, delivery_id, run


def _held_writer(svc: Service, did: int, mid: int) -> tuple[threading.Thread, threading.Event]:
    """A writer that appends an ``opened`` event to delivery ``did`` and stays open
    until released."""
    started, release = threading.Event(), threading.Event()

    def unit(tx: Any) -> None:
        append_events(tx, [(did, Status.OPENED, "Opened", mid, 1)])
        started.set()
        assert release.wait(30)

    thread = threading.Thread(target=svc.store.engine.write_sync, args=(unit,), daemon=True)
    thread.start()
    assert started.wait(10)
    return thread, release


def _log_page(svc: Service, token: str | None) -> tuple[list[dict[str, Any]], str | None]:
    """One getMessageLog page of two rows from ``token``."""
    body: dict[str, Any] = {"application_code": svc.app.code, "limit": 2}
    if token:
        body["pagination_token"] = token
    resp = svc.v2("statistics/getMessageLog", body)
    assert resp.status_code == 200, resp.text
    page = resp.json()
    return page["data"], page["pagination_token"]


def _log_walk(svc: Service, token: str | None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    while True:
        page, token = _log_page(svc, token)
        rows.extend(page)
        if not token:
            return rows


def test_a_writer_held_open_across_a_page_boundary_loses_nothing(svc: Service) -> None:
    for hwid in ("h1", "h2", "h3"):
        svc.register(hwid)
    first = svc.send(devices=["h1"])
    code = first["TrackingCodes"][0] if "TrackingCodes" in first else None
    assert code is not None, first
    did = delivery_id(svc.db, code)
    ((mid,),) = svc.db.rows("SELECT message_id FROM deliveries WHERE id = ?", (did,))
    wanted = Filter(account=svc.account)

    writer, release = _held_writer(svc, did, mid)
    # a later writer: on PostgreSQL it commits while the first is open; on SQLite it waits
    later = threading.Thread(target=svc.send, kwargs={"devices": ["h2", "h3"]}, daemon=True)
    later.start()
    later.join(3)

    first_page = run(svc.store.stream.read(START, wanted, 1000))
    page = first_page.items
    log_during, token = _log_page(svc, None)
    assert all(r.row.status is not Status.OPENED for r in page)
    assert all(r["action"] != "opened" for r in log_during)

    release.set()
    writer.join(10)
    later.join(30)
    assert not writer.is_alive()
    assert not later.is_alive()

    rest = run(svc.store.stream.read(first_page.reached, wanted, 1000)).items
    everything = run(svc.store.stream.read(START, wanted, 1000)).items
    seen = [r.position for r in page + rest]
    assert len(seen) == len(set(seen))
    assert seen == [r.position for r in everything]
    assert sorted(seen) == seen
    # the trail: h1 created and opened, h2 and h3 created
    assert sorted(r.row.status.label for r in everything) == [
        "created",
        "created",
        "created",
        "opened",
    ]

    # the reader goes on from its page (on SQLite the log had ended: it starts again)
    logged = log_during + _log_walk(svc, token) if token else _log_walk(svc, None)
    keys = [(r["tracking_code"], r["action"]) for r in logged]
    assert len(keys) == len(set(keys))
    assert sorted(keys) == sorted((r.row.tracking_code, r.row.status.label) for r in everything)


def test_positions_are_stable_and_new_readers_start_at_the_head(svc: Service) -> None:
    svc.register("h1")
    svc.send(devices=["h1"])
    wanted = Filter(account=svc.account)
    head = run(svc.store.stream.head())
    assert run(svc.store.stream.read(head, wanted, 10)).items == []
    svc.send(devices=["h1"])
    after = run(svc.store.stream.read(head, wanted, 10)).items
    assert [r.row.status for r in after] == [Status.CREATED]
    again = run(svc.store.stream.read(Position(0, 0), wanted, 10)).items
    assert [r.position for r in again][-1] == after[0].position


def test_a_reader_of_one_application_moves_past_the_others_rows(svc: Service) -> None:
    other = svc.fresh_account()
    for hwid in ("h1", "h2"):
        other.register(hwid)
    svc.register("mine")
    start = run(svc.store.stream.head())
    for _ in range(3):
        other.send(devices=["h1", "h2"])
    svc.send(devices=["mine"])
    mine = Filter(app_ids=frozenset({svc.app.id}))
    seen: list[Any] = []
    cursor = start
    steps = 0
    while True:
        page = run(svc.store.stream.read(cursor, mine, 1))
        seen += page.items
        if page.reached == cursor:
            break
        cursor = page.reached
        steps += 1
    assert [(r.row.hwid, r.row.status) for r in seen] == [("mine", Status.CREATED)]
    assert steps >= 1
