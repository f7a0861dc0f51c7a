"""How the purge paces itself: batches that grow while they are quick, and rests
between them, so it commits a few times a second at most (every commit of another
process costs the service's SQLite writer its page cache)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pushtrack.store import Engine, Store, open_store
from pushtrack.store.base import Tx
from pushtrack.store.retention import (
    BATCH,
    FIRST_WIDTH,
    HOLD_S,
    MIN_REST_S,
    WALK_LIMIT,
    RetentionStore,
    resized,
)
from tests.support import run

OLD_EVENTS = 40_000


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = open_store(f"sqlite:///{tmp_path / 'pace.db'}")
    try:
        yield opened
    finally:
        run(opened.close())


class _Timed:
    """An engine that notes when each write returned, and what it returned."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.writes: list[tuple[float, Any]] = []

    async def write(self, fn: Callable[[Tx], Any]) -> Any:
        result = await self.engine.write(fn)
        self.writes.append((time.monotonic(), result))
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)


def test_a_long_purge_grows_its_batches_and_rests_between_them(store: Store) -> None:
    now = store.clock()
    old = now - 30 * 86_400_000_000
    run(
        store.engine.write(
            lambda tx: tx.many(
                "INSERT INTO events (ts, delivery_id, status, description)"
                " VALUES (?, ?, 2, 'Sent')",
                [(old + i, i) for i in range(OLD_EVENTS)],
            )
        )
    )
    timed = _Timed(store.engine)
    report = run(RetentionStore(timed).purge_rows(now - 86_400_000_000))
    assert report.events == OLD_EVENTS
    left = store.engine.read_sync(lambda tx: tx.scalar("SELECT COUNT(*) FROM events"))
    assert left == 0
    # In batches of BATCH it took 21 commits resting 12 times each batch's few
    # milliseconds; growing (2,000, 4,000, 8,000, 16,000, the rest) it takes about
    # six, a slow machine's halvings a few more.
    batches = [(at, n) for at, n in timed.writes if n]  # the events' (nothing else was old)
    assert sum(n for _, n in batches) == OLD_EVENTS
    assert 2 <= len(batches) <= 12, batches
    # each full batch is followed by a rest of at least MIN_REST_S
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(batches)]
    assert min(gaps) >= MIN_REST_S * 0.9, gaps


def test_batch_sizes_follow_the_time_a_batch_held_the_writer() -> None:
    assert resized(BATCH, HOLD_S / 4, low=1, high=4 * BATCH) == 2 * BATCH
    assert resized(4 * BATCH, 0.0, low=1, high=4 * BATCH) == 4 * BATCH  # grown enough
    assert resized(4 * BATCH, HOLD_S, low=1, high=8 * BATCH) == 4 * BATCH  # about right
    assert resized(4 * BATCH, HOLD_S * 3, low=1, high=8 * BATCH) == 2 * BATCH
    assert resized(BATCH, 10.0, low=BATCH, high=8 * BATCH) == BATCH  # never below low


def test_old_deliveries_go_device_range_by_device_range(store: Store) -> None:
    """Each purge transaction takes every old delivery of the devices it covers (all
    three old messages' at once), and the new message's deliveries stay."""
    now = store.clock()
    old = now - 30 * 86_400_000_000
    devices = range(1, 2001)

    def write(tx: Tx) -> None:
        tx.many(
            "INSERT INTO messages (id, code, app_id, notification, send_at, status, deliveries,"
            " created_at) VALUES (?, ?, 1, '{}', ?, 'done', 2000, ?)",
            [(m, f"M-{m}", at, at) for m, at in ((1, old), (2, old), (3, old), (4, now))],
        )
        tx.many(
            "INSERT INTO deliveries (message_id, device_id, target_id, hwid, platform, state,"
            " created_at) VALUES (?, ?, '', ?, 1, 3, ?)",
            [(m, d, f"hw-{d}", old if m < 4 else now) for m in (1, 2, 3, 4) for d in devices],
        )
        # a delivery to an hwid no device had
        tx.run(
            "INSERT INTO deliveries (message_id, device_id, target_id, hwid, platform, state,"
            " created_at) VALUES (1, NULL, '', 'ghost', 1, 4, ?)",
            (old,),
        )

    run(store.engine.write(write))
    timed = _Timed(store.engine)
    report = run(RetentionStore(timed).purge_rows(now - 86_400_000_000))
    assert report.deliveries == 3 * len(devices) + 1
    assert report.messages == 3
    left = store.engine.read_sync(
        lambda tx: tx.all("SELECT message_id, COUNT(*) FROM deliveries GROUP BY message_id")
    )
    assert [tuple(r) for r in left] == [(4, len(devices))]
    removed = [(at, n) for at, n in timed.writes if n]
    walk, rest = removed[:-2], removed[-2:]
    assert [n for _, n in rest] == [1, 3]  # the ghost's delivery, then the messages
    assert sum(n for _, n in walk) == 3 * len(devices)
    assert all(n % 3 == 0 for _, n in walk), walk  # a device's three at once
    assert len(walk) <= 10, walk  # ranges widen while quick
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(walk)]
    assert min(gaps) >= MIN_REST_S * 0.9, gaps


def test_a_range_with_more_old_deliveries_than_a_transaction_takes_goes_in_parts(
    store: Store,
) -> None:
    now = store.clock()
    old = now - 30 * 86_400_000_000
    messages = WALK_LIMIT // FIRST_WIDTH + 50  # the first range holds more than WALK_LIMIT

    def write(tx: Tx) -> None:
        tx.many(
            "INSERT INTO messages (id, code, app_id, notification, send_at, status, deliveries,"
            " created_at) VALUES (?, ?, 1, '{}', ?, 'done', ?, ?)",
            [(m, f"M-{m}", old, FIRST_WIDTH, old) for m in range(1, messages + 1)],
        )
        tx.many(
            "INSERT INTO deliveries (message_id, device_id, target_id, hwid, platform, state,"
            " created_at) VALUES (?, ?, '', ?, 1, 3, ?)",
            [
                (m, d, f"hw-{d}", old)
                for m in range(1, messages + 1)
                for d in range(1, FIRST_WIDTH + 1)
            ],
        )

    run(store.engine.write(write))
    timed = _Timed(store.engine)
    report = run(RetentionStore(timed).purge_rows(now - 86_400_000_000))
    assert report.deliveries == messages * FIRST_WIDTH
    assert report.messages == messages
    counts = [n for _, n in timed.writes if n]
    assert counts[0] == WALK_LIMIT  # the first range, in parts
    assert max(counts) == WALK_LIMIT
    assert store.engine.read_sync(lambda tx: tx.scalar("SELECT COUNT(*) FROM deliveries")) == 0
