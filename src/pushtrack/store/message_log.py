"""Reading the trail: getMessageLog's pages (the statement; ``trail.py`` holds the event shape).

A page is the events and the deliveries' ``created`` (carried by their rows)
that a query selects, merged in (ts, key) order (``messages.EVENT_KEY``). It is
read in one statement shaped so that both planners start from the most
selective index the query names, whatever their statistics say:

- the account's applications (and the token's restriction) are resolved first,
  and so are a query's devices (hwid, or the user's through ``user_devices``):
  the statement then holds constant id lists, not joins through ``accounts``
  and ``applications`` (tiny tables, often never analyzed, whose misestimates
  made PostgreSQL walk every message of the application);
- the application condition is written ``+m.app_id``: no index of it leads, so
  a lookup starts from its delivery (device, user, tracking code) or message
  (id, code, campaign) index, and a query by application or dates alone walks
  the time index in order and stops at the page's end;
- the ordering and the limit run over narrow rows (time, key, status,
  description, delivery id); only the page's rows are then joined to their
  deliveries and messages for the columns the answer shows (and put back in
  order here, not by the database sorting the joined rows again);
- on SQLite, a delivery's events are indexed by (delivery, time): the bound a
  full page of ``created`` puts on the events is tested in the index.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import itemgetter
from typing import Any, NamedTuple

from pushtrack.domain import codes
from pushtrack.domain.failures import class_of
from pushtrack.domain.status import DESC_CREATED, Status
from pushtrack.domain.timeutil import HOUR_US
from pushtrack.store.base import LogQuery, LogRow, Tx
from pushtrack.store.events import Span
from pushtrack.store.messages import EVENT_KEY
from pushtrack.store.tracking import tracking_key, where_code


def account_apps(
    tx: Tx, account: str, apps: frozenset[str] | None = None, app_code: str | None = None
) -> dict[int, str]:
    """The applications (id -> code) of ``account`` within a token's restriction
    ``apps`` (None: all) and, if given, only ``app_code``."""
    rows = tx.all_as(
        _AppRow,
        "SELECT a.id, a.code FROM applications a JOIN accounts acc ON acc.id = a.account_id"
        " WHERE acc.name = ?",
        (account,),
    )
    return {
        int(a.id): a.code
        for a in rows
        if (apps is None or a.code in apps) and (app_code is None or a.code == app_code)
    }


class _AppRow(NamedTuple):
    id: int
    code: str


#: Larger than any time: no bound.
_NO_BOUND = 2**63 - 1


def _marks(values: Sequence[Any]) -> str:
    return ",".join("?" * len(values))


def message_log(tx: Tx, q: LogQuery) -> list[LogRow]:
    """One page of the trail: up to ``q.limit`` rows after ``q.after``, in (ts, key) order."""
    apps = account_apps(tx, q.account, q.apps, q.application_code)
    if not apps:
        return []
    key = tracking_key(tx)
    app_ids = list(apps)
    where: list[str] = [f"+m.app_id IN ({_marks(app_ids)})"]
    params: list[Any] = list(app_ids)

    def add(cond: str, *values: Any) -> None:
        where.append(cond)
        params.extend(values)

    if q.message_id is not None:
        # the id the tenant was shown (codes.shown_message_id), not the store's
        add("m.id = ?", codes.stored_message_id(key, q.message_id) or 0)
    if q.message_code is not None:
        add("m.code = ?", q.message_code)
    if q.campaign_code is not None:
        add("m.campaign = ?", q.campaign_code)  # messages_campaign
    # a query that names messages: the hours their events fall in, from their counters
    span = _event_span(tx, where, params) if len(where) > 1 else None
    if q.tracking_code is not None:
        cond, values = where_code(key, q.tracking_code)  # by id, or a legacy code's index
        add(cond, *values)
    if q.hwids:
        # deliveries are indexed by device id; an entry that matched no device, by hwid
        hwids = list(q.hwids)
        ids = _device_ids(tx, app_ids, hwids)
        unknown = f"(d.device_id IS NULL AND d.hwid IN ({_marks(hwids)}))"
        if ids:
            add(f"(d.device_id IN ({_marks(ids)}) OR {unknown})", *ids, *hwids)
        else:
            add(unknown, *hwids)
    if q.user_id is not None:
        # user_devices holds each (user id, device) a delivery carried
        ids = [
            int(device_id)
            for device_id in tx.column(
                "SELECT device_id FROM user_devices WHERE user_id = ?", (q.user_id,)
            )
        ]
        if not ids:
            return []
        add(f"d.device_id IN ({_marks(ids)}) AND d.user_id = ?", *ids, q.user_id)
    if q.platforms:
        platforms = [int(p) for p in q.platforms]
        add(f"d.platform IN ({_marks(platforms)})", *platforms)

    ctes: list[str] = []
    all_params: list[Any] = []
    # the deliveries' ``created``
    if q.statuses is None or Status.CREATED in q.statuses:
        conds, values = list(where), list(params)
        conds.append("d.created_at >= ?")
        values.append(q.date_from if q.date_from is not None else 0)
        if q.date_to is not None:
            conds.append("d.created_at <= ?")
            values.append(q.date_to)
        if q.after is not None:
            conds.append("(d.created_at, d.id) > (?, ?)")
            values.extend((q.after[0], min(q.after[1], EVENT_KEY)))
        ctes.append(
            "created_rows AS (SELECT d.created_at AS ts, d.id AS k,"
            f" {int(Status.CREATED)} AS status, '{DESC_CREATED}' AS description, d.id AS did,"
            " NULL AS gateway_id, NULL AS failure_class"
            " FROM deliveries d JOIN messages m ON m.id = d.message_id"
            f" WHERE {' AND '.join(conds)} ORDER BY d.created_at, d.id LIMIT ?)"
        )
        all_params += [*values, q.limit]
    # the events
    statuses = [int(s) for s in q.statuses or () if s is not Status.CREATED]
    if q.statuses is None or statuses:
        conds, values = list(where), list(params)
        if span is not None:
            conds.append("e.ts >= ? AND e.ts < ?")
            values.extend(span)
        if q.date_from is not None:
            conds.append("e.ts >= ?")
            values.append(q.date_from)
        if q.date_to is not None:
            conds.append("e.ts <= ?")
            values.append(q.date_to)
        if q.statuses is not None:
            conds.append(f"e.status IN ({_marks(statuses)})")
            values.extend(statuses)
        if q.after is not None:
            conds.append("(e.ts, e.id) > (?, ?)")
            values.extend((q.after[0], q.after[1] - EVENT_KEY))
        if ctes:
            # A full page of ``created`` ends the page at its last row at the latest:
            # no event from that instant on can be in it (at one instant ``created``
            # comes first). The bound keeps PostgreSQL to the event partitions before it.
            conds.append(
                "e.ts < (SELECT CASE WHEN COUNT(*) = ? THEN MAX(ts) ELSE ? END FROM created_rows)"
            )
            values.extend((q.limit, _NO_BOUND))
        ctes.append(
            f"event_rows AS (SELECT e.ts AS ts, e.id + {EVENT_KEY} AS k, e.status AS status,"
            " e.description AS description, e.delivery_id AS did,"
            " e.gateway_id AS gateway_id, e.failure_class AS failure_class"
            " FROM events e JOIN deliveries d ON d.id = e.delivery_id"
            f" JOIN messages m ON m.id = d.message_id WHERE {' AND '.join(conds)}"
            " ORDER BY e.ts, e.id LIMIT ?)"
        )
        all_params += [*values, q.limit]
    if not ctes:
        return []
    union = " UNION ALL ".join(f"SELECT * FROM {c.split(' ', 1)[0]}" for c in ctes)
    sql = (
        f"WITH {', '.join(ctes)}"
        " SELECT p.ts, p.k AS key, p.status, p.description, d.id AS delivery_id,"
        " d.legacy_code, d.hwid, d.target_id, d.user_id, d.platform, d.message_id,"
        " p.gateway_id, p.failure_class, d.state, d.attempts, d.retry_reason, d.retry_class"
        f" FROM (SELECT * FROM ({union}) AS log ORDER BY 1, 2 LIMIT ?)"
        " AS p JOIN deliveries d ON d.id = p.did"
    )
    all_params.append(q.limit)
    # plain tuples, unpacked or indexed by _PAGE_COLUMNS (the statement's names, in order)
    rows = tx.all_planned(sql, all_params)
    # in (ts, key) order: sorted here, not by a last sort of the joined (wide) rows
    rows.sort(key=_POSITION)
    derived = list({r[_DELIVERY_ID] for r in rows if r[_LEGACY_CODE] is None})
    code = dict(zip(derived, codes.tracking_codes_of(key, derived), strict=True))
    # a page names few messages: read once each (not joined to every row, which let
    # PostgreSQL hash the whole messages table for a page)
    message_ids = list({r[_MESSAGE_ID] for r in rows})
    messages = {
        int(m.id): (m.code, int(m.app_id), codes.shown_message_id(key, int(m.id)))
        for m in (
            tx.all_as(
                _MessageRow,
                f"SELECT id, code, app_id FROM messages WHERE id IN ({_marks(message_ids)})",
                message_ids,
            )
            if message_ids
            else ()
        )
    }
    out: list[LogRow] = []
    append = out.append
    for (  # _PAGE_COLUMNS' order
        ts,
        key_,
        status_value,
        description,
        delivery_id,
        legacy,
        hwid,
        target_id,
        user_id,
        platform,
        message_id,
        gateway_id,
        failure_class,
        state,
        attempts,
        retry_reason,
        retry_class,
    ) in rows:
        status = _STATUS[status_value]
        message_code, app_id, shown_id = messages[message_id]
        if status_value == _SENT and state == _SENT and retry_reason is not None:
            # a delivery being retried: its last transient reason and class, on its `sent`
            failure_class = retry_class
        else:
            retry_reason = None
            if failure_class is None and status_value == _FAILED:
                failure_class = class_of(status, None, description)
        # positional, in LogRow's field order (one row of a page of up to 100,000)
        append(
            LogRow(
                key_,
                ts,
                status,
                description,
                apps[app_id],
                message_code,
                shown_id,
                legacy if legacy is not None else code[delivery_id],
                hwid,
                target_id,
                user_id,
                platform,
                gateway_id,
                failure_class,
                attempts,
                retry_reason,
            )
        )
    return out


#: A page's columns, in its statement's order (its ``AS`` names): its place (ts, key),
#: status and description, its delivery's columns, the gateway's id and failure class
#: of an event, and the delivery's state, tries and last transient reason and class.
#: Rows stay plain tuples, unpacked or indexed by these names where they are read:
#: rows read as NamedTuples stay tracked by the cyclic GC (a tuple subclass is never
#: untracked, a plain tuple of numbers and text is), which costs a page of 100,000 of
#: them (and an export's pages) much of their CPU (ARCHITECTURE.md, "Rows are read by
#: name").
_PAGE_COLUMNS = (
    "ts",
    "key",
    "status",
    "description",
    "delivery_id",
    "legacy_code",
    "hwid",
    "target_id",
    "user_id",
    "platform",
    "message_id",
    "gateway_id",
    "failure_class",
    "state",
    "attempts",
    "retry_reason",
    "retry_class",
)
_TS, _KEY, _DELIVERY_ID, _LEGACY_CODE, _MESSAGE_ID = map(
    _PAGE_COLUMNS.index, ("ts", "key", "delivery_id", "legacy_code", "message_id")
)


class _MessageRow(NamedTuple):
    id: int
    code: str
    app_id: int


def _event_span(tx: Tx, where: Sequence[str], params: Sequence[Any]) -> tuple[int, int] | None:
    """The times, [from, to), that every event of the messages ``where`` selects (over
    ``messages m`` only) falls in: every event is counted in its hour's counter in the
    transaction that writes it (and retention removes a bucket only after its events),
    so their hourly buckets bound them. With constant bounds PostgreSQL reads only the
    daily partitions they cover, and SQLite tests them in the (delivery, time) index.
    None (no bound) when they have no counter at all: rows written by other means
    (an old database's, a test's) are read as before."""
    span = tx.one_as(
        Span,
        "SELECT MIN(c.hour) AS first, MAX(c.hour) AS last FROM counters c WHERE c.message_id IN"
        f" (SELECT m.id FROM messages m WHERE {' AND '.join(where)})",
        params,
    )
    if span is None or span.first is None or span.last is None:
        return None
    return int(span.first), int(span.last) + HOUR_US


_SENT = int(Status.SENT)
_FAILED = int(Status.FAILED)
#: A row's position in the trail: (ts, key).
_POSITION = itemgetter(_TS, _KEY)
_STATUS = {int(s): s for s in Status}


def _device_ids(tx: Tx, app_ids: Sequence[int], hwids: Sequence[str]) -> list[int]:
    """The ids of the devices with these hwids in these applications."""
    return [
        int(device_id)
        for device_id in tx.column(
            f"SELECT id FROM devices WHERE app_id IN ({_marks(app_ids)})"
            f" AND hwid IN ({_marks(hwids)})",
            (*app_ids, *hwids),
        )
    ]
