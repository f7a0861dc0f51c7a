"""The small interface every gateway implements, shaped like an HTTP transport.

A gateway takes a batch of ready-to-send notifications and answers one
``Outcome`` per notification, in the same order. It never raises for a
per-notification problem: a rejected token is an outcome, not an exception.
``GatewayError`` is for the gateway as a whole being unusable (bad
credentials, unreachable host after retries) and is translated into outcomes
by the caller.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any, Protocol

import msgspec

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


class Gateway(Protocol):
    async def send(self, batch: Sequence[Notification]) -> list[Outcome]: ...

    async def aclose(self) -> None: ...
