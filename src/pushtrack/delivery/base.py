"""The small interface every gateway implements, shaped like an HTTP transport.

A gateway takes a batch of ready-to-send notifications and answers one
``Outcome`` per notification, in the same order. It never raises for a
per-notification problem: a rejected token is an outcome, not an exception.
``GatewayError`` is for the gateway as a whole being unusable (bad
credentials, unreachable host after retries) and is translated into outcomes
by the caller.

``Gateway`` is the base class every gateway derives from, as an HTTP library's
transports derive from one: ``send``, ``aclose``, and use as an async context
manager (closed on exit). ``HttpGateway`` adds what the network gateways (APNs,
FCM, Web Push) share: one ``_http.Client`` set up from their settings, closed
with the gateway, and ``concurrency`` slots for requests in flight.

``map_transport_errors`` is the one place where a request that got no answer
(``_http.TransportError``, or a socket, TLS, timeout, h11 or h2 error that got past
the client) becomes ours: a notification's ``Outcome`` (RETRY when the request
cannot have reached the gateway; FAILED ``OutcomeUnknown``, never sent again,
when it may have), or a ``GatewayError`` for a request the whole batch needs.
Every network gateway sends through it.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Self

import msgspec

from pushtrack.delivery import _http
from pushtrack.domain.platforms import Platform


class Verdict(enum.Enum):
    DELIVERED = "delivered"  # the gateway accepted it for further delivery
    FAILED = "failed"  # permanent: do not try again
    RETRY = "retry"  # transient: try again later (backoff / Retry-After)
    #: The gateway refused the application's credentials (not this device): the
    #: delivery waits while the application's gateway for the platform is paused.
    CREDENTIALS = "credentials"


class Notification(msgspec.Struct, frozen=True):
    delivery_id: int
    tracking_code: str
    platform: Platform
    push_token: str
    payload: dict[str, Any]
    #: Gateway options from the message (``ttl`` seconds, ...).
    options: dict[str, Any] = msgspec.field(default_factory=dict)
    #: A browser subscription's keys ``(p256dh, auth)`` as the device registered them,
    #: when ``push_token`` holds only the subscription's endpoint (Web Push).
    web_keys: tuple[str, str] | None = None


class Outcome(msgspec.Struct, frozen=True):
    delivery_id: int
    verdict: Verdict
    #: What the event log says: the gateway's own reason, e.g. "BadDeviceToken".
    description: str
    #: The device's token is dead for good (APNs 410, FCM UNREGISTERED, Web Push 404/410).
    unsubscribe: bool = False
    #: When the gateway says the token stopped being valid (µs UTC; APNs 410's
    #: ``timestamp``): a device that registered a token after that stays subscribed.
    dead_since: int | None = None
    #: Seconds the gateway asked us to wait (Retry-After), for RETRY outcomes.
    retry_after: float | None = None
    #: The id the gateway gave the notification (apns-id, FCM message name).
    gateway_id: str | None = None
    #: Raw HTTP status and reason as received, kept for diagnostics.
    http_status: int | None = None
    reason: str | None = None


class GatewayError(Exception):
    """The gateway as a whole cannot be used (credentials, configuration, network)."""

    def __init__(self, message: str, *, retryable: bool = False, credentials: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable
        #: The gateway refused the application's credentials: pause, do not fail.
        self.credentials = credentials


class Gateway:
    """What the dispatcher sends through: one ``Outcome`` per notification, in order."""

    async def send(self, batch: Sequence[Notification]) -> list[Outcome]:
        raise NotImplementedError  # pragma: no cover

    async def aclose(self) -> None:
        """Let go of connections; the gateway sends nothing more."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class HttpGateway(Gateway):
    """A gateway that talks HTTP to its service through one ``_http.Client``.

    ``concurrency`` bounds the requests in flight (``_slots``); ``timeout`` is each
    request's hard deadline; ``ca_file`` replaces the trusted roots. With
    ``http1_fallback`` (Web Push) an origin whose TLS does not choose h2 is spoken to
    over HTTP/1.1, at most ``concurrency`` (and ``_http.HTTP1_CONNECTIONS``)
    connections to it. ``connect_to``: see ``_http.Client``.
    """

    def __init__(
        self,
        *,
        concurrency: int,
        timeout: float,
        ca_file: str | None = None,
        http1_fallback: bool = False,
        connect_to: _http.ConnectTo | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._slots = asyncio.Semaphore(concurrency)
        self._client = _http.Client(
            ca_file=ca_file,
            timeout=timeout,
            http1_fallback=http1_fallback,
            http1_connections=min(concurrency, _http.HTTP1_CONNECTIONS),
            connect_to=connect_to,
        )

    async def aclose(self) -> None:
        await self._client.aclose()


#: The reason of a notification whose request was never written because its sender
#: stopped (``_http.Drain``): the dispatcher records nothing for it.
NOT_SENT = "NotSent"


def transport_outcome(delivery_id: int, exc: _http.TransportError) -> Outcome:
    """The outcome of a request that got no answer.

    Not sent (or refused unprocessed): RETRY (reason ``NotSent`` when its sender
    stopped). Handed to the gateway without an answer: FAILED, reason
    ``OutcomeUnknown``, because sending it again could deliver it twice (docs/api.md
    §7.3).
    """
    detail = str(exc) or type(exc).__name__
    if exc.may_have_reached:
        return Outcome(
            delivery_id,
            Verdict.FAILED,
            f"Outcome unknown: the request may have reached the gateway but no answer came "
            f"({detail}); not sent again so that it is never delivered twice",
            reason="OutcomeUnknown",
        )
    if isinstance(exc, _http.NotSent):
        description = f"Not sent: {detail}; it goes with the next run"
        return Outcome(delivery_id, Verdict.RETRY, description, reason=NOT_SENT)
    if isinstance(exc, _http.RequestTimeout):
        description = f"Timeout talking to the gateway: {detail}"
        return Outcome(delivery_id, Verdict.RETRY, description, reason="Timeout")
    return Outcome(
        delivery_id,
        Verdict.RETRY,
        f"Connection error talking to the gateway: {detail}",
        reason="ConnectionError",
    )


class Unanswered:
    """The context manager ``map_transport_errors`` returns (see there)."""

    __slots__ = ("_outcome", "delivery_id", "what")

    def __init__(self, delivery_id: int | None, what: str) -> None:
        self.delivery_id, self.what = delivery_id, what
        self._outcome: Outcome | None = None

    @property
    def outcome(self) -> Outcome:
        """The outcome of the notification whose request got no answer."""
        assert self._outcome is not None, "read only after an error was mapped"
        return self._outcome

    def __enter__(self) -> Unanswered:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        if exc is None:
            return False
        error = _http.as_transport_error(exc)
        if error is None:
            return False  # not a transport error: ours to fix, raised as it is
        if self.delivery_id is None:
            if isinstance(error, _http.NotSent):
                return False  # the sender stops: the batch is not sent (the caller's to say)
            raise GatewayError(f"{self.what} unreachable: {error}", retryable=True) from exc
        self._outcome = transport_outcome(self.delivery_id, error)
        return True


def map_transport_errors(delivery_id: int | None, *, what: str = "the gateway") -> Unanswered:
    """Translate a request's transport errors, the one place they become ours.

    With a ``delivery_id`` (one notification's requests) the error is swallowed and
    ``.outcome`` holds the notification's outcome::

        with map_transport_errors(n.delivery_id) as unanswered:
            return outcome_of(n.delivery_id, await self._client.post(...))
        return unanswered.outcome

    Without (a request the whole batch needs, such as FCM's access token) it raises a
    retryable ``GatewayError`` saying ``what`` is unreachable (``_http.NotSent`` passes
    through: nothing was sent). Any other exception passes through untouched.
    """
    return Unanswered(delivery_id, what)
