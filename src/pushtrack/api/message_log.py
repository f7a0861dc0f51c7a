"""getMessageLog (``POST /api/v2/statistics/getMessageLog``): the per-device event log
with filters and paging. The other statistics v2 methods are in ``v2stats.py``.

Besides the method: its cursor (``encode_cursor``/``decode_cursor``, also the event
ids of the dashboard's Live page) and ``log_page``/``log_entries``, which the
dashboard's timelines read through.

Actions use Pushwoosh's names (``sent``, ``delivered``, ``opened``, ``inbox_*``)
plus **(ours)** ``created``, ``failed`` and ``confirmed`` (the device's own
confirmation, kept beside the gateway's ``delivered``). Each row also carries
**(ours)** the gateway's id, the delivery's attempts, the last transient reason
while it is retried, and the failure class (``store/trail.py`` builds the event).
pushtrack keeps no inbox, so an ``inbox_*`` action is understood and selects
nothing; so does a platform Pushwoosh names that no device here can be on
(``email``, ``baidu android``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Callable
from typing import Annotated

import msgspec

from pushtrack.api.context import Call
from pushtrack.api.envelope import Encoded
from pushtrack.api.errors import ArgumentError
from pushtrack.domain import platforms
from pushtrack.domain.status import BY_LABEL, Status
from pushtrack.domain.timeutil import DAY_US, parse_wire, to_wire, window_start
from pushtrack.store.base import LogQuery, LogRow

MAX_INTERVAL_DAYS = 30
MAX_LIMIT = 100_000
MAX_HWIDS = 1000
#: Ids and cursor positions are 64-bit integers in every engine.
Id = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]


class GetMessageLog(msgspec.Struct, forbid_unknown_fields=True):
    message_id: Id | None = None
    message_code: str | None = None
    campaign_code: str | None = None
    #: (ours) one delivery's events, by the code createMessage returned for it
    tracking_code: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    hwid: str | Annotated[list[str], msgspec.Meta(max_length=MAX_HWIDS)] | None = None
    user_id: str | None = None
    application_code: str | None = None
    date_from: str | None = None
    date_to: str | None = None
    actions: list[str] | None = None
    platforms: list[str] | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_LIMIT)] = 1000
    pagination_token: str | None = None


#: Pushwoosh's inbox actions: in its filter vocabulary, never recorded here (no inbox).
INBOX_ACTIONS = ("inbox_delivered", "inbox_read", "inbox_opened", "inbox_deleted")
#: Every action name a filter may use: Pushwoosh's, in its order, then (ours) three more.
ACTIONS = ("sent", "delivered", "opened", *INBOX_ACTIONS, "created", "failed", "confirmed")


def encode_cursor(ts: int, event_id: int) -> str:
    raw = msgspec.json.encode([ts, event_id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(token: str) -> tuple[int, int]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        ts, event_id = msgspec.json.decode(raw, type=tuple[Id, Id])
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise ArgumentError("pagination_token: not a token this service issued") from None
    return ts, event_id


def _before(query: LogQuery) -> str:
    """A token for the position just before the query's first possible row."""
    return encode_cursor(max(0, (query.date_from or 1) - 1), 2**63 - 1)


