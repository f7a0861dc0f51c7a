"""Setting up a workload's tenant through the store facade: application, tokens, devices."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from pushtrack.api import auth
from pushtrack.domain import codes
from pushtrack.store import Store, open_store
from pushtrack.store.base import App, DeviceIn, MessagePlan, Targeting

T = TypeVar("T")

#: Device types the generated devices cycle through (iOS, Android, Chrome).
PLATFORMS = (1, 3, 11)


@dataclass(frozen=True)
class Tenant:
    app: App
    server_token: str
    device_token: str


def with_store(url: str, fn: Callable[[Store], Awaitable[T]]) -> T:
    async def go() -> T:
        store = open_store(url)
        try:
            return await fn(store)
        finally:
            await store.close()

    return asyncio.run(go())


async def create_tenant(store: Store, *, name: str = "bench", **app_options: Any) -> Tenant:
    app = await store.create_app("default", name, **app_options)
    tokens = {}
    for kind in ("server", "device"):
        raw = codes.secret_token()
        await store.create_token(
            "default", kind, auth.hash_token(raw), auth.prefix_of(raw), None, None
        )
        tokens[kind] = raw
    return Tenant(app, tokens["server"], tokens["device"])


def hwid(i: int) -> str:
    return f"bench-device-{i:08d}"


def device(i: int, platforms: tuple[int, ...] = PLATFORMS) -> DeviceIn:
    return DeviceIn(
        hwid=hwid(i),
        device_type=platforms[i % len(platforms)],
        push_token=f"{i:064x}",
        language="en",
        user_id=f"user-{i}",
    )


async def register_devices(
    store: Store, app: App, n: int, platforms: tuple[int, ...] = PLATFORMS, start: int = 0
) -> None:
    """Register ``n`` devices through ``Store.register_device``, many in flight at once."""
    step = 512
    for first in range(start, start + n, step):
        last = min(first + step, start + n)
        await asyncio.gather(
            *(store.register_device(app, device(i, platforms)) for i in range(first, last))
        )


async def create_deliveries(
    store: Store, app: App, n: int, devices: int, content: str = "Flash sale"
) -> None:
    """``n`` deliveries through ``Store.create_messages``: messages of 1000 devices, 10 a call."""
    now = store.clock()
    for first in range(0, n, 10_000):
        plans = []
        for k in range(first, min(first + 10_000, n), 1000):
            targets = tuple(hwid((k + j) % devices) for j in range(min(1000, n - k)))
            plans.append(
                MessagePlan(
                    notification={"content": content},
                    targeting=Targeting(devices=targets),
                    send_at=now,
                )
            )
        await store.create_messages(app, plans)
