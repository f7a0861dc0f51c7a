"""Migration 13 (webhooks; on PostgreSQL the writing transaction of every trail row)
keeps a schema-12 database's trail readable as a stream from its start, and what is
written after it comes after that."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pushtrack.domain.status import Status
from pushtrack.store import open_store
from pushtrack.store.stream import START, Filter
from tests.conftest import ENGINES, fresh_database_url
from tests.store.conftest import database_at, database_of_schema
from tests.store.test_funnel_migration import NOW, OLD_ROWS
from tests.support import run


@pytest.fixture(params=ENGINES)
def schema_12(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from database_of_schema(request.param, tmp_path, 12, OLD_ROWS, NOW)


def test_the_old_trail_streams_from_the_start_and_new_rows_follow(schema_12: str) -> None:
    store = open_store(schema_12)  # migrates
    try:
        versions = run(store.schema_versions())
        assert versions[0] == versions[1]
        acme = Filter(account="acme")
        old = run(store.stream.read(START, acme, 100))
        assert sorted((r.row.hwid, r.row.status.label) for r in old.items) == [
            ("ghost", "created"),
            ("ghost", "failed"),
            ("hw-1", "created"),
            ("hw-1", "delivered"),
            ("hw-1", "sent"),
        ]
        app = run(store.get_app("OLD-APP"))
        assert app is not None
        hook = run(
            store.webhooks.add(
                "acme", app.id, "https://hooks.example.com/a", "s" * 20, None, sealed=False
            )
        )
        assert hook.delivered == 0
        assert run(store.record_device_report(app, "hw-1", "pHash", Status.DELIVERED))
        new = run(store.stream.read(old.reached, acme, 100))
        assert [(r.row.hwid, r.row.status) for r in new.items] == [("hw-1", Status.CONFIRMED)]
        # the endpoint made after the old trail gets only what came after it
        since_hook = run(store.stream.read(hook.cursor, acme, 100))
        assert [r.row.status for r in since_hook.items] == [Status.CONFIRMED]
    finally:
        run(store.close())


@pytest.fixture(params=ENGINES)
def schema_14(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A schema-14 database with an endpoint whose secret an older pushtrack stored as
    given."""
    urls = fresh_database_url(request.param, tmp_path)
    url = next(urls)
    database_at(
        url,
        14,
        ";".join(
            [
                *OLD_ROWS[:2],
                "INSERT INTO webhooks (app_id, url, secret, created_at, cursor_at, cursor_key)"
                " VALUES (1, 'https://hooks.example.com/a', 'plain-secret-0123456789', 0, 0, 0)",
            ]
        ),
    )
    try:
        yield url
    finally:
        urls.close()


def test_an_endpoint_made_before_secrets_were_sealed_keeps_its_plain_secret(
    schema_14: str,
) -> None:
    """Migration 15: the old secret reads as plain text (it signs as before; ``pushtrack
    secrets seal`` seals it, tests/delivery/test_sealing.py), new ones are stored sealed."""
    store = open_store(schema_14)  # migrates
    try:
        versions = run(store.schema_versions())
        assert versions[0] == versions[1]
        (old,) = run(store.webhooks.all())
        assert (old.secret, old.secret_sealed) == ("plain-secret-0123456789", False)
        assert run(store.webhooks.reseal(old.id, "another", "sealed-token")) is False
        assert run(store.webhooks.reseal(old.id, old.secret, "sealed-token")) is True
        again = run(store.webhooks.get(old.id))
        assert again is not None
        assert (again.secret, again.secret_sealed) == ("sealed-token", True)
    finally:
        run(store.close())
