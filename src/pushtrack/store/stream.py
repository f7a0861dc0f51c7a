"""Reading the trail as a stream: positions that never pass an event committed late.

The trail is the ``events`` table (insert-only) and the deliveries' ``created`` (each
carried by its delivery row, whose other columns change later; ``created_at`` and
``tx`` never do). A reader that remembers "the last row I read" and asks for what
comes after it must be sure that nothing will later commit *before* that position.

- **SQLite** has one writer, and a transaction takes its clock (``tx.now()``) inside
  it, so a row's time orders it by commit: a position is ``(ts, key)``.
- **PostgreSQL** runs writers side by side; a transaction that started first may
  commit last, whatever its ids or clock say. Every trail row records the transaction
  that wrote it (``tx``, migration 11), a position is ``(tx, key)``, and a reader
  takes only rows below the **horizon**: the oldest transaction of this database still
  open (``horizon``). Every transaction below it has ended, and every transaction
  that ends later is at or above it, so a row can never appear behind a position
  once read. A long writing transaction holds the horizon back (rows wait; none is
  lost).

``key`` orders rows of one position: a delivery's ``created`` has its delivery id,
an event its id plus ``EVENT_KEY`` (a delivery is written before its events).

``time_horizon`` is the same rule for readers that page by time (getMessageLog):
the earliest time a transaction still open on PostgreSQL may write.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any, NamedTuple

import msgspec

from pushtrack.domain import codes
from pushtrack.domain.failures import class_of
from pushtrack.domain.status import DESC_CREATED, Status
from pushtrack.store.base import Engine, LogRow, Tx
from pushtrack.store.messages import EVENT_KEY
from pushtrack.store.tracking import code_of, tracking_key


class Position(NamedTuple):
    """A place in the trail: ``(ts, key)`` on SQLite, ``(tx, key)`` on PostgreSQL."""

    at: int
    key: int


START = Position(0, 0)


def horizon(tx: Tx) -> int | None:
    """The transaction id below which every writer of this database has ended
    (PostgreSQL), else None: rows with ``tx`` below it are all the trail will ever hold
    there.

    Not the snapshot's ``xmin``: transaction ids are shared by the whole server, so that
    would wait for transactions of other databases too. The next id to be given out is
    read first, then the transactions of this database holding an id (each is in
    ``pg_stat_activity`` from the moment it has one): every id below the oldest of
    those, and below the first reading, belongs to a transaction that has ended.
    """
    if tx.dialect != "postgresql":
        return None
    xmax = tx.scalar("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint")
    assert xmax is not None
    top = next_id = int(xmax)
    for xid in tx.column(
        "SELECT backend_xid::text::bigint FROM pg_stat_activity"
        " WHERE datname = current_database() AND backend_xid IS NOT NULL"
    ):
        # a 32-bit id, in the epoch that puts it below the next one
        full = (next_id & ~0xFFFFFFFF) | int(xid)
        if full >= next_id:
            full -= 1 << 32
        top = min(top, full)
    return top


def time_horizon(tx: Tx) -> int | None:
    """The trail time (µs) below which nothing more will commit: on PostgreSQL the
    start of the oldest transaction still open, or now if none is (a transaction takes
    its time inside it, after it began, so one that begins later writes later);
    None on SQLite (one writer, which takes its time inside the transaction). The
    service's and the database's clocks are taken to agree (NTP)."""
    if tx.dialect != "postgresql":
        return None
    start = tx.scalar(
        "SELECT (EXTRACT(EPOCH FROM LEAST(clock_timestamp(), MIN(xact_start))) * 1000000)::bigint"
        " FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        " AND xact_start IS NOT NULL AND state <> 'idle' AND backend_type = 'client backend'"
    )
    assert start is not None
    return int(start)


def head(tx: Tx) -> Position:
    """The position after everything the trail holds now (where a new reader starts)."""
    if tx.dialect == "postgresql":
        h = horizon(tx)
        assert h is not None
        return Position(h - 1, 2**63 - 1)
    e = tx.one_as(_Last, "SELECT ts, id FROM events ORDER BY ts DESC, id DESC LIMIT 1")
    d = tx.one_as(
        _Last,
        "SELECT created_at AS ts, id FROM deliveries ORDER BY created_at DESC, id DESC LIMIT 1",
    )
    candidates = [Position(START.at, START.key)]
    if e is not None:
        candidates.append(Position(int(e.ts), int(e.id) + EVENT_KEY))
    if d is not None:
        candidates.append(Position(int(d.ts), int(d.id)))
    return max(candidates)


class _Last(NamedTuple):
    """The last row of the trail's events, or of its deliveries' ``created``."""

    ts: int
    id: int


def position_at(tx: Tx, since: int) -> Position:
    """A position from which a reader gets every row written at or after ``since`` (µs)
    (on PostgreSQL, possibly a few written a little before)."""
    if tx.dialect != "postgresql":
        return Position(since - 1, 2**63 - 1)
    found = [
        first
        for first in (
            tx.scalar("SELECT MIN(tx) FROM events WHERE ts >= ?", (since,)),
            tx.scalar("SELECT MIN(tx) FROM deliveries WHERE created_at >= ?", (since,)),
        )
        if first is not None
    ]
    if not found:
        return head(tx)
    return Position(min(int(first) for first in found) - 1, 2**63 - 1)


class Filter(msgspec.Struct, frozen=True):
    """Which trail rows a reader wants (all given narrow)."""

    account: str | None = None
    #: application codes (a token's restriction, or the one application named)
    apps: frozenset[str] | None = None
    app_ids: frozenset[int] | None = None
    hwids: tuple[str, ...] | None = None
    message_code: str | None = None
    statuses: tuple[Status, ...] | None = None


class StreamRow(NamedTuple):
    position: Position
    row: LogRow


class Page(NamedTuple):
    """What a read found, and how far it looked: a reader goes on from ``reached``
    (past the rows its filter left out too), and nothing will ever appear before it."""

    items: list[StreamRow]
    reached: Position
    #: whether more may be read at once (a scan or the limit stopped it), else the
    #: reader has everything there is for now
    more: bool = False


#: Trail positions a read looks at, at least: it walks them in index order and then
#: keeps what the filter wants, so a reader of one application among busy others
#: moves on in steps without scanning the trail whole.
MIN_SCAN = 500
_MAX = 2**63 - 1


def read(tx: Tx, after: Position, f: Filter, limit: int) -> Page:
    """Up to ``limit`` trail rows after ``after`` that ``f`` wants, in position order,
    none beyond the horizon."""
    pg = tx.dialect == "postgresql"
    top = horizon(tx)
    scan = max(limit, MIN_SCAN)
    wanted = None if f.statuses is None else {int(s) for s in f.statuses}
    scans: list[tuple[str, list[Any]]] = []

    def ranges(at: str, key: str, after_key: int, tx_col: str) -> list[tuple[str, list[Any]]]:
        """Rows after the position: one row comparison on PostgreSQL (its btree seeks
        to it), below the horizon; on SQLite two ranges, each a seek on (time, rowid),
        since a row value there would scan every row of the position's own time."""
        if pg:
            return [(f"({at}, {key}) > (?, ?) AND {tx_col} < ?", [after.at, after_key, top])]
        return [(f"{at} = ? AND {key} > ?", [after.at, after_key]), (f"{at} > ?", [after.at])]

    if wanted is None or wanted - {int(Status.CREATED)}:
        at = "e.tx" if pg else "e.ts"
        for cond, values in ranges(at, "e.id", after.key - EVENT_KEY, "e.tx"):
            scans.append(
                (
                    f"SELECT {at} AS at, e.id + {EVENT_KEY} AS key, e.ts, e.status,"
                    " e.description, e.gateway_id, e.failure_class, e.delivery_id FROM events e"
                    f" WHERE {cond} ORDER BY {at}, e.id LIMIT ?",
                    [*values, scan],
                )
            )
    if wanted is None or int(Status.CREATED) in wanted:
        at = "d.tx" if pg else "d.created_at"
        for cond, values in ranges(at, "d.id", min(after.key, EVENT_KEY), "d.tx"):
            scans.append(
                (
                    f"SELECT {at} AS at, d.id AS key, d.created_at AS ts,"
                    f" {int(Status.CREATED)} AS status, '{DESC_CREATED}' AS description,"
                    " NULL AS gateway_id, NULL AS failure_class, d.id AS delivery_id"
                    f" FROM deliveries d WHERE {cond} ORDER BY {at}, d.id LIMIT ?",
                    [*values, scan],
                )
            )
    # every position up to ``reached`` has been seen: below the horizon when no scan
    # stopped at its limit, else up to the first of those stops
    reached = Position(top - 1, _MAX) if top is not None else after
    stops: list[Position] = []
    candidates: list[_Scanned] = []
    for sql, values in scans:
        rows = tx.all_as(_Scanned, sql, values)
        candidates += rows
        if len(rows) == scan:
            stops.append(Position(int(rows[-1].at), int(rows[-1].key)))
        elif top is None and rows:
            reached = max(reached, Position(int(rows[-1].at), int(rows[-1].key)))
    if stops:
        reached = min(stops)
    reached = max(reached, after)
    candidates = [
        c
        for c in sorted(candidates, key=lambda c: (c.at, c.key))
        if Position(c.at, c.key) <= reached and (wanted is None or c.status in wanted)
    ]
    if not candidates:
        return Page([], reached, bool(stops))
    deliveries = _deliveries(tx, sorted({c.delivery_id for c in candidates}), f)
    key = tracking_key(tx)
    shown: dict[int, int] = {}
    out: list[StreamRow] = []
    for c in candidates:
        d = deliveries.get(c.delivery_id)
        if d is None:
            continue
        if len(out) == limit:
            reached = out[-1].position
            stops.append(reached)
            break
        if d.message_id not in shown:
            shown[d.message_id] = codes.shown_message_id(key, d.message_id)
        status = Status(c.status)
        retrying = (
            status is Status.SENT and d.state == int(Status.SENT) and d.retry_reason is not None
        )
        out.append(
            StreamRow(
                Position(int(c.at), int(c.key)),
                LogRow(
                    event_id=c.key,
                    ts=c.ts,
                    status=status,
                    description=c.description,
                    application_code=d.app_code,
                    message_code=d.message_code,
                    message_id=shown[d.message_id],
                    tracking_code=code_of(key, d.delivery_id, d.legacy_code),
                    hwid=d.hwid,
                    target_id=d.target_id,
                    user_id=d.user_id,
                    platform=d.platform,
                    gateway_id=c.gateway_id,
                    failure_class=d.retry_class
                    if retrying
                    else class_of(status, c.failure_class, c.description),
                    attempts=d.attempts,
                    retry_reason=d.retry_reason if retrying else None,
                ),
            )
        )
    return Page(out, reached, bool(stops))


