"""Fixtures of the engine tests: fresh databases, engines opened on them."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from pushtrack.domain.timeutil import DAY_US
from pushtrack.store import open_engine
from pushtrack.store.base import Engine
from tests.conftest import ENGINES, fresh_database_url
from tests.support import run


@pytest.fixture
def pg_url(tmp_path: Path) -> Iterator[str]:
    """A fresh, empty PostgreSQL database."""
    if "postgresql" not in ENGINES:
        pytest.skip("the PostgreSQL engine is not installed")
    yield from fresh_database_url("postgresql", tmp_path)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """An engine of each kind on a fresh database."""
    opened = open_engine(database_url)
    try:
        yield opened
    finally:
        run(opened.close())


def database_at(url: str, version: int, rows: str, *, pg_first: str = "") -> None:
    """Bring the fresh database ``url`` to schema ``version``, as an older pushtrack left
    it, and run ``rows`` (SQL) in it; ``pg_first`` runs before them on PostgreSQL."""
    import sqlite3

    from pushtrack.store import pg_schema, schema

    if url.startswith("sqlite:"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        for script in schema.MIGRATIONS[:version]:
            conn.executescript(script)
        conn.executescript(rows)
        conn.execute(f"PRAGMA user_version = {version}")
        conn.commit()
        conn.close()
        return
    import psycopg

    with psycopg.connect(url, autocommit=True) as pg:
        pg.execute(
            "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)"
        )
        for number, script in enumerate(pg_schema.MIGRATIONS[:version], start=1):
            pg.execute(script.encode())
            pg.execute("INSERT INTO schema_version VALUES (%s, 0)", (number,))
        if pg_first:
            pg.execute(pg_first.encode())
        pg.execute(rows.encode())


def database_of_schema(
    engine: str, tmp_path: Path, version: int, rows: Sequence[str], now: int
) -> Iterator[str]:
    """A fresh database of ``engine`` at schema ``version`` holding ``rows`` (SQL), with
    on PostgreSQL the events partition of ``now``'s day; removed after."""
    urls = fresh_database_url(engine, tmp_path)
    url = next(urls)
    day = now - now % DAY_US
    database_at(
        url,
        version,
        ";".join(rows),
        pg_first=f"CREATE TABLE events_old PARTITION OF events FOR VALUES FROM ({day})"
        f" TO ({day + DAY_US})",
    )
    try:
        yield url
    finally:
        urls.close()
