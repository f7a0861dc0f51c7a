"""Expanding an audience message into its deliveries, in bounded steps.

An audience message (platforms, users, a selection, or the whole application)
is recorded by createMessage with its targeting and a cursor,
``messages.expand_after``: the id of the last device handled (0 before the
first step; NULL once the expansion is over or the message was cancelled).

A step reads the next devices of the audience in id order
(``d.id > cursor ORDER BY d.id LIMIT n``) and plans their deliveries (codes,
hashes, due times) outside any write transaction, so the writer is never held
while the audience is searched or the rows are built. Then one short write
transaction moves the cursor from the value the step read to the last device
read, and writes those devices' payload templates (the ones the message does
not have yet), deliveries, ``created`` (and ``failed``) events, counters and
the dispatch job that will send them.

Exactly once per device: the cursor moves only by a guarded UPDATE
(``expand_after = <the value read>``), which is the step's first statement and
commits together with its deliveries. A step that loses (another worker moved
the cursor meanwhile, or deleteMessage set it NULL) writes nothing. A crash
before the commit leaves cursor and deliveries as they were; the job resumes
from the cursor. The unique index on ``deliveries (message_id, device_id)``
makes a second delivery of one message to one device impossible regardless.

Lock order (PostgreSQL): every transaction that locks a message row and
delivery, counter or job rows takes the message row first (here; in
deleteMessage; in the dispatcher's ``start_batch`` and, when it may finish the
message, ``record``), so none of them can deadlock another on it.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any, NamedTuple

import msgspec

from pushtrack.domain.targeting import Node
from pushtrack.store.accounts import APP_COLUMNS, APP_FROM, AppRow, app_from_row
from pushtrack.store.base import App, Engine, Tx
from pushtrack.store.dispatch import finish_message
from pushtrack.store.jsontext import loads
from pushtrack.store.messages import (
    DEVICE_COLUMNS,
    AudienceTargeting,
    Device,
    Planned,
    audience_filter,
    ensure_templates,
    message_templates,
    plan_deliveries,
    read_devices,
    write_deliveries,
)

#: Devices per step, at most.
BATCH = 1000

_targeting = msgspec.json.Decoder(AudienceTargeting)


class Expansion(msgspec.Struct, frozen=True):
    """What an audience message's expansion needs to know (it never changes)."""

    message_id: int
    app: App
    notification: dict[str, Any]
    send_at: int
    local_time: bool
    platforms: tuple[int, ...] | None
    users: tuple[str, ...] | None
    selection: Node | None
    #: Where the expansion stands: the last device id handled (None: it is over).
    cursor: int | None


class Step(msgspec.Struct, frozen=True):
    #: The cursor after the step (None: the expansion is over).
    cursor: int | None
    #: Deliveries the step wrote.
    deliveries: int
    #: False: the cursor was not where the step found it; nothing was written.
    won: bool = True
    #: The message's status after the step.
    status: str | None = None
    #: Seconds the step's transaction function ran (the writer held, waits for it aside).
    held: float = 0.0


class _MessageRow(NamedTuple):
    app_id: int
    #: JSON text
    notification: str
    send_at: int
    local_time: int
    #: JSON text (``AudienceTargeting``), NULL for a message to explicit devices
    targeting: str | None
    expand_after: int | None


def load(tx: Tx, *, message_id: int) -> Expansion | None:
    row = tx.one_as(
        _MessageRow,
        "SELECT m.app_id, m.notification, m.send_at, m.local_time, m.targeting, m.expand_after"
        " FROM messages m WHERE m.id = ?",
        (message_id,),
    )
    if row is None:
        return None
    app_row = tx.one_as(
        AppRow, f"SELECT {APP_COLUMNS} FROM {APP_FROM} WHERE a.id = ?", (row.app_id,)
    )
    if app_row is None:
        return None
    targeting = (
        _targeting.decode(row.targeting) if row.targeting is not None else AudienceTargeting()
    )
    return Expansion(
        message_id=message_id,
        app=app_from_row(app_row),
        notification=loads(row.notification),
        send_at=row.send_at,
        local_time=bool(row.local_time),
        platforms=targeting.platforms or None,
        users=targeting.users or None,
        selection=targeting.selection,
        cursor=row.expand_after,
    )


