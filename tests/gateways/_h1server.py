"""A small HTTP/1.1-over-TLS server (h11 on asyncio) running in a background thread.

The same handlers as ``H2Server`` (``async handler(Request) -> Response``), for a
push service that speaks no HTTP/2: its TLS offers ``http/1.1`` in ALPN (or, with
``alpn=None``, no ALPN at all), so a client offering h2 does not get it. Connections
are kept alive between requests (one request at a time each, as HTTP/1.1 has it).
``connections`` counts the TLS connections accepted, ``peak_connections`` the most
open at once, and ``h2_refused`` those on which the client spoke HTTP/2 anyway (sent
its preface): a client must look at what ALPN chose before writing a byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading

import h11

from tests.gateways._h2server import Handler, Request, Response

_PREFACE = b"PRI * HTTP/2.0"


class H1Server:
    def __init__(self, handler: Handler, ssl_context: ssl.SSLContext) -> None:
        self.handler = handler
        self.ssl_context = ssl_context
        self.connections = 0
        self.open_connections = 0
        self.peak_connections = 0
        self.h2_refused = 0
        #: Exceptions raised by the handler (answered as 500): tests assert this stays empty.
        self.errors: list[BaseException] = []
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stopping: asyncio.Event | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def reset_knobs(self) -> None:
        """No connection-level knobs here: the counters start again."""
        self.peak_connections = self.open_connections
        self.h2_refused = 0

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="h1-test-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("local HTTP/1.1 server did not start")

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            return
        if self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(10)
        self._thread = None

    def _run(self) -> None:
        assert self._loop is not None
        try:
            self._loop.run_until_complete(self._main())
        finally:
            self._loop.close()

    async def _main(self) -> None:
        self._stopping = asyncio.Event()
        server = await asyncio.start_server(
            self._accept, "127.0.0.1", 0, ssl=self.ssl_context, ssl_shutdown_timeout=1.0
        )
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        await self._stopping.wait()
        server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        self.open_connections += 1
        self.peak_connections = max(self.peak_connections, self.open_connections)
        self._writers.add(writer)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._serve(reader, writer, number)
        except (OSError, ssl.SSLError, h11.ProtocolError):
            pass  # the client went away
        finally:
            self.open_connections -= 1
            self._writers.discard(writer)
            self._tasks.discard(task)
            writer.transport.abort()

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int
    ) -> None:
        conn = h11.Connection(h11.SERVER)
        first = True
        while True:
            method = path = ""
            headers: list[tuple[str, str]] = []
            body = bytearray()
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await reader.read(65536)
                    if first and data.startswith(_PREFACE):
                        self.h2_refused += 1  # HTTP/2 spoken to an HTTP/1.1 server
                        return
                    first = False
                    conn.receive_data(data)
                elif isinstance(event, h11.Request):
                    method, path = event.method.decode(), event.target.decode()
                    headers = [(k.decode(), v.decode()) for k, v in event.headers]
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    break
                elif isinstance(event, h11.ConnectionClosed):
                    return
            request = Request(
                method, path, dict(headers), headers, bytes(body), number, stream_id=0
            )
            try:
                response = await self.handler(request)
            except Exception as exc:
                self.errors.append(exc)
                response = Response(500)
            answer = [(k, v) for k, v in response.headers.items()]
            answer.append(("content-length", str(len(response.body))))
            writer.write(conn.send(h11.Response(status_code=response.status, headers=answer)))
            writer.write(conn.send(h11.Data(data=response.body)))
            writer.write(conn.send(h11.EndOfMessage()))
            await writer.drain()
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return
            with contextlib.suppress(h11.ProtocolError):
                conn.start_next_cycle()
