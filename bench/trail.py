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

import random
from collections import Counter
from dataclasses import dataclass
from typing import Any

from bench.rawdb import Raw
from bench.tenant import PLATFORMS, hwid
from pushtrack.domain import codes
from pushtrack.domain.timeutil import HOUR_US, US

PER_MESSAGE = 1000
#: Shares of deliveries that fail and that are opened.
FAILED = 0.08
OPENED = 0.12
#: About this many events per delivery: created, sent, delivered|failed, sometimes opened.
EVENTS_PER_DELIVERY = 3 + OPENED
_FAIL_REASON = "BadDeviceToken"
_COUNTER_SQL = (
    "INSERT INTO counters (message_id, hour, platform, sends, deliveries, opens, errors)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (message_id, hour, platform) DO UPDATE"
    " SET sends = counters.sends + excluded.sends,"
    " deliveries = counters.deliveries + excluded.deliveries,"
    " opens = counters.opens + excluded.opens, errors = counters.errors + excluded.errors"
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
    db.commit()


def populate(
    url: str,
    app_id: int,
    *,
    devices: int,
    deliveries: int,
    start_us: int,
    span_us: int,
    per_message: int = PER_MESSAGE,
    seed: int = 7,
    with_devices: bool = True,
) -> Trail:
    """Write ``deliveries`` deliveries (about 3.1 events each) spread over ``span_us``."""
    rnd = random.Random(seed)
    messages = max(1, -(-deliveries // per_message))
    with Raw(url, bulk=True) as db:
        if with_devices:
            add_devices(db, app_id, devices, start_us)
        message_id = (db.scalar("SELECT COALESCE(MAX(id), 0) FROM messages") or 0) + 1
        delivery_id = (db.scalar("SELECT COALESCE(MAX(id), 0) FROM deliveries") or 0) + 1
        payload_id = (db.scalar("SELECT COALESCE(MAX(id), 0) FROM payloads") or 0) + 1
        first_message_id = message_id
        events = 0
        done = 0
        db.begin()
        for m in range(messages):
            size = min(per_message, deliveries - done)
            t0 = start_us + span_us * m // messages
            payload_of = {}
            for p in PLATFORMS:
                payload_of[p] = payload_id
                payload_id += 1
            db.many(
                "INSERT INTO payloads (id, message_id, platform, language, body, options)"
                " VALUES (?, ?, ?, NULL, ?, '{}')",
                [(pid, message_id, p, '{"aps":{"alert":"News"}}') for p, pid in payload_of.items()],
            )
            db.execute(
                "INSERT INTO messages (id, code, app_id, campaign, notification, send_at, status,"
                ' deliveries, created_at) VALUES (?, ?, ?, NULL, \'{"content":"News"}\', ?,'
                " 'done', ?, ?)",
                (message_id, codes.message_code(), app_id, t0, size, t0),
            )
            tcodes = codes.tracking_codes(size)
            hashes = codes.payload_hashes(size)
            first_device = m * per_message % devices
            drows = []
            erows = []
            counts: Counter[tuple[int, int, int]] = Counter()  # (hour, platform, column index)
            for j in range(size):
                dev = (first_device + j) % devices
                platform = PLATFORMS[dev % len(PLATFORMS)]
                failed = rnd.random() < FAILED
                opened = not failed and rnd.random() < OPENED
                did = delivery_id + j
                drows.append(
                    (did, message_id, dev + 1, payload_of[platform], tcodes[j], hwid(dev),
                     hwid(dev), f"user-{dev}", platform, hashes[j], 4 if failed else 3,
                     int(opened), 1)
                )  # fmt: skip
                sent = t0 + US + j * 1000
                end = sent + 200_000
                erows.append((t0, did, 1, "Created"))
                erows.append((sent, did, 2, "Sent"))
                counts[(sent - sent % HOUR_US, platform, 0)] += 1
                if failed:
                    erows.append((end, did, 4, _FAIL_REASON))
                    counts[(end - end % HOUR_US, platform, 3)] += 1
                else:
                    erows.append((end, did, 3, "Delivered"))
                    counts[(end - end % HOUR_US, platform, 1)] += 1
                if opened:
                    at = end + rnd.randrange(30 * US, 3600 * US)
                    erows.append((at, did, 5, "Opened"))
                    counts[(at - at % HOUR_US, platform, 2)] += 1
            db.many(
                "INSERT INTO deliveries (id, message_id, device_id, payload_id, tracking_code,"
                " target_id, hwid, user_id, platform, hash, state, opened, attempts)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                drows,
            )
            db.many(
                "INSERT INTO events (ts, delivery_id, status, description) VALUES (?, ?, ?, ?)",
                erows,
            )
            cells: dict[tuple[int, int], list[int]] = {}
            for (hour, platform, column), n in counts.items():
                cells.setdefault((hour, platform), [0, 0, 0, 0])[column] += n
            db.many(_COUNTER_SQL, [(message_id, h, p, *c) for (h, p), c in cells.items()])
            events += len(erows)
            done += size
            delivery_id += size
            message_id += 1
            if m % 50 == 49:
                db.commit()
                db.begin()
        db.commit()
    return Trail(devices, messages, deliveries, events, first_message_id, start_us, span_us)
