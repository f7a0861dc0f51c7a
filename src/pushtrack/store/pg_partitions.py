"""Daily partitions of the PostgreSQL ``events`` table.

A partition per UTC day, ``events_pYYYYMMDD``, holds the events whose ``ts``
(microseconds) falls in that day; retention drops whole days. Both functions
run inside a caller's transaction (``tx.dialect == "postgresql"``) and take a
transaction-scoped advisory lock, so concurrent callers in many processes
create or drop each partition exactly once.

Neither stalls ingestion: a new partition is made as a plain table and then
attached, which locks ``events`` only against other schema changes, never
against reads and inserts. Dropping a partition needs ``events`` to itself
for a moment; if readers hold it longer than ``DROP_LOCK_TIMEOUT``, that day
is left for the next call.
"""

from __future__ import annotations

from datetime import UTC, datetime

from psycopg import errors as pg_errors

from pushtrack.domain.timeutil import DAY_US, US, day_of
from pushtrack.store.base import Tx

#: pg_advisory_xact_lock key of partition upkeep ("pushtrack" in ASCII, then 2).
PARTITION_LOCK = 0x7075736874726102
#: How long dropping a day waits for its moment alone with ``events``.
DROP_LOCK_TIMEOUT = "1s"

PREFIX = "events_p"


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
    names = tx.column(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'events'::regclass"
    )
    days: dict[int, str] = {}
    for name in names:
        day = _day_of_name(name)
        if day is not None:
            days[day] = name
    return days


def _lock(tx: Tx) -> None:
    if tx.dialect != "postgresql":
        raise ValueError("events partitions exist only on PostgreSQL")
    tx.scalar("SELECT pg_advisory_xact_lock(?)", (PARTITION_LOCK,))


def ensure_partitions(tx: Tx, first_day_us: int, last_day_us: int) -> list[str]:
    """Create the missing partitions of the days from ``first_day_us`` to ``last_day_us``.

    Both ends are included (any instant of a day names that day). Returns the
    names of the partitions created.
    """
    _lock(tx)
    have = existing_partitions(tx)
    created: list[str] = []
    for day in range(day_of(first_day_us), day_of(last_day_us) + 1, DAY_US):
        if day in have:
            continue
        name = partition_name(day)
        tx.run(f"CREATE TABLE {name} (LIKE events)")
        tx.run(
            f"ALTER TABLE events ATTACH PARTITION {name}"
            f" FOR VALUES FROM ({day}) TO ({day + DAY_US})"
        )
        created.append(name)
    return created


def drop_partitions_before(tx: Tx, day_us: int) -> int:
    """Drop the partitions of the days before the one holding ``day_us``; how many.

    A day whose partition is busy past ``DROP_LOCK_TIMEOUT`` stays, for the next call.
    """
    _lock(tx)
    cutoff = day_of(day_us)
    old = [name for day, name in sorted(existing_partitions(tx).items()) if day < cutoff]
    if not old:
        return 0
    saved = tx.scalar("SELECT current_setting('lock_timeout')")
    if saved is None:
        saved = "0"
    tx.scalar("SELECT set_config('lock_timeout', ?, true)", (DROP_LOCK_TIMEOUT,))
    dropped = 0
    try:
        for name in old:
            tx.run("SAVEPOINT drop_partition")
            try:
                tx.run(f"DROP TABLE {name}")
            except pg_errors.LockNotAvailable:
                tx.run("ROLLBACK TO SAVEPOINT drop_partition")
                break
            tx.run("RELEASE SAVEPOINT drop_partition")
            dropped += 1
    finally:
        tx.scalar("SELECT set_config('lock_timeout', ?, true)", (saved,))
    return dropped
