"""The PostgreSQL pool outlives connections the server kills."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

from pushtrack.store.base import StoreError, Tx
from pushtrack.store.postgres import PostgresEngine


@pytest.fixture
def pg(pg_url: str) -> Iterator[PostgresEngine]:
    engine = PostgresEngine(pg_url)
    try:
        yield engine
    finally:
        engine.close_sync()


def _terminate(url: str, where: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"  # type: ignore[arg-type]
            f" WHERE datname = current_database() AND pid <> pg_backend_pid() AND {where}"
        ).fetchall()
    return sum(1 for (ok,) in rows if ok)


def test_call_in_flight_fails_then_the_pool_recovers(pg: PostgresEngine, pg_url: str) -> None:
    def slow(tx: Tx) -> None:
        tx.run("INSERT INTO accounts (name, created_at) VALUES ('lost', 1)")
        tx.one("SELECT pg_sleep(20)")

    killed: list[int] = []

    def killer() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not killed:
            time.sleep(0.05)
            if n := _terminate(pg_url, "query LIKE '%pg_sleep%'"):
                killed.append(n)

    thread = threading.Thread(target=killer)
    thread.start()
    started = time.monotonic()
    with pytest.raises(StoreError):
        pg.write_sync(slow)
    thread.join()
    assert killed == [1]
    assert time.monotonic() - started < 10
    assert pg.read_sync(lambda tx: tx.all("SELECT name FROM accounts")) == []

    pg.write_sync(lambda tx: tx.run("INSERT INTO accounts (name, created_at) VALUES ('ok', 1)"))
    assert pg.read_sync(lambda tx: tx.all("SELECT name FROM accounts")) == [("ok",)]


def test_idle_connections_killed_are_replaced(pg: PostgresEngine, pg_url: str) -> None:
    pg.read_sync(lambda tx: tx.one("SELECT 1"))
    assert _terminate(pg_url, "TRUE") >= 1
    for i in range(3):
        assert pg.read_sync(lambda tx, i=i: tx.one("SELECT ?", (i,))) == (i,)
