"""The retention window: removing tracking data older than it, a little at a time.

Everything is removed in small batches, each its own short write transaction,
so ingestion (which shares SQLite's one writer) waits at most one batch. On
PostgreSQL the event log is range-partitioned by day: whole days before the
window are dropped as partitions, and only the day the window starts in is
trimmed row by row.

What goes, for a window starting at ``before``:

- events with ``ts < before``;
- messages created (and due) before it that have no event inside it any
  more, with their deliveries, payload templates and counters;
- counter buckets (hourly and per minute) that end at or before it;
- finished jobs last updated before it;
- events that devices posted (postEvent), received before it;
- entries of the dead-token ledger found before it;
- export files past their expiry or made before it (rows and files on disk:
  ``jobs/retention.py`` unlinks them).

Queries do not wait for the purge: they filter by the window themselves.

How it paces itself, and why. Alone, the row deletes of a day of 1,000,000
events and their 320,000 deliveries take about two seconds of SQLite writer
time; what fan-out loses while they run is mostly not that time but the
purge's *commits*. Every transaction another process commits makes the
service's writer connection drop its whole page cache at its next
transaction (SQLite re-reads a database another connection changed), and
fan-out's index inserts then read their pages again. Measured with
``bench/retention.py`` (fan-out over HTTP, 1,000,000 events): a process that
only commits a one-row update about 30 times a second cost fan-out 37% of
its rate, three times a second 0.6%; the purge of 2,000 events / 500
deliveries per batch, resting 12 times each batch's hold, committed about
that often and cost 37-44%. So the purge commits seldom and does more in
each commit: a batch grows (doubling, up to ``MAX_GROWTH`` times its first
size) while it holds the writer under ``HOLD_S / 2``, and shrinks when it
holds it over ``2 * HOLD_S``; each size is kept for the rest of the purge.
After a full batch the purge rests ``PAUSE_RATIO`` times as long as the
batch held the writer, and never less than ``MIN_REST_S``. The hold is
timed from the transaction's start to its commit; the time it waited for the
lock is not counted (under contention the wait is long while the hold is
short, and a rest that followed the wait would leave the purge crawling
without sparing anyone). The service's writer waits for the lock in short
steps (``sqlite.LOCK_POLL_S``), not with SQLite's busy handler, whose growing
sleeps (1, 2, 5, 10, 15 ms ...) let a 10 ms hold keep ingestion out for 18 ms.
On PostgreSQL the same pacing spreads the purge's I/O.

What the pacing did not remove (SQLite, full scale: a dip of 23-31% with the
whole purge, down from 37-44%) came from deleting the old deliveries of the
devices fan-out is writing to: their ``deliveries_device`` entries share leaf
pages with the new ones, and a purge by batches of messages came back to
every leaf once per batch. The day's events alone cost 3.5%, its deliveries
15-30%, the same deliveries on devices fan-out does not write to 8.7%, and
longer rests did not lower it (1 s rests: 28% over 174 s). So deliveries go
device range by device range (``delete_device_range``): each transaction
takes every old delivery of a stretch of devices, and each leaf is rewritten
once. Deliveries alone then cost 10.7% (19 s instead of 60), the whole purge
13-19% in 41-56 s in four runs (from 23-31% in ~100 s). An index keyed by (day,
device) gave 16% in a trial, but device reports find their delivery through
``deliveries_device`` (device, hash), which would then probe every day of the window.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from functools import partial

import msgspec

from pushtrack.domain.timeutil import HOUR_US, day_of
from pushtrack.store.base import Engine, StoreError, Tx
from pushtrack.store.deadtokens import delete_dead_tokens
from pushtrack.store.devices import delete_device_events
from pushtrack.store.events import COUNTER_TABLES
from pushtrack.store.exports import FileRecord, delete_files, expired_files

log = logging.getLogger("pushtrack.retention")

#: Rows per delete batch at first: a few milliseconds of writer time on SQLite.
BATCH = 2000
#: Deliveries per delete batch at first (more indexes each: dearer than events).
DELIVERY_BATCH = 500
#: A batch grows to at most this many times its first size...
MAX_GROWTH = 32
#: ... aiming to hold the writer about this long (seconds): long enough that the purge
#: commits a few times a second, short enough that ingestion hardly notices the wait.
HOLD_S = 0.025
#: The shortest rest after a full batch (seconds): at most ~4 commits a second.
MIN_REST_S = 0.25
#: Devices whose old deliveries go in one purge transaction at first, and at most.
FIRST_WIDTH = 64
MAX_WIDTH = 1 << 20
#: Most deliveries one transaction of the device walk deletes.
WALK_LIMIT = DELIVERY_BATCH * MAX_GROWTH
#: Longest wait for the lock that dropping an events partition takes (PostgreSQL).
DROP_LOCK_TIMEOUT = "2s"
#: Rest after each full batch, as a share of the time the batch held the writer (from
#: its transaction's start to the commit, waits for the lock aside). 12: the purge
#: holds SQLite's one lock a thirteenth of the time at most, and ingestion keeps the rest.
PAUSE_RATIO = 12.0
#: Messages whose rows are removed per batch.
MESSAGE_BATCH = 50


class PurgeReport(msgspec.Struct):
    before: int
    events: int = 0
    partitions: int = 0
    messages: int = 0
    deliveries: int = 0
    counters: int = 0
    jobs: int = 0
    files: int = 0
    device_events: int = 0
    dead_tokens: int = 0


def drop_partitions(tx: Tx, *, before: int) -> int:
    """Drop the event partitions of whole days before ``before`` (PostgreSQL only)."""
    if tx.dialect != "postgresql":
        return 0
    from pushtrack.store import pg_partitions  # type: ignore[attr-defined,unused-ignore]

    # Dropping a partition locks ``events`` for a moment: never queue behind a
    # long reader (and make every insert queue behind us) for more than this.
    tx.run(f"SET LOCAL lock_timeout = '{DROP_LOCK_TIMEOUT}'")

    dropped: int = pg_partitions.drop_partitions_before(tx, day_of(before))
    return dropped


def delete_events(tx: Tx, *, before: int, limit: int) -> int:
    return tx.run(
        "DELETE FROM events WHERE ts < ? AND id IN (SELECT id FROM events WHERE ts < ? LIMIT ?)",
        (before, before, limit),
    )


def old_messages(tx: Tx, *, before: int, limit: int) -> list[int]:
    """Messages with nothing left inside the window.

    Created and due before it, and no hourly counter bucket reaching into it:
    every event is counted, and a delivery's ``created`` (its row's
    ``created_at``, counted nowhere) is written when the message is (or by its
    expansion, which must be over), so all their trail is older than ``before``.
    (A delivery row kept longer, for its message's later events, shows no
    ``created`` from before the window: readers filter by the window.)
    """
    return tx.column(
        f"{_OLD_MESSAGES} ORDER BY m.created_at LIMIT ?", (*_old_params(before), limit)
    )


#: The messages of ``old_messages`` (parameters: ``_old_params``).
_OLD_MESSAGES = (
    "SELECT m.id FROM messages m WHERE m.created_at < ? AND m.send_at < ?"
    " AND m.expand_after IS NULL"
    " AND NOT EXISTS (SELECT 1 FROM counters c WHERE c.message_id = m.id AND c.hour > ?)"
)


def _old_params(before: int) -> tuple[int, int, int]:
    return (before, before, before - HOUR_US)


def device_span(tx: Tx) -> tuple[int, int] | None:
    """The lowest and highest device id deliveries name (None: no delivery names one)."""
    row = tx.one("SELECT MIN(device_id), MAX(device_id) FROM deliveries")
    return None if row is None or row[0] is None else (int(row[0]), int(row[1]))


def delete_device_range(tx: Tx, *, before: int, lo: int, hi: int, limit: int) -> int:
    """Up to ``limit`` deliveries of the devices ``lo`` .. ``hi - 1`` that belong to old
    messages.

    Walking device ranges, each purge transaction takes all the old entries of
    a stretch of the ``deliveries_device`` index at once: that index's leaf
    pages hold a device's new deliveries beside its old ones, so a purge by
    message came back to every leaf once per batch of messages, each time
    rewriting pages that fan-out was writing to.
    """
    return tx.run(
        "DELETE FROM deliveries WHERE id IN (SELECT id FROM deliveries"
        f" WHERE device_id >= ? AND device_id < ? AND message_id IN ({_OLD_MESSAGES}) LIMIT ?)",
        (lo, hi, *_old_params(before), limit),
    )


def delete_deliveries(tx: Tx, *, message_ids: Sequence[int], limit: int) -> int:
    marks = ",".join("?" * len(message_ids))
    return tx.run(
        "DELETE FROM deliveries WHERE id IN"
        f" (SELECT id FROM deliveries WHERE message_id IN ({marks}) LIMIT ?)",
        (*message_ids, limit),
    )


def delete_messages(tx: Tx, *, message_ids: Sequence[int]) -> int:
    """The messages themselves, once their deliveries are gone."""
    marks = ",".join("?" * len(message_ids))
    for table in ("payloads", *(t for t, _, _ in COUNTER_TABLES)):
        tx.run(f"DELETE FROM {table} WHERE message_id IN ({marks})", message_ids)
    return tx.run(f"DELETE FROM messages WHERE id IN ({marks})", message_ids)


def delete_counters(tx: Tx, *, before: int, limit: int) -> int:
    """Counter buckets that end at or before ``before``, from every counter table."""
    removed = 0
    for table, column, width in COUNTER_TABLES:
        removed += tx.run(
            f"DELETE FROM {table} WHERE (message_id, {column}, platform) IN"
            f" (SELECT message_id, {column}, platform FROM {table} WHERE {column} <= ? LIMIT ?)",
            (before - width, limit),
        )
    return removed


def delete_jobs(tx: Tx, *, before: int, limit: int) -> int:
    return tx.run(
        "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs"
        " WHERE state IN ('done', 'failed', 'cancelled') AND updated_at < ? LIMIT ?)",
        (before, limit),
    )


def ensure_periodic(tx: Tx, *, kind: str, run_at: int) -> None:
    """Make sure the one job of a periodic kind exists, pending or running.

    Its request id is fixed (``periodic:<kind>``), so concurrent workers cannot
    make two; one that ended (failed, cancelled) is brought back.
    """
    now = tx.now()
    tx.run(
        "INSERT INTO jobs (request_id, kind, account_id, params, state, run_at, created_at,"
        " updated_at) VALUES (?, ?, NULL, '{}', 'pending', ?, ?, ?)"
        " ON CONFLICT (request_id) DO UPDATE SET state = 'pending', run_at = excluded.run_at,"
        " attempts = 0, lease_owner = NULL, lease_until = NULL, updated_at = excluded.updated_at"
        " WHERE jobs.state IN ('done', 'failed', 'cancelled')",
        (f"periodic:{kind}", kind, run_at, now, now),
    )


class _Held:
    """When a unit of work began inside its transaction (the lock held from then on)."""

    __slots__ = ("start",)

    def __init__(self) -> None:
        self.start = time.monotonic()

    def seconds(self) -> float:
        """From the transaction's start (the unit's last run) until now (its commit)."""
        return max(0.0, time.monotonic() - self.start)


def _timed(tx: Tx, *, fn: Callable[[Tx], int], held: _Held) -> int:
    held.start = time.monotonic()
    return fn(tx)


def resized(size: int, held_s: float, *, low: int, high: int) -> int:
    """The next batch's size (rows, or devices) after one of ``size`` held the writer
    ``held_s`` seconds: doubled while under half of ``HOLD_S``, halved when over
    twice it, kept within ``low`` .. ``high``."""
    if held_s < HOLD_S / 2:
        return min(size * 2, high)
    if held_s > HOLD_S * 2:
        return max(size // 2, low)
    return size


async def _rest(held_s: float) -> None:
    """The rest after a batch that held the writer ``held_s`` seconds."""
    await asyncio.sleep(max(MIN_REST_S, held_s * PAUSE_RATIO))


class RetentionStore:
    """The retention part of the ``Store``: ``store.retention``."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def _write_held(self, fn: Callable[[Tx], int]) -> tuple[int, float]:
        """Run a delete: (its rows, how long it held the writer in seconds)."""
        held = _Held()
        n = await self.engine.write(partial(_timed, fn=fn, held=held))
        return n, held.seconds()

    async def _drain(
        self, fn: Callable[..., int], first: int, limits: dict[Callable[..., int], int]
    ) -> int:
        """Run a batch delete (``fn(tx, limit=n)``) until it comes back short.

        Batches start at ``first`` rows, or at the size this purge reached for
        ``fn`` before (``limits``), and are resized after each full one
        (``resized``); after each full batch the purge rests ``PAUSE_RATIO``
        times as long as it held the writer, and at least ``MIN_REST_S``.
        """
        key = fn.func if isinstance(fn, partial) else fn
        limit = limits.get(key, first)
        total = 0
        while True:
            n, seconds = await self._write_held(partial(fn, limit=limit))
            total += n
            if n < limit:
                limits[key] = limit
                return total
            await _rest(seconds)
            limit = resized(limit, seconds, low=max(1, first // 10), high=first * MAX_GROWTH)

    async def _walk_devices(self, before: int) -> int:
        """Delete old messages' deliveries device range by device range
        (``delete_device_range``), resting after each range that had any as after a
        full batch. A range's width follows the time it held the writer
        (``resized``); a range holding more than ``WALK_LIMIT`` old deliveries (one
        that grew wide over devices with none) is taken in parts, and narrowed."""
        span = await self.engine.read(device_span)
        if span is None:
            return 0
        lo, top = span
        width = FIRST_WIDTH
        total = 0
        while lo <= top:
            fn = partial(delete_device_range, before=before, lo=lo, hi=lo + width, limit=WALK_LIMIT)
            n, seconds = await self._write_held(fn)
            total += n
            if n:
                await _rest(seconds)
            if n < WALK_LIMIT:
                lo += width
                width = resized(width, seconds, low=1, high=MAX_WIDTH)
            else:
                width = max(1, width // 2)
        return total

    async def purge_rows(self, before: int, batch: int = BATCH) -> PurgeReport:
        """Remove the tracking rows older than ``before`` (files: see ``stale_files``)."""
        report = PurgeReport(before=before)
        limits: dict[Callable[..., int], int] = {}
        try:
            report.partitions = await self.engine.write(partial(drop_partitions, before=before))
        except StoreError as exc:
            # Whole days are not deleted row by row: they wait for the next round.
            log.warning("retention: event partitions not dropped this round: %s", exc)
        else:
            report.events = await self._drain(partial(delete_events, before=before), batch, limits)
        report.deliveries = await self._walk_devices(before)
        # what the walk left: deliveries of no device (unknown hwids), of messages that
        # became old meanwhile; then the messages themselves
        delivery_batch = max(1, batch * DELIVERY_BATCH // BATCH)
        while ids := await self.engine.read(
            partial(old_messages, before=before, limit=MESSAGE_BATCH)
        ):
            report.deliveries += await self._drain(
                partial(delete_deliveries, message_ids=ids), delivery_batch, limits
            )
            report.messages += await self.engine.write(partial(delete_messages, message_ids=ids))
        report.counters = await self._drain(partial(delete_counters, before=before), batch, limits)
        report.jobs = await self._drain(partial(delete_jobs, before=before), batch, limits)
        report.device_events = await self._drain(
            partial(delete_device_events, before=before), batch, limits
        )
        report.dead_tokens = await self._drain(
            partial(delete_dead_tokens, before=before), batch, limits
        )
        return report

    async def stale_files(self, now: int, before: int, limit: int = 500) -> list[FileRecord]:
        """Export files past their expiry, or made before the window (all their rows are out)."""
        return await self.engine.read(partial(expired_files, now=now, before=before, limit=limit))

    async def forget_files(self, ids: list[str]) -> int:
        return await self.engine.write(partial(delete_files, ids=ids))

    async def ensure_periodic(self, kind: str, run_at: int) -> None:
        await self.engine.write(partial(ensure_periodic, kind=kind, run_at=run_at))
