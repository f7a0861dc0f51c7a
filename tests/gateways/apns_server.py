"""A local APNs provider API: ``POST /3/device/<token>`` over HTTP/2 with token auth.

It verifies the provider token (ES256 signature against the team key's public
half, ``kid`` and ``iss``, at most an hour old) and the apns-* headers, and
answers the way APNs does: status code, ``apns-id`` header, and
``{"reason": ...}`` (plus ``timestamp`` for 410) on errors. Like APNs it
refuses an ``alert`` push whose ``aps`` shows nothing (no alert, badge or
sound), a ``background`` push that is not ``content-available`` alone, and a
background push at priority 10; the topic must carry Apple's suffix for the push type
(``.voip``, ...), and a VoIP payload may take 5 KB.

Knobs for tests: ``failures`` (device token → (status, reason[, headers])),
``latency`` (seconds per request; ``peak_in_flight`` counts the requests answered
at once), ``goaway_after`` / ``reset_after`` (streams
per connection before a GOAWAY / an abrupt close),
``expire_provider_tokens()``, ``storm(n, ...)`` (the next n requests answered 5xx,
with or without Retry-After), ``token_update_interval`` (like APNs, a new provider
token on a connection whose last one was signed less than this many seconds before is
refused ``429 TooManyProviderTokenUpdates``; None: not checked); ``received`` records every
request answered, ``arrived`` the device token of every request that reached the server,
answered or not (a client that hangs up before the answer: APNs acted on it all the same),
and ``arrived_ids`` its (device token, ``apns-id`` header or None) beside it.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from tests.gateways._h2server import H2Server, Request, Response
from tests.gateways._tls import LocalTLS

PUSH_TYPES = frozenset(
    {
        "alert",
        "background",
        "location",
        "voip",
        "complication",
        "fileprovider",
        "mdm",
        "liveactivity",
        "pushtotalk",
        "widgets",
    }
)
MAX_PAYLOAD = 4096
#: Apple's topic suffix per push type (the bundle id alone for the others) and limits.
TOPIC_SUFFIXES = {
    "voip": ".voip",
    "complication": ".complication",
    "fileprovider": ".pushkit.fileprovider",
    "location": ".location-query",
    "liveactivity": ".push-type.liveactivity",
    "pushtotalk": ".voip-ptt",
    "widgets": ".push-type.widgets",
}
PAYLOAD_LIMITS = {"voip": 5120}
#: APNs refuses a provider token signed less than this long after the last one.
TOKEN_UPDATE_INTERVAL = 20 * 60.0
_PATH = re.compile(r"/3/device/([^/?]*)")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_HEX = re.compile(r"[0-9a-fA-F]{64,200}")


@dataclass
class ReceivedPush:
    token: str
    headers: dict[str, str]
    payload: Any  # the decoded JSON body, or None
    status: int
    reason: str | None
    apns_id: str
    connection: int


class _Refusal(Exception):
    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status, self.reason, self.headers = status, reason, headers or {}


class ApnsServer:
    def __init__(
        self,
        tls: LocalTLS,
        *,
        public_key: ec.EllipticCurvePublicKey,
        key_id: str,
        team_id: str,
        topic: str,
    ) -> None:
        self.public_key, self.key_id, self.team_id, self.topic = public_key, key_id, team_id, topic
        self.failures: dict[str, tuple[Any, ...]] = {}
        #: The 410 answers' ``timestamp`` (ms since the epoch): when APNs last confirmed
        #: the token invalid. None: a day before the answer.
        self.gone_since_ms: int | None = None
        self.latency = 0.0
        #: Requests being answered now, and the most at once since the last reset.
        self.in_flight = 0
        self.peak_in_flight = 0
        self.received: list[ReceivedPush] = []
        #: The device token of every request that reached the server (whole), in order,
        #: whether or not its answer was sent.
        self.arrived: list[str] = []
        #: (device token, the request's ``apns-id`` or None), beside ``arrived``.
        self.arrived_ids: list[tuple[str, str | None]] = []
        #: Provider tokens in the order first seen.
        self.provider_tokens: list[str] = []
        self.expired: set[str] = set()
        self.token_update_interval: float | None = TOKEN_UPDATE_INTERVAL
        #: connection -> (its provider token, that token's iat)
        self._token_iat: dict[int, tuple[str, int]] = {}
        self._storm: tuple[int, int, str, dict[str, str]] = (0, 503, "", {})
        self._server = H2Server(self._handle, tls.server_context())

    # -- running ---------------------------------------------------------------

    @property
    def url(self) -> str:
        return self._server.url

    @property
    def connections(self) -> int:
        return self._server.connections

    @property
    def errors(self) -> list[BaseException]:
        return self._server.errors

    @property
    def http2(self) -> H2Server:
        """The HTTP/2 server underneath, with its connection-level knobs."""
        return self._server

    @property
    def goaway_after(self) -> int | None:
        return self._server.goaway_after

    @goaway_after.setter
    def goaway_after(self, value: int | None) -> None:
        self._server.goaway_after = value

    @property
    def reset_after(self) -> int | None:
        return self._server.reset_after

    @reset_after.setter
    def reset_after(self, value: int | None) -> None:
        self._server.reset_after = value

    def start(self) -> ApnsServer:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> ApnsServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def reset(self) -> None:
        self.failures.clear()
        self.gone_since_ms = None
        self.latency = 0.0
        self.peak_in_flight = 0
        self.received.clear()
        self.arrived.clear()
        self.arrived_ids.clear()
        self.provider_tokens.clear()
        self.expired.clear()
        self.token_update_interval = TOKEN_UPDATE_INTERVAL
        self._token_iat.clear()
        self._storm = (0, 503, "", {})
        self.goaway_after = None
        self.reset_after = None
        self._server.errors.clear()
        self._server.reset_knobs()

    def expire_provider_tokens(self) -> None:
        """Answer ExpiredProviderToken to every provider token seen so far."""
        self.expired.update(self.provider_tokens)

    def storm(
        self,
        requests: int,
        status: int = 503,
        reason: str = "ServiceUnavailable",
        retry_after: str | None = None,
    ) -> None:
        """Answer the next ``requests`` well-formed requests ``status`` (a 5xx storm)."""
        self._storm = (
            requests,
            status,
            reason,
            {"retry-after": retry_after} if retry_after else {},
        )

    def delivered(self) -> list[ReceivedPush]:
        return [r for r in self.received if r.status == 200]

    # -- handling --------------------------------------------------------------

    async def _handle(self, request: Request) -> Response:
        match = _PATH.fullmatch(request.path)
        self.arrived.append(unquote(match[1]) if match else "")
        self.arrived_ids.append((self.arrived[-1], request.headers.get("apns-id")))
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            return await self._answer(request)
        finally:
            self.in_flight -= 1

    async def _answer(self, request: Request) -> Response:
        if self.latency:
            await asyncio.sleep(self.latency)
        apns_id = request.headers.get("apns-id") or str(uuid.uuid4()).upper()
        match = _PATH.fullmatch(request.path)
        token = unquote(match[1]) if match else ""
        try:
            payload = json.loads(request.body) if request.body else None
        except ValueError:
            payload = None
        try:
            self._check(request, token, apns_id)
            status, reason, headers = 200, None, {}
            left, storm_status, storm_reason, storm_headers = self._storm
            if left > 0:
                self._storm = (left - 1, storm_status, storm_reason, storm_headers)
                status, reason, headers = storm_status, storm_reason, storm_headers
            elif token in self.failures:
                status, reason, *extra = self.failures[token]
                headers = extra[0] if extra else {}
        except _Refusal as refusal:
            status, reason, headers = refusal.status, refusal.reason, refusal.headers
        self.received.append(
            ReceivedPush(
                token, dict(request.headers), payload, status, reason, apns_id, request.connection
            )
        )
        headers = {"apns-id": apns_id, **headers}
        if status == 200:
            return Response(200, headers)
        body: dict[str, Any] = {"reason": reason}
        if status == 410:
            gone = self.gone_since_ms
            body["timestamp"] = int(time.time() * 1000) - 86_400_000 if gone is None else gone
        return Response.json(status, body, headers)

    def _check(self, request: Request, token: str, apns_id: str) -> None:
        if request.method != "POST":
            raise _Refusal(405, "MethodNotAllowed")
        if not _PATH.fullmatch(request.path):
            raise _Refusal(404, "BadPath")
        names = [name for name, _ in request.header_list]
        if len(names) != len(set(names)):
            raise _Refusal(400, "DuplicateHeaders")
        self._check_provider_token(request.headers.get("authorization"), request.connection)
        headers = request.headers
        if not _UUID.fullmatch(apns_id):
            raise _Refusal(400, "BadMessageId")
        if "apns-topic" not in headers:
            raise _Refusal(400, "MissingTopic")
        if headers.get("apns-push-type") not in PUSH_TYPES:
            raise _Refusal(400, "InvalidPushType")
        push_type = headers["apns-push-type"]
        if headers["apns-topic"] != self.topic + TOPIC_SUFFIXES.get(push_type, ""):
            raise _Refusal(400, "TopicDisallowed")
        if headers.get("apns-priority", "10") not in ("1", "5", "10"):
            raise _Refusal(400, "BadPriority")
        if not headers.get("apns-expiration", "0").isdigit():
            raise _Refusal(400, "BadExpirationDate")
        if len(headers.get("apns-collapse-id", "").encode()) > 64:
            raise _Refusal(400, "BadCollapseId")
        if not token:
            raise _Refusal(400, "MissingDeviceToken")
        if not request.body:
            raise _Refusal(400, "PayloadEmpty")
        if len(request.body) > PAYLOAD_LIMITS.get(push_type, MAX_PAYLOAD):
            raise _Refusal(413, "PayloadTooLarge")
        if not _HEX.fullmatch(token):
            raise _Refusal(400, "BadDeviceToken")
        self._check_push_type(headers, request.body)

    def _check_push_type(self, headers: dict[str, str], body: bytes) -> None:
        """What Apple asks of alert and background pushes (see "Sending notification
        requests to APNs"): an alert push shows something; a background push carries
        content-available alone and goes at priority 5."""
        try:
            aps = json.loads(body).get("aps")
        except (ValueError, AttributeError):
            raise _Refusal(400, "BadRequest") from None
        if not isinstance(aps, dict):
            aps = {}
        push_type = headers.get("apns-push-type")
        shows = any(key in aps for key in ("alert", "badge", "sound"))
        if push_type == "alert" and not shows:
            raise _Refusal(400, "InvalidPushType")
        if push_type == "background":
            if shows or aps.get("content-available") != 1:
                raise _Refusal(400, "InvalidPushType")
            if headers.get("apns-priority", "10") == "10":
                raise _Refusal(400, "BadPriority")

    def _check_provider_token(self, authorization: str | None, connection: int) -> None:
        if not authorization:
            raise _Refusal(403, "MissingProviderToken")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise _Refusal(403, "MissingProviderToken")
        if token not in self.provider_tokens:
            self.provider_tokens.append(token)
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(
                token, self.public_key, algorithms=["ES256"], options={"require": ["iss", "iat"]}
            )
        except jwt.InvalidTokenError:
            raise _Refusal(403, "InvalidProviderToken") from None
        if header.get("kid") != self.key_id or claims["iss"] != self.team_id:
            raise _Refusal(403, "InvalidProviderToken")
        if token in self.expired or time.time() - claims["iat"] > 3600:
            raise _Refusal(403, "ExpiredProviderToken")
        last = self._token_iat.get(connection)
        if last is None or last[0] != token:
            # a new token on this connection: APNs takes at most one every 20 minutes
            interval = self.token_update_interval
            if interval is not None and last is not None and claims["iat"] - last[1] < interval:
                raise _Refusal(429, "TooManyProviderTokenUpdates")
            self._token_iat[connection] = (token, int(claims["iat"]))
