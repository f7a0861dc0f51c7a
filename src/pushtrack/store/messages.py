"""createMessage and deleteMessage as units of work, and getMessageLog's query.

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
from typing import Any

import msgspec

from pushtrack.domain import codes
from pushtrack.domain.payload import build_template
from pushtrack.domain.platforms import Platform, platform_of
from pushtrack.domain.status import (
    DESC_CANCELLED,
    DESC_CREATED,
    DESC_NOT_IN_AUDIENCE,
    DESC_UNKNOWN_DEVICE,
    DESC_UNSUBSCRIBED,
    Status,
)
from pushtrack.domain.targeting import Node
from pushtrack.domain.timeutil import local_to_utc
from pushtrack.store import jobs
from pushtrack.store.base import (
    AccessError,
    App,
    ConflictError,
    LogQuery,
    LogRow,
    MessageCreated,
    MessagePlan,
    Targeting,
    Tx,
)
from pushtrack.store.targeting import audience_where
from pushtrack.store.tx import append_events, dumps

#: Deliveries per dispatch job.
DISPATCH_CHUNK = 1000

_CREATED, _FAILED = int(Status.CREATED), int(Status.FAILED)


# -- messages ---------------------------------------------------------------------------

#: Job kind that expands an audience message into deliveries (``store/expansion.py``).
EXPAND = "expand_audience"

DEVICE_COLUMNS = (
    "d.id, d.hwid, d.push_token, d.device_type, d.language, d.user_id, d.subscribed, d.timezone,"
    " d.tz_name"
)
#: A device row as the steps below read it (columns of ``DEVICE_COLUMNS``).
Device = tuple[Any, ...]
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
        for row in tx.all(
            f"SELECT {DEVICE_COLUMNS} FROM devices d WHERE d.app_id = ? AND d.hwid IN ({marks})",
            (app.id, *part),
        ):
            found[row[1]] = row
    rest = [e for e in unique if e not in found]
    for start in range(0, len(rest), 900):
        part = rest[start : start + 900]
        marks = ",".join("?" * len(part))
        for row in tx.all(
            f"SELECT {DEVICE_COLUMNS} FROM devices d WHERE d.app_id = ?"
            f" AND d.push_token IN ({marks}) ORDER BY d.updated_at",
            (app.id, *part),
        ):
            found[row[2]] = row  # the most recently updated device wins
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
    if plan.targeting.devices is None:
        return _create_audience_message(tx, app, plan)
    now = tx.now()
    targets = explicit_targets(tx, app, plan.targeting.devices)
    # every other targeting given narrows the explicit devices (their entries still get
    # a tracking code, and a trail that says why nothing was sent)
    left_out = _left_out(tx, app, plan.targeting, [d[0] for _, d in targets if d is not None])
    (message_id,) = tx.new_ids("messages", 1)
    code = codes.message_code()
    planned = plan_deliveries(
        now, plan.send_at, plan.local_time, targets, plan.notification, left_out
    )
    templates = ensure_templates(tx, message_id, plan.notification, planned.keys, {})
    built = build_deliveries(tx, message_id, planned, templates)
    run_at = max(now, plan.send_at) if built.first_due is None else built.first_due
    if not built.to_send:
        status = "done"  # nothing to send: every delivery (if any) already ended
    else:
        status = "scheduled" if run_at > now else "pending"
    _insert_message(tx, app, plan, message_id, code, status, len(built.rows), None)
    write_deliveries(tx, message_id, built)
    tracking_codes = None
    if app.tracking:
        tracking_codes = [planned.items[slot][5] for slot in planned.slots]
    return MessageCreated(code=code, id=message_id, tracking_codes=tracking_codes)


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
    status = "scheduled" if plan.send_at > now else "pending"
    _insert_message(tx, app, plan, message_id, code, status, 0, 0)
    jobs.enqueue(tx, kind=EXPAND, account=None, params={"message_id": message_id}, run_at=now)
    return MessageCreated(code=code, id=message_id, tracking_codes=None)


def _insert_message(
    tx: Tx,
    app: App,
    plan: MessagePlan,
    message_id: int,
    code: str,
    status: str,
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
            status,
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


class Planned(msgspec.Struct):
    """The deliveries of a set of targets, decided before any id is given (no I/O).

    Planning costs as much as writing; an expansion step plans before its
    write transaction, so the writer is held only for the writing.
    """

    #: Per delivery: (entry, device or None, template key or None, why it is not
    #: sent (None: it is), due, tracking code, payload hash).
    items: list[tuple[str, Device | None, TemplateKey | None, str | None, int, str, str]]
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
        who = ("d", dev[0]) if dev is not None else ("e", entry)
        if who in seen:
            slots.append(seen[who])
            continue
        seen[who] = len(unique)
        slots.append(len(unique))
        unique.append((entry, dev))
    n = len(unique)
    planned = Planned([], slots, [])
    keys: dict[TemplateKey, None] = {}
    tcodes = codes.tracking_codes(n)
    hashes = codes.payload_hashes(n)
    for tcode, phash, (entry, dev) in zip(tcodes, hashes, unique, strict=True):
        if dev is None:
            planned.items.append((entry, None, None, DESC_UNKNOWN_DEVICE, now, tcode, phash))
            continue
        key = (dev[3], _language_key(dev[4], wanted_languages))
        keys[key] = None
        due = send_at
        if local_time:
            due = max(now, local_to_utc(send_at, dev[7], dev[8]))
        refusal = None if dev[6] and dev[2] else DESC_UNSUBSCRIBED
        if dev[0] in left_out:
            refusal = DESC_NOT_IN_AUDIENCE
        planned.items.append((entry, dev, key, refusal, due, tcode, phash))
    planned.keys = list(keys)
    return planned


class Built(msgspec.Struct):
    """Planned deliveries with their ids, ready to write."""

    rows: list[tuple[Any, ...]]
    created: list[tuple[int, Status, str, int, int]]
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
    built = Built([], [], [], [], None)
    rows, created, failed, to_send = built.rows, built.created, built.failed, built.to_send
    first_due: int | None = None
    for did, (entry, dev, key, refusal, due, tcode, phash) in zip(ids, planned.items, strict=True):
        if dev is None or key is None:
            rows.append(
                (did, message_id, None, None, tcode, entry, entry, None, 0, None, _FAILED, due)
            )
            created.append((did, Status.CREATED, DESC_CREATED, message_id, 0))
            failed.append((did, Status.FAILED, DESC_UNKNOWN_DEVICE, message_id, 0))
            continue
        platform = dev[3]
        rows.append(
            (did, message_id, dev[0], templates[key], tcode, entry, dev[1], dev[5], platform,
             phash, _CREATED if refusal is None else _FAILED, due)
        )  # fmt: skip
        created.append((did, Status.CREATED, DESC_CREATED, message_id, platform))
        if refusal is None:
            first_due = due if first_due is None or due < first_due else first_due
            to_send.append(did)
        else:
            failed.append((did, Status.FAILED, refusal, message_id, platform))
    built.first_due = first_due
    return built


def write_deliveries(tx: Tx, message_id: int, built: Built) -> None:
    """Write built deliveries, their ``created``/``failed`` events and counters, and the
    dispatch jobs that will send the live ones."""
    if not built.rows:
        return
    tx.many(
        "INSERT INTO deliveries (id, message_id, device_id, payload_id, tracking_code,"
        " target_id, hwid, user_id, platform, hash, state, next_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        built.rows,
    )
    append_events(tx, built.created)
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
        params = {"message_id": message_id, "first": part[0], "last": part[-1]}
        rows.append(
            (codes.request_id(), "dispatch", None, dumps(params), "pending", run_at, now, now)
        )
    tx.many(
        "INSERT INTO jobs (request_id, kind, account_id, params, state, run_at, created_at,"
        " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
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
    now = tx.now()
    tx.run(
        "UPDATE jobs SET state = 'cancelled', updated_at = ? WHERE kind = 'dispatch'"
        " AND state IN ('pending', 'running') AND params LIKE ?",
        (now, f'{{"message_id":{message_id},%'),
    )
    tx.run(
        "UPDATE jobs SET state = 'cancelled', updated_at = ? WHERE kind = ?"
        " AND state IN ('pending', 'running') AND params = ?",
        (now, EXPAND, expand_params(message_id)),
    )
    return "cancelled"


def expand_params(message_id: int) -> str:
    """The stored ``params`` of a message's expansion job."""
    return dumps({"message_id": message_id})


