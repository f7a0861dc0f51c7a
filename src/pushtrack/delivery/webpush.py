"""Web Push: RFC 8030 delivery, RFC 8291 message encryption, RFC 8292 VAPID.

A browser device's push token is its subscription as JSON,
``{"endpoint": "https://...", "keys": {"p256dh": ..., "auth": ...}}``, or, as
Pushwoosh's Web SDK registers it, the endpoint alone with the keys apart
(registerDevice's ``public_key`` and ``auth_token``, in standard base64; see
``Notification.web_keys``). The payload is encrypted for that subscription
(``aes128gcm``, with a fresh sender key per message) and POSTed to the endpoint
with a VAPID ``Authorization`` header; the signed VAPID token is reused per push
service for a few hours.
Push services differ in host but not in status codes, mapped in the table below.
A refusal of the VAPID credentials (401, or Apple's 403 ``BadJwtToken``) is a
``CREDENTIALS`` outcome: the dispatcher pauses the gateway instead of failing.
A 403 otherwise says the subscription was made with another key: that device's
delivery fails. Apple's push service refuses a ``localhost`` subject, so the
subject must name a real host. Push services speak HTTP/2 (FCM, Mozilla, Apple); one
whose TLS does not choose h2 is spoken to over HTTP/1.1, remembered per origin.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import http_ece
import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from pushtrack.delivery import _http, outbound
from pushtrack.delivery.base import (
    HttpGateway,
    Notification,
    Outcome,
    Verdict,
    map_transport_errors,
)
from pushtrack.domain import payload as payloads
from pushtrack.secret import Secret

#: What push services keep a message for when the notification names no ttl (4 weeks).
DEFAULT_TTL = 2_419_200
#: VAPID tokens are signed for 12 hours (services accept up to 24) and renewed an hour early.
VAPID_LIFETIME = 12 * 3600
URGENCIES = frozenset({"very-low", "low", "normal", "high"})
_TOPIC = re.compile(r"[A-Za-z0-9_-]{1,32}")


def b64url_decode(text: str) -> bytes:
    """Strict base64url, padding optional; binascii.Error on anything else."""
    return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)


def b64_any_decode(text: str) -> bytes:
    """Base64 in either alphabet (browsers give base64url, ``btoa`` standard), padding
    optional; binascii.Error on anything else."""
    text = text.strip().rstrip("=").replace("+", "-").replace("/", "_")
    return b64url_decode(text)


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def load_vapid_key(secret: Secret) -> ec.EllipticCurvePrivateKey:
    """A VAPID private key from PEM text or the raw 32-byte scalar in base64url."""
    text = secret.reveal().strip()
    if text.startswith("-----BEGIN"):
        return _http.load_p256_key(text, "vapid_private_key")
    try:
        raw = b64url_decode(text)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("vapid_private_key is neither PEM nor base64url") from exc
    if len(raw) != 32:
        raise ValueError("vapid_private_key in base64url must hold 32 bytes (a P-256 scalar)")
    try:
        return ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256R1())
    except ValueError as exc:
        raise ValueError("vapid_private_key is not a valid P-256 private key") from exc


def public_key_of(key: ec.EllipticCurvePrivateKey) -> str:
    """The key browsers subscribe with (``applicationServerKey``), base64url."""
    return b64url_encode(
        key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    )


@dataclass(frozen=True, slots=True)
class WebPushConfig:
    vapid_private_key: Secret
    subject: str  # "mailto:..." or "https://...", how the push service reaches the sender
    ca_file: str | None = None
    concurrency: int = 100
    timeout: float = 30.0
    default_ttl: int = DEFAULT_TTL
    urgency: str = "normal"
    #: Hosts subscriptions may point at (``delivery/outbound.py``): exact names or
    #: ``*.domain`` patterns; the browsers' push services by default.
    endpoint_hosts: tuple[str, ...] = outbound.DEFAULT_WEBPUSH_HOSTS
    #: The service's setting ``outbound_allow`` (not a gateway setting: the operator's),
    #: as ``outbound.parse_allow`` gives it.
    outbound_allow: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Subscription:
    endpoint: str
    p256dh: bytes  # the browser's public key, an uncompressed P-256 point
    auth: bytes  # the 16-byte authentication secret

    @classmethod
    def parse(cls, token: str) -> Subscription:
        """The subscription a push token holds; ValueError saying what is wrong with it."""
        try:
            data = json.loads(token)
        except ValueError:
            raise ValueError("not JSON") from None
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        endpoint, keys = data.get("endpoint"), data.get("keys")
        if not isinstance(endpoint, str):
            raise ValueError("endpoint must be an https URL")
        if not isinstance(keys, dict):
            _check_endpoint(endpoint)
            raise ValueError("keys missing")
        return cls.of_parts(
            endpoint, str(keys.get("p256dh") or ""), str(keys.get("auth") or ""), "keys."
        )

    @classmethod
    def of_parts(cls, endpoint: str, p256dh: str, auth: str, where: str = "") -> Subscription:
        """A subscription from its endpoint and keys (either base64 alphabet); ValueError
        saying what is wrong, naming the keys ``<where>p256dh`` and ``<where>auth``."""
        _check_endpoint(endpoint)
        try:
            point = b64_any_decode(p256dh)
            ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
        except (binascii.Error, ValueError):
            raise ValueError(f"{where}p256dh is not a P-256 public key") from None
        try:
            secret = b64_any_decode(auth)
        except (binascii.Error, ValueError):
            raise ValueError(f"{where}auth is not base64") from None
        if len(secret) != 16:
            raise ValueError(f"{where}auth must hold 16 bytes")
        return cls(endpoint, point, secret)

    @classmethod
    def of(cls, n: Notification) -> Subscription:
        """The subscription a notification goes to: its token, or its endpoint and keys."""
        if n.web_keys is not None:
            return cls.of_parts(n.push_token, n.web_keys[0], n.web_keys[1], "keys.")
        return cls.parse(n.push_token)


def _check_endpoint(endpoint: str) -> None:
    parts = urlsplit(endpoint)
    if parts.scheme != "https":
        raise ValueError("endpoint must be an https URL")
    if not parts.hostname:
        raise ValueError("endpoint has no host")


def encrypt(plaintext: bytes, subscription: Subscription) -> bytes:
    """The ``aes128gcm`` body of RFC 8291 for one subscription."""
    sender = ec.generate_private_key(ec.SECP256R1())
    body: bytes = http_ece.encrypt(
        plaintext,
        private_key=sender,
        dh=subscription.p256dh,
        auth_secret=subscription.auth,
        version="aes128gcm",
    )
    return body


class Vapid:
    """Signs the VAPID ``Authorization`` header, one token per push service origin."""

    def __init__(
        self, key: Secret, subject: str, *, clock: Callable[[], float] = time.time
    ) -> None:
        if not subject.startswith(("mailto:", "https://")):
            raise ValueError("subject must be a mailto: or https: URL")
        if _is_local(subject):
            raise ValueError(
                "subject must name a public host: push services (Apple's) refuse localhost"
            )
        self._key = load_vapid_key(key)
        self._subject = subject
        self._clock = clock
        self.public_key = public_key_of(self._key)
        self._headers: dict[str, tuple[str, float]] = {}

    def header(self, endpoint: str) -> str:
        parts = urlsplit(endpoint)
        audience = f"{parts.scheme}://{parts.netloc}"
        now = self._clock()
        cached = self._headers.get(audience)
        if cached is not None and cached[1] - now > 3600:
            return cached[0]
        expires = int(now) + VAPID_LIFETIME
        claims = {"aud": audience, "exp": expires, "sub": self._subject}
        token = jwt.encode(claims, self._key, algorithm="ES256")
        value = f"vapid t={token}, k={self.public_key}"
        self._headers[audience] = (value, expires)
        return value


_LOCAL_HOSTS = frozenset({"localhost", "::1", "[::1]"})


def _is_local(subject: str) -> bool:
    """A VAPID subject naming this machine (``https://localhost``, ``mailto:a@localhost``)."""
    if subject.startswith("mailto:"):
        host = subject[len("mailto:") :].rpartition("@")[2].split("?")[0]
    else:
        host = urlsplit(subject).hostname or ""
    host = host.strip().lower().rstrip(".")
    return host in _LOCAL_HOSTS or host.endswith(".localhost") or host.startswith(("127.", "0."))


class _Rule(NamedTuple):
    verdict: Verdict
    reason: str
    unsubscribe: bool = False


_SUCCESS = _Rule(Verdict.DELIVERED, "Success")
#: Apple's Web Push reasons (403) for a VAPID token it refuses.
_JWT_REFUSALS = frozenset({"BadJwtToken", "ExpiredJwtToken"})

#: HTTP status of the push service → outcome (RFC 8030 and the services' docs).
_BY_STATUS: dict[int, _Rule] = {
    200: _SUCCESS,
    201: _SUCCESS,
    202: _SUCCESS,
    400: _Rule(Verdict.FAILED, "BadRequest"),
    401: _Rule(Verdict.CREDENTIALS, "Unauthorized"),  # VAPID credentials
    403: _Rule(Verdict.FAILED, "Forbidden"),  # VAPID key differs from the subscription's
    404: _Rule(Verdict.FAILED, "NotFound", unsubscribe=True),
    410: _Rule(Verdict.FAILED, "Gone", unsubscribe=True),
    413: _Rule(Verdict.FAILED, "PayloadTooLarge"),
    429: _Rule(Verdict.RETRY, "TooManyRequests"),
}


class WebPushGateway(HttpGateway):
    def __init__(self, config: WebPushConfig, *, clock: Callable[[], float] = time.time) -> None:
        if config.urgency not in URGENCIES:
            raise ValueError(f"urgency must be one of {', '.join(sorted(URGENCIES))}")
        self.vapid = Vapid(config.vapid_private_key, config.subject, clock=clock)
        # a push service is whatever a browser subscribed with: one that speaks only
        # HTTP/1.1 is spoken to that way (``_http.Client``'s fallback)
        super().__init__(
            concurrency=config.concurrency,
            timeout=config.timeout,
            ca_file=config.ca_file,
            http1_fallback=True,
            connect_to=self._connect_to,
        )
        self.config = config
        self._outbound = outbound.Resolver()

    async def _connect_to(self, host: str, port: int) -> str:
        """Where a new connection to an endpoint's host goes: the address checked now
        (``outbound.Resolver.address``), so a name that resolves inward by the time a
        connection is made is never connected to, whatever the send-time check saw."""
        try:
            return await self._outbound.address(
                host, port, self.config.endpoint_hosts, self.config.outbound_allow
            )
        except outbound.Refused as exc:
            raise _http.ConnectError(f"not connected to {host}: {exc}") from None

    async def send(self, batch: Sequence[Notification]) -> list[Outcome]:
        return list(await asyncio.gather(*(self._send_one(n) for n in batch)))

    async def _send_one(self, n: Notification) -> Outcome:
        try:
            subscription = Subscription.of(n)
        except ValueError as exc:
            return Outcome(
                n.delivery_id,
                Verdict.FAILED,
                f"Invalid subscription: {exc}",
                reason="InvalidSubscription",
            )
        try:
            await self._outbound.check(
                subscription.endpoint, self.config.endpoint_hosts, self.config.outbound_allow
            )
        except outbound.Refused as exc:
            return Outcome(
                n.delivery_id,
                Verdict.FAILED,
                f"Endpoint not allowed: {exc}",
                reason="EndpointNotAllowed",
            )
        content = encrypt(payloads.encode(n.payload), subscription)
        headers = self._headers(n, subscription)
        endpoint = subscription.endpoint
        async with self._slots:
            with map_transport_errors(n.delivery_id) as unanswered:
                response = await self._client.post(endpoint, headers=headers, content=content)
                return outcome_of(n.delivery_id, response)
            return unanswered.outcome

    def _headers(self, n: Notification, subscription: Subscription) -> dict[str, str]:
        ttl = _http.positive_ttl(n.options)
        urgency = n.options.get("urgency")
        headers = {
            "authorization": self.vapid.header(subscription.endpoint),
            "content-encoding": "aes128gcm",
            "content-type": "application/octet-stream",
            "ttl": str(self.config.default_ttl if ttl is None else ttl),
            "urgency": urgency if urgency in URGENCIES else self.config.urgency,
        }
        topic = n.options.get("collapse_id")
        if isinstance(topic, str) and _TOPIC.fullmatch(topic):
            headers["topic"] = topic
        return headers


def _detail(response: _http.Response) -> str:
    """A short human explanation from an error body (JSON ``message``/``error`` or text)."""
    body: dict[str, Any] = _http.json_body(response)
    text = body.get("message") or body.get("reason") or body.get("error")
    if not isinstance(text, str):
        text = "" if body else response.text
    return " ".join(text.split())[:200]


def outcome_of(delivery_id: int, response: _http.Response) -> Outcome:
    """The outcome of one push service answer."""
    status = response.status_code
    rule = _BY_STATUS.get(status) or _Rule(
        Verdict.RETRY if status >= 500 else Verdict.FAILED,
        "ServerError" if status >= 500 else f"HTTP {status}",
    )
    if rule.verdict is Verdict.DELIVERED:
        return Outcome(
            delivery_id,
            Verdict.DELIVERED,
            "Success",
            gateway_id=response.headers.get("location"),
            http_status=status,
        )
    detail = _detail(response)
    if status == 403 and _http.json_body(response).get("reason") in _JWT_REFUSALS:
        rule = _Rule(Verdict.CREDENTIALS, "Forbidden")  # Apple: the VAPID token is refused
    retry_after = None
    if rule.verdict is Verdict.RETRY:
        retry_after = _http.parse_retry_after(response.headers.get("retry-after"))
    return Outcome(
        delivery_id,
        rule.verdict,
        f"{rule.reason}: {detail}" if detail else rule.reason,
        unsubscribe=rule.unsubscribe,
        retry_after=retry_after,
        http_status=status,
        reason=rule.reason,
    )
