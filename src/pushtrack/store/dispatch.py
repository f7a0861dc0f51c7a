"""The store's side of sending: gateway settings, loading due deliveries, outcomes.

A dispatch job covers an id range of one message's deliveries. Every status
change here is a guarded update of the delivery row (``state``) that returns
the rows it won, and only those get an event and a counter: a delivery is
marked ``sent`` once, ends ``delivered`` or ``failed`` once, and a delivery
that already ended is never loaded for sending again.

A message with a ``send_rate`` (deliveries per second) is throttled here: each
batch claims send slots on the message row (``rate_at``, when the next
delivery may go) in the transaction that marks its deliveries ``sent``, so the
rate holds across the message's jobs and workers, and a crash loses no slot
that was not used.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, NamedTuple

import msgspec

from pushtrack.domain import codes
from pushtrack.domain.status import DESC_CANCELLED, DESC_UNSUBSCRIBED, Status
from pushtrack.store.base import ConflictError, Engine, Tx
from pushtrack.store.tracking import code_of, tracking_key
from pushtrack.store.tx import append_events, dumps, loads

_SENT, _CREATED = int(Status.SENT), int(Status.CREATED)

#: A throttled message sends in bursts of this many seconds' worth of its rate.
RATE_WINDOW_US = 250_000


class Due(msgspec.Struct, frozen=True):
    """A delivery ready to hand to a gateway."""

    delivery_id: int
    tracking_code: str
    platform: int
    push_token: str
    hash: str
    user_id: str
    attempts: int
    payload_id: int
    #: The device's browser subscription keys (p256dh, auth), if it registered them apart.
    web_keys: tuple[str, str] | None = None


class Batch(msgspec.Struct, frozen=True):
    app_id: int
    message_id: int
    message_status: str
    due: list[Due]
    payloads: dict[int, tuple[dict[str, Any], dict[str, Any]]]  # id -> (body, options)
    #: When the next not-yet-due delivery of the range is due (None: nothing waits).
    next_due: int | None
    #: Deliveries of the range were due but held back by the message's send_rate.
    throttled: bool = False
    #: The message id payloads carry (``md.mid``): the one tenants are shown.
    shown_id: int = 0


class Result(msgspec.Struct, frozen=True):
    """One gateway outcome, as the store records it."""

    delivery_id: int
    status: Status | None  # DELIVERED / FAILED, or None to retry
    description: str
    unsubscribe: bool = False
    retry_at: int | None = None
    #: The id the gateway gave the notification (apns-id, FCM message name, Web Push
    #: Location), kept with the event that records the outcome.
    gateway_id: str | None = None
    #: What kind of failure (``delivery/failures.py``), for FAILED and retried outcomes.
    failure_class: str | None = None


class DeadToken(NamedTuple):
    """A token a gateway's answer says is dead: the devices holding it are unsubscribed
    and written to the dead-token ledger."""

    token: str
    #: When the gateway says the token stopped being valid (µs), if it says.
    since: int | None
    #: The delivery whose answer found it, and the gateway's reason.
    delivery_id: int
    reason: str


def set_gateway(
    tx: Tx, *, account: str, app_code: str, platform: int, kind: str, config: dict[str, Any]
) -> None:
    row = tx.one(
        "SELECT a.id FROM applications a JOIN accounts acc ON acc.id = a.account_id"
        " WHERE a.code = ? AND acc.name = ?",
        (app_code, account),
    )
    if row is None:
        raise ConflictError(f"no application {app_code} in account {account!r}")
    tx.run(
        "INSERT INTO gateways (app_id, platform, kind, config, updated_at) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (app_id, platform) DO UPDATE SET kind = excluded.kind,"
        " config = excluded.config, updated_at = excluded.updated_at,"
        " paused_at = NULL, paused_reason = NULL",  # new settings lift a pause
        (row[0], platform, kind, dumps(config), tx.now()),
    )


def reseal_gateway(
    tx: Tx, *, app_id: int, platform: int, old: dict[str, Any], new: dict[str, Any]
) -> bool:
    """Store the same settings sealed anew (no new version, no lifted pause); False if
    they changed meanwhile."""
    return bool(
        tx.all(
            "UPDATE gateways SET config = ? WHERE app_id = ? AND platform = ? AND config = ?"
            " RETURNING app_id",
            (dumps(new), app_id, platform, dumps(old)),
        )
    )


def gateways(tx: Tx, *, app_id: int) -> dict[int, tuple[str, dict[str, Any], int]]:
    """platform -> (kind, settings, version) of an application."""
    rows = tx.all(
        "SELECT platform, kind, config, updated_at FROM gateways WHERE app_id = ?", (app_id,)
    )
    return {r[0]: (r[1], loads(r[2]), r[3]) for r in rows}


def gateway_kinds(tx: Tx, *, app_id: int) -> dict[int, str]:
    """platform -> gateway kind, without the settings (safe to show)."""
    return {
        r[0]: r[1]
        for r in tx.all("SELECT platform, kind FROM gateways WHERE app_id = ?", (app_id,))
    }


def start_batch(
    tx: Tx,
    *,
    message_id: int,
    first: int,
    last: int,
    refuse: Callable[[int], str | None],
    rate: int | None = None,
) -> Batch | None:
    """Load a range's due deliveries and mark them ``sent``, in one transaction.

    ``refuse(platform)`` names why a platform cannot be sent to (no gateway),
    or None; such deliveries, and those whose device unsubscribed meanwhile,
    end ``failed`` here. A cancelled message's range ends ``failed``/``Cancelled``.
    With ``rate`` (the message's deliveries per second) only as many as its
    send slots allow are taken; ``next_due`` then says when more may go.
    """
    # The message row first (see store/expansion.py on lock order); once it is held,
    # a deleteMessage either committed before (and is seen below) or waits for us.
    lock_message(tx, message_id)
    msg = tx.one("SELECT app_id, status FROM messages WHERE id = ?", (message_id,))
    if msg is None:
        return None
    if msg[1] == "cancelled":
        cancel_rest(tx, message_id=message_id, first=first, last=last)
        return Batch(msg[0], message_id, msg[1], [], {}, None)
    now = tx.now()
    rows = tx.all(
        "SELECT d.id, d.legacy_code, d.platform, dev.push_token, dev.subscribed, d.hash,"
        " COALESCE(d.user_id, d.hwid), d.attempts, d.payload_id, d.next_at, d.state,"
        " dev.web_p256dh, dev.web_auth"
        " FROM deliveries d LEFT JOIN devices dev ON dev.id = d.device_id"
        " WHERE d.id BETWEEN ? AND ? AND d.message_id = ? AND d.state IN (?, ?)"
        " ORDER BY d.id",
        (first, last, message_id, _CREATED, _SENT),
    )
    due: list[Due] = []
    refused: list[tuple[int, int, str]] = []
    next_due: int | None = None
    key = tracking_key(tx) if rows else b""
    for r in rows:
        if r[9] is not None and r[9] > now:
            next_due = r[9] if next_due is None else min(next_due, r[9])
            continue
        if not r[3] or not r[4]:
            # The device unsubscribed after the message was created.
            refused.append((r[0], r[2], DESC_UNSUBSCRIBED))
            continue
        reason = refuse(r[2])
        if reason is not None:
            refused.append((r[0], r[2], reason))
            continue
        keys = (r[11], r[12]) if r[11] and r[12] else None
        code = code_of(key, r[0], r[1])
        due.append(Due(r[0], code, r[2], r[3], r[5], r[6], r[7], r[8], keys))
    if refused:
        fail(tx, message_id, refused)
    throttled = False
    if rate and due:
        taken, slot = _claim_slots(tx, message_id, now, rate, len(due))
        if taken < len(due):
            throttled = True
            due = due[:taken]
            next_due = slot if next_due is None else min(next_due, slot)
    if due:
        tx.run(
            "UPDATE messages SET status = 'sending' WHERE id = ? AND status IN ('pending',"
            " 'scheduled')",
            (message_id,),
        )
        mark_sent(
            tx, message_id=message_id, first=first, last=due[-1].delivery_id, now=now, due=due
        )
    payload_ids = sorted({d.payload_id for d in due})
    payloads: dict[int, tuple[dict[str, Any], dict[str, Any]]] = {}
    for start in range(0, len(payload_ids), 500):
        part = payload_ids[start : start + 500]
        for pid, body, options in tx.all(
            f"SELECT id, body, options FROM payloads WHERE id IN ({','.join('?' * len(part))})",
            part,
        ):
            payloads[pid] = (loads(body), loads(options))
    shown = codes.shown_message_id(key, message_id) if key else 0
    return Batch(msg[0], message_id, msg[1], due, payloads, next_due, throttled, shown)


def _claim_slots(tx: Tx, message_id: int, now: int, rate: int, wanted: int) -> tuple[int, int]:
    """Take up to ``wanted`` send slots of a throttled message: (taken, when the next is free).

    Slots are 1/rate seconds apart; a batch takes those up to one window ahead of
    now, so a message sends ``rate`` per second in bursts, and an idle spell
    saves up no burst larger than one window.
    """
    # The UPDATE takes the message row's lock first (PostgreSQL): concurrent jobs of
    # one message claim their slots one after the other.
    (rate_at,) = tx.one(
        "UPDATE messages SET rate_at = COALESCE(rate_at, 0) WHERE id = ? RETURNING rate_at",
        (message_id,),
    ) or (0,)
    start = max(int(rate_at or 0), now)
    room = now + RATE_WINDOW_US - start
    taken = min(wanted, room * rate // 1_000_000) if room > 0 else 0
    if taken == 0 and start <= now:
        taken = 1  # a rate under one per window still sends
    slot = start + -(-taken * 1_000_000 // rate)  # ceil
    if taken:
        tx.run("UPDATE messages SET rate_at = ? WHERE id = ?", (slot, message_id))
    return taken, slot


def _won(
    tx: Tx,
    ids: Sequence[int],
    new: int,
    old: Sequence[int],
    extra: str = "",
    params: Sequence[Any] = (),
) -> set[int]:
    won: set[int] = set()
    for start in range(0, len(ids), 900):
        part = ids[start : start + 900]
        rows = tx.all(
            f"UPDATE deliveries SET state = ?{extra} WHERE id IN ({','.join('?' * len(part))})"
            f" AND state IN ({','.join('?' * len(old))}) RETURNING id",
            (new, *params, *part, *old),
        )
        won.update(r[0] for r in rows)
    return won


def mark_sent(
    tx: Tx, *, message_id: int, first: int, last: int, now: int, due: Sequence[Due]
) -> None:
    """Record ``sent`` for a range's due deliveries not yet marked.

    Runs in the transaction that loaded ``due`` and failed the rest of the
    range's due deliveries, so the deliveries still ``created`` and due in
    ``first..last`` (``last``: the last of ``due``, which is in id order) are
    exactly those of ``due`` not sent before: one range UPDATE marks them.
    """
    rows = tx.all(
        "UPDATE deliveries SET state = ? WHERE id BETWEEN ? AND ? AND message_id = ?"
        " AND state = ? AND (next_at IS NULL OR next_at <= ?) RETURNING id",
        (_SENT, first, last, message_id, _CREATED, now),
    )
    won = {r[0] for r in rows}
    append_events(
        tx,
        [
            (d.delivery_id, Status.SENT, "Sent", message_id, d.platform)
            for d in due
            if d.delivery_id in won
        ],
    )


def fail(tx: Tx, message_id: int, items: Sequence[tuple[int, int, str]]) -> None:
    """End (delivery, platform, description) items ``failed`` unless they already ended."""
    won = _won(tx, [i[0] for i in items], int(Status.FAILED), (_CREATED, _SENT))
    append_events(tx, [(d, Status.FAILED, desc, message_id, p) for d, p, desc in items if d in won])


def record(
    tx: Tx,
    *,
    message_id: int,
    platforms: dict[int, int],
    results: Sequence[Result],
    unsubscribe_tokens: Sequence[DeadToken],
    app_id: int,
    finish: bool,
) -> str | None:
    """Write a batch of gateway outcomes (``platforms``: delivery -> platform).

    The guarded UPDATE that ends a delivery also counts the try (``attempts``), and
    the event it wins keeps the gateway's id and the failure class: no statement
    more per delivery. With ``finish`` (nothing of the range waits any more) the
    message is marked done once every delivery has ended; its status is then returned.
    """
    if finish:
        lock_message(tx, message_id)
    tried = ", attempts = attempts + 1"
    delivered = [r for r in results if r.status is Status.DELIVERED]
    if delivered:
        won = _won(tx, [r.delivery_id for r in delivered], int(Status.DELIVERED), (_SENT,), tried)
        append_events(
            tx,
            [
                (
                    r.delivery_id,
                    Status.DELIVERED,
                    r.description,
                    message_id,
                    platforms[r.delivery_id],
                    r.gateway_id,
                    None,
                )
                for r in delivered
                if r.delivery_id in won
            ],
        )
    failed = [r for r in results if r.status is Status.FAILED]
    if failed:
        won = _won(
            tx, [r.delivery_id for r in failed], int(Status.FAILED), (_CREATED, _SENT), tried
        )
        append_events(
            tx,
            [
                (
                    r.delivery_id,
                    Status.FAILED,
                    r.description,
                    message_id,
                    platforms[r.delivery_id],
                    r.gateway_id,
                    r.failure_class,
                )
                for r in failed
                if r.delivery_id in won
            ],
        )
    retry: dict[tuple[int, str, str | None], list[int]] = defaultdict(list)
    for r in results:
        if r.status is None and r.retry_at is not None:
            retry[(r.retry_at, r.description, r.failure_class)].append(r.delivery_id)
    for (when, reason, cls), ids in retry.items():
        _won(
            tx,
            ids,
            _SENT,
            (_SENT,),
            ", attempts = attempts + 1, next_at = ?, retry_reason = ?, retry_class = ?",
            (when, reason, cls),
        )
    _unsubscribe(tx, app_id, message_id, unsubscribe_tokens)
    return finish_message(tx, message_id=message_id) if finish else None


def _unsubscribe(tx: Tx, app_id: int, message_id: int, tokens: Sequence[DeadToken]) -> None:
    """Unsubscribe the devices holding dead tokens, and write each one unsubscribed to
    the dead-token ledger. A token the gateway says is dead since a time stays with a
    device that registered it after that time."""
    if not tokens:
        return
    now = tx.now()
    found: dict[str, DeadToken] = {t.token: t for t in tokens}
    gone: list[tuple[Any, ...]] = []
    returning = " AND subscribed = 1 RETURNING id, hwid, push_token, device_type"
    always = [t.token for t in tokens if t.since is None]
    for start in range(0, len(always), 900):
        part = always[start : start + 900]
        gone += tx.all(
            "UPDATE devices SET subscribed = 0, updated_at = ? WHERE app_id = ?"
            f" AND push_token IN ({','.join('?' * len(part))}){returning}",
            (now, app_id, *part),
        )
    for t in tokens:
        if t.since is not None:
            gone += tx.all(
                "UPDATE devices SET subscribed = 0, updated_at = ? WHERE app_id = ?"
                f" AND push_token = ? AND (token_at IS NULL OR token_at <= ?){returning}",
                (now, app_id, t.token, t.since),
            )
    if gone:
        tx.many(
            "INSERT INTO dead_tokens (app_id, device_id, hwid, push_token, platform, reason,"
            " message_id, delivery_id, found_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (app_id, device_id, hwid, token, platform, found[token].reason, message_id,
                 found[token].delivery_id, now)
                for device_id, hwid, token, platform in sorted(gone)
            ],
        )  # fmt: skip


def send_rate(tx: Tx, *, message_id: int) -> int | None:
    row = tx.one("SELECT notification FROM messages WHERE id = ?", (message_id,))
    if row is None:
        return None
    rate = loads(row[0]).get("send_rate")
    return rate if isinstance(rate, int) and not isinstance(rate, bool) and rate > 0 else None


def app_of(tx: Tx, *, message_id: int) -> int | None:
    row = tx.one("SELECT app_id FROM messages WHERE id = ?", (message_id,))
    return int(row[0]) if row else None


def lock_message(tx: Tx, message_id: int) -> None:
    """Hold a message's row until commit (PostgreSQL; SQLite has one writer anyway).

    Whoever may end a message (the last outcomes of its deliveries, the last
    step of its expansion) takes this lock before looking, so of two such
    transactions committing together the second sees what the first wrote.
    """
    if tx.dialect == "postgresql":
        tx.one("SELECT 1 FROM messages WHERE id = ? FOR UPDATE", (message_id,))


def finish_message(tx: Tx, *, message_id: int) -> str:
    """Mark a message done once every delivery has ended; its status after.

    A message whose audience is still being expanded (``expand_after`` set)
    is not done, whatever its deliveries so far.
    """
    lock_message(tx, message_id)
    tx.run(
        "UPDATE messages SET status = 'done' WHERE id = ? AND status IN ('pending', 'scheduled',"
        " 'sending') AND expand_after IS NULL AND NOT EXISTS (SELECT 1 FROM deliveries"
        " WHERE message_id = ? AND state IN (?, ?))",
        (message_id, message_id, _CREATED, _SENT),
    )
    row = tx.one("SELECT status FROM messages WHERE id = ?", (message_id,))
    return str(row[0]) if row else "unknown"


def cancel_rest(tx: Tx, *, message_id: int, first: int, last: int) -> None:
    """A cancelled message: end what is left of a range ``failed``/``Cancelled``."""
    rows = tx.all(
        "SELECT id, platform FROM deliveries WHERE id BETWEEN ? AND ? AND message_id = ?"
        " AND state IN (?, ?)",
        (first, last, message_id, _CREATED, _SENT),
    )
    fail(tx, message_id, [(d, p, DESC_CANCELLED) for d, p in rows])


class Pause(msgspec.Struct, frozen=True):
    """A gateway paused because its credentials were refused."""

    #: When it was paused, or last probed while paused (µs UTC).
    since: int
    reason: str


class GatewayState(msgspec.Struct, frozen=True):
    """What ``pushtrack app gateways`` shows of one platform's gateway (no settings)."""

    kind: str
    pause: Pause | None = None


def gateway_pauses(tx: Tx, *, app_id: int) -> dict[int, Pause]:
    """platform -> pause, for an application's paused gateways."""
    rows = tx.all(
        "SELECT platform, paused_at, paused_reason FROM gateways"
        " WHERE app_id = ? AND paused_at IS NOT NULL",
        (app_id,),
    )
    return {r[0]: Pause(int(r[1]), str(r[2] or "")) for r in rows}


def gateway_states(tx: Tx, *, app_id: int) -> dict[int, GatewayState]:
    """platform -> kind and pause of an application's gateways (safe to show)."""
    rows = tx.all(
        "SELECT platform, kind, paused_at, paused_reason FROM gateways WHERE app_id = ?",
        (app_id,),
    )
    return {
        r[0]: GatewayState(r[1], Pause(int(r[2]), str(r[3] or "")) if r[2] is not None else None)
        for r in rows
    }


def pause_gateway(tx: Tx, *, app_id: int, platform: int, version: int, reason: str) -> bool:
    """Pause a gateway whose settings are still those of ``version`` (its ``updated_at``):
    settings changed meanwhile are not paused for what the old ones got. True if paused
    now (False: already paused, or its settings changed)."""
    row = tx.one(
        "UPDATE gateways SET paused_at = ?, paused_reason = ? WHERE app_id = ? AND platform = ?"
        " AND updated_at = ? AND paused_at IS NULL RETURNING platform",
        (tx.now(), reason, app_id, platform, version),
    )
    if row is None:
        # already paused: the failed probe starts a new probe interval
        tx.run(
            "UPDATE gateways SET paused_at = ?, paused_reason = ? WHERE app_id = ?"
            " AND platform = ? AND updated_at = ? AND paused_at IS NOT NULL",
            (tx.now(), reason, app_id, platform, version),
        )
    return row is not None


def claim_probe(tx: Tx, *, app_id: int, platform: int, since: int) -> bool:
    """Take the turn to probe a paused gateway (one sender per probe interval): True if
    the pause was still the one seen at ``since``; its time moves to now."""
    row = tx.one(
        "UPDATE gateways SET paused_at = ? WHERE app_id = ? AND platform = ? AND paused_at = ?"
        " RETURNING platform",
        (tx.now(), app_id, platform, since),
    )
    return row is not None


def resume_gateway(tx: Tx, *, app_id: int, platform: int) -> bool:
    """Lift a gateway's pause (its credentials worked again). True if it was paused."""
    row = tx.one(
        "UPDATE gateways SET paused_at = NULL, paused_reason = NULL WHERE app_id = ?"
        " AND platform = ? AND paused_at IS NOT NULL RETURNING platform",
        (app_id, platform),
    )
    return row is not None


def send_time(tx: Tx, *, message_id: int) -> tuple[int, bool] | None:
    """(when a message was to go out: the later of its ``send_at`` and its creation, µs;
    whether it goes at local time), or None when it is gone."""
    row = tx.one("SELECT send_at, created_at, local_time FROM messages WHERE id = ?", (message_id,))
    return (max(int(row[0]), int(row[1])), bool(row[2])) if row else None


class DispatchStore:
    """The sending part of the ``Store``: ``store.dispatch``."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def set_gateway(
        self, account: str, app_code: str, platform: int, kind: str, config: dict[str, Any]
    ) -> None:
        await self.engine.write(
            partial(
                set_gateway,
                account=account,
                app_code=app_code,
                platform=platform,
                kind=kind,
                config=config,
            )
        )

    async def reseal_gateway(
        self, app_id: int, platform: int, old: dict[str, Any], new: dict[str, Any]
    ) -> bool:
        return await self.engine.write(
            partial(reseal_gateway, app_id=app_id, platform=platform, old=old, new=new)
        )

    async def gateways(self, app_id: int) -> dict[int, tuple[str, dict[str, Any], int]]:
        return await self.engine.read(partial(gateways, app_id=app_id))

    async def gateway_kinds(self, app_id: int) -> dict[int, str]:
        return await self.engine.read(partial(gateway_kinds, app_id=app_id))

    async def gateway_pauses(self, app_id: int) -> dict[int, Pause]:
        return await self.engine.read(partial(gateway_pauses, app_id=app_id))

    async def gateway_states(self, app_id: int) -> dict[int, GatewayState]:
        return await self.engine.read(partial(gateway_states, app_id=app_id))

    async def pause_gateway(self, app_id: int, platform: int, version: int, reason: str) -> bool:
        return await self.engine.write(
            partial(pause_gateway, app_id=app_id, platform=platform, version=version, reason=reason)
        )

    async def claim_probe(self, app_id: int, platform: int, since: int) -> bool:
        return await self.engine.write(
            partial(claim_probe, app_id=app_id, platform=platform, since=since)
        )

    async def resume_gateway(self, app_id: int, platform: int) -> bool:
        return await self.engine.write(partial(resume_gateway, app_id=app_id, platform=platform))

    async def send_time(self, message_id: int) -> tuple[int, bool] | None:
        return await self.engine.read(partial(send_time, message_id=message_id))

    async def app_of(self, message_id: int) -> int | None:
        return await self.engine.read(partial(app_of, message_id=message_id))

    async def start_batch(
        self,
        message_id: int,
        first: int,
        last: int,
        refuse: Callable[[int], str | None],
        rate: int | None = None,
    ) -> Batch | None:
        return await self.engine.write(
            partial(
                start_batch,
                message_id=message_id,
                first=first,
                last=last,
                refuse=refuse,
                rate=rate,
            )
        )

    async def send_rate(self, message_id: int) -> int | None:
        """A message's ``send_rate`` (deliveries per second), or None when unthrottled."""
        return await self.engine.read(partial(send_rate, message_id=message_id))

    async def record(
        self,
        message_id: int,
        app_id: int,
        platforms: dict[int, int],
        results: Sequence[Result],
        unsubscribe_tokens: Sequence[DeadToken],
        finish: bool,
    ) -> str | None:
        return await self.engine.write(
            partial(
                record,
                message_id=message_id,
                app_id=app_id,
                platforms=platforms,
                results=results,
                unsubscribe_tokens=unsubscribe_tokens,
                finish=finish,
            )
        )

    async def finish_message(self, message_id: int) -> str:
        return await self.engine.write(partial(finish_message, message_id=message_id))
