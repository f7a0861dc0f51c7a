"""Writing a large delivery trail fast, with bare executemany, in the product's exact schema.

Creating ten million events through the service takes longer than the whole
suite may; these rows are what the service would have written for the same
history: devices, messages of 1000 deliveries each spread over a time span,
their payloads, every delivery's events (created, sent, then delivered or
failed with the gateway's reason, and for some opened), and the hourly
counters that agree with those events. The application and tokens come from
the store facade first; the schema is the product's own.
"""

from __future__ import annotations

import contextlib
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from bench.rawdb import Raw, analyze, prepare_days, sync_sequences
from bench.tenant import PLATFORMS, Tenant, create_tenant, hwid, with_store
from pushtrack.domain import codes
from pushtrack.domain.payload import build_template
from pushtrack.domain.platforms import Platform
from pushtrack.domain.timeutil import DAY_US, HOUR_US, US, now_us
from pushtrack.store.events import COUNTER_TABLES
from pushtrack.store.jsontext import dumps

PER_MESSAGE = 1000
#: Deliveries written per executemany.
CHUNK = 1000
MINUTE_US = 60 * US
#: Shares of deliveries that fail and that are opened.
FAILED = 0.08
OPENED = 0.12
#: About this many events per delivery: created, sent, delivered|failed, sometimes opened.
EVENTS_PER_DELIVERY = 3 + OPENED
_FAIL_REASON = "BadDeviceToken"
NOTIFICATION = {"content": "Your weekly digest is ready", "title": "News"}
#: platform -> (body, options) of the payload template, as createMessage stores them.
TEMPLATES = {
    p: (dumps(t.body), dumps(t.options))
    for p in PLATFORMS
    for t in [build_template(NOTIFICATION, Platform(p), None)]
}
_COUNTED = ("sends", "deliveries", "opens", "errors")
#: Messages per campaign code (the n-th message's campaign: ``campaign(n)``).
CAMPAIGN_MESSAGES = 2


def campaign(n: int) -> str:
    """The campaign code of the trail's n-th message."""
    return f"campaign-{n // CAMPAIGN_MESSAGES}"


def _counter_sql(table: str, bucket: str) -> str:
    adds = ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in _COUNTED)
    return (
        f"INSERT INTO {table} (message_id, {bucket}, platform, {', '.join(_COUNTED)})"
        f" VALUES (?, ?, ?, ?, ?, ?, ?)"
        f" ON CONFLICT (message_id, {bucket}, platform, shard) DO UPDATE SET {adds}"
    )


@dataclass(frozen=True)
class Trail:
    devices: int
    messages: int
    deliveries: int
    events: int
    first_message_id: int
    start_us: int
    span_us: int

    def sizes(self) -> dict[str, Any]:
        return {
            "devices": self.devices,
            "messages": self.messages,
            "deliveries": self.deliveries,
            "events": self.events,
            "days": round(self.span_us / (86400 * US), 2),
            "populated_via": "bare executemany in the product's schema (bench/trail.py)",
        }


def add_devices(db: Raw, app_id: int, n: int, now: int) -> None:
    rows = [
        (app_id, hwid(i), f"{i:064x}", PLATFORMS[i % len(PLATFORMS)], "en", f"user-{i}", now, now)
        for i in range(n)
    ]
    db.begin()
    db.many(
        "INSERT INTO devices (app_id, hwid, push_token, device_type, language, user_id,"
        " subscribed, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?)",
        rows,
    )
    # the (user id, device) pairs deliveries carry, as createMessage records them
    db.execute(
        "INSERT INTO user_devices (user_id, device_id) SELECT user_id, id FROM devices"
        " WHERE app_id = ? AND user_id IS NOT NULL ON CONFLICT DO NOTHING",
        (app_id,),
    )
    db.commit()


def _add_counters(db: Raw, message_id: int, counts: Counter[tuple[int, int, int]]) -> None:
    """The hourly and per-minute counters of one message's events, as the store keeps them."""
    for table, bucket, width in COUNTER_TABLES:
        cells: dict[tuple[int, int], list[int]] = {}
        for (minute, platform, column), n in counts.items():
            cells.setdefault((minute - minute % width, platform), [0, 0, 0, 0])[column] += n
        db.many(
            _counter_sql(table, bucket), [(message_id, b, p, *c) for (b, p), c in cells.items()]
        )


@contextlib.contextmanager
def _indexes_later(db: Raw, tables: tuple[str, ...]) -> Iterator[None]:
    """SQLite: drop the tables' secondary indexes for the load, then build them again.

    Building an index from a full table is much faster than growing it row by
    row; the statements are the schema's own, read back from sqlite_master.
    """
    if not db.sqlite:
        yield
        return
    marks = ",".join("?" * len(tables))
    saved = db.execute(
        f"SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
        f" AND tbl_name IN ({marks})",
        tables,
    )
    for name, _ in saved:
        db.execute(f"DROP INDEX {name}")
    try:
        yield
    finally:
        for _, sql in saved:
            db.execute(sql)


