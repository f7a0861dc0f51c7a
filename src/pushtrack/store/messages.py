"""createMessage and deleteMessage as units of work (getMessageLog reads: ``trail.py``).

One createMessage request is written by one call of ``create_messages``. A
message to an explicit ``devices`` list (at most 1000) is written whole:
message, payload templates, deliveries, their ``created`` (and, for unknown
or unsubscribed devices, ``failed``) events, the counters, and the dispatch
jobs that will send them. A message to an audience (platforms, users, a
selection, or the whole application) is recorded with its targeting and an
``EXPAND`` job; that job writes its deliveries in bounded steps
(``store/expansion.py``) with the same functions: ``plan_deliveries``,
``ensure_templates``, ``build_deliveries``, ``write_deliveries``.
"""

from __future__ import annotations

from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from typing import Any, NamedTuple

import msgspec

from pushtrack.domain import codes
from pushtrack.domain.jobs import DispatchParams, ExpandParams, JobKind, encode
from pushtrack.domain.payload import build_template
from pushtrack.domain.platforms import Platform, platform_of
from pushtrack.domain.status import (
    DESC_CANCELLED,
    DESC_NOT_IN_AUDIENCE,
    DESC_UNKNOWN_DEVICE,
    DESC_UNSUBSCRIBED,
    MessageStatus,
    Status,
)
from pushtrack.domain.targeting import Node
from pushtrack.domain.timeutil import local_to_utc
from pushtrack.store import jobs
from pushtrack.store.base import (
    AccessError,
    App,
    ConflictError,
    MessageCreated,
    MessagePlan,
    Targeting,
    Tx,
)
from pushtrack.store.events import append_events
from pushtrack.store.jsontext import dumps
from pushtrack.store.targeting import audience_where
from pushtrack.store.tracking import tracking_key

#: Deliveries per dispatch job.
DISPATCH_CHUNK = 1000

_CREATED, _FAILED = int(Status.CREATED), int(Status.FAILED)


# -- messages ---------------------------------------------------------------------------

#: Job kind that expands an audience message into deliveries (``store/expansion.py``).
EXPAND = JobKind.EXPAND

DEVICE_COLUMNS = (
    "d.id, d.hwid, d.push_token, d.device_type, d.language, d.user_id, d.subscribed, d.timezone,"
    " d.tz_name"
)


class Device(NamedTuple):
    """A device row as the steps below read it (the columns of ``DEVICE_COLUMNS``)."""

    id: int
    hwid: str
    push_token: str | None
    device_type: int
    language: str | None
    user_id: str | None
    subscribed: int
    timezone: int | None
    tz_name: str | None


def read_devices(tx: Tx, sql: str, params: Sequence[Any]) -> list[Device]:
    """Devices selected by ``sql`` (which selects ``DEVICE_COLUMNS``), by name."""
    make = Device._make
    return [make(r) for r in tx.all(sql, params)]


#: (entry as the sender gave it, its device or None): one target of a message.
Target = tuple[str, Device | None]
#: (platform, language or None): the key of a payload template.
TemplateKey = tuple[int, str | None]


def _resolve(tx: Tx, app: App, entries: Sequence[str]) -> dict[str, Device]:
    """Map each entry (hwid first, then push token) to its device row."""
    found: dict[str, Device] = {}
    unique = list(dict.fromkeys(entries))
    for start in range(0, len(unique), 900):
        part = unique[start : start + 900]
        marks = ",".join("?" * len(part))
        for dev in read_devices(
            tx,
            f"SELECT {DEVICE_COLUMNS} FROM devices d WHERE d.app_id = ? AND d.hwid IN ({marks})",
            (app.id, *part),
        ):
            found[dev.hwid] = dev
    rest = [e for e in unique if e not in found]
    for start in range(0, len(rest), 900):
        part = rest[start : start + 900]
        marks = ",".join("?" * len(part))
        for dev in read_devices(
            tx,
            f"SELECT {DEVICE_COLUMNS} FROM devices d WHERE d.app_id = ?"
            f" AND d.push_token IN ({marks}) ORDER BY d.updated_at",
            (app.id, *part),
        ):
            assert dev.push_token is not None
            found[dev.push_token] = dev  # the most recently updated device wins
    return found


