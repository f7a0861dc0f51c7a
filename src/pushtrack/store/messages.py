"""createMessage and deleteMessage as units of work, and getMessageLog's query.

Everything of one createMessage request is written by one call of
``create_messages``: messages, payload templates, deliveries, their
``created`` (and, for unknown or unsubscribed devices, ``failed``) events,
the counters, and the dispatch jobs that will send them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pushtrack.domain import codes
from pushtrack.domain.payload import build_template
from pushtrack.domain.platforms import Platform
from pushtrack.domain.status import (
    DESC_CANCELLED,
    DESC_CREATED,
    DESC_UNKNOWN_DEVICE,
    DESC_UNSUBSCRIBED,
    Status,
)
from pushtrack.domain.timeutil import local_to_utc
from pushtrack.store.base import (
    AccessError,
    App,
    ConflictError,
    LogQuery,
    LogRow,
    MessageCreated,
    MessagePlan,
    Tx,
)
from pushtrack.store.tx import append_events, dumps

#: Deliveries per dispatch job.
DISPATCH_CHUNK = 1000


# -- messages ---------------------------------------------------------------------------


def _resolve(tx: Tx, app: App, entries: Sequence[str]) -> dict[str, tuple[Any, ...]]:
    """Map each entry (hwid first, then push token) to its device row."""
    found: dict[str, tuple[Any, ...]] = {}
    unique = list(dict.fromkeys(entries))
    cols = "id, hwid, push_token, device_type, language, user_id, subscribed, timezone, tz_name"
    for start in range(0, len(unique), 900):
        part = unique[start : start + 900]
        marks = ",".join("?" * len(part))
        for row in tx.all(
            f"SELECT {cols} FROM devices WHERE app_id = ? AND hwid IN ({marks})",
            (app.id, *part),
        ):
            found[row[1]] = row
    rest = [e for e in unique if e not in found]
    for start in range(0, len(rest), 900):
        part = rest[start : start + 900]
        marks = ",".join("?" * len(part))
        for row in tx.all(
            f"SELECT {cols} FROM devices WHERE app_id = ? AND push_token IN ({marks})"
            " ORDER BY updated_at",
            (app.id, *part),
        ):
            found[row[2]] = row  # the most recently updated device wins
    return found


def _audience(tx: Tx, app: App, targeting: Any) -> list[tuple[Any, ...]]:
    cols = "id, hwid, push_token, device_type, language, user_id, subscribed, timezone, tz_name"
    where = ["app_id = ?", "subscribed = 1"]
    params: list[Any] = [app.id]
    if targeting.platforms:
        where.append(f"device_type IN ({','.join('?' * len(targeting.platforms))})")
        params.extend(targeting.platforms)
    if targeting.users:
        where.append(f"user_id IN ({','.join('?' * len(targeting.users))})")
        params.extend(targeting.users)
    return tx.all(f"SELECT {cols} FROM devices WHERE {' AND '.join(where)} ORDER BY id", params)


def create_messages(tx: Tx, app: App, plans: Sequence[MessagePlan]) -> list[MessageCreated]:
    return [_create_message(tx, app, plan) for plan in plans]


def _create_message(tx: Tx, app: App, plan: MessagePlan) -> MessageCreated:
    now = tx.now()
    t = plan.targeting
    # Who: (entry, device row or None) in the sender's order.
    targets: list[tuple[str, tuple[Any, ...] | None]]
    if t.devices is not None:
        found = _resolve(tx, app, t.devices)
        targets = [(e, found.get(e)) for e in t.devices]  # explicit devices win over filters
    else:
        targets = [(row[1], row) for row in _audience(tx, app, t)]

    (message_id,) = tx.new_ids("messages", 1)
    code = codes.message_code()
    # Payload templates, one per (platform, language) met.
    wanted_languages = _languages(plan.notification)
    templates: dict[tuple[int, str | None], int] = {}
    for _, dev in targets:
        if dev is not None:
            templates.setdefault((dev[3], _language_key(dev[4], wanted_languages)), 0)
    if templates:
        payload_rows: list[tuple[Any, ...]] = []
        ids = tx.new_ids("payloads", len(templates))
        for pid, key in zip(ids, list(templates), strict=True):
            templates[key] = pid
            tpl = build_template(
                plan.notification, _platform_or_none(key[0]) or Platform.IOS, key[1]
            )
            payload_rows.append(
                (pid, message_id, key[0], key[1], dumps(tpl.body), dumps(tpl.options))
            )
        tx.many(
            "INSERT INTO payloads (id, message_id, platform, language, body, options)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            payload_rows,
        )

    # One delivery per distinct device (or per distinct unknown entry).
    seen: dict[tuple[str, Any], int] = {}
    slots: list[int] = []  # per target: index into deliveries
    deliveries: list[list[Any]] = []
    for entry, dev in targets:
        who = ("d", dev[0]) if dev is not None else ("e", entry)
        if who in seen:
            slots.append(seen[who])
            continue
        seen[who] = len(deliveries)
        slots.append(len(deliveries))
        deliveries.append([entry, dev])
    n = len(deliveries)
    ids = tx.new_ids("deliveries", n) if n else []
    tcodes = codes.tracking_codes(n)
    hashes = codes.payload_hashes(n)
    delivery_rows: list[tuple[Any, ...]] = []
    created: list[tuple[int, Status, str, int, int]] = []
    failed: list[tuple[int, Status, str, int, int]] = []
    to_send: list[int] = []
    first_due: int | None = None
    for i, (entry, dev) in enumerate(deliveries):
        did = ids[i]
        if dev is None:
            platform = 0
            delivery_rows.append(
                (
                    did,
                    message_id,
                    None,
                    None,
                    tcodes[i],
                    entry,
                    entry,
                    None,
                    0,
                    None,
                    int(Status.FAILED),
                    now,
                )
            )
            failed.append((did, Status.FAILED, DESC_UNKNOWN_DEVICE, message_id, platform))
        else:
            platform = dev[3]
            pid = templates[(platform, _language_key(dev[4], wanted_languages))]
            live = bool(dev[6]) and bool(dev[2])
            state = Status.CREATED if live else Status.FAILED
            due = plan.send_at
            if plan.local_time:  # that wall-clock time in the device's zone
                due = max(now, local_to_utc(plan.send_at, dev[7], dev[8]))
            if live:
                first_due = due if first_due is None else min(first_due, due)
            delivery_rows.append(
                (
                    did,
                    message_id,
                    dev[0],
                    pid,
                    tcodes[i],
                    entry,
                    dev[1],
                    dev[5],
                    platform,
                    hashes[i],
                    int(state),
                    due,
                )
            )
            if live:
                to_send.append(did)
            else:
                failed.append((did, Status.FAILED, DESC_UNSUBSCRIBED, message_id, platform))
        created.append((did, Status.CREATED, DESC_CREATED, message_id, platform))

    run_at = max(now, plan.send_at) if first_due is None else first_due
    if not to_send:
        status = "done"  # nothing to send: every delivery (if any) already ended
    else:
        status = "scheduled" if run_at > now else "pending"
    tx.run(
        "INSERT INTO messages (id, code, app_id, campaign, notification, send_at, status,"
        " deliveries, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            message_id,
            code,
            app.id,
            plan.campaign,
            dumps(plan.notification),
            plan.send_at,
            status,
            n,
            now,
        ),
    )
    if delivery_rows:
        tx.many(
            "INSERT INTO deliveries (id, message_id, device_id, payload_id, tracking_code,"
            " target_id, hwid, user_id, platform, hash, state, next_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            delivery_rows,
        )
    append_events(tx, created)
    append_events(tx, failed)
    _enqueue_dispatch(tx, app, message_id, to_send, run_at)

    tracking_codes = None
    if app.tracking and t.devices is not None:
        tracking_codes = [tcodes[slot] for slot in slots]
    return MessageCreated(code=code, id=message_id, tracking_codes=tracking_codes)


def _platform_or_none(value: int) -> Platform | None:
    try:
        return Platform(value)
    except ValueError:
        return None


def _languages(notification: dict[str, Any]) -> frozenset[str]:
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


def _enqueue_dispatch(
    tx: Tx, app: App, message_id: int, delivery_ids: Sequence[int], run_at: int
) -> None:
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
    if status in ("done", "cancelled"):
        raise ConflictError(f"message is already {status}")
    # Only the rows this UPDATE won: a dispatcher may mark some sent meanwhile.
    pending = sorted(
        tx.all(
            "UPDATE deliveries SET state = ? WHERE message_id = ? AND state = ?"
            " RETURNING id, platform",
            (int(Status.FAILED), message_id, int(Status.CREATED)),
        )
    )
    append_events(
        tx,
        [(did, Status.FAILED, DESC_CANCELLED, message_id, platform) for did, platform in pending],
    )
    tx.run(
        "UPDATE jobs SET state = 'cancelled', updated_at = ? WHERE kind = 'dispatch'"
        " AND state IN ('pending', 'running')"
        " AND params LIKE ?",
        (tx.now(), f'{{"message_id":{message_id},%'),
    )
    tx.run("UPDATE messages SET status = 'cancelled' WHERE id = ?", (message_id,))
    return "cancelled"


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
