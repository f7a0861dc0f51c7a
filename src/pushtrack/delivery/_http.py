"""Plumbing the network gateways share: the HTTP/2 client, its errors, keys.

The gateways talk HTTP/2 over TLS through ``Client``: the ``h2`` state machine
driven from an asyncio Protocol, one connection per origin kept open for as long
as the gateway keeps it (APNs asks for that: a new connection starts with a low
stream limit). What the connection does is what RFC 9113 and the gateways ask:

- the server's SETTINGS_MAX_CONCURRENT_STREAMS is honoured as it changes (a
  request waits for a free stream; reading answers never waits for anything);
- on GOAWAY the streams at or below its last stream id are still answered on
  the old connection, and only those above it, which the server says it never
  processed, are sent again on a new one (as are streams refused with
  REFUSED_STREAM);
- every request has a hard deadline; after a timeout the connection takes no new
  requests and a new one is opened;
- a connection idle for ``IDLE_PING_AFTER`` seconds is checked with a PING before
  it takes a request, and replaced when no answer comes (a NAT or firewall may
  have forgotten it silently: a request written into it would be lost unanswered);
- a request whose bytes were handed to the connection may have reached the
  gateway: if no answer comes it is never sent again here, and the error says
  so (``TransportError.may_have_reached``); ``base.transport_outcome`` turns it
  into a FAILED outcome with the reason ``OutcomeUnknown`` rather than risk a push
  delivered twice. Only a request the gateway cannot have seen is RETRY;
- a sender that stops (``Drain``, set for the requests of one batch) lets the
  requests already written be answered, and writes no new one: those raise
  ``NotSent`` (nothing of them reached a gateway) and go with the next run.

A client made with ``http1_fallback`` (Web Push: a push service is whatever a
browser subscribed with) also offers HTTP/1.1 in TLS ALPN; an origin whose TLS
does not choose h2 is spoken to over HTTP/1.1 (``h11``), remembered for
``HTTP1_RECHECK`` seconds: up to ``http1_connections`` connections, one request
at a time each, kept open between requests for ``HTTP1_KEEP_IDLE`` seconds. The
same deadline and the same rule hold there: a request written without an
answer is never sent again.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import email.utils
import ssl
import struct
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import h11
import jh2.config
import jh2.connection
import jh2.errors
import jh2.events
import jh2.exceptions
import jh2.settings
import jh2.stream
import msgspec
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key

_json_decoder = msgspec.json.Decoder()

#: Sends of one request that the gateway refused unprocessed (GOAWAY, REFUSED_STREAM)
#: before it counts as not sent at all.
MAX_REFUSALS = 3
#: Our receive windows (per stream and for the connection): answers are small.
_WINDOW = 1 << 20
_RECOUNT = 256
#: Seconds without a frame from the server after which a PING checks the connection first.
IDLE_PING_AFTER = 30.0
#: Seconds an origin that did not choose h2 is spoken to over HTTP/1.1 before h2 is
#: offered to it again.
HTTP1_RECHECK = 3600.0
#: HTTP/1.1 connections at once per origin (each carries one request at a time).
HTTP1_CONNECTIONS = 16
#: Seconds an HTTP/1.1 connection may rest between requests and still be reused: servers
#: close idle keep-alive connections (often after 5 s), and a request written into one
#: the server is closing would get no answer.
HTTP1_KEEP_IDLE = 4.0


class TransportError(Exception):
    """No answer from the gateway.

    ``may_have_reached`` is True once the request was handed to the connection:
    the gateway may have acted on it, so sending it again could deliver it twice.
    """

    def __init__(self, message: str, *, may_have_reached: bool = False) -> None:
        super().__init__(message)
        self.may_have_reached = may_have_reached


class ConnectError(TransportError):
    """No connection could be opened (DNS, TCP, TLS, no HTTP/2): the request was not sent."""


class RequestTimeout(TransportError):
    """The request's deadline passed without an answer."""


class ConnectionLost(TransportError):
    """The connection or the stream ended without an answer."""


#: What the layers under the client raise when a connection fails: sockets, TLS and
#: deadlines (``OSError``, with its ``ssl.SSLError`` and ``TimeoutError``), and h11's and
#: jh2's protocol errors. The client turns them into ``TransportError``s where it knows
#: whether the request was written; ``as_transport_error`` takes any that get past it.
NETWORK_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    h11.ProtocolError,
    jh2.exceptions.ProtocolError,
)


