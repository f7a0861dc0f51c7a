"""Devices: registerDevice and unregisterDevice, and what devices report besides:
opens, users, badges, events.

``record_seen`` updates (or first records) a device from applicationOpen and
registerUser; ``set_badge`` keeps the badge the application shows;
``post_event`` appends to ``device_events``, one row per postEvent, which
getEventStatistics counts by the hour.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, NamedTuple, TypeVar

from pushtrack.domain.timeutil import HOUR_US
from pushtrack.store.base import (
    App,
    DeviceIn,
    DeviceSeen,
    DeviceState,
    DeviceView,
    Engine,
    EventIn,
    Tx,
)
from pushtrack.store.batch import Batcher, run_units
from pushtrack.store.jsontext import dumps, loads
from pushtrack.store.targeting import set_device_tags

T = TypeVar("T")

#: Device columns a report may set, in the order ``record_seen`` writes them.
_SEEN = ("language", "timezone", "user_id", "app_version", "device_model", "os_version")
#: Events read per page when attribute conditions are checked row by row.
EVENT_PAGE = 5000


def record_seen(tx: Tx, *, app: App, d: DeviceSeen) -> bool:
    """Record what a device reported; False if it is not registered and no device_type
    came to record it with."""
    if _update_seen(tx, app, d):
        return True  # the usual case: a device the store knows
    if d.device_type is None:
        return False
    # Not registered yet: recorded without a push token (nothing to send to).
    now = tx.now()
    made = tx.scalar(
        "INSERT INTO devices (app_id, hwid, device_type, language, timezone, tz_name,"
        " user_id, app_version, device_model, os_version, last_open, subscribed,"
        " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?)"
        " ON CONFLICT (app_id, hwid) DO NOTHING RETURNING id",
        (
            app.id,
            d.hwid,
            d.device_type,
            d.language,
            d.timezone,
            d.tz_name if d.timezone is not None else None,
            d.user_id,
            d.app_version,
            d.device_model,
            d.os_version,
            d.opened_at,
            now,
            now,
        ),
    )
    # another writer recorded it meanwhile: update that one
    return made is not None or _update_seen(tx, app, d)


def _update_seen(tx: Tx, app: App, d: DeviceSeen) -> bool:
    sets = ["updated_at = ?"]
    params: list[Any] = [tx.now()]
    if d.device_type is not None:
        sets.append("device_type = ?")
        params.append(d.device_type)
    for column in _SEEN:
        value = getattr(d, column)
        if value is not None:
            sets.append(f"{column} = ?")
            params.append(value)
    if d.timezone is not None:
        sets.append("tz_name = ?")  # a zone name goes with its offset; an offset alone clears it
        params.append(d.tz_name)
    if d.opened_at is not None:
        # a late report of an older open never moves the last open back
        sets.append(
            "last_open = CASE WHEN last_open IS NULL OR last_open < ? THEN ? ELSE last_open END"
        )
        params.extend((d.opened_at, d.opened_at))
    return (
        tx.run(
            f"UPDATE devices SET {', '.join(sets)} WHERE app_id = ? AND hwid = ?",
            (*params, app.id, d.hwid),
        )
        > 0
    )


def set_badge(tx: Tx, *, app: App, hwid: str, badge: int, allowed: frozenset[int]) -> int | None:
    """Keep a device's badge if its type is ``allowed``; its type (None: not registered)."""
    device_type = tx.scalar(
        "SELECT device_type FROM devices WHERE app_id = ? AND hwid = ?", (app.id, hwid)
    )
    if device_type is None:  # the column is NOT NULL: no such device
        return None
    if device_type in allowed:
        tx.run(
            "UPDATE devices SET badge = ?, updated_at = ? WHERE app_id = ? AND hwid = ?",
            (badge, tx.now(), app.id, hwid),
        )
    return int(device_type)


class _Subscription(NamedTuple):
    push_token: str | None
    subscribed: int