def _deliveries(tx: Tx, ids: Sequence[int], f: Filter) -> dict[int, _Delivery]:
    """The deliveries among ``ids`` that ``f`` wants, by id."""
    where = [f"d.id IN ({','.join('?' * len(ids))})"]
    params: list[Any] = list(ids)

    def add(cond: str, *values: Any) -> None:
        where.append(cond)
        params.extend(values)

    def marks(values: Sequence[Any]) -> str:
        return ",".join("?" * len(values))

    if f.account is not None:
        add("a.account_id = (SELECT id FROM accounts WHERE name = ?)", f.account)
    if f.apps is not None:
        codes_ = sorted(f.apps) or [""]
        add(f"a.code IN ({marks(codes_)})", *codes_)
    if f.app_ids is not None:
        app_ids = sorted(f.app_ids) or [0]
        add(f"m.app_id IN ({marks(app_ids)})", *app_ids)
    if f.message_code is not None:
        add("m.code = ?", f.message_code)
    if f.hwids:
        add(f"d.hwid IN ({marks(f.hwids)})", *f.hwids)
    rows = tx.all_as(
        _Delivery,
        f"SELECT {_COLUMNS} FROM deliveries d {_JOINS} WHERE {' AND '.join(where)}",
        params,
    )
    return {int(r.delivery_id): r for r in rows}


