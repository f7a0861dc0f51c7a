"""Durable jobs: enqueue, claim with a lease, heartbeat, finish, look up.

A job is claimed by one worker at a time: its lease (``lease_owner``,
``lease_until``) is the claim. A worker that dies stops renewing the lease;
once it expires, any other worker may claim the job again. PostgreSQL claims
with ``FOR UPDATE SKIP LOCKED``, so many workers never wait on each other;
SQLite has one writer at a time, so a plain guarded UPDATE is enough.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from functools import partial
from typing import Any, NamedTuple, TypeVar

import msgspec

from pushtrack.domain import codes
from pushtrack.domain.jobs import Params, encode
from pushtrack.store.accounts import account_id
from pushtrack.store.base import Engine, Tx
from pushtrack.store.jsontext import dumps, loads


class JobState(StrEnum):
    """A job's state, stored as its value in ``jobs.state``."""

    PENDING = "pending"  # waiting until ``run_at``
    RUNNING = "running"  # claimed: a worker holds its lease
    DONE = "done"
    FAILED = "failed"  # gave up after ``max_attempts``
    CANCELLED = "cancelled"  # its message was deleted


#: The values the statements below bind (plain text, as the drivers bind fastest).
PENDING, RUNNING = JobState.PENDING.value, JobState.RUNNING.value

P = TypeVar("P", bound=Params)


class Job(msgspec.Struct, frozen=True):
    id: int
    request_id: str
    kind: str
    account: str | None
    params: dict[str, Any]
    state: JobState
    result: Any
    attempts: int
    run_at: int

    def params_as(self, kind: type[P]) -> P:
        """The parameters as their kind's struct (``domain/jobs.py``); ValueError if they
        do not fit it (the attempt fails, saying so)."""
        try:
            return msgspec.convert(self.params, kind)
        except msgspec.ValidationError as exc:
            raise ValueError(
                f"job {self.request_id} ({self.kind}): bad parameters: {exc}"
            ) from None


_COLUMNS = (
    "j.id, j.request_id, j.kind, acc.name AS account, j.params, j.state, j.result, j.attempts,"
    " j.run_at"
)
_FROM = "jobs j LEFT JOIN accounts acc ON acc.id = j.account_id"


class _JobRow(NamedTuple):
    """A job as ``_COLUMNS`` reads it (``params`` and ``result`` JSON text)."""

    id: int
    request_id: str
    kind: str
    account: str | None
    params: str
    state: str
    result: str | None
    attempts: int
    run_at: int


def _job(row: _JobRow) -> Job:
    return Job(
        id=row.id,
        request_id=row.request_id,
        kind=row.kind,
        account=row.account,
        params=loads(row.params),
        state=JobState(row.state),
        result=loads(row.result),
        attempts=row.attempts,
        run_at=row.run_at,
    )


def enqueue(
    tx: Tx,
    *,
    kind: str,
    account: str | None,
    params: Params,
    run_at: int,
    message_id: int | None = None,
    app_id: int | None = None,
) -> str:
    """A new pending job; ``message_id``: the message it works on (indexed, so a
    message's jobs are found without reading their parameters). The job belongs to
    ``account`` (a name), or with ``app_id`` to that application's account: claims are
    fair between accounts (``claim``), so a job that works for one is enqueued as its."""
    request_id = codes.request_id()
    now = tx.now()
    owner: int | None
    if app_id is not None:
        owner_sql, owner = "(SELECT account_id FROM applications WHERE id = ?)", app_id
    else:
        owner_sql, owner = "?", account_id(tx, account) if account else None
    tx.run(
        "INSERT INTO jobs (request_id, kind, account_id, params, state, run_at, created_at,"
        f" updated_at, message_id) VALUES (?, ?, {owner_sql}, ?, ?, ?, ?, ?, ?)",
        (
            request_id,
            kind,
            owner,
            encode(params),
            PENDING,
            run_at,
            now,
            now,
            message_id,
        ),
    )
    return request_id


#: Due jobs considered per claim beyond the ones wanted (some may be locked by
#: another worker on PostgreSQL).
_CANDIDATES_PER_SLOT = 4


