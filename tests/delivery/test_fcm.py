"""The FCM HTTP v1 gateway against the local FCM server and its OAuth2 token endpoint."""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from pushtrack.delivery._http import Response
from pushtrack.delivery.base import GatewayError, Notification, Outcome, Verdict
from pushtrack.delivery.fcm import FcmConfig, FcmGateway, outcome_of
from pushtrack.delivery.registry import build_gateway, parse_config
from pushtrack.domain.platforms import Platform
from tests.delivery._support import notification
from tests.gateways import FcmServer
from tests.gateways.fcm_server import Failure

pytestmark = pytest.mark.anyio


def fcm_config(settings: dict[str, Any]) -> FcmConfig:
    config = parse_config("fcm", settings)
    assert isinstance(config, FcmConfig)
    return config


async def send(
    settings: dict[str, Any], batch: list[Notification], clock: Callable[[], float] = time.time
) -> list[Outcome]:
    async with FcmGateway(fcm_config(settings), clock=clock) as gateway:
        return await gateway.send(batch)


def android(token: str, delivery_id: int = 1, **kwargs: Any) -> Notification:
    return notification(Platform.ANDROID, token, delivery_id, **kwargs)


async def test_delivered_with_message_shape(
    fcm_server: FcmServer, fcm_settings: dict[str, Any]
) -> None:
    sent = android("device-a", options={"ttl": 600, "collapse_id": "news"})
    [outcome] = await send(fcm_settings, [sent])

    [received] = fcm_server.received
    assert outcome.verdict is Verdict.DELIVERED
    assert outcome.description == "Success"
    assert outcome.gateway_id is not None
    assert outcome.gateway_id.startswith(f"projects/{fcm_server.project_id}/messages/")
    message = received.message
    assert message["token"] == "device-a"
    data = message["data"]
    assert all(isinstance(v, str) for v in data.values())
    assert data["p"] == sent.payload["p"]
    assert data["pw_msg"] == "1"
    assert json.loads(data["md"]) == {"mid": 42, "user_id": "user-1"}
    assert json.loads(data["u"]) == {"k": [1, 2]}
    decoded = {k: json.loads(v) if k == "md" else v for k, v in data.items()}
    assert decoded == sent.payload
    assert (data["header"], data["title"]) == ("Greeting", "Hello")  # as the Pushwoosh SDK reads
    assert message["notification"] == {"title": "Greeting", "body": "Hello"}
    assert message["android"] == {"priority": "HIGH", "ttl": "600s", "collapse_key": "news"}
    assert received.headers["authorization"].startswith("Bearer ya29.")


async def test_data_only(fcm_server: FcmServer, fcm_settings: dict[str, Any]) -> None:
    [outcome] = await send({**fcm_settings, "data_only": True}, [android("device-a")])
    assert outcome.verdict is Verdict.DELIVERED
    assert "notification" not in fcm_server.received[0].message


async def test_batch_in_order_with_one_access_token(
    fcm_server: FcmServer, fcm_settings: dict[str, Any]
) -> None:
    fcm_server.latency = 0.02
    batch = [android(f"device-{i}", i) for i in range(1, 41)]
    fcm_server.failures = {f"device-{i}": "UNREGISTERED" for i in range(1, 41, 5)}
    outcomes = await send(fcm_settings, batch)
    assert [o.delivery_id for o in outcomes] == list(range(1, 41))
    assert [o.unsubscribe for o in outcomes] == [i % 5 == 1 for i in range(1, 41)]
    assert fcm_server.token_requests == 1


FIELD_NOTES = [
    ("UNREGISTERED", 404, Verdict.FAILED, True),
    # the local server's INVALID_ARGUMENT is about the registration token: dead for good
    ("INVALID_ARGUMENT", 400, Verdict.FAILED, True),
    ("SENDER_ID_MISMATCH", 403, Verdict.FAILED, False),
    ("QUOTA_EXCEEDED", 429, Verdict.RETRY, False),
    ("UNAVAILABLE", 503, Verdict.RETRY, False),
    ("INTERNAL", 500, Verdict.RETRY, False),
    # the APNs/Web Push credentials uploaded to Firebase: the gateway pauses
    ("THIRD_PARTY_AUTH_ERROR", 401, Verdict.CREDENTIALS, False),
    ("UNSPECIFIED_ERROR", 500, Verdict.FAILED, False),
]