def as_transport_error(exc: BaseException) -> TransportError | None:
    """``exc`` as a ``TransportError``: itself when it is one; a network error that got
    past the client as a lost connection that may have reached the gateway (nothing says
    it was not written, so it is never sent again); None for anything else."""
    if isinstance(exc, TransportError):
        return exc
    if isinstance(exc, NETWORK_ERRORS):
        detail = str(exc) or type(exc).__name__
        return ConnectionLost(f"connection lost: {detail}", may_have_reached=True)
    return None


class NotSent(TransportError):
    """The sender is stopping (``Drain``): the request was not written, and is not."""


class Drain:
    """Whether the sender of the requests made in this context is stopping.

    The dispatcher sets one for the requests of a batch (``drain_into``); once
    ``stopping``, the client writes none of them any more (``NotSent``), and answers
    the ones already written as ever. Requests made outside any such context are
    never held back.
    """

    __slots__ = ("stopping",)

    def __init__(self) -> None:
        self.stopping = False


_DRAIN: contextvars.ContextVar[Drain | None] = contextvars.ContextVar("drain", default=None)


def drain_into(drain: Drain) -> None:
    """The requests made from now on in this context (and the tasks it starts) follow
    ``drain``."""
    _DRAIN.set(drain)


def _draining() -> bool:
    drain = _DRAIN.get()
    return drain is not None and drain.stopping


def _check_drain() -> None:
    if _draining():
        raise NotSent("the sender stopped before this request was written")


#: ``Client``'s ``connect_to``: (host, port) -> the address to connect to.
ConnectTo = Callable[[str, int], Awaitable[str]]


class _NotProcessed(Exception):
    """The gateway says it did not process the stream (RFC 9113 §8.7): send it again."""


class _Http1Only(Exception):
    """The origin's TLS did not choose h2 (nothing was written): speak HTTP/1.1 to it."""


@dataclass(slots=True)
class Response:
    status_code: int
    headers: dict[str, str]
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


@dataclass(slots=True)
class _Attempt:
    """One request across the connections it is tried on."""

    written: bool = False  # its bytes were handed to a connection and not refused since


@dataclass(slots=True, eq=False)
class _Stream:
    future: asyncio.Future[Response]
    attempt: _Attempt
    pending: bytes = b""  # body still to send (waiting for flow-control window)
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytearray = field(default_factory=bytearray)


#: HTTP/2 frame types and flags (RFC 9113 §6) that the client frames or reads itself.
_DATA, _HEADERS, _RST_STREAM, _PUSH_PROMISE, _CONTINUATION = 0x0, 0x1, 0x3, 0x5, 0x9
_END_STREAM, _END_HEADERS = 0x1, 0x4
_SEND_HEADERS = jh2.connection.ConnectionInputs.SEND_HEADERS
_RECV_HEADERS = jh2.connection.ConnectionInputs.RECV_HEADERS
_SEND_DATA = jh2.connection.ConnectionInputs.SEND_DATA
_STREAM_SEND_HEADERS = jh2.stream.StreamInputs.SEND_HEADERS
_STREAM_SEND_DATA = jh2.stream.StreamInputs.SEND_DATA
_STREAM_SEND_END_STREAM = jh2.stream.StreamInputs.SEND_END_STREAM
_HEAD = struct.Struct(">HBBBL")


def _frame_head(length: int, kind: int, flags: int, stream_id: int) -> bytes:
    """A frame's 9-byte header: 24-bit length, type, flags, stream id."""
    return _HEAD.pack(length >> 8, length & 0xFF, kind, flags, stream_id)