def claim(tx: Tx, *, owner: str, kinds: Sequence[str], limit: int, lease_us: int) -> list[Job]:
    """Claim up to ``limit`` due jobs, fairly across accounts and kinds.

    Due jobs are grouped by (account, kind). A group's jobs are ranked by their
    place in the group's own queue plus how many of the group's jobs are running
    now, and claimed in rank order: one account's backlog of dispatch jobs takes
    its turn beside another account's export instead of ahead of it, and two
    busy groups share the workers evenly. Between equal ranks the group with fewer
    jobs due goes first (then the queue's order): a worker with one slot, which
    never has two of a group running, still takes the one export before the next
    of a hundred sends.
    """
    now = tx.now()
    marks = ",".join("?" * len(kinds))
    due = f"kind IN ({marks}) AND ((state = ? AND run_at <= ?) OR (state = ? AND lease_until < ?))"
    ranked = tx.column(
        "WITH busy AS ("
        "  SELECT COALESCE(account_id, 0) AS acc, kind, COUNT(*) AS n FROM jobs"
        "  WHERE state = ? AND lease_until >= ? GROUP BY COALESCE(account_id, 0), kind),"
        " due AS ("
        "  SELECT id, COALESCE(account_id, 0) AS acc, kind, run_at,"
        "   ROW_NUMBER() OVER (PARTITION BY COALESCE(account_id, 0), kind"
        "    ORDER BY run_at, id) AS place,"
        "   COUNT(*) OVER (PARTITION BY COALESCE(account_id, 0), kind) AS size"
        f"  FROM jobs WHERE {due})"
        " SELECT d.id FROM due d LEFT JOIN busy b ON b.acc = d.acc AND b.kind = d.kind"
        " ORDER BY d.place + COALESCE(b.n, 0), d.size, d.run_at, d.id LIMIT ?",
        (
            RUNNING,
            now,
            *kinds,
            PENDING,
            now,
            RUNNING,
            now,
            limit * _CANDIDATES_PER_SLOT,
        ),
    )
    if not ranked:
        return []
    order = {job_id: i for i, job_id in enumerate(ranked)}
    if tx.dialect == "postgresql":
        # lock, in rank order, the first ``limit`` that no other worker holds and
        # that are still due (another may have claimed one since); only the rows
        # returned are locked
        chosen = tx.column(
            "SELECT j.id FROM jobs j JOIN unnest(?::bigint[]) WITH ORDINALITY AS c(id, rank)"
            f" ON j.id = c.id WHERE {due} ORDER BY c.rank LIMIT ? FOR UPDATE OF j SKIP LOCKED",
            (list(order), *kinds, PENDING, now, RUNNING, now, limit),
        )
        if len(chosen) < limit and len(ranked) == limit * _CANDIDATES_PER_SLOT:
            # every candidate was held by other workers, yet more jobs are due:
            # take the next free ones in queue order rather than claim nothing
            seen = ",".join("?" * len(order))
            more = tx.column(
                f"SELECT id FROM jobs WHERE {due} AND id NOT IN ({seen})"
                " ORDER BY run_at, id LIMIT ? FOR UPDATE SKIP LOCKED",
                (*kinds, PENDING, now, RUNNING, now, *order, limit - len(chosen)),
            )
            for job_id in more:
                order[job_id] = len(order)
                chosen.append(job_id)
    else:
        chosen = list(order)[:limit]
    if not chosen:
        return []
    marks_ids = ",".join("?" * len(chosen))
    ids = tx.column(
        "UPDATE jobs SET state = ?, lease_owner = ?, lease_until = ?, attempts = attempts + 1,"
        f" updated_at = ? WHERE id IN ({marks_ids}) AND {due} RETURNING id",
        (RUNNING, owner, now + lease_us, now, *chosen, *kinds, PENDING, now, RUNNING, now),
    )
    if not ids:
        return []
    found = tx.all_as(
        _JobRow,
        f"SELECT {_COLUMNS} FROM {_FROM} WHERE j.id IN ({','.join('?' * len(ids))})",
        ids,
    )
    return sorted((_job(r) for r in found), key=lambda j: order[j.id])


def heartbeat(tx: Tx, *, job_id: int, owner: str, lease_us: int) -> bool:
    """Renew a lease; False if the job is no longer ours (lost, cancelled)."""
    return (
        tx.run(
            "UPDATE jobs SET lease_until = ? WHERE id = ? AND lease_owner = ? AND state = ?",
            (tx.now() + lease_us, job_id, owner, RUNNING),
        )
        > 0
    )


def finish(tx: Tx, *, job_id: int, owner: str, state: JobState, result: Any = None) -> bool:
    return (
        tx.run(
            "UPDATE jobs SET state = ?, result = ?, lease_owner = NULL, lease_until = NULL,"
            " updated_at = ? WHERE id = ? AND lease_owner = ? AND state = ?",
            (
                state.value,
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
    due = tx.scalar(
        f"SELECT MIN(CASE WHEN state = ? THEN run_at ELSE lease_until END) FROM jobs"
        f" WHERE kind IN ({marks}) AND state IN (?, ?)",
        (PENDING, *kinds, PENDING, RUNNING),
    )
    return None if due is None else int(due)


def get(tx: Tx, *, request_id: str, account: str) -> Job | None:
    row = tx.one_as(
        _JobRow,
        f"SELECT {_COLUMNS} FROM {_FROM} WHERE j.request_id = ? AND acc.name = ?",
        (request_id, account),
    )
    return _job(row) if row else None


class QueueDepth(msgspec.Struct, frozen=True):
    kind: str
    #: jobs due now and waiting, and jobs running (their lease held)
    due: int
    running: int
    #: when the oldest due job became due (µs), None if none is due
    oldest_due_at: int | None


def queue_depth(tx: Tx) -> list[QueueDepth]:
    """What waits and what runs, per kind (scheduled jobs not yet due are left out)."""
    now = tx.now()
    rows = tx.all_as(
        _DepthRow,
        "SELECT kind,"
        " SUM(CASE WHEN state = ? AND run_at <= ? THEN 1 ELSE 0 END) AS due,"
        " SUM(CASE WHEN state = ? THEN 1 ELSE 0 END) AS running,"
        " MIN(CASE WHEN state = ? AND run_at <= ? THEN run_at END) AS oldest_due_at"
        " FROM jobs WHERE state IN (?, ?) GROUP BY kind ORDER BY kind",
        (PENDING, now, RUNNING, PENDING, now, PENDING, RUNNING),
    )
    return [QueueDepth(r.kind, int(r.due or 0), int(r.running or 0), r.oldest_due_at) for r in rows]


class _DepthRow(NamedTuple):
    kind: str
    #: sums (NULL when no row was summed), the oldest due time (NULL: none due)
    due: int | None
    running: int | None
    oldest_due_at: int | None


class JobStore:
    """The jobs part of the ``Store``: ``store.jobs``."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def enqueue(
        self, kind: str, account: str | None, params: Params, run_at: int | None = None
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

    async def finish(self, job_id: int, owner: str, state: JobState, result: Any = None) -> bool:
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

    async def queue_depth(self) -> list[QueueDepth]:
        return await self.engine.read(queue_depth)
