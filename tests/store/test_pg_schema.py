"""PostgreSQL migrations: recorded, idempotent, safe when many processes start at once."""

from __future__ import annotations

import contextlib
import re
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import psycopg

from pushtrack.store.pg_schema import MIGRATIONS, migrate
from pushtrack.store.postgres import PostgresEngine
from pushtrack.store.sqlite import SQLiteEngine


def _versions(url: str) -> list[int]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("SELECT version FROM schema_version ORDER BY version")]


def test_migrations_are_recorded_and_run_once(pg_url: str) -> None:
    first = PostgresEngine(pg_url)
    first.write_sync(
        lambda tx: tx.run("INSERT INTO accounts (name, created_at) VALUES (?, 1)", ("kept",))
    )
    first.close_sync()
    assert _versions(pg_url) == list(range(1, len(MIGRATIONS) + 1))

    with psycopg.connect(pg_url) as conn:
        assert migrate(conn) == 0
    again = PostgresEngine(pg_url)
    try:
        assert again.read_sync(lambda tx: tx.all("SELECT name FROM accounts")) == [("kept",)]
    finally:
        again.close_sync()
    assert _versions(pg_url) == list(range(1, len(MIGRATIONS) + 1))


def test_concurrent_starts_migrate_once(pg_url: str) -> None:
    starters = 4
    barrier = threading.Barrier(starters)
    engines: list[PostgresEngine] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def start() -> None:
        barrier.wait()
        try:
            opened = PostgresEngine(pg_url)
        except BaseException as exc:
            with lock:
                errors.append(exc)
            return
        with lock:
            engines.append(opened)

    threads = [threading.Thread(target=start) for _ in range(starters)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert errors == []
        assert len(engines) == starters
        assert _versions(pg_url) == list(range(1, len(MIGRATIONS) + 1))
        # Every engine works on the one schema they share.
        for i, e in enumerate(engines):
            e.write_sync(
                lambda tx, i=i: tx.run(
                    "INSERT INTO accounts (name, created_at) VALUES (?, 1)", (f"a{i}",)
                )
            )
        assert engines[0].read_sync(lambda tx: tx.one("SELECT COUNT(*) FROM accounts")) == (
            starters,
        )
    finally:
        for e in engines:
            e.close_sync()


def _sqlite_columns(path: Path) -> dict[str, set[str]]:
    SQLiteEngine(str(path)).close_sync()
    with contextlib.closing(sqlite3.connect(path)) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        return {t: {r[1] for r in conn.execute(f"PRAGMA table_info({t})")} for t in tables}


def _pg_columns(url: str) -> dict[str, set[str]]:
    PostgresEngine(url).close_sync()
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT c.table_name, c.column_name FROM information_schema.columns c"
            " JOIN pg_class k ON k.relname = c.table_name"
            " WHERE c.table_schema = 'public' AND NOT k.relispartition"
            " AND c.table_name <> 'schema_version'"
        ).fetchall()
    out: dict[str, set[str]] = {}
    for table, column in rows:
        out.setdefault(table, set()).add(column)
    return out


def test_same_tables_and_columns_as_sqlite(pg_url: str, tmp_path: Path) -> None:
    assert _pg_columns(pg_url) == _sqlite_columns(tmp_path / "schema.db")


def test_a_delivery_changing_state_is_a_hot_update(pg_url: str) -> None:
    # Sending and device reports change a delivery's state, in_flight, attempts,
    # next_at, confirmed and opened: no index may name them, or each change writes an
    # entry into every index of the table (a partial index on state, migration 16,
    # halved dispatch on PostgreSQL; migration 18 dropped it).
    PostgresEngine(pg_url).close_sync()
    changed = ("state", "in_flight", "attempts", "next_at", "confirmed", "opened")
    columns = ("state = 2", "in_flight = 1", "attempts = 1", "next_at = 5",
               "state = 4", "confirmed = 1", "opened = 1", "in_flight = 0")  # fmt: skip

    def counts(conn: psycopg.Connection[Any]) -> tuple[int, int]:
        row = conn.execute(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'deliveries'"
        ).fetchone()
        assert row is not None
        return int(row[0]), int(row[1])

    with psycopg.connect(pg_url, autocommit=True) as conn:
        indexes = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE tablename = 'deliveries'"
        ).fetchall()
        assert [d for (d,) in indexes if any(re.search(rf"\b{c}\b", d) for c in changed)] == []
        # few rows: every version of them fits their page, so no update depends on
        # pruning (which a snapshot held elsewhere can delay)
        conn.execute(
            "INSERT INTO deliveries (message_id, target_id, hwid, platform, state, created_at)"
            " SELECT 1, 'h' || i, 'h' || i, 1, 1, 0 FROM generate_series(1, 5) i"
        )
        for change in columns:
            conn.execute(f"UPDATE deliveries SET {change}")
        conn.execute("SELECT pg_stat_force_next_flush()")
        conn.execute("SELECT 1")
    with psycopg.connect(pg_url, autocommit=True) as conn:
        deadline = time.monotonic() + 10
        while counts(conn)[0] < 5 * len(columns) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert counts(conn) == (5 * len(columns), 5 * len(columns))
