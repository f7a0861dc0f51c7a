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

import functools
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Sequence
from functools import partial
from typing import Any, NamedTuple

import msgspec

from pushtrack.domain import codes
from pushtrack.domain.jobs import JobKind
from pushtrack.domain.status import (
    COUNTER_OF,
    DESC_CANCELLED,
    DESC_UNSUBSCRIBED,
    MessageStatus,
    Status,
)
from pushtrack.store.base import ConflictError, Engine, Tx
from pushtrack.store.events import COUNTER_SHARDS, COUNTER_TABLES, bump_counts
from pushtrack.store.jsontext import dumps, loads
from pushtrack.store.tracking import tracking_key

_SENT, _CREATED = int(Status.SENT), int(Status.CREATED)

#: platform -> (kind, settings, version) of an application's gateways.
Gateways = dict[int, tuple[str, dict[str, Any], int]]

#: A throttled message sends in bursts of this many seconds' worth of its rate.
RATE_WINDOW_US = 250_000

_M = MessageStatus
#: A message's first batch goes out: it is sending (unless it ended or was cancelled).
_TO_SENDING = (
    f"UPDATE messages SET status = '{_M.SENDING}' WHERE id = ?"
    f" AND status IN ('{_M.PENDING}', '{_M.SCHEDULED}')"
)
#: A message none of whose deliveries is left to send (and whose audience is expanded) is
#: done.
_TO_DONE = (
    f"UPDATE messages SET status = '{_M.DONE}' WHERE id = ? AND status IN"
    f" ('{_M.PENDING}', '{_M.SCHEDULED}', '{_M.SENDING}') AND expand_after IS NULL"
    " AND NOT EXISTS (SELECT 1 FROM deliveries WHERE message_id = ? AND state IN (?, ?))"
)


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
    #: An earlier run handed it to a gateway and recorded no outcome (the worker died, or
    #: lost the job's lease): a request may have reached the gateway (docs/api.md §7.3).
    in_flight: bool = False


class Pause(msgspec.Struct, frozen=True):
    """A gateway paused because its credentials were refused."""

    #: When it was paused, or last probed while paused (µs UTC).
    since: int
    reason: str


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
    #: platform -> pause, of the application's gateways paused when the batch started.
    pauses: dict[int, Pause] = msgspec.field(default_factory=dict)
    #: Paused platforms this batch won the turn to probe: their deliveries are in ``due``.
    probing: frozenset[int] = frozenset()
    #: Due deliveries of the other paused platforms: not sent, not marked ``sent``; they
    #: wait (``next_at``) until the next probe, or end if their time runs out first.
    held: list[Due] = msgspec.field(default_factory=list)
    #: When the held deliveries are looked at again.
    held_until: int | None = None
    #: The job's context, read by this batch's transaction (a job's first batch only).
    context: JobContext | None = None


class Ended(NamedTuple):
    """Deliveries that end with one status and one description (a batch's outcomes
    come in a few such groups: recorded with one statement each)."""

    status: Status  # DELIVERED or FAILED
    description: str
    #: What kind of failure (``delivery/failures.py``) for FAILED, else None.
    failure_class: str | None
    delivery_ids: list[int]
    #: The id the gateway gave each notification (apns-id, FCM message name, Web Push
    #: Location), beside ``delivery_ids``; kept with the event that records the outcome.
    gateway_ids: list[str | None] | None = None
    #: Whether they were tried (False: held back by a paused gateway until they ran
    #: out of time; no attempt is counted).
    tried: bool = True


class DeadToken(NamedTuple):
    """A token a gateway's answer says is dead: the devices holding it are unsubscribed
    and written to the dead-token ledger."""

    token: str
    #: When the gateway says the token stopped being valid (µs), if it says.
    since: int | None
    #: The delivery whose answer found it, and the gateway's reason.
    delivery_id: int
    reason: str


class JobContext(msgspec.Struct, frozen=True):
    """What a dispatch job reads of its message and application once: in the
    transaction that starts its first batch (``start_batch``), so the gateway settings
    it sends with are those that batch's refusals and pauses were decided on."""

    app_id: int
    #: When the message was to go out (µs): the later of its send_at and its creation.
    send_time: int
    #: It goes at each device's local time (its last zone is reached later).
    local_time: bool
    #: Its send_rate (deliveries per second), None when unthrottled.
    rate: int | None
    #: platform -> (kind, settings, version) of the application's gateways.
    gateways: Gateways