def _date(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    try:
        return parse_wire(value)
    except ValueError:
        raise ArgumentError(f'{name}: expected "YYYY-MM-DD HH:MM:SS", got {value!r}') from None


def build_query(call: Call, r: GetMessageLog) -> LogQuery:
    assert call.token is not None
    hwids = [r.hwid] if isinstance(r.hwid, str) else list(dict.fromkeys(r.hwid or ()))
    date_from, date_to = _date(r.date_from, "date_from"), _date(r.date_to, "date_to")
    has_id = any(
        v is not None
        for v in (
            r.message_id,
            r.message_code,
            r.campaign_code,
            r.tracking_code,
            r.user_id,
            r.application_code,
        )
    ) or bool(hwids)
    if not has_id and (date_from is None or date_to is None):
        raise ArgumentError(
            "at least one of message_id, message_code, campaign_code, tracking_code, hwid,"
            " user_id, application_code, or both date_from and date_to is required"
        )
    if date_from is not None and date_to is not None:
        if date_to < date_from:
            raise ArgumentError("date_to: must not be before date_from")
        if date_to - date_from > MAX_INTERVAL_DAYS * DAY_US:
            raise ArgumentError(
                f"exceeded the maximum date interval. Max interval: {MAX_INTERVAL_DAYS} days"
            )
    statuses: list[Status] = []
    for action in r.actions or ():
        if action in BY_LABEL:
            if BY_LABEL[action] not in statuses:
                statuses.append(BY_LABEL[action])
        elif action not in INBOX_ACTIONS:
            raise ArgumentError(f"actions: unknown action {action!r} (one of {', '.join(ACTIONS)})")
    wanted_platforms: list[platforms.Platform] = []
    for name in r.platforms or ():
        platform = platforms.from_name(name)
        if platform is None and not platforms.is_deviceless(name):
            raise ArgumentError(f"platforms: unknown platform {name!r}")
        if platform is not None and platform not in wanted_platforms:
            wanted_platforms.append(platform)
    return LogQuery(
        account=call.token.account,
        apps=call.token.apps,
        message_id=r.message_id,
        message_code=r.message_code,
        campaign_code=r.campaign_code,
        tracking_code=r.tracking_code,
        hwids=tuple(hwids) if hwids else None,
        user_id=r.user_id,
        application_code=r.application_code,
        date_from=date_from,
        date_to=date_to,
        statuses=tuple(statuses) if r.actions else None,
        # () when only deviceless platforms were named: nothing can match
        platforms=tuple(wanted_platforms) if r.platforms else None,
        after=decode_cursor(r.pagination_token) if r.pagination_token else None,
        limit=r.limit + 1,
    )


#: Pages of more rows than this are encoded in a thread: a page of up to ``MAX_LIMIT``
#: rows takes a while to turn into JSON, and the event loop keeps answering other
#: requests meanwhile.
INLINE_ROWS = 200


class LogEntry(msgspec.Struct, gc=False):
    """One row of the answer, its fields in the answer's order."""

    timestamp: str
    action: str
    application_code: str
    message_code: str
    message_id: int
    tracking_code: str
    hwid: str
    target_id: str
    user_id: str | None
    platform: str
    description: str
    # (ours)
    gateway_id: str | None
    attempts: int
    retry_reason: str | None
    failure_class: str | None


class LogPage(msgspec.Struct):
    data: list[LogEntry]
    pagination_token: str | None


#: Called with a page's number of rows where the page is about to be encoded (tests hold
#: a large page here to see the event loop answer other requests meanwhile).
before_encoding: Callable[[int], None] | None = None

_ACTION = {s: s.label for s in Status}
_encoder = msgspec.json.Encoder()


def log_entries(rows: list[LogRow]) -> list[LogEntry]:
    """The answer's rows of a page of the log, in order."""
    stamps: dict[int, str] = {}  # a page's rows share few distinct seconds
    names: dict[int, str] = {}
    data: list[LogEntry] = []
    append = data.append
    for row in rows:
        second = row.ts // 1_000_000
        stamp = stamps.get(second)
        if stamp is None:
            stamp = stamps[second] = to_wire(row.ts)
        name = names.get(row.platform)
        if name is None:
            name = names[row.platform] = platforms.name_of(row.platform)
        append(
            LogEntry(
                stamp,
                _ACTION[row.status],
                row.application_code,
                row.message_code,
                row.message_id,
                row.tracking_code,
                row.hwid,
                row.target_id,
                row.user_id,
                name,
                row.description,
                row.gateway_id,
                row.attempts,
                row.retry_reason,
                row.failure_class,
            )
        )
    return data


def encode_page(rows: list[LogRow], token: str | None) -> bytes:
    """The answer's JSON: one page of the log (rows in order) and the token of the next."""
    if before_encoding is not None:
        before_encoding(len(rows))
    return _encoder.encode(LogPage(log_entries(rows), token))


async def log_page(call: Call, r: GetMessageLog) -> tuple[list[LogRow], str | None]:
    """One page of getMessageLog's rows within the retention window, and the token of
    the next page (None: the last)."""
    query = build_query(call, r)
    since = window_start(call.ctx.store_clock(), call.ctx.settings.retention_days)
    query = msgspec.structs.replace(query, date_from=max(query.date_from or since, since))
    if query.statuses == () or query.platforms == ():
        return [], None  # only inbox actions / deviceless platforms
    rows, top = await call.ctx.store.message_log_page(query)
    more = len(rows) > r.limit
    rows = rows[: r.limit]
    if top is not None and rows and rows[-1].ts >= top:
        # rows from here on may yet be joined by ones committed late: the page stops
        # before them, and the next one starts there (store/stream.py)
        rows = [row for row in rows if row.ts < top]
        more = True
        if not rows:
            return [], r.pagination_token or _before(query)
    return rows, encode_cursor(rows[-1].ts, rows[-1].event_id) if more and rows else None


async def get_message_log(call: Call, r: GetMessageLog) -> Encoded:
    rows, token = await log_page(call, r)
    if len(rows) <= INLINE_ROWS:
        return Encoded(encode_page(rows, token))
    return Encoded(await asyncio.to_thread(encode_page, rows, token))
