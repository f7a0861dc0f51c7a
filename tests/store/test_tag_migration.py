"""Tags registerDevice stored as JSON before tag_values existed survive the migration."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pushtrack.domain.tags import TagType
from pushtrack.domain.targeting import parse_filter
from pushtrack.store import open_store, pg_schema, schema
from tests.conftest import ENGINES, fresh_database_url
from tests.support import run

#: (hwid, the JSON tags an older version stored)
OLD_DEVICES: list[tuple[str, Any]] = [
    ("d1", {"level": 3, "city": "Oslo", "likes": ["a", "b"], "vip": True, "score": 2.5}),
    ("d2", {"level": "ten", "city": "Rome", "likes": "x", "vip": False, "score": 7, "n": None}),
    ("d3", {"level": 12, "deep": {"x": 1}, "likes": ["c", 5]}),
    ("d4", None),
]


@pytest.fixture(params=ENGINES)
def old_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database at the first schema version, holding devices with JSON tags."""
    urls = fresh_database_url(request.param, tmp_path)
    url = next(urls)
    rows = [
        (i + 1, hwid, None if tags is None else json.dumps(tags))
        for i, (hwid, tags) in enumerate(OLD_DEVICES)
    ]
    insert_app = (
        "INSERT INTO accounts (id, name, created_at) VALUES (1, 'acme', 0);"
        " INSERT INTO applications (id, code, account_id, name, tracking, open_logging,"
        " device_token_required, created_at) VALUES (1, 'OLD-APP', 1, 'old', 1, 1, 1, 0)"
    )
    insert_device = (
        "INSERT INTO devices (id, app_id, hwid, device_type, tags, subscribed, created_at,"
        " updated_at) VALUES ({}, 1, {!r}, 3, {}, 0, 0, 0)"
    )
    devices = [
        insert_device.format(i, hwid, "NULL" if tags is None else repr(tags))
        for i, hwid, tags in rows
    ]
    if request.param == "sqlite":
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        conn.executescript(schema.MIGRATIONS[0])
        conn.executescript(insert_app + ";" + ";".join(devices))
        conn.execute("PRAGMA user_version = 1")
        conn.commit()
        conn.close()
    else:
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "CREATE TABLE schema_version (version INTEGER PRIMARY KEY,"
                " applied_at BIGINT NOT NULL); INSERT INTO schema_version VALUES (1, 0)"
            )
            conn.execute(pg_schema.MIGRATIONS[0].encode())
            conn.execute((insert_app + ";" + ";".join(devices)).encode())
    try:
        yield url
    finally:
        urls.close()


def test_json_tags_become_typed_tags(old_database: str) -> None:
    store = open_store(old_database)  # migrates
    try:
        app = run(store.get_app("OLD-APP"))
        defs = {d.name: d.type for d in run(store.targeting.list_tags(app))}
        # The oldest device holding a tag decides its type; objects and nulls make none.
        assert defs == {
            "level": TagType.INTEGER,
            "city": TagType.STRING,
            "likes": TagType.LIST,
            "vip": TagType.BOOLEAN,
            "score": TagType.DECIMAL,
        }
        tags = {hwid: run(store.targeting.get_tags(app, hwid)) for hwid, _ in OLD_DEVICES}
        assert tags == {
            "d1": {"level": 3, "city": "Oslo", "likes": ["a", "b"], "vip": True, "score": 2.5},
            "d2": {"city": "Rome", "vip": False, "score": 7.0},  # "ten" and "x" do not fit
            "d3": {"level": 12, "likes": ["c"]},
            "d4": {},
        }
        node = parse_filter('T("level", GTE, 3) * T("likes", IN, ["a", "c"])')
        assert run(store.targeting.select_hwids(app, node)) == ["d1", "d3"]
    finally:
        run(store.close())
