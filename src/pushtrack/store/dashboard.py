"""What the dashboard reads beside the API's own queries: a message's failures grouped,
its latest deliveries, a device by push token, the secret sessions are sealed under."""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import msgspec

from pushtrack.domain.status import Status
from pushtrack.domain.timeutil import HOUR_US
from pushtrack.store.base import Engine, Tx
from pushtrack.store.events import Span
from pushtrack.store.tracking import code_of, tracking_key


class FailureGroup(msgspec.Struct, frozen=True):
    reason: str
    failure_class: str | None
    platform: int
    count: int


class LatestDelivery(msgspec.Struct, frozen=True):
    tracking_code: str
    hwid: str
    user_id: str | None
    platform: int
    #: the delivery's furthest status (``opened`` when it was opened)
    status: str
    confirmed: bool
    #: when it was created, and its latest event (µs)
    created_at: int | None
    last_at: int | None
    description: str | None


def server_secret(tx: Tx) -> bytes:
    return tracking_key(tx)


def failures(tx: Tx, *, message_id: int, limit: int) -> list[FailureGroup]:
    """A message's failed deliveries grouped by the gateway's reason and platform.

    Reads the failed deliveries only on SQLite (the partial index ``deliveries_failed``);
    PostgreSQL reads the message's deliveries and keeps the failed ones (an index
    naming ``state`` would make every state change a non-HOT update: pg_schema's
    migration 18). Their
    ``failed`` events are looked up within the hours the message's ``errors`` counters
    cover (each failure is counted in its hour in the transaction that writes it, as
    getMessageLog bounds a message's events): PostgreSQL reads only the daily
    partitions of those hours, SQLite tests the time in the (delivery, time) index.
    """
    span = tx.one_as(
        Span,
        "SELECT MIN(hour) AS first, MAX(hour) AS last FROM counters"
        " WHERE message_id = ? AND errors > 0",
        (message_id,),
    )
    bound, params = "", []
    if span is not None and span.first is not None and span.last is not None:
        bound = " AND e.ts >= ? AND e.ts < ?"
        params = [int(span.first), int(span.last) + HOUR_US]
    rows = tx.all_as(
        _FailureRow,
        "SELECT e.description AS reason, e.failure_class, d.platform, COUNT(*) AS n"
        " FROM deliveries d"
        f" JOIN events e ON e.delivery_id = d.id AND e.status = ?{bound}"
        # the state written out: a partial index serves only a statement that names its
        # condition
        f" WHERE d.message_id = ? AND d.state = {int(Status.FAILED)}"
        " GROUP BY e.description, e.failure_class, d.platform"
        " ORDER BY COUNT(*) DESC, e.description, d.platform LIMIT ?",
        (int(Status.FAILED), *params, message_id, limit),
    )
    return [FailureGroup(r.reason, r.failure_class, int(r.platform), int(r.n)) for r in rows]


class _FailureRow(NamedTuple):
    reason: str
    failure_class: str | None
    platform: int
    #: failed deliveries
    n: int


class _LatestRow(NamedTuple):
    id: int
    legacy_code: str | None
    hwid: str
    user_id: str | None
    platform: int
    state: int
    opened: int
    confirmed: int
    created_at: int


class _EventRow(NamedTuple):
    delivery_id: int
    ts: int
    description: str


def latest_deliveries(tx: Tx, *, message_id: int, limit: int) -> list[LatestDelivery]:
    """The message's most recently created deliveries with their statuses (the index
    ``deliveries_message_latest``)."""
    rows = tx.all_as(
        _LatestRow,
        f"SELECT {', '.join(_LatestRow._fields)}"
        " FROM deliveries WHERE message_id = ? ORDER BY message_id DESC, id DESC LIMIT ?",
        (message_id, limit),
    )
    if not rows:
        return []
    key = tracking_key(tx)
    ids = [r.id for r in rows]
    last: dict[int, _EventRow] = {}
    for e in tx.all_as(
        _EventRow,
        "SELECT delivery_id, ts, description FROM events"
        f" WHERE delivery_id IN ({','.join('?' * len(ids))}) ORDER BY ts, id",
        ids,
    ):
        last[e.delivery_id] = e
    out = []
    for r in rows:
        state = Status(r.state)
        seen = last.get(r.id)
        out.append(
            LatestDelivery(
                tracking_code=code_of(key, r.id, r.legacy_code),
                hwid=r.hwid,
                user_id=r.user_id,
                platform=int(r.platform),
                status="opened" if r.opened else state.label,
                confirmed=bool(r.confirmed),
                created_at=r.created_at,
                last_at=int(seen.ts) if seen else r.created_at,
                description=seen.description if seen else None,
            )
        )
    return out


def hwid_of_token(tx: Tx, *, app_id: int, push_token: str) -> str | None:
    hwid = tx.scalar(
        "SELECT hwid FROM devices WHERE app_id = ? AND push_token = ? ORDER BY updated_at DESC",
        (app_id, push_token),
    )
    return None if hwid is None else str(hwid)


class DashboardStore:
    """The dashboard's reads: ``store.dashboard``."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def server_secret(self) -> bytes:
        return await self.engine.read(server_secret)

    async def failures(self, message_id: int, limit: int = 50) -> list[FailureGroup]:
        return await self.engine.read(partial(failures, message_id=message_id, limit=limit))

    async def latest_deliveries(self, message_id: int, limit: int = 20) -> list[LatestDelivery]:
        return await self.engine.read(
            partial(latest_deliveries, message_id=message_id, limit=limit)
        )

    async def delivered(self, app_id: int, message_code: str) -> list[tuple[str, str]]:
        return await self.engine.read(partial(delivered, app_id=app_id, message_code=message_code))

    async def hwid_of_token(self, app_id: int, push_token: str) -> str | None:
        return await self.engine.read(partial(hwid_of_token, app_id=app_id, push_token=push_token))


def delivered(tx: Tx, *, app_id: int, message_code: str) -> list[tuple[str, str]]:
    """(hwid, payload hash) of a message's deliveries the gateway delivered (the demo's
    devices report opens for some of them)."""
    rows = tx.all_as(
        _Delivered,
        "SELECT d.hwid, d.hash FROM deliveries d JOIN messages m ON m.id = d.message_id"
        " WHERE m.code = ? AND m.app_id = ? AND d.state = ? AND d.hash IS NOT NULL",
        (message_code, app_id, int(Status.DELIVERED)),
    )
    return [(str(r.hwid), str(r.hash)) for r in rows]


class _Delivered(NamedTuple):
    hwid: str
    hash: str
