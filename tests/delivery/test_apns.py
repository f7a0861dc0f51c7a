"""The APNs gateway against the local APNs server (HTTP/2 over TLS, ES256 provider tokens)."""

from __future__ import annotations

import socket
import time
import uuid
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from pushtrack.delivery.apns import PRODUCTION_URL, SANDBOX_URL, ApnsConfig, ApnsGateway
from pushtrack.delivery.base import Notification, Outcome, Verdict
from pushtrack.delivery.registry import build_gateway, parse_config
from pushtrack.domain.platforms import Platform
from tests.delivery._support import apns_token, notification, pem_of
from tests.gateways import ApnsServer

#: The namespace every pushtrack version derived ``apns-id`` UUIDs under.
APNS_ID_NAMESPACE = uuid.UUID("5b0e7c1e-8f4a-4c2b-9a55-1c6d2f0e7a31")

pytestmark = pytest.mark.anyio


async def send(settings: dict[str, Any], batch: list[Notification], **kwargs: Any) -> list[Outcome]:
    async with ApnsGateway(apns_config(settings), **kwargs) as gateway:
        return await gateway.send(batch)


def apns_config(settings: dict[str, Any]) -> ApnsConfig:
    config = parse_config("apns", settings)
    assert isinstance(config, ApnsConfig)
    return config


async def test_delivered_with_payload_and_headers(
    apns_server: ApnsServer, apns_settings: dict[str, Any]
) -> None:
    token = apns_token()
    sent = notification(Platform.IOS, token, options={"ttl": 3600})
    [outcome] = await send(apns_settings, [sent])

    [received] = apns_server.received
    assert outcome == Outcome(
        1, Verdict.DELIVERED, "Success", gateway_id=received.apns_id, http_status=200
    )
    assert received.token == token
    assert received.payload == sent.payload
    assert {"aps", "p", "md", "pw_msg", "u"} <= received.payload.keys()
    assert received.payload["md"] == {"mid": 42, "user_id": "user-1"}
    headers = received.headers
    # the apns-id is uuid5 of the tracking code: the same on every resend, and the
    # same as every earlier version gave (ids already sent must never change)
    assert received.apns_id == str(uuid.uuid5(APNS_ID_NAMESPACE, sent.tracking_code)).upper()
    assert headers["apns-topic"] == apns_settings["topic"]
    assert headers["apns-push-type"] == "alert"
    assert headers["apns-priority"] == "10"
    assert abs(int(headers["apns-expiration"]) - (time.time() + 3600)) < 60
    assert headers["authorization"].startswith("bearer ")


async def test_ttl_zero_and_no_ttl(apns_server: ApnsServer, apns_settings: dict[str, Any]) -> None:
    batch = [
        notification(Platform.IOS, apns_token(), 1, options={"ttl": 0}),
        notification(Platform.IOS, apns_token(), 2),
    ]
    outcomes = await send(apns_settings, batch)
    assert [o.verdict for o in outcomes] == [Verdict.DELIVERED] * 2
    by_token = {r.token: r.headers for r in apns_server.received}
    assert by_token[batch[0].push_token]["apns-expiration"] == "0"
    assert "apns-expiration" not in by_token[batch[1].push_token]


SILENT = {"data": {"sync": 1}}


@pytest.mark.parametrize(
    ("message", "options", "push_type", "priority", "collapse_id"),
    [
        (None, {"priority": "normal"}, "alert", "5", None),
        (None, {"priority": 10, "collapse_id": "scores"}, "alert", "10", "scores"),
        (SILENT, {}, "background", "5", None),
        ({"ios_badges": 4, **SILENT}, {}, "alert", "10", None),
    ],
)
async def test_header_options(
    apns_server: ApnsServer,
    apns_settings: dict[str, Any],
    message: dict[str, Any] | None,
    options: dict[str, Any],
    push_type: str,
    priority: str,
    collapse_id: str | None,
) -> None:
    sent = notification(Platform.IOS, apns_token(), options=options, message=message)
    [outcome] = await send(apns_settings, [sent])
    assert outcome.verdict is Verdict.DELIVERED
    headers = apns_server.received[0].headers
    assert (headers["apns-push-type"], headers["apns-priority"]) == (push_type, priority)
    assert headers.get("apns-collapse-id") == collapse_id