def explicit_targets(tx: Tx, app: App, devices: Sequence[str]) -> list[Target]:
    """The targets of an explicit ``devices`` list, in the sender's order."""
    found = _resolve(tx, app, devices)
    return [(e, found.get(e)) for e in devices]


def create_messages(tx: Tx, app: App, plans: Sequence[MessagePlan]) -> list[MessageCreated]:
    return [_create_message(tx, app, plan) for plan in plans]


def create_messages_for(tx: Tx, items: Sequence[tuple[App, MessagePlan]]) -> list[MessageCreated]:
    """Messages of several applications (createTargetedMessage), in one transaction."""
    return [_create_message(tx, app, plan) for app, plan in items]


def _create_message(tx: Tx, app: App, plan: MessagePlan) -> MessageCreated:
    """One message: to an audience (expanded by a job), or to an explicit devices list,
    written whole in steps: targets, plan, templates, delivery rows, write."""
    if plan.targeting.devices is None:
        return _create_audience_message(tx, app, plan)
    now = tx.now()
    planned = _plan_explicit(tx, app, plan, now)
    (message_id,) = tx.new_ids("messages", 1)
    code = codes.message_code()
    templates = ensure_templates(tx, message_id, plan.notification, planned.keys, {})
    built = build_deliveries(tx, message_id, planned, templates)
    status = _initial_status(now, plan.send_at, built)
    _insert_message(tx, app, plan, message_id, code, status, len(built.rows), None)
    write_deliveries(tx, message_id, built)
    tracking_codes = None
    if app.tracking:
        key = tracking_key(tx)
        ids = built.ids
        tracking_codes = codes.tracking_codes_of(key, [ids[slot] for slot in planned.slots])
    return MessageCreated(code=code, id=message_id, tracking_codes=tracking_codes)


def _plan_explicit(tx: Tx, app: App, plan: MessagePlan, now: int) -> Planned:
    """The deliveries of an explicit ``devices`` list, planned."""
    assert plan.targeting.devices is not None
    targets = explicit_targets(tx, app, plan.targeting.devices)
    # every other targeting given narrows the explicit devices (their entries still get
    # a tracking code, and a trail that says why nothing was sent)
    known = [dev.id for _, dev in targets if dev is not None]
    left_out = _left_out(tx, app, plan.targeting, known)
    return plan_deliveries(now, plan.send_at, plan.local_time, targets, plan.notification, left_out)


def _initial_status(now: int, send_at: int, built: Built) -> MessageStatus:
    if not built.to_send:
        return MessageStatus.DONE  # nothing to send: every delivery (if any) already ended
    run_at = max(now, send_at) if built.first_due is None else built.first_due
    return MessageStatus.SCHEDULED if run_at > now else MessageStatus.PENDING


def audience_filter(
    tx: Tx,
    app: App,
    platforms: Sequence[int] | None,
    users: Sequence[str] | None,
    selection: Node | None,
    *,
    after: int | None = None,
) -> tuple[list[str], list[Any]]:
    """The conditions (over ``devices d``) and parameters of a message's audience in
    ``app``: its platforms, users and selection, all narrowing; with ``after``, only
    devices with a greater id (the selection bounds its tag probes by it too)."""
    where = ["d.app_id = ?"]
    params: list[Any] = [app.id]
    if selection is not None:
        selected, more = audience_where(tx, app, selection, after=after)
        where.append(selected)
        params.extend(more)
    elif after is not None:
        where.append("d.id > ?")
        params.append(after)
    if platforms:
        where.append(f"d.device_type IN ({','.join('?' * len(platforms))})")
        params.extend(platforms)
    if users:
        where.append(f"d.user_id IN ({','.join('?' * len(users))})")
        params.extend(users)
    return where, params


def _left_out(tx: Tx, app: App, t: Targeting, device_ids: Sequence[int]) -> set[int]:
    """Those of ``device_ids`` that the targeting besides ``devices`` leaves out."""
    if not device_ids or (t.platforms is None and t.users is None and t.selection is None):
        return set()
    where, params = audience_filter(tx, app, t.platforms, t.users, t.selection)
    unique = list(dict.fromkeys(device_ids))
    kept: set[int] = set()
    for start in range(0, len(unique), 500):
        part = unique[start : start + 500]
        rows = tx.all(
            f"SELECT d.id FROM devices d WHERE {' AND '.join(where)}"
            f" AND d.id IN ({','.join('?' * len(part))})",
            [*params, *part],
        )
        kept.update(int(r[0]) for r in rows)
    return set(unique) - kept


