"""What every engine promises: rollback, errors, the shared SQL dialect, ids."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import pytest

from pushtrack.store import accounts
from pushtrack.store.base import ConflictError, Engine, StoreError, Tx
from tests.support import run


def _accounts(engine: Engine) -> list[str]:
    return [r[0] for r in engine.read_sync(lambda tx: tx.all("SELECT name FROM accounts"))]


def _insert_then(fail: BaseException | str) -> Callable[[Tx], None]:
    def fn(tx: Tx) -> None:
        accounts.create_app(
            tx, account="doomed", name="a", tracking=True, open_logging=True, token_required=True
        )
        tx.many(
            "INSERT INTO events (ts, delivery_id, status, description) VALUES (?, ?, 1, 'x')",
            [(tx.now(), i) for i in range(50)],
        )
        if isinstance(fail, str):
            tx.run(fail)
        raise fail

    return fn


def test_a_domain_error_rolls_back_everything_and_passes_through(engine: Engine) -> None:
    with pytest.raises(ConflictError, match="no such thing"):
        run(engine.write(_insert_then(ConflictError("no such thing"))))
    with pytest.raises(ConflictError):
        engine.write_sync(_insert_then(ConflictError("again")))
    assert _accounts(engine) == []
    assert engine.read_sync(lambda tx: tx.one("SELECT COUNT(*) FROM events")) == (0,)
    assert engine.read_sync(lambda tx: tx.one("SELECT COUNT(*) FROM applications")) == (0,)


def test_a_database_error_is_a_store_error_and_rolls_back(engine: Engine) -> None:
    with pytest.raises(StoreError):
        run(engine.write(_insert_then("INSERT INTO no_such_table VALUES (1)")))
    assert _accounts(engine) == []
    # The engine goes on working.
    run(engine.write(partial(accounts.account_id, name="after")))
    assert _accounts(engine) == ["after"]


def test_shared_dialect(engine: Engine) -> None:
    def fn(tx: Tx) -> list[Any]:
        tx.many(
            "INSERT INTO accounts (name, created_at) VALUES (?, ?)",
            [(f"n{i:02d}", i) for i in range(40)],  # bulk path (COPY on PostgreSQL)
        )
        tx.many("INSERT INTO accounts (name, created_at) VALUES (?, ?)", [("50%", 1), ("x", 2)])
        return [
            tx.all("SELECT name FROM accounts WHERE name LIKE '5%' OR name LIKE ?", ("n0%",)),
            tx.all(
                "SELECT name FROM accounts WHERE name IN (?, ?, ?) AND created_at IN (?,?,?,?)"
                " ORDER BY name",
                ("n01", "n02", "zz", 1, 2, 3, 10**12),
            ),
            tx.all(
                "SELECT COUNT(*) FROM accounts WHERE name NOT IN (?, ?) AND created_at < ?",
                ("n00", "x", 5),
            ),
            tx.all("SELECT COUNT(*) FROM accounts WHERE name IN (?, ?)", ("n00", None)),
            tx.all("SELECT COUNT(*) FROM accounts WHERE name NOT IN (?, ?)", ("n00", None)),
            tx.run(
                "UPDATE accounts SET created_at = created_at + 1 WHERE name IN (?, ?)", ("x", "y")
            ),
            # Flags are INTEGER columns: a bool binds as 0/1 on both engines.
            tx.all("SELECT name FROM accounts WHERE created_at = ? ORDER BY name", (True,)),
        ]

    like, listed, not_in, with_null, not_in_null, updated, flagged = engine.write_sync(fn)
    assert sorted(r[0] for r in like) == ["50%"] + [f"n{i:02d}" for i in range(10)]
    assert listed == [("n01",), ("n02",)]
    assert not_in == [(5,)]  # n01..n04 and 50%
    assert with_null == [(1,)]
    assert not_in_null == [(0,)]  # NULL in a NOT IN list: SQL's rule, on both engines
    assert updated == 1
    assert flagged == [("50%",), ("n01",)]


class _Account(NamedTuple):
    name: str
    created_at: int


def test_rows_by_name(engine: Engine) -> None:
    def fn(tx: Tx) -> list[Any]:
        tx.many("INSERT INTO accounts (name, created_at) VALUES (?, ?)", [("a", 1), ("b", 2)])
        select = "SELECT name, created_at FROM accounts"
        return [
            tx.all_as(_Account, f"{select} ORDER BY name"),
            tx.all_as(_Account, f"{select} WHERE name IN (?, ?) ORDER BY name", ("b", "zz")),
            tx.all_as(_Account, f"{select} WHERE name > ? ORDER BY name", ("a",)),
            tx.all_as(_Account, f"{select} WHERE name = ?", ("zz",)),
            tx.one_as(_Account, f"{select} WHERE name = ?", ("b",)),
            tx.one_as(_Account, f"{select} WHERE name = ?", ("zz",)),
            # an expression, named by AS
            tx.one_as(
                _Account, "SELECT MAX(name) AS name, SUM(created_at) AS created_at FROM accounts"
            ),
            tx.scalar("SELECT created_at FROM accounts WHERE name = ?", ("b",)),
            tx.scalar("SELECT created_at FROM accounts WHERE name = ?", ("zz",)),
            tx.scalar("SELECT MAX(created_at) FROM accounts WHERE name = ?", ("zz",)),
            tx.column("SELECT name FROM accounts ORDER BY name DESC"),
            tx.column("SELECT name FROM accounts WHERE name = ?", ("zz",)),
            tx.all_unordered_as(_Account, f"{select} WHERE name IN (?, ?, ?)", ("b", "a", "zz")),
            tx.all_unordered_as(_Account, f"{select} WHERE name = ?", ("zz",)),
        ]

    (
        every,
        listed,
        planned,
        none,
        one,
        missing,
        summed,
        value,
        no_row,
        null,
        names,
        no_names,
        unordered,
        no_unordered,
    ) = engine.write_sync(fn)
    assert sorted(unordered) == every
    assert [type(r) for r in unordered] == [_Account, _Account]
    assert no_unordered == []
    assert every == [_Account("a", 1), _Account("b", 2)]
    assert [type(r) for r in every] == [_Account, _Account]
    assert [r.created_at for r in every] == [1, 2]
    assert listed == planned == [_Account("b", 2)]
    assert none == []
    assert one == _Account("b", 2)
    assert isinstance(one, _Account)
    assert one.name == "b"
    assert missing is None
    assert summed == _Account("b", 3)
    assert (value, no_row, null) == (2, None, None)
    assert names == ["b", "a"]
    assert no_names == []


def test_a_row_class_must_be_named_by_its_statement(engine: Engine) -> None:
    # The statement's column names must be the class's fields, in order: checked on the
    # statement's first run, rows or none, so a class and its statement never drift apart.
    for sql in (
        "SELECT created_at, name FROM accounts",  # another order
        "SELECT name, created_at, id FROM accounts",  # a column more
        "SELECT name FROM accounts",  # one less
        "SELECT name, MAX(created_at) FROM accounts GROUP BY name",  # an expression not named
    ):
        with pytest.raises(TypeError, match="_Account has the fields name, created_at"):
            engine.read_sync(lambda tx, sql=sql: tx.all_as(_Account, sql))
        with pytest.raises(TypeError, match="the statement's columns are"):
            engine.read_sync(lambda tx, sql=sql: tx.one_as(_Account, sql))
        with pytest.raises(TypeError, match="the statement's columns are"):
            engine.read_sync(lambda tx, sql=sql: tx.all_unordered_as(_Account, sql))
    # a statement that failed the check fails it again, with rows as without
    engine.write_sync(lambda tx: tx.run("INSERT INTO accounts (name, created_at) VALUES ('c', 3)"))
    with pytest.raises(TypeError):
        engine.read_sync(lambda tx: tx.all_as(_Account, "SELECT created_at, name FROM accounts"))


class _Row(NamedTuple):
    id: int
    account_id: int
    hash: str
    apps: str | None
    created_at: int
    revoked_at: int | None


def test_many_rows_and_many_read_whole(engine: Engine) -> None:
    # Inserts of every size land whole and exact, however ``many`` groups them (SQLite:
    # multi-row statements; PostgreSQL: pipelined or COPY); what the unordered read gives
    # back is every row, values and types as written (NULLs, non-ASCII text, 64-bit ints).
    insert = (
        "INSERT INTO api_tokens (id, account_id, hash, apps, created_at, revoked_at, kind,"
        " prefix) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    )

    def fn(tx: Tx) -> list[Any]:
        account = accounts.account_id(tx, name="many")
        written: list[_Row] = []
        top = 0
        for n in (0, 1, 2, 255, 256, 257, 700):
            rows = [
                _Row(
                    top + i + 1,
                    account,
                    f"h{top + i + 1}-ü\"'?{i}",
                    None if i % 2 else "[1]",
                    2**62 - top - i,
                    None if i % 5 else -i,
                )
                for i in range(n)
            ]
            tx.many(insert, ((*r, "server", "p") for r in rows))  # any iterable
            written += rows
            top += n
        # a tail after the marks: each row still meets the ones before it
        tx.many(
            f"{insert} ON CONFLICT (id) DO UPDATE SET created_at = api_tokens.created_at + 1",
            [(*written[0], "server", "p")] * 3
            + [(top + 1, account, "last", None, 5, None, "server", "p")],
        )
        select = "SELECT id, account_id, hash, apps, created_at, revoked_at FROM api_tokens"
        return [
            written,
            tx.all_as(_Row, f"{select} ORDER BY id"),
            tx.all_unordered_as(_Row, select),
            tx.all_unordered_as(_Row, f"{select} WHERE id > ? AND id <= ?", (10, 12)),
        ]

    written, read, unordered, some = engine.write_sync(fn)
    expected = list(written)
    expected[0] = expected[0]._replace(created_at=expected[0].created_at + 3)
    expected.append(_Row(len(written) + 1, written[0].account_id, "last", None, 5, None))
    assert len(written) == 1471
    assert read == expected
    assert sorted(unordered) == expected
    assert sorted(some) == expected[10:12]
    assert all(type(r) is _Row for r in unordered)


def test_new_ids_are_fresh_and_ascending(engine: Engine) -> None:
    def fn(tx: Tx) -> tuple[list[int], list[int], int]:
        first = tx.new_ids("jobs", 3)
        tx.run(
            "INSERT INTO jobs (id, request_id, kind, params, state, run_at, created_at,"
            " updated_at) VALUES (?, 'r1', 'k', '{}', 'done', 0, 0, 0)",
            (first[-1],),
        )
        row = tx.one(
            "INSERT INTO jobs (request_id, kind, params, state, run_at, created_at, updated_at)"
            " VALUES ('r2', 'k', '{}', 'done', 0, 0, 0) RETURNING id"
        )
        assert row is not None
        return first, tx.new_ids("jobs", 1000), row[0]

    first, more, defaulted = engine.write_sync(fn)
    assert first == sorted(set(first))
    assert len(first) == 3
    assert more == sorted(set(more))
    assert len(more) == 1000
    assert more[0] > first[-1]
    assert defaulted not in more
    assert defaulted not in first


def _account_slowly(tx: Tx) -> int:
    """Find or create the account "shared", with time for others to do the same."""
    row = tx.one("SELECT id FROM accounts WHERE name = 'shared'")
    if row:
        return int(row[0])
    time.sleep(0.2)
    row = tx.one("INSERT INTO accounts (name, created_at) VALUES ('shared', 1) RETURNING id")
    assert row is not None
    return int(row[0])


def test_racing_writers_of_one_new_account_all_succeed(engine: Engine) -> None:
    # Each checks for the account, then inserts it: on PostgreSQL all but one
    # lose the race (a unique key taken meanwhile) and are run again.
    workers = 6
    barrier = threading.Barrier(workers)
    results: list[Any] = []

    def create() -> None:
        barrier.wait()
        try:
            results.append(engine.write_sync(_account_slowly))
        except BaseException as exc:
            results.append(exc)

    threads = [threading.Thread(target=create) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert [r for r in results if isinstance(r, BaseException)] == []
    assert len(results) == workers
    assert len(set(results)) == 1
    assert _accounts(engine) == ["shared"]


def test_sqlite_writer_waits_out_a_write_lock_another_process_holds(tmp_path: Any) -> None:
    # The purge, a worker or the CLI may hold SQLite's one write lock: the writer waits
    # for it (in short steps) and then commits.
    import sqlite3

    from pushtrack.store import open_engine

    path = tmp_path / "locked.db"
    engine = open_engine(f"sqlite:///{path}")
    try:
        other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO accounts (name, created_at) VALUES ('other', 1)")
        released = threading.Event()

        def release() -> None:
            time.sleep(0.3)
            other.execute("COMMIT")
            released.set()

        holder = threading.Thread(target=release)
        holder.start()
        run(engine.write(partial(accounts.account_id, name="mine")))
        assert released.is_set()  # it did wait for the other's commit
        holder.join()
        assert sorted(_accounts(engine)) == ["mine", "other"]
        other.close()
    finally:
        run(engine.close())


def test_the_tracking_secret_is_read_once_per_engine(engine: Engine) -> None:
    # Migration 9 makes it and it never changes: every code given out depends on it.
    # So an engine reads it once (a round trip on PostgreSQL) and keeps it.
    from pushtrack.store.tracking import tracking_key

    first = engine.read_sync(tracking_key)
    assert len(first) >= 16
    engine.write_sync(lambda tx: tx.run("DELETE FROM server_secrets WHERE name = 'tracking'"))
    assert engine.read_sync(tracking_key) == first
    assert run(engine.write(tracking_key)) == first
