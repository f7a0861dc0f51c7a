"""The tracking log as exports read it, and the records of export files.

An export reads one UTC day of events in keyset pages ordered by
``(ts, id)``; each page is its own short read transaction, so a long export
never holds a snapshot open (PostgreSQL) or pins the WAL (SQLite), and memory
stays flat whatever the size of the day. Each row carries the payload the
device received, rendered from the message's stored template.
"""

from __future__ import annotations

import re
import secrets
import threading
from collections.abc import Iterator
from functools import partial
from operator import itemgetter
from typing import Any, NamedTuple

import msgspec

from pushtrack.domain import codes
from pushtrack.domain.payload import encode, render
from pushtrack.domain.status import DESC_CREATED, Status
from pushtrack.store.base import Engine, Tx
from pushtrack.store.jsontext import loads
from pushtrack.store.messages import EVENT_KEY
from pushtrack.store.tracking import tracking_key

#: Rows per keyset page (of events, and as many of deliveries' ``created``). 5,000: a
#: day of 2,000,000 events exports as fast as with 10,000, and the worker's peak RSS is
#: 16 MB lower (132 MB against 148 in ``bench/export.py``, alternated runs).
PAGE_ROWS = 5_000
#: Payload templates kept decoded between pages (a day rarely has more messages).
TEMPLATE_CACHE = 4096
#: Deliveries kept between pages (with their rendered payloads).
DELIVERY_CACHE = 20_000


class TrackQuery(msgspec.Struct, frozen=True):
    """Which events an export holds: ``start <= ts < end`` for some applications."""

    account: str
    start: int
    end: int
    #: The token's application restriction (None: every application of the account).
    apps: frozenset[str] | None = None
    #: Only this application.
    app_code: str | None = None


class TrackRow(msgspec.Struct, frozen=True, gc=False):
    """One event of the tracking log, with everything its CSV row shows."""

    event_id: int
    ts: int
    tracking_code: str
    target_id: str
    hwid: str
    status: Status
    description: str
    app_code: str
    #: The payload JSON the device was sent ("" for an entry that matched no device).
    payload: str


class FileRecord(msgspec.Struct, frozen=True):
    id: str
    job_id: int | None
    account: str | None
    path: str
    name: str
    size: int
    rows: int
    created_at: int
    expires_at: int


# -- reading the log ---------------------------------------------------------------------


class _AppRow(NamedTuple):
    id: int
    code: str


def app_ids(tx: Tx, q: TrackQuery) -> dict[int, str]:
    """The applications (id -> code) an export covers."""
    rows = tx.all_as(
        _AppRow,
        "SELECT a.id, a.code FROM applications a JOIN accounts acc ON acc.id = a.account_id"
        " WHERE acc.name = ?",
        (q.account,),
    )
    return {
        a.id: a.code
        for a in rows
        if (q.apps is None or a.code in q.apps) and (q.app_code is None or a.code == q.app_code)
    }


class Rendered:
    """A payload template, pre-encoded around the three values each delivery adds.

    ``render`` puts ``md.mid``, ``md.user_id`` and ``p`` into the template and
    ``encode`` sorts the keys, so the bytes are the template's with three holes
    in fixed places. The template is encoded once with a placeholder in each
    hole; a delivery's payload is then the pieces joined with its values
    (JSON-escaped when they need it). Byte for byte what
    ``encode(render(...))`` gives, at a fraction of the cost.
    """

    __slots__ = ("parts", "template")

    _TOKEN = secrets.token_hex(8)
    _MID = 7_000_000_000_000_000_000 + int(_TOKEN[:8], 16)
    _USER = "u" + _TOKEN
    _P = "p" + _TOKEN

    def __init__(self, template: dict[str, Any]) -> None:
        self.template = template
        full = encode(render(template, self._P, self._MID, self._USER)).decode()
        holes = (str(self._MID), '"' + self._USER + '"', '"' + self._P + '"')
        self.parts: tuple[str, str, str, str] | None = None
        if all(full.count(h) == 1 for h in holes):
            a, _, rest = full.partition(holes[0])
            b, _, rest = rest.partition(holes[1])
            c, _, d = rest.partition(holes[2])
            if holes[1] not in a and holes[2] not in a + b:  # in this order
                self.parts = (a, b, c, d)

    def payload(self, p: str, message_id: int, user_id: str) -> str:
        if self.parts is None:
            return encode(render(self.template, p, message_id, user_id)).decode()
        a, b, c, d = self.parts
        return f"{a}{message_id}{b}{_json_str(user_id)}{c}{_json_str(p)}{d}"


