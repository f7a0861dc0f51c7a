"""Migration 10 (the honest funnel, gateway ids and failure classes kept, the dead-token
ledger) keeps what a database at schema 9 holds answering as before, and what comes
after it is recorded the new way."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pushtrack.domain.status import Status
from pushtrack.domain.timeutil import HOUR_US
from pushtrack.store import open_store
from pushtrack.store.base import LogQuery
from tests.conftest import ENGINES
from tests.store.conftest import database_of_schema
from tests.support import run

NOW = 1_700_000_000_000_000
HOUR = NOW - NOW % HOUR_US

#: What a schema-9 database held: one delivery the gateway delivered, one to an entry
#: that matched no device, their events and counters.
OLD_ROWS = [
    "INSERT INTO accounts (id, name, created_at) VALUES (1, 'acme', 0)",
    "INSERT INTO applications (id, code, account_id, name, tracking, open_logging,"
    " device_token_required, created_at) VALUES (1, 'OLD-APP', 1, 'old', 1, 1, 1, 0)",
    "INSERT INTO devices (id, app_id, hwid, push_token, device_type, subscribed,"
    " created_at, updated_at) VALUES (1, 1, 'hw-1', 'tok-1', 1, 1, 0, 0)",
    "INSERT INTO messages (id, code, app_id, notification, send_at, status,"
    f" deliveries, created_at) VALUES (1, 'AAAA-BBBBBBBB-CCCCCCCC', 1,"
    f" '{{\"content\":\"hi\"}}', {NOW}, 'done', 2, {NOW})",
    "INSERT INTO deliveries (id, message_id, device_id, target_id, hwid, platform, hash,"
    f" state, attempts, created_at) VALUES (1, 1, 1, 'hw-1', 'hw-1', 1, 'pHash', 3, 2, {NOW})",
    "INSERT INTO deliveries (id, message_id, device_id, target_id, hwid, platform, hash,"
    f" state, created_at) VALUES (2, 1, NULL, 'ghost', 'ghost', 0, NULL, 4, {NOW})",
    f"INSERT INTO events (ts, delivery_id, status, description) VALUES ({NOW}, 1, 2, 'Sent')",
    "INSERT INTO events (ts, delivery_id, status, description)"
    f" VALUES ({NOW + 1}, 1, 3, 'Success')",
    "INSERT INTO events (ts, delivery_id, status, description)"
    f" VALUES ({NOW}, 2, 4, 'Unknown device')",
    "INSERT INTO counters (message_id, hour, platform, sends, deliveries, errors)"
    f" VALUES (1, {HOUR}, 1, 1, 1, 0)",
]


@pytest.fixture(params=ENGINES)
def old_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from database_of_schema(request.param, tmp_path, 9, OLD_ROWS, NOW)


def test_old_trail_reads_as_before_and_confirmations_are_kept_after(old_database: str) -> None:
    store = open_store(old_database)  # migrates
    try:
        versions = run(store.schema_versions())
        assert versions[0] == versions[1]
        q = LogQuery(account="acme", date_from=0)
        rows = run(store.message_log(q))
        seen = {(r.hwid, r.status): r for r in rows}
        assert len(seen) == len(rows) == 5
        delivered = seen[("hw-1", Status.DELIVERED)]
        # no gateway id was kept then; the tries were
        assert (delivered.gateway_id, delivered.attempts, delivered.failure_class) == (
            None,
            2,
            None,
        )
        # a failure the service wrote has its class from its description
        assert seen[("ghost", Status.FAILED)].failure_class == "unknown_device"
        app = run(store.get_app("OLD-APP"))
        assert app is not None
        totals = run(store.stats.counters(1, "hour", 0))
        assert [(t.deliveries, t.confirmed) for t in totals] == [(1, 0)]

        # the device confirms the old delivery: a fact of its own, counted
        assert run(store.record_device_report(app, "hw-1", "pHash", Status.DELIVERED))
        assert run(store.record_device_report(app, "hw-1", "pHash", Status.DELIVERED))
        statuses = [r.status for r in run(store.message_log(q)) if r.hwid == "hw-1"]
        assert statuses.count(Status.CONFIRMED) == 1
        assert statuses.count(Status.DELIVERED) == 1
        totals = run(store.stats.counters(1, "day", 0))
        assert sum(t.confirmed for t in totals) == 1
        assert sum(t.deliveries for t in totals) == 1
        assert run(store.dead_tokens.list("acme", None)) == []
    finally:
        run(store.close())
