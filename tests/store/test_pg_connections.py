"""The PostgreSQL pool outlives connections the server kills."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

from pushtrack.domain.status import Status
from pushtrack.store import open_store
from pushtrack.store.base import App, DeviceIn, MessagePlan, StoreError, Targeting, Tx
from pushtrack.store.postgres import PostgresEngine
from tests.support import run


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


def test_device_reports_outlive_idle_connections_killed(pg_url: str) -> None:
    """Device report batches take their connection unchecked; one found dead is
    replaced and the batch answered as if nothing happened."""
    store = open_store(pg_url)
    try:

        async def setup() -> App:
            app = await store.create_app("acc", "reports")
            for i in range(3):
                await store.register_device(app, DeviceIn(f"hw-{i}", 1, push_token=f"t{i}"))
            plan = MessagePlan(
                notification={"content": "hi"},
                targeting=Targeting(devices=("hw-0", "hw-1", "hw-2")),
                send_at=store.clock(),
            )
            await store.create_messages(app, [plan])
            return app

        app = run(setup())
        pairs = store.engine.read_sync(lambda tx: tx.all("SELECT hwid, hash FROM deliveries"))
        hwid, payload_hash = pairs[0]
        assert run(store.record_device_report(app, hwid, payload_hash, Status.OPENED)) is True
        assert _terminate(pg_url, "TRUE") >= 1
        for hwid, payload_hash in pairs:
            assert run(store.record_device_report(app, hwid, payload_hash, Status.OPENED)) is True
        opened = store.engine.read_sync(
            lambda tx: tx.one("SELECT COUNT(*) FROM events WHERE status = 5")
        )
        assert opened == (3,)
    finally:
        run(store.close())