@pytest.mark.parametrize(("code", "status", "verdict", "unsubscribe"), FIELD_NOTES)
async def test_every_error_code_maps(
    fcm_server: FcmServer,
    fcm_settings: dict[str, Any],
    code: str,
    status: int,
    verdict: Verdict,
    unsubscribe: bool,
) -> None:
    fcm_server.failures["device-a"] = code
    [outcome] = await send(fcm_settings, [android("device-a")])
    assert (outcome.verdict, outcome.unsubscribe) == (verdict, unsubscribe)
    assert (outcome.reason, outcome.http_status) == (code, status)
    assert outcome.description.startswith(f"{code}: ")
    assert outcome.gateway_id is None
    # THIRD_PARTY_AUTH_ERROR is a 401 too, but not ours: no new access token for it.
    assert fcm_server.token_requests == 1
    assert len(fcm_server.received) == 1


def test_invalid_argument_unsubscribes_only_for_a_bad_registration_token() -> None:
    def answer(message: str) -> Response:
        detail = {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                  "errorCode": "INVALID_ARGUMENT"}  # fmt: skip
        error = {"code": 400, "message": message, "status": "INVALID_ARGUMENT",
                 "details": [detail]}  # fmt: skip
        return Response(400, {}, json.dumps({"error": error}).encode())

    bad_token = outcome_of(
        1, answer("The registration token is not a valid FCM registration token")
    )
    bad_field = outcome_of(2, answer("Invalid value at 'message.android.ttl'"))
    assert (bad_token.verdict, bad_token.unsubscribe) == (Verdict.FAILED, True)
    assert (bad_field.verdict, bad_field.unsubscribe) == (Verdict.FAILED, False)


async def test_invalid_argument_description(
    fcm_server: FcmServer, fcm_settings: dict[str, Any]
) -> None:
    fcm_server.failures["device-a"] = "INVALID_ARGUMENT"
    [outcome] = await send(fcm_settings, [android("device-a")])
    assert outcome.description == (
        "INVALID_ARGUMENT: The registration token is not a valid FCM registration token"
    )


@pytest.mark.parametrize(
    ("code", "rpc_status", "verdict"),
    [
        ("UNREGISTERED", "NOT_FOUND", Verdict.FAILED),  # not proof the token is dead
        ("QUOTA_EXCEEDED", "RESOURCE_EXHAUSTED", Verdict.RETRY),
        # without the detail only the project's permission is known refused: credentials
        ("SENDER_ID_MISMATCH", "PERMISSION_DENIED", Verdict.CREDENTIALS),
        ("UNAVAILABLE", "UNAVAILABLE", Verdict.RETRY),
        ("UNSPECIFIED_ERROR", "UNKNOWN", Verdict.RETRY),  # unknown status: HTTP 500 decides
    ],
)
async def test_errors_without_fcm_detail_map_by_status(
    fcm_server: FcmServer,
    fcm_settings: dict[str, Any],
    code: str,
    rpc_status: str,
    verdict: Verdict,
) -> None:
    fcm_server.failures["device-a"] = Failure(code, bare=True)
    [outcome] = await send(fcm_settings, [android("device-a")])
    assert (outcome.verdict, outcome.reason, outcome.unsubscribe) == (verdict, rpc_status, False)


async def test_retry_after_seconds_and_date(
    fcm_server: FcmServer, fcm_settings: dict[str, Any]
) -> None:
    in_a_minute = email.utils.formatdate(time.time() + 60, usegmt=True)
    fcm_server.failures = {
        "device-a": Failure("QUOTA_EXCEEDED", retry_after="30"),
        "device-b": Failure("UNAVAILABLE", retry_after=in_a_minute),
        "device-c": Failure("INTERNAL"),
    }
    outcomes = await send(
        fcm_settings, [android("device-a", 1), android("device-b", 2), android("device-c", 3)]
    )
    assert [o.verdict for o in outcomes] == [Verdict.RETRY] * 3
    assert outcomes[0].retry_after == 30.0
    assert outcomes[1].retry_after is not None
    assert 55 <= outcomes[1].retry_after <= 61
    assert outcomes[2].retry_after is None


