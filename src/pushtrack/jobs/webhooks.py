"""The ``webhook`` job: one per endpoint, POSTing its application's trail in order.

Each run reads the trail after the endpoint's cursor (``store/stream.py``: never past
a row a writer may still commit before it), POSTs up to ``webhook_batch`` events at a
time (waiting ``webhook_linger_ms`` for a batch to fill), signed, and moves the cursor
once the endpoint answered 2xx. A failure (no answer, a timeout, any other status)
leaves the cursor where it is and hands the job back until the next try; the same
events are sent again, so every event arrives at least once, in order. A worker killed
mid-POST loses nothing: the next run sends from the cursor again.

Endpoints run in their own pool of the worker (``webhook_concurrency``), apart from
sending and exports: a slow endpoint holds only its own slot, and the trail is only
read, so delivery to endpoints never slows what writes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import secrets
import ssl
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import h11
import msgspec

from pushtrack import metrics
from pushtrack.config import Settings
from pushtrack.delivery import outbound
from pushtrack.domain.jobs import WebhookParams
from pushtrack.domain.status import Status
from pushtrack.jobs.runner import Done, Handler, JobResult, Later
from pushtrack.sealing import Sealer, SealingError, open_text
from pushtrack.store import Store
from pushtrack.store.jobs import Job
from pushtrack.store.stream import Filter, Page, StreamRow, encode
from pushtrack.store.trail import delivery_event
from pushtrack.store.webhooks import KIND, Webhook

log = logging.getLogger("pushtrack.webhooks")

__all__ = ["KIND", "Poster", "body_of", "handler", "sign"]

#: Seconds one run of an endpoint's job keeps sending before it hands the job back
#: (so endpoints take turns when there are more than the pool has slots).
SLICE_SECONDS = 15.0
#: Bytes of an endpoint's answer read at most (the rest is not wanted).
MAX_ANSWER = 64 * 1024
USER_AGENT = "pushtrack-webhooks/1"


def sign(secret: str, body: bytes, t: int) -> str:
    """The ``Pushtrack-Signature`` header: ``t=<unix seconds>,v1=<hex HMAC-SHA256 of
    "<t>.<body>" under the endpoint's secret>``."""
    mac = hmac.new(secret.encode(), str(t).encode() + b"." + body, hashlib.sha256)
    return f"t={t},v1={mac.hexdigest()}"


def event_of(item: StreamRow) -> dict[str, Any]:
    """One event as endpoints (and the stream) receive it: a stable id, then the trail's
    fields (``store/trail.py``)."""
    return {"id": encode(item.position), **msgspec.structs.asdict(delivery_event(item.row))}


def body_of(items: Sequence[StreamRow]) -> bytes:
    """``{"events": [...]}``, each event ``event_of``'s, encoded without building dicts."""
    parts = [
        b'{"id":'
        + msgspec.json.encode(encode(i.position))
        + b","
        + msgspec.json.encode(delivery_event(i.row))[1:]
        for i in items
    ]
    return b'{"events":[' + b",".join(parts) + b"]}"


class PostError(Exception):
    """A POST got no 2xx answer; the message says what happened instead."""


class _Conn:
    __slots__ = ("h11", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.h11 = h11.Connection(h11.CLIENT)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class Poster:
    """POSTs to webhook endpoints over HTTP/1.1, one kept-open connection per endpoint.

    Connections go to the address that was checked against the outbound rule
    (``delivery/outbound.py``), never to a second lookup's answer.
    """

    def __init__(self, allow: Sequence[str], timeout: float) -> None:
        self.allow = tuple(allow)
        self.timeout = timeout
        self._conns: dict[tuple[str, str, int], _Conn] = {}
        self._tls = ssl.create_default_context()

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        """The endpoint's status; ``outbound.Refused`` or ``PostError`` if none."""
        scheme, host, port = outbound.check_webhook_url(url, self.allow)
        parts = urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        key = (scheme, host, port)
        default = 443 if scheme == "https" else 80
        head = [
            ("Host", host if port == default else f"{host}:{port}"),
            ("User-Agent", USER_AGENT),
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            *headers.items(),
        ]
        for fresh in (False, True):
            conn = None if fresh else self._conns.pop(key, None)
            reused = conn is not None
            try:
                async with asyncio.timeout(self.timeout):
                    if conn is None:
                        conn = await self._open(scheme, host, port)
                    out = conn.h11
                    conn.writer.write(
                        out.send(h11.Request(method="POST", target=target, headers=head))
                        + out.send(h11.Data(data=body))
                        + out.send(h11.EndOfMessage())
                    )
                    await conn.writer.drain()
                    status, keep = await _answer(conn)
            except outbound.Refused:
                raise
            except asyncio.CancelledError:
                if conn is not None:
                    conn.close()  # stopped mid-request: the connection is not reusable
                raise
            except (OSError, h11.ProtocolError, TimeoutError) as exc:
                if conn is not None:
                    conn.close()
                if reused and not isinstance(exc, TimeoutError):
                    continue  # the kept connection had been closed: once more, afresh
                what = "timed out" if isinstance(exc, TimeoutError) else str(exc) or repr(exc)
                raise PostError(f"no answer: {what}") from None
            if keep:
                self._conns[key] = conn
            else:
                conn.close()
            return status
        raise PostError("no answer")  # pragma: no cover - the loop returns or raises

    async def _open(self, scheme: str, host: str, port: int) -> _Conn:
        address = await outbound.webhook_address(host, port, self.allow)
        if scheme == "https":
            reader, writer = await asyncio.open_connection(
                address, port, ssl=self._tls, server_hostname=host
            )
        else:
            reader, writer = await asyncio.open_connection(address, port)
        return _Conn(reader, writer)

    async def aclose(self) -> None:
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()


async def _answer(conn: _Conn) -> tuple[int, bool]:
    """Read one HTTP/1.1 answer (h11): its status, and whether the connection may be
    kept for the next request (an answer over ``MAX_ANSWER`` bytes is not read whole,
    so its connection is not)."""
    status, read = 0, 0
    while True:
        event = conn.h11.next_event()
        if event is h11.NEED_DATA:
            conn.h11.receive_data(await conn.reader.read(65536))  # b"": the peer closed
        elif isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, h11.Data):
            read += len(event.data)
            if read > MAX_ANSWER:
                return status, False
        elif isinstance(event, h11.EndOfMessage):
            break
        elif isinstance(event, h11.ConnectionClosed):
            raise ConnectionResetError("the endpoint closed the connection")
    keep = conn.h11.our_state is h11.DONE and conn.h11.their_state is h11.DONE
    if keep:
        conn.h11.start_next_cycle()
    return status, keep


