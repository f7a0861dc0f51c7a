"""The Web Push gateway against the local push service, which decrypts what it receives."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from pushtrack.delivery.base import Notification, Outcome, Verdict
from pushtrack.delivery.registry import build_gateway, parse_config
from pushtrack.delivery.webpush import WebPushConfig, WebPushGateway, b64url_encode
from pushtrack.domain.platforms import Platform
from tests.delivery._support import notification
from tests.gateways import WebPushServer

pytestmark = pytest.mark.anyio


def webpush_config(settings: dict[str, Any]) -> WebPushConfig:
    config = parse_config("webpush", settings)
    assert isinstance(config, WebPushConfig)
    return config


async def send(settings: dict[str, Any], batch: list[Notification]) -> list[Outcome]:
    async with WebPushGateway(webpush_config(settings)) as gateway:
        return await gateway.send(batch)


def chrome(token: str, delivery_id: int = 1, **kwargs: Any) -> Notification:
    return notification(Platform.CHROME, token, delivery_id, **kwargs)


async def test_encrypted_round_trip(
    webpush_server: WebPushServer, webpush_settings: dict[str, Any]
) -> None:
    subscriber = webpush_server.subscribe()
    sent = notification(Platform.FIREFOX, subscriber.token, options={"ttl": 900})
    [outcome] = await send(webpush_settings, [sent])

    [received] = webpush_server.received
    assert outcome.verdict is Verdict.DELIVERED, outcome
    assert outcome.description == "Success"
    assert outcome.http_status == 201
    assert outcome.gateway_id is not None
    assert outcome.gateway_id.startswith(f"{webpush_server.url}/message/")
    # The push service (here also the browser) decrypted exactly what was sent.
    assert received.payload == sent.payload
    assert {"p", "md", "pw_msg", "u", "header", "body"} <= received.payload.keys()
    assert received.headers["ttl"] == "900"
    assert received.headers["urgency"] == "normal"
    assert received.headers["content-encoding"] == "aes128gcm"
    assert received.claims is not None
    assert received.claims["aud"] == webpush_server.url
    assert received.claims["sub"] == "mailto:ops@example.com"
    assert time.time() < received.claims["exp"] <= time.time() + 24 * 3600


async def test_headers_from_options_and_defaults(
    webpush_server: WebPushServer, webpush_settings: dict[str, Any]
) -> None:
    a, b = webpush_server.subscribe(), webpush_server.subscribe()
    batch = [
        chrome(a.token, 1, options={"urgency": "high", "collapse_id": "scores"}),
        chrome(b.token, 2),
    ]
    outcomes = await send({**webpush_settings, "default_ttl": 60, "urgency": "low"}, batch)
    assert [o.verdict for o in outcomes] == [Verdict.DELIVERED] * 2
    headers = {r.subscriber: r.headers for r in webpush_server.received}
    assert (headers[a.id]["urgency"], headers[a.id]["topic"]) == ("high", "scores")
    assert (headers[b.id]["urgency"], headers[b.id]["ttl"]) == ("low", "60")
    assert "topic" not in headers[b.id]
    # One VAPID token per push service, reused.
    assert headers[a.id]["authorization"] == headers[b.id]["authorization"]


async def test_raw_key_and_application_server_key(
    webpush_server: WebPushServer, webpush_settings: dict[str, Any]
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    raw = b64url_encode(key.private_numbers().private_value.to_bytes(32, "big"))
    settings = {**webpush_settings, "vapid_private_key": raw}
    gateway = build_gateway("webpush", settings)
    assert isinstance(gateway, WebPushGateway)
    try:
        mine = webpush_server.subscribe(application_server_key=gateway.vapid.public_key)
        theirs = webpush_server.subscribe(application_server_key=b64url_encode(b"\x04" * 65))
        outcomes = await gateway.send([chrome(mine.token, 1), chrome(theirs.token, 2)])
    finally:
        await gateway.aclose()
    assert outcomes[0].verdict is Verdict.DELIVERED
    assert (outcomes[1].verdict, outcomes[1].reason, outcomes[1].unsubscribe) == (
        Verdict.FAILED,
        "Forbidden",
        False,
    )
    assert "does not correspond to the sender ID" in outcomes[1].description


RFC_8030 = [
    (400, Verdict.FAILED, "BadRequest", False),
    (401, Verdict.CREDENTIALS, "Unauthorized", False),  # VAPID refused: pause
    (403, Verdict.FAILED, "Forbidden", False),  # subscribed with another key: this device
    (404, Verdict.FAILED, "NotFound", True),
    (410, Verdict.FAILED, "Gone", True),
    (413, Verdict.FAILED, "PayloadTooLarge", False),
    (429, Verdict.RETRY, "TooManyRequests", False),
    (500, Verdict.RETRY, "ServerError", False),
    (503, Verdict.RETRY, "ServerError", False),
    (418, Verdict.FAILED, "HTTP 418", False),
]


@pytest.mark.parametrize(("status", "verdict", "reason", "unsubscribe"), RFC_8030)
async def test_every_status_maps(
    webpush_server: WebPushServer,
    webpush_settings: dict[str, Any],
    status: int,
    verdict: Verdict,
    reason: str,
    unsubscribe: bool,
) -> None:
    subscriber = webpush_server.subscribe()
    webpush_server.failures[subscriber.id] = (status,)
    [outcome] = await send(webpush_settings, [chrome(subscriber.token)])
    assert (outcome.verdict, outcome.reason, outcome.unsubscribe) == (verdict, reason, unsubscribe)
    assert outcome.http_status == status
    assert outcome.description.startswith(reason)


async def test_gone_and_unknown_subscriptions_unsubscribe(
    webpush_server: WebPushServer, webpush_settings: dict[str, Any]
) -> None:
    gone = webpush_server.subscribe()
    webpush_server.unsubscribe(gone)
    unknown = json.loads(webpush_server.subscribe().token)
    unknown["endpoint"] = f"{webpush_server.url}/push/nobody"
    outcomes = await send(webpush_settings, [chrome(gone.token, 1), chrome(json.dumps(unknown), 2)])
    assert [(o.reason, o.unsubscribe) for o in outcomes] == [("Gone", True), ("NotFound", True)]
    assert outcomes[0].description == (
        "Gone: Request did not validate: push subscription has unsubscribed or expired."
    )


@pytest.mark.parametrize(("header", "expected"), [("120", 120.0), (None, None)])
async def test_too_many_requests_honours_retry_after(
    webpush_server: WebPushServer,
    webpush_settings: dict[str, Any],
    header: str | None,
    expected: float | None,
) -> None:
    subscriber = webpush_server.subscribe()
    webpush_server.failures[subscriber.id] = (429, {"retry-after": header} if header else {})
    [outcome] = await send(webpush_settings, [chrome(subscriber.token)])
    assert (outcome.verdict, outcome.retry_after) == (Verdict.RETRY, expected)


async def test_payload_too_large(
    webpush_server: WebPushServer, webpush_settings: dict[str, Any]
) -> None:
    subscriber = webpush_server.subscribe()
    big = chrome(subscriber.token, message={"content": "x" * 5000})
    [outcome] = await send(webpush_settings, [big])
    assert (outcome.verdict, outcome.reason, outcome.http_status) == (
        Verdict.FAILED,
        "PayloadTooLarge",
        413,
    )


def subscription(**changes: Any) -> str:
    base: dict[str, Any] = {
        "endpoint": "https://push.example.com/push/abc",
        "keys": {"p256dh": b64url_encode(b"\x04" + b"\x01" * 64), "auth": "AAAAAAAAAAAAAAAAAAAAAA"},
    }
    base.update(changes)
    return json.dumps(base)


@pytest.mark.parametrize(
    ("token", "why"),
    [
        ("f00dbabe", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        (subscription(endpoint="http://push.example.com/x"), "https URL"),
        (subscription(endpoint="https:///x"), "no host"),
        (subscription(keys=None), "keys missing"),
        (subscription(keys={"p256dh": "AAAA", "auth": "AAAAAAAAAAAAAAAAAAAAAA"}), "p256dh"),
        (subscription(keys={"p256dh": b64url_encode(b"\x04" * 65), "auth": "AAAA"}), "p256dh"),
    ],
)
async def test_invalid_subscription_is_not_sent(
    webpush_server: WebPushServer, webpush_settings: dict[str, Any], token: str, why: str
) -> None:
    [outcome] = await send(webpush_settings, [chrome(token)])
    assert (outcome.verdict, outcome.reason, outcome.unsubscribe) == (
        Verdict.FAILED,
        "InvalidSubscription",
        False,
    )
    assert outcome.description.startswith("Invalid subscription: ")
    assert why in outcome.description
    assert webpush_server.received == []


async def test_short_auth_secret_is_invalid(
    webpush_server: WebPushServer, webpush_settings: dict[str, Any]
) -> None:
    token = json.loads(webpush_server.subscribe().token)
    token["keys"]["auth"] = "AAAA"
    [outcome] = await send(webpush_settings, [chrome(json.dumps(token))])
    assert outcome.description == "Invalid subscription: keys.auth must hold 16 bytes"


async def test_mixed_batch_keeps_order(
    webpush_server: WebPushServer, webpush_settings: dict[str, Any]
) -> None:
    subscribers = [webpush_server.subscribe() for _ in range(12)]
    for s in subscribers[::3]:
        webpush_server.unsubscribe(s)
    batch = [chrome(s.token, i) for i, s in enumerate(subscribers, 1)]
    batch.append(chrome("garbage", 13))
    outcomes = await send(webpush_settings, batch)
    assert [o.delivery_id for o in outcomes] == list(range(1, 14))
    assert [o.reason for o in outcomes] == ["Gone" if i % 3 == 0 else None for i in range(12)] + [
        "InvalidSubscription"
    ]
    delivered = [r.payload["p"] for r in webpush_server.received if r.status == 201]
    assert sorted(delivered) == sorted(n.payload["p"] for i, n in enumerate(batch[:12]) if i % 3)


async def test_an_endpoint_outside_the_allowed_hosts_is_never_contacted(
    webpush_server: WebPushServer, webpush_settings: dict[str, Any]
) -> None:
    # a subscription pointing into the service's own network, as an attacker would
    inward = webpush_server.subscribe()
    default = {k: v for k, v in webpush_settings.items() if k != "endpoint_hosts"}
    [outcome] = await send(default, [chrome(inward.token)])
    assert (outcome.verdict, outcome.reason, outcome.unsubscribe) == (
        Verdict.FAILED,
        "EndpointNotAllowed",
        False,
    )
    assert outcome.description == (
        "Endpoint not allowed: endpoint host 127.0.0.1 is not a public address"
        " (setting outbound_allow)"
    )
    # a wildcard allows the standard port only (and only public addresses: test_outbound)
    [outcome] = await send({**default, "endpoint_hosts": ["*.0.0.1"]}, [chrome(inward.token)])
    assert outcome.reason == "EndpointNotAllowed"
    assert outcome.description.endswith("is not allowed (443 only)")
    assert webpush_server.received == []
    # named explicitly by the operator, it is reached
    [outcome] = await send(webpush_settings, [chrome(inward.token)])
    assert outcome.verdict is Verdict.DELIVERED


@pytest.mark.parametrize("hosts", [["https://x.example"], ["a b"], [3], "fcm.googleapis.com"])
def test_endpoint_hosts_must_be_host_names(webpush_settings: dict[str, Any], hosts: Any) -> None:
    with pytest.raises(ValueError, match="endpoint_hosts"):
        parse_config("webpush", {**webpush_settings, "endpoint_hosts": hosts})
