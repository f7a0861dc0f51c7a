"""The demo's first minute: simulated devices and messages, so the dashboard has a story.

On the first start with ``--demo`` (an empty SQLite database), after the demo
application is made: a few hundred devices register on the sandbox gateway's
platforms, a handful of messages go out through the ordinary API handlers (the
worker sends them through the sandbox, which delivers most, fails some with each
gateway's real reasons, and defers a few), and for a while devices "open" and
confirm a share of what they were delivered, as the SDKs would report it.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

from pushtrack.api import envelope, messages
from pushtrack.api.context import Call, Context
from pushtrack.domain.platforms import Platform
from pushtrack.domain.status import Status
from pushtrack.store.base import DeviceIn

log = logging.getLogger("pushtrack.demo")

DEVICES = 300
#: Seconds the demo keeps reporting opens and confirmations after its messages go out.
REPORT_SECONDS = 120.0
REPORT_EVERY = 2.0

#: (platform, share of the devices, model, os)
_MIX = (
    (Platform.IOS, 0.38, "iPhone15,2", "18.1"),
    (Platform.ANDROID, 0.40, "Pixel 8", "15"),
    (Platform.CHROME, 0.12, "Chrome", "131"),
    (Platform.FIREFOX, 0.06, "Firefox", "133"),
    (Platform.SAFARI, 0.04, "Safari", "18"),
)
_LANGUAGES = ("en", "en", "en", "de", "fr", "es", "pt")

#: (notification, share of deliveries opened, share confirmed by the device)
_MESSAGES: tuple[tuple[dict[str, Any], float, float], ...] = (
    (
        {"title": "Welcome back", "content": "Your weekly summary is ready", "campaign": "weekly"},
        0.22,
        0.7,
    ),
    (
        {
            "title": "Flash sale",
            "content": "30% off everything until midnight",
            "campaign": "autumn-sale",
            "platforms": [int(Platform.IOS), int(Platform.ANDROID)],
        },
        0.35,
        0.8,
    ),
    (
        {
            "title": "New in the web app",
            "content": "Dark mode has arrived",
            "campaign": "product",
            "platforms": [int(Platform.CHROME), int(Platform.FIREFOX), int(Platform.SAFARI)],
        },
        0.12,
        0.0,
    ),
    (
        {"content": "Your order has shipped", "campaign": "orders", "users": []},
        0.6,
        0.9,
    ),
)


def _devices(rng: random.Random) -> list[DeviceIn]:
    out = []
    for i in range(DEVICES):
        pick, acc = rng.random(), 0.0
        platform, model, os_version = _MIX[-1][0], _MIX[-1][2], _MIX[-1][3]
        for p, share, m, o in _MIX:
            acc += share
            if pick < acc:
                platform, model, os_version = p, m, o
                break
        out.append(
            DeviceIn(
                hwid=f"demo-{platform.name.lower()}-{i:04d}",
                device_type=int(platform),
                push_token=f"sandbox-token-{i:04d}-{rng.getrandbits(64):016x}",
                language=rng.choice(_LANGUAGES),
                user_id=f"user-{i // 2:04d}" if rng.random() < 0.6 else None,
                app_version="3.4.1",
                device_model=model,
                os_version=os_version,
            )
        )
    return out


async def populate(ctx: Context, application: str, server_token: str) -> None:
    """Register the demo devices, send the demo messages, then report opens for a while."""
    rng = random.Random(20261127)
    app = await ctx.store.get_app(application)
    if app is None:
        return
    devices = _devices(rng)
    for d in devices:
        await ctx.store.register_device(app, d)
    users = sorted({d.user_id for d in devices if d.user_id})[:40]
    token = await ctx.token(server_token)
    call = Call(ctx, "createMessage", token)
    sent: list[tuple[str, float, float]] = []
    for notification, opens, confirms in _MESSAGES:
        n = dict(notification)
        if "users" in n:
            n["users"] = users
        body = envelope.convert(
            {"application": app.code, "notifications": [n]}, messages.CreateMessage
        )
        out = await messages.create_message(call, body)
        sent.append((out["Messages"][0], opens, confirms))
    # a test push to a device that never registered: it fails as "Unknown device"
    body = envelope.convert(
        {
            "application": app.code,
            "notifications": [
                {
                    "content": "Is anyone there?",
                    "campaign": "test push",
                    "devices": [devices[0].hwid, "an-old-phone"],
                }
            ],
        },
        messages.CreateMessage,
    )
    out = await messages.create_message(call, body)
    sent.append((out["Messages"][0], 0.5, 1.0))
    log.info("demo: %d devices registered, %d messages sent", len(devices), len(sent))
    await _report(ctx, app.id, app.code, sent, rng)


async def _report(
    ctx: Context,
    app_id: int,
    app_code: str,
    sent: list[tuple[str, float, float]],
    rng: random.Random,
) -> None:
    """Opens and confirmations trickle in, as devices would report them."""
    app = await ctx.store.get_app(app_code)
    assert app is not None
    decided: set[tuple[str, str]] = set()
    loop = asyncio.get_running_loop()
    ends = loop.time() + REPORT_SECONDS
    while loop.time() < ends:
        await asyncio.sleep(REPORT_EVERY)
        for code, opens, confirms in sent:
            for hwid, payload_hash in await ctx.store.dashboard.delivered(app_id, code):
                if (code, hwid) in decided:
                    continue
                # each delivered device reports within a few rounds, not all at once
                if rng.random() < 0.85:
                    continue
                decided.add((code, hwid))
                if rng.random() < confirms:
                    await ctx.store.record_device_report(app, hwid, payload_hash, Status.DELIVERED)
                if rng.random() < opens:
                    await ctx.store.record_device_report(app, hwid, payload_hash, Status.OPENED)


async def run(ctx: Context, application: str, server_token: str) -> None:
    """``populate``, logging rather than raising (the service runs on regardless)."""
    try:
        await populate(ctx, application, server_token)
    except asyncio.CancelledError:
        raise
    except Exception:  # the demo's data is a courtesy; a fault is logged, not fatal
        log.exception("demo: could not populate the demo application")
