"""Running the service: the store, the HTTP server, and first-start set-up."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import uvicorn

from pushtrack.api import auth
from pushtrack.api.app import create_app
from pushtrack.api.context import Context
from pushtrack.config import Settings
from pushtrack.domain import codes
from pushtrack.store import Store, open_store

log = logging.getLogger("pushtrack")

Announce = Callable[[dict[str, Any], str], None]


async def ensure_demo(store: Store) -> dict[str, Any] | None:
    """On a store with no applications, create a demo application and its tokens."""
    if await store.list_apps("default"):
        return None
    app = await store.create_app("default", "demo")
    tokens = {}
    for kind in auth.KINDS:
        raw = codes.secret_token()
        await store.create_token(
            "default", kind, auth.hash_token(raw), auth.prefix_of(raw), None, None
        )
        tokens[kind] = raw
    return {
        "application": app.code,
        "server_token": tokens["server"],
        "device_token": tokens["device"],
    }


def run_server(settings: Settings, announce: Announce) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    store = open_store(settings.database)
    demo = asyncio.run(ensure_demo(store))
    if demo:
        announce(
            demo,
            "First start: created a demo application.\n"
            f"  application:  {demo['application']}\n"
            f"  server token: {demo['server_token']}\n"
            f"  device token: {demo['device_token']}\n"
            "Tokens are shown once; create more with `pushtrack token create`.",
        )
    ctx = Context.build(settings, store)
    app = create_app(ctx, lifespan_store=True)
    where = {"listening": settings.base_url(), "database": settings.redacted()["database"]}
    announce(where, f"pushtrack listening on {where['listening']} (database {where['database']})")
    uvicorn.run(app, host=settings.host, port=settings.port, access_log=False, log_level="info")
