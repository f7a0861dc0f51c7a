"""Device reports (pushStat opens, messageDeliveryEvent deliveries): which delivery a
report names, and a batch of them recorded with set-based statements, each once."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, NamedTuple

from pushtrack.domain.status import (
    COUNTER_OF,
    DESC_DEVICE_CONFIRMED,
    DESC_OPENED,
    Status,
)
from pushtrack.store.base import (
    App,
    Tx,
)
from pushtrack.store.events import (
    COUNTER_SHARDS,
    COUNTER_TABLES,
    NewEvent,
    append_events,
)


class Report(NamedTuple):
    """One device's report on one delivery: pushStat (opened) or messageDeliveryEvent
    (delivered), naming the delivery by the device's hwid and the payload's hash."""

    app_id: int
    #: The application records opens (``App.open_logging``).
    open_logging: bool
    hwid: str
    payload_hash: str
    status: Status


class Reported(NamedTuple):
    """A delivery some report names."""

    id: int
    message_id: int
    platform: int
    app_id: int
    hwid: str
    payload_hash: str


def find_reported(tx: Tx, keys: Sequence[tuple[int, str, str]]) -> list[Reported]:
    """The deliveries that ``(application id, hwid, payload hash)`` name, in one statement.

    The one place that knows how a device's report names its delivery: through the
    device (by application and hwid), then its delivery by device id and hash, both
    in ``deliveries_device`` (so a report reads one index entry, however many
    deliveries the device has). A delivery to an entry that matched no device has no
    hash and is never named.
    """
    if not keys:
        return []
    columns = "d.id, d.message_id, d.platform, dv.app_id, dv.hwid, d.hash AS payload_hash"
    if tx.dialect == "postgresql":
        # Lists, not a list of triples: PostgreSQL then reads the indexes for any
        # number of them (a join with a list of tuples may scan). Triples the lists
        # cross-match are left out by the caller, which looks up each report's own.
        apps = sorted({app_id for app_id, _, _ in keys})
        hwids = sorted({hwid for _, hwid, _ in keys})
        hashes = sorted({payload_hash for _, _, payload_hash in keys})
        return tx.all_as(
            Reported,
            f"SELECT {columns} FROM devices dv JOIN deliveries d ON d.device_id = dv.id"
            f" WHERE dv.app_id IN ({_marks(apps)}) AND dv.hwid IN ({_marks(hwids)})"
            f" AND d.hash IN ({_marks(hashes)})",
            (*apps, *hwids, *hashes),
        )
    values = ", ".join(["(?, ?, ?)"] * len(keys))
    return tx.all_unordered_as(
        Reported,
        f"WITH r (app_id, hwid, hash) AS (VALUES {values}) SELECT {columns} FROM r"
        " JOIN devices dv ON dv.app_id = r.app_id AND dv.hwid = r.hwid"
        " JOIN deliveries d ON d.device_id = dv.id AND d.hash = r.hash",
        [v for k in keys for v in k],
    )


def _marks(values: Sequence[Any]) -> str:
    """``?, ?, ...``: one placeholder per value (the PostgreSQL engine binds one array)."""
    return ", ".join("?" * len(values))


def record_device_reports(tx: Tx, items: Sequence[Report]) -> list[bool]:
    """Record a batch of device reports, each once; per report, whether a delivery matched.

    A few set-based statements for the whole batch: one finds the deliveries,
    a guarded UPDATE per kind of report wins the transitions (so a repeated
    report, or one on a delivery already settled, writes nothing), and the
    winners' events and counters are appended together.
    """
    if tx.dialect == "postgresql":
        return _pg_record_device_reports(tx, items)
    keys = list(dict.fromkeys((r.app_id, r.hwid, r.payload_hash) for r in items))
    named: dict[tuple[int, str, str], list[Reported]] = {}
    for row in find_reported(tx, keys):
        named.setdefault((row.app_id, row.hwid, row.payload_hash), []).append(row)
    found: list[bool] = []
    delivered: dict[int, Reported] = {}
    opened: dict[int, Reported] = {}
    for r in items:
        mine = named.get((r.app_id, r.hwid, r.payload_hash), [])
        found.append(bool(mine))
        if r.status is Status.DELIVERED:
            delivered.update((d.id, d) for d in mine)
        elif r.open_logging:
            opened.update((d.id, d) for d in mine)
    events: list[NewEvent] = []
    if delivered:
        ids = sorted(delivered)
        # The device's word settles a delivery still in flight (``delivered``, as
        # before); one already delivered (the gateway accepted it) or failed keeps its
        # one terminal status.
        won = tx.column(
            f"UPDATE deliveries SET state = ? WHERE state IN (?, ?)"
            f" AND id IN ({_marks(ids)}) RETURNING id",
            (int(Status.DELIVERED), int(Status.CREATED), int(Status.SENT), *ids),
        )
        for did in sorted(won):
            d = delivered[did]
            events.append((did, Status.DELIVERED, DESC_DEVICE_CONFIRMED, d.message_id, d.platform))
        # Either way the confirmation is a fact of its own, once per delivery, on a
        # delivery that went to a gateway (or was just settled): one that ended without
        # being sent (cancelled, no gateway, unsubscribed) cannot have reached the device.
        won = tx.column(
            f"UPDATE deliveries SET confirmed = 1 WHERE confirmed = 0"
            f" AND (state IN (?, ?) OR (state = ? AND attempts > 0))"
            f" AND id IN ({_marks(ids)}) RETURNING id",
            (int(Status.SENT), int(Status.DELIVERED), int(Status.FAILED), *ids),
        )
        for did in sorted(won):
            d = delivered[did]
            events.append((did, Status.CONFIRMED, DESC_DEVICE_CONFIRMED, d.message_id, d.platform))
    if opened:
        ids = sorted(opened)
        won = tx.column(
            f"UPDATE deliveries SET opened = 1 WHERE opened = 0"
            f" AND id IN ({_marks(ids)}) RETURNING id",
            ids,
        )
        for did in sorted(won):
            d = opened[did]
            events.append((did, Status.OPENED, DESC_OPENED, d.message_id, d.platform))
    append_events(tx, events)
    return found


#: What a report asks of its deliveries on PostgreSQL (``_pg_record_device_reports``):
#: nothing (an open the application does not log), their ``delivered``, their ``opened``.
_FIND_ONLY, _DELIVERED, _OPENED = 0, int(Status.DELIVERED), int(Status.OPENED)


def _pg_record_device_reports(tx: Tx, items: Sequence[Report]) -> list[bool]:
    """``record_device_reports`` on PostgreSQL: one statement per kind of transition,
    each finding the deliveries the reports name, winning its guarded UPDATE, and
    appending the winners' events and counters (data-modifying WITHs).

    Every statement is whole by itself (``Engine.write_batch``'s ``statements_whole``):
    the batch goes out as one pipeline, and only the last statement's rows (which
    reports named a delivery) are read. ``confirmed`` runs after ``delivered``, so it
    sees the deliveries that were just settled.
    """
    kinds = [
        _DELIVERED if r.status is Status.DELIVERED else _OPENED if r.open_logging else _FIND_ONLY
        for r in items
    ]
    reports = ([r.app_id for r in items], [r.hwid for r in items], [r.payload_hash for r in items])
    ts = tx.now()
    if _DELIVERED in kinds:
        for status in (Status.DELIVERED, Status.CONFIRMED):
            # rows nobody reads: sent with the statement after it
            tx.many(
                _pg_report_sql(status),
                [(*reports, kinds, ts, DESC_DEVICE_CONFIRMED, *(ts, ts) * len(COUNTER_TABLES))],
            )
    named = tx.column(
        _pg_report_sql(Status.OPENED),
        (*reports, kinds, ts, DESC_OPENED, *(ts, ts) * len(COUNTER_TABLES)),
    )
    found = [False] * len(items)
    for i in named:  # 1-based
        found[i - 1] = True
    return found


#: The guarded transition each kind of report asks for, on ``d`` (deliveries) the
#: reports of that kind name.
_PG_REPORT_TRANSITIONS: dict[Status, tuple[str, int]] = {
    # the device's word settles a delivery still in flight; one the gateway already
    # settled keeps its one terminal status
    Status.DELIVERED: (
        f"state = {int(Status.DELIVERED)}"
        f" WHERE d.state IN ({int(Status.CREATED)}, {int(Status.SENT)})",
        _DELIVERED,
    ),
    # once per delivery, on one that went to a gateway (or was just settled)
    Status.CONFIRMED: (
        f"confirmed = 1 WHERE d.confirmed = 0 AND (d.state IN ({int(Status.SENT)},"
        f" {int(Status.DELIVERED)}) OR (d.state = {int(Status.FAILED)} AND d.attempts > 0))",
        _DELIVERED,
    ),
    Status.OPENED: ("opened = 1 WHERE d.opened = 0", _OPENED),
}


@functools.lru_cache(maxsize=8)
def _pg_report_sql(status: Status) -> str:
    """One statement for the reports' ``status`` transitions (``_pg_record_device_reports``).

    Parameters: the reports as four arrays (application ids, hwids, payload hashes,
    the transition each asks for: ``_DELIVERED``, ``_OPENED`` or ``_FIND_ONLY``), the
    events' ts and description, then (ts, ts) per counter table. Answers the reports
    (1-based) that named a delivery. The reports are found by the unique (app_id,
    hwid) index, then the delivery by device id and hash, as ``find_reported`` does.
    """
    guard, kind = _PG_REPORT_TRANSITIONS[status]
    column = COUNTER_OF[status]
    set_clause, where = guard.split(" WHERE ")
    parts = [
        "WITH r AS (SELECT * FROM unnest(?::bigint[], ?::text[], ?::text[], ?::int[])"
        " WITH ORDINALITY AS r (app_id, hwid, hash, kind, i)),"
        " f AS (SELECT r.i, r.kind, d.id FROM r"
        " JOIN devices dv ON dv.app_id = r.app_id AND dv.hwid = r.hwid"
        " JOIN deliveries d ON d.device_id = dv.id AND d.hash = r.hash),"
        # ``= ANY(ARRAY(...))``: the rows are read (and locked) in the index's or the
        # table's order, whatever the reports' order, as the other batches lock them
        f" won AS (UPDATE deliveries d SET {set_clause}"
        f" WHERE d.id = ANY(ARRAY(SELECT id FROM f WHERE kind = {kind})) AND {where}"
        " RETURNING d.id, d.message_id, d.platform),"
        " ev AS (INSERT INTO events (ts, delivery_id, status, description)"
        f" SELECT ?::bigint, id, {int(status)}, ?::text FROM won ORDER BY id),"
        " n AS (SELECT message_id, platform, COUNT(*) AS n FROM won"
        " GROUP BY message_id, platform)"
    ]
    for i, (table, bucket, width) in enumerate(COUNTER_TABLES):
        parts.append(
            f", c{i} AS (INSERT INTO {table} (message_id, {bucket}, platform, shard, {column})"
            f" SELECT message_id, ?::bigint - ?::bigint % {width}, platform,"
            f" pg_backend_pid() % {COUNTER_SHARDS}, n FROM n ORDER BY message_id, platform"
            f" ON CONFLICT (message_id, {bucket}, platform, shard) DO UPDATE"
            f" SET {column} = {table}.{column} + excluded.{column})"
        )
    parts.append(" SELECT DISTINCT i FROM f ORDER BY i")
    return "".join(parts)


def record_device_report(
    tx: Tx, app: App, hwid: str, payload_hash: str, status: Status, description: str = ""
) -> bool:
    """One report alone (``record_device_reports``); False if no delivery matches."""
    del description  # the status's own
    report = Report(app.id, app.open_logging, hwid, payload_hash, status)
    return record_device_reports(tx, [report])[0]
