"""Webhook endpoints: where an application's trail is POSTed, and how far each has got.

Each endpoint has its own cursor (a ``store/stream.py`` position) and its own
``webhook`` job (``jobs/webhooks.py``), made with it in one transaction. The job
moves the cursor only after the endpoint acknowledged the events before it, and only
from the position it read (a replay or a removal meanwhile wins), so every event is
delivered at least once and in order.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from functools import partial
from typing import NamedTuple

import msgspec

from pushtrack.domain.jobs import JobKind, WebhookParams
from pushtrack.store import jobs
from pushtrack.store.base import ConflictError, Engine, Tx
from pushtrack.store.stream import Position, head, position_at

KIND = JobKind.WEBHOOK
_COLUMNS = (
    "w.id, w.app_id, a.code AS application_code, w.url, w.secret, w.statuses, w.created_at,"
    " w.cursor_at, w.cursor_key, w.delivered, w.last_success_at, w.failing_since, w.failing,"
    " w.last_error, w.secret_sealed"
)
_FROM = (
    "webhooks w JOIN applications a ON a.id = w.app_id JOIN accounts acc ON acc.id = a.account_id"
)


class Webhook(msgspec.Struct, frozen=True):
    id: int
    app_id: int
    application_code: str
    url: str
    #: the signing secret as stored: a Fernet token when ``secret_sealed`` (``sealing.py``
    #: opens it), else the secret itself (endpoints made before secrets were sealed)
    secret: str
    secret_sealed: bool
    #: status numbers wanted (None: every status)
    statuses: tuple[int, ...] | None
    created_at: int
    cursor: Position
    #: events acknowledged so far
    delivered: int
    last_success_at: int | None
    #: since when every try has failed (None: the last try succeeded)
    failing_since: int | None
    #: failing for longer than the retry window (still retried; nothing is skipped)
    failing: bool
    last_error: str | None


class _HookRow(NamedTuple):
    """An endpoint as ``_COLUMNS`` reads it."""

    id: int
    app_id: int
    application_code: str
    url: str
    secret: str
    #: JSON list, or NULL
    statuses: str | None
    created_at: int
    cursor_at: int
    cursor_key: int
    delivered: int
    last_success_at: int | None
    failing_since: int | None
    failing: int
    last_error: str | None
    secret_sealed: int


def _hook(r: _HookRow) -> Webhook:
    return Webhook(
        id=int(r.id),
        app_id=int(r.app_id),
        application_code=r.application_code,
        url=r.url,
        secret=r.secret,
        statuses=tuple(msgspec.json.decode(r.statuses)) if r.statuses is not None else None,
        created_at=int(r.created_at),
        cursor=Position(int(r.cursor_at), int(r.cursor_key)),
        delivered=int(r.delivered),
        last_success_at=r.last_success_at,
        failing_since=r.failing_since,
        failing=bool(r.failing),
        last_error=r.last_error,
        secret_sealed=bool(r.secret_sealed),
    )


def add(
    tx: Tx,
    *,
    account: str,
    app_id: int,
    url: str,
    secret: str,
    sealed: bool,
    statuses: tuple[int, ...] | None,
) -> Webhook:
    """A new endpoint, starting after everything the trail holds now, and its job;
    ``secret`` is stored as given (``sealed``: a Fernet token of the signing secret)."""
    if tx.scalar("SELECT 1 FROM webhooks WHERE app_id = ? AND url = ?", (app_id, url)) is not None:
        raise ConflictError(f"url: {url} is already a webhook of this application")
    start = head(tx)
    webhook_id = tx.scalar(
        "INSERT INTO webhooks (app_id, url, secret, secret_sealed, statuses, created_at,"
        " cursor_at, cursor_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (
            app_id,
            url,
            secret,
            int(sealed),
            msgspec.json.encode(list(statuses)).decode() if statuses is not None else None,
            tx.now(),
            start.at,
            start.key,
        ),
    )
    assert webhook_id is not None
    jobs.enqueue(
        tx, kind=KIND, account=account, params=WebhookParams(webhook_id=webhook_id), run_at=tx.now()
    )
    found = get(tx, int(webhook_id))
    assert found is not None
    return found


def get(tx: Tx, webhook_id: int) -> Webhook | None:
    row = tx.one_as(_HookRow, f"SELECT {_COLUMNS} FROM {_FROM} WHERE w.id = ?", (webhook_id,))
    return _hook(row) if row else None


def list_hooks(
    tx: Tx, *, account: str, apps: AbstractSet[str] | None, app_code: str | None
) -> list[Webhook]:
    where, params = ["acc.name = ?"], [account]
    if apps is not None:
        where.append(f"a.code IN ({','.join('?' * len(apps))})")
        params.extend(sorted(apps))
    if app_code is not None:
        where.append("a.code = ?")
        params.append(app_code)
    rows = tx.all_as(
        _HookRow,
        f"SELECT {_COLUMNS} FROM {_FROM} WHERE {' AND '.join(where)} ORDER BY w.id",
        params,
    )
    return [_hook(r) for r in rows]


def find(tx: Tx, *, app_id: int, url: str) -> Webhook | None:
    row = tx.one_as(
        _HookRow, f"SELECT {_COLUMNS} FROM {_FROM} WHERE w.app_id = ? AND w.url = ?", (app_id, url)
    )
    return _hook(row) if row else None


def remove(tx: Tx, *, app_id: int, url: str) -> bool:
    """Remove an endpoint (its job ends when it next finds it gone)."""
    return tx.run("DELETE FROM webhooks WHERE app_id = ? AND url = ?", (app_id, url)) > 0


def advance(tx: Tx, *, webhook_id: int, old: Position, new: Position, count: int) -> bool:
    """Move the cursor past ``count`` acknowledged events (0: past rows the endpoint
    does not want), if it is still at ``old``; an acknowledgement clears the failure
    state."""
    acknowledged = (
        ", delivered = delivered + ?, last_success_at = ?, failing_since = NULL, failing = 0,"
        " last_error = NULL"
    )
    return (
        tx.run(
            f"UPDATE webhooks SET cursor_at = ?, cursor_key = ?{acknowledged if count else ''}"
            " WHERE id = ? AND cursor_at = ? AND cursor_key = ?",
            (
                new.at,
                new.key,
                *((count, tx.now()) if count else ()),
                webhook_id,
                old.at,
                old.key,
            ),
        )
        > 0
    )


def record_failure(tx: Tx, *, webhook_id: int, error: str, window_us: int) -> Webhook | None:
    """A try failed: remember since when, and mark the endpoint failing once that is
    longer ago than ``window_us``."""
    now = tx.now()
    tx.run(
        "UPDATE webhooks SET failing_since = COALESCE(failing_since, ?), last_error = ?,"
        " failing = CASE WHEN ? - COALESCE(failing_since, ?) >= ? THEN 1 ELSE 0 END"
        " WHERE id = ?",
        (now, error[:500], now, now, window_us, webhook_id),
    )
    return get(tx, webhook_id)


def replay(tx: Tx, *, app_id: int, url: str, since: int) -> Webhook | None:
    """Send again everything from ``since`` (µs): the cursor goes back there."""
    start = position_at(tx, since)
    tx.run(
        "UPDATE webhooks SET cursor_at = ?, cursor_key = ? WHERE app_id = ? AND url = ?",
        (start.at, start.key, app_id, url),
    )
    return find(tx, app_id=app_id, url=url)


def all_hooks(tx: Tx) -> list[Webhook]:
    """Every endpoint of every account (``pushtrack secrets seal``, ``doctor``)."""
    return [_hook(r) for r in tx.all_as(_HookRow, f"SELECT {_COLUMNS} FROM {_FROM} ORDER BY w.id")]


def reseal(tx: Tx, *, webhook_id: int, old: str, new: str) -> bool:
    """Store the secret sealed as ``new``, if it is still stored as ``old``."""
    return (
        tx.run(
            "UPDATE webhooks SET secret = ?, secret_sealed = 1 WHERE id = ? AND secret = ?",
            (new, webhook_id, old),
        )
        > 0
    )


def failing_count(tx: Tx) -> int:
    return int(tx.scalar("SELECT COUNT(*) FROM webhooks WHERE failing = 1") or 0)


class WebhookStore:
    """The webhook endpoints, for the API, the command line and the worker."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    async def add(
        self,
        account: str,
        app_id: int,
        url: str,
        secret: str,
        statuses: tuple[int, ...] | None,
        *,
        sealed: bool,
    ) -> Webhook:
        return await self._engine.write(
            partial(
                add,
                account=account,
                app_id=app_id,
                url=url,
                secret=secret,
                sealed=sealed,
                statuses=statuses,
            )
        )

    async def all(self) -> list[Webhook]:
        return await self._engine.read(all_hooks)

    async def reseal(self, webhook_id: int, old: str, new: str) -> bool:
        return await self._engine.write(partial(reseal, webhook_id=webhook_id, old=old, new=new))

    async def get(self, webhook_id: int) -> Webhook | None:
        return await self._engine.read(partial(get, webhook_id=webhook_id))

    async def find(self, app_id: int, url: str) -> Webhook | None:
        return await self._engine.read(partial(find, app_id=app_id, url=url))

    async def list(
        self, account: str, apps: AbstractSet[str] | None = None, app_code: str | None = None
    ) -> list[Webhook]:
        return await self._engine.read(
            partial(list_hooks, account=account, apps=apps, app_code=app_code)
        )

    async def remove(self, app_id: int, url: str) -> bool:
        return await self._engine.write(partial(remove, app_id=app_id, url=url))

    async def advance(self, webhook_id: int, old: Position, new: Position, count: int) -> bool:
        return await self._engine.write(
            partial(advance, webhook_id=webhook_id, old=old, new=new, count=count)
        )

    async def record_failure(self, webhook_id: int, error: str, window_us: int) -> Webhook | None:
        return await self._engine.write(
            partial(record_failure, webhook_id=webhook_id, error=error, window_us=window_us)
        )

    async def replay(self, app_id: int, url: str, since: int) -> Webhook | None:
        return await self._engine.write(partial(replay, app_id=app_id, url=url, since=since))

    async def failing_count(self) -> int:
        return await self._engine.read(failing_count)