_NEEDS_ESCAPE = re.compile(r'[\x00-\x1f"\\]')
_encode_str = msgspec.json.Encoder().encode


def _json_str(text: str) -> str:
    """``text`` as a JSON string literal."""
    if _NEEDS_ESCAPE.search(text):
        return _encode_str(text).decode()
    return f'"{text}"'


#: Export pages read plain tuples, unpacked or indexed by the column names below (each
#: statement's ``AS`` names, in order): rows read as NamedTuples stay tracked by the
#: cyclic GC (a tuple subclass is never untracked, a plain tuple of numbers and text
#: is), and with a page's rows and the delivery cache alive its collections took the
#: export from ~125,000 to ~75,000 rows per CPU-second (same database, one process,
#: pages alternated; the same with the GC off).
#:
#: A row of the trail: an event, or a delivery's ``created``; ``key`` is its place at
#: its time (``EVENT_KEY``: the delivery's id for ``created``).
_TRAIL_COLUMNS = ("key", "ts", "status", "description", "delivery_id")
_KEY, _TS, _DELIVERY_ID = map(_TRAIL_COLUMNS.index, ("key", "ts", "delivery_id"))
#: The events of the trail in the seed's vocabulary: a device's ``confirmed`` (ours) is
#: left out, so the export stays exactly in the seed's format.
_EVENTS_SQL = (
    f"SELECT id + {EVENT_KEY} AS key, ts, status, description, delivery_id FROM events"
    f" WHERE ts >= ? AND ts < ? AND (ts, id) > (?, ?) AND status <> {int(Status.CONFIRMED)}"
    " ORDER BY ts, id LIMIT ?"
)
#: The deliveries' ``created``, carried by their rows.
_CREATED_SQL = (
    f"SELECT id AS key, created_at AS ts, {int(Status.CREATED)} AS status,"
    f" '{DESC_CREATED}' AS description, id AS delivery_id FROM deliveries"
    " WHERE created_at >= ? AND created_at < ? AND (created_at, id) > (?, ?)"
    " ORDER BY created_at, id LIMIT ?"
)
#: A delivery: ``hash`` is the payload's ``p`` (NULL for an entry that matched no device).
_DELIVERY_COLUMNS = (
    "id",
    "legacy_code",
    "target_id",
    "hwid",
    "user_id",
    "hash",
    "payload_id",
    "message_id",
    "app_id",
)
_D_ID, _D_LEGACY_CODE, _D_PAYLOAD_ID, _D_APP_ID = map(
    _DELIVERY_COLUMNS.index, ("id", "legacy_code", "payload_id", "app_id")
)
_DELIVERIES_SQL = (
    "SELECT d.id, d.legacy_code, d.target_id, d.hwid, d.user_id, d.hash, d.payload_id,"
    " d.message_id, m.app_id FROM deliveries d JOIN messages m ON m.id = d.message_id"
    " WHERE d.id IN ({marks})"
)


class _PayloadRow(NamedTuple):
    id: int
    body: str


_STATUS = {int(s): s for s in Status}


#: What an export knows of a delivery: tracking code, target, hwid, app code, payload
#: (a plain tuple, as the rows above); None for one of another account (or gone).
Known = tuple[str, str, str, str, str] | None
_K_TRACKING_CODE, _K_TARGET_ID, _K_HWID, _K_APP_CODE, _K_PAYLOAD = range(5)


class ReadCache:
    """What one export remembers between pages: templates, and recent deliveries.

    A delivery's events come close together in time (two thirds of a day's
    rows belong to a delivery met a moment before), so each is read and its
    payload rendered about once, not once per event.
    """

    __slots__ = ("deliveries", "key", "shown", "templates")

    def __init__(self) -> None:
        self.templates: dict[int, Rendered] = {}
        self.deliveries: dict[int, Known] = {}
        #: The server secret tracking codes are derived under (read with the first page).
        self.key: bytes | None = None
        #: Store message id -> the id payloads carry (``codes.shown_message_id``).
        self.shown: dict[int, int] = {}