def _create_audience_message(tx: Tx, app: App, plan: MessagePlan) -> MessageCreated:
    """Record the message and its targeting, and the job that will expand it.

    No device is read here: the ``EXPAND`` job walks the audience in short
    transactions of its own (``store/expansion.py``), so a message to a large
    audience never holds the writer for long.
    """
    now = tx.now()
    (message_id,) = tx.new_ids("messages", 1)
    code = codes.message_code()
    status = MessageStatus.SCHEDULED if plan.send_at > now else MessageStatus.PENDING
    _insert_message(tx, app, plan, message_id, code, status, 0, 0)
    jobs.enqueue(
        tx,
        kind=EXPAND,
        account=None,
        params=ExpandParams(message_id=message_id),
        run_at=now,
        message_id=message_id,
    )
    return MessageCreated(code=code, id=message_id, tracking_codes=None)


def _insert_message(
    tx: Tx,
    app: App,
    plan: MessagePlan,
    message_id: int,
    code: str,
    status: MessageStatus,
    deliveries: int,
    expand_after: int | None,
) -> None:
    """The message row; ``expand_after`` is the expansion's cursor (None: no expansion)."""
    t = plan.targeting
    targeting = None
    if t.devices is None:
        targeting = dumps(AudienceTargeting(t.platforms, t.users, t.selection))
    tx.run(
        "INSERT INTO messages (id, code, app_id, campaign, notification, send_at, status,"
        " deliveries, created_at, targeting, local_time, expand_after)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            message_id,
            code,
            app.id,
            plan.campaign,
            dumps(plan.notification),
            plan.send_at,
            status.value,
            deliveries,
            tx.now(),
            targeting,
            int(plan.local_time),
            expand_after,
        ),
    )


class AudienceTargeting(msgspec.Struct, frozen=True, omit_defaults=True):
    """An audience message's targeting as kept with it (``messages.targeting``, JSON)."""

    platforms: tuple[int, ...] | None = None
    users: tuple[str, ...] | None = None
    selection: Node | None = None


def ensure_templates(
    tx: Tx,
    message_id: int,
    notification: dict[str, Any],
    keys: Sequence[TemplateKey],
    templates: dict[TemplateKey, int],
) -> dict[TemplateKey, int]:
    """Add to ``templates`` (the message's own so far) those of ``keys`` it lacks."""
    missing = [key for key in dict.fromkeys(keys) if key not in templates]
    if not missing:
        return templates
    payload_rows: list[tuple[Any, ...]] = []
    ids = tx.new_ids("payloads", len(missing))
    for pid, key in zip(ids, missing, strict=True):
        templates[key] = pid
        tpl = build_template(notification, platform_of(key[0]) or Platform.IOS, key[1])
        payload_rows.append((pid, message_id, key[0], key[1], dumps(tpl.body), dumps(tpl.options)))
    tx.many(
        "INSERT INTO payloads (id, message_id, platform, language, body, options)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        payload_rows,
    )
    return templates


def message_templates(tx: Tx, message_id: int) -> dict[TemplateKey, int]:
    """The payload templates a message has so far."""
    return {
        (r[1], r[2]): r[0]
        for r in tx.all(
            "SELECT id, platform, language FROM payloads WHERE message_id = ?", (message_id,)
        )
    }


class Plan(NamedTuple):
    """One planned delivery."""

    #: The entry as the sender gave it (hwid or push token).
    entry: str
    device: Device | None
    #: Its payload template's key (None: an unknown device, nothing is sent).
    key: TemplateKey | None
    #: Why it is not sent (None: it is).
    refusal: str | None
    due: int
    #: Its payload hash (``p``).
    hash: str


class Planned(msgspec.Struct):
    """The deliveries of a set of targets, decided before any id is given (no I/O).

    Planning costs as much as writing; an expansion step plans before its
    write transaction, so the writer is held only for the writing.
    """

    #: One per delivery.
    items: list[Plan]
    #: Per target: the index of its delivery (repeats of one device share one).
    slots: list[int]
    #: The template keys met, first mention first.
    keys: list[TemplateKey]


