"""The local gateways refuse what the real ones refuse: the knobs the gateway tests rely on.

Each test here drives a local server directly with a request the real service refuses,
so a test elsewhere asserting "never refused" can fail when our client regresses.
"""

from __future__ import annotations

import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from pushtrack.delivery import _http, fcm
from pushtrack.delivery.registry import parse_config
from tests.delivery._support import APNS_KEY_ID, APNS_TEAM_ID, apns_token
from tests.gateways import ApnsServer, FcmServer, LocalTLS

pytestmark = pytest.mark.anyio


def provider_token(key: ec.EllipticCurvePrivateKey, iat: float) -> str:
    return jwt.encode(
        {"iss": APNS_TEAM_ID, "iat": int(iat)},
        key,
        algorithm="ES256",
        headers={"kid": APNS_KEY_ID},
    )


def apns_headers(token: str, topic: str) -> dict[str, str]:
    return {
        "authorization": f"bearer {token}",
        "apns-topic": topic,
        "apns-push-type": "alert",
        "apns-priority": "10",
    }


async def test_apns_refuses_provider_tokens_updated_within_20_minutes(
    apns_server: ApnsServer, tls: LocalTLS, apns_key: ec.EllipticCurvePrivateKey
) -> None:
    body = json.dumps({"aps": {"alert": "hi"}}).encode()
    url = f"{apns_server.url}/3/device/{apns_token()}"
    client = _http.Client(ca_file=tls.ca_file, timeout=10)
    try:
        first = provider_token(apns_key, time.time() - 30 * 60)
        ok = await client.post(url, headers=apns_headers(first, apns_server.topic), content=body)
        # a token signed a minute later, on the same connection: APNs refuses the update
        second = provider_token(apns_key, time.time() - 29 * 60)
        refused = await client.post(
            url, headers=apns_headers(second, apns_server.topic), content=body
        )
        # 21 minutes after the first: taken
        third = provider_token(apns_key, time.time() - 9 * 60)
        taken = await client.post(url, headers=apns_headers(third, apns_server.topic), content=body)
    finally:
        await client.aclose()
    assert ok.status_code == 200
    assert (refused.status_code, _http.json_body(refused)["reason"]) == (
        429,
        "TooManyProviderTokenUpdates",
    )
    assert taken.status_code == 200
    assert len({r.connection for r in apns_server.received}) == 1


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("'message'", {"apns_push_type": "voip"}),
        ("'message.android'", {"android": {"collapse_id": "x"}}),
        ("'message.android.notification'", {"android": {"notification": {"badge": 1}}}),
    ],
)
async def test_fcm_refuses_unknown_fields(
    fcm_server: FcmServer,
    fcm_settings: dict[str, Any],
    tls: LocalTLS,
    where: str,
    message: dict[str, Any],
) -> None:
    config = parse_config("fcm", fcm_settings)
    assert isinstance(config, fcm.FcmConfig)
    client = _http.Client(ca_file=tls.ca_file, timeout=10)
    try:
        token = await fcm.AccessToken(config.service_account, client).get()
        response = await client.post(
            f"{fcm_server.url}/v1/projects/{fcm_server.project_id}/messages:send",
            headers={"authorization": f"Bearer {token}", "content-type": "application/json"},
            content=json.dumps({"message": {"token": "fcm-token-1", **message}}).encode(),
        )
    finally:
        await client.aclose()
    assert response.status_code == 400
    error = _http.json_body(response)["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    assert "Unknown name" in error["message"]
    assert where in error["message"]
