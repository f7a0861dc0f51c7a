"""The trail's event rows and the counters they move, written only for transitions a
guarded UPDATE won (so the log and the counters always agree)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

from pushtrack.domain.status import (
    COUNTER_OF,
    Status,
)
from pushtrack.domain.timeutil import HOUR_US, US
from pushtrack.store.base import (
    Tx,
)

#: An event to append: ``(delivery_id, status, description, message_id, platform)``,
#: optionally followed by the gateway's id and the failure class of a gateway's answer.
NewEvent = (
    tuple[int, Status, str, int, int] | tuple[int, Status, str, int, int, str | None, str | None]
)


def append_events(tx: Tx, events: Sequence[NewEvent]) -> None:
    """Append events ``(delivery_id, status, description, message_id, platform[,
    gateway_id, failure_class])``.

    Callers pass only transitions they won on the delivery row (its ``state``,
    ``opened`` and ``confirmed`` columns, changed by a guarded UPDATE in the same
    transaction), so there is at most one event per (delivery, status) and
    counters always agree with the log.
    """
    if not events:
        return
    ts = tx.now()
    if any(len(e) > 5 for e in events):
        tx.many(
            "INSERT INTO events (ts, delivery_id, status, description, gateway_id,"
            " failure_class) VALUES (?, ?, ?, ?, ?, ?)",
            [
                (ts, e[0], int(e[1]), e[2], *(e[5:7] if len(e) > 5 else (None, None)))
                for e in events
            ],
        )
    else:
        tx.many(
            "INSERT INTO events (ts, delivery_id, status, description) VALUES (?, ?, ?, ?)",
            [(ts, e[0], int(e[1]), e[2]) for e in events],
        )
    bump_counters(tx, ((e[3], ts, e[4], e[1]) for e in events))


class Span(NamedTuple):
    """The first and the last bucket of some counters (both NULL: there are none)."""

    first: int | None
    last: int | None


#: Counter tables: (table, bucket column, bucket width in µs).
COUNTER_TABLES = (("counters", "hour", HOUR_US), ("counters_minute", "minute", 60 * US))
#: PostgreSQL keeps each counter in up to this many rows (``shard``), one per database
#: connection modulo this, summed when read: transactions bumping the same counter
#: then rarely wait for each other's commit on its row (a hot message's opens would
#: otherwise commit one transaction at a time, across every server process).
COUNTER_SHARDS = 8


def bump_counters(tx: Tx, items: Iterable[tuple[int, int, int, Status]]) -> None:
    """Add one to the counters of each ``(message_id, ts, platform, status)``.

    Each event counts in its hour (``counters``) and its minute (``counters_minute``).
    """
    totals: Counter[tuple[int, int, int, str]] = Counter()
    for message_id, ts, platform, status in items:
        column = COUNTER_OF.get(status)
        if column:
            totals[(message_id, ts, platform, column)] += 1
    bump_counts(tx, totals)


def bump_counts(tx: Tx, totals: Mapping[tuple[int, int, int, str], int]) -> None:
    """Add ``n`` to each counter ``(message_id, ts, platform, column) -> n``.

    ``bump_counters`` for callers that counted already (a set-based transition
    knows how many rows it won per platform).
    """
    if not totals:
        return
    # One shard for the whole transaction (its connection's), so its rows lock in key order.
    shard = "0" if tx.dialect == "sqlite" else f"pg_backend_pid() % {COUNTER_SHARDS}"
    for table, bucket, width in COUNTER_TABLES:
        by_column: dict[str, Counter[tuple[int, int, int]]] = {}
        for (message_id, ts, platform, column), n in totals.items():
            by_column.setdefault(column, Counter())[(message_id, ts - ts % width, platform)] += n
        for column, counts in by_column.items():
            tx.many(
                f"INSERT INTO {table} (message_id, {bucket}, platform, shard, {column})"
                f" VALUES (?, ?, ?, {shard}, ?)"
                f" ON CONFLICT (message_id, {bucket}, platform, shard) DO UPDATE"
                f" SET {column} = {table}.{column} + excluded.{column}",
                # in key order, so that concurrent transactions lock the rows in one order
                [(*key, n) for key, n in sorted(counts.items())],
            )
