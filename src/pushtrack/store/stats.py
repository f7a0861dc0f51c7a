"""Statistics served from the counters (hourly, and the minute rollup): never the event log."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any, Literal, NamedTuple

import msgspec

from pushtrack.domain.codes import shown_message_id, stored_message_id
from pushtrack.domain.status import COUNTERS
from pushtrack.domain.timeutil import DAY_US, HOUR_US, US
from pushtrack.store.base import Engine, Tx
from pushtrack.store.events import Span
from pushtrack.store.jsontext import loads
from pushtrack.store.tracking import tracking_key

Interval = Literal["minute", "hour", "day"]

MINUTE_US = 60 * US
#: Bucket width of each interval.
WIDTH: dict[str, int] = {"minute": MINUTE_US, "hour": HOUR_US, "day": DAY_US}


class MessageRef(msgspec.Struct, frozen=True):
    id: int
    code: str
    app_code: str
    created_at: int


class Totals(msgspec.Struct, frozen=True):
    """The counters of one bucket (or a whole message) on one platform."""

    bucket: int
    platform: int
    sends: int = 0
    deliveries: int = 0
    opens: int = 0
    inbox_opens: int = 0
    unshowable_sends: int = 0
    errors: int = 0
    #: (ours) devices' own confirmations (messageDeliveryEvent)
    confirmed: int = 0


class MessageSummary(msgspec.Struct, frozen=True):
    id: int
    code: str
    app_code: str
    campaign: str | None
    notification: dict[str, Any]
    send_at: int
    status: str
    created_at: int
    platforms: list[int]
    #: Per platform, over the message's life (``bucket`` is 0).
    totals: list[Totals]


#: The counters summed over a group's rows (its shards, hours), each under its own name.
_SUMS = ", ".join(f"SUM({c}) AS {c}" for c in COUNTERS)


class _Counts(NamedTuple):
    """The counters of one (bucket, platform), as ``counter_rows`` reads them (``_SUMS``:
    the names of ``COUNTERS``, which the statement's check holds this class to)."""

    bucket: int
    platform: int
    sends: int | None
    deliveries: int | None
    opens: int | None
    inbox_opens: int | None
    unshowable_sends: int | None
    errors: int | None
    confirmed: int | None


class _MessageCounts(NamedTuple):
    """The counters of one (message, platform) over the message's life (``_SUMS``)."""

    message_id: int
    platform: int
    sends: int | None
    deliveries: int | None
    opens: int | None
    inbox_opens: int | None
    unshowable_sends: int | None
    errors: int | None
    confirmed: int | None


def _totals(bucket: int, platform: int, row: _Counts | _MessageCounts) -> Totals:
    return Totals(bucket, platform, **{c: int(getattr(row, c) or 0) for c in COUNTERS})


def find_message(
    tx: Tx, *, account: str, apps: frozenset[str] | None, code: str
) -> MessageRef | None:
    """A message of the account (and of the token's applications)."""
    row = tx.one_as(
        _RefRow,
        "SELECT m.id, m.code, a.code AS app_code, m.created_at FROM messages m"
        " JOIN applications a ON a.id = m.app_id JOIN accounts acc ON acc.id = a.account_id"
        " WHERE m.code = ? AND acc.name = ?",
        (code, account),
    )
    if row is None or (apps is not None and row.app_code not in apps):
        return None
    return MessageRef(**row._asdict())


class _RefRow(NamedTuple):
    """``MessageRef``'s fields."""

    id: int
    code: str
    app_code: str
    created_at: int


def counter_rows(
    tx: Tx,
    *,
    message_id: int,
    interval: Interval,
    since: int,
    date_from: int | None = None,
    until: int | None = None,
    platforms: Sequence[int] | None = None,
) -> list[Totals]:
    """Counters of a message per (bucket, platform), ordered by bucket then platform.

    ``since`` is the retention window's start: only buckets that begin at or
    after it count (one that straddles it also holds events already out).
    Of the range ``[date_from, until]`` a bucket needs only to overlap it. Day
    buckets sum the hours that pass both tests.
    """
    table, column, width = (
        ("counters_minute", "minute", MINUTE_US)
        if interval == "minute"
        else ("counters", "hour", HOUR_US)
    )
    where = ["message_id = ?", f"{column} >= ?"]
    params: list[Any] = [message_id, since]
    if date_from is not None:
        where.append(f"{column} > ?")
        params.append(date_from - width)
    if until is not None:
        where.append(f"{column} <= ?")
        params.append(until)
    if platforms:
        where.append(f"platform IN ({','.join('?' * len(platforms))})")
        params.extend(platforms)
    rows = tx.all_as(
        _Counts,
        f"SELECT {column} AS bucket, platform, {_SUMS} FROM {table}"
        f" WHERE {' AND '.join(where)}"
        f" GROUP BY {column}, platform ORDER BY {column}, platform",  # the sum of its shards
        params,
    )
    if interval != "day":
        return [_totals(r.bucket, r.platform, r) for r in rows]
    days: dict[tuple[int, int], dict[str, int]] = {}
    for r in rows:
        sums = days.setdefault(
            (r.bucket - r.bucket % DAY_US, r.platform), dict.fromkeys(COUNTERS, 0)
        )
        for c in COUNTERS:
            sums[c] += int(getattr(r, c))
    return [Totals(day, platform, **sums) for (day, platform), sums in sorted(days.items())]


def activity_span(tx: Tx, *, message_id: int, since: int) -> tuple[int, int] | None:
    """The first and the last minute (bucket starts) with any counter of a message.

    Only minutes at or after ``since`` (the retention window's start) count; None if none.
    """
    span = tx.one_as(
        Span,
        "SELECT MIN(minute) AS first, MAX(minute) AS last FROM counters_minute"
        " WHERE message_id = ? AND minute >= ?",
        (message_id, since),
    )
    if span is None or span.first is None or span.last is None:
        return None
    return int(span.first), int(span.last)


def list_messages(
    tx: Tx,
    *,
    account: str,
    apps: frozenset[str] | None,
    app_code: str,
    since: int,
    date_from: int | None,
    date_to: int | None,
    campaign: str | None = None,
    ids: Sequence[int] | None = None,
    codes: Sequence[str] | None = None,
    platforms: Sequence[int] | None = None,
    offset: int,
    limit: int,
) -> tuple[int, list[MessageSummary]]:
    """Messages of an application created at or after ``since``, newest first, with totals.

    ``date_from``/``date_to`` bound the send time; ``platforms`` keeps messages with a
    payload for any of them. Empty sequences are no filter.
    """
    if apps is not None and app_code not in apps:
        return 0, []
    where = ["a.code = ?", "acc.name = ?", "m.created_at >= ?"]
    params: list[Any] = [app_code, account, since]
    if date_from is not None:
        where.append("m.send_at >= ?")
        params.append(date_from)
    if date_to is not None:
        where.append("m.send_at <= ?")
        params.append(date_to)
    if campaign is not None:
        where.append("m.campaign = ?")
        params.append(campaign)
    key = tracking_key(tx)
    if ids:
        # the ids the tenant was shown (codes.shown_message_id), not the store's
        stored = [stored_message_id(key, i) or 0 for i in ids]
        where.append(f"m.id IN ({','.join('?' * len(stored))})")
        params.extend(stored)
    if codes:
        where.append(f"m.code IN ({','.join('?' * len(codes))})")
        params.extend(codes)
    if platforms:
        where.append(
            "EXISTS (SELECT 1 FROM payloads p WHERE p.message_id = m.id"
            f" AND p.platform IN ({','.join('?' * len(platforms))}))"
        )
        params.extend(platforms)
    base = (
        "FROM messages m JOIN applications a ON a.id = m.app_id"
        " JOIN accounts acc ON acc.id = a.account_id"
        f" WHERE {' AND '.join(where)}"
    )
    total = int(tx.scalar(f"SELECT COUNT(*) {base}", params) or 0)
    rows = tx.all_as(
        _SummaryRow,
        "SELECT m.id, m.code, a.code AS app_code, m.campaign, m.notification, m.send_at,"
        f" m.status, m.created_at {base} ORDER BY m.created_at DESC, m.id DESC LIMIT ? OFFSET ?",
        [*params, limit, offset],
    )
    if not rows:
        return total, []
    ids = [r.id for r in rows]
    marks = ",".join("?" * len(ids))
    kinds: dict[int, set[int]] = {}
    for p in tx.all_as(
        _PayloadPlatform,
        f"SELECT DISTINCT message_id, platform FROM payloads WHERE message_id IN ({marks})",
        ids,
    ):
        kinds.setdefault(p.message_id, set()).add(p.platform)
    totals: dict[int, list[Totals]] = {}
    for c in tx.all_as(
        _MessageCounts,
        f"SELECT message_id, platform, {_SUMS} FROM counters WHERE message_id IN ({marks})"
        " GROUP BY message_id, platform ORDER BY message_id, platform",
        ids,
    ):
        totals.setdefault(c.message_id, []).append(_totals(0, c.platform, c))
    return total, [
        MessageSummary(
            id=shown_message_id(key, r.id),
            code=r.code,
            app_code=r.app_code,
            campaign=r.campaign,
            notification=loads(r.notification),
            send_at=r.send_at,
            status=r.status,
            created_at=r.created_at,
            platforms=sorted(kinds.get(r.id, ())),
            totals=totals.get(r.id, []),
        )
        for r in rows
    ]


class _SummaryRow(NamedTuple):
    id: int
    code: str
    app_code: str
    campaign: str | None
    #: JSON text
    notification: str
    send_at: int
    status: str
    created_at: int


class _PayloadPlatform(NamedTuple):
    message_id: int
    platform: int


class StatsStore:
    """The statistics part of the ``Store``: ``store.stats``."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def find_message(
        self, account: str, apps: frozenset[str] | None, code: str
    ) -> MessageRef | None:
        return await self.engine.read(partial(find_message, account=account, apps=apps, code=code))

    async def counters(
        self,
        message_id: int,
        interval: Interval,
        since: int,
        date_from: int | None = None,
        until: int | None = None,
        platforms: Sequence[int] | None = None,
    ) -> list[Totals]:
        return await self.engine.read(
            partial(
                counter_rows,
                message_id=message_id,
                interval=interval,
                since=since,
                date_from=date_from,
                until=until,
                platforms=tuple(platforms) if platforms else None,
            )
        )

    async def activity_span(self, message_id: int, since: int) -> tuple[int, int] | None:
        return await self.engine.read(partial(activity_span, message_id=message_id, since=since))

    async def list_messages(
        self,
        *,
        account: str,
        apps: frozenset[str] | None,
        app_code: str,
        since: int,
        date_from: int | None = None,
        date_to: int | None = None,
        campaign: str | None = None,
        ids: Sequence[int] | None = None,
        codes: Sequence[str] | None = None,
        platforms: Sequence[int] | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> tuple[int, list[MessageSummary]]:
        return await self.engine.read(
            partial(
                list_messages,
                account=account,
                apps=apps,
                app_code=app_code,
                since=since,
                date_from=date_from,
                date_to=date_to,
                campaign=campaign,
                ids=tuple(dict.fromkeys(ids)) if ids else None,
                codes=tuple(dict.fromkeys(codes)) if codes else None,
                platforms=tuple(platforms) if platforms else None,
                offset=offset,
                limit=limit,
            )
        )