def plan_deliveries(
    now: int,
    send_at: int,
    local_time: bool,
    targets: Sequence[Target],
    notification: dict[str, Any],
    left_out: AbstractSet[int] = frozenset(),
) -> Planned:
    """One delivery per distinct device (or per distinct unknown entry) of ``targets``.

    Devices that cannot receive (unsubscribed, no push token), devices in
    ``left_out`` (ids the message's other targeting excludes) and unknown
    entries get a delivery that is ``failed`` at once; the rest wait for the
    dispatcher, from ``send_at`` (or, with ``local_time``, from that wall-clock
    time in each device's zone, and not before ``now``).
    """
    wanted_languages = languages(notification)
    seen: dict[tuple[str, Any], int] = {}
    slots: list[int] = []
    unique: list[Target] = []
    for entry, dev in targets:
        who = ("d", dev.id) if dev is not None else ("e", entry)
        if who in seen:
            slots.append(seen[who])
            continue
        seen[who] = len(unique)
        slots.append(len(unique))
        unique.append((entry, dev))
    n = len(unique)
    planned = Planned([], slots, [])
    keys: dict[TemplateKey, None] = {}
    hashes = codes.payload_hashes(n)
    items = planned.items
    new = tuple.__new__  # a Plan without NamedTuple's Python-level __new__ (1000s a request)
    for phash, (entry, dev) in zip(hashes, unique, strict=True):
        if dev is None:
            items.append(new(Plan, (entry, None, None, DESC_UNKNOWN_DEVICE, now, phash)))
            continue
        key = (dev.device_type, _language_key(dev.language, wanted_languages))
        keys[key] = None
        due = send_at
        if local_time:
            due = max(now, local_to_utc(send_at, dev.timezone, dev.tz_name))
        refusal = None if dev.subscribed and dev.push_token else DESC_UNSUBSCRIBED
        if dev.id in left_out:
            refusal = DESC_NOT_IN_AUDIENCE
        items.append(new(Plan, (entry, dev, key, refusal, due, phash)))
    planned.keys = list(keys)
    return planned


class Built(msgspec.Struct):
    """Planned deliveries with their ids, ready to write."""

    #: The deliveries' ids, in the order of the plan's items.
    ids: list[int]
    rows: list[tuple[Any, ...]]
    #: (user id, device id) of each delivery that carries a user id.
    users: list[tuple[str, int]]
    failed: list[tuple[int, Status, str, int, int]]
    to_send: list[int]
    #: When the earliest live delivery is due (None: nothing to send).
    first_due: int | None


def build_deliveries(
    tx: Tx, message_id: int, planned: Planned, templates: dict[TemplateKey, int]
) -> Built:
    """Give planned deliveries their ids and templates (``templates`` has every key)."""
    n = len(planned.items)
    ids = tx.new_ids("deliveries", n) if n else []
    built = Built(ids, [], [], [], [], None)
    rows, failed, to_send, users = built.rows, built.failed, built.to_send, built.users
    now = tx.now()  # the deliveries' ``created`` (counted nowhere)
    first_due: int | None = None
    for did, (entry, dev, key, refusal, due, phash) in zip(ids, planned.items, strict=True):
        if dev is None or key is None:
            rows.append(
                (did, message_id, None, None, entry, entry, None, 0, None, _FAILED, due, now)
            )
            failed.append((did, Status.FAILED, DESC_UNKNOWN_DEVICE, message_id, 0))
            continue
        platform = dev.device_type
        rows.append(
            (did, message_id, dev.id, templates[key], entry, dev.hwid, dev.user_id, platform,
             phash, _CREATED if refusal is None else _FAILED, due, now)
        )  # fmt: skip
        if dev.user_id is not None:
            users.append((dev.user_id, dev.id))
        if refusal is None:
            first_due = due if first_due is None or due < first_due else first_due
            to_send.append(did)
        else:
            failed.append((did, Status.FAILED, refusal, message_id, platform))
    built.first_due = first_due
    return built


