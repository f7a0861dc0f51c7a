"""Migration 7 (derived tracking codes, deliveries by device id, user_devices,
jobs.message_id) keeps what a database at schema 6 holds answering as before."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from pushtrack.domain import codes
from pushtrack.domain.status import Status
from pushtrack.store import open_store
from pushtrack.store.base import LogQuery, MessagePlan, Targeting
from pushtrack.store.exports import TrackQuery
from tests.conftest import ENGINES
from tests.store.conftest import database_of_schema
from tests.support import run

LEGACY = "T-1A2B-3C4D5E6F-708192A3"
NOW = 1_700_000_000_000_000

#: What a schema-6 database held: a device (its user since changed), a message to it
#: and to an unknown entry, their deliveries with random codes, events and jobs.
OLD_ROWS = [
    "INSERT INTO accounts (id, name, created_at) VALUES (1, 'acme', 0)",
    "INSERT INTO applications (id, code, account_id, name, tracking, open_logging,"
    " device_token_required, created_at) VALUES (1, 'OLD-APP', 1, 'old', 1, 1, 1, 0)",
    "INSERT INTO devices (id, app_id, hwid, push_token, device_type, user_id, subscribed,"
    f" created_at, updated_at) VALUES (1, 1, 'hw-1', 'tok-1', 1, 'user-new', 1, 0, {NOW})",
    "INSERT INTO messages (id, code, app_id, campaign, notification, send_at, status,"
    f" deliveries, created_at) VALUES (1, 'AAAA-BBBBBBBB-CCCCCCCC', 1, 'spring',"
    f" '{{\"content\":\"hi\"}}', {NOW}, 'pending', 2, {NOW})",
    "INSERT INTO deliveries (id, message_id, device_id, payload_id, tracking_code, target_id,"
    f" hwid, user_id, platform, hash, state, next_at) VALUES (1, 1, 1, NULL, '{LEGACY}',"
    f" 'hw-1', 'hw-1', 'user-old', 1, 'pHash', 1, {NOW})",
    "INSERT INTO deliveries (id, message_id, device_id, payload_id, tracking_code, target_id,"
    " hwid, user_id, platform, hash, state, next_at) VALUES (2, 1, NULL, NULL,"
    f" 'T-0000-11111111-22222222', 'ghost', 'ghost', NULL, 0, NULL, 4, {NOW})",
    f"INSERT INTO events (ts, delivery_id, status, description) VALUES ({NOW}, 1, 1, 'Created')",
    f"INSERT INTO events (ts, delivery_id, status, description) VALUES ({NOW}, 2, 1, 'Created')",
    "INSERT INTO events (ts, delivery_id, status, description)"
    f" VALUES ({NOW}, 2, 4, 'Unknown device')",
    "INSERT INTO jobs (request_id, kind, params, state, run_at, created_at, updated_at)"
    f" VALUES ('r1', 'dispatch', '{{\"message_id\":1,\"first\":1,\"last\":1}}', 'pending',"
    f" {NOW}, {NOW}, {NOW})",
]


@pytest.fixture(params=ENGINES)
def old_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from database_of_schema(request.param, tmp_path, 6, OLD_ROWS, NOW)


def test_old_tracking_codes_and_lookups_survive(old_database: str) -> None:
    store = open_store(old_database)  # migrates
    try:
        q = LogQuery(account="acme", date_from=0)
        by_code = run(store.message_log(msgspec_replace(q, tracking_code=LEGACY)))
        assert [(r.tracking_code, r.hwid, r.status) for r in by_code] == [
            (LEGACY, "hw-1", Status.CREATED)
        ]
        ghost = run(store.message_log(msgspec_replace(q, hwids=("ghost",))))
        assert [(r.tracking_code, r.status) for r in ghost] == [
            ("T-0000-11111111-22222222", Status.CREATED),
            ("T-0000-11111111-22222222", Status.FAILED),
        ]
        # the user the delivery carried, not the device's user now
        old_user = run(store.message_log(msgspec_replace(q, user_id="user-old")))
        assert [r.tracking_code for r in old_user] == [LEGACY]
        assert run(store.message_log(msgspec_replace(q, user_id="user-new"))) == []
        spring = run(store.message_log(msgspec_replace(q, campaign_code="spring")))
        assert len(spring) == 3
        rows = [r for page in store.exports.pages(TrackQuery("acme", 0, NOW + 1)) for r in page]
        assert {r.tracking_code for r in rows} == {LEGACY, "T-0000-11111111-22222222"}

        # new deliveries get derived codes, which resolve; a forged MAC resolves nothing
        app = run(store.get_app("OLD-APP"))
        assert app is not None
        plan = MessagePlan(
            notification={"content": "again"},
            targeting=Targeting(devices=("hw-1",)),
            send_at=store.clock(),
        )
        (made,) = run(store.create_messages(app, [plan]))
        assert made.tracking_codes is not None
        (code,) = made.tracking_codes
        assert codes.TRACKING_CODE_RE.match(code)
        assert code != LEGACY
        found = run(store.message_log(msgspec_replace(q, tracking_code=code)))
        assert [(r.tracking_code, r.status) for r in found] == [(code, Status.CREATED)]
        forged = code[:-1] + ("0" if code[-1] != "0" else "1")
        assert run(store.message_log(msgspec_replace(q, tracking_code=forged))) == []
        # the device's trail by hwid holds both deliveries
        trail = run(store.message_log(msgspec_replace(q, hwids=("hw-1",))))
        assert {r.tracking_code for r in trail} == {LEGACY, code}
    finally:
        run(store.close())


def msgspec_replace(q: LogQuery, **changes: object) -> LogQuery:
    return msgspec.structs.replace(q, **changes)