class _AppId(NamedTuple):
    app_id: int


class _GatewayRow(NamedTuple):
    platform: int
    kind: str
    config: str
    updated_at: int


class _GatewayKind(NamedTuple):
    platform: int
    kind: str


class _PauseRow(NamedTuple):
    platform: int
    paused_at: int
    paused_reason: str | None


class _GatewayStateRow(NamedTuple):
    platform: int
    kind: str
    paused_at: int | None
    paused_reason: str | None


class _Status(NamedTuple):
    status: str


class _MessageState(NamedTuple):
    """What every batch reads of its message row."""

    app_id: int
    status: str


#: The columns of ``_MessageState``.
_MESSAGE_STATE_SQL = "SELECT app_id, status FROM messages WHERE id = ?"


class _MessageContext(NamedTuple):
    """What a job's first batch reads of its message row: ``_MessageState`` and what
    ``JobContext`` is made of."""

    app_id: int
    status: str
    send_at: int
    created_at: int
    local_time: int | bool
    notification: str


#: The columns of ``_MessageContext``.
_MESSAGE_CONTEXT_SQL = (
    "SELECT app_id, status, send_at, created_at, local_time, notification"
    " FROM messages WHERE id = ?"
)


def set_gateway(
    tx: Tx, *, account: str, app_code: str, platform: int, kind: str, config: dict[str, Any]
) -> None:
    app = tx.one_as(
        _AppId,
        "SELECT a.id AS app_id FROM applications a JOIN accounts acc ON acc.id = a.account_id"
        " WHERE a.code = ? AND acc.name = ?",
        (app_code, account),
    )
    if app is None:
        raise ConflictError(f"no application {app_code} in account {account!r}")
    tx.run(
        "INSERT INTO gateways (app_id, platform, kind, config, updated_at) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (app_id, platform) DO UPDATE SET kind = excluded.kind,"
        " config = excluded.config, updated_at = excluded.updated_at,"
        " paused_at = NULL, paused_reason = NULL",  # new settings lift a pause
        (app.app_id, platform, kind, dumps(config), tx.now()),
    )
    # dispatch jobs waiting for a paused gateway's next probe go at once (the others,
    # woken early, find nothing due yet and wait again)
    tx.run(
        "UPDATE jobs SET run_at = ? WHERE kind = ? AND state = 'pending' AND run_at > ?"
        " AND message_id IN (SELECT id FROM messages WHERE app_id = ?"
        " AND status IN ('pending', 'sending'))",
        (tx.now(), JobKind.DISPATCH, tx.now(), app.app_id),
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


def gateways(tx: Tx, *, app_id: int) -> Gateways:
    """platform -> (kind, settings, version) of an application."""
    rows = tx.all_as(
        _GatewayRow,
        "SELECT platform, kind, config, updated_at FROM gateways WHERE app_id = ?",
        (app_id,),
    )
    return {r.platform: (r.kind, loads(r.config), r.updated_at) for r in rows}


def gateway_kinds(tx: Tx, *, app_id: int) -> dict[int, str]:
    """platform -> gateway kind, without the settings (safe to show)."""
    rows = tx.all_as(
        _GatewayKind, "SELECT platform, kind FROM gateways WHERE app_id = ?", (app_id,)
    )
    return {r.platform: r.kind for r in rows}


class _DueRow(NamedTuple):
    """A delivery of a range as ``start_batch`` loads it (``_DUE_SQL``'s columns)."""

    id: int
    legacy_code: str | None
    platform: int
    push_token: str | None
    subscribed: int | bool | None
    hash: str
    user_id: str
    attempts: int
    payload_id: int
    next_at: int | None
    web_p256dh: str | None
    web_auth: str | None
    state: int
    in_flight: int | bool


#: The columns of ``_DueRow``, of a range's deliveries.
_DUE_SQL = (
    "SELECT d.id, d.legacy_code, d.platform, dev.push_token, dev.subscribed, d.hash,"
    " COALESCE(d.user_id, d.hwid) AS user_id, d.attempts, d.payload_id, d.next_at,"
    " dev.web_p256dh, dev.web_auth, d.state, d.in_flight"
    " FROM deliveries d LEFT JOIN devices dev ON dev.id = d.device_id"
    " WHERE d.id BETWEEN ? AND ? AND d.message_id = ? AND d.state IN (?, ?)"
    " ORDER BY d.id"
)


class _PayloadRow(NamedTuple):
    id: int
    body: str
    options: str


class _Started(NamedTuple):
    """What ``start_batch`` hands back from the writer: the batch without its tracking
    codes, which the caller derives from ``key`` outside the write transaction."""

    batch: Batch | None
    #: The due rows, in id order.
    rows: list[_DueRow]
    key: bytes
    #: The rows held back by paused gateways (as ``rows``).
    held: list[_DueRow] = []


def start_batch(
    tx: Tx,
    *,
    message_id: int,
    first: int,
    last: int,
    refuse: Callable[[int, Gateways], str | None],
    context: JobContext | None = None,
    app_id: int | None = None,
    probe_us: int = 60_000_000,
) -> _Started:
    """Load a range's due deliveries and mark them ``sent`` and in flight, in one
    transaction.

    A job's first batch (``context`` None) also reads the job's context in this
    transaction: its message's send time and rate, and the gateway settings of its
    application (``app_id``, the job's; a job made before jobs carried it takes the
    message's). The batch hands it back (``Batch.context``) and the job's later batches
    pass it in. So the settings a job sends with are those its first batch decided
    refusals and pauses on: a settings change commits before that batch (and is sent
    with) or after it (and lifts a pause, or wakes the job, as ``set_gateway`` does).

    ``refuse(platform, gateways)`` names why a platform cannot be sent to (no gateway),
    or None; such deliveries, and those whose device unsubscribed meanwhile,
    end ``failed`` here. A cancelled message's range ends ``failed``/``Cancelled``.
    With a rate (the message's deliveries per second) only as many as its
    send slots allow are taken; ``next_due`` then says when more may go. The
    batch's tracking codes are left to the caller (``DispatchStore.start_batch``),
    so the single writer spends no time on them.

    A paused gateway's deliveries go only with a probe: once per ``probe_us`` one
    batch takes the turn (``probing``). The others are held back, neither sent nor
    marked ``sent`` (the trail never says sent for what no gateway was given), and
    wait until the next probe (``held``, ``held_until``).

    The deliveries handed out are marked in flight (``in_flight``) until ``record``
    writes their outcome: the UPDATE that marks them ``sent`` sets it, and only a batch
    that tries deliveries again (already ``sent``) takes one statement more. A due
    delivery still marked was handed out by a run that recorded nothing for it: it
    comes back with ``Due.in_flight`` for the dispatcher to decide (§7.3).
    """
    # The message row first (see store/expansion.py on lock order); once it is held,
    # a deleteMessage either committed before (and is seen below) or waits for us.
    lock_message(tx, message_id)
    read: JobContext | None = None
    if context is None:
        row = tx.one_as(_MessageContext, _MESSAGE_CONTEXT_SQL, (message_id,))
        msg = None if row is None else _MessageState(row.app_id, row.status)
    else:
        row = None
        msg = tx.one_as(_MessageState, _MESSAGE_STATE_SQL, (message_id,))
    if msg is None:
        return _Started(None, [], b"")
    if msg.status == MessageStatus.CANCELLED:
        cancel_rest(tx, message_id=message_id, first=first, last=last)
        return _Started(Batch(msg.app_id, message_id, msg.status, [], {}, None), [], b"")
    if row is not None:
        context = read = _job_context(tx, row, app_id)
    assert context is not None
    settings, rate = context.gateways, context.rate
    now = tx.now()
    rows = tx.all_as(_DueRow, _DUE_SQL, (first, last, message_id, _CREATED, _SENT))
    due: list[_DueRow] = []
    refused: dict[str, list[int]] = defaultdict(list)
    reasons: dict[int, str | None] = {}
    next_due: int | None = None
    for r in rows:
        if r.next_at is not None and r.next_at > now:
            next_due = r.next_at if next_due is None else min(next_due, r.next_at)
            continue
        if not r.push_token or not r.subscribed:
            # The device unsubscribed after the message was created.
            refused[DESC_UNSUBSCRIBED].append(r.id)
            continue
        platform = r.platform
        reason = (
            reasons[platform]
            if platform in reasons
            else reasons.setdefault(platform, refuse(platform, settings))
        )
        if reason is not None:
            refused[reason].append(r.id)
            continue
        due.append(r)
    for reason, ids in refused.items():
        advance(tx, message_id, ids, Status.FAILED, (_CREATED, _SENT), reason)
    pauses = gateway_pauses(tx, app_id=context.app_id) if due else {}
    probing: set[int] = set()
    held: list[_DueRow] = []
    held_until: int | None = None
    if pauses:
        due, held, probing, held_until = _hold_paused(
            tx, context.app_id, due, pauses, now=now, probe_us=probe_us
        )
        if held_until is not None:
            next_due = held_until if next_due is None else min(next_due, held_until)
    throttled = False
    if rate and due:
        taken, slot = _claim_slots(tx, message_id, now, rate, len(due))
        if taken < len(due):
            throttled = True
            due = due[:taken]
            next_due = slot if next_due is None else min(next_due, slot)
    if due:
        tx.run(_TO_SENDING, (message_id,))
        mark_sent(
            tx, message_id=message_id, first=first, last=due[-1].id, now=now,
            held_platforms={r.platform for r in held},
        )  # fmt: skip
        again = [r.id for r in due if r.state == _SENT and not r.in_flight]
        if again:  # tried before (a retry): in flight from now too
            _set_in_flight(tx, again, 1)
    payload_ids = sorted({r.payload_id for r in (*due, *held)})
    payloads: dict[int, tuple[dict[str, Any], dict[str, Any]]] = {}
    for start in range(0, len(payload_ids), 500):
        part = payload_ids[start : start + 500]
        for p in tx.all_as(
            _PayloadRow,
            f"SELECT id, body, options FROM payloads WHERE id IN ({','.join('?' * len(part))})",
            part,
        ):
            payloads[p.id] = (loads(p.body), loads(p.options))
    key = tracking_key(tx) if rows else b""
    shown = codes.shown_message_id(key, message_id) if key else 0
    batch = Batch(
        msg.app_id, message_id, msg.status, [], payloads, next_due, throttled, shown, pauses,
        frozenset(probing), [], held_until, read,
    )  # fmt: skip
    return _Started(batch, due, key, held)


def _job_context(tx: Tx, row: _MessageContext, app_id: int | None) -> JobContext:
    """A job's context from its message row and its application's gateway settings
    (``app_id``: the job's; None, a job made before jobs carried it: the message's)."""
    app = row.app_id if app_id is None else app_id
    return JobContext(
        app_id=app,
        send_time=max(int(row.send_at), int(row.created_at)),
        local_time=bool(row.local_time),
        rate=_rate_of(loads(row.notification)),
        gateways=gateways(tx, app_id=app),
    )


def _hold_paused(
    tx: Tx,
    app_id: int,
    due: list[_DueRow],
    pauses: dict[int, Pause],
    *,
    now: int,
    probe_us: int,
) -> tuple[list[_DueRow], list[_DueRow], set[int], int | None]:
    """Split due rows into those to send and those a paused gateway holds back:
    (to send, held, paused platforms probed by this batch, when the held are due again).

    A paused platform whose probe is due is probed by the batch that takes the turn
    (its pause time moves to now, so one batch per interval probes); the job holding
    the other rows comes back for them at the next probe (or when new settings lift the
    pause: ``set_gateway`` wakes the application's dispatch jobs)."""
    probing: set[int] = set()
    for platform in {r.platform for r in due} & set(pauses):
        since = pauses[platform].since
        if now >= since + probe_us and claim_probe(
            tx, app_id=app_id, platform=platform, since=since
        ):
            probing.add(platform)
    kept: list[_DueRow] = []
    held: list[_DueRow] = []
    until: set[int] = set()
    for r in due:
        pause = pauses.get(r.platform)
        if pause is None or r.platform in probing:
            kept.append(r)
            continue
        held.append(r)
        # the next probe of this pause, or (another batch took this one) the one after
        at = pause.since + probe_us
        until.add(at if at > now else now + probe_us)
    return kept, held, probing, min(until) if until else None


def due_of(started: _Started) -> Batch | None:
    """The batch of a ``start_batch``, its due deliveries with their tracking codes
    (derived in bulk: one AES call for the batch)."""
    batch, rows, key, held = started
    if batch is None or not (rows or held):
        return batch
    return msgspec.structs.replace(batch, due=_due(key, rows), held=_due(key, held))


def _due(key: bytes, rows: list[_DueRow]) -> list[Due]:
    derived = codes.tracking_codes_of(key, [r.id for r in rows if r.legacy_code is None])
    at = 0
    due: list[Due] = []
    append = due.append
    for r in rows:
        if r.legacy_code is None:
            code = derived[at]
            at += 1
        else:
            code = r.legacy_code
        keys = (r.web_p256dh, r.web_auth) if r.web_p256dh and r.web_auth else None
        assert r.push_token is not None  # start_batch refused the deliveries without one
        append(
            Due(r.id, code, r.platform, r.push_token, r.hash, r.user_id, r.attempts,
                r.payload_id, keys, bool(r.in_flight))
        )  # fmt: skip
    return due


class _RateAt(NamedTuple):
    rate_at: int | None


def _claim_slots(tx: Tx, message_id: int, now: int, rate: int, wanted: int) -> tuple[int, int]:
    """Take up to ``wanted`` send slots of a throttled message: (taken, when the next is free).

    Slots are 1/rate seconds apart; a batch takes those up to one window ahead of
    now, so a message sends ``rate`` per second in bursts, and an idle spell
    saves up no burst larger than one window.
    """
    # The UPDATE takes the message row's lock first (PostgreSQL): concurrent jobs of
    # one message claim their slots one after the other.
    row = tx.one_as(
        _RateAt,
        "UPDATE messages SET rate_at = COALESCE(rate_at, 0) WHERE id = ? RETURNING rate_at",
        (message_id,),
    )
    start = max(int(row.rate_at or 0) if row else 0, now)
    room = now + RATE_WINDOW_US - start
    taken = min(wanted, room * rate // 1_000_000) if room > 0 else 0
    if taken == 0 and start <= now:
        taken = 1  # a rate under one per window still sends
    slot = start + -(-taken * 1_000_000 // rate)  # ceil
    if taken:
        tx.run("UPDATE messages SET rate_at = ? WHERE id = ?", (slot, message_id))
    return taken, slot


class _Won(NamedTuple):
    """A delivery a transition's UPDATE won (its RETURNING columns)."""

    id: int
    platform: int


class _PlatformCount(NamedTuple):
    """How many deliveries of a platform a transition won (PostgreSQL's statement)."""

    platform: int
    n: int


def _transition(
    tx: Tx,
    message_id: int,
    where: str,
    params: Sequence[Any],
    status: Status,
    description: str | None,
    extra: str = "",
    extra_params: Sequence[Any] = (),
    *,
    failure_class: str | None = None,
    gateways: tuple[list[int], list[str | None]] | None = None,
) -> int:
    """Move the deliveries ``where`` selects to ``status``, set-based: one guarded
    UPDATE that returns the rows it won, their events (unless ``description`` is
    None) and their counters. Only the rows won get an event, so there is at most
    one per (delivery, status). Returns how many rows were won.

    Each event keeps ``failure_class`` and, with ``gateways`` (delivery ids and the
    ids their gateway gave them, side by side), the gateway's id of its delivery.

    On PostgreSQL the UPDATE, the events' INSERT and the counters' upserts are
    one statement (data-modifying WITHs): one round trip, and only a count per
    platform comes back. On SQLite the events are inserted from the won ids as
    one JSON array (``json_each``): one statement, no row bound from Python
    (rows are bound only when there are gateway ids to keep).
    """
    update = f"UPDATE deliveries SET state = ?{extra} WHERE {where} RETURNING id, platform"
    head = (int(status), *extra_params, *params)
    ts = tx.now()
    column = COUNTER_OF.get(status)
    if description is None:
        return len(tx.all(update, head))
    if tx.dialect == "postgresql":
        counted = (message_id, ts, ts) * len(COUNTER_TABLES) if column else ()
        event: tuple[Any, ...] = (ts, int(status), description, failure_class)
        if gateways is not None:
            event += (gateways[0], gateways[1])
        counts = tx.all_as(
            _PlatformCount,
            _pg_transition(update, column, gateways is not None),
            (*head, *event, *counted),
        )
        return sum(c.n for c in counts)
    won = tx.all_as(_Won, update, head)
    if won:
        if gateways is None:
            tx.run(
                "INSERT INTO events (ts, delivery_id, status, description, failure_class)"
                " SELECT ?, value, ?, ?, ? FROM json_each(?)",
                (ts, int(status), description, failure_class, dumps([w.id for w in won])),
            )
        else:
            given = dict(zip(*gateways, strict=True))
            tx.many(
                "INSERT INTO events (ts, delivery_id, status, description, gateway_id,"
                " failure_class) VALUES (?, ?, ?, ?, ?, ?)",
                [(ts, w.id, int(status), description, given.get(w.id), failure_class) for w in won],
            )
        if column:
            per_platform = Counter(w.platform for w in won)
            bump_counts(tx, {(message_id, ts, p, column): n for p, n in per_platform.items()})
    return len(won)


@functools.lru_cache(maxsize=64)
def _pg_transition(update: str, column: str | None, gateways: bool) -> str:
    """One PostgreSQL statement for a transition: the guarded UPDATE, the won rows'
    events, and their counters (hour and minute; this connection's shard, rows in key
    order), answering the rows won per platform.

    Parameters after the UPDATE's: ts, status, description, failure class, (with
    ``gateways``) the delivery ids and their gateway ids as two arrays, then (message
    id, ts, ts) for each counter table (if the status is counted).
    """
    if gateways:
        events = (
            " SELECT ?, won.id, ?, ?, ?, g.gateway_id FROM won"
            " LEFT JOIN unnest(?::bigint[], ?::text[]) AS g (id, gateway_id) ON g.id = won.id"
        )
    else:
        events = " SELECT ?, id, ?, ?, ?, NULL FROM won"
    parts = [
        f"WITH won AS ({update}),"
        " ev AS (INSERT INTO events (ts, delivery_id, status, description, failure_class,"
        f" gateway_id){events}),"
        " n AS (SELECT platform, COUNT(*) AS n FROM won GROUP BY platform)"
    ]
    for i, (table, bucket, width) in enumerate(COUNTER_TABLES):
        if column:
            parts.append(
                f", c{i} AS (INSERT INTO {table} (message_id, {bucket}, platform, shard,"
                f" {column}) SELECT ?::bigint, ?::bigint - ?::bigint % {width}, platform,"
                f" pg_backend_pid() % {COUNTER_SHARDS}, n FROM n ORDER BY platform"
                f" ON CONFLICT (message_id, {bucket}, platform, shard) DO UPDATE"
                f" SET {column} = {table}.{column} + excluded.{column})"
            )
    parts.append(" SELECT platform, n FROM n")
    return "".join(parts)


def _ids_where(tx: Tx, old: Sequence[int]) -> str:
    """The condition on a list of delivery ids (one parameter) and their old states."""
    states = ", ".join(str(int(s)) for s in old)
    if tx.dialect == "postgresql":
        return f"id = ANY(?::bigint[]) AND state IN ({states})"
    return f"id IN (SELECT value FROM json_each(?)) AND state IN ({states})"


def _ids_param(tx: Tx, ids: Sequence[int]) -> Any:
    """The one parameter ``_ids_where`` binds for ``ids``."""
    return list(ids) if tx.dialect == "postgresql" else dumps(list(ids))


def _set_in_flight(tx: Tx, ids: Sequence[int], value: int) -> None:
    """Mark (1) or unmark (0) ``ids``, deliveries still ``sent``, as in flight."""
    tx.run(
        f"UPDATE deliveries SET in_flight = ? WHERE {_ids_where(tx, (_SENT,))}",
        (value, _ids_param(tx, ids)),
    )


def advance(
    tx: Tx,
    message_id: int,
    ids: Sequence[int],
    status: Status,
    old: Sequence[int],
    description: str | None,
    extra: str = "",
    extra_params: Sequence[Any] = (),
    *,
    failure_class: str | None = None,
    gateway_ids: Sequence[str | None] | None = None,
) -> int:
    """``_transition`` of the deliveries ``ids`` that are still in one of the ``old``
    states; how many were won. ``gateway_ids`` (beside ``ids``) go into their events."""
    if not ids:
        return 0
    param = _ids_param(tx, ids)
    gateways = None
    if gateway_ids is not None and any(g is not None for g in gateway_ids):
        gateways = (list(ids), list(gateway_ids))
    return _transition(
        tx, message_id, _ids_where(tx, old), (param,), status, description, extra, extra_params,
        failure_class=failure_class, gateways=gateways,
    )  # fmt: skip


def mark_sent(
    tx: Tx,
    *,
    message_id: int,
    first: int,
    last: int,
    now: int,
    held_platforms: Collection[int] = (),
) -> int:
    """Record ``sent`` for a range's due deliveries not yet marked.

    Runs in the transaction that loaded the due deliveries and failed the rest
    of the range's due ones, so the deliveries still ``created`` and due in
    ``first..last`` (``last``: the last due one) are exactly those due and not
    sent before: one range UPDATE marks them, and only those it wins get
    their ``sent`` event. Returns how many. The same UPDATE marks them in flight
    (``in_flight``, until ``record``). The deliveries of ``held_platforms``
    (paused gateways) are not marked: they are not sent.
    """
    held = sorted(held_platforms)
    return _transition(
        tx,
        message_id,
        "id BETWEEN ? AND ? AND message_id = ? AND state = ? AND (next_at IS NULL OR next_at <= ?)"
        + (f" AND platform NOT IN ({','.join('?' * len(held))})" if held else ""),
        (first, last, message_id, _CREATED, now, *held),
        Status.SENT,
        "Sent",
        ", in_flight = 1",
    )


def fail(tx: Tx, message_id: int, items: Sequence[tuple[int, int, str]]) -> None:
    """End (delivery, platform, description) items ``failed`` unless they already ended."""
    by_description: dict[str, list[int]] = defaultdict(list)
    for delivery_id, _, description in items:
        by_description[description].append(delivery_id)
    for description, ids in by_description.items():
        advance(
            tx, message_id, ids, Status.FAILED, (_CREATED, _SENT), description, _LANDED
        )  # fmt: skip


#: What every UPDATE recording an outcome sets besides the state: no longer in flight.
_LANDED = ", in_flight = 0"


def record(
    tx: Tx,
    *,
    message_id: int,
    ended: Sequence[Ended],
    retries: dict[tuple[int, str, str | None], list[int]],
    unsubscribe_tokens: Sequence[DeadToken],
    app_id: int,
    finish: bool,
    unsent: Sequence[int] = (),
) -> str | None:
    """Write a batch of gateway outcomes: the groups that ended, and the deliveries
    to try again ((retry time, reason, failure class) -> ids; the attempt is counted).
    Each of these UPDATEs also clears the delivery's in-flight mark; ``unsent`` (the
    deliveries a stopping sender never wrote, ``NotSent``) are only unmarked, due as
    they were: the one statement more, and only when a worker stops.

    The guarded UPDATE that ends a delivery also counts the try (``attempts``), and
    the event it wins keeps the gateway's id and the failure class: no statement
    more per delivery. With ``finish`` (nothing of the range waits any more) the
    message is marked done once every delivery has ended; its status is then returned.
    """
    if finish:
        lock_message(tx, message_id)
    tried = f", attempts = attempts + 1{_LANDED}"
    for group in ended:
        old = (_SENT,) if group.status is Status.DELIVERED else (_CREATED, _SENT)
        advance(
            tx, message_id, group.delivery_ids, group.status, old, group.description,
            tried if group.tried else _LANDED,
            failure_class=group.failure_class, gateway_ids=group.gateway_ids,
        )  # fmt: skip
    for (when, reason, cls), ids in retries.items():
        advance(
            tx, message_id, ids, Status.SENT, (_SENT,), None,
            f"{tried}, next_at = ?, retry_reason = ?, retry_class = ?", (when, reason, cls),
        )  # fmt: skip
    if unsent:
        _set_in_flight(tx, unsent, 0)
    _unsubscribe(tx, app_id, message_id, unsubscribe_tokens)
    return finish_message(tx, message_id=message_id) if finish else None


class _Unsubscribed(NamedTuple):
    """A device a dead token unsubscribed (the UPDATE's RETURNING columns)."""

    id: int
    hwid: str
    push_token: str
    device_type: int


def _unsubscribe(tx: Tx, app_id: int, message_id: int, tokens: Sequence[DeadToken]) -> None:
    """Unsubscribe the devices holding dead tokens, and write each one unsubscribed to
    the dead-token ledger. A token the gateway says is dead since a time stays with a
    device that registered it after that time."""
    if not tokens:
        return
    now = tx.now()
    found: dict[str, DeadToken] = {t.token: t for t in tokens}
    gone: list[_Unsubscribed] = []
    returning = " AND subscribed = 1 RETURNING id, hwid, push_token, device_type"
    always = [t.token for t in tokens if t.since is None]
    for start in range(0, len(always), 900):
        part = always[start : start + 900]
        gone += tx.all_as(
            _Unsubscribed,
            "UPDATE devices SET subscribed = 0, updated_at = ? WHERE app_id = ?"
            f" AND push_token IN ({','.join('?' * len(part))}){returning}",
            (now, app_id, *part),
        )
    for t in tokens:
        if t.since is not None:
            gone += tx.all_as(
                _Unsubscribed,
                "UPDATE devices SET subscribed = 0, updated_at = ? WHERE app_id = ?"
                f" AND push_token = ? AND (token_at IS NULL OR token_at <= ?){returning}",
                (now, app_id, t.token, t.since),
            )
    if gone:
        tx.many(
            "INSERT INTO dead_tokens (app_id, device_id, hwid, push_token, platform, reason,"
            " message_id, delivery_id, found_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (app_id, g.id, g.hwid, g.push_token, g.device_type, found[g.push_token].reason,
                 message_id, found[g.push_token].delivery_id, now)
                for g in sorted(gone)
            ],
        )  # fmt: skip


def _rate_of(notification: Any) -> int | None:
    rate = notification.get("send_rate") if isinstance(notification, dict) else None
    return rate if isinstance(rate, int) and not isinstance(rate, bool) and rate > 0 else None


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
    tx.run(_TO_DONE, (message_id, message_id, _CREATED, _SENT))
    row = tx.one_as(_Status, "SELECT status FROM messages WHERE id = ?", (message_id,))
    return str(row.status) if row else "unknown"


def cancel_rest(tx: Tx, *, message_id: int, first: int, last: int) -> None:
    """A cancelled message: end what is left of a range ``failed``/``Cancelled``."""
    rows = tx.all_as(
        _Won,
        "SELECT id, platform FROM deliveries WHERE id BETWEEN ? AND ? AND message_id = ?"
        " AND state IN (?, ?)",
        (first, last, message_id, _CREATED, _SENT),
    )
    fail(tx, message_id, [(r.id, r.platform, DESC_CANCELLED) for r in rows])


class GatewayState(msgspec.Struct, frozen=True):
    """What ``pushtrack app gateways`` shows of one platform's gateway (no settings)."""

    kind: str
    pause: Pause | None = None


def gateway_pauses(tx: Tx, *, app_id: int) -> dict[int, Pause]:
    """platform -> pause, for an application's paused gateways."""
    rows = tx.all_as(
        _PauseRow,
        "SELECT platform, paused_at, paused_reason FROM gateways"
        " WHERE app_id = ? AND paused_at IS NOT NULL",
        (app_id,),
    )
    return {r.platform: Pause(int(r.paused_at), str(r.paused_reason or "")) for r in rows}


def gateway_states(tx: Tx, *, app_id: int) -> dict[int, GatewayState]:
    """platform -> kind and pause of an application's gateways (safe to show)."""
    rows = tx.all_as(
        _GatewayStateRow,
        "SELECT platform, kind, paused_at, paused_reason FROM gateways WHERE app_id = ?",
        (app_id,),
    )
    return {
        r.platform: GatewayState(
            r.kind,
            Pause(int(r.paused_at), str(r.paused_reason or ""))
            if r.paused_at is not None
            else None,
        )
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

    async def gateways(self, app_id: int) -> Gateways:
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

    async def resume_gateway(self, app_id: int, platform: int) -> bool:
        return await self.engine.write(partial(resume_gateway, app_id=app_id, platform=platform))

    async def start_batch(
        self,
        message_id: int,
        first: int,
        last: int,
        refuse: Callable[[int, Gateways], str | None],
        context: JobContext | None = None,
        *,
        app_id: int | None = None,
        probe_seconds: float = 60.0,
    ) -> Batch | None:
        """A batch of a job (None: the message is gone). Without ``context`` (the job's
        first batch) the batch reads it, in the same transaction (``Batch.context``)."""
        started = await self.engine.write(
            partial(
                start_batch,
                message_id=message_id,
                first=first,
                last=last,
                refuse=refuse,
                context=context,
                app_id=app_id,
                probe_us=int(probe_seconds * 1_000_000),
            )
        )
        return due_of(started)

    async def record(
        self,
        message_id: int,
        app_id: int,
        ended: Sequence[Ended],
        retries: dict[tuple[int, str, str | None], list[int]],
        unsubscribe_tokens: Sequence[DeadToken],
        finish: bool,
        unsent: Sequence[int] = (),
    ) -> str | None:
        return await self.engine.write(
            partial(
                record,
                message_id=message_id,
                app_id=app_id,
                ended=ended,
                retries=retries,
                unsubscribe_tokens=unsubscribe_tokens,
                finish=finish,
                unsent=unsent,
            )
        )

    async def finish_message(self, message_id: int) -> str:
        return await self.engine.write(partial(finish_message, message_id=message_id))