# -- reading the trail --------------------------------------------------------------------


def message_log(tx: Tx, q: LogQuery) -> list[LogRow]:
    where = ["acc.name = ?"]
    params: list[Any] = [q.account]

    def add(cond: str, *values: Any) -> None:
        where.append(cond)
        params.extend(values)

    def add_in(column: str, values: Sequence[Any]) -> None:
        add(f"{column} IN ({','.join('?' * len(values))})", *values)

    if q.apps is not None:
        add_in("a.code", sorted(q.apps))
    if q.application_code is not None:
        add("a.code = ?", q.application_code)
    if q.message_id is not None:
        add("m.id = ?", q.message_id)
    if q.message_code is not None:
        add("m.code = ?", q.message_code)
    if q.campaign_code is not None:
        add("m.campaign = ?", q.campaign_code)
    if q.tracking_code is not None:
        add("d.tracking_code = ?", q.tracking_code)  # unique, so indexed
    if q.hwids:
        add_in("d.hwid", q.hwids)
    if q.user_id is not None:
        add("d.user_id = ?", q.user_id)
    if q.date_from is not None:
        add("e.ts >= ?", q.date_from)
    if q.date_to is not None:
        add("e.ts <= ?", q.date_to)
    if q.statuses:
        add_in("e.status", [int(s) for s in q.statuses])
    if q.platforms:
        add_in("d.platform", [int(p) for p in q.platforms])
    if q.after is not None:
        add("(e.ts, e.id) > (?, ?)", *q.after)
    sql = (
        "SELECT e.id, e.ts, e.status, e.description, a.code, m.code, m.id, d.tracking_code,"
        " d.hwid, d.target_id, d.user_id, d.platform"
        " FROM events e JOIN deliveries d ON d.id = e.delivery_id"
        " JOIN messages m ON m.id = d.message_id JOIN applications a ON a.id = m.app_id"
        " JOIN accounts acc ON acc.id = a.account_id"
        f" WHERE {' AND '.join(where)} ORDER BY e.ts, e.id LIMIT ?"
    )
    params.append(q.limit)
    return [
        LogRow(
            event_id=r[0],
            ts=r[1],
            status=Status(r[2]),
            description=r[3],
            application_code=r[4],
            message_code=r[5],
            message_id=r[6],
            tracking_code=r[7],
            hwid=r[8],
            target_id=r[9],
            user_id=r[10],
            platform=r[11],
        )
        for r in tx.all(sql, params)
    ]