@pytest.mark.parametrize(
    ("push_type", "suffix"), [("voip", ".voip"), ("location", ".location-query")]
)
async def test_push_type_setting_sends_every_push_as_that_type(
    apns_server: ApnsServer, apns_settings: dict[str, Any], push_type: str, suffix: str
) -> None:
    # over APNs' 4 KB for alerts, within the 5 KB of VoIP pushes
    big = notification(Platform.IOS, apns_token(), message={"content": "x" * 4300})
    [outcome] = await send({**apns_settings, "push_type": push_type}, [big])
    received = apns_server.received[-1]
    headers = received.headers
    assert (headers["apns-push-type"], headers["apns-topic"], headers["apns-priority"]) == (
        push_type,
        apns_settings["topic"] + suffix,
        "10",
    )
    expected = (
        (Verdict.DELIVERED, None) if push_type == "voip" else (Verdict.FAILED, "PayloadTooLarge")
    )
    assert (outcome.verdict, outcome.reason) == expected
    # a topic without the suffix is refused, as APNs does
    apns_server.topic, topic = apns_settings["topic"] + ".other", apns_server.topic
    try:
        [refused] = await send({**apns_settings, "push_type": push_type}, [big])
    finally:
        apns_server.topic = topic
    assert refused.reason == "TopicDisallowed"


@pytest.mark.parametrize(
    ("message", "options", "reason"),
    [
        (SILENT, {"push_type": "alert"}, "InvalidPushType"),
        (SILENT, {"priority": 10}, "BadPriority"),
        (None, {"push_type": "background", "priority": 5}, "InvalidPushType"),
    ],
)
async def test_server_refuses_push_types_as_apple_does(
    apns_server: ApnsServer,
    apns_settings: dict[str, Any],
    message: dict[str, Any] | None,
    options: dict[str, Any],
    reason: str,
) -> None:
    sent = notification(Platform.IOS, apns_token(), options=options, message=message)
    [outcome] = await send(apns_settings, [sent])
    assert (outcome.verdict, outcome.reason) == (Verdict.FAILED, reason)


async def test_batch_is_multiplexed_in_order(
    apns_server: ApnsServer, apns_settings: dict[str, Any]
) -> None:
    apns_server.latency = 0.05
    batch = [notification(Platform.IOS, apns_token(), i) for i in range(1, 61)]
    failing = {n.push_token for n in batch[::7]}
    apns_server.failures = dict.fromkeys(failing, (410, "Unregistered"))
    connections = apns_server.connections

    outcomes = await send(apns_settings, batch)

    assert [o.delivery_id for o in outcomes] == [n.delivery_id for n in batch]
    for n, outcome in zip(batch, outcomes, strict=True):
        expected = Verdict.FAILED if n.push_token in failing else Verdict.DELIVERED
        assert outcome.verdict is expected
    assert apns_server.connections == connections + 1  # one HTTP/2 connection, many streams
    assert apns_server.peak_in_flight > 1  # answered side by side, not one after another


async def test_concurrency_limit_bounds_streams(
    apns_server: ApnsServer, apns_settings: dict[str, Any]
) -> None:
    apns_server.latency = 0.05
    batch = [notification(Platform.IOS, apns_token(), i) for i in range(1, 7)]
    outcomes = await send({**apns_settings, "concurrency": 2}, batch)
    assert all(o.verdict is Verdict.DELIVERED for o in outcomes)
    assert apns_server.peak_in_flight == 2  # never more streams than the setting


