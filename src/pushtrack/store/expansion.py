"""Expanding an audience message into its deliveries, in bounded steps.

An audience message (platforms, users, a selection, or the whole application)
is recorded by createMessage with its targeting and a cursor,
``messages.expand_after``: the id of the last device handled (0 before the
first step; NULL once the expansion is over or the message was cancelled).

A step reads the next devices of the audience in id order
(``d.id > cursor ORDER BY d.id LIMIT n``) outside any write transaction, so
the writer is never held while the audience is searched. Then one short write
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

Lock order (PostgreSQL): every transaction that changes a message row changes
it before any delivery, counter or job row (here, in deleteMessage and in the
dispatcher's ``start_batch`` and ``record``), so none of them can deadlock
another on it.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import msgspec

from pushtrack.domain.targeting import Node
from pushtrack.store.base import App, Engine, Tx
from pushtrack.store.dispatch import finish_message
from pushtrack.store.messages import (
    DEVICE_COLUMNS,
    AudienceTargeting,
    Device,
    build_deliveries,
    ensure_templates,
    message_templates,
    write_deliveries,
)
from pushtrack.store.targeting import audience_where
from pushtrack.store.tx import APP_COLUMNS, APP_FROM, app_from_row, loads

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


def load(tx: Tx, *, message_id: int) -> Expansion | None:
    row = tx.one(
        "SELECT m.app_id, m.notification, m.send_at, m.local_time, m.targeting, m.expand_after"
        " FROM messages m WHERE m.id = ?",
        (message_id,),
    )
    if row is None:
        return None
    app_row = tx.one(f"SELECT {APP_COLUMNS} FROM {APP_FROM} WHERE a.id = ?", (row[0],))
    if app_row is None:
        return None
    targeting = _targeting.decode(row[4]) if row[4] is not None else AudienceTargeting()
    return Expansion(
        message_id=message_id,
        app=app_from_row(app_row),
        notification=loads(row[1]),
        send_at=row[2],
        local_time=bool(row[3]),
        platforms=targeting.platforms or None,
        users=targeting.users or None,
        selection=targeting.selection,
        cursor=row[5],
    )


def audience_after(tx: Tx, *, exp: Expansion, after: int, limit: int) -> list[Device]:
    """The next ``limit`` devices of the audience with an id above ``after``, by id."""
    where = ["d.app_id = ?", "d.subscribed = 1", "d.id > ?"]
    params: list[Any] = [exp.app.id, after]
    if exp.platforms:
        where.append(f"d.device_type IN ({','.join('?' * len(exp.platforms))})")
        params.extend(exp.platforms)
    if exp.users:
        where.append(f"d.user_id IN ({','.join('?' * len(exp.users))})")
        params.extend(exp.users)
    if exp.selection is not None:
        selected, more = audience_where(tx, exp.app, exp.selection)
        where.append(selected)
        params.extend(more)
    params.append(limit)
    return tx.all(
        f"SELECT {DEVICE_COLUMNS} FROM devices d WHERE {' AND '.join(where)} ORDER BY d.id LIMIT ?",
        params,
    )


def write_step(tx: Tx, *, exp: Expansion, after: int, devices: list[Device], last: bool) -> Step:
    """Write the deliveries of ``devices`` (read after ``after``) and move the cursor.

    With ``last`` (the read found fewer devices than it asked for) the
    expansion ends here too: the message is done at once if nothing of it is
    left to send.
    """
    mid = exp.message_id
    cursor = devices[-1][0] if devices else after
    won = tx.run(
        "UPDATE messages SET expand_after = ?, deliveries = deliveries + ?"
        " WHERE id = ? AND expand_after = ?",
        (None if last else cursor, len(devices), mid, after),
    )
    if not won:
        return Step(cursor=None, deliveries=0, won=False)
    if devices:
        targets = [(dev[1], dev) for dev in devices]
        templates = ensure_templates(tx, mid, exp.notification, targets, message_templates(tx, mid))
        built = build_deliveries(
            tx, mid, exp.send_at, exp.local_time, targets, templates, exp.notification
        )
        write_deliveries(tx, mid, built)
    if not last:
        return Step(cursor=cursor, deliveries=len(devices))
    return Step(cursor=None, deliveries=len(devices), status=finish_message(tx, message_id=mid))


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

    async def step(self, exp: Expansion, after: int, limit: int = BATCH) -> Step:
        """One step: read the next devices (no writer held), then write them."""
        limit = max(1, min(limit, BATCH))
        devices = await self.engine.read(partial(audience_after, exp=exp, after=after, limit=limit))
        return await self.engine.write(
            partial(write_step, exp=exp, after=after, devices=devices, last=len(devices) < limit)
        )
