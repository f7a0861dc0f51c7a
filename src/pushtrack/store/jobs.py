"""Durable jobs: enqueue, claim with a lease, heartbeat, finish, look up.

A job is claimed by one worker at a time: its lease (``lease_owner``,
``lease_until``) is the claim. A worker that dies stops renewing the lease;
once it expires, any other worker may claim the job again. PostgreSQL claims
with ``FOR UPDATE SKIP LOCKED``, so many workers never wait on each other;
SQLite has one writer at a time, so a plain guarded UPDATE is enough.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import msgspec

from pushtrack.domain import codes
from pushtrack.store.base import Engine, Tx
from pushtrack.store.tx import account_id, dumps, loads

PENDING, RUNNING, DONE, FAILED, CANCELLED = "pending", "running", "done", "failed", "cancelled"


class Job(msgspec.Struct, frozen=True):
    id: int
    request_id: str
    kind: str
    account: str | None
    params: dict[str, Any]
    state: str
    result: Any
    attempts: int
    run_at: int


_COLUMNS = "j.id, j.request_id, j.kind, acc.name, j.params, j.state, j.result, j.attempts, j.run_at"
_FROM = "jobs j LEFT JOIN accounts acc ON acc.id = j.account_id"


def _job(row: tuple[Any, ...]) -> Job:
    return Job(
        id=row[0],
        request_id=row[1],
        kind=row[2],
        account=row[3],
        params=loads(row[4]),
        state=row[5],
        result=loads(row[6]),
        attempts=row[7],
        run_at=row[8],
    )


def enqueue(
    tx: Tx,
    *,
    kind: str,
    account: str | None,
    params: dict[str, Any],
    run_at: int,
    message_id: int | None = None,
) -> str:
    """A new pending job; ``message_id``: the message it works on (indexed, so a
    message's jobs are found without reading their parameters)."""
    request_id = codes.request_id()
    now = tx.now()
    tx.run(
        "INSERT INTO jobs (request_id, kind, account_id, params, state, run_at, created_at,"
        " updated_at, message_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            request_id,
            kind,
            account_id(tx, account) if account else None,
            dumps(params),
            PENDING,
            run_at,
            now,
            now,
            message_id,
        ),
    )
    return request_id


def claim(tx: Tx, *, owner: str, kinds: Sequence[str], limit: int, lease_us: int) -> list[Job]:
    now = tx.now()
    marks = ",".join("?" * len(kinds))
    lock = " FOR UPDATE SKIP LOCKED" if tx.dialect == "postgresql" else ""
    rows = tx.all(
        "UPDATE jobs SET state = ?, lease_owner = ?, lease_until = ?, attempts = attempts + 1,"
        " updated_at = ? WHERE id IN ("
        f"  SELECT id FROM jobs WHERE kind IN ({marks}) AND ("
        "   (state = ? AND run_at <= ?) OR (state = ? AND lease_until < ?))"
        f"  ORDER BY run_at, id LIMIT ?{lock})"
        " RETURNING id",
        (RUNNING, owner, now + lease_us, now, *kinds, PENDING, now, RUNNING, now, limit),
    )
    if not rows:
        return []
    ids = [r[0] for r in rows]
    found = tx.all(
        f"SELECT {_COLUMNS} FROM {_FROM} WHERE j.id IN ({','.join('?' * len(ids))})"
        " ORDER BY j.run_at, j.id",
        ids,
    )
    return [_job(r) for r in found]


def heartbeat(tx: Tx, *, job_id: int, owner: str, lease_us: int) -> bool:
    """Renew a lease; False if the job is no longer ours (lost, cancelled)."""
    return (
        tx.run(
            "UPDATE jobs SET lease_until = ? WHERE id = ? AND lease_owner = ? AND state = ?",
            (tx.now() + lease_us, job_id, owner, RUNNING),
        )
        > 0
    )


def finish(tx: Tx, *, job_id: int, owner: str, state: str, result: Any = None) -> bool:
    return (
        tx.run(
            "UPDATE jobs SET state = ?, result = ?, lease_owner = NULL, lease_until = NULL,"
            " updated_at = ? WHERE id = ? AND lease_owner = ? AND state = ?",
            (
                state,
                dumps(result) if result is not None else None,
                tx.now(),
                job_id,
                owner,
                RUNNING,
            ),
        )
        > 0
    )


def reschedule(tx: Tx, *, job_id: int, owner: str, run_at: int, failed: bool) -> bool:
    """Hand a job back to the queue, due again at ``run_at``.

    ``attempts`` counts failed tries in a row: a job handed back without
    failing (it waits for something, or its worker is stopping) starts afresh.
    """
    keep = "attempts" if failed else "0"
    return (
        tx.run(
            f"UPDATE jobs SET state = ?, run_at = ?, attempts = {keep}, lease_owner = NULL,"
            " lease_until = NULL, updated_at = ? WHERE id = ? AND lease_owner = ? AND state = ?",
            (PENDING, run_at, tx.now(), job_id, owner, RUNNING),
        )
        > 0
    )


def next_due(tx: Tx, *, kinds: Sequence[str]) -> int | None:
    """When the earliest job of these kinds is due (a running job's lease end counts)."""
    marks = ",".join("?" * len(kinds))
    row = tx.one(
        f"SELECT MIN(CASE WHEN state = ? THEN run_at ELSE lease_until END) FROM jobs"
        f" WHERE kind IN ({marks}) AND state IN (?, ?)",
        (PENDING, *kinds, PENDING, RUNNING),
    )
    return None if row is None or row[0] is None else int(row[0])


def get(tx: Tx, *, request_id: str, account: str) -> Job | None:
    row = tx.one(
        f"SELECT {_COLUMNS} FROM {_FROM} WHERE j.request_id = ? AND acc.name = ?",
        (request_id, account),
    )
    return _job(row) if row else None


class JobStore:
    """The jobs part of the ``Store``: ``store.jobs``."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def enqueue(
        self, kind: str, account: str | None, params: dict[str, Any], run_at: int | None = None
    ) -> str:
        when = self.engine.clock() if run_at is None else run_at
        return await self.engine.write(
            partial(enqueue, kind=kind, account=account, params=params, run_at=when)
        )

    async def claim(
        self, owner: str, kinds: Sequence[str], limit: int, lease_seconds: float
    ) -> list[Job]:
        return await self.engine.write(
            partial(
                claim,
                owner=owner,
                kinds=tuple(kinds),
                limit=limit,
                lease_us=int(lease_seconds * 1e6),
            )
        )

    async def heartbeat(self, job_id: int, owner: str, lease_seconds: float) -> bool:
        return await self.engine.write(
            partial(heartbeat, job_id=job_id, owner=owner, lease_us=int(lease_seconds * 1e6))
        )

    async def finish(self, job_id: int, owner: str, state: str, result: Any = None) -> bool:
        return await self.engine.write(
            partial(finish, job_id=job_id, owner=owner, state=state, result=result)
        )

    async def reschedule(
        self, job_id: int, owner: str, run_at: int, *, failed: bool = False
    ) -> bool:
        return await self.engine.write(
            partial(reschedule, job_id=job_id, owner=owner, run_at=run_at, failed=failed)
        )

    async def next_due(self, kinds: Sequence[str]) -> int | None:
        return await self.engine.read(partial(next_due, kinds=tuple(kinds)))

    async def get(self, request_id: str, account: str) -> Job | None:
        return await self.engine.read(partial(get, request_id=request_id, account=account))