def page(
    tx: Tx,
    *,
    apps: dict[int, str],
    after: tuple[int, int],
    end: int,
    limit: int,
    cache: ReadCache,
) -> tuple[list[TrackRow], tuple[int, int] | None]:
    """The rows of up to ``limit`` events after the position ``after`` = (ts, key).

    Events and the deliveries' ``created`` (their rows' ``created_at``) are
    merged by (ts, key), as getMessageLog orders them (``EVENT_KEY``).
    Returns the rows of the applications ``apps`` and the position to go on
    from (None at the end). Events (and created deliveries) are read alone, in
    the order of their time index, and their deliveries by primary key: no plan
    can turn a page into a sort of the rest of the day.
    """
    ts0, id0 = after
    if tx.dialect == "postgresql":
        # A fresh day's partition has no statistics yet: the planner would rather
        # sort the rest of the day than walk the (ts, id) key in order.
        tx.run("SET LOCAL enable_sort = off")
    events = tx.all(_EVENTS_SQL, (ts0, end, ts0, id0 - EVENT_KEY, limit))
    # the created deliveries up to the last event read (to the end if that was all)
    upto = events[-1][_TS] + 1 if len(events) == limit else end
    created = tx.all(_CREATED_SQL, (ts0, upto, ts0, min(id0, EVENT_KEY), limit))
    more = len(events) == limit or len(created) == limit
    if created:
        merged = sorted(events + created, key=_POSITION)
        # complete up to the first stream's last row read, if that stream has more
        cuts = [rows[-1] for rows in (events, created) if len(rows) == limit]
        if cuts:
            cut = min(_POSITION(r) for r in cuts)
            merged = [r for r in merged if _POSITION(r) <= cut]
        events = merged
    if not events:
        return [], None
    known = cache.deliveries
    if len(known) > DELIVERY_CACHE:
        known.clear()
    missing = list({e[_DELIVERY_ID] for e in events if e[_DELIVERY_ID] not in known})
    found: list[tuple[Any, ...]] = []
    for start in range(0, len(missing), 1000):
        part = missing[start : start + 1000]
        found.extend(tx.all(_DELIVERIES_SQL.format(marks=",".join("?" * len(part))), part))
    for did in missing:
        known[did] = None
    templates = cache.templates
    new_templates = {
        r[_D_PAYLOAD_ID]
        for r in found
        if r[_D_PAYLOAD_ID] is not None and r[_D_PAYLOAD_ID] not in templates
    }
    if new_templates:
        if len(templates) + len(new_templates) > TEMPLATE_CACHE:
            templates.clear()
        ids = sorted(new_templates)
        for start in range(0, len(ids), 500):
            part = ids[start : start + 500]
            for row in tx.all_as(
                _PayloadRow,
                f"SELECT id, body FROM payloads WHERE id IN ({','.join('?' * len(part))})",
                part,
            ):
                templates[row.id] = Rendered(loads(row.body))
    key = cache.key
    if key is None and found:
        key = cache.key = tracking_key(tx)
    derived = [r[_D_ID] for r in found if r[_D_LEGACY_CODE] is None and r[_D_APP_ID] in apps]
    sealed = dict(zip(derived, codes.tracking_codes_of(key, derived), strict=True)) if key else {}
    # unpacked in _DELIVERY_COLUMNS' order
    for did, legacy, target, hwid, user, p, pid, mid, app_id in found:
        code = apps.get(app_id)
        if code is None:
            continue
        assert key is not None
        rendered = templates.get(pid) if pid is not None and p is not None else None
        shown = cache.shown.get(mid)
        if shown is None:
            shown = cache.shown[mid] = codes.shown_message_id(key, mid)
        payload = "" if rendered is None else rendered.payload(p, shown, user or hwid)
        known[did] = (legacy if legacy is not None else sealed[did], target, hwid, code, payload)
    out: list[TrackRow] = []
    append, status_of = out.append, _STATUS
    for eid, ts, status, desc, did in events:  # _TRAIL_COLUMNS' order
        d = known[did]
        if d is not None:
            append(
                TrackRow(
                    eid,
                    ts,
                    d[_K_TRACKING_CODE],
                    d[_K_TARGET_ID],
                    d[_K_HWID],
                    status_of[status],
                    desc,
                    d[_K_APP_CODE],
                    d[_K_PAYLOAD],
                )
            )
    last = events[-1]
    return out, ((last[_TS], last[_KEY]) if more else None)