def check_device(tx: Tx, *, app: App, hwid: str) -> DeviceState:
    row = tx.one_as(
        _Subscription,
        "SELECT push_token, subscribed FROM devices WHERE app_id = ? AND hwid = ?",
        (app.id, hwid),
    )
    if row is None:
        return DeviceState(exists=False, subscribed=False)
    return DeviceState(exists=True, subscribed=bool(row.push_token) and bool(row.subscribed))


class _ViewRow(NamedTuple):
    """A device as ``device_view`` reads it (``DeviceView``, ``subscribed`` a 0/1 flag)."""

    hwid: str
    device_type: int
    push_token: str | None
    subscribed: int
    language: str | None
    timezone: int | None
    tz_name: str | None
    user_id: str | None
    app_version: str | None
    device_model: str | None
    os_version: str | None
    badge: int | None
    last_open: int | None
    created_at: int
    updated_at: int


def device_view(tx: Tx, *, app: App, hwid: str) -> DeviceView | None:
    row = tx.one_as(
        _ViewRow,
        f"SELECT {', '.join(_ViewRow._fields)} FROM devices WHERE app_id = ? AND hwid = ?",
        (app.id, hwid),
    )
    if row is None:
        return None
    return DeviceView(**{**row._asdict(), "subscribed": bool(row.subscribed)})


def post_event(tx: Tx, *, app: App, e: EventIn) -> None:
    tx.run(
        "INSERT INTO device_events (app_id, hwid, user_id, name, attributes, occurred_at,"
        " local_time, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            app.id,
            e.hwid,
            e.user_id,
            e.name,
            dumps(e.attributes),
            e.occurred_at,
            e.local_time,
            tx.now(),
        ),
    )


class _HourCount(NamedTuple):
    hour: int
    n: int


def hourly_counts(tx: Tx, *, app_id: int, name: str, start: int, end: int) -> dict[int, int]:
    """Events of one name in ``[start, end)``, counted by the hour they happened in."""
    rows = tx.all_as(
        _HourCount,
        f"SELECT occurred_at - occurred_at % {HOUR_US} AS hour, COUNT(*) AS n FROM device_events"
        " WHERE app_id = ? AND name = ? AND occurred_at >= ? AND occurred_at < ?"
        " GROUP BY hour",
        (app_id, name, start, end),
    )
    return {int(r.hour): int(r.n) for r in rows}


class PostedEvent(NamedTuple):
    """A posted event as ``event_page`` reads it; its place is (occurred_at, id)."""

    occurred_at: int
    id: int
    #: JSON text as read; ``event_page`` gives it decoded
    attributes: Any


def event_page(
    tx: Tx, *, app_id: int, name: str, end: int, after: tuple[int, int], limit: int
) -> list[PostedEvent]:
    """The events after the position ``after`` = (occurred_at, id), before ``end``."""
    rows = tx.all_as(
        PostedEvent,
        "SELECT occurred_at, id, attributes FROM device_events"
        " WHERE app_id = ? AND name = ? AND occurred_at < ? AND (occurred_at, id) > (?, ?)"
        " ORDER BY occurred_at, id LIMIT ?",
        (app_id, name, end, *after, limit),
    )
    return [PostedEvent(int(r.occurred_at), int(r.id), loads(r.attributes)) for r in rows]


def delete_device_events(tx: Tx, *, before: int, limit: int) -> int:
    """Events received before ``before`` (ids follow arrival, so the oldest come first)."""
    return tx.run(
        "DELETE FROM device_events WHERE id IN"
        " (SELECT id FROM device_events WHERE received_at < ? ORDER BY id LIMIT ?)",
        (before, limit),
    )


