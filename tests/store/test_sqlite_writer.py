"""The SQLite writer's two ways in: its thread's group commits, and a batch of small
writes (``write_batch``) that finds it idle and is written in its caller's thread."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import pytest

from pushtrack.store import accounts
from pushtrack.store import sqlite as sqlite_engine
from pushtrack.store.base import ConflictError, StoreError, Tx
from pushtrack.store.sqlite import SQLiteEngine
from tests.support import run


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[SQLiteEngine]:
    opened = SQLiteEngine(str(tmp_path / "writer.db"))
    try:
        yield opened
    finally:
        opened.close_sync()


def _names(engine: SQLiteEngine) -> list[str]:
    rows = engine.read_sync(lambda tx: tx.all("SELECT name FROM accounts ORDER BY id"))
    return [r[0] for r in rows]


def _account_from(name: str, threads: list[int]) -> Callable[[Tx], int]:
    """A unit writing account ``name`` that notes the thread it ran in."""

    def fn(tx: Tx) -> int:
        threads.append(threading.get_ident())
        return accounts.account_id(tx, name=name)

    return fn


def test_a_batch_finding_the_writer_idle_is_written_in_its_callers_thread(
    engine: SQLiteEngine,
) -> None:
    threads: list[int] = []
    first = run(engine.write_batch(_account_from("first", threads)))
    second = run(engine.write_batch(_account_from("second", threads)))
    assert threads == [threading.get_ident()] * 2
    assert second > first
    # committed: another connection of the file sees both
    with sqlite3.connect(engine.path) as other:
        assert [r[0] for r in other.execute("SELECT name FROM accounts ORDER BY id")] == [
            "first",
            "second",
        ]
    # and the writer thread goes on with the connection after it
    run(engine.write(partial(accounts.account_id, name="third")))
    assert _names(engine) == ["first", "second", "third"]


def test_a_batch_waits_its_turn_while_the_writer_thread_commits(engine: SQLiteEngine) -> None:
    order: list[str] = []
    threads: list[int] = []
    inside, go_on = threading.Event(), threading.Event()

    def slow(tx: Tx) -> None:
        accounts.account_id(tx, name="slow")
        order.append("slow")
        inside.set()
        go_on.wait(10)

    async def scenario() -> None:
        held = asyncio.ensure_future(engine.write(slow))
        assert await asyncio.to_thread(inside.wait, 10)  # the writer thread is in ``slow``
        asyncio.get_running_loop().call_later(0.2, go_on.set)
        await engine.write_batch(_account_from("batch", threads))
        order.append("batch")
        await held

    run(scenario())
    assert order == ["slow", "batch"]
    (writer,) = threads
    assert writer != threading.get_ident()  # the writer thread wrote it, in turn
    assert _names(engine) == ["slow", "batch"]


def test_a_batch_leaves_the_loop_free_while_another_process_holds_the_lock(
    engine: SQLiteEngine,
) -> None:
    other = sqlite3.connect(engine.path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO accounts (name, created_at) VALUES ('other', 1)")
    threads: list[int] = []
    ticks = 0

    async def ticking() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    async def scenario() -> float:
        ticker = asyncio.ensure_future(ticking())
        asyncio.get_running_loop().call_later(0.3, other.execute, "COMMIT")
        started = time.monotonic()
        await engine.write_batch(_account_from("mine", threads))
        waited = time.monotonic() - started
        ticker.cancel()
        return waited

    try:
        waited = run(scenario())
    finally:
        other.close()
    assert waited >= 0.25  # it waited for the other's commit...
    assert ticks >= 5  # ...without holding up the loop (blocked, it would tick once)
    (writer,) = threads
    assert writer != threading.get_ident()
    assert _names(engine) == ["other", "mine"]


def _insert_then(fail: BaseException | str) -> Callable[[Tx], None]:
    def fn(tx: Tx) -> None:
        accounts.account_id(tx, name="doomed")
        if isinstance(fail, str):
            tx.run(fail)
        raise fail

    return fn


def test_a_failing_batch_written_in_its_callers_thread_rolls_back(engine: SQLiteEngine) -> None:
    with pytest.raises(ConflictError, match="no such thing"):
        run(engine.write_batch(_insert_then(ConflictError("no such thing"))))
    with pytest.raises(StoreError):
        run(engine.write_batch(_insert_then("INSERT INTO no_such_table VALUES (1)")))
    assert _names(engine) == []
    threads: list[int] = []
    run(engine.write_batch(_account_from("after", threads)))
    assert threads == [threading.get_ident()]
    assert _names(engine) == ["after"]


def test_the_checkpointer_copies_what_batches_wrote_into_the_database_file(
    engine: SQLiteEngine,
) -> None:
    # The checkpointer thread copies the WAL into the file (a commit of a batch written
    # in its caller's thread does not). ``immutable=1`` reads the database file alone,
    # without the WAL.
    for i in range(20):
        run(engine.write_batch(partial(accounts.account_id, name=f"a{i}")))
    deadline = time.monotonic() + 10
    while True:
        file_only = sqlite3.connect(f"file:{engine.path}?immutable=1", uri=True)
        try:
            count = file_only.execute("SELECT COUNT(*) FROM accounts").fetchone()[0]
        finally:
            file_only.close()
        if count == 20:
            break
        assert time.monotonic() < deadline, f"{count} of 20 rows in the database file"
        time.sleep(0.1)


def test_opening_a_current_file_takes_no_lock(engine: SQLiteEngine) -> None:
    # Another process (the purge, a worker, the CLI) opens the file while this one
    # writes: with the schema current it starts at once, whoever holds the lock.
    other = sqlite3.connect(engine.path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        second = SQLiteEngine(engine.path)
        opened_in = time.monotonic() - started
        try:
            assert second.read_sync(lambda tx: tx.scalar("SELECT COUNT(*) FROM accounts")) == 0
        finally:
            second.close_sync()
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert opened_in < 2  # SQLiteEngine's busy timeout is 10 s


def test_under_steady_batches_the_wal_starts_over_and_batches_stay_in_their_callers_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SQLite starts the WAL over only when a transaction begins with all of it copied,
    # which steady writes never allow: the checkpointer's restart checkpoint does.
    # Without it the WAL would climb to the automatic checkpoint (4 MB here, reached),
    # and a batch finding it past half would go to the writer thread.
    monkeypatch.setattr(sqlite_engine, "CHECKPOINT_SECONDS", 0.05)
    monkeypatch.setattr(sqlite_engine, "WAL_AUTOCHECKPOINT", 1024)
    monkeypatch.setattr(sqlite_engine, "RESTART_PAGES", 64)
    engine = SQLiteEngine(str(tmp_path / "steady.db"))
    wal = Path(f"{engine.path}-wal")
    threads: list[int] = []
    largest = 0
    try:
        # ~2,000 pages in ~1.5 s: a row of half a page and its index entry per batch
        started = time.monotonic()
        for i in range(1000):
            run(engine.write_batch(_account_from(f"{i:04}" + "x" * 2000, threads)))
            largest = max(largest, wal.stat().st_size)
            time.sleep(max(0.0, started + i * 0.0015 - time.monotonic()))
        # (a batch that meets a restart holding the write lock goes to the writer
        # thread: one in 40 here, with a restart every 50 ms; 400 without them)
        elsewhere = sum(t != threading.get_ident() for t in threads)
        assert elsewhere < 100
        count = engine.read_sync(lambda tx: tx.scalar("SELECT COUNT(*) FROM accounts"))
        assert count == 1000
    finally:
        engine.close_sync()
    assert largest < 512 * 4096, f"the WAL grew to {largest} bytes"
