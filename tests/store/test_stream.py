"""Cursors never pass a row committed late: a writer held open across a page boundary
loses nothing to a reader of the stream (store/stream.py), of getMessageLog, or to a
webhook endpoint, on both engines. On PostgreSQL the writer's rows commit after later
ones; on SQLite (one writer) the later writer simply waits."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import msgspec

from pushtrack.domain.status import Status
from pushtrack.jobs import webhooks
from pushtrack.jobs.runner import Worker
from pushtrack.store.events import append_events
from pushtrack.store.stream import START, Filter, Position
from tests.gateways.webhook_receiver import Receiver
from tests.support import Service, delivery_id, run, service


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


def _hooks_worker(svc: Service) -> tuple[threading.Thread, threading.Event]:
    """Webhook jobs, and only those, run in a thread until the event is set (one event a
    POST, short waits)."""
    assert svc.settings is not None
    settings = msgspec.structs.replace(
        svc.settings, webhook_batch=1, webhook_linger_ms=0, webhook_poll_ms=20
    )
    handler, sender = webhooks.handler(settings, svc.store)
    worker = Worker(svc.store, {webhooks.KIND: handler}, poll_seconds=0.02, closers=[sender.aclose])
    stop = threading.Event()

    async def go() -> None:
        stopping = asyncio.Event()
        task = asyncio.create_task(worker.run(stopping))
        while not stop.is_set():  # noqa: ASYNC110 - another thread's event
            await asyncio.sleep(0.02)
        stopping.set()
        await task

    thread = threading.Thread(target=asyncio.run, args=(go(),), daemon=True)
    thread.start()
    return thread, stop


def test_a_webhook_loses_nothing_to_a_writer_held_open_across_its_posts(
    database_url: str,
) -> None:
    with service(database_url, outbound_allow="127.0.0.1") as svc, Receiver() as receiver:
        for hwid in ("h1", "h2", "h3"):
            svc.register(hwid)
        (code,) = svc.send(devices=["h1"])["TrackingCodes"]
        did = delivery_id(svc.db, code)
        ((mid,),) = svc.db.rows("SELECT message_id FROM deliveries WHERE id = ?", (did,))
        made = svc.v2("webhooks/addWebhook", {"application": svc.app.code, "url": receiver.url})
        assert made.status_code == 200, made.text
        receiver.secret = made.json()["secret"]
        receiver.start()
        worker, stop = _hooks_worker(svc)  # no dispatch: the trail holds only what we write
        release = threading.Event()
        try:
            writer, release = _held_writer(svc, did, mid)
            # a later writer: on PostgreSQL it commits while the first is open (its rows
            # are after the endpoint's cursor, the held one's before); on SQLite it waits
            later = threading.Thread(target=svc.send, kwargs={"devices": ["h2", "h3"]})
            later.start()
            later.join(3)
            time.sleep(1.5)  # the endpoint's job reads the trail again every 20 ms
            assert receiver.events() == []
            release.set()
            writer.join(10)
            later.join(30)
            deadline = time.monotonic() + 30
            while len(receiver.unique()) < 3 and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.3)  # nothing more comes
        finally:
            release.set()
            stop.set()
            worker.join(30)
        unique = receiver.unique()
        got = sorted((e["hwid"], e["status"]) for e in unique.values())
        assert got == [("h1", "opened"), ("h2", "created"), ("h3", "created")]
        assert receiver.bad_signatures == 0
        # one event a POST, in the trail's order
        assert all(len(batch) == 1 for batch in receiver.batches)
        positions = [tuple(int(x) for x in i.split("-")) for i in unique]
        assert positions == sorted(positions)
