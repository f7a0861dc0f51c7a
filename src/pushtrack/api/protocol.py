"""The HTTP/1.1 server protocol: uvicorn's, with read deadlines and a connection cap.

uvicorn closes a keep-alive connection that stays idle after a response, but
it waits for ever for a request's headers and body. A client that opens a
connection and sends nothing, or half its headers, or part of a body, would
hold a connection and whatever it sent until it chose to leave. Here each
request has a deadline for its headers (from the connection's start, or the
request's first byte) and another for its body (from the end of its headers);
past either, the connection is closed and what it held is freed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from pushtrack.config import Settings


class _GuardedProtocol(HttpToolsProtocol):
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm(self.header_timeout)

    def on_headers_complete(self) -> None:
        self._arm(self.body_timeout)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.close()


def guarded_protocol(header_timeout: float, body_timeout: float) -> type[asyncio.Protocol]:
    """uvicorn's protocol class with these read deadlines (seconds)."""
    return type(
        "GuardedProtocol",
        (_GuardedProtocol,),
        {"header_timeout": header_timeout, "body_timeout": body_timeout},
    )


def server_config(app: Any, settings: Settings, **overrides: Any) -> uvicorn.Config:
    """The uvicorn configuration ``serve`` runs ``app`` with (tests use it too)."""
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "access_log": False,
        "log_level": "info",
        # the process' logging (pushtrack.logs.configure) formats uvicorn's records too
        "log_config": None,
        "lifespan": "on",
        "http": guarded_protocol(settings.header_timeout_seconds, settings.body_timeout_seconds),
        "timeout_keep_alive": settings.keepalive_timeout_seconds,
        # above this many connections and requests in flight, new ones get 503
        "limit_concurrency": settings.max_connections,
    }
    options.update(overrides)
    return uvicorn.Config(app, **options)
