"""A keep-alive HTTP/1.1 load generator on asyncio (uvloop when installed).

It runs in the bench process, apart from the server under test, so the two
never share a GIL. Requests are prepared as bytes beforehand; each of
``connections`` persistent connections sends one, waits for its whole
response, and takes the next (a closed loop). A full-featured client (httpx)
costs more CPU per request than the servers under test, so it would measure
itself; this one parses only the status line and Content-Length.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import cast

import msgspec


def post(path: str, body: object, headers: dict[str, str] | None = None) -> bytes:
    """A prepared ``POST`` of ``body`` as JSON."""
    payload = msgspec.json.encode(body)
    lines = [
        f"POST {path} HTTP/1.1",
        "Host: 127.0.0.1",
        "Content-Type: application/json",
        f"Content-Length: {len(payload)}",
    ]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


@dataclass
class Load:
    """What a run of requests gave."""

    elapsed: float
    latencies_ms: list[float] = field(default_factory=list)
    #: Responses whose status was not 200 or that ``check`` refused.
    failures: int = 0
    first_failure: str = ""

    @property
    def count(self) -> int:
        return len(self.latencies_ms)

    @property
    def rate(self) -> float:
        return self.count / self.elapsed if self.elapsed else 0.0


class _Conn(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.head_end = -1
        self.need = -1
        self.status = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc or ConnectionError("server closed the connection"))

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.need < 0:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end]).lower()
            self.status = int(head[9:12])
            at = head.find(b"content-length:")
            if at < 0:
                raise ConnectionError("response without Content-Length")
            eol = head.find(b"\r\n", at)
            length = int(head[at + 15 : eol if eol >= 0 else len(head)])
            self.head_end = end + 4
            self.need = self.head_end + length
        if len(self.buf) >= self.need:
            body = bytes(self.buf[self.head_end : self.need])
            del self.buf[: self.need]
            self.need = -1
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_result((self.status, body))

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return await self.waiter


async def _run(
    port: int | Sequence[int],
    requests: Sequence[bytes],
    connections: int,
    check: Callable[[bytes], bool] | None,
    seconds: float,
    until: Callable[[], bool] | None,
) -> Load:
    loop = asyncio.get_running_loop()
    ports = [port] if isinstance(port, int) else list(port)
    conns = []
    for i in range(connections):
        _, proto = await loop.create_connection(_Conn, "127.0.0.1", ports[i % len(ports)])
        conns.append(proto)
    result = Load(elapsed=0.0)
    next_index = 0
    deadline = time.monotonic() + seconds

    async def drive(conn: _Conn) -> None:
        nonlocal next_index
        while next_index < len(requests) and time.monotonic() < deadline:
            if until is not None and until():
                return
            raw = requests[next_index]
            next_index += 1
            t = time.perf_counter()
            status, body = await conn.request(raw)
            result.latencies_ms.append((time.perf_counter() - t) * 1000)
            if status != 200 or (check is not None and not check(body)):
                result.failures += 1
                if not result.first_failure:
                    result.first_failure = f"HTTP {status}: {body[:300]!r}"

    start = time.perf_counter()
    try:
        await asyncio.gather(*(drive(c) for c in conns))
    finally:
        result.elapsed = time.perf_counter() - start
        for c in conns:
            if c.transport is not None:
                c.transport.close()
    return result


def run(
    port: int | Sequence[int],
    requests: Sequence[bytes],
    *,
    connections: int,
    check: Callable[[bytes], bool] | None = None,
    timeout: float = 600.0,
    until: Callable[[], bool] | None = None,
) -> Load:
    """Send every request over ``connections`` keep-alive connections (spread over the
    ``port``s round robin when there are several servers).

    Stops taking new requests after ``timeout`` seconds, or once ``until()`` is true.
    """
    factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop
    try:
        import uvloop

        factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        pass
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(_run(port, requests, connections, check, timeout, until))