def audience_after(tx: Tx, *, exp: Expansion, after: int, limit: int) -> list[Device]:
    """The next ``limit`` devices of the audience with an id above ``after``, by id."""
    where, params = audience_filter(
        tx, exp.app, exp.platforms, exp.users, exp.selection, after=after
    )
    return read_devices(
        tx,
        f"SELECT {DEVICE_COLUMNS} FROM devices d WHERE {' AND '.join(where)}"
        " AND d.subscribed = 1 ORDER BY d.id LIMIT ?",
        [*params, limit],
    )


class Read(msgspec.Struct, frozen=True):
    """What a step read, and its deliveries planned, before its write transaction."""

    after: int
    #: The last device id read (``after`` if none).
    cursor: int
    #: Fewer devices than asked for: the audience ends here.
    last: bool
    planned: Planned


def read_step(tx: Tx, *, exp: Expansion, after: int, limit: int) -> Read:
    """The next devices of the audience after ``after``, and their deliveries planned."""
    devices = audience_after(tx, exp=exp, after=after, limit=limit)
    planned = plan_deliveries(
        tx.now(), exp.send_at, exp.local_time, [(d.hwid, d) for d in devices], exp.notification
    )
    cursor = devices[-1].id if devices else after
    return Read(after=after, cursor=cursor, last=len(devices) < limit, planned=planned)


def write_step(tx: Tx, *, exp: Expansion, read: Read) -> Step:
    """Write a step's deliveries and move the cursor from where the step read it.

    With ``read.last`` the expansion ends here too: the message is done at
    once if nothing of it is left to send.
    """
    started = time.perf_counter()
    step = _write_step(tx, exp, read)
    return msgspec.structs.replace(step, held=time.perf_counter() - started)


def _write_step(tx: Tx, exp: Expansion, read: Read) -> Step:
    mid = exp.message_id
    n = len(read.planned)
    won = tx.run(
        "UPDATE messages SET expand_after = ?, deliveries = deliveries + ?"
        " WHERE id = ? AND expand_after = ?",
        (None if read.last else read.cursor, n, mid, read.after),
    )
    if not won:
        return Step(cursor=None, deliveries=0, won=False)
    if n:
        templates = message_templates(tx, mid)
        ensure_templates(tx, mid, exp.notification, read.planned.keys, templates)
        write_deliveries(tx, mid, read.planned, templates, app_id=exp.app.id)
    if not read.last:
        return Step(cursor=read.cursor, deliveries=n)
    return Step(cursor=None, deliveries=n, status=finish_message(tx, message_id=mid))


def stop(tx: Tx, *, message_id: int) -> str | None:
    """End an expansion where it stands (its selection can no longer be compiled).

    What was written stays and is sent; the message is done once that has ended.
    """
    if not tx.run(
        "UPDATE messages SET expand_after = NULL WHERE id = ? AND expand_after IS NOT NULL",
        (message_id,),
    ):
        return None
    return finish_message(tx, message_id=message_id)


class ExpansionStore:
    """The expansion part of the ``Store``: ``store.expansion``."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def load(self, message_id: int) -> Expansion | None:
        return await self.engine.read(partial(load, message_id=message_id))

    async def stop(self, message_id: int) -> str | None:
        return await self.engine.write(partial(stop, message_id=message_id))

    async def read(self, exp: Expansion, after: int, limit: int = BATCH) -> Read:
        """A step's first half: the next devices, their deliveries planned (no writer held)."""
        limit = max(1, min(limit, BATCH))
        return await self.engine.read(partial(read_step, exp=exp, after=after, limit=limit))

    async def write(self, exp: Expansion, read: Read) -> Step:
        """A step's second half: one short write transaction."""
        return await self.engine.write(partial(write_step, exp=exp, read=read))

    async def step(self, exp: Expansion, after: int, limit: int = BATCH) -> Step:
        """One whole step: ``read`` then ``write``."""
        return await self.write(exp, await self.read(exp, after, limit))
