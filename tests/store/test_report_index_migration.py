"""Migration 19 (deliveries indexed by device and payload hash, the key a device's
report names its delivery by) keeps what a schema-18 database holds answering reports,
and the lookup then reads the index's entry for that one delivery."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pushtrack.domain.status import Status
from pushtrack.store import open_store
from tests.conftest import ENGINES
from tests.store.conftest import database_of_schema
from tests.store.test_funnel_migration import NOW, OLD_ROWS
from tests.support import run

#: A second delivery of the old device (another message), so the device's report must
#: tell its two deliveries apart by hash.
MORE_ROWS = [
    "INSERT INTO messages (id, code, app_id, notification, send_at, status,"
    f" deliveries, created_at) VALUES (2, 'DDDD-EEEEEEEE-FFFFFFFF', 1,"
    f" '{{\"content\":\"again\"}}', {NOW}, 'done', 1, {NOW})",
    "INSERT INTO deliveries (id, message_id, device_id, target_id, hwid, platform, hash,"
    f" state, attempts, created_at) VALUES (3, 2, 1, 'hw-1', 'hw-1', 1, 'qHash', 2, 1, {NOW})",
]


@pytest.fixture(params=ENGINES)
def schema_18(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from database_of_schema(request.param, tmp_path, 18, OLD_ROWS + MORE_ROWS, NOW)


def _index_columns(store: object, url: str) -> list[str]:
    engine = store.engine  # type: ignore[attr-defined]
    if url.startswith("sqlite:"):
        rows = engine.read_sync(lambda tx: tx.all("PRAGMA index_info('deliveries_device')"))
        return [r[2] for r in rows]
    rows = engine.read_sync(
        lambda tx: tx.all(
            "SELECT a.attname FROM pg_index i"
            " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)"
            " WHERE i.indexrelid = 'deliveries_device'::regclass"
            " ORDER BY array_position(i.indkey::int2[], a.attnum)"
        )
    )
    return [r[0] for r in rows]


def test_reports_find_old_deliveries_by_device_and_hash(schema_18: str) -> None:
    store = open_store(schema_18)  # migrates
    try:
        versions = run(store.schema_versions())
        assert versions[0] == versions[1]
        assert _index_columns(store, schema_18) == ["device_id", "hash"]
        app = run(store.get_app("OLD-APP"))
        assert app is not None
        # each report settles its own delivery of the device, not the other one
        assert run(store.record_device_report(app, "hw-1", "qHash", Status.DELIVERED))
        assert run(store.record_device_report(app, "hw-1", "pHash", Status.OPENED))
        assert not run(store.record_device_report(app, "hw-1", "noSuchHash", Status.OPENED))
        rows = store.engine.read_sync(
            lambda tx: tx.all("SELECT id, state, opened FROM deliveries ORDER BY id")
        )
        assert [tuple(r) for r in rows] == [
            (1, int(Status.DELIVERED), 1),
            (2, int(Status.FAILED), 0),
            (3, int(Status.DELIVERED), 0),
        ]
    finally:
        run(store.close())