class _H2Connection(jh2.connection.H2Connection):  # type: ignore[misc]
    """h2's state machine, keeping a connection usable for its streams after a GOAWAY.

    h2 closes its state machine when a GOAWAY arrives and then refuses every later
    frame, so the answers RFC 9113 §6.8 says may still come for streams at or
    below the last stream id would be lost. Here a GOAWAY only fires
    ``ConnectionTerminated``; ``_Connection`` opens no new stream after it.
    """

    #: Open streams we started, counted by ``_Connection`` (h2 counts them anew on every
    #: new stream, a walk over all of them; it is done every ``_RECOUNT`` streams to
    #: let h2 drop closed ones).
    outbound = 0
    _since_recount = 0

    @property
    def open_outbound_streams(self) -> int:
        self._since_recount += 1
        if self._since_recount >= _RECOUNT:
            self._since_recount = 0
            return int(super().open_outbound_streams)
        return self.outbound

    def send_request(
        self, stream_id: int, headers: list[tuple[bytes, bytes, bool]], end_stream: bool
    ) -> None:
        """Open a stream with a request's header block: what ``send_headers`` does for a
        new client stream, without its frame objects (the block is framed here).

        The headers are ours (``Client`` builds them): no validation, no normalizing,
        as the connection's configuration says anyway.
        """
        limit = self.remote_settings.max_concurrent_streams
        if self.open_outbound_streams + 1 > limit:
            raise jh2.exceptions.TooManyStreamsError(f"Max outbound streams is {limit}")
        self.state_machine.process_input(_SEND_HEADERS)
        stream = self._begin_new_stream(stream_id, jh2.connection.AllowedStreamIDs.ODD)
        stream.state_machine.process_input(_STREAM_SEND_HEADERS)
        if end_stream:
            stream.state_machine.process_input(_STREAM_SEND_END_STREAM)
        stream.request_method = headers[0][1]
        block = self.encoder.encode(headers)
        size = self.max_outbound_frame_size
        out = self._data_to_send
        if len(block) <= size:
            flags = _END_HEADERS | (_END_STREAM if end_stream else 0)
            out += _frame_head(len(block), _HEADERS, flags, stream_id)
            out += block
            return
        for at in range(0, len(block), size):
            part = block[at : at + size]
            last = at + size >= len(block)
            kind = _HEADERS if at == 0 else _CONTINUATION
            flags = (_END_HEADERS if last else 0) | (_END_STREAM if end_stream and at == 0 else 0)
            out += _frame_head(len(part), kind, flags, stream_id)
            out += part

    def receive_response(self, stream: Any, block: bytes, flags: int) -> list[Any]:
        """A HEADERS frame (one, with END_HEADERS, unpadded) on one of our streams:
        what jh2 does with it, without parsing it into a frame object."""
        try:
            decoded = self.decoder.decode(block, raw=True)
        except Exception as exc:  # the HPACK decoder's errors
            raise jh2.exceptions.ProtocolError(f"bad header block: {exc}") from exc
        events = self.state_machine.process_input(_RECV_HEADERS)
        headers = [(h[0], h[1]) for h in decoded]
        _, stream_events = stream.receive_headers(headers, bool(flags & _END_STREAM), None)
        return [*events, *stream_events]

    def send_body(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        """``send_data`` without its frame objects; the caller keeps ``data`` within the
        flow-control window and the frame size (``_Connection._send_body``)."""
        self.state_machine.process_input(_SEND_DATA)
        stream = self.streams[stream_id]
        stream.state_machine.process_input(_STREAM_SEND_DATA)
        if end_stream:
            stream.state_machine.process_input(_STREAM_SEND_END_STREAM)
        stream.outbound_flow_control_window -= len(data)
        self.outbound_flow_control_window -= len(data)
        out = self._data_to_send
        out += _frame_head(len(data), _DATA, _END_STREAM if end_stream else 0, stream_id)
        out += data

    def _receive_goaway_frame(self, frame: Any) -> tuple[list[Any], list[Any]]:
        event = jh2.events.ConnectionTerminated()
        event.error_code = jh2.errors._error_code_from_int(frame.error_code)
        event.last_stream_id = frame.last_stream_id
        event.additional_data = frame.additional_data or None
        return [], [event]


class _Connection(asyncio.Protocol):
    """One HTTP/2 connection: its streams, the server's stream limit, its end."""

    def __init__(self, pool: Client, origin: str, authority: str) -> None:
        self.pool, self.origin, self.authority = pool, origin, authority
        self.authority_bytes = authority.encode()
        self.loop = asyncio.get_running_loop()
        config = jh2.config.H2Configuration(
            client_side=True,
            header_encoding=None,
            # The headers are ours, built by the gateways; checking each one again costs
            # more than the rest of the request.
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
            validate_inbound_headers=False,
        )
        self.h2 = _H2Connection(config=config)
        self.h2.local_settings = jh2.settings.Settings(
            client=True,
            initial_values={
                jh2.settings.SettingCodes.ENABLE_PUSH: 0,
                jh2.settings.SettingCodes.INITIAL_WINDOW_SIZE: _WINDOW,
            },
        )
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, _Stream] = {}
        self.blocked: set[int] = set()  # streams whose body waits for window
        self.waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        #: No new streams: GOAWAY received, a request timed out, or the connection ended.
        self.retired = False
        self.lost: str | None = None
        self.goaway: str | None = None
        self.last_heard = self.loop.time()
        self._pong: asyncio.Future[bool] | None = None
        #: Set once the server's first SETTINGS (its stream limit) are in.
        self.settled: asyncio.Future[None] = self.loop.create_future()
        self._flush_soon = False
        #: Bytes received and not yet a whole frame.
        self._inbox = bytearray()
        #: A header block handed to jh2 waits for its CONTINUATION frames.
        self._continuing = False

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is None or ssl_object.selected_alpn_protocol() != "h2":
            return  # not HTTP/2 (``Client._open`` decides): not a byte of it is written
        self.h2.initiate_connection()
        self.h2.increment_flow_control_window(_WINDOW)
        self._flush()

    def data_received(self, data: bytes) -> None:
        """Frames in: a response's HEADERS (one frame, END_HEADERS) on a stream of ours
        and a RST_STREAM of a stream already answered, the frames of every request,
        are taken here; every other frame goes through jh2's state machine as it comes.
        """
        self.last_heard = self.loop.time()
        buf = self._inbox
        buf += data
        at, end = 0, len(buf)
        h2 = self.h2
        try:
            while end - at >= 9:
                length = int.from_bytes(buf[at : at + 3], "big")
                if length > h2.max_inbound_frame_size:
                    self._on_events(h2.receive_data(bytes(buf[at:])))  # jh2 refuses it
                    at = end
                    break
                stop = at + 9 + length
                if stop > end:
                    break
                kind, flags = buf[at + 3], buf[at + 4]
                stream_id = int.from_bytes(buf[at + 5 : at + 9], "big") & 0x7FFFFFFF
                if not self._continuing:
                    if kind == _HEADERS and flags & ~_END_STREAM == _END_HEADERS:
                        stream = h2.streams.get(stream_id)
                        if stream is not None and stream_id in self.streams:
                            self._on_events(
                                h2.receive_response(stream, bytes(buf[at + 9 : stop]), flags)
                            )
                            at = stop
                            continue
                    elif kind == _RST_STREAM and stream_id not in self.streams:
                        stream = h2.streams.get(stream_id)
                        if stream is not None and stream.closed and length == 4:
                            at = stop  # a stream already answered and closed: nothing to do
                            continue
                if kind in (_HEADERS, _PUSH_PROMISE, _CONTINUATION):
                    self._continuing = not flags & _END_HEADERS
                self._on_events(h2.receive_data(bytes(buf[at:stop])))
                at = stop
        except jh2.exceptions.ProtocolError as exc:
            del buf[:]
            self._flush()
            self._close(f"HTTP/2 protocol error from the gateway: {exc}")
            return
        del buf[:at]
        self._flush()

    def _on_events(self, events: list[Any]) -> None:
        for event in events:
            if isinstance(event, jh2.events.ResponseReceived):
                self._on_headers(event.stream_id, event.headers)
            elif isinstance(event, jh2.events.DataReceived):
                stream = self.streams.get(event.stream_id)
                if stream is not None:
                    stream.body += event.data
                if event.flow_controlled_length:
                    self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, jh2.events.StreamEnded):
                self._on_end(event.stream_id)
            elif isinstance(event, jh2.events.StreamReset):
                self._on_reset(event.stream_id, event.error_code)
            elif isinstance(event, jh2.events.RemoteSettingsChanged):
                if not self.settled.done():
                    self.settled.set_result(None)
                self._wake()
            elif isinstance(event, jh2.events.WindowUpdated):
                self._resume_bodies()
            elif isinstance(event, jh2.events.ConnectionTerminated):
                self._on_goaway(event.last_stream_id, event.error_code)
            elif isinstance(event, jh2.events.PingAckReceived):
                self._answer_ping(True)

    def connection_lost(self, exc: Exception | None) -> None:
        reason = self.goaway or (f"connection lost: {exc}" if exc else "the gateway hung up")
        self._close(reason)

    # requests

    def idle(self) -> bool:
        """Nothing heard for ``IDLE_PING_AFTER`` seconds and nothing in flight."""
        return not self.streams and self.loop.time() - self.last_heard > IDLE_PING_AFTER

    async def alive(self, within: float) -> bool:
        """Whether the server answers a PING within ``within`` seconds."""
        if self._pong is None:
            self._pong = self.loop.create_future()
            self.h2.ping(b"pushtrak")
            self._flush()
            self.loop.call_later(within, self._answer_ping, False)
        return await asyncio.shield(self._pong)

    def _answer_ping(self, answered: bool) -> None:
        pong, self._pong = self._pong, None
        if pong is not None and not pong.done():
            pong.set_result(answered)

    def has_room(self) -> bool:
        limit: int = self.h2.remote_settings.max_concurrent_streams
        return len(self.streams) < limit

    async def request(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes, attempt: _Attempt
    ) -> Response:
        """One request on this connection; ``_NotProcessed`` when it should go on another."""
        while self.waiters or not self.has_room():
            if self.retired:
                raise _NotProcessed
            waiter = self.loop.create_future()
            self.waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter in self.waiters:
                    self.waiters.remove(waiter)
                elif waiter.done() and not waiter.cancelled():
                    self._wake()  # pass the free stream on
                self.retire()  # the deadline passed waiting for a stream: replace the connection
                raise
            if self.has_room() and not self.retired:
                break
        if self.retired:
            raise _NotProcessed
        if _draining():  # a free stream came, but the sender stops: nothing more is written
            self._wake()  # the stream goes to the next request waiting, if any
            _check_drain()
        try:
            stream_id = self.h2.get_next_available_stream_id()
        except jh2.exceptions.NoAvailableStreamIDError:
            self.retire()  # 2**30 requests on one connection: time for a new one
            raise _NotProcessed from None
        header_list = [
            (b":method", method.encode(), False),
            (b":scheme", b"https", False),
            (b":authority", self.authority_bytes, False),
            (b":path", path.encode(), False),
        ]
        header_list += [(k.encode(), v.encode(), False) for k, v in headers.items()]
        self.h2.outbound = len(self.streams)
        try:
            self.h2.send_request(stream_id, header_list, end_stream=not body)
        except jh2.exceptions.TooManyStreamsError:
            raise _NotProcessed from None
        stream = _Stream(self.loop.create_future(), attempt, body)
        self.streams[stream_id] = stream
        attempt.written = True
        if body:
            self._send_body(stream_id, stream)
        self._schedule_flush()
        try:
            return await stream.future
        except asyncio.CancelledError:
            if self.streams.pop(stream_id, None) is not None:
                self.blocked.discard(stream_id)
                self._reset(stream_id, jh2.errors.ErrorCodes.CANCEL)
                self._wake()
            self.retire()  # no answer in time: no new requests on this connection
            raise

    def retire(self) -> None:
        """Take no new requests; close once the streams in flight have ended."""
        self.retired = True
        self.pool._forget(self)
        for waiter in self.waiters:
            if not waiter.done():
                waiter.set_result(None)
        self.waiters.clear()
        if not self.streams and self.transport is not None and not self.transport.is_closing():
            if self.goaway is None:
                self.h2.close_connection()
                self._flush()
            self.transport.close()

    def abort(self) -> None:
        self._close("the client was closed")
        if self.transport is not None:
            self.transport.abort()

    # events

    def _on_headers(self, stream_id: int, headers: list[tuple[bytes, bytes]]) -> None:
        stream = self.streams.get(stream_id)
        if stream is None:
            return
        for name, value in headers:
            if name == b":status":
                stream.status = int(value)
            elif not name.startswith(b":"):
                stream.headers[name.decode("latin-1")] = value.decode("latin-1")

    def _on_end(self, stream_id: int) -> None:
        stream = self.streams.pop(stream_id, None)
        if stream is None:
            return
        if stream.pending:  # answered before the whole body was sent: close our side too
            self.blocked.discard(stream_id)
            self._reset(stream_id, jh2.errors.ErrorCodes.NO_ERROR)
        if not stream.future.done():
            stream.future.set_result(Response(stream.status, stream.headers, bytes(stream.body)))
        self._stream_done()

    def _on_reset(self, stream_id: int, error_code: int | None) -> None:
        stream = self.streams.pop(stream_id, None)
        if stream is None:
            return
        self.blocked.discard(stream_id)
        if not stream.future.done():
            if error_code == jh2.errors.ErrorCodes.REFUSED_STREAM:
                stream.attempt.written = False
                stream.future.set_exception(_NotProcessed())
            else:
                name = getattr(error_code, "name", error_code)
                stream.future.set_exception(
                    ConnectionLost(f"the gateway reset the stream ({name})", may_have_reached=True)
                )
        self._stream_done()

    def _on_goaway(self, last_stream_id: int, error_code: int) -> None:
        name = getattr(error_code, "name", error_code)
        self.goaway = f"the gateway closed the connection (HTTP/2 GOAWAY, {name})"
        for stream_id in [s for s in self.streams if s > last_stream_id]:
            # RFC 9113 §6.8: never processed, so safe to send on another connection.
            stream = self.streams.pop(stream_id)
            self.blocked.discard(stream_id)
            stream.attempt.written = False
            if not stream.future.done():
                stream.future.set_exception(_NotProcessed())
        self.retire()

    def _stream_done(self) -> None:
        if self.retired:
            if not self.streams:
                self.retire()
        else:
            self._wake()

    def _wake(self) -> None:
        room = self.h2.remote_settings.max_concurrent_streams - len(self.streams)
        while room > 0 and self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                room -= 1

    def _close(self, reason: str) -> None:
        """The connection is gone: every stream still open ends without an answer."""
        if self.lost is not None:
            return
        self.lost = reason
        self._answer_ping(False)
        if not self.settled.done():
            self.settled.set_result(None)
        streams, self.streams = self.streams, {}
        self.blocked.clear()
        for stream in streams.values():
            if not stream.future.done():
                stream.future.set_exception(
                    ConnectionLost(reason, may_have_reached=stream.attempt.written)
                )
        self.retire()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    # writing

    def _send_body(self, stream_id: int, stream: _Stream) -> None:
        while stream.pending:
            window = min(
                self.h2.local_flow_control_window(stream_id), self.h2.max_outbound_frame_size
            )
            if window <= 0:
                self.blocked.add(stream_id)
                return
            chunk, stream.pending = stream.pending[:window], stream.pending[window:]
            self.h2.send_body(stream_id, chunk, end_stream=not stream.pending)
        self.blocked.discard(stream_id)

    def _resume_bodies(self) -> None:
        for stream_id in list(self.blocked):
            stream = self.streams.get(stream_id)
            if stream is None:
                self.blocked.discard(stream_id)
            else:
                self._send_body(stream_id, stream)

    def _reset(self, stream_id: int, code: jh2.errors.ErrorCodes) -> None:
        try:
            self.h2.reset_stream(stream_id, code)
        except jh2.exceptions.ProtocolError:
            return  # already closed on the wire
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if not self._flush_soon:
            self._flush_soon = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_soon = False
        data = self.h2.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)


