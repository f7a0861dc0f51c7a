"""PostgreSQL migrations: recorded, idempotent, safe when many processes start at once."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from pathlib import Path

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
