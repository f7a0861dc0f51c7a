"""A local Web Push service (RFC 8030) that is also the browser: it decrypts what it gets.

``subscribe()`` creates a subscription the way a browser does (a P-256 key
pair and a 16-byte auth secret) with an endpoint here. ``POST /push/<id>``
checks the VAPID header (RFC 8292: ES256 JWT verified with the ``k`` key,
``aud`` this origin, ``exp`` at most 24 h ahead, ``sub`` a mailto:/https: URL),
the TTL, Urgency and Content-Encoding headers, and decrypts the ``aes128gcm``
body (RFC 8291) with the subscription's private key, proving the encryption.

Knobs for tests: ``failures`` (subscription id → (status[, headers])),
``unsubscribe(sub)`` (then 410), ``latency``, ``storm(n, ...)`` (the next n pushes
answered 503, with or without Retry-After), ``apple`` (behave like Apple's
web.push.apple.com: a VAPID ``sub`` naming localhost, or not mailto:/https:, is
refused 403 ``{"reason": "BadJwtToken"}``, and errors carry Apple's ``reason``);
``received`` records every push, ``arrived`` the subscription id of every push that
reached the server, answered or not.

``WebPushServer(tls, http1=True)`` is a push service that speaks only HTTP/1.1 (its
TLS offers ``http/1.1`` in ALPN; ``alpn=None``: no ALPN at all), on ``H1Server``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import http_ece
import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.gateways._h1server import H1Server
from tests.gateways._h2server import H2Server, Request, Response
from tests.gateways._tls import LocalTLS

URGENCIES = ("very-low", "low", "normal", "high")
MAX_BODY = 4096
_PATH = re.compile(r"/push/([A-Za-z0-9_-]+)")
_VAPID = re.compile(r"vapid\s+t=([^,\s]+)\s*,\s*k=([A-Za-z0-9_-]+)", re.IGNORECASE)

#: Status → (error, message) in the shape Mozilla's autopush answers.
MESSAGES: dict[int, tuple[str, str]] = {
    400: ("Bad Request", "Request did not validate"),
    401: ("Unauthorized", "Request did not validate: invalid VAPID authorization"),
    403: (
        "Forbidden",
        "the key in the authorization header does not correspond to the "
        "sender ID used to subscribe this user",
    ),
    404: ("Not Found", "Request did not validate: invalid token"),
    410: ("Gone", "Request did not validate: push subscription has unsubscribed or expired."),
    413: ("Payload Too Large", "Request did not validate: payload too large"),
    429: ("Too Many Requests", "Rate limit exceeded"),
    500: ("Internal Server Error", "An internal error occurred"),
    503: ("Service Unavailable", "Service temporarily unavailable"),
}


#: Apple's web push answers {"reason": ...} (its APNs reasons) instead of autopush's body.
_APPLE_REASONS = {
    400: "BadRequest",
    403: "BadJwtToken",
    404: "BadDeviceToken",
    410: "Unregistered",
    413: "PayloadTooLarge",
    429: "TooManyRequests",
    500: "InternalServerError",
    503: "ServiceUnavailable",
}
_BAD_JWT = "BadJwtToken: the sub claim names localhost"


def _names_localhost(sub: str) -> bool:
    host = sub.rpartition("@")[2] if sub.startswith("mailto:") else urlsplit(sub).hostname or ""
    return host.lower() == "localhost" or host.lower().endswith(".localhost")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Subscriber:
    id: str
    endpoint: str
    private_key: ec.EllipticCurvePrivateKey
    auth: bytes
    application_server_key: str | None  # the VAPID public key it subscribed with, if any

    @property
    def token(self) -> str:
        """The subscription JSON a browser hands the app: the device's push token."""
        public = self.private_key.public_key().public_bytes(
            Encoding.X962, PublicFormat.UncompressedPoint
        )
        return json.dumps(
            {
                "endpoint": self.endpoint,
                "expirationTime": None,
                "keys": {"p256dh": b64url(public), "auth": b64url(self.auth)},
            }
        )


@dataclass
class ReceivedPush:
    subscriber: str
    headers: dict[str, str]
    plaintext: bytes | None  # the decrypted body
    status: int
    claims: dict[str, Any] | None  # of the VAPID JWT
    #: the Location of the message resource the answer named (201 only)
    location: str | None = None

    @property
    def payload(self) -> Any:
        return json.loads(self.plaintext) if self.plaintext is not None else None


