"""Counters written before they had shards survive the migration, and new bumps of the
same counter add to what statistics read."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from pushtrack.domain.status import Status
from pushtrack.domain.timeutil import HOUR_US
from pushtrack.store import events, open_store, schema
from tests.conftest import ENGINES, fresh_database_url
from tests.store.conftest import database_at
from tests.support import run

#: The version before counters had shards (the migration that adds them is the next).
BEFORE = next(i for i, script in enumerate(schema.MIGRATIONS) if "counters_sharded" in script)
HOUR = 1000 * HOUR_US
OLD = (
    "INSERT INTO counters (message_id, hour, platform, sends, opens)"
    f" VALUES (7, {HOUR}, 1, 5, 2);"
    " INSERT INTO counters_minute (message_id, minute, platform, sends, opens)"
    f" VALUES (7, {HOUR}, 1, 5, 2)"
)


@pytest.fixture(params=ENGINES)
def old_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database at the schema before shards, holding one message's counters."""
    urls = fresh_database_url(request.param, tmp_path)
    url = next(urls)
    database_at(url, BEFORE, OLD)
    try:
        yield url
    finally:
        urls.close()


def test_old_counters_keep_their_values_and_new_bumps_add(old_database: str) -> None:
    store = open_store(old_database)  # migrates
    try:
        bumps = [(7, HOUR + 1, 1, Status.OPENED), (7, HOUR + 2, 1, Status.OPENED)]
        for bump in bumps:  # separate transactions: on PostgreSQL maybe separate shards
            store.engine.write_sync(partial(events.bump_counters, items=[bump]))
        for interval in ("hour", "minute"):
            (row,) = run(store.stats.counters(7, interval, 0))
            assert (row.bucket, row.platform) == (HOUR, 1)
            assert (row.sends, row.opens) == (5, 4)
    finally:
        run(store.close())