FIELD_NOTES = [
    *[
        (400, reason, Verdict.FAILED, False)
        for reason in (
            "BadCollapseId",
            "BadDeviceToken",
            "BadExpirationDate",
            "BadMessageId",
            "BadPriority",
            "BadTopic",
            "DeviceTokenNotForTopic",
            "DuplicateHeaders",
            "IdleTimeout",
            "InvalidPushType",
            "MissingDeviceToken",
            "MissingTopic",
            "PayloadEmpty",
            "TopicDisallowed",
        )
    ],
    (403, "Forbidden", Verdict.FAILED, False),
    *[
        (403, reason, Verdict.CREDENTIALS, False)  # the application's credentials: pause
        for reason in (
            "BadCertificate",
            "BadCertificateEnvironment",
            "ExpiredProviderToken",
            "InvalidProviderToken",
            "MissingProviderToken",
        )
    ],
    (404, "BadPath", Verdict.FAILED, False),
    (405, "MethodNotAllowed", Verdict.FAILED, False),
    (410, "Unregistered", Verdict.FAILED, True),
    (410, "ExpiredToken", Verdict.FAILED, True),
    (413, "PayloadTooLarge", Verdict.FAILED, False),
    (429, "TooManyProviderTokenUpdates", Verdict.RETRY, False),
    (429, "TooManyRequests", Verdict.RETRY, False),
    (500, "InternalServerError", Verdict.RETRY, False),
    (503, "ServiceUnavailable", Verdict.RETRY, False),
    (503, "Shutdown", Verdict.RETRY, False),
    (502, "BadGateway", Verdict.RETRY, False),  # not in Apple's list: 5xx is transient
    (418, "Teapot", Verdict.FAILED, False),  # not in Apple's list: 4xx is permanent
]


@pytest.mark.parametrize(("status", "reason", "verdict", "unsubscribe"), FIELD_NOTES)
async def test_every_apns_answer_maps(
    apns_server: ApnsServer,
    apns_settings: dict[str, Any],
    status: int,
    reason: str,
    verdict: Verdict,
    unsubscribe: bool,
) -> None:
    token = apns_token()
    apns_server.failures[token] = (status, reason)
    [outcome] = await send(apns_settings, [notification(Platform.IOS, token)])
    assert outcome.verdict is verdict
    assert outcome.unsubscribe is unsubscribe
    assert outcome.reason == reason
    assert outcome.http_status == status
    assert outcome.description.startswith(reason)
    assert outcome.gateway_id == apns_server.received[0].apns_id
    assert outcome.retry_after is None


async def test_unregistered_keeps_the_timestamp(
    apns_server: ApnsServer, apns_settings: dict[str, Any]
) -> None:
    token = apns_token()
    apns_server.failures[token] = (410, "Unregistered")
    [outcome] = await send(apns_settings, [notification(Platform.IOS, token)])
    yesterday = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 86_400))
    assert outcome.description.startswith(f"Unregistered (since {yesterday} ")
    assert outcome.description.endswith(" UTC)")


@pytest.mark.parametrize(("header", "expected"), [("7", 7.0), ("0.5", 0.5), ("soon", None)])
async def test_retry_after_is_honoured(
    apns_server: ApnsServer, apns_settings: dict[str, Any], header: str, expected: float | None
) -> None:
    token = apns_token()
    apns_server.failures[token] = (429, "TooManyRequests", {"retry-after": header})
    [outcome] = await send(apns_settings, [notification(Platform.IOS, token)])
    assert outcome.verdict is Verdict.RETRY
    assert outcome.retry_after == expected


async def test_server_side_refusals(apns_server: ApnsServer, apns_settings: dict[str, Any]) -> None:
    """Not injected: what the server finds wrong with the requests themselves."""
    big = {"content": "x" * 5000}
    batch = [
        notification(Platform.IOS, "not-a-hex-token", 1),
        notification(Platform.IOS, apns_token(), 2, message=big),
        notification(Platform.IOS, apns_token(), 3, options={"priority": 7}),
        notification(Platform.IOS, "", 4),
    ]
    outcomes = await send(apns_settings, batch)
    assert [(o.http_status, o.reason) for o in outcomes] == [
        (400, "BadDeviceToken"),
        (413, "PayloadTooLarge"),
        (400, "BadPriority"),
        (400, "MissingDeviceToken"),
    ]
    assert all(o.verdict is Verdict.FAILED for o in outcomes)


async def test_wrong_topic(apns_server: ApnsServer, apns_settings: dict[str, Any]) -> None:
    settings = {**apns_settings, "topic": "com.example.other"}
    [outcome] = await send(settings, [notification(Platform.IOS, apns_token())])
    assert (outcome.verdict, outcome.reason) == (Verdict.FAILED, "TopicDisallowed")