#: A row's place in the trail: (ts, key).
_POSITION = itemgetter(_TS, _KEY)


def count(tx: Tx, q: TrackQuery) -> int:
    apps = app_ids(tx, q)
    if not apps:
        return 0
    marks = ",".join("?" * len(apps))
    events = tx.scalar(
        "SELECT COUNT(*) FROM events e JOIN deliveries d ON d.id = e.delivery_id"
        " JOIN messages m ON m.id = d.message_id"
        f" WHERE e.ts >= ? AND e.ts < ? AND +m.app_id IN ({marks})"
        f" AND e.status <> {int(Status.CONFIRMED)}",
        (q.start, q.end, *apps),
    )
    created = tx.scalar(
        "SELECT COUNT(*) FROM deliveries d JOIN messages m ON m.id = d.message_id"
        f" WHERE d.created_at >= ? AND d.created_at < ? AND +m.app_id IN ({marks})",
        (q.start, q.end, *apps),
    )
    return int(events or 0) + int(created or 0)


# -- export files ------------------------------------------------------------------------

_FILE_COLUMNS = (
    "f.id, f.job_id, acc.name AS account, f.path, f.name, f.size, f.rows, f.created_at,"
    " f.expires_at"
)


class _FileRow(NamedTuple):
    """A file's record as ``_FILE_COLUMNS`` reads it (``FileRecord``'s fields)."""

    id: str
    job_id: int | None
    account: str | None
    path: str
    name: str
    size: int
    rows: int
    created_at: int
    expires_at: int


def _file(row: _FileRow) -> FileRecord:
    return FileRecord(**row._asdict())


def add_file(tx: Tx, *, record: FileRecord) -> None:
    acc = None
    if record.account is not None:
        acc = tx.scalar("SELECT id FROM accounts WHERE name = ?", (record.account,))
    tx.run(
        "INSERT INTO files (id, job_id, account_id, path, name, size, rows, created_at,"
        " expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            record.id,
            record.job_id,
            acc,
            record.path,
            record.name,
            record.size,
            record.rows,
            record.created_at,
            record.expires_at,
        ),
    )


def get_file(tx: Tx, *, file_id: str) -> FileRecord | None:
    row = tx.one_as(
        _FileRow,
        f"SELECT {_FILE_COLUMNS} FROM files f LEFT JOIN accounts acc ON acc.id = f.account_id"
        " WHERE f.id = ?",
        (file_id,),
    )
    return _file(row) if row else None


def expired_files(tx: Tx, *, now: int, before: int, limit: int) -> list[FileRecord]:
    """Files past their expiry at ``now``, or made before ``before``."""
    rows = tx.all_as(
        _FileRow,
        f"SELECT {_FILE_COLUMNS} FROM files f LEFT JOIN accounts acc ON acc.id = f.account_id"
        " WHERE f.expires_at <= ? OR f.created_at < ? ORDER BY f.expires_at LIMIT ?",
        (now, before, limit),
    )
    return [_file(r) for r in rows]


def delete_files(tx: Tx, *, ids: list[str]) -> int:
    if not ids:
        return 0
    return tx.run(f"DELETE FROM files WHERE id IN ({','.join('?' * len(ids))})", ids)


class ExportStore:
    """The exports part of the ``Store``: ``store.exports``."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def pages(
        self,
        q: TrackQuery,
        *,
        page_rows: int = PAGE_ROWS,
        stop: threading.Event | None = None,
    ) -> Iterator[list[TrackRow]]:
        """The rows of ``q`` in time order, page by page (blocking: run it in a thread)."""
        apps = self.engine.read_sync(partial(app_ids, q=q))
        if not apps:
            return
        cache = ReadCache()
        after: tuple[int, int] | None = (q.start, -1)
        while after is not None and (stop is None or not stop.is_set()):
            rows, after = self.engine.read_sync(
                partial(page, apps=apps, after=after, end=q.end, limit=page_rows, cache=cache)
            )
            if rows:
                yield rows

    def count_sync(self, q: TrackQuery) -> int:
        return self.engine.read_sync(partial(count, q=q))

    async def add_file(self, record: FileRecord) -> None:
        await self.engine.write(partial(add_file, record=record))

    async def get_file(self, file_id: str) -> FileRecord | None:
        return await self.engine.read(partial(get_file, file_id=file_id))