def populate(
    url: str,
    app_id: int,
    *,
    devices: int,
    deliveries: int,
    start_us: int,
    span_us: int,
    per_message: int = PER_MESSAGE,
    send_spacing_us: int = 1000,
    seed: int = 7,
    with_devices: bool = True,
) -> Trail:
    """Write ``deliveries`` deliveries (about 3.1 events each) spread over ``span_us``.

    Messages of ``per_message`` deliveries start evenly over the span; a message
    sends one delivery every ``send_spacing_us``.
    """
    rnd = random.Random(seed)
    messages = max(1, -(-deliveries // per_message))
    prepare_days(url, start_us, start_us + span_us + 2 * HOUR_US)
    with Raw(url, bulk=True) as db, _indexes_later(db, ("deliveries", "events")):
        if with_devices:
            add_devices(db, app_id, devices, start_us)
        message_id = (db.scalar("SELECT COALESCE(MAX(id), 0) FROM messages") or 0) + 1
        delivery_id = (db.scalar("SELECT COALESCE(MAX(id), 0) FROM deliveries") or 0) + 1
        payload_id = (db.scalar("SELECT COALESCE(MAX(id), 0) FROM payloads") or 0) + 1
        first_message_id = message_id
        events = 0
        done = 0
        since_commit = 0
        db.begin()
        for m in range(messages):
            size = min(per_message, deliveries - done)
            t0 = start_us + span_us * m // messages
            payload_of = {p: payload_id + k for k, p in enumerate(PLATFORMS)}
            payload_id += len(PLATFORMS)
            db.many(
                "INSERT INTO payloads (id, message_id, platform, language, body, options)"
                " VALUES (?, ?, ?, NULL, ?, ?)",
                [(pid, message_id, p, *TEMPLATES[p]) for p, pid in payload_of.items()],
            )
            db.execute(
                "INSERT INTO messages (id, code, app_id, campaign, notification, send_at, status,"
                " deliveries, created_at) VALUES (?, ?, ?, ?, ?, ?, 'done', ?, ?)",
                (
                    message_id,
                    codes.message_code(),
                    app_id,
                    campaign(message_id),
                    dumps(NOTIFICATION),
                    t0,
                    size,
                    t0,
                ),
            )
            counts: Counter[tuple[int, int, int]] = Counter()  # (minute, platform, column index)
            first_device = m * per_message % devices
            for first in range(0, size, CHUNK):
                n = min(CHUNK, size - first)
                events += _write_chunk(
                    db,
                    rnd,
                    counts,
                    message_id=message_id,
                    first_delivery=delivery_id + first,
                    first_device=first_device + first,
                    devices=devices,
                    payload_of=payload_of,
                    send_at=[t0 + US + (first + j) * send_spacing_us for j in range(n)],
                    created=t0,
                )
                since_commit += n
                if since_commit >= 50 * CHUNK:
                    db.commit()
                    db.begin()
                    since_commit = 0
            _add_counters(db, message_id, counts)
            done += size
            delivery_id += size
            message_id += 1
        db.commit()
        sync_sequences(db, ("devices", "messages", "payloads", "deliveries"))
        tables = ("devices", "messages", "payloads", "deliveries", "events")
        analyze(db, tables + tuple(t for t, _, _ in COUNTER_TABLES))
    return Trail(devices, messages, deliveries, events, first_message_id, start_us, span_us)


def _write_chunk(
    db: Raw,
    rnd: random.Random,
    counts: Counter[tuple[int, int, int]],
    *,
    message_id: int,
    first_delivery: int,
    first_device: int,
    devices: int,
    payload_of: dict[int, int],
    send_at: list[int],
    created: int,
) -> int:
    """One slice of a message's deliveries and their events; the number of events."""
    n = len(send_at)
    hashes = codes.payload_hashes(n)
    drows = []
    erows = []
    for j, sent in enumerate(send_at):
        dev = (first_device + j) % devices
        platform = PLATFORMS[dev % len(PLATFORMS)]
        failed = rnd.random() < FAILED
        opened = not failed and rnd.random() < OPENED
        did = first_delivery + j
        drows.append(
            (did, message_id, dev + 1, payload_of[platform], hwid(dev), hwid(dev),
             f"user-{dev}", platform, hashes[j], 4 if failed else 3, int(opened), 1, created)
        )  # fmt: skip
        end = sent + 200_000
        erows.append((sent, did, 2, "Sent"))
        counts[(sent - sent % MINUTE_US, platform, 0)] += 1
        if failed:
            erows.append((end, did, 4, _FAIL_REASON))
            counts[(end - end % MINUTE_US, platform, 3)] += 1
        else:
            erows.append((end, did, 3, "Delivered"))
            counts[(end - end % MINUTE_US, platform, 1)] += 1
        if opened:
            at = end + rnd.randrange(30 * US, 3600 * US)
            erows.append((at, did, 5, "Opened"))
            counts[(at - at % MINUTE_US, platform, 2)] += 1
    db.insert(
        "deliveries",
        "id, message_id, device_id, payload_id, target_id, hwid, user_id,"
        " platform, hash, state, opened, attempts, created_at",
        drows,
    )
    db.insert("events", "ts, delivery_id, status, description", erows)
    return len(erows) + n  # and each delivery's ``created``, carried by its row


def one_message(url: str, deliveries: int) -> tuple[Tenant, Trail, str]:
    """A tenant and one message of ``deliveries`` deliveries sent over the last day (one
    every 10 ms), its trail written in bulk: (tenant, trail, the message's code)."""
    tenant = with_store(url, create_tenant)
    trail = populate(
        url,
        tenant.app.id,
        devices=min(deliveries, 1_000_000),
        deliveries=deliveries,
        per_message=deliveries,
        send_spacing_us=10_000,
        start_us=now_us() - DAY_US,
        span_us=DAY_US,
    )
    with Raw(url) as db:
        code = db.scalar("SELECT code FROM messages WHERE id = ?", (trail.first_message_id,))
    return tenant, trail, str(code)