@pytest.mark.parametrize("change", ["key", "key_id", "team_id"])
async def test_bad_credentials_are_a_credentials_refusal(
    apns_server: ApnsServer, apns_settings: dict[str, Any], change: str
) -> None:
    wrong = {
        "key": pem_of(ec.generate_private_key(ec.SECP256R1())),
        "key_id": "ZZZ999ZZZZ",
        "team_id": "ZZZ999ZZZZ",
    }
    batch = [notification(Platform.IOS, apns_token(), i) for i in (1, 2)]
    outcomes = await send({**apns_settings, change: wrong[change]}, batch)
    assert [(o.verdict, o.http_status, o.reason) for o in outcomes] == [
        (Verdict.CREDENTIALS, 403, "InvalidProviderToken")
    ] * 2


async def test_expired_provider_token_is_refreshed_once(
    apns_server: ApnsServer, apns_settings: dict[str, Any]
) -> None:
    now = [time.time() - 25 * 60]
    async with ApnsGateway(apns_config(apns_settings), clock=lambda: now[0]) as gateway:
        [first] = await gateway.send([notification(Platform.IOS, apns_token())])
        now[0] += 21 * 60  # old enough to be replaced without TooManyProviderTokenUpdates
        apns_server.expire_provider_tokens()
        batch = [notification(Platform.IOS, apns_token(), i) for i in range(1, 11)]
        outcomes = await gateway.send(batch)
    assert first.verdict is Verdict.DELIVERED
    assert [o.verdict for o in outcomes] == [Verdict.DELIVERED] * 10
    # Ten streams were refused at once; the token was re-signed only once.
    assert len(apns_server.provider_tokens) == 2
    refused = [r for r in apns_server.received if r.reason == "ExpiredProviderToken"]
    assert len(refused) == 10


async def test_provider_token_too_old_is_not_re_signed_within_20_minutes(
    apns_server: ApnsServer, apns_settings: dict[str, Any]
) -> None:
    # A clock two hours behind signs tokens APNs finds stale; a token just signed is
    # not replaced (APNs would answer TooManyProviderTokenUpdates): the credentials
    # are refused, and the dispatcher pauses the gateway.
    [outcome] = await send(
        apns_settings, [notification(Platform.IOS, apns_token())], clock=lambda: time.time() - 7200
    )
    assert (outcome.verdict, outcome.http_status, outcome.reason) == (
        Verdict.CREDENTIALS,
        403,
        "ExpiredProviderToken",
    )
    assert len(apns_server.received) == 1
    assert len(apns_server.provider_tokens) == 1


async def test_provider_token_is_renewed_before_the_hour(
    apns_server: ApnsServer, apns_settings: dict[str, Any]
) -> None:
    now = [time.time() - 55 * 60]
    async with ApnsGateway(apns_config(apns_settings), clock=lambda: now[0]) as gateway:
        await gateway.send([notification(Platform.IOS, apns_token())])
        now[0] += 40 * 60
        await gateway.send([notification(Platform.IOS, apns_token())])
        assert len(apns_server.provider_tokens) == 1  # 40 minutes old: still in use
        now[0] += 10 * 60
        outcomes = await gateway.send([notification(Platform.IOS, apns_token())])
    assert outcomes[0].verdict is Verdict.DELIVERED
    assert len(apns_server.provider_tokens) == 2
    assert all(r.status == 200 for r in apns_server.received)


async def test_goaway_requests_move_to_a_new_connection(
    apns_server: ApnsServer, apns_settings: dict[str, Any]
) -> None:
    apns_server.goaway_after = 4
    connections = apns_server.connections
    batch = [notification(Platform.IOS, apns_token(), i) for i in range(1, 7)]
    outcomes = await send(apns_settings, batch)
    assert [o.verdict for o in outcomes] == [Verdict.DELIVERED] * 6
    assert apns_server.connections == connections + 2
    assert sorted(r.token for r in apns_server.received) == sorted(n.push_token for n in batch)


