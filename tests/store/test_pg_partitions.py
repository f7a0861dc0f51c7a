"""Daily partitions of the PostgreSQL event log: made ahead, idempotent, dropped whole."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest

from pushtrack.domain.timeutil import DAY_US, HOUR_US, US
from pushtrack.store import Store
from pushtrack.store.base import DeviceIn, MessagePlan, Targeting, Tx
from pushtrack.store.pg_partitions import (
    drop_partitions_before,
    ensure_partitions,
    existing_partitions,
    partition_name,
)
from pushtrack.store.postgres import DAYS_AHEAD, PostgresEngine
from tests.support import run

#: 2031-03-10 00:00 UTC, a day far from the real clock.
DAY = int(datetime(2031, 3, 10, tzinfo=UTC).timestamp()) * US


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(DAY + 5 * HOUR_US)


@pytest.fixture
def pg(pg_url: str, clock: Clock) -> Iterator[PostgresEngine]:
    engine = PostgresEngine(pg_url, clock=clock)
    try:
        yield engine
    finally:
        engine.close_sync()


def _days(engine: PostgresEngine) -> list[int]:
    return sorted(engine.read_sync(existing_partitions))


def _where(engine: PostgresEngine) -> dict[str, int]:
    """Partition name -> events it holds."""
    rows = engine.read_sync(
        lambda tx: tx.all("SELECT tableoid::regclass::text, COUNT(*) FROM events GROUP BY 1")
    )
    return dict(rows)


def _insert_events(engine: PostgresEngine, stamps: list[int]) -> None:
    engine.write_sync(
        lambda tx: tx.many(
            "INSERT INTO events (ts, delivery_id, status, description) VALUES (?, ?, ?, ?)",
            [(ts, i, 1, "x") for i, ts in enumerate(stamps)],
        )
    )


def test_partition_names_are_utc_days() -> None:
    assert partition_name(DAY) == "events_p20310310"
    assert partition_name(DAY + DAY_US - 1) == "events_p20310310"
    assert partition_name(DAY + DAY_US) == "events_p20310311"


def test_start_makes_today_and_the_days_ahead(pg: PostgresEngine) -> None:
    assert _days(pg) == [DAY + d * DAY_US for d in range(DAYS_AHEAD + 1)]


def test_events_land_in_their_day(pg: PostgresEngine) -> None:
    store = Store(pg)
    app = run(store.create_app("default", "app"))
    for i in range(3):
        run(store.register_device(app, DeviceIn(hwid=f"h{i}", device_type=1, push_token=f"t{i}")))
    plan = MessagePlan(
        notification={"content": "hi"},
        targeting=Targeting(devices=("h0", "h1", "h2", "nope")),
        send_at=DAY,
    )
    run(store.create_messages(app, [plan]))
    assert _where(pg) == {"events_p20310310": 1}  # the unknown device's failure (created: rows)


def test_ensure_is_idempotent_and_safe_concurrently(pg: PostgresEngine, pg_url: str) -> None:
    other = PostgresEngine(pg_url, clock=pg.clock)
    first, last = DAY + 10 * DAY_US, DAY + 14 * DAY_US
    created: list[str] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def ensure(engine: PostgresEngine) -> None:
        barrier.wait()
        try:
            created.extend(engine.write_sync(lambda tx: ensure_partitions(tx, first, last)))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=ensure, args=(e,)) for e in (pg, other, pg, other)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        other.close_sync()
    assert errors == []
    assert sorted(created) == [partition_name(first + d * DAY_US) for d in range(5)]
    assert pg.write_sync(lambda tx: ensure_partitions(tx, first, last)) == []


def test_making_partitions_waits_for_no_reader_or_writer(pg: PostgresEngine, pg_url: str) -> None:
    with psycopg.connect(pg_url) as reader, psycopg.connect(pg_url) as writer:
        reader.execute("SELECT COUNT(*) FROM events").fetchone()
        writer.execute(
            "INSERT INTO events (ts, delivery_id, status, description) VALUES (%s, 1, 1, 'x')",
            (DAY,),
        )

        def ensure(tx: Tx) -> list[str]:
            tx.run("SET LOCAL lock_timeout = '1s'")
            return ensure_partitions(tx, DAY + 10 * DAY_US, DAY + 11 * DAY_US)

        assert pg.write_sync(ensure) == ["events_p20310320", "events_p20310321"]


def test_an_insert_makes_the_partitions_it_needs(pg: PostgresEngine) -> None:
    far, past = DAY + 30 * DAY_US, DAY - 2 * DAY_US
    _insert_events(pg, [DAY + 1] + [far + i for i in range(20)] + [past])  # COPY: 22 rows
    assert _where(pg) == {"events_p20310310": 1, "events_p20310409": 20, "events_p20310308": 1}
    _insert_events(pg, [far + DAY_US])  # one row: executemany
    assert _where(pg)["events_p20310410"] == 1


def test_drop_partitions_before_drops_whole_days(pg: PostgresEngine) -> None:
    pg.write_sync(lambda tx: ensure_partitions(tx, DAY - 3 * DAY_US, DAY - DAY_US))
    _insert_events(pg, [DAY - 2 * DAY_US, DAY - 1, DAY, DAY + DAY_US])

    def drop(tx: Tx) -> int:
        return drop_partitions_before(tx, DAY + 7 * HOUR_US)

    assert pg.write_sync(drop) == 3
    assert _days(pg) == [DAY + d * DAY_US for d in range(DAYS_AHEAD + 1)]
    assert _where(pg) == {"events_p20310310": 1, "events_p20310311": 1}
    assert pg.write_sync(drop) == 0
    # The lock timeout of the drop was the drop's alone.
    assert pg.write_sync(lambda tx: tx.one("SHOW lock_timeout")) == ("0",)


def test_a_busy_day_is_left_for_the_next_drop(pg: PostgresEngine, pg_url: str) -> None:
    pg.write_sync(lambda tx: ensure_partitions(tx, DAY - 2 * DAY_US, DAY - DAY_US))
    _insert_events(pg, [DAY - 2 * DAY_US, DAY - DAY_US, DAY])
    with psycopg.connect(pg_url) as reader:  # a long read of the oldest day holds it
        reader.execute("SELECT COUNT(*) FROM events_p20310308").fetchone()
        started = time.monotonic()
        assert pg.write_sync(lambda tx: drop_partitions_before(tx, DAY)) == 0
        assert time.monotonic() - started < 10
        # The drop that gave up holds nothing: inserts go on while the reader reads.
        _insert_events(pg, [DAY + 5])
    assert pg.write_sync(lambda tx: drop_partitions_before(tx, DAY)) == 2
    assert _where(pg) == {"events_p20310310": 2}


def test_upkeep_follows_the_clock(pg: PostgresEngine, clock: Clock) -> None:
    clock.now = DAY + 20 * DAY_US + HOUR_US
    store = Store(pg)
    run(store.create_app("default", "app"))  # any write checks the horizon first
    assert DAY + 20 * DAY_US + DAYS_AHEAD * DAY_US in _days(pg)
    _insert_events(pg, [clock.now])
    assert _where(pg) == {"events_p20310330": 1}
