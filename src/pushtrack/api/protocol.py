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
from typing import Any, cast

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from pushtrack.config import Settings


class _GuardedProtocol(HttpToolsProtocol):
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    #: When the connection is closed unless the request has come on (None: nothing due).
    _due: float | None = None
    #: The connection's one timer: it looks at ``_due`` when it fires, so arming a
    #: deadline per request is setting a number, not scheduling and cancelling a timer.
    _timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(cast(asyncio.Transport, _HeadWithBody(transport, self)))
        self._arm(self.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._due = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm(self.header_timeout)

    def on_headers_complete(self) -> None:
        self._arm(self.body_timeout)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._due = None
        super().on_message_complete()

    def _arm(self, seconds: float) -> None:
        self._due = self.loop.time() + seconds
        if self._timer is None:
            self._schedule(self._due)

    def _schedule(self, due: float) -> None:
        # Never further ahead than the shortest deadline: a deadline armed later is
        # then never earlier than the timer.
        at = min(due, self.loop.time() + min(self.header_timeout, self.body_timeout))
        self._timer = self.loop.call_at(at, self._expired)

    def _expired(self) -> None:
        self._timer = None
        due = self._due
        if due is None:
            return  # the next deadline armed schedules the timer again
        if self.loop.time() < due:
            self._schedule(due)
        elif not self.transport.is_closing():
            self.transport.close()


class _HeadWithBody:
    """The connection's transport, writing a response's head together with its body.

    uvicorn writes a response's status line and headers, then its body, each with a
    write of its own: two system calls, and two segments on the wire. A head that
    announces a body (Content-Length above 0, written while its response has written
    nothing else) is held here and goes out with the next write, in one ``writelines``
    (one ``writev`` on uvloop). The body's last write never waits (by then no byte is
    still expected), and a HEAD answer's head is never held (its body is not written),
    so nothing is held past its response; closing writes what is held.
    """

    __slots__ = ("_head", "_protocol", "_transport")

    def __init__(self, transport: asyncio.Transport, protocol: HttpToolsProtocol) -> None:
        self._transport = transport
        self._protocol = protocol
        self._head: bytes | None = None

    def write(self, data: bytes) -> None:
        head = self._head
        if head is not None:
            self._head = None
            self._transport.writelines((head, data))
            return
        if data.startswith(b"HTTP/1.1 ") and data.endswith(b"\r\n\r\n") and len(data) < 8192:
            cycle = self._protocol.cycle
            if (
                cycle is not None
                and cycle.response_started
                and not cycle.response_complete
                and not cycle.chunked_encoding
                and cycle.expected_content_length > 0
                # a HEAD answer's body is never written: nothing would take the head out
                and cycle.scope["method"] != "HEAD"
            ):
                self._head = data
                return
        self._transport.write(data)

    def close(self) -> None:
        head = self._head
        if head is not None:
            self._head = None
            self._transport.write(head)
        self._transport.close()

    def abort(self) -> None:
        self._head = None
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


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
