"""Apple Push Notification service: the HTTP/2 provider API with token (JWT) auth.

One ``_http.Client`` connection multiplexes a batch over HTTP/2 streams, at most
``concurrency`` at a time. The provider token is an ES256 JWT signed with the
team's .p8 key; APNs rejects one older than an hour, so it is re-signed every
50 minutes, and once more when APNs answers ``ExpiredProviderToken`` (but never
within 20 minutes of the last signing: APNs answers TooManyProviderTokenUpdates
to a connection whose token is updated more often). A refusal of the provider
token (``InvalidProviderToken``, ``MissingProviderToken``, ``ExpiredProviderToken``
that re-signing did not cure, ...) is a ``CREDENTIALS`` outcome: the dispatcher
pauses the gateway instead of failing.

Every status and reason of "Handling error responses from APNs" maps to an
outcome through the tables below (the one place APNs reasons are mapped).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, cast
from urllib.parse import quote

import jwt

from pushtrack.delivery import _http
from pushtrack.delivery.base import (
    HttpGateway,
    Notification,
    Outcome,
    Verdict,
    map_transport_errors,
)
from pushtrack.domain import payload as payloads
from pushtrack.domain.timeutil import to_wire
from pushtrack.secret import Secret

log = logging.getLogger(__name__)

PRODUCTION_URL = "https://api.push.apple.com"
SANDBOX_URL = "https://api.sandbox.push.apple.com"

#: APNs refuses provider tokens older than one hour; sign a new one well before.
TOKEN_LIFETIME = 50 * 60.0
#: APNs answers TooManyProviderTokenUpdates to tokens re-signed more often than this.
MIN_TOKEN_AGE = 20 * 60.0

#: Push types an application's gateway may send every push as, beyond the alert and
#: background pushes derived from each payload: the topic suffix Apple asks for each
#: (their limits and priorities: ``payload.APNS_PUSH_TYPES``).
TOPIC_SUFFIXES: dict[str, str] = {
    name: payloads.APNS_PUSH_TYPES[name].suffix for name in payloads.APNS_GATEWAY_PUSH_TYPES
}


@dataclass(frozen=True, slots=True)
class ApnsConfig:
    key: Secret  # the .p8 file's PEM text
    key_id: str
    team_id: str
    topic: str  # the app's bundle id
    sandbox: bool = False
    base_url: str | None = None  # overrides the production/sandbox host (tests)
    ca_file: str | None = None
    concurrency: int = 100  # concurrent HTTP/2 streams
    timeout: float = 30.0
    #: Send every push as this type (a key of TOPIC_SUFFIXES, e.g. a VoIP app's "voip");
    #: None: alert or background, as each payload says.
    push_type: str | None = None

    @property
    def url(self) -> str:
        return self.base_url or (SANDBOX_URL if self.sandbox else PRODUCTION_URL)

    @property
    def apns_topic(self) -> str:
        """The topic header: the bundle id, with the push type's suffix."""
        suffix = TOPIC_SUFFIXES.get(self.push_type or "", "")
        return self.topic if self.topic.endswith(suffix) else self.topic + suffix


class _Rule(NamedTuple):
    verdict: Verdict
    reason: str  # used when the body names none
    unsubscribe: bool = False


_FAILED, _RETRY = Verdict.FAILED, Verdict.RETRY

#: HTTP status → outcome, with the reasons Apple documents for each status.
_BY_STATUS: dict[int, _Rule] = {
    400: _Rule(_FAILED, "BadRequest"),
    403: _Rule(_FAILED, "Forbidden"),  # credentials: the whole application is affected
    404: _Rule(_FAILED, "BadPath"),  # configuration
    405: _Rule(_FAILED, "MethodNotAllowed"),  # configuration
    410: _Rule(_FAILED, "Unregistered", unsubscribe=True),
    413: _Rule(_FAILED, "PayloadTooLarge"),
    429: _Rule(_RETRY, "TooManyRequests"),
    500: _Rule(_RETRY, "InternalServerError"),
    503: _Rule(_RETRY, "ServiceUnavailable"),
}

