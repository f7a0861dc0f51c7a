"""Daily partitions of the PostgreSQL ``events`` table.

A partition per UTC day, ``events_pYYYYMMDD``, holds the events whose ``ts``
(microseconds) falls in that day; retention drops whole days. Both functions
run inside a caller's transaction (``tx.dialect == "postgresql"``) and take a
transaction-scoped advisory lock, so concurrent callers in many processes
create or drop each partition exactly once.

Creating or dropping a partition locks ``events`` exclusively for a moment;
callers that must not wait behind long readers set ``lock_timeout`` first.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pushtrack.domain.timeutil import DAY_US, US, day_of
from pushtrack.store.base import Tx

#: pg_advisory_xact_lock key of partition maintenance ("pushtrack" in ASCII, then 2).
PARTITION_LOCK = 0x7075736874726102

PREFIX = "events_p"
DEFAULT_PARTITION = "events_default"


def partition_name(day_us: int) -> str:
    """``events_pYYYYMMDD`` of the UTC day holding ``day_us``."""
    return PREFIX + datetime.fromtimestamp(day_of(day_us) // US, UTC).strftime("%Y%m%d")


def _day_of_name(name: str) -> int | None:
    if not name.startswith(PREFIX):
        return None
    try:
        day = datetime.strptime(name.removeprefix(PREFIX), "%Y%m%d").replace(tzinfo=UTC)
    except ValueError:
        return None
    return int(day.timestamp()) * US


def existing_partitions(tx: Tx) -> dict[int, str]:
    """Day start (µs) -> partition name, of the daily partitions of ``events``."""
    rows = tx.all(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'events'::regclass"
    )
    days: dict[int, str] = {}
    for (name,) in rows:
        day = _day_of_name(name)
        if day is not None:
            days[day] = name
    return days


def _lock(tx: Tx) -> None:
    if tx.dialect != "postgresql":
        raise ValueError("events partitions exist only on PostgreSQL")
    tx.one("SELECT pg_advisory_xact_lock(?)", (PARTITION_LOCK,))


def ensure_partitions(tx: Tx, first_day_us: int, last_day_us: int) -> list[str]:
    """Create the missing partitions of the days from ``first_day_us`` to ``last_day_us``.

    Both ends are included (any instant of a day names that day). Rows of those
    days that landed in the DEFAULT partition move into the new partition.
    Returns the names of the partitions created.
    """
    _lock(tx)
    have = existing_partitions(tx)
    created: list[str] = []
    for day in range(day_of(first_day_us), day_of(last_day_us) + 1, DAY_US):
        if day in have:
            continue
        name = partition_name(day)
        stray = tx.one(
            f"SELECT 1 FROM {DEFAULT_PARTITION} WHERE ts >= ? AND ts < ? LIMIT 1",
            (day, day + DAY_US),
        )
        if stray:
            # A new partition may not overlap rows the DEFAULT partition holds:
            # take them out first, put them back through the parent after.
            tx.run(f"CREATE TEMPORARY TABLE {name}_moving (LIKE events) ON COMMIT DROP")
            tx.run(
                f"WITH moved AS (DELETE FROM {DEFAULT_PARTITION} WHERE ts >= ? AND ts < ?"
                f" RETURNING *) INSERT INTO {name}_moving SELECT * FROM moved",
                (day, day + DAY_US),
            )
        tx.run(
            f"CREATE TABLE {name} PARTITION OF events FOR VALUES FROM ({day}) TO ({day + DAY_US})"
        )
        if stray:
            tx.run(f"INSERT INTO events SELECT * FROM {name}_moving")
            tx.run(f"DROP TABLE {name}_moving")
        created.append(name)
    return created


def drop_partitions_before(tx: Tx, day_us: int) -> int:
    """Drop the partitions of the days before the one holding ``day_us``; how many.

    Rows older than that day left in the DEFAULT partition are deleted too.
    """
    _lock(tx)
    cutoff = day_of(day_us)
    dropped = 0
    for day, name in sorted(existing_partitions(tx).items()):
        if day < cutoff:
            tx.run(f"DROP TABLE {name}")
            dropped += 1
    tx.run(f"DELETE FROM {DEFAULT_PARTITION} WHERE ts < ?", (cutoff,))
    return dropped
