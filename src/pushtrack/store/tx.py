"""Engine-neutral transaction logic.

Each function here runs inside one open write (or read) transaction of an
engine, through the small ``Tx`` protocol. SQL is written once, in the
dialect SQLite and PostgreSQL share (``?`` placeholders, which the PostgreSQL
engine translates; ``ON CONFLICT``; row values; ``RETURNING``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from pushtrack.domain import codes
from pushtrack.domain.payload import build_template
from pushtrack.domain.platforms import Platform
from pushtrack.domain.status import (
    COUNTER_OF,
    DESC_CANCELLED,
    DESC_CREATED,
    DESC_UNKNOWN_DEVICE,
    DESC_UNSUBSCRIBED,
    Status,
)
from pushtrack.domain.timeutil import HOUR_US, US
from pushtrack.store.base import (
    AccessError,
    App,
    ConflictError,
    DeviceIn,
    LogQuery,
    LogRow,
    MessageCreated,
    MessagePlan,
    TokenInfo,
    Tx,
)

#: Deliveries per dispatch job.
DISPATCH_CHUNK = 1000

_json = msgspec.json.Encoder()


def dumps(value: Any) -> str:
    return _json.encode(value).decode()


def loads(text: str | bytes | None) -> Any:
    return None if text is None else msgspec.json.decode(text)


# -- accounts, applications, tokens --------------------------------------------------

APP_COLUMNS = (
    "a.id, a.code, a.name, acc.name, a.tracking, a.open_logging, "
    "a.device_token_required, a.created_at"
)
APP_FROM = "applications a JOIN accounts acc ON acc.id = a.account_id"


def app_from_row(row: tuple[Any, ...]) -> App:
    return App(
        id=row[0],
        code=row[1],
        name=row[2],
        account=row[3],
        tracking=bool(row[4]),
        open_logging=bool(row[5]),
        device_token_required=bool(row[6]),
        created_at=row[7],
    )


def account_id(tx: Tx, name: str) -> int:
    row = tx.one("SELECT id FROM accounts WHERE name = ?", (name,))
    if row:
        return int(row[0])
    row = tx.one(
        "INSERT INTO accounts (name, created_at) VALUES (?, ?) RETURNING id", (name, tx.now())
    )
    assert row is not None
    return int(row[0])


def create_app(
    tx: Tx, *, account: str, name: str, tracking: bool, open_logging: bool, token_required: bool
) -> App:
    acc = account_id(tx, account)
    code = codes.app_code()
    while tx.one("SELECT 1 FROM applications WHERE code = ?", (code,)):
        code = codes.app_code()
    tx.run(
        "INSERT INTO applications (code, account_id, name, tracking, open_logging,"
        " device_token_required, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (code, acc, name, int(tracking), int(open_logging), int(token_required), tx.now()),
    )
    app = get_app(tx, code)
    assert app is not None
    return app


def get_app(tx: Tx, code: str) -> App | None:
    row = tx.one(f"SELECT {APP_COLUMNS} FROM {APP_FROM} WHERE a.code = ?", (code,))
    return app_from_row(row) if row else None


def list_apps(tx: Tx, account: str) -> list[App]:
    rows = tx.all(
        f"SELECT {APP_COLUMNS} FROM {APP_FROM} WHERE acc.name = ? ORDER BY a.id", (account,)
    )
    return [app_from_row(r) for r in rows]


TOKEN_COLUMNS = "t.id, acc.name, t.kind, t.prefix, t.apps, t.methods, t.created_at, t.revoked_at"


def _token_from_row(row: tuple[Any, ...]) -> TokenInfo:
    apps, methods = loads(row[4]), loads(row[5])
    return TokenInfo(
        id=row[0],
        account=row[1],
        kind=row[2],
        prefix=row[3],
        apps=frozenset(apps) if apps is not None else None,
        methods=frozenset(methods) if methods is not None else None,
        created_at=row[6],
        revoked=row[7] is not None,
    )


def create_token(
    tx: Tx,
    account: str,
    kind: str,
    token_hash: str,
    prefix: str,
    apps: Sequence[str] | None,
    methods: Sequence[str] | None,
) -> TokenInfo:
    acc = account_id(tx, account)
    if apps:
        known = {r[0] for r in tx.all("SELECT code FROM applications WHERE account_id = ?", (acc,))}
        missing = sorted(set(apps) - known)
        if missing:
            raise ConflictError(f"no application {', '.join(missing)} in account {account!r}")
    row = tx.one(
        "INSERT INTO api_tokens (account_id, kind, prefix, hash, apps, methods, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (
            acc,
            kind,
            prefix,
            token_hash,
            dumps(sorted(apps)) if apps else None,
            dumps(sorted(methods)) if methods else None,
            tx.now(),
        ),
    )
    assert row is not None
    found = tx.one(
        f"SELECT {TOKEN_COLUMNS} FROM api_tokens t JOIN accounts acc ON acc.id = t.account_id"
        " WHERE t.id = ?",
        (row[0],),
    )
    assert found is not None
    return _token_from_row(found)


def find_token(tx: Tx, token_hash: str) -> TokenInfo | None:
    row = tx.one(
        f"SELECT {TOKEN_COLUMNS} FROM api_tokens t JOIN accounts acc ON acc.id = t.account_id"
        " WHERE t.hash = ?",
        (token_hash,),
    )
    return _token_from_row(row) if row else None


def list_tokens(tx: Tx, account: str) -> list[TokenInfo]:
    rows = tx.all(
        f"SELECT {TOKEN_COLUMNS} FROM api_tokens t JOIN accounts acc ON acc.id = t.account_id"
        " WHERE acc.name = ? ORDER BY t.id",
        (account,),
    )
    return [_token_from_row(r) for r in rows]


def revoke_tokens(tx: Tx, account: str, prefix: str) -> int:
    return tx.run(
        "UPDATE api_tokens SET revoked_at = ? WHERE revoked_at IS NULL AND prefix = ?"
        " AND account_id = (SELECT id FROM accounts WHERE name = ?)",
        (tx.now(), prefix, account),
    )


# -- devices -----------------------------------------------------------------------------


def register_device(tx: Tx, app: App, d: DeviceIn) -> None:
    now = tx.now()
    tx.run(
        "INSERT INTO devices (app_id, hwid, push_token, device_type, language, timezone, tags,"
        " user_id, app_version, device_model, os_version, subscribed, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (app_id, hwid) DO UPDATE SET"
        " push_token = COALESCE(excluded.push_token, devices.push_token),"
        " device_type = excluded.device_type,"
        " language = COALESCE(excluded.language, devices.language),"
        " timezone = COALESCE(excluded.timezone, devices.timezone),"
        " tags = COALESCE(excluded.tags, devices.tags),"
        " user_id = COALESCE(excluded.user_id, devices.user_id),"
        " app_version = COALESCE(excluded.app_version, devices.app_version),"
        " device_model = COALESCE(excluded.device_model, devices.device_model),"
        " os_version = COALESCE(excluded.os_version, devices.os_version),"
        " subscribed = CASE WHEN COALESCE(excluded.push_token, devices.push_token) IS NULL"
        " THEN 0 ELSE 1 END, updated_at = excluded.updated_at",
        (
            app.id,
            d.hwid,
            d.push_token,
            d.device_type,
            d.language,
            d.timezone,
            dumps(d.tags) if d.tags is not None else None,
            d.user_id,
            d.app_version,
            d.device_model,
            d.os_version,
            1 if d.push_token else 0,
            now,
            now,
        ),
    )


def unregister_device(tx: Tx, app: App, hwid: str) -> bool:
    return (
        tx.run(
            "UPDATE devices SET push_token = NULL, subscribed = 0, updated_at = ?"
            " WHERE app_id = ? AND hwid = ?",
            (tx.now(), app.id, hwid),
        )
        > 0
    )


# -- events and counters -----------------------------------------------------------------


def append_events(tx: Tx, events: Sequence[tuple[int, Status, str, int, int]]) -> None:
    """Append events ``(delivery_id, status, description, message_id, platform)``.

    Callers pass only transitions they won on the delivery row (its ``state``
    and ``opened`` columns, changed by a guarded UPDATE in the same
    transaction), so there is at most one event per (delivery, status) and
    counters always agree with the log.
    """
    if not events:
        return
    ts = tx.now()
    tx.many(
        "INSERT INTO events (ts, delivery_id, status, description) VALUES (?, ?, ?, ?)",
        [(ts, e[0], int(e[1]), e[2]) for e in events],
    )
    bump_counters(tx, ((e[3], ts, e[4], e[1]) for e in events))


#: Counter tables: (table, bucket column, bucket width in µs).
COUNTER_TABLES = (("counters", "hour", HOUR_US), ("counters_minute", "minute", 60 * US))


def bump_counters(tx: Tx, items: Iterable[tuple[int, int, int, Status]]) -> None:
    """Add one to the counters of each ``(message_id, ts, platform, status)``.

    Each event counts in its hour (``counters``) and its minute (``counters_minute``).
    """
    totals: Counter[tuple[int, int, int, str]] = Counter()
    for message_id, ts, platform, status in items:
        column = COUNTER_OF.get(status)
        if column:
            totals[(message_id, ts, platform, column)] += 1
    if not totals:
        return
    for table, bucket, width in COUNTER_TABLES:
        by_column: dict[str, Counter[tuple[int, int, int]]] = {}
        for (message_id, ts, platform, column), n in totals.items():
            by_column.setdefault(column, Counter())[(message_id, ts - ts % width, platform)] += n
        for column, counts in by_column.items():
            tx.many(
                f"INSERT INTO {table} (message_id, {bucket}, platform, {column})"
                f" VALUES (?, ?, ?, ?) ON CONFLICT (message_id, {bucket}, platform) DO UPDATE"
                f" SET {column} = {table}.{column} + excluded.{column}",
                [(*key, n) for key, n in counts.items()],
            )


def record_device_report(
    tx: Tx, app: App, hwid: str, payload_hash: str, status: Status, description: str
) -> bool:
    """Record a device's report on one delivery, once; False if no delivery matches.

    One guarded UPDATE both finds the delivery and wins the transition, so a
    repeated report (or a delivery already settled) writes nothing.
    """
    if status is Status.DELIVERED:
        # The device's word settles a delivery still in flight; one already
        # delivered (the gateway accepted it) or failed keeps its one terminal status.
        change, guard = "state = ?", "state IN (?, ?)"
        params: tuple[int, ...] = (int(Status.DELIVERED), int(Status.CREATED), int(Status.SENT))
    elif app.open_logging:
        change, guard, params = "opened = 1", "opened = 0", ()
    else:
        change, guard, params = "", "", ()
    if change:
        won = tx.one(
            f"UPDATE deliveries SET {change} WHERE hwid = ? AND hash = ? AND {guard}"
            " AND EXISTS (SELECT 1 FROM messages m WHERE m.id = deliveries.message_id"
            " AND m.app_id = ?)"
            " RETURNING id, message_id, platform",
            (*params[:1], hwid, payload_hash, *params[1:], app.id),
        )
        if won is not None:
            append_events(tx, [(won[0], status, description, won[1], won[2])])
            return True
    found = tx.one(
        "SELECT 1 FROM deliveries d JOIN messages m ON m.id = d.message_id"
        " WHERE d.hwid = ? AND d.hash = ? AND m.app_id = ?",
        (hwid, payload_hash, app.id),
    )
    return found is not None


# -- messages ---------------------------------------------------------------------------


def _resolve(tx: Tx, app: App, entries: Sequence[str]) -> dict[str, tuple[Any, ...]]:
    """Map each entry (hwid first, then push token) to its device row."""
    found: dict[str, tuple[Any, ...]] = {}
    unique = list(dict.fromkeys(entries))
    cols = "id, hwid, push_token, device_type, language, user_id, subscribed, timezone"
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
    cols = "id, hwid, push_token, device_type, language, user_id, subscribed, timezone"
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
                    plan.send_at,
                )
            )
            if live:
                to_send.append(did)
            else:
                failed.append((did, Status.FAILED, DESC_UNSUBSCRIBED, message_id, platform))
        created.append((did, Status.CREATED, DESC_CREATED, message_id, platform))

    if not to_send:
        status = "done"  # nothing to send: every delivery (if any) already ended
    else:
        status = "scheduled" if plan.send_at > now else "pending"
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
    _enqueue_dispatch(tx, app, message_id, to_send, plan.send_at)

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
