"""Engine-neutral transaction logic.

Each function here runs inside one open write (or read) transaction of an
engine, through the small ``Tx`` protocol. SQL is written once, in the
dialect SQLite and PostgreSQL share (``?`` placeholders, which the PostgreSQL
engine translates; ``ON CONFLICT``; row values; ``RETURNING``).
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import msgspec

from pushtrack.domain import codes
from pushtrack.domain.status import (
    COUNTER_OF,
    DESC_DEVICE_CONFIRMED,
    DESC_OPENED,
    Status,
)
from pushtrack.domain.timeutil import HOUR_US, US
from pushtrack.store import pg_schema, schema
from pushtrack.store.base import (
    App,
    ConflictError,
    DeviceIn,
    TokenInfo,
    Tx,
)
from pushtrack.store.targeting import set_device_tags

_json = msgspec.json.Encoder()


def dumps(value: Any) -> str:
    return _json.encode(value).decode()


def loads(text: str | bytes | None) -> Any:
    return None if text is None else msgspec.json.decode(text)


# -- accounts, applications, tokens --------------------------------------------------

APP_COLUMNS = (
    "a.id, a.code, a.name, acc.name, a.tracking, a.open_logging, "
    "a.device_token_required, a.created_at"
)
APP_FROM = "applications a JOIN accounts acc ON acc.id = a.account_id"


def app_from_row(row: tuple[Any, ...]) -> App:
    return App(
        id=row[0],
        code=row[1],
        name=row[2],
        account=row[3],
        tracking=bool(row[4]),
        open_logging=bool(row[5]),
        device_token_required=bool(row[6]),
        created_at=row[7],
    )


def account_id(tx: Tx, name: str) -> int:
    row = tx.one("SELECT id FROM accounts WHERE name = ?", (name,))
    if row:
        return int(row[0])
    row = tx.one(
        "INSERT INTO accounts (name, created_at) VALUES (?, ?) RETURNING id", (name, tx.now())
    )
    assert row is not None
    return int(row[0])


def create_app(
    tx: Tx, *, account: str, name: str, tracking: bool, open_logging: bool, token_required: bool
) -> App:
    acc = account_id(tx, account)
    code = codes.app_code()
    while tx.one("SELECT 1 FROM applications WHERE code = ?", (code,)):
        code = codes.app_code()
    tx.run(
        "INSERT INTO applications (code, account_id, name, tracking, open_logging,"
        " device_token_required, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (code, acc, name, int(tracking), int(open_logging), int(token_required), tx.now()),
    )
    app = get_app(tx, code)
    assert app is not None
    return app


def get_app(tx: Tx, code: str) -> App | None:
    row = tx.one(f"SELECT {APP_COLUMNS} FROM {APP_FROM} WHERE a.code = ?", (code,))
    return app_from_row(row) if row else None


def has_accounts(tx: Tx) -> bool:
    return tx.one("SELECT 1 FROM accounts LIMIT 1") is not None


def list_apps(tx: Tx, account: str) -> list[App]:
    rows = tx.all(
        f"SELECT {APP_COLUMNS} FROM {APP_FROM} WHERE acc.name = ? ORDER BY a.id", (account,)
    )
    return [app_from_row(r) for r in rows]


def all_apps(tx: Tx) -> list[App]:
    """Every application of every account (operator tools)."""
    return [app_from_row(r) for r in tx.all(f"SELECT {APP_COLUMNS} FROM {APP_FROM} ORDER BY a.id")]


TOKEN_COLUMNS = "t.id, acc.name, t.kind, t.prefix, t.apps, t.methods, t.created_at, t.revoked_at"


def _token_from_row(row: tuple[Any, ...]) -> TokenInfo:
    apps, methods = loads(row[4]), loads(row[5])
    return TokenInfo(
        id=row[0],
        account=row[1],
        kind=row[2],
        prefix=row[3],
        apps=frozenset(apps) if apps is not None else None,
        methods=frozenset(methods) if methods is not None else None,
        created_at=row[6],
        revoked=row[7] is not None,
    )


def create_token(
    tx: Tx,
    account: str,
    kind: str,
    token_hash: str,
    prefix: str,
    apps: Sequence[str] | None,
    methods: Sequence[str] | None,
) -> TokenInfo:
    acc = account_id(tx, account)
    if apps:
        known = {r[0] for r in tx.all("SELECT code FROM applications WHERE account_id = ?", (acc,))}
        missing = sorted(set(apps) - known)
        if missing:
            raise ConflictError(f"no application {', '.join(missing)} in account {account!r}")
    row = tx.one(
        "INSERT INTO api_tokens (account_id, kind, prefix, hash, apps, methods, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (
            acc,
            kind,
            prefix,
            token_hash,
            dumps(sorted(apps)) if apps else None,
            dumps(sorted(methods)) if methods else None,
            tx.now(),
        ),
    )
    assert row is not None
    found = tx.one(
        f"SELECT {TOKEN_COLUMNS} FROM api_tokens t JOIN accounts acc ON acc.id = t.account_id"
        " WHERE t.id = ?",
        (row[0],),
    )
    assert found is not None
    return _token_from_row(found)


def find_token(tx: Tx, token_hash: str) -> TokenInfo | None:
    row = tx.one(
        f"SELECT {TOKEN_COLUMNS} FROM api_tokens t JOIN accounts acc ON acc.id = t.account_id"
        " WHERE t.hash = ?",
        (token_hash,),
    )
    return _token_from_row(row) if row else None


def list_tokens(tx: Tx, account: str) -> list[TokenInfo]:
    rows = tx.all(
        f"SELECT {TOKEN_COLUMNS} FROM api_tokens t JOIN accounts acc ON acc.id = t.account_id"
        " WHERE acc.name = ? ORDER BY t.id",
        (account,),
    )
    return [_token_from_row(r) for r in rows]


def revoke_tokens(tx: Tx, account: str, prefix: str) -> int:
    return tx.run(
        "UPDATE api_tokens SET revoked_at = ? WHERE revoked_at IS NULL AND prefix = ?"
        " AND account_id = (SELECT id FROM accounts WHERE name = ?)",
        (tx.now(), prefix, account),
    )


# -- devices -----------------------------------------------------------------------------


def register_device(tx: Tx, app: App, d: DeviceIn) -> None:
    now = tx.now()
    row = tx.one(
        "INSERT INTO devices (app_id, hwid, push_token, device_type, language, timezone, tags,"
        " user_id, app_version, device_model, os_version, subscribed, created_at, updated_at,"
        " tz_name, web_p256dh, web_auth, token_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (app_id, hwid) DO UPDATE SET"
        " push_token = COALESCE(excluded.push_token, devices.push_token),"
        " device_type = excluded.device_type,"
        " language = COALESCE(excluded.language, devices.language),"
        " timezone = COALESCE(excluded.timezone, devices.timezone),"
        " tags = COALESCE(excluded.tags, devices.tags),"
        " user_id = COALESCE(excluded.user_id, devices.user_id),"
        " app_version = COALESCE(excluded.app_version, devices.app_version),"
        " device_model = COALESCE(excluded.device_model, devices.device_model),"
        " os_version = COALESCE(excluded.os_version, devices.os_version),"
        " subscribed = CASE WHEN COALESCE(excluded.push_token, devices.push_token) IS NULL"
        " THEN 0 ELSE 1 END, updated_at = excluded.updated_at,"
        # a zone name goes with the offset it came with; an offset alone clears it
        " tz_name = CASE WHEN excluded.timezone IS NULL THEN devices.tz_name"
        " ELSE excluded.tz_name END,"
        # a new push token brings its own keys (or none); the keys stay with their token
        " web_p256dh = CASE WHEN excluded.push_token IS NULL THEN devices.web_p256dh"
        " ELSE excluded.web_p256dh END,"
        " web_auth = CASE WHEN excluded.push_token IS NULL THEN devices.web_auth"
        " ELSE excluded.web_auth END,"
        # registering a token (the same one again too) is what a gateway's "dead since"
        # is compared with
        " token_at = COALESCE(excluded.token_at, devices.token_at) RETURNING id",
        (
            app.id,
            d.hwid,
            d.push_token,
            d.device_type,
            d.language,
            d.timezone,
            None,  # tags live in tag_values (store/targeting.py)
            d.user_id,
            d.app_version,
            d.device_model,
            d.os_version,
            1 if d.push_token else 0,
            now,
            now,
            d.tz_name,
            d.web_p256dh,
            d.web_auth,
            now if d.push_token else None,
        ),
    )
    if d.tags:
        assert row is not None
        # The upsert locked the device row: tag writes to one device run in turn.
        set_device_tags(tx, app, int(row[0]), d.tags)


def unregister_device(tx: Tx, app: App, hwid: str) -> bool:
    return (
        tx.run(
            "UPDATE devices SET push_token = NULL, web_p256dh = NULL, web_auth = NULL,"
            " subscribed = 0, updated_at = ?"
            " WHERE app_id = ? AND hwid = ?",
            (tx.now(), app.id, hwid),
        )
        > 0
    )


# -- events and counters -----------------------------------------------------------------


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
    device (by application and hwid), then its deliveries by device id and hash. A
    delivery to an entry that matched no device has no hash and is never named.
    """
    if not keys:
        return []
    columns = "d.id, d.message_id, d.platform, dv.app_id, dv.hwid, d.hash"
    if tx.dialect == "postgresql":
        # Lists, not a list of triples: PostgreSQL then reads the indexes for any
        # number of them (a join with a list of tuples may scan). Triples the lists
        # cross-match are left out by the caller, which looks up each report's own.
        apps = sorted({k[0] for k in keys})
        hwids = sorted({k[1] for k in keys})
        hashes = sorted({k[2] for k in keys})
        rows = tx.all(
            f"SELECT {columns} FROM devices dv JOIN deliveries d ON d.device_id = dv.id"
            f" WHERE dv.app_id IN ({_marks(apps)}) AND dv.hwid IN ({_marks(hwids)})"
            f" AND d.hash IN ({_marks(hashes)})",
            (*apps, *hwids, *hashes),
        )
    else:
        values = ", ".join(["(?, ?, ?)"] * len(keys))
        rows = tx.all(
            f"WITH r (app_id, hwid, hash) AS (VALUES {values}) SELECT {columns} FROM r"
            " JOIN devices dv ON dv.app_id = r.app_id AND dv.hwid = r.hwid"
            " JOIN deliveries d ON d.device_id = dv.id AND d.hash = r.hash",
            [v for k in keys for v in k],
        )
    return [Reported(*row) for row in rows]


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
        won = tx.all(
            f"UPDATE deliveries SET state = ? WHERE state IN (?, ?)"
            f" AND id IN ({_marks(ids)}) RETURNING id",
            (int(Status.DELIVERED), int(Status.CREATED), int(Status.SENT), *ids),
        )
        for (did,) in sorted(won):
            d = delivered[did]
            events.append((did, Status.DELIVERED, DESC_DEVICE_CONFIRMED, d.message_id, d.platform))
        # Either way the confirmation is a fact of its own, once per delivery, on a
        # delivery that went to a gateway (or was just settled): one that ended without
        # being sent (cancelled, no gateway, unsubscribed) cannot have reached the device.
        won = tx.all(
            f"UPDATE deliveries SET confirmed = 1 WHERE confirmed = 0"
            f" AND (state IN (?, ?) OR (state = ? AND attempts > 0))"
            f" AND id IN ({_marks(ids)}) RETURNING id",
            (int(Status.SENT), int(Status.DELIVERED), int(Status.FAILED), *ids),
        )
        for (did,) in sorted(won):
            d = delivered[did]
            events.append((did, Status.CONFIRMED, DESC_DEVICE_CONFIRMED, d.message_id, d.platform))
    if opened:
        ids = sorted(opened)
        won = tx.all(
            f"UPDATE deliveries SET opened = 1 WHERE opened = 0"
            f" AND id IN ({_marks(ids)}) RETURNING id",
            ids,
        )
        for (did,) in sorted(won):
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
    rows = tx.all(
        _pg_report_sql(Status.OPENED),
        (*reports, kinds, ts, DESC_OPENED, *(ts, ts) * len(COUNTER_TABLES)),
    )
    found = [False] * len(items)
    for (i,) in rows:
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
    hwid) index, then the device's deliveries by device id, as ``find_reported`` does.
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


def schema_versions(tx: Tx) -> tuple[int, int]:
    """(migrations applied to this database, migrations this code knows): a cheap query."""
    if tx.dialect == "sqlite":
        row = tx.one("PRAGMA user_version")
        known = len(schema.MIGRATIONS)
    else:
        row = tx.one("SELECT COALESCE(MAX(version), 0) FROM schema_version")
        known = len(pg_schema.MIGRATIONS)
    return (int(row[0]) if row else 0), known
