"""The tracking log as exports read it, and the records of export files.

An export reads one UTC day of events in keyset pages ordered by
``(ts, id)``; each page is its own short read transaction, so a long export
never holds a snapshot open (PostgreSQL) or pins the WAL (SQLite), and memory
stays flat whatever the size of the day. Each row carries the payload the
device received, rendered from the message's stored template.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from functools import partial
from typing import Any

import msgspec

from pushtrack.domain.payload import encode, render
from pushtrack.domain.status import Status
from pushtrack.store.base import Engine, Tx
from pushtrack.store.tx import loads

#: Rows per keyset page.
PAGE_ROWS = 10_000
#: Payload templates kept decoded between pages (a day rarely has more messages).
TEMPLATE_CACHE = 4096


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


def app_ids(tx: Tx, q: TrackQuery) -> dict[int, str]:
    """The applications (id -> code) an export covers."""
    rows = tx.all(
        "SELECT a.id, a.code FROM applications a JOIN accounts acc ON acc.id = a.account_id"
        " WHERE acc.name = ?",
        (q.account,),
    )
    return {
        app_id: code
        for app_id, code in rows
        if (q.apps is None or code in q.apps) and (q.app_code is None or code == q.app_code)
    }


_PAGE_SQL = (
    "SELECT e.id, e.ts, e.status, e.description, d.tracking_code, d.target_id, d.hwid,"
    " d.user_id, d.hash, d.payload_id, d.message_id, m.app_id"
    " FROM events e JOIN deliveries d ON d.id = e.delivery_id"
    " JOIN messages m ON m.id = d.message_id"
    " WHERE e.ts >= ? AND e.ts < ? AND (e.ts > ? OR e.id > ?) AND m.app_id IN ({apps})"
    " ORDER BY e.ts, e.id LIMIT ?"
)


def page(
    tx: Tx,
    *,
    apps: dict[int, str],
    after: tuple[int, int],
    end: int,
    limit: int,
    templates: dict[int, dict[str, Any]],
) -> list[TrackRow]:
    """Up to ``limit`` rows after the position ``after`` = (ts, id), rendered.

    ``templates`` caches decoded payload templates across pages; missing ones
    are read in this transaction.
    """
    ts0, id0 = after
    sql = _PAGE_SQL.format(apps=",".join("?" * len(apps)))
    rows = tx.all(sql, (ts0, end, ts0, id0, *apps, limit))
    missing = {r[9] for r in rows if r[9] is not None and r[9] not in templates}
    if missing:
        if len(templates) + len(missing) > TEMPLATE_CACHE:
            templates.clear()
        ids = sorted(missing)
        for start in range(0, len(ids), 500):
            part = ids[start : start + 500]
            for pid, body in tx.all(
                f"SELECT id, body FROM payloads WHERE id IN ({','.join('?' * len(part))})", part
            ):
                templates[pid] = loads(body)
    out = []
    for eid, ts, status, desc, tcode, target, hwid, user, p, pid, mid, app_id in rows:
        template = templates.get(pid) if pid is not None else None
        if template is None or p is None:
            payload = ""
        else:
            payload = encode(render(template, p, mid, user or hwid)).decode()
        out.append(
            TrackRow(
                event_id=eid,
                ts=ts,
                tracking_code=tcode,
                target_id=target,
                hwid=hwid,
                status=Status(status),
                description=desc,
                app_code=apps[app_id],
                payload=payload,
            )
        )
    return out


def count(tx: Tx, q: TrackQuery) -> int:
    apps = app_ids(tx, q)
    if not apps:
        return 0
    row = tx.one(
        "SELECT COUNT(*) FROM events e JOIN deliveries d ON d.id = e.delivery_id"
        " JOIN messages m ON m.id = d.message_id"
        f" WHERE e.ts >= ? AND e.ts < ? AND m.app_id IN ({','.join('?' * len(apps))})",
        (q.start, q.end, *apps),
    )
    return int(row[0]) if row else 0


# -- export files ------------------------------------------------------------------------

_FILE_COLUMNS = (
    "f.id, f.job_id, acc.name, f.path, f.name, f.size, f.rows, f.created_at, f.expires_at"
)


def _file(row: tuple[Any, ...]) -> FileRecord:
    return FileRecord(*row)


def add_file(tx: Tx, *, record: FileRecord) -> None:
    acc = None
    if record.account is not None:
        found = tx.one("SELECT id FROM accounts WHERE name = ?", (record.account,))
        acc = found[0] if found else None
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
    row = tx.one(
        f"SELECT {_FILE_COLUMNS} FROM files f LEFT JOIN accounts acc ON acc.id = f.account_id"
        " WHERE f.id = ?",
        (file_id,),
    )
    return _file(row) if row else None


def expired_files(tx: Tx, *, now: int, before: int, limit: int) -> list[FileRecord]:
    """Files past their expiry at ``now``, or made before ``before``."""
    rows = tx.all(
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
        templates: dict[int, dict[str, Any]] = {}
        after = (q.start, -1)
        while stop is None or not stop.is_set():
            rows = self.engine.read_sync(
                partial(
                    page, apps=apps, after=after, end=q.end, limit=page_rows, templates=templates
                )
            )
            if rows:
                yield rows
            if len(rows) < page_rows:
                return
            after = (rows[-1].ts, rows[-1].event_id)

    def count_sync(self, q: TrackQuery) -> int:
        return self.engine.read_sync(partial(count, q=q))

    async def add_file(self, record: FileRecord) -> None:
        await self.engine.write(partial(add_file, record=record))

    async def get_file(self, file_id: str) -> FileRecord | None:
        return await self.engine.read(partial(get_file, file_id=file_id))