class Client:
    """HTTP/2 over TLS to any number of origins, one kept-open connection each.

    ``timeout`` is the hard deadline of every request, from the call until the
    whole answer is in (waiting for a free stream and connecting included).
    ``ca_file`` replaces the trusted roots (tests, private CAs). ``connect_to(host,
    port)``, when given, names the address each new connection to ``host`` goes to
    (TLS still checks ``host``'s certificate), or raises ``ConnectError``: where a
    tenant names the host (Web Push), the address checked is the one connected to.
    """

    def __init__(
        self,
        *,
        ca_file: str | None = None,
        timeout: float = 30.0,
        http1_fallback: bool = False,
        http1_connections: int = HTTP1_CONNECTIONS,
        connect_to: ConnectTo | None = None,
    ) -> None:
        self._ssl = _tls_context(ca_file, ["h2", "http/1.1"] if http1_fallback else ["h2"])
        self._ssl_http1 = _tls_context(ca_file, ["http/1.1"]) if http1_fallback else None
        self.timeout = timeout
        self._connect_timeout = min(timeout, 10.0)
        self._active: dict[str, _Connection] = {}
        self._opening: dict[str, asyncio.Task[_Connection]] = {}
        self._all: set[_Connection] = set()
        self._closed = False
        self._http1_connections = max(1, http1_connections)
        self._connect_to = connect_to
        #: origin -> (monotonic time until which it is spoken to over HTTP/1.1, its pool)
        self._http1: dict[str, tuple[float, _Http1Pool]] = {}

    def speaks_http1(self, origin: str) -> bool:
        """Whether requests to ``origin`` (``https://host[:port]``) go over HTTP/1.1 now."""
        found = self._http1.get(origin.lower())
        return found is not None and found[0] > time.monotonic()

    async def post(
        self,
        url: str,
        *,
        headers: Mapping[str, str],
        content: bytes,
    ) -> Response:
        """POST ``content`` to the absolute ``url``; raises ``TransportError`` without an answer."""
        origin, path = _split(url)
        attempt = _Attempt()
        try:
            async with asyncio.timeout(self.timeout):
                if self.speaks_http1(origin):  # (the pool checks the drain once it has a slot)
                    return await self._http1[origin][1].post(path, headers, content, attempt)
                for _ in range(MAX_REFUSALS):
                    _check_drain()  # (a refused request too: it was not processed)
                    try:
                        connection = await self._connection(origin)
                    except _Http1Only:
                        return await self._http1_pool(origin).post(path, headers, content, attempt)
                    try:
                        return await connection.request("POST", path, headers, content, attempt)
                    except _NotProcessed:
                        continue
        except TimeoutError:
            if attempt.written:
                raise RequestTimeout(
                    "no answer before the deadline", may_have_reached=True
                ) from None
            raise RequestTimeout("the gateway took no request before the deadline") from None
        raise ConnectionLost(f"the gateway refused the request unprocessed {MAX_REFUSALS} times")

    def _http1_pool(self, origin: str) -> _Http1Pool:
        """The origin's HTTP/1.1 connections, from now on for ``HTTP1_RECHECK`` seconds."""
        found = self._http1.get(origin)
        if found is not None:
            pool = found[1]  # still HTTP/1.1 after a recheck: its connections go on
        else:
            assert self._ssl_http1 is not None
            pool = _Http1Pool(
                origin,
                self._ssl_http1,
                self._connect_timeout,
                self._http1_connections,
                self._connect_to,
            )
        self._http1[origin] = (time.monotonic() + HTTP1_RECHECK, pool)
        return pool

    async def aclose(self) -> None:
        self._closed = True
        for _until, pool in self._http1.values():
            pool.close()
        self._http1.clear()
        for task in list(self._opening.values()):
            task.cancel()
        for connection in list(self._all):
            connection.abort()
        self._active.clear()
        self._all.clear()
        await asyncio.sleep(0)  # let the transports close

    async def _connection(self, origin: str) -> _Connection:
        connection = self._active.get(origin)
        if connection is not None and not connection.retired:
            if not connection.idle():
                return connection
            if await connection.alive(min(5.0, self.timeout / 4)):
                return connection
            connection.abort()  # silently gone: nothing was written to it
            connection = self._active.get(origin)  # another request may have opened one
            if connection is not None and not connection.retired:
                return connection
        if self._closed:
            raise ConnectError("the client is closed")
        task = self._opening.get(origin)
        if task is None:
            task = asyncio.create_task(self._open(origin))
            self._opening[origin] = task
            task.add_done_callback(lambda done: self._opened(origin, done))
        return await asyncio.shield(task)

    async def _open(self, origin: str) -> _Connection:
        scheme, _, authority = origin.partition("://")
        host, port = _host_port(authority, 443 if scheme == "https" else 80)
        if scheme != "https":
            raise ConnectError(f"{origin}: only https is supported")
        loop = asyncio.get_running_loop()
        connection: _Connection | None = None
        try:
            async with asyncio.timeout(self._connect_timeout):
                address = host if self._connect_to is None else await self._connect_to(host, port)
                transport, connection = await loop.create_connection(
                    lambda: _Connection(self, origin, authority),
                    address,
                    port,
                    ssl=self._ssl,
                    server_hostname=host,
                )
                ssl_object = transport.get_extra_info("ssl_object")
                if ssl_object is None or ssl_object.selected_alpn_protocol() != "h2":
                    if self._ssl_http1 is not None:
                        raise _Http1Only
                    raise ConnectError(f"{origin} does not speak HTTP/2")
                # The server's SETTINGS first: its stream limit may be lower than the default.
                await connection.settled
                if connection.lost is not None:
                    raise ConnectError(f"{origin}: {connection.lost}")
        except BaseException as exc:
            if connection is not None:
                connection.abort()
            if isinstance(exc, TimeoutError):
                raise ConnectError(f"connecting to {origin} timed out") from None
            if isinstance(exc, OSError | ssl.SSLError):
                raise ConnectError(f"cannot connect to {origin}: {exc}") from exc
            raise
        self._all.add(connection)
        if self._closed:
            connection.abort()
            raise ConnectError("the client is closed")
        self._active[origin] = connection
        return connection

    def _opened(self, origin: str, task: asyncio.Task[_Connection]) -> None:
        self._opening.pop(origin, None)
        if not task.cancelled():
            task.exception()  # retrieved here: the requests waiting for it got it too

    def _forget(self, connection: _Connection) -> None:
        if self._active.get(connection.origin) is connection:
            del self._active[connection.origin]
        if connection.lost is not None:
            self._all.discard(connection)