class DeviceStore:
    """The device reports part of the ``Store``: ``store.devices``."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # The SQLite writer commits the units waiting for it together already; on
        # PostgreSQL, device writes arriving together share one transaction here.
        self._units: Batcher[Callable[[Tx], Any], Any] | None = (
            None
            if engine.groups_writes
            else Batcher(engine, run_units, in_flight=engine.batches_in_flight)
        )

    async def write(self, fn: Callable[[Tx], T]) -> T:
        """A small device write, committed with the others waiting beside it."""
        if self._units is None:
            return await self.engine.write(fn)
        result: T = await self._units.submit(fn)
        return result

    async def record_seen(self, app: App, seen: DeviceSeen) -> bool:
        return await self.write(partial(record_seen, app=app, d=seen))

    async def set_badge(
        self, app: App, hwid: str, badge: int, allowed: frozenset[int]
    ) -> int | None:
        return await self.write(
            partial(set_badge, app=app, hwid=hwid, badge=badge, allowed=allowed)
        )

    async def check(self, app: App, hwid: str) -> DeviceState:
        return await self.engine.read(partial(check_device, app=app, hwid=hwid))

    async def view(self, app: App, hwid: str) -> DeviceView | None:
        return await self.engine.read(partial(device_view, app=app, hwid=hwid))

    async def post_event(self, app: App, event: EventIn) -> None:
        await self.write(partial(post_event, app=app, e=event))

    async def event_counts(
        self,
        app_id: int,
        name: str,
        start: int,
        end: int,
        keep: Callable[[dict[str, Any]], bool] | None = None,
    ) -> dict[int, int]:
        """Events of one name in ``[start, end)`` by hour; ``keep`` filters on attributes
        (then events are read in pages of ``EVENT_PAGE`` and checked one by one)."""
        if keep is None:
            return await self.engine.read(
                partial(hourly_counts, app_id=app_id, name=name, start=start, end=end)
            )
        counts: dict[int, int] = {}
        after = (start, 0)  # every id is above 0: the first page starts at start
        while True:
            page: Sequence[PostedEvent] = await self.engine.read(
                partial(
                    event_page, app_id=app_id, name=name, end=end, after=after, limit=EVENT_PAGE
                )
            )
            for event in page:
                if keep(event.attributes):
                    hour = event.occurred_at - event.occurred_at % HOUR_US
                    counts[hour] = counts.get(hour, 0) + 1
            if len(page) < EVENT_PAGE:
                return counts
            after = (page[-1].occurred_at, page[-1].id)


# -- registration ------------------------------------------------------------------------


def register_device(tx: Tx, app: App, d: DeviceIn) -> None:
    now = tx.now()
    device_id = tx.scalar(
        "INSERT INTO devices (app_id, hwid, push_token, device_type, language, timezone, tags,"
        " user_id, app_version, device_model, os_version, subscribed, created_at, updated_at,"
        " tz_name, web_p256dh, web_auth, token_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
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
        " THEN 0 ELSE 1 END, updated_at = excluded.updated_at,"
        # a zone name goes with the offset it came with; an offset alone clears it
        " tz_name = CASE WHEN excluded.timezone IS NULL THEN devices.tz_name"
        " ELSE excluded.tz_name END,"
        # a new push token brings its own keys (or none); the keys stay with their token
        " web_p256dh = CASE WHEN excluded.push_token IS NULL THEN devices.web_p256dh"
        " ELSE excluded.web_p256dh END,"
        " web_auth = CASE WHEN excluded.push_token IS NULL THEN devices.web_auth"
        " ELSE excluded.web_auth END,"
        # registering a token (the same one again too) is what a gateway's "dead since"
        # is compared with
        " token_at = COALESCE(excluded.token_at, devices.token_at) RETURNING id",
        (
            app.id,
            d.hwid,
            d.push_token,
            d.device_type,
            d.language,
            d.timezone,
            None,  # tags live in tag_values (store/targeting.py)
            d.user_id,
            d.app_version,
            d.device_model,
            d.os_version,
            1 if d.push_token else 0,
            now,
            now,
            d.tz_name,
            d.web_p256dh,
            d.web_auth,
            now if d.push_token else None,
        ),
    )
    if d.tags:
        assert device_id is not None
        # The upsert locked the device row: tag writes to one device run in turn.
        set_device_tags(tx, app, int(device_id), d.tags)


def unregister_device(tx: Tx, app: App, hwid: str) -> bool:
    return (
        tx.run(
            "UPDATE devices SET push_token = NULL, web_p256dh = NULL, web_auth = NULL,"
            " subscribed = 0, updated_at = ?"
            " WHERE app_id = ? AND hwid = ?",
            (tx.now(), app.id, hwid),
        )
        > 0
    )
