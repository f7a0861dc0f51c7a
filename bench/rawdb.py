"""The bare engine, for baselines and for bulk set-up: DB-API calls, no pushtrack code.

Baselines measure what the database itself costs for the same rows, so they
talk to it directly with the same connection settings the product uses.
The schema is always the product's own: a database is created by opening
the store (which migrates it) before anything here writes to it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from bench.harness import sqlite_path
from pushtrack.store import open_store


def create_schema(url: str) -> None:
    """Create (migrate) the product's schema in a fresh database."""
    import asyncio

    async def go() -> None:
        store = open_store(url)
        await store.close()

    asyncio.run(go())


class Raw:
    """One bare connection, ``?`` placeholders on either engine, explicit transactions."""

    def __init__(self, url: str, *, bulk: bool = False) -> None:
        self.url = url
        self.sqlite = url.startswith("sqlite:")
        if self.sqlite:
            conn = sqlite3.connect(sqlite_path(url), isolation_level=None)
            # As pushtrack.store.sqlite._connect sets them.
            conn.execute("PRAGMA busy_timeout = 10000")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA cache_size = -65536")
            conn.execute("PRAGMA temp_store = MEMORY")
            if bulk:  # set-up only: a bigger cache; durability does not matter there
                conn.execute("PRAGMA cache_size = -524288")
                conn.execute("PRAGMA synchronous = OFF")
            self._sqlite = conn
        else:
            import psycopg

            self._pg = psycopg.connect(url, autocommit=True)

    def _sql(self, sql: str) -> str:
        return sql if self.sqlite else sql.replace("?", "%s")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        if self.sqlite:
            return self._sqlite.execute(sql, params).fetchall()
        cur = self._pg.execute(self._sql(sql), params)
        return cur.fetchall() if cur.description else []

    def many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        if self.sqlite:
            self._sqlite.executemany(sql, rows)
        else:
            with self._pg.cursor() as cur:
                cur.executemany(self._sql(sql), list(rows))

    def insert(self, table: str, columns: str, rows: Sequence[Sequence[Any]]) -> None:
        """Append rows: executemany on SQLite, COPY (the bulk path) on PostgreSQL."""
        if self.sqlite:
            marks = ", ".join("?" * len(columns.split(",")))
            self._sqlite.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", rows)
            return
        with self._pg.cursor() as cur, cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)

    def begin(self) -> None:
        self.execute("BEGIN IMMEDIATE" if self.sqlite else "BEGIN")

    def commit(self) -> None:
        self.execute("COMMIT")

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        rows = self.execute(sql, params)
        return rows[0][0] if rows else None

    def close(self) -> None:
        if self.sqlite:
            self._sqlite.close()
        else:
            self._pg.close()

    def __enter__(self) -> Raw:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def prepare_days(url: str, first_us: int, last_us: int) -> None:
    """PostgreSQL: make the events partitions of these days, as the engine's upkeep does."""
    if url.startswith("sqlite:"):
        return
    import asyncio
    from functools import partial

    from pushtrack.store.pg_partitions import ensure_partitions

    async def go() -> None:
        store = open_store(url)
        try:
            await store.engine.write(
                partial(ensure_partitions, first_day_us=first_us, last_day_us=last_us)
            )
        finally:
            await store.close()

    asyncio.run(go())


def sync_sequences(db: Raw, tables: tuple[str, ...]) -> None:
    """PostgreSQL: move id sequences past ids written explicitly (SQLite needs nothing)."""
    if db.sqlite:
        return
    for table in tables:
        db.execute(f"SELECT setval('{table}_id_seq', GREATEST((SELECT MAX(id) FROM {table}), 1))")


def analyze(db: Raw, tables: tuple[str, ...]) -> None:
    """PostgreSQL: planner statistics for tables just bulk-loaded, as autovacuum would
    gather them in time (without them a join may scan millions of rows)."""
    if db.sqlite:
        return
    for table in tables:
        db.execute(f"ANALYZE {table}")
