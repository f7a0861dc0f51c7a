"""A local FCM HTTP v1 service with its OAuth2 token endpoint, over HTTP/2.

It issues its own service account (``service_account``: the JSON Firebase hands
out, its ``token_uri`` pointing here). ``POST /token`` takes the JWT bearer
grant and checks the RS256 assertion (signature, ``kid``, ``iss``, ``aud``,
``scope``, lifetime); ``POST /v1/projects/<id>/messages:send`` checks the bearer
token and the message's shape and answers like FCM, with google.rpc error
bodies carrying an ``FcmError`` detail.

Knobs for tests: ``failures`` (registration token → errorCode or ``Failure``),
``token_lifetime``, ``expire_access_tokens()``, ``token_endpoint_failure``,
``latency``, ``storm(n, ...)`` (the next n sends answered 503 UNAVAILABLE, with or
without Retry-After); ``received`` records every send, ``arrived`` the registration
token of every send that reached the server, answered or not, ``token_requests`` counts
grants. Like FCM, a message with a field the v1 API does not know is refused
400 INVALID_ARGUMENT.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.gateways._h2server import H2Server, Request, Response
from tests.gateways._tls import LocalTLS

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"

#: errorCode → (HTTP status, RPC status, message), as FCM answers them.
ERRORS: dict[str, tuple[int, str, str]] = {
    "UNREGISTERED": (404, "NOT_FOUND", "Requested entity was not found."),
    "INVALID_ARGUMENT": (
        400,
        "INVALID_ARGUMENT",
        "The registration token is not a valid FCM registration token",
    ),
    "SENDER_ID_MISMATCH": (403, "PERMISSION_DENIED", "SenderId mismatch"),
    "QUOTA_EXCEEDED": (
        429,
        "RESOURCE_EXHAUSTED",
        "Quota exceeded for quota metric 'Send requests per minute'",
    ),
    "UNAVAILABLE": (503, "UNAVAILABLE", "The service is currently unavailable."),
    "INTERNAL": (500, "INTERNAL", "Internal error encountered."),
    "THIRD_PARTY_AUTH_ERROR": (401, "UNAUTHENTICATED", "Auth error from APNS or Web Push Service"),
    "UNSPECIFIED_ERROR": (500, "UNKNOWN", "Unknown error"),
}
UNAUTHENTICATED = (
    "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
    "cookie or other valid authentication credential."
)
_SEND_PATH = re.compile(r"/v1/projects/([^/]+)/messages:send")
_TTL = re.compile(r"\d+(\.\d{1,9})?s")
_RESERVED = ("from", "notification", "message_type")
#: Fields of the v1 Message, AndroidConfig and AndroidNotification resources.
_MESSAGE_FIELDS = frozenset(
    {"name", "data", "notification", "android", "webpush", "apns", "fcm_options"}
    | {"token", "topic", "condition"}
)
_ANDROID_FIELDS = frozenset(
    {
        "collapse_key",
        "priority",
        "ttl",
        "restricted_package_name",
        "data",
        "notification",
        "fcm_options",
        "direct_boot_ok",
    }
)
_ANDROID_NOTIFICATION_FIELDS = frozenset(
    {
        "title",
        "body",
        "icon",
        "color",
        "sound",
        "tag",
        "click_action",
        "body_loc_key",
        "body_loc_args",
        "title_loc_key",
        "title_loc_args",
        "channel_id",
        "ticker",
        "sticky",
        "event_time",
        "local_only",
        "notification_priority",
        "default_sound",
        "default_vibrate_timings",
        "default_light_settings",
        "vibrate_timings",
        "visibility",
        "notification_count",
        "light_settings",
        "image",
        "bypass_proxy_notification",
        "proxy",
    }
)
_NOTIFICATION_PRIORITIES = (
    "PRIORITY_UNSPECIFIED",
    "PRIORITY_MIN",
    "PRIORITY_LOW",
    "PRIORITY_DEFAULT",
    "PRIORITY_HIGH",
    "PRIORITY_MAX",
)
_DURATION = re.compile(r"\d+(\.\d{1,9})?s")


@dataclass
class Failure:
    code: str  # an FcmError errorCode, a key of ERRORS
    retry_after: str | None = None
    bare: bool = False  # leave out the FcmError detail: only the RPC status remains


@dataclass
class ReceivedMessage:
    token: str | None
    message: Any
    headers: dict[str, str]
    status: int
    error: str | None  # errorCode or RPC status of the answer
    connection: int
    #: the message's name in the answer ("projects/<id>/messages/<id>"), when accepted
    name: str | None = None


class _Refusal(Exception):
    def __init__(
        self,
        status: int,
        rpc: str,
        message: str,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.rpc, self.message, self.code = status, rpc, message, code
        self.headers = headers or {}

    def response(self) -> Response:
        error: dict[str, Any] = {"code": self.status, "message": self.message, "status": self.rpc}
        if self.code:
            error["details"] = [{"@type": FCM_ERROR, "errorCode": self.code}]
        return Response.json(self.status, {"error": error}, self.headers)


def _invalid(message: str) -> _Refusal:
    return _Refusal(400, "INVALID_ARGUMENT", message, "INVALID_ARGUMENT")


class FcmServer:
    def __init__(
        self,
        tls: LocalTLS,
        *,
        project_id: str = "pushtrack-test",
        private_key: rsa.RSAPrivateKey | None = None,
    ) -> None:
        self.project_id = project_id
        self.client_email = f"firebase-adminsdk@{project_id}.iam.gserviceaccount.com"
        self.key_id = secrets.token_hex(20)
        self._key = private_key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.failures: dict[str, str | Failure] = {}
        self.token_lifetime = 3599
        self.token_endpoint_failure: tuple[int, dict[str, Any]] | None = None
        self.latency = 0.0
        self.received: list[ReceivedMessage] = []
        #: The registration token of every send that reached the server (whole), in
        #: order, whether or not its answer was sent (None: no token read).
        self.arrived: list[str | None] = []
        self.token_requests = 0
        self.access_tokens: dict[str, float] = {}  # token → expiry
        self._count = 0
        self._storm: tuple[int, str | None] = (0, None)
        self._server = H2Server(self._handle, tls.server_context())

    @property
    def url(self) -> str:
        return self._server.url

    @property
    def token_uri(self) -> str:
        return f"{self.url}/token"

    @property
    def errors(self) -> list[BaseException]:
        return self._server.errors

    @property
    def http2(self) -> H2Server:
        """The HTTP/2 server underneath, with its connection-level knobs."""
        return self._server

    @property
    def service_account(self) -> dict[str, str]:
        pem = self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        return {
            "type": "service_account",
            "project_id": self.project_id,
            "private_key_id": self.key_id,
            "private_key": pem,
            "client_email": self.client_email,
            "client_id": "1234567890",
            "token_uri": self.token_uri,
        }

    def start(self) -> FcmServer:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> FcmServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def reset(self) -> None:
        self.failures.clear()
        self.token_lifetime = 3599
        self.token_endpoint_failure = None
        self.latency = 0.0
        self.received.clear()
        self.arrived.clear()
        self.token_requests = 0
        self.access_tokens.clear()
        self._storm = (0, None)
        self._server.errors.clear()
        self._server.reset_knobs()

    def storm(self, requests: int, retry_after: str | None = None) -> None:
        """Answer the next ``requests`` well-formed sends 503 UNAVAILABLE (a 5xx storm)."""
        self._storm = (requests, retry_after)

    def expire_access_tokens(self) -> None:
        """Every access token issued so far is refused from now on (401 UNAUTHENTICATED)."""
        self.access_tokens.clear()

    # -- handling --------------------------------------------------------------

    async def _handle(self, request: Request) -> Response:
        if _SEND_PATH.fullmatch(request.path):
            self.arrived.append(_token_of(request.body))
        if self.latency:
            await asyncio.sleep(self.latency)
        if request.path == "/token" and request.method == "POST":
            return self._grant(request)
        match = _SEND_PATH.fullmatch(request.path)
        if request.method != "POST" or not match:
            return Response(404, {"content-type": "text/html"}, b"<h1>Not Found</h1>")
        message: Any = None
        name: str | None = None
        try:
            self._check_bearer(request.headers.get("authorization", ""))
            if match[1] != self.project_id:
                raise _Refusal(
                    403,
                    "PERMISSION_DENIED",
                    f"Permission 'cloudmessaging.messages.create' denied on resource "
                    f"'//cloudresourcemanager.googleapis.com/projects/{match[1]}'",
                )
            message = self._message(request.body)
            left, retry_after = self._storm
            if left > 0:
                self._storm = (left - 1, retry_after)
                status, rpc, text = ERRORS["UNAVAILABLE"]
                headers = {"retry-after": retry_after} if retry_after else {}
                raise _Refusal(status, rpc, text, "UNAVAILABLE", headers)
            self._inject(message["token"])
            self._count += 1
            name = (
                f"projects/{self.project_id}/messages/0:{int(time.time() * 1000)}%{self._count:08x}"
            )
            response, error = Response.json(200, {"name": name}), None
        except _Refusal as refusal:
            response, error, name = refusal.response(), refusal.code or refusal.rpc, None
        token = message.get("token") if isinstance(message, dict) else None
        self.received.append(
            ReceivedMessage(
                token,
                message,
                dict(request.headers),
                response.status,
                error,
                request.connection,
                name,
            )
        )
        return response

    def _grant(self, request: Request) -> Response:
        self.token_requests += 1
        if self.token_endpoint_failure is not None:
            status, body = self.token_endpoint_failure
            return Response.json(status, body)
        form = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
        if form.get("grant_type") != GRANT_TYPE:
            return Response.json(
                400, {"error": "unsupported_grant_type", "error_description": "Invalid grant_type"}
            )
        assertion = form.get("assertion", "")
        try:
            header = jwt.get_unverified_header(assertion)
            claims = jwt.decode(
                assertion,
                self._key.public_key(),
                algorithms=["RS256"],
                audience=self.token_uri,
                options={"require": ["iss", "aud", "iat", "exp", "scope"]},
            )
        except jwt.InvalidTokenError as exc:
            return Response.json(
                400, {"error": "invalid_grant", "error_description": f"Invalid JWT: {exc}"}
            )
        if header.get("kid") != self.key_id or claims["iss"] != self.client_email:
            return Response.json(
                400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
            )
        if claims["exp"] - claims["iat"] > 3600:
            return Response.json(
                400,
                {
                    "error": "invalid_grant",
                    "error_description": "Invalid JWT: lifetime over 1 hour",
                },
            )
        if SCOPE not in str(claims["scope"]).split():
            return Response.json(
                400, {"error": "invalid_scope", "error_description": "Invalid OAuth scope"}
            )
        token = "ya29.test-" + secrets.token_urlsafe(24)
        self.access_tokens[token] = time.time() + self.token_lifetime
        return Response.json(
            200, {"access_token": token, "expires_in": self.token_lifetime, "token_type": "Bearer"}
        )

    def _check_bearer(self, authorization: str) -> None:
        scheme, _, token = authorization.partition(" ")
        expires = self.access_tokens.get(token)
        if scheme.lower() != "bearer" or expires is None or expires < time.time():
            raise _Refusal(401, "UNAUTHENTICATED", UNAUTHENTICATED)

    def _message(self, body: bytes) -> dict[str, Any]:
        try:
            message = json.loads(body)["message"]
        except (ValueError, KeyError, TypeError):
            raise _invalid("Invalid JSON payload received.") from None
        if not isinstance(message, dict):
            raise _invalid("Invalid value at 'message'")
        unknown = sorted(set(message) - _MESSAGE_FIELDS)
        if unknown:
            raise _invalid(
                f"Invalid JSON payload received. Unknown name \"{unknown[0]}\" at 'message'"
            )
        if sum(k in message for k in ("token", "topic", "condition")) != 1:
            raise _invalid("Exactly one of token, topic or condition must be set")
        if not isinstance(message.get("token"), str) or not message["token"]:
            raise _invalid("The registration token is not a valid FCM registration token")
        data = message.get("data", {})
        for i, (key, value) in enumerate(data.items()):
            if not isinstance(value, str):
                raise _invalid(f"Invalid value at 'message.data[{i}].value' (TYPE_STRING)")
            if key in _RESERVED or key.startswith(("google", "gcm")):
                raise _invalid(f"Invalid data payload key: {key}")
        if len(json.dumps(data)) > 4096:
            raise _invalid("Android message is too big")
        if not set(message.get("notification", {})) <= {"title", "body", "image"}:
            raise _invalid("Invalid JSON payload received. Unknown name in 'message.notification'")
        android = message.get("android", {})
        unknown = sorted(set(android) - _ANDROID_FIELDS)
        if unknown:
            raise _invalid(
                f"Invalid JSON payload received. Unknown name \"{unknown[0]}\" at 'message.android'"
            )
        self._check_android_notification(android.get("notification", {}))
        if "ttl" in android and not _TTL.fullmatch(str(android["ttl"])):
            raise _invalid("Invalid value at 'message.android.ttl' (google.protobuf.Duration)")
        if android.get("priority", "HIGH") not in ("NORMAL", "HIGH"):
            raise _invalid("Invalid value at 'message.android.priority' (TYPE_ENUM)")
        return message

    def _check_android_notification(self, shown: dict[str, Any]) -> None:
        where = "message.android.notification"
        unknown = sorted(set(shown) - _ANDROID_NOTIFICATION_FIELDS)
        if unknown:
            raise _invalid(
                f"Invalid JSON payload received. Unknown name \"{unknown[0]}\" at '{where}'"
            )
        if "color" in shown and not re.fullmatch(r"#[0-9a-fA-F]{6}", str(shown["color"])):
            raise _invalid(f"Invalid value at '{where}.color': must be #rrggbb")
        if (
            shown.get("notification_priority", "PRIORITY_UNSPECIFIED")
            not in _NOTIFICATION_PRIORITIES
        ):
            raise _invalid(f"Invalid value at '{where}.notification_priority' (TYPE_ENUM)")
        count = shown.get("notification_count", 0)
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise _invalid(f"Invalid value at '{where}.notification_count' (TYPE_INT32)")
        light = shown.get("light_settings")
        if light is not None:
            color = light.get("color", {})
            if not all(0 <= color.get(c, 0) <= 1 for c in ("red", "green", "blue", "alpha")):
                raise _invalid(f"Invalid value at '{where}.light_settings.color'")
            for name in ("light_on_duration", "light_off_duration"):
                if not _DURATION.fullmatch(str(light.get(name, ""))):
                    raise _invalid(f"{where}.light_settings.{name} is required")

    def _inject(self, token: str) -> None:
        failure = self.failures.get(token)
        if failure is None:
            return
        if isinstance(failure, str):
            failure = Failure(failure)
        status, rpc, text = ERRORS[failure.code]
        headers = {"retry-after": failure.retry_after} if failure.retry_after else {}
        raise _Refusal(status, rpc, text, None if failure.bare else failure.code, headers)


def _token_of(body: bytes) -> str | None:
    """The registration token a send's body names, if it names one."""
    try:
        token = json.loads(body)["message"]["token"]
    except (ValueError, KeyError, TypeError):
        return None
    return token if isinstance(token, str) else None
