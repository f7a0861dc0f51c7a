"""Firebase Cloud Messaging, HTTP v1 API, authorised with a service account.

The service account signs an RS256 assertion that its ``token_uri`` trades
for an OAuth2 access token (the JWT bearer grant); the token is reused until
five minutes before it expires, and fetched anew once when a send answers 401.
Each notification is one ``messages:send`` request; a batch shares one
HTTP/2 connection, at most ``concurrency`` requests in flight.

A token endpoint that refuses or cannot be reached makes the whole batch
unsendable: ``send`` raises ``GatewayError`` (``retryable`` unless it refused;
``credentials`` when it refused the service account). A send refused as
unauthenticated after a fresh token, or denied permission, is a ``CREDENTIALS``
outcome: the dispatcher pauses the gateway instead of failing the delivery.
Answers map to outcomes by FCM ``errorCode``, else by RPC status, else by HTTP
status, through the tables below (the one place FCM's error codes are mapped).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import urlencode

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from pushtrack.delivery import _http
from pushtrack.delivery.base import (
    GatewayError,
    HttpGateway,
    Notification,
    Outcome,
    Verdict,
    map_transport_errors,
)
from pushtrack.domain import payload as payloads
from pushtrack.secret import Secret

DEFAULT_BASE_URL = "https://fcm.googleapis.com"
SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
#: Fetch a new access token this long before the current one expires.
REFRESH_MARGIN = 300.0
_FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"


@dataclass(frozen=True, slots=True)
class ServiceAccount:
    project_id: str
    client_email: str
    private_key: Secret
    token_uri: str
    private_key_id: str | None = None

    @classmethod
    def from_json(cls, data: str | Mapping[str, Any]) -> ServiceAccount:
        """From the service-account JSON file Firebase hands out (text or parsed)."""
        if isinstance(data, str):
            try:
                data = json.loads(data)
            except ValueError as exc:
                raise ValueError("service_account is not valid JSON") from exc
        if not isinstance(data, Mapping):
            raise ValueError("service_account must be a JSON object")
        missing = [
            key
            for key in ("project_id", "client_email", "private_key", "token_uri")
            if not isinstance(data.get(key), str) or not data[key]
        ]
        if missing:
            raise ValueError(f"service_account lacks {', '.join(missing)}")
        key_id = data.get("private_key_id")
        account = cls(
            project_id=data["project_id"],
            client_email=data["client_email"],
            private_key=Secret(data["private_key"]),
            token_uri=data["token_uri"],
            private_key_id=key_id if isinstance(key_id, str) and key_id else None,
        )
        load_rsa_key(account.private_key)  # fail now, not at the first send
        return account


def load_rsa_key(secret: Secret) -> rsa.RSAPrivateKey:
    try:
        key = load_pem_private_key(secret.reveal().encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError("service_account private_key is not a PEM private key") from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("service_account private_key must be an RSA key")
    return key


@dataclass(frozen=True, slots=True)
class FcmConfig:
    service_account: ServiceAccount
    base_url: str = DEFAULT_BASE_URL
    token_uri: str | None = None  # overrides the service account's (tests)
    ca_file: str | None = None
    concurrency: int = 100
    timeout: float = 30.0
    #: Send only ``data`` (no ``notification`` block), leaving display to the app.
    data_only: bool = False


class AccessToken:
    """An OAuth2 access token for FCM, fetched with the JWT bearer grant and cached."""

    def __init__(
        self,
        account: ServiceAccount,
        client: _http.Client,
        *,
        token_uri: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._account = account
        self._key = load_rsa_key(account.private_key)
        self._client = client
        self._token_uri = token_uri or account.token_uri
        self._clock = clock
        self._token: str | None = None
        self._refresh_at = 0.0
        self._lock = asyncio.Lock()

    async def get(self) -> str:
        if self._token is not None and self._clock() < self._refresh_at:
            return self._token
        async with self._lock:
            if self._token is None or self._clock() >= self._refresh_at:
                self._token, self._refresh_at = await self._fetch()
            return self._token

    def expire(self, token: str) -> None:
        """FCM refused ``token``: fetch a new one next time, unless that happened already."""
        if token == self._token:
            self._token = None

    async def _fetch(self) -> tuple[str, float]:
        now = self._clock()
        claims = {
            "iss": self._account.client_email,
            "scope": SCOPE,
            "aud": self._token_uri,
            "iat": int(now),
            "exp": int(now) + 3600,
        }
        headers = {"kid": self._account.private_key_id} if self._account.private_key_id else None
        assertion = jwt.encode(claims, self._key, algorithm="RS256", headers=headers)
        form = urlencode({"grant_type": GRANT_TYPE, "assertion": assertion}).encode()
        with map_transport_errors(None, what="FCM token endpoint"):
            response = await self._client.post(
                self._token_uri,
                headers={"content-type": "application/x-www-form-urlencoded"},
                content=form,
            )
        body = _http.json_body(response)
        token, expires_in = body.get("access_token"), body.get("expires_in", 3600)
        if response.status_code == 200 and isinstance(token, str) and token:
            lifetime = float(expires_in) if isinstance(expires_in, int | float) else 3600.0
            return token, now + max(lifetime - REFRESH_MARGIN, lifetime / 2)
        error = " ".join(str(body.get(k)) for k in ("error", "error_description") if body.get(k))
        message = f"FCM token endpoint answered {response.status_code}: {error or 'no detail'}"
        retryable = response.status_code in (408, 429) or response.status_code >= 500
        raise GatewayError(message, retryable=retryable, credentials=not retryable)


class _Rule(NamedTuple):
    verdict: Verdict
    unsubscribe: bool = False


_FAILED, _RETRY = _Rule(Verdict.FAILED), _Rule(Verdict.RETRY)
#: The application's credentials refused (not the message's): pause, do not fail.
_CREDENTIALS = _Rule(Verdict.CREDENTIALS)

#: FcmError errorCode (first) or google.rpc status (when no errorCode) → outcome.
_BY_CODE: dict[str, _Rule] = {
    "UNREGISTERED": _Rule(Verdict.FAILED, unsubscribe=True),
    "INVALID_ARGUMENT": _FAILED,
    "SENDER_ID_MISMATCH": _FAILED,
    "QUOTA_EXCEEDED": _RETRY,
    "UNAVAILABLE": _RETRY,
    "INTERNAL": _RETRY,
    "THIRD_PARTY_AUTH_ERROR": _CREDENTIALS,  # the APNs or Web Push credentials in Firebase
    "UNSPECIFIED_ERROR": _FAILED,
    # RPC statuses seen without an FcmError detail.
    "RESOURCE_EXHAUSTED": _RETRY,
    "DEADLINE_EXCEEDED": _RETRY,
    "PERMISSION_DENIED": _CREDENTIALS,  # the service account may not send for the project
    "UNAUTHENTICATED": _CREDENTIALS,  # still refused after a fresh access token
    "NOT_FOUND": _FAILED,
}


#: What FCM's INVALID_ARGUMENT message says when the registration token itself is bad.
_BAD_TOKEN = "registration token"

#: Message priority option (words or APNs-style numbers) → AndroidMessagePriority.
_ANDROID_PRIORITY = {"high": "HIGH", "10": "HIGH", "normal": "NORMAL", "5": "NORMAL"}


class FcmGateway(HttpGateway):
    def __init__(self, config: FcmConfig, *, clock: Callable[[], float] = time.time) -> None:
        super().__init__(
            concurrency=config.concurrency, timeout=config.timeout, ca_file=config.ca_file
        )
        self.config = config
        base = config.base_url.rstrip("/")
        self._url = f"{base}/v1/projects/{config.service_account.project_id}/messages:send"
        self._access = AccessToken(
            config.service_account, self._client, token_uri=config.token_uri, clock=clock
        )

    async def send(self, batch: Sequence[Notification]) -> list[Outcome]:
        if not batch:
            return []
        await self._access.get()  # a token endpoint problem fails the batch as a whole
        return list(await asyncio.gather(*(self._send_one(n) for n in batch)))

    async def _send_one(self, n: Notification) -> Outcome:
        content = payloads.encode({"message": build_message(n, data_only=self.config.data_only)})
        async with self._slots:
            with map_transport_errors(n.delivery_id) as unanswered:
                try:
                    token = await self._access.get()
                    response = await self._post(token, content)
                    if response.status_code == 401 and _error_of(response)[0] == "UNAUTHENTICATED":
                        self._access.expire(token)
                        response = await self._post(await self._access.get(), content)
                except GatewayError as exc:  # the token refresh after a 401 failed
                    verdict = Verdict.RETRY if exc.retryable else Verdict.CREDENTIALS
                    return Outcome(n.delivery_id, verdict, str(exc), reason="UNAUTHENTICATED")
                return outcome_of(n.delivery_id, response)
            return unanswered.outcome

    async def _post(self, token: str, content: bytes) -> _http.Response:
        headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
        return await self._client.post(self._url, headers=headers, content=content)


def build_message(n: Notification, *, data_only: bool = False) -> dict[str, Any]:
    """The v1 ``message`` for one notification: the payload as string data, plus display.

    The payload keys are those Pushwoosh's SDKs read from the data (``title`` is
    the text on Android, ``header`` its title; see ``domain/payload.py``). Unless
    the gateway is ``data_only`` or the push is silent, FCM also gets a
    ``notification`` with the same text, so that apps without the SDK show it.
    """
    data = {
        key: value if isinstance(value, str) else payloads.encode(value).decode()
        for key, value in n.payload.items()
    }
    message: dict[str, Any] = {"token": n.push_token, "data": data}
    priority = str(n.options.get("priority") or "high").lower()
    android: dict[str, Any] = {"priority": _ANDROID_PRIORITY.get(priority, "HIGH")}
    ttl = _http.positive_ttl(n.options)
    if ttl is not None:
        android["ttl"] = f"{ttl}s"
    if n.options.get("collapse_id"):
        android["collapse_key"] = str(n.options["collapse_id"])
    display = None if data_only else _display(n)
    if display is not None:
        message["notification"], shown = display
        if shown:
            android["notification"] = shown
    message["android"] = android
    return message


#: Pushwoosh's drawer priority (-2..2) → AndroidNotification.notification_priority.
_DRAWER_PRIORITY = {
    "-2": "PRIORITY_MIN",
    "-1": "PRIORITY_LOW",
    "0": "PRIORITY_DEFAULT",
    "1": "PRIORITY_HIGH",
    "2": "PRIORITY_MAX",
}
_HEX_COLOR = re.compile(r"#[0-9A-Fa-f]{6}")
#: #RRGGBB or #AARRGGBB: the RGB part.
_LED_COLOR = re.compile(r"#(?:[0-9A-Fa-f]{2})?([0-9A-Fa-f]{6})")


def _display(n: Notification) -> tuple[dict[str, str], dict[str, Any]] | None:
    """(``notification``, ``android.notification``) for a push that shows something, or None."""
    p = n.payload
    if _is_true(p.get("pw_silent")) or _is_true(p.get("silent")):
        return None
    text = p.get("title") if n.platform in payloads.ANDROID_LIKE else p.get("body")
    if not isinstance(text, str) or not text:
        return None
    shown: dict[str, str] = {"body": text}
    if isinstance(p.get("header"), str) and p["header"]:
        shown["title"] = p["header"]
    image = p.get("b") if n.platform in payloads.ANDROID_LIKE else p.get("image")
    if isinstance(image, str) and image:
        shown["image"] = image
    extra: dict[str, Any] = {}
    if n.platform in payloads.ANDROID_LIKE:
        for key, field in (("i", "icon"), ("s", "sound")):
            if isinstance(p.get(key), str) and p[key]:
                extra[field] = p[key]
        color = p.get("ibc")
        if isinstance(color, str) and _HEX_COLOR.fullmatch(color):
            extra["color"] = color.lower()
        if str(p.get("pri")) in _DRAWER_PRIORITY:
            extra["notification_priority"] = _DRAWER_PRIORITY[str(p["pri"])]
        badges = p.get("pw_badges")
        if isinstance(badges, str) and badges.isdigit():
            extra["notification_count"] = int(badges)
        if p.get("vib") == "1":
            extra["default_vibrate_timings"] = True
        led = _LED_COLOR.fullmatch(p["led"]) if isinstance(p.get("led"), str) else None
        if led is not None:
            rgb = led[1]
            extra["light_settings"] = {
                "color": {
                    name: round(int(rgb[i : i + 2], 16) / 255, 4)
                    for name, i in (("red", 0), ("green", 2), ("blue", 4))
                },
                # the Pushwoosh SDK's blink when none is given: 100 ms on, 1 s off
                "light_on_duration": "0.1s",
                "light_off_duration": "1s",
            }
    return shown, extra


def _is_true(value: Any) -> bool:
    return value not in (None, "", "0", 0, False, "false")


def _error_of(response: _http.Response) -> tuple[str, str]:
    """(FcmError errorCode or RPC status or "HTTP nnn", message) of an error answer."""
    error = _http.json_body(response).get("error")
    if not isinstance(error, dict):
        return f"HTTP {response.status_code}", ""
    message = error.get("message")
    message = message if isinstance(message, str) else ""
    details = error.get("details")
    details = details if isinstance(details, list) else []
    for detail in details:
        if isinstance(detail, dict) and detail.get("@type") == _FCM_ERROR_TYPE:
            code = detail.get("errorCode")
            if isinstance(code, str) and code:
                return code, message
    status = error.get("status")
    if isinstance(status, str) and status:
        return status, message
    return f"HTTP {response.status_code}", message


def outcome_of(delivery_id: int, response: _http.Response) -> Outcome:
    """The outcome of one ``messages:send`` answer."""
    status = response.status_code
    if status == 200:
        name = _http.json_body(response).get("name")
        return Outcome(
            delivery_id,
            Verdict.DELIVERED,
            "Success",
            gateway_id=name if isinstance(name, str) else None,
            http_status=status,
        )
    code, message = _error_of(response)
    rule = _BY_CODE.get(code) or (_RETRY if status >= 500 or status == 429 else _FAILED)
    if code == "INVALID_ARGUMENT" and _BAD_TOKEN in message.lower():
        # "The registration token is not a valid FCM registration token": dead for good
        rule = _Rule(Verdict.FAILED, unsubscribe=True)
    retry_after = None
    if rule.verdict is Verdict.RETRY:
        retry_after = _http.parse_retry_after(response.headers.get("retry-after"))
    return Outcome(
        delivery_id,
        rule.verdict,
        f"{code}: {message}" if message else code,
        unsubscribe=rule.unsubscribe,
        retry_after=retry_after,
        http_status=status,
        reason=code,
    )
