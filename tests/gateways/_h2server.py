"""A small HTTP/2-over-TLS server (the h2 library on asyncio) running in a background thread.

Each local gateway is a handler on top of it: ``async handler(Request) -> Response``.
It speaks real HTTP/2 (ALPN "h2", flow control, concurrent streams) and can
retire a connection after ``goaway_after`` streams, as APNs does: it takes
that many streams, leaves any later ones unprocessed, answers the ones it
took, then sends GOAWAY naming the last one it took, and closes the connection
when the client has hung up. Requests on streams it did not take must be
retried by the client on a new connection. ``reset_after`` does the same but
drops the connection abruptly, without a GOAWAY.

Connection-level knobs of real gateways (``reset_knobs`` restores them all):
``goaway_early`` sends the GOAWAY as soon as ``goaway_after`` streams are taken,
while they are still in flight, and answers them afterwards; ``stream_limits``
changes SETTINGS_MAX_CONCURRENT_STREAMS mid-connection (``{1: 1, 20: 100}``:
down to 1 after the first stream taken, back to 100 after the 20th; a client
opening more streams than the acknowledged limit is recorded in ``errors``);
``max_streams`` is the limit announced when a connection starts; ``refuse_next``
refuses that many streams with RST_STREAM(REFUSED_STREAM), unprocessed;
``stall_after`` takes the streams after that many (server-wide) and never answers them;
``silence_connections()`` makes the open connections drop everything, as a
connection a NAT has forgotten does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
from hyperframe.frame import GoAwayFrame


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names; see header_list for repeats
    header_list: list[tuple[str, str]]
    body: bytes
    connection: int  # 1-based number of the TCP connection the request came on
    stream_id: int


@dataclass
class Response:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    @classmethod
    def json(cls, status: int, data: Any, headers: dict[str, str] | None = None) -> Response:
        headers = {"content-type": "application/json; charset=UTF-8", **(headers or {})}
        return cls(status, headers, json.dumps(data).encode())


Handler = Callable[[Request], Awaitable[Response]]


class H2Server:
    def __init__(self, handler: Handler, ssl_context: ssl.SSLContext) -> None:
        self.handler = handler
        self.ssl_context = ssl_context
        #: Take this many streams per connection, answer them, then send GOAWAY.
        self.goaway_after: int | None = None
        #: Take this many streams per connection, answer them, then drop the connection
        #: (no GOAWAY, TCP closed at once): a network failure as the client sees it.
        self.reset_after: int | None = None
        self.reset_knobs()
        self.connections = 0
        #: Exceptions raised by the handler (answered as 500): tests assert this stays empty.
        self.errors: list[BaseException] = []
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stopping: asyncio.Event | None = None
        self._start_error: BaseException | None = None
        self._live: set[_Connection] = set()

    def reset_knobs(self) -> None:
        """Every connection-level knob back to a well-behaved server."""
        self.goaway_after = None
        self.reset_after = None
        #: With ``goaway_after``: GOAWAY while the streams taken are still in flight.
        self.goaway_early = False
        #: SETTINGS_MAX_CONCURRENT_STREAMS announced when a connection starts (None: h2's).
        self.max_streams: int | None = None
        #: Streams taken on a connection → the SETTINGS_MAX_CONCURRENT_STREAMS announced then.
        self.stream_limits: dict[int, int] = {}
        #: Refuse this many coming streams with REFUSED_STREAM (never processed).
        self.refuse_next = 0
        #: Take the streams after this many (counted over all connections), never answer them.
        self.stall_after: int | None = None
        self.taken = 0

    def silence_connections(self) -> None:
        """The connections open now read and answer nothing more (new ones work)."""
        for conn in list(self._live):
            conn.silent = True

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="h2-test-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("local HTTP/2 server did not start")
        if self._start_error is not None:
            raise RuntimeError("local HTTP/2 server failed") from self._start_error

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            return
        if self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(10)
        self._thread = None

    def __enter__(self) -> H2Server:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self) -> None:
        assert self._loop is not None
        try:
            self._loop.run_until_complete(self._main())
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
        finally:
            self._loop.close()

    async def _main(self) -> None:
        self._stopping = asyncio.Event()
        try:
            server = await asyncio.start_server(
                self._accept, "127.0.0.1", 0, ssl=self.ssl_context, ssl_shutdown_timeout=1.0
            )
        except BaseException as exc:
            self._start_error = exc
            self._ready.set()
            raise
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        await self._stopping.wait()
        server.close()
        tasks = [conn.task for conn in self._live]
        for conn in list(self._live):
            conn.abort()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        conn = _Connection(self, reader, writer, self.connections)
        self._live.add(conn)
        try:
            await conn.run()
        finally:
            self._live.discard(conn)


class _Connection:
    def __init__(
        self,
        server: H2Server,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        number: int,
    ) -> None:
        self.server, self.reader, self.writer, self.number = server, reader, writer, number
        config = h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        self.h2 = h2.connection.H2Connection(config=config)
        self.task = asyncio.current_task()
        self.streams: dict[int, tuple[list[tuple[str, str]], bytearray]] = {}
        self.responders: set[asyncio.Task[None]] = set()
        self.window_open = asyncio.Event()
        self.accepted = 0  # streams taken for processing
        self.answered = 0
        self.last_stream_id = 0
        self.draining = False
        self.closed = False
        self.silent = False

    async def run(self) -> None:
        ssl_object = self.writer.get_extra_info("ssl_object")
        if ssl_object is None or ssl_object.selected_alpn_protocol() != "h2":
            self.writer.close()
            return
        if self.server.max_streams is not None:
            self.h2.local_settings = h2.settings.Settings(
                client=False,
                initial_values={
                    h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: self.server.max_streams
                },
            )
        self.h2.initiate_connection()
        self._flush()
        try:
            while not self.closed:
                timeout = 2.0 if self.draining else None
                data = await asyncio.wait_for(self.reader.read(65536), timeout)
                if not data:
                    break
                if self.draining or self.silent:
                    continue  # after GOAWAY: let the client read it and hang up first
                try:
                    events = self.h2.receive_data(data)
                except h2.exceptions.TooManyStreamsError as exc:
                    self.server.errors.append(exc)  # the client ignored our stream limit
                    self._flush()
                    break
                except h2.exceptions.ProtocolError:
                    self._flush()
                    break
                for event in events:
                    self._on(event)
                self._flush()
        except (ConnectionError, ssl.SSLError, TimeoutError):
            pass
        finally:
            self.closed = True
            for task in list(self.responders):
                task.cancel()
            await asyncio.gather(*self.responders, return_exceptions=True)
            self.writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError, TimeoutError):
                await asyncio.wait_for(self.writer.wait_closed(), 2)

    def abort(self) -> None:
        self.closed = True
        self.writer.transport.abort()

    def _flush(self) -> None:
        data = self.h2.data_to_send()
        if data and not self.writer.is_closing():
            self.writer.write(data)

    def _on(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            self.streams[event.stream_id] = (list(event.headers), bytearray())
        elif isinstance(event, h2.events.DataReceived):
            if event.stream_id in self.streams:
                self.streams[event.stream_id][1].extend(event.data)
            self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.StreamEnded) and event.stream_id in self.streams:
            headers, body = self.streams.pop(event.stream_id)
            server = self.server
            limit = server.goaway_after or server.reset_after
            if limit is not None and self.accepted >= limit:
                return  # past the limit: never processed, named so by the GOAWAY to come
            if server.refuse_next > 0:
                server.refuse_next -= 1
                self.h2.reset_stream(event.stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
                return
            self.accepted += 1
            server.taken += 1
            self.last_stream_id = event.stream_id
            if self.accepted in server.stream_limits:
                code = h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS
                self.h2.update_settings({code: server.stream_limits[self.accepted]})
            if server.goaway_early and self.accepted == server.goaway_after:
                self._goaway_now()
            if server.stall_after is not None and server.taken > server.stall_after:
                return  # taken, never answered
            task = asyncio.create_task(self._respond(event.stream_id, headers, bytes(body)))
            self.responders.add(task)
            task.add_done_callback(self.responders.discard)
        elif isinstance(event, h2.events.StreamReset):
            self.streams.pop(event.stream_id, None)
        elif isinstance(event, h2.events.WindowUpdated):
            self.window_open.set()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.closed = True

    def _goaway_now(self) -> None:
        """A GOAWAY naming the last stream taken, with the streams taken still unanswered.

        Written as a raw frame: h2 closes its own state machine on GOAWAY, after
        which it could not send the answers that RFC 9113 §6.8 still allows.
        """
        self._flush()
        frame = GoAwayFrame(0)
        frame.last_stream_id = self.last_stream_id
        frame.error_code = 0
        if not self.writer.is_closing():
            self.writer.write(frame.serialize())

    async def _respond(
        self, stream_id: int, header_list: list[tuple[str, str]], body: bytes
    ) -> None:
        headers = dict(header_list)
        request = Request(
            method=headers.get(":method", ""),
            path=headers.get(":path", ""),
            headers={k: v for k, v in headers.items() if not k.startswith(":")},
            header_list=[(k, v) for k, v in header_list if not k.startswith(":")],
            body=body,
            connection=self.number,
            stream_id=stream_id,
        )
        try:
            response = await self.server.handler(request)
        except Exception as exc:
            self.server.errors.append(exc)
            response = Response(500, body=repr(exc).encode())
        if self.closed:
            return
        headers = [
            (":status", str(response.status)),
            ("content-length", str(len(response.body))),
            *response.headers.items(),
        ]
        try:
            self.h2.send_headers(stream_id, headers, end_stream=not response.body)
            self._flush()
            if response.body:
                await self._send_body(stream_id, response.body)
        except h2.exceptions.StreamClosedError:
            return  # the client gave up on this stream (a timeout) and reset it
        self.answered += 1
        if self.answered == self.server.goaway_after:
            # Every stream taken is answered: say which was the last one, then drain.
            self.draining = True
            self.h2.close_connection(last_stream_id=self.last_stream_id)
            self._flush()
        elif self.answered == self.server.reset_after:
            self.abort()

    async def _send_body(self, stream_id: int, body: bytes) -> None:
        while body and not self.closed:
            window = min(
                self.h2.local_flow_control_window(stream_id), self.h2.max_outbound_frame_size
            )
            if window <= 0:
                self.window_open.clear()
                await self.window_open.wait()
                continue
            self.h2.send_data(stream_id, body[:window], end_stream=len(body) <= window)
            body = body[window:]
            self._flush()