async def test_rejected_access_token_is_replaced_once(
    fcm_server: FcmServer, fcm_settings: dict[str, Any]
) -> None:
    async with FcmGateway(fcm_config(fcm_settings)) as gateway:
        await gateway.send([android("device-a")])
        fcm_server.expire_access_tokens()
        outcomes = await gateway.send([android(f"device-{i}", i) for i in range(1, 11)])
    assert [o.verdict for o in outcomes] == [Verdict.DELIVERED] * 10
    assert fcm_server.token_requests == 2  # ten 401s, one new token
    assert sum(r.status == 401 for r in fcm_server.received) == 10


async def test_access_token_refused_twice_is_a_credentials_refusal(
    fcm_server: FcmServer, fcm_settings: dict[str, Any]
) -> None:
    fcm_server.token_lifetime = -1  # every token it issues is already stale
    [outcome] = await send(fcm_settings, [android("device-a")])
    assert (outcome.verdict, outcome.reason, outcome.http_status) == (
        Verdict.CREDENTIALS,
        "UNAUTHENTICATED",
        401,
    )
    assert [r.status for r in fcm_server.received] == [401, 401]


async def test_access_token_renewed_before_it_expires(
    fcm_server: FcmServer, fcm_settings: dict[str, Any]
) -> None:
    fcm_server.token_lifetime = 3599
    now = [time.time() - 3300]  # in the past: assertions must not be issued in the future
    async with FcmGateway(fcm_config(fcm_settings), clock=lambda: now[0]) as gateway:
        await gateway.send([android("device-a")])
        now[0] += 3000  # 55 minutes: still 5 minutes to go, within the margin
        await gateway.send([android("device-a")])
        assert fcm_server.token_requests == 1
        now[0] += 300
        outcomes = await gateway.send([android("device-a")])
    assert outcomes[0].verdict is Verdict.DELIVERED
    assert fcm_server.token_requests == 2
    assert all(r.status == 200 for r in fcm_server.received)


async def test_wrong_private_key_is_refused_by_the_token_endpoint(
    fcm_server: FcmServer, fcm_settings: dict[str, Any]
) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    account = {
        **fcm_server.service_account,
        "private_key": other.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode(),
    }
    with pytest.raises(GatewayError, match="invalid_grant") as caught:
        await send({**fcm_settings, "service_account": account}, [android("device-a")])
    assert caught.value.retryable is False
    assert caught.value.credentials is True  # the dispatcher pauses the gateway
    assert fcm_server.received == []


async def test_token_endpoint_outage_is_retryable(
    fcm_server: FcmServer, fcm_settings: dict[str, Any]
) -> None:
    fcm_server.token_endpoint_failure = (503, {"error": "backend_error"})
    with pytest.raises(GatewayError, match="503") as caught:
        await send(fcm_settings, [android("device-a")])
    assert caught.value.retryable is True
    assert caught.value.credentials is False


async def test_wrong_project_is_refused(
    fcm_server: FcmServer, fcm_settings: dict[str, Any]
) -> None:
    account = {**fcm_server.service_account, "project_id": "someone-else"}
    [outcome] = await send({**fcm_settings, "service_account": account}, [android("device-a")])
    assert (outcome.verdict, outcome.reason, outcome.http_status) == (
        Verdict.CREDENTIALS,
        "PERMISSION_DENIED",
        403,
    )


async def test_token_uri_override_and_service_account_as_text(
    fcm_server: FcmServer, fcm_settings: dict[str, Any]
) -> None:
    account = {**fcm_server.service_account, "token_uri": "https://oauth2.invalid/token"}
    settings = {
        **fcm_settings,
        "service_account": json.dumps(account),
        "token_uri": fcm_server.token_uri,
    }
    gateway = build_gateway("fcm", settings)
    try:
        [outcome] = await gateway.send([android("device-a")])
    finally:
        await gateway.aclose()
    assert outcome.verdict is Verdict.DELIVERED


async def test_empty_batch_needs_no_token(
    fcm_server: FcmServer, fcm_settings: dict[str, Any]
) -> None:
    assert await send(fcm_settings, []) == []
    assert fcm_server.token_requests == 0