async def test_goaway_after_every_request(
    apns_server: ApnsServer, apns_settings: dict[str, Any]
) -> None:
    apns_server.goaway_after = 1
    connections = apns_server.connections
    async with ApnsGateway(apns_config({**apns_settings, "concurrency": 1})) as gateway:
        for i in range(1, 5):
            [outcome] = await gateway.send([notification(Platform.IOS, apns_token(), i)])
            assert outcome.verdict is Verdict.DELIVERED
    assert apns_server.connections == connections + 4
    assert len(apns_server.received) == 4


async def test_dropped_connection_is_replaced_and_nothing_is_sent_twice(
    apns_server: ApnsServer, apns_settings: dict[str, Any]
) -> None:
    # The server hangs up without a GOAWAY after each answer. A request that finds the
    # connection already gone goes out on a fresh one; one written just before the
    # hang-up is seen may have reached APNs, so it ends "outcome unknown", never resent.
    apns_server.reset_after = 1
    outcomes = []
    async with ApnsGateway(apns_config({**apns_settings, "concurrency": 1})) as gateway:
        for i in range(1, 5):
            [outcome] = await gateway.send([notification(Platform.IOS, apns_token(), i)])
            outcomes.append(outcome)
    assert outcomes[0].verdict is Verdict.DELIVERED
    for outcome in outcomes:
        assert (outcome.verdict, outcome.reason) in {
            (Verdict.DELIVERED, None),
            (Verdict.FAILED, "OutcomeUnknown"),
        }, outcome
    delivered = sum(o.verdict is Verdict.DELIVERED for o in outcomes)
    assert [r.status for r in apns_server.received] == [200] * delivered
    assert len({r.connection for r in apns_server.received}) == delivered


async def test_connection_lost_with_requests_written_is_outcome_unknown(
    apns_server: ApnsServer, apns_settings: dict[str, Any]
) -> None:
    # One request answered per connection, then the connection is dropped without a
    # GOAWAY: the other two were written and may have reached APNs, so they are
    # failed as "outcome unknown" rather than sent again.
    apns_server.reset_after = 1
    batch = [notification(Platform.IOS, apns_token(), i) for i in range(1, 4)]
    outcomes = await send(apns_settings, batch)
    assert sorted((o.verdict.value, o.reason) for o in outcomes) == [
        ("delivered", None),
        ("failed", "OutcomeUnknown"),
        ("failed", "OutcomeUnknown"),
    ]
    for outcome in outcomes:
        if outcome.verdict is Verdict.FAILED:
            assert outcome.description.startswith("Outcome unknown")
    assert len(apns_server.received) == 1


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_unreachable_host_is_a_retry(apns_settings: dict[str, Any]) -> None:
    settings = {**apns_settings, "base_url": f"https://127.0.0.1:{closed_port()}"}
    outcomes = await send(settings, [notification(Platform.IOS, apns_token(), i) for i in (1, 2)])
    for outcome in outcomes:
        assert (outcome.verdict, outcome.reason) == (Verdict.RETRY, "ConnectionError")
        assert outcome.description.startswith("Connection error talking to the gateway")


async def test_timeout_after_writing_is_outcome_unknown(
    apns_server: ApnsServer, apns_settings: dict[str, Any]
) -> None:
    apns_server.latency = 1.0
    [outcome] = await send(
        {**apns_settings, "timeout": 0.2}, [notification(Platform.IOS, apns_token())]
    )
    assert (outcome.verdict, outcome.reason) == (Verdict.FAILED, "OutcomeUnknown")
    assert "no answer before the deadline" in outcome.description


async def test_registry_builds_a_working_gateway(
    apns_server: ApnsServer, apns_settings: dict[str, Any]
) -> None:
    gateway = build_gateway("apns", apns_settings)
    try:
        assert await gateway.send([]) == []
        [outcome] = await gateway.send([notification(Platform.MACOS, apns_token())])
    finally:
        await gateway.aclose()
    assert outcome.verdict is Verdict.DELIVERED


def test_hosts(apns_settings: dict[str, Any]) -> None:
    settings = {k: v for k, v in apns_settings.items() if k != "base_url"}
    assert apns_config(settings).url == PRODUCTION_URL
    assert apns_config({**settings, "sandbox": True}).url == SANDBOX_URL