_COLUMNS = (
    "d.id AS delivery_id, a.code AS app_code, m.code AS message_code, m.id AS message_id,"
    " d.legacy_code, d.hwid, d.target_id, d.user_id, d.platform, d.state, d.attempts,"
    " d.retry_reason, d.retry_class"
)
_JOINS = "JOIN messages m ON m.id = d.message_id JOIN applications a ON a.id = m.app_id"


class _Scanned(NamedTuple):
    at: int
    key: int
    ts: int
    status: int
    description: str
    gateway_id: str | None
    failure_class: str | None
    delivery_id: int


class _Delivery(NamedTuple):
    delivery_id: int
    app_code: str
    message_code: str
    message_id: int
    legacy_code: str | None
    hwid: str
    target_id: str
    user_id: str | None
    platform: int
    state: int
    attempts: int
    retry_reason: str | None
    retry_class: str | None


def encode(p: Position) -> str:
    """A position as an event id (stable: the same row always has the same one)."""
    return f"{p.at}-{p.key}"


def decode(text: str) -> Position | None:
    """The position an event id names, or None if it is not one."""
    at, sep, key = text.partition("-")
    if not sep or not at.isdigit() or not key.isdigit() or len(at) > 19 or len(key) > 19:
        return None
    p = Position(int(at), int(key))
    return p if p.at < 2**63 and p.key < 2**63 else None


class StreamStore:
    """Reading the trail by position (webhooks, the event stream, ``pushtrack tail``)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    async def read(self, after: Position, f: Filter, limit: int) -> Page:
        return await self._engine.read(partial(read, after=after, f=f, limit=limit))

    async def head(self) -> Position:
        return await self._engine.read(head)

    async def position_at(self, since: int) -> Position:
        return await self._engine.read(partial(position_at, since=since))