def _tls_context(ca_file: str | None, protocols: list[str]) -> ssl.SSLContext:
    if ca_file:
        try:
            context = ssl.create_default_context(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"ca_file {ca_file!r} cannot be loaded: {exc}") from exc
    else:
        context = ssl.create_default_context()
    context.set_alpn_protocols(protocols)
    return context


class _Http1Connection:
    """One HTTP/1.1 connection over TLS: one request at a time, kept alive between them."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.h11 = h11.Connection(h11.CLIENT)
        self.rested_at = time.monotonic()

    def reusable(self) -> bool:
        return (
            not self.writer.is_closing()
            and not self.reader.at_eof()
            and time.monotonic() - self.rested_at < HTTP1_KEEP_IDLE
        )

    async def post(
        self, authority: str, path: str, headers: Mapping[str, str], body: bytes, attempt: _Attempt
    ) -> tuple[Response, bool]:
        """The answer, and whether the connection may carry another request."""
        conn = self.h11
        request = h11.Request(
            method="POST",
            target=path,
            headers=[("host", authority), ("content-length", str(len(body))), *headers.items()],
        )
        self.writer.write(conn.send(request) + conn.send(h11.Data(data=body)))
        self.writer.write(conn.send(h11.EndOfMessage()))
        attempt.written = True
        status, answer, content = 0, dict[str, str](), bytearray()
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await self.reader.read(65536))
                elif isinstance(event, h11.Response):
                    status = event.status_code
                    answer = {k.decode("latin-1"): v.decode("latin-1") for k, v in event.headers}
                elif isinstance(event, h11.Data):
                    content += event.data
                elif isinstance(event, h11.EndOfMessage):
                    break
                elif isinstance(event, h11.ConnectionClosed):
                    raise ConnectionLost("the gateway hung up", may_have_reached=True)
        except NETWORK_ERRORS as exc:
            raise ConnectionLost(f"connection lost: {exc}", may_have_reached=True) from None
        keep = conn.our_state is h11.DONE and conn.their_state is h11.DONE
        if keep:
            conn.start_next_cycle()
            self.rested_at = time.monotonic()
        return Response(status, answer, bytes(content)), keep

    def close(self) -> None:
        self.writer.transport.abort()  # nothing more is owed on it: close the socket now


class _Http1Pool:
    """HTTP/1.1 to one origin: up to ``size`` connections, each one request at a time."""

    def __init__(
        self,
        origin: str,
        context: ssl.SSLContext,
        connect_timeout: float,
        size: int,
        connect_to: ConnectTo | None = None,
    ):
        self.origin, self.context, self.connect_timeout = origin, context, connect_timeout
        self.connect_to = connect_to
        self.authority = origin.partition("://")[2]
        self.slots = asyncio.Semaphore(size)
        self.resting: list[_Http1Connection] = []
        self.busy: set[_Http1Connection] = set()

    async def post(
        self, path: str, headers: Mapping[str, str], body: bytes, attempt: _Attempt
    ) -> Response:
        async with self.slots:
            _check_drain()
            connection = None
            while self.resting and connection is None:
                candidate = self.resting.pop()
                if candidate.reusable():
                    connection = candidate
                else:
                    candidate.close()
            if connection is None:
                connection = await self._open()
            self.busy.add(connection)
            keep = False
            try:
                response, keep = await connection.post(self.authority, path, headers, body, attempt)
            finally:
                self.busy.discard(connection)
                if keep:
                    self.resting.append(connection)
                else:  # a broken, closing or interrupted connection is never reused
                    connection.close()
            return response

    async def _open(self) -> _Http1Connection:
        host, port = _host_port(self.authority, 443)
        try:
            async with asyncio.timeout(self.connect_timeout):
                address = host if self.connect_to is None else await self.connect_to(host, port)
                reader, writer = await asyncio.open_connection(
                    address, port, ssl=self.context, server_hostname=host
                )
        except TimeoutError:
            raise ConnectError(f"connecting to {self.origin} timed out") from None
        except (OSError, ssl.SSLError) as exc:
            raise ConnectError(f"cannot connect to {self.origin}: {exc}") from exc
        return _Http1Connection(reader, writer)

    def close(self) -> None:
        for connection in [*self.resting, *self.busy]:
            connection.close()
        self.resting.clear()


def _split(url: str) -> tuple[str, str]:
    """(origin, path with query) of an absolute URL."""
    scheme_end = url.find("://")
    if scheme_end < 0:
        raise ValueError(f"not an absolute URL: {url!r}")
    path_start = url.find("/", scheme_end + 3)
    if path_start < 0:
        return url.lower(), "/"
    return url[:path_start].lower(), url[path_start:]


def _host_port(authority: str, default: int) -> tuple[str, int]:
    if authority.startswith("["):  # [IPv6]:port
        host, _, rest = authority[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default
    host, _, port = authority.rpartition(":")
    if host and port.isdigit():
        return host, int(port)
    return authority, default


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date), or None."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


def json_body(response: Response) -> dict[str, Any]:
    """The response body as a JSON object, or {} when it is empty or not one."""
    try:
        body = _json_decoder.decode(response.content)
    except msgspec.DecodeError:
        return {}
    return body if isinstance(body, dict) else {}


def positive_ttl(options: Mapping[str, Any]) -> int | None:
    """The ``ttl`` option in whole seconds (never negative), or None when absent or unusable."""
    ttl = options.get("ttl")
    if ttl is None or isinstance(ttl, bool):
        return None
    try:
        return max(0, int(float(ttl)))
    except (TypeError, ValueError, OverflowError):
        return None


def load_p256_key(pem: str, what: str) -> ec.EllipticCurvePrivateKey:
    """An EC P-256 private key from PEM text (PKCS#8, as in an APNs .p8 file, or SEC1)."""
    try:
        key = load_pem_private_key(pem.strip().encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{what} is not a PEM private key without a password") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ValueError(f"{what} must be an EC P-256 (prime256v1) private key")
    return key
