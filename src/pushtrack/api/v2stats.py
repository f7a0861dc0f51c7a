"""Statistics v2 served from the counters: totalsByIntervals and messages:list."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from pushtrack.api.context import Call
from pushtrack.api.errors import ArgumentError
from pushtrack.domain import platforms as platform_names
from pushtrack.domain.platforms import ACCEPTED
from pushtrack.domain.status import COUNTERS
from pushtrack.domain.timeutil import DAY_US, US, parse_day, parse_wire, to_wire
from pushtrack.store.retention import window_start
from pushtrack.store.stats import Totals

MAX_PER_PAGE = 1000
Code = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


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
    platforms: list[int | str] | None = None
    messages_codes: Annotated[list[Code], msgspec.Meta(max_length=1000)] | None = None


class MessagesList(msgspec.Struct, forbid_unknown_fields=True):
    filters: Filters
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
    if not values:
        return None
    out = []
    for value in values:
        if isinstance(value, str):
            found = platform_names.from_name(value)
            if found is None:
                raise ArgumentError(f"{name}: unknown platform {value!r}")
            out.append(int(found))
        elif value in ACCEPTED:
            out.append(value)
        else:
            raise ArgumentError(f"{name}: {value} is not a known device type")
    return out


def _counters(t: Totals) -> dict[str, str]:
    """Counters as strings, as Pushwoosh sends them."""
    return {c: str(getattr(t, c)) for c in COUNTERS}


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


#: Fields of a stored notification that are targeting, not content: left out of details.
_TARGETING = frozenset({"devices", "users"})


async def messages_list(call: Call, r: MessagesList) -> dict[str, Any]:
    assert call.token is not None
    f = r.filters
    app = await call.app_for(f.application)
    dr = f.date_range or DateRange()
    start, end = _range(dr.date_from, dr.date_to, "filters.date_range.")
    total, found = await call.ctx.store.stats.list_messages(
        account=call.token.account,
        apps=call.token.apps,
        app_code=app.code,
        since=_since(call),
        date_from=start,
        date_to=end,
        codes=f.messages_codes,
        platforms=_platforms(f.platforms, "filters.platforms"),
        offset=(r.page - 1) * r.per_page,
        limit=r.per_page,
    )
    items = []
    for m in found:
        details = {k: v for k, v in m.notification.items() if k not in _TARGETING}
        # every platform the message went to, counted or not yet
        by_platform = {p: Totals(0, p) for p in m.platforms} | {t.platform: t for t in m.totals}
        items.append(
            {
                "id": m.id,
                "code": m.code,
                "created_date": to_wire(m.created_at),
                "send_date": to_wire(m.send_at),
                "status": m.status,
                "platforms": m.platforms,
                "source": "API",
                "campaign_code": m.campaign,
                "push_info": {
                    "details": details,
                    "metrics": [
                        {"platform": p, **_counters(t)} for p, t in sorted(by_platform.items())
                    ],
                },
            }
        )
    return {"total": total, "items": items}
