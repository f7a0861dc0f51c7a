"""getEventStatistics: how often devices posted an event (postEvent), by the hour.

A scheduled request as in Pushwoosh: the answer is a ``request_id``, and
getResults then gives ``[{"date": "YYYY-MM-DD HH:00", "count": N}, ...]``,
one row per hour of the period.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from pushtrack.api.context import Call
from pushtrack.api.errors import ArgumentError
from pushtrack.domain.events import AttributeFilter, problem
from pushtrack.domain.jobs import AttributeCondition, EventStatsParams
from pushtrack.domain.timeutil import DAY_US, HOUR_US, parse_day, parse_wire
from pushtrack.jobs import eventstats

#: The longest period one request may cover (ours): 31 days, 744 hourly rows.
MAX_DAYS = 31


class AttributeIn(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
    operator: str
    values: Annotated[list[Any], msgspec.Meta(max_length=1000)]


class GetEventStatistics(msgspec.Struct, forbid_unknown_fields=True):
    application: str
    event: Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
    #: ``YYYY-MM-DD`` (that whole UTC day) or ``YYYY-MM-DD HH:MM:SS`` (that hour), UTC.
    date_from: str
    date_to: str
    attributes: Annotated[list[AttributeIn], msgspec.Meta(max_length=20)] | None = None


def _bound(field: str, text: str, *, end: bool) -> int:
    """The first hour of the period (``end``: the first hour after it)."""
    try:
        if len(text) == 10:
            day = parse_day(text)
            return day + DAY_US if end else day
        at = parse_wire(text)
    except ValueError:
        raise ArgumentError(
            f'{field}: expected "YYYY-MM-DD" or "YYYY-MM-DD HH:MM:SS", got {text!r}'
        ) from None
    hour = at - at % HOUR_US
    return hour + HOUR_US if end else hour


async def get_event_statistics(call: Call, r: GetEventStatistics) -> dict[str, Any]:
    assert call.token is not None
    app = await call.app_for(r.application)
    start = _bound("date_from", r.date_from, end=False)
    end = _bound("date_to", r.date_to, end=True)
    if end <= start:
        raise ArgumentError("date_to: must not be before date_from")
    if end - start > MAX_DAYS * DAY_US:
        raise ArgumentError(f"date_to: the period may cover {MAX_DAYS} days at most")
    filters = []
    for i, a in enumerate(r.attributes or ()):
        f = AttributeFilter(a.name, a.operator, tuple(a.values))
        why = problem(f)
        if why is not None:
            raise ArgumentError(f"attributes[{i}]: {why}")
        filters.append(AttributeCondition(f.name, f.operator, list(f.values)))
    request_id = await call.ctx.store.jobs.enqueue(
        eventstats.KIND,
        call.token.account,
        EventStatsParams(
            app_id=app.id,
            application=app.code,
            event=r.event,
            start=start,
            end=end,
            attributes=filters,
        ),
    )
    return {"request_id": request_id}