#: The priority option in words (as FCM takes it) → apns-priority.
_PRIORITY = {"high": "10", "normal": "5", "low": "1"}

#: Statuses that mean our set-up is wrong rather than this one device: logged loudly.
_SETUP_STATUSES = frozenset({403, 404, 405})

#: 403 reasons that refuse the application's credentials, not the notification: the
#: gateway is paused (``Verdict.CREDENTIALS``) until they are fixed.
CREDENTIAL_REASONS = frozenset(
    {
        "InvalidProviderToken",
        "MissingProviderToken",
        "ExpiredProviderToken",
        "BadCertificate",
        "BadCertificateEnvironment",
    }
)


class ProviderToken:
    """The ES256 JWT sent as ``authorization: bearer``, re-signed before it goes stale."""

    def __init__(
        self,
        key: Secret,
        key_id: str,
        team_id: str,
        *,
        lifetime: float = TOKEN_LIFETIME,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key = _http.load_p256_key(key.reveal(), "APNs key")
        self._key_id = key_id
        self._team_id = team_id
        self._lifetime = lifetime
        self._clock = clock
        self._token: str | None = None
        self._issued_at = 0.0

    def current(self) -> str:
        now = self._clock()
        if self._token is None or now - self._issued_at >= self._lifetime:
            self._issued_at = now
            self._token = jwt.encode(
                {"iss": self._team_id, "iat": int(now)},
                self._key,
                algorithm="ES256",
                headers={"kid": self._key_id},
            )
        return self._token

    def expire(self, token: str) -> bool:
        """APNs called ``token`` expired: sign a new one next time, unless that happened
        already, or the token is too young to replace (``MIN_TOKEN_AGE``). True when the
        next ``current()`` is another token."""
        if token != self._token:
            return True
        if self._clock() - self._issued_at < MIN_TOKEN_AGE:
            return False
        self._token = None
        return True


class ApnsGateway(HttpGateway):
    def __init__(self, config: ApnsConfig, *, clock: Callable[[], float] = time.time) -> None:
        super().__init__(
            concurrency=config.concurrency, timeout=config.timeout, ca_file=config.ca_file
        )
        self.config = config
        self._clock = clock
        self._token = ProviderToken(config.key, config.key_id, config.team_id, clock=clock)
        self._device_url = config.url.rstrip("/") + "/3/device/"

    async def send(self, batch: Sequence[Notification]) -> list[Outcome]:
        # At most ``concurrency`` senders, each holding one of the gateway's stream slots
        # for as long as the batch has notifications left (not a task and a slot per
        # notification: the slots are shared by every batch in flight).
        answered: list[Outcome | None] = [None] * len(batch)
        left = iter(range(len(batch)))

        async def sender() -> None:
            async with self._slots:
                for i in left:
                    answered[i] = await self._send_one(batch[i])

        await asyncio.gather(*(sender() for _ in range(min(self.config.concurrency, len(batch)))))
        outcomes = cast(list[Outcome], answered)
        for reason in {o.reason for o in outcomes if o.http_status in _SETUP_STATUSES}:
            log.warning(
                "APNs refused the application's requests: %s (topic %s)", reason, self.config.topic
            )
        return outcomes

    async def _send_one(self, n: Notification) -> Outcome:
        url = self._device_url + quote(n.push_token, safe="")
        headers = self._headers(n)
        content = payloads.encode(n.payload)
        with map_transport_errors(n.delivery_id) as unanswered:
            token = self._token.current()
            response = await self._post(url, headers, token, content)
            if _reason_of(response) == "ExpiredProviderToken" and self._token.expire(token):
                response = await self._post(url, headers, self._token.current(), content)
            return outcome_of(n.delivery_id, response)
        return unanswered.outcome

    async def _post(
        self, url: str, headers: dict[str, str], token: str, content: bytes
    ) -> _http.Response:
        headers = {"authorization": f"bearer {token}", **headers}
        return await self._client.post(url, headers=headers, content=content)

    def _headers(self, n: Notification) -> dict[str, str]:
        options = n.options
        push_type = self.config.push_type or str(options.get("push_type") or "alert")
        rules = payloads.APNS_PUSH_TYPES.get(push_type, payloads.APNS_PUSH_TYPES["alert"])
        # the sender's ios_priority; else the payload's (background: 5) when the payload
        # decides the push type; else the push type's own
        priority = options.get("apns_priority")
        if priority is None and self.config.push_type is None:
            priority = options.get("priority")
        priority = str(priority or rules.priority)
        headers = {
            "content-type": "application/json",
            "apns-id": apns_id_of(n),
            "apns-topic": self.config.apns_topic,
            "apns-push-type": push_type,
            "apns-priority": _PRIORITY.get(priority.lower(), priority),
        }
        ttl = _http.positive_ttl(options)
        if push_type == "pushtotalk":
            headers["apns-expiration"] = "0"  # Apple: at once or never
        elif ttl is not None:
            # 0 means "deliver now or never"; otherwise an absolute UNIX time.
            headers["apns-expiration"] = str(int(self._clock()) + ttl if ttl else 0)
        if options.get("collapse_id"):
            headers["apns-collapse-id"] = str(options["collapse_id"])
        return headers


#: The namespace of the ``apns-id`` UUIDs (``apns_id_of``).
_APNS_ID_NAMESPACE = uuid.UUID("5b0e7c1e-8f4a-4c2b-9a55-1c6d2f0e7a31").bytes


def apns_id_of(n: Notification) -> str:
    """The ``apns-id`` of a notification: a UUID derived from its delivery (its tracking
    code, unique to the delivery and to this installation), the same on every request
    for it, so a delivery sent again after a crash is the same notification to Apple
    (docs/api.md §7.3).

    It is ``uuid5(namespace, tracking code)`` (RFC 9562 §5.5), spelled out on the bytes:
    one per delivery sent, without building ``uuid.UUID`` objects."""
    digest = bytearray(
        hashlib.sha1(_APNS_ID_NAMESPACE + n.tracking_code.encode(), usedforsecurity=False).digest()
    )
    digest[6] = digest[6] & 0x0F | 0x50  # version 5
    digest[8] = digest[8] & 0x3F | 0x80  # the RFC's variant
    h = digest[:16].hex().upper()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _reason_of(response: _http.Response) -> str | None:
    if response.status_code == 200:
        return None
    reason = _http.json_body(response).get("reason")
    return reason if isinstance(reason, str) and reason else None


def outcome_of(delivery_id: int, response: _http.Response) -> Outcome:
    """The outcome of one APNs answer."""
    status = response.status_code
    apns_id = response.headers.get("apns-id")
    if status == 200:
        return Outcome(
            delivery_id, Verdict.DELIVERED, "Success", gateway_id=apns_id, http_status=status
        )
    body: dict[str, Any] = _http.json_body(response)
    rule = _BY_STATUS.get(status) or _Rule(_RETRY if status >= 500 else _FAILED, f"HTTP {status}")
    reason = body.get("reason") if isinstance(body.get("reason"), str) else None
    reason = reason or rule.reason
    if status == 403 and reason in CREDENTIAL_REASONS:
        rule = _Rule(Verdict.CREDENTIALS, reason)
    description = reason
    timestamp = body.get("timestamp")
    dead_since = None
    if status == 410 and isinstance(timestamp, int) and not isinstance(timestamp, bool):
        dead_since = timestamp * 1000  # ms -> µs
        description = f"{reason} (since {to_wire(dead_since)} UTC)"
    retry_after = None
    if rule.verdict is Verdict.RETRY:
        retry_after = _http.parse_retry_after(response.headers.get("retry-after"))
    return Outcome(
        delivery_id,
        rule.verdict,
        description,
        unsubscribe=rule.unsubscribe,
        dead_since=dead_since,
        retry_after=retry_after,
        gateway_id=apns_id,
        http_status=status,
        reason=reason,
    )
