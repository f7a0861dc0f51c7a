"""Statistics v2 served from the counters: totalsByIntervals and messages:list.

messages:list takes Pushwoosh's filters (``application``, ``platforms``,
``date_range``, ``source``, ``campaign``, ``messages_ids``, ``messages_codes``) and
``params`` (``with_details``, ``with_metrics``), and answers items in Pushwoosh's
shape: metrics as integers, ``push_info.details`` with the notification's
platform options nested in ``platform_parameters``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from pushtrack.api.context import Call
from pushtrack.api.errors import ArgumentError
from pushtrack.domain import platforms as platform_names
from pushtrack.domain.platforms import ACCEPTED
from pushtrack.domain.status import COUNTERS, PUSHWOOSH_COUNTERS
from pushtrack.domain.timeutil import DAY_US, US, parse_day, parse_wire, to_wire, window_start
from pushtrack.store.stats import Totals

MAX_PER_PAGE = 1000
MAX_LISTED = 1000
Code = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Id = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]

#: Message sources Pushwoosh documents for messages:list. Every message here is
#: created through the API, so ``API`` selects them all and the others none.
SOURCES = (
    "AB_TEST",
    "API",
    "AUTO_PUSH",
    "CP",
    "CSV",
    "CUSTOMER_JOURNEY",
    "EMAIL_API",
    "EMAIL_CP",
    "GEO_ZONE",
    "PUSH_ON_EVENT",
    "RSS",
)
SOURCE = "API"


class TotalsByIntervals(msgspec.Struct, forbid_unknown_fields=True):
    message_code: Code
    platforms: list[int] | None = None
    interval: Literal["minute", "hour", "day"] = "hour"
    date_from: str | None = None
    date_to: str | None = None


class DateRange(msgspec.Struct, forbid_unknown_fields=True):
    date_from: str | None = None
    date_to: str | None = None


class Filters(msgspec.Struct, forbid_unknown_fields=True):
    application: Code
    date_range: DateRange | None = None
    #: Pushwoosh's names ("IOS", "HUAWEI_ANDROID", ...); (ours) also device type numbers
    platforms: list[int | str] | None = None
    source: str | None = None
    campaign: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    messages_ids: Annotated[list[Id], msgspec.Meta(max_length=MAX_LISTED)] | None = None
    messages_codes: Annotated[list[Code], msgspec.Meta(max_length=MAX_LISTED)] | None = None


class Params(msgspec.Struct, forbid_unknown_fields=True):
    #: (ours) both default to true, so a request without ``params`` gets everything;
    #: Pushwoosh's docs only say that true includes the object
    with_details: bool = True
    with_metrics: bool = True


class MessagesList(msgspec.Struct, forbid_unknown_fields=True):
    filters: Filters
    params: Params | None = None
    per_page: Annotated[int, msgspec.Meta(ge=1, le=MAX_PER_PAGE)] = 100
    page: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 1


def _time(value: str | None, name: str, *, end: bool = False) -> int | None:
    """A "YYYY-MM-DD HH:MM:SS" (or "YYYY-MM-DD": the whole day) bound, in µs."""
    if value is None:
        return None
    try:
        return parse_wire(value)
    except ValueError:
        pass
    try:
        day = parse_day(value)
    except ValueError:
        raise ArgumentError(f'{name}: expected "YYYY-MM-DD HH:MM:SS", got {value!r}') from None
    return day + DAY_US - US if end else day


def _range(
    date_from: str | None, date_to: str | None, prefix: str = ""
) -> tuple[int | None, int | None]:
    start = _time(date_from, f"{prefix}date_from")
    end = _time(date_to, f"{prefix}date_to", end=True)
    if start is not None and end is not None and end < start:
        raise ArgumentError(f"{prefix}date_to: must not be before date_from")
    return start, end


def _platforms(values: list[int | str] | None, name: str) -> list[int] | None:
    """Device types named by number or name; None for no filter.

    ``[]`` when only platforms no device here can be on were named: nothing matches.
    """
    if not values:
        return None
    out: list[int] = []
    for value in values:
        if isinstance(value, str):
            found = platform_names.from_name(value)
            if found is None and not platform_names.is_deviceless(value):
                raise ArgumentError(f"{name}: unknown platform {value!r}")
            if found is not None and found not in out:
                out.append(int(found))
        elif value in ACCEPTED:
            if value not in out:
                out.append(value)
        else:
            raise ArgumentError(platform_names.unknown_type(name, value))
    return out


def _counters(t: Totals) -> dict[str, str]:
    """Counters as strings, as totalsByIntervals sends them."""
    return {c: str(getattr(t, c)) for c in COUNTERS}


def _metrics(t: Totals) -> dict[str, int]:
    """Counters as integers, as messages:list sends them (Pushwoosh's own)."""
    return {c: getattr(t, c) for c in PUSHWOOSH_COUNTERS}


def _since(call: Call) -> int:
    return window_start(call.ctx.store_clock(), call.ctx.settings.retention_days)


async def totals_by_intervals(call: Call, r: TotalsByIntervals) -> dict[str, Any]:
    assert call.token is not None
    wanted = _platforms(list(r.platforms) if r.platforms else None, "platforms")
    start, end = _range(r.date_from, r.date_to)
    since = _since(call)
    message = await call.ctx.store.stats.find_message(
        call.token.account, call.token.apps, r.message_code
    )
    if message is None:
        raise ArgumentError(f"message_code: {r.message_code} not found")
    rows = await call.ctx.store.stats.counters(message.id, r.interval, since, start, end, wanted)
    return {
        "metrics": [
            {"timestamp": to_wire(t.bucket), "platform": t.platform, **_counters(t)} for t in rows
        ],
        "conversion": {
            "sends": str(sum(t.sends for t in rows)),
            "opens": str(sum(t.opens for t in rows)),
            "events": [],
        },
    }


#: Fields of a stored notification that ``platform_parameters`` leaves out: the explicit
#: device and user lists (up to 1000 entries each; the log has them per device), and
#: what ``details`` or the item carry under a name of their own.
_NOT_PARAMETERS = frozenset(
    {
        "devices",
        "users",
        "content",
        "title",
        "filter",
        "send_date",
        "timezone",
        "ignore_user_timezone",
        "campaign",
    }
)


def details(notification: dict[str, Any]) -> dict[str, Any]:
    """A stored notification in the shape of Pushwoosh's ``push_info.details``.

    ``title``, ``content``, ``filter_name`` (the saved filter it named) and
    ``filter_code`` (always null: filters here have no code) sit at the top, as does
    ``follow_user_timezone`` (a dated send at each device's local time); every other
    field as sent (platform options, ``data``, ``conditions``, ``platforms``, ...)
    is in ``platform_parameters``.
    """
    send_date = notification.get("send_date", "now")
    return {
        "title": notification.get("title"),
        "filter_name": notification.get("filter"),
        "filter_code": None,
        "content": notification.get("content"),
        "platform_parameters": {k: v for k, v in notification.items() if k not in _NOT_PARAMETERS},
        "follow_user_timezone": send_date not in ("", "now")
        and "timezone" not in notification
        and notification.get("ignore_user_timezone") is False,
    }


async def messages_list(call: Call, r: MessagesList) -> dict[str, Any]:
    assert call.token is not None
    f = r.filters
    try:
        app = await call.app_for(f.application)
    except ArgumentError as exc:
        raise ArgumentError(f"filters.{exc.message}") from None
    dr = f.date_range or DateRange()
    start, end = _range(dr.date_from, dr.date_to, "filters.date_range.")
    if f.source is not None and f.source not in SOURCES:
        raise ArgumentError(
            f"filters.source: unknown source {f.source!r} (one of {', '.join(SOURCES)})"
        )
    wanted = _platforms(f.platforms, "filters.platforms")
    params = r.params or Params()
    if f.source not in (None, SOURCE) or wanted == []:
        return {"total": 0, "items": []}  # no message here can match
    # Empty lists are no filter, as in Pushwoosh's own example request.
    total, found = await call.ctx.store.stats.list_messages(
        account=call.token.account,
        apps=call.token.apps,
        app_code=app.code,
        since=_since(call),
        date_from=start,
        date_to=end,
        campaign=f.campaign,
        ids=f.messages_ids,
        codes=f.messages_codes,
        platforms=wanted,
        offset=(r.page - 1) * r.per_page,
        limit=r.per_page,
    )
    items = []
    for m in found:
        push_info: dict[str, Any] = {}
        if params.with_details:
            push_info["details"] = details(m.notification)
        if params.with_metrics:
            # every platform the message went to, counted or not yet
            by_platform = {p: Totals(0, p) for p in m.platforms} | {t.platform: t for t in m.totals}
            push_info["metrics"] = [
                {**_metrics(t), "platform": p} for p, t in sorted(by_platform.items())
            ]
        items.append(
            {
                "id": m.id,
                "code": m.code,
                "created_date": to_wire(m.created_at),
                "send_date": to_wire(m.send_at),
                "status": m.status,
                "platforms": m.platforms,
                "source": SOURCE,
                "campaign": m.campaign,
                "push_info": push_info,
            }
        )
    return {"total": total, "items": items}