def retry_delay(settings: Settings, hook: Webhook, now: int) -> float:
    """Seconds until the next try: as long as the endpoint has been failing, at least
    ``webhook_backoff_seconds``, at most ``webhook_max_backoff_seconds`` (so the waits
    double)."""
    failing_for = (now - (hook.failing_since or now)) / 1e6
    return min(
        settings.webhook_max_backoff_seconds, max(settings.webhook_backoff_seconds, failing_for)
    )


def seal_secret(settings: Settings, secret: str) -> str:
    """A signing secret sealed with the service's first key (``sealing.py``), making the
    key file of a SQLite database that has none; ``SealingError`` if there is no key."""
    try:
        sealer = Sealer.load(settings, create=True)
    except OSError as exc:
        raise SealingError(f"cannot make the secret key file: {exc}") from None
    if sealer is None:
        raise SealingError(
            "webhook secrets are stored encrypted: set PUSHTRACK_SECRET_KEY (or"
            " secret_key_file) to a key from `pushtrack secrets new-key`, the same for every"
            " process"
        )
    return sealer.seal_text(secret)


class Sender:
    """Runs endpoints' jobs; one per worker, its connections shared by them."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.poster = Poster(
            outbound.parse_allow(settings.outbound_allow), settings.webhook_timeout_seconds
        )
        self._sealer: Sealer | None = None
        #: opened secrets by their sealed text (one decryption per endpoint, not per POST)
        self._opened: dict[str, str] = {}

    def secret_of(self, hook: Webhook) -> str:
        """The endpoint's signing secret, opened if stored sealed; ``SealingError`` if no
        key of this service opens it. The keys are read again when the ones read before
        do not open it (a key file made or a key added since this process started)."""
        if not hook.secret_sealed:
            return hook.secret
        found = self._opened.get(hook.secret)
        if found is not None:
            return found
        opened: str | None = None
        if self._sealer is not None:
            with contextlib.suppress(SealingError):
                opened = self._sealer.open_value(hook.secret, "secret")
        if opened is None:
            self._sealer = Sealer.load(self.settings)
            opened = open_text(hook.secret, "secret", self._sealer)
        if len(self._opened) > 10_000:
            self._opened.clear()
        self._opened[hook.secret] = opened
        return opened

    async def post(self, hook: Webhook, body: bytes) -> None:
        """POST ``body`` signed with the endpoint's secret; ``PostError``,
        ``outbound.Refused`` or ``SealingError`` unless it answers 2xx."""
        signature = sign(self.secret_of(hook), body, int(time.time()))
        status = await self.poster.post(hook.url, body, {"Pushtrack-Signature": signature})
        if not 200 <= status < 300:
            raise PostError(f"answered {status}")

    async def handle(self, job: Job) -> JobResult:
        hook = await self.store.webhooks.get(job.params_as(WebhookParams).webhook_id)
        if hook is None:
            return Done()  # removed
        s = self.settings
        loop = asyncio.get_running_loop()
        until = loop.time() + SLICE_SECONDS
        wanted = Filter(app_ids=frozenset({hook.app_id}), statuses=_statuses(hook))
        ahead: asyncio.Task[Page] | None = None
        try:
            while loop.time() < until:
                if ahead is not None:
                    page, ahead = await ahead, None
                else:
                    page = await self.store.stream.read(hook.cursor, wanted, s.webhook_batch)
                if not page.items:
                    if not page.more:
                        # everything there is for now (the few rows this endpoint does
                        # not want are looked at again: no write per poll)
                        return Later(self.store.clock() + s.webhook_poll_ms * 1000)
                    # a full scan of rows it does not want: the cursor moves past, no POST
                    if await self.store.webhooks.advance(hook.id, hook.cursor, page.reached, 0):
                        hook = msgspec.structs.replace(hook, cursor=page.reached)
                        continue
                else:
                    if len(page.items) < s.webhook_batch and s.webhook_linger_ms:
                        await asyncio.sleep(s.webhook_linger_ms / 1000)
                        page = await self.store.stream.read(hook.cursor, wanted, s.webhook_batch)
                    # the next batch is read while this one is POSTed
                    ahead = asyncio.create_task(
                        self.store.stream.read(page.reached, wanted, s.webhook_batch)
                    )
                    try:
                        await self.post(hook, body_of(page.items))
                    except (PostError, outbound.Refused, SealingError) as exc:
                        metrics.WEBHOOK_POSTS.labels("failed").inc()
                        failed = await self.store.webhooks.record_failure(
                            hook.id, str(exc), int(s.webhook_failing_seconds * 1e6)
                        )
                        if failed is None:
                            return Done()
                        delay = retry_delay(s, failed, self.store.clock())
                        log.warning("webhook %s: %s; again in %.1fs", hook.url, exc, delay)
                        return Later(self.store.clock() + int(delay * 1e6))
                    metrics.WEBHOOK_POSTS.labels("ok").inc()
                    metrics.WEBHOOK_EVENTS.inc(len(page.items))
                    count = len(page.items)
                    if await self.store.webhooks.advance(hook.id, hook.cursor, page.reached, count):
                        hook = msgspec.structs.replace(
                            hook, cursor=page.reached, failing_since=None
                        )
                        continue
                if ahead is not None:
                    ahead.cancel()
                    ahead = None
                fresh = await self.store.webhooks.get(hook.id)
                if fresh is None:
                    return Done()  # removed meanwhile
                log.info("webhook %s: cursor moved meanwhile (replay); going on from it", hook.url)
                hook = fresh
        finally:
            if ahead is not None:
                ahead.cancel()
                with contextlib.suppress(BaseException):
                    await ahead
        return Later(self.store.clock())

    async def aclose(self) -> None:
        await self.poster.aclose()


def _statuses(hook: Webhook) -> tuple[Status, ...] | None:
    return None if hook.statuses is None else tuple(Status(s) for s in hook.statuses)


def handler(settings: Settings, store: Store) -> tuple[Handler, Sender]:
    sender = Sender(settings, store)
    return sender.handle, sender


# -- what the API and the command line share -------------------------------------------

#: Status names an endpoint may ask for (``--status``); every status if none is named.
STATUS_NAMES = tuple(s.label for s in Status)


def new_secret() -> str:
    """A fresh signing secret."""
    return "whsec_" + secrets.token_urlsafe(32)


def parse_statuses(names: Sequence[str] | None) -> tuple[int, ...] | None:
    """Status names as numbers (None: every status); ValueError naming one not known."""
    if not names:
        return None
    out: list[int] = []
    for name in names:
        found = next((s for s in Status if s.label == name), None)
        if found is None:
            raise ValueError(f"unknown status {name!r} (one of {', '.join(STATUS_NAMES)})")
        if int(found) not in out:
            out.append(int(found))
    return tuple(out)


def status_names(hook: Webhook) -> list[str] | None:
    return None if hook.statuses is None else [Status(s).label for s in hook.statuses]


def check_url(settings: Settings, url: str) -> None:
    """``outbound.Refused`` if webhooks may not be sent to ``url``."""
    outbound.check_webhook_url(url, outbound.parse_allow(settings.outbound_allow))


def test_body() -> bytes:
    """A batch of one ``test`` event (an id of its own; nothing of the trail)."""
    event = {
        "id": f"test-{secrets.token_hex(8)}",
        "status": "test",
        "tracking_code": "",
        "message_code": "",
        "application_code": "",
        "hwid": "",
        "user_id": None,
        "platform": "",
        "description": "A test event",
        "timestamp": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "gateway_id": None,
        "attempt": 0,
        "failure_class": None,
    }
    return msgspec.json.encode({"events": [event]})


async def send_test(settings: Settings, store: Store, hook: Webhook) -> str | None:
    """POST a test event to the endpoint now; None if it answered 2xx, else what happened."""
    sender = Sender(settings, store)
    try:
        await sender.post(hook, test_body())
    except (PostError, outbound.Refused, SealingError) as exc:
        return str(exc)
    finally:
        await sender.aclose()
    return None