class _Refusal(Exception):
    def __init__(
        self, status: int, detail: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, headers or {}

    def response(self) -> Response:
        error, message = MESSAGES.get(self.status, ("Error", "Error"))
        body = {
            "code": self.status,
            "errno": 999,
            "error": error,
            "message": self.detail or message,
        }
        return Response.json(self.status, body, self.headers)


class WebPushServer:
    def __init__(
        self, tls: LocalTLS, *, http1: bool = False, alpn: tuple[str, ...] | None = ("http/1.1",)
    ) -> None:
        self.subscribers: dict[str, Subscriber] = {}
        self.gone: set[str] = set()
        self.failures: dict[str, tuple[Any, ...]] = {}
        self.latency = 0.0
        self.apple = False
        self.received: list[ReceivedPush] = []
        #: The subscription id of every push that reached the server (whole), in order,
        #: whether or not its answer was sent.
        self.arrived: list[str] = []
        self._storm: tuple[int, str | None] = (0, None)
        self._server: H2Server | H1Server = (
            H1Server(self._handle, tls.server_context(alpn))
            if http1
            else H2Server(self._handle, tls.server_context())
        )

    @property
    def url(self) -> str:
        return self._server.url

    @property
    def http1(self) -> H1Server:
        """The HTTP/1.1 server underneath (``http1=True``), with its counters."""
        assert isinstance(self._server, H1Server)
        return self._server

    @property
    def errors(self) -> list[BaseException]:
        return self._server.errors

    @property
    def http2(self) -> H2Server:
        """The HTTP/2 server underneath, with its connection-level knobs."""
        assert isinstance(self._server, H2Server)
        return self._server

    def start(self) -> WebPushServer:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> WebPushServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def reset(self) -> None:
        self.subscribers.clear()
        self.gone.clear()
        self.failures.clear()
        self.latency = 0.0
        self.apple = False
        self._storm = (0, None)
        self.received.clear()
        self.arrived.clear()
        self._server.errors.clear()
        self._server.reset_knobs()

    def subscribe(self, application_server_key: str | None = None) -> Subscriber:
        sub_id = b64url(os.urandom(12))
        subscriber = Subscriber(
            sub_id,
            f"{self.url}/push/{sub_id}",
            ec.generate_private_key(ec.SECP256R1()),
            os.urandom(16),
            application_server_key,
        )
        self.subscribers[sub_id] = subscriber
        return subscriber

    def storm(self, requests: int, retry_after: str | None = None) -> None:
        """Answer the next ``requests`` well-formed pushes 503 (a 5xx storm)."""
        self._storm = (requests, retry_after)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self.gone.add(subscriber.id)

    # -- handling --------------------------------------------------------------

    async def _handle(self, request: Request) -> Response:
        match = _PATH.fullmatch(request.path)
        sub_id = match[1] if match else ""
        self.arrived.append(sub_id)
        if self.latency:
            await asyncio.sleep(self.latency)
        plaintext, claims = None, None
        try:
            if request.method != "POST" or not match or sub_id not in self.subscribers:
                raise _Refusal(404)
            if sub_id in self.gone:
                raise _Refusal(410)
            subscriber = self.subscribers[sub_id]
            claims = self._check_vapid(request.headers.get("authorization", ""), subscriber)
            self._check_headers(request.headers)
            if len(request.body) > MAX_BODY:
                raise _Refusal(413)
            try:
                plaintext = http_ece.decrypt(
                    request.body,
                    private_key=subscriber.private_key,
                    auth_secret=subscriber.auth,
                    version="aes128gcm",
                )
            except Exception as exc:
                raise _Refusal(400, f"Decryption failed: {exc!r}") from None
            left, retry_after = self._storm
            if left > 0:
                self._storm = (left - 1, retry_after)
                raise _Refusal(503, None, {"retry-after": retry_after} if retry_after else None)
            if sub_id in self.failures:
                status, *extra = self.failures[sub_id]
                raise _Refusal(status, None, extra[0] if extra else None)
            response = Response(201, {"location": f"{self.url}/message/{uuid.uuid4()}"})
        except _Refusal as refusal:
            response = refusal.response()
            if self.apple:
                response = Response.json(
                    refusal.status, {"reason": _APPLE_REASONS.get(refusal.status, "BadRequest")}
                )
                if refusal.detail == _BAD_JWT:
                    response = Response.json(403, {"reason": "BadJwtToken"})
        self.received.append(
            ReceivedPush(
                sub_id,
                dict(request.headers),
                plaintext,
                response.status,
                claims,
                response.headers.get("location") if response.status == 201 else None,
            )
        )
        return response

    def _check_vapid(self, authorization: str, subscriber: Subscriber) -> dict[str, Any]:
        match = _VAPID.fullmatch(authorization.strip())
        if not match:
            raise _Refusal(401, "Missing or malformed VAPID authorization header")
        token, key = match[1], match[2]
        if subscriber.application_server_key and key != subscriber.application_server_key:
            raise _Refusal(403)
        try:
            public_key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64url(key))
            claims: dict[str, Any] = jwt.decode(
                token,
                public_key,
                algorithms=["ES256"],
                audience=self.url,
                options={"require": ["aud", "exp", "sub"]},
            )
        except (ValueError, jwt.InvalidTokenError) as exc:
            raise _Refusal(401, f"Invalid VAPID token: {exc}") from None
        if claims["exp"] > time.time() + 24 * 3600 + 60:
            raise _Refusal(401, "VAPID token expiry is more than 24 hours away")
        if not str(claims["sub"]).startswith(("mailto:", "https:")):
            raise _Refusal(401, "VAPID sub must be a mailto: or https: URL")
        if self.apple and _names_localhost(str(claims["sub"])):
            raise _Refusal(403, _BAD_JWT)
        return claims

    def _check_headers(self, headers: dict[str, str]) -> None:
        if not headers.get("ttl", "").isdigit():
            raise _Refusal(400, "Missing or invalid TTL header")
        if headers.get("urgency", "normal") not in URGENCIES:
            raise _Refusal(400, "Invalid Urgency header")
        if headers.get("content-encoding") != "aes128gcm":
            raise _Refusal(400, "Unknown Content-Encoding")
        if "topic" in headers and not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", headers["topic"]):
            raise _Refusal(400, "Invalid Topic header")
