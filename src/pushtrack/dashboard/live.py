"""The Live page's event stream: an application's trail as it happens (server-sent events).

When the service has the API's event stream (``GET /api/v2/events/stream``: server
token, ``app``/``hwid``/``message``/``status`` filters, ``Last-Event-ID``), the
dashboard relays it in-process, as the signed-in token. Otherwise it follows the
trail itself: every ``POLL_SECONDS`` it reads the events after the last one sent
(getMessageLog's query, ``LAG_SECONDS`` behind the clock so that a transaction still
committing is not skipped), and each event's id is its position in the trail, so a
reconnecting browser (``Last-Event-ID``) misses nothing and sees nothing twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlencode

import msgspec
from starlette.requests import Request
from starlette.routing import Match

from pushtrack.api import message_log
from pushtrack.api.context import Context
from pushtrack.api.errors import ArgumentError
from pushtrack.domain.status import BY_LABEL
from pushtrack.domain.timeutil import US
from pushtrack.store.base import App, LogQuery, TokenInfo
from pushtrack.store.trail import delivery_event

log = logging.getLogger("pushtrack.dashboard")

STREAM_PATH = "/api/v2/events/stream"
POLL_SECONDS = 1.0
LAG_SECONDS = 2.0
PING_SECONDS = 15.0
BATCH = 200
#: Streams open at once in this process; more are refused (the browser retries).
MAX_STREAMS = 200


def _frame(event_id: str, status: str, data: bytes) -> bytes:
    """One event as the API's stream sends it: named by its status."""
    return (
        b"id: " + event_id.encode() + b"\nevent: " + status.encode() + b"\ndata: " + data + b"\n\n"
    )


class Live:
    def __init__(self, ctx: Context, api_app: Callable[[], Any] | None) -> None:
        self.ctx = ctx
        self.api_app = api_app
        self.open = 0

    def relays(self) -> bool:
        """Does the service answer the API's event stream?"""
        app = self.api_app() if self.api_app is not None else None
        if app is None:
            return False
        scope = {"type": "http", "method": "GET", "path": STREAM_PATH, "root_path": ""}
        for route in app.routes:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                return True
        return False

    async def _gone(self, request: Request) -> bool:
        """The browser went away, or the server is shutting down (the browser reconnects
        to another process, or after the restart, from its last event)."""
        stopping = self.ctx.stopping
        return (stopping is not None and stopping()) or await request.is_disconnected()

    def filters(self, request: Request) -> dict[str, str]:
        q = request.query_params
        return {k: q[k] for k in ("hwid", "message", "status") if q.get(k)}

    async def stream(
        self, request: Request, raw: str, token: TokenInfo, app: App, after: str | None
    ) -> AsyncIterator[bytes]:
        if self.open >= MAX_STREAMS:
            yield b"retry: 10000\n: too many streams\n\n"
            return
        self.open += 1
        try:
            refused = False
            if self.relays():
                async for chunk in self._relay(request, raw, app, after):
                    if chunk is None:
                        refused = True
                        break
                    yield chunk
            if refused or not self.relays():
                # the stream refused (a token without its method, say): follow the trail
                async for chunk in self._follow(request, token, app, None if refused else after):
                    yield chunk
        finally:
            self.open -= 1

    async def _follow(
        self, request: Request, token: TokenInfo, app: App, after: str | None
    ) -> AsyncIterator[bytes]:
        f = self.filters(request)
        try:
            cursor = message_log.decode_cursor(after) if after else None
        except ArgumentError:
            cursor = None
        if cursor is None:
            cursor = (self.ctx.store_clock() - int(LAG_SECONDS * US), 0)
        status = BY_LABEL.get(f.get("status", ""))
        query = LogQuery(
            account=token.account,
            apps=token.apps,
            application_code=app.code,
            hwids=(f["hwid"],) if "hwid" in f else None,
            message_code=f.get("message"),
            statuses=(status,) if status is not None else None,
            limit=BATCH,
        )
        yield b"retry: 2000\n: following the trail\n\n"
        pinged = time.monotonic()
        while not await self._gone(request):
            until = self.ctx.store_clock() - int(LAG_SECONDS * US)
            rows = await self.ctx.store.message_log(
                msgspec.structs.replace(query, date_from=cursor[0], date_to=until, after=cursor)
            )
            for row in rows:
                cursor = (row.ts, row.event_id)
                event_id = message_log.encode_cursor(*cursor)
                event = msgspec.structs.asdict(delivery_event(row))
                yield _frame(
                    event_id, row.status.label, msgspec.json.encode({"id": event_id, **event})
                )
            if len(rows) >= BATCH:
                continue
            if time.monotonic() - pinged > PING_SECONDS:
                pinged = time.monotonic()
                yield b": ping\n\n"
            await asyncio.sleep(POLL_SECONDS)

    async def _relay(
        self, request: Request, raw: str, app: App, after: str | None
    ) -> AsyncIterator[bytes | None]:
        """The API's event stream, asked in-process with the session's token; None
        first and alone when it refuses."""
        api = self.api_app() if self.api_app is not None else None
        assert api is not None
        headers = [(b"authorization", f"Token {raw}".encode()), (b"accept", b"text/event-stream")]
        if after:
            headers.append((b"last-event-id", after.encode()))
        query = urlencode({"application": app.code, **self.filters(request)}).encode()
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": request.url.scheme,
            "path": STREAM_PATH,
            "raw_path": STREAM_PATH.encode(),
            "root_path": "",
            "query_string": query,
            "headers": headers,
            "client": request.scope.get("client"),
            "server": request.scope.get("server"),
            "state": {},
        }
        gone = asyncio.Event()
        sent_body = False
        out: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=64)

        async def receive() -> dict[str, Any]:
            nonlocal sent_body
            if not sent_body:
                sent_body = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            await out.put(message)

        async def watch() -> None:
            while not await self._gone(request):  # noqa: ASYNC110 - Starlette has no wait
                await asyncio.sleep(POLL_SECONDS)
            gone.set()

        task = asyncio.create_task(api(scope, receive, send))
        watcher = asyncio.create_task(watch())
        try:
            while True:
                getter = asyncio.create_task(out.get())
                done, _ = await asyncio.wait({getter, watcher}, return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    getter.cancel()
                    return
                message = getter.result()
                if message["type"] == "http.response.start":
                    if message["status"] != 200:
                        log.info("live: the event stream answered %s", message["status"])
                        yield None  # refused
                        return
                elif message["type"] == "http.response.body":
                    if message.get("body"):
                        yield message["body"]
                    if not message.get("more_body"):
                        return
        finally:
            gone.set()
            watcher.cancel()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