def write_deliveries(tx: Tx, message_id: int, built: Built) -> None:
    """Write built deliveries (each row carries its ``created`` status: ``created_at``),
    the ``failed`` events and counters of those that end at once, and the dispatch jobs
    that will send the live ones."""
    if not built.rows:
        return
    tx.many(
        "INSERT INTO deliveries (id, message_id, device_id, payload_id,"
        " target_id, hwid, user_id, platform, hash, state, next_at, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        built.rows,
    )
    if built.users:
        # the user ids deliveries carry, by device: what lookups by user_id go through
        # (a probe per pair, a write only for a pair not met before)
        pairs = sorted(set(built.users))
        for start in range(0, len(pairs), 500):  # one statement per 500 (not one per pair)
            part = pairs[start : start + 500]
            tx.run(
                "INSERT INTO user_devices (user_id, device_id) VALUES"
                f" {','.join(['(?, ?)'] * len(part))} ON CONFLICT (user_id, device_id) DO NOTHING",
                [v for pair in part for v in pair],
            )
    append_events(tx, built.failed)
    if built.first_due is not None:
        _enqueue_dispatch(tx, message_id, built.to_send, built.first_due)


def languages(notification: dict[str, Any]) -> frozenset[str]:
    keys: set[str] = set()
    for field in ("content", "title", "subtitle"):
        value = notification.get(field)
        if isinstance(value, dict):
            keys.update(value)
    return frozenset(keys)


def _language_key(device_language: str | None, wanted: frozenset[str]) -> str | None:
    """The language a device's template is built for (None: the default text)."""
    if device_language and device_language in wanted:
        return device_language
    return None


def _enqueue_dispatch(tx: Tx, message_id: int, delivery_ids: Sequence[int], run_at: int) -> None:
    if not delivery_ids:
        return
    now = tx.now()
    rows = []
    for start in range(0, len(delivery_ids), DISPATCH_CHUNK):
        part = delivery_ids[start : start + DISPATCH_CHUNK]
        params = DispatchParams(message_id=message_id, first=part[0], last=part[-1])
        rows.append(
            (codes.request_id(), JobKind.DISPATCH, None, encode(params), jobs.PENDING, run_at,
             now, now, message_id)
        )  # fmt: skip
    tx.many(
        "INSERT INTO jobs (request_id, kind, account_id, params, state, run_at, created_at,"
        " updated_at, message_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )


def delete_message(tx: Tx, account: str, apps: frozenset[str] | None, code: str) -> str:
    """Cancel a message: what is not yet sent ends ``failed``/``Cancelled``.

    The message row changes first: that stops its expansion (each expansion
    step is guarded by the row, see ``store/expansion.py``) and, on
    PostgreSQL, waits for a step in progress, so the deliveries and jobs
    cancelled below include everything any step wrote.
    """
    row = tx.one(
        "SELECT m.id, m.status, a.code FROM messages m"
        " JOIN applications a ON a.id = m.app_id JOIN accounts acc ON acc.id = a.account_id"
        " WHERE m.code = ? AND acc.name = ?",
        (code, account),
    )
    if row is None:
        raise ConflictError("message not found")
    if apps is not None and row[2] not in apps:
        raise AccessError(f"message {code} belongs to an application the token may not use")
    message_id, status, _ = row
    won = tx.one(
        "UPDATE messages SET status = 'cancelled', expand_after = NULL WHERE id = ?"
        " AND status NOT IN ('done', 'cancelled') RETURNING status",
        (message_id,),
    )
    if won is None:  # it ended meanwhile (status was read before the row was ours)
        now_row = tx.one("SELECT status FROM messages WHERE id = ?", (message_id,))
        raise ConflictError(f"message is already {now_row[0] if now_row else status}")
    # Only the rows this UPDATE won: a dispatcher may mark some sent meanwhile.
    pending = sorted(
        tx.all(
            "UPDATE deliveries SET state = ? WHERE message_id = ? AND state = ?"
            " RETURNING id, platform",
            (_FAILED, message_id, _CREATED),
        )
    )
    append_events(
        tx,
        [(did, Status.FAILED, DESC_CANCELLED, message_id, platform) for did, platform in pending],
    )
    tx.run(
        "UPDATE jobs SET state = 'cancelled', updated_at = ? WHERE message_id = ?"
        " AND kind IN ('dispatch', ?) AND state IN ('pending', 'running')",
        (tx.now(), message_id, EXPAND),
    )
    return MessageStatus.CANCELLED


# -- reading the trail --------------------------------------------------------------------


#: Positions in the trail are (ts, key): a delivery's ``created`` (its row's
#: ``created_at``) has its delivery id as key, an event its id plus this, so at one
#: instant ``created`` comes first, as it was written first.
EVENT_KEY = 1 << 62
