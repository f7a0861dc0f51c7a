"""Retries by time and TTL, not by count; refused credentials pause a gateway, never fail.

The waits are shortened through the settings (seconds instead of minutes); what
the default policy waits is checked on ``RetryPolicy`` itself.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from pushtrack import config, metrics
from pushtrack.delivery.apns import ApnsConfig, ApnsGateway
from pushtrack.delivery.base import Outcome, Verdict
from pushtrack.delivery.registry import parse_config
from pushtrack.delivery.webpush import public_key_of
from pushtrack.domain.platforms import Platform
from pushtrack.jobs.dispatch import RetryPolicy
from pushtrack.worker import build_worker
from tests.delivery._support import apns_token, notification
from tests.delivery.test_dispatch import gateway, send, trail
from tests.gateways import ApnsServer, FcmServer, LocalTLS, WebPushServer
from tests.support import Service, run, service

SETTINGS: dict[str, Any] = {
    "retry_backoff_seconds": 0.02,
    "retry_max_backoff_seconds": 0.1,
    "retry_throttled_seconds": 0.1,
    "retry_window_seconds": 1.5,
    "gateway_probe_seconds": 0.3,
    "worker_lease_seconds": 5,
}


@pytest.fixture
def sender(database_url: str) -> Iterator[Service]:
    with service(database_url, **SETTINGS) as s:
        yield s


def work(svc: Service, seconds: float = 30, **overrides: Any) -> None:
    settings = config.load({"database": svc.store.url, **SETTINGS, **overrides}, env={})
    run(build_worker(settings, svc.store, poll_seconds=0.02).run_until_idle(seconds))


# -- the policy's waits ------------------------------------------------------------------


def test_default_policy_waits_minutes_not_seconds() -> None:
    policy = RetryPolicy()
    server_error = Outcome(1, Verdict.RETRY, "ServiceUnavailable", http_status=503)
    throttled = Outcome(1, Verdict.RETRY, "TooManyRequests", http_status=429)
    named = Outcome(1, Verdict.RETRY, "TooManyRequests", http_status=429, retry_after=120.0)
    waits = [policy.delay(server_error, attempts) for attempts in range(60)]
    assert all(wait <= 15 * 60 for wait in waits)
    assert max(waits[8:]) >= 5 * 60  # backs off to minutes
    assert all(policy.delay(throttled, attempts) >= 60 for attempts in range(10))
    assert policy.delay(named, 0) == 120.0  # Retry-After is honoured as given
    assert policy.window_seconds >= 3600  # a short outage does not end a campaign


def test_settings_shape_the_policy() -> None:
    settings = config.load({**SETTINGS, "max_attempts": 0}, env={})
    policy = RetryPolicy.of(settings)
    assert (policy.backoff_seconds, policy.throttled_seconds, policy.window_seconds) == (
        0.02,
        0.1,
        1.5,
    )
    assert policy.max_attempts == 0


# -- retries by time --------------------------------------------------------------------


def test_a_5xx_storm_longer_than_five_tries_is_ridden_out(
    sender: Service, apns_server: ApnsServer, apns_settings: dict[str, Any]
) -> None:
    svc = sender
    gateway(svc, 1, "apns", apns_settings)
    svc.register("p", 1, push_token=apns_token())
    apns_server.storm(8)  # eight 503s without Retry-After, then the service is back
    _, (code,) = send(svc, ["p"], content="x")
    work(svc, retry_window_seconds=3600)  # a window no busy machine runs out
    assert trail(svc, code)[-1] == ("delivered", "Success")
    assert [r.status for r in apns_server.received] == [503] * 8 + [200]


def test_a_5xx_storm_with_retry_after_is_ridden_out(
    sender: Service, fcm_server: FcmServer, fcm_settings: dict[str, Any]
) -> None:
    svc = sender
    gateway(svc, 3, "fcm", fcm_settings)
    svc.register("a", 3, push_token="fcm-token-a")
    fcm_server.storm(6, retry_after="0")
    _, (code,) = send(svc, ["a"], content="x")
    work(svc, retry_window_seconds=3600)  # a window no busy machine runs out
    assert trail(svc, code)[-1] == ("delivered", "Success")
    assert [r.status for r in fcm_server.received] == [503] * 6 + [200]


def test_web_push_5xx_storm_is_ridden_out(
    sender: Service, webpush_server: WebPushServer, webpush_settings: dict[str, Any]
) -> None:
    svc = sender
    gateway(svc, 11, "webpush", webpush_settings)
    svc.register("b", 11, push_token=webpush_server.subscribe().token)
    webpush_server.storm(7)
    _, (code,) = send(svc, ["b"], content="x")
    work(svc, retry_window_seconds=3600)  # a window no busy machine runs out
    assert trail(svc, code)[-1] == ("delivered", "Success")
    assert [r.status for r in webpush_server.received] == [503] * 7 + [201]


def test_an_endless_outage_gives_up_when_the_retry_window_ends(
    sender: Service, apns_server: ApnsServer, apns_settings: dict[str, Any]
) -> None:
    svc = sender
    gateway(svc, 1, "apns", apns_settings)
    svc.register("p", 1, push_token=apns_token())
    apns_server.storm(10_000)
    _, (code,) = send(svc, ["p"], content="x")
    work(svc, retry_window_seconds=5)
    action, description = trail(svc, code)[-1]
    assert action == "failed"
    assert description.startswith("ServiceUnavailable (gave up after ")
    assert description.endswith("the retry window of 5 s ends before the next try)")
    assert len(apns_server.received) > 5  # time, not a count of five, ended it


def test_the_message_ttl_bounds_the_retries(
    sender: Service, apns_server: ApnsServer, apns_settings: dict[str, Any]
) -> None:
    svc = sender
    gateway(svc, 1, "apns", apns_settings)
    svc.register("p", 1, push_token=apns_token())
    apns_server.storm(10_000)
    _, (code,) = send(svc, ["p"], content="x", ios_ttl=1)
    work(svc, retry_window_seconds=3600)
    action, description = trail(svc, code)[-1]
    assert action == "failed"
    assert description.endswith("the message's TTL of 1 s ends before the next try)")
    # a retry carries what is left of the TTL, never more
    stamps = [int(r.headers["apns-expiration"]) for r in apns_server.received]
    assert max(stamps) - min(stamps) <= 2


def test_throttled_without_retry_after_waits_at_least_the_throttle(
    sender: Service, apns_server: ApnsServer, apns_settings: dict[str, Any]
) -> None:
    svc = sender
    gateway(svc, 1, "apns", apns_settings)
    svc.register("p", 1, push_token=apns_token())
    apns_server.storm(1, 429, "TooManyRequests")
    _, (code,) = send(svc, ["p"], content="x")
    before = time.time()
    work(svc, retry_throttled_seconds=600, retry_window_seconds=3600)
    # the job rests until the retry: nothing more was sent, and it waits 10 minutes
    assert trail(svc, code)[-1] == ("sent", "Sent")
    assert len(apns_server.received) == 1
    [(next_at,)] = svc.db.rows("SELECT next_at FROM deliveries")
    assert next_at >= (before + 600) * 1_000_000


# -- credentials ------------------------------------------------------------------------


def _states(svc: Service) -> dict[int, Any]:
    return dict(run(svc.store.dispatch.gateway_states(svc.app.id)))


def test_refused_apns_credentials_pause_and_new_settings_resume(
    sender: Service,
    apns_server: ApnsServer,
    apns_settings: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    svc = sender
    gateway(svc, 1, "apns", {**apns_settings, "key_id": "WRONG12345"})
    svc.register("p", 1, push_token=apns_token())
    svc.register("q", 1, push_token=apns_token())
    labels = {"app": svc.app.id, "platform": "ios", "kind": "apns"}
    pauses = metrics.value(metrics.GATEWAY_PAUSES, **labels, reason="InvalidProviderToken")
    _, codes = send(svc, ["p", "q"], content="x")
    with caplog.at_level(logging.ERROR, logger="pushtrack.delivery"):
        work(svc, seconds=3, retry_window_seconds=3600)
    # said loudly, once (the probes refused after it do not repeat it)
    [said] = [r.getMessage() for r in caplog.records if r.name == "pushtrack.delivery"]
    assert said.startswith(f"PAUSED the apns gateway of app {svc.app.id} for ios")
    assert "(InvalidProviderToken)" in said
    assert "pushtrack app set-gateway" in said
    # nothing failed: the deliveries wait, the gateway is paused and says why
    for code in codes:
        assert trail(svc, code)[-1] == ("sent", "Sent")
    # getMessageLog says why they wait, and of what class it is
    waiting = [r for r in svc.log(hwid="p") + svc.log(hwid="q") if r["action"] == "sent"]
    assert {(r["failure_class"], r["retry_reason"]) for r in waiting} == {
        ("credentials", "InvalidProviderToken")
    }
    pause = _states(svc)[1].pause
    assert pause is not None
    assert pause.reason == "InvalidProviderToken"
    assert (
        metrics.value(metrics.GATEWAY_PAUSES, **labels, reason="InvalidProviderToken") == pauses + 1
    )
    assert metrics.value(metrics.GATEWAY_PAUSED, **labels) == 1
    # probes meanwhile send one batch per probe interval, not one per delivery and try
    assert all(r.reason == "InvalidProviderToken" for r in apns_server.received)

    gateway(svc, 1, "apns", apns_settings)  # the key id corrected: the pause is lifted
    assert _states(svc)[1].pause is None
    work(svc, retry_window_seconds=3600)
    for code in codes:
        assert trail(svc, code)[-1] == ("delivered", "Success")
    assert metrics.value(metrics.GATEWAY_PAUSED, **labels) == 0


def test_only_what_reached_the_gateway_counts_as_an_attempt_while_paused(
    sender: Service, apns_server: ApnsServer, apns_settings: dict[str, Any]
) -> None:
    svc = sender
    gateway(svc, 1, "apns", {**apns_settings, "key_id": "WRONG12345"})
    svc.register("p", 1, push_token=apns_token())
    svc.register("q", 1, push_token=apns_token())
    for _ in range(3):  # three jobs wake for each probe; one wins it, two wait without trying
        send(svc, ["p", "q"], content="x")
    work(svc, seconds=3, retry_window_seconds=3600)
    assert _states(svc)[1].pause is not None
    attempts = svc.db.rows("SELECT SUM(attempts) FROM deliveries")[0][0]
    # (the worker stops after 3 s: a probe in flight then reached the gateway, uncounted)
    assert 0 < len(apns_server.received) - 6 <= attempts <= len(apns_server.received)


def test_a_paused_gateway_holds_new_deliveries_back_without_saying_sent(
    sender: Service, apns_server: ApnsServer, apns_settings: dict[str, Any]
) -> None:
    svc = sender
    gateway(svc, 1, "apns", {**apns_settings, "key_id": "WRONG12345"})
    svc.register("p", 1, push_token=apns_token())
    svc.register("q", 1, push_token=apns_token())
    send(svc, ["p"], content="x")
    work(svc, seconds=1, retry_window_seconds=3600)
    assert _states(svc)[1].pause is not None
    asked = len(apns_server.received)
    # no probe due for half a minute: the new message's delivery waits, untried and unsent
    _, (code,) = send(svc, ["q"], content="y")
    work(svc, seconds=1, retry_window_seconds=3600, gateway_probe_seconds=30)
    assert trail(svc, code) == [("created", "Created")]
    assert len(apns_server.received) == asked
    assert svc.db.rows("SELECT attempts FROM deliveries WHERE hwid = 'q'") == [(0,)]
    # one whose TTL ends before the next probe ends now, saying so, never sent
    _, (short,) = send(svc, ["q"], content="z", ios_ttl=1)
    work(svc, seconds=1, retry_window_seconds=3600, gateway_probe_seconds=30)
    [created, (action, description)] = trail(svc, short)
    assert created == ("created", "Created")
    assert action == "failed"
    assert description.startswith("Gateway paused: InvalidProviderToken (gave up while")
    assert svc.db.rows("SELECT attempts FROM deliveries WHERE hwid = 'q'") == [(0,), (0,)]
    # new settings lift the pause: the waiting job goes at once, not at the next probe
    gateway(svc, 1, "apns", apns_settings)
    work(svc, seconds=5, retry_window_seconds=3600, gateway_probe_seconds=30)
    assert trail(svc, code) == [("created", "Created"), ("sent", "Sent"), ("delivered", "Success")]


def test_a_probe_resumes_a_paused_gateway_once_the_gateway_accepts(
    sender: Service, fcm_server: FcmServer, fcm_settings: dict[str, Any]
) -> None:
    svc = sender
    gateway(svc, 3, "fcm", fcm_settings)
    svc.register("a", 3, push_token="fcm-token-a")
    fcm_server.token_endpoint_failure = (400, {"error": "invalid_grant"})  # key revoked
    _, (code,) = send(svc, ["a"], content="x")
    work(svc, seconds=2, retry_window_seconds=3600)
    assert trail(svc, code)[-1] == ("sent", "Sent")
    pause = _states(svc)[3].pause
    assert pause is not None
    assert "invalid_grant" in pause.reason
    fcm_server.token_endpoint_failure = None  # fixed on Google's side; our settings unchanged
    work(svc, retry_window_seconds=3600)
    assert trail(svc, code)[-1] == ("delivered", "Success")
    assert _states(svc)[3].pause is None


def test_a_pause_outlasting_the_ttl_ends_the_delivery_saying_so(
    sender: Service, apns_server: ApnsServer, apns_settings: dict[str, Any]
) -> None:
    svc = sender
    gateway(svc, 1, "apns", {**apns_settings, "team_id": "WRONG12345"})
    svc.register("p", 1, push_token=apns_token())
    _, (code,) = send(svc, ["p"], content="x", ios_ttl=1)
    work(svc)
    action, description = trail(svc, code)[-1]
    assert action == "failed"
    assert "gave up while the gateway was paused" in description
    assert description.endswith("the message's TTL of 1 s ends before the next try)")


def test_new_settings_made_while_a_send_was_refused_are_not_paused(
    sender: Service, apns_settings: dict[str, Any]
) -> None:
    svc = sender
    gateway(svc, 1, "apns", apns_settings)
    [(version,)] = svc.db.rows("SELECT updated_at FROM gateways")
    gateway(svc, 1, "apns", apns_settings)  # new settings meanwhile
    assert not run(svc.store.dispatch.pause_gateway(svc.app.id, 1, version, "InvalidProviderToken"))
    assert _states(svc)[1].pause is None


# -- APNs provider token cadence -----------------------------------------------------------


def _apns(settings: dict[str, Any], **kwargs: Any) -> ApnsGateway:
    config = parse_config("apns", settings)
    assert isinstance(config, ApnsConfig)
    return ApnsGateway(config, **kwargs)


@pytest.mark.anyio
async def test_expired_provider_token_is_not_re_signed_into_too_many_updates(
    apns_server: ApnsServer, apns_settings: dict[str, Any]
) -> None:
    now = time.time() - 60
    async with _apns(apns_settings, clock=lambda: now) as gateway:
        [first] = await gateway.send([notification(Platform.IOS, apns_token())])
        apns_server.expire_provider_tokens()  # APNs calls a minute-old token expired
        [second] = await gateway.send([notification(Platform.IOS, apns_token())])
    assert first.verdict is Verdict.DELIVERED
    # a token re-signed now would be refused TooManyProviderTokenUpdates: the
    # credentials are refused instead, and the dispatcher pauses the gateway
    assert (second.verdict, second.reason) == (Verdict.CREDENTIALS, "ExpiredProviderToken")
    assert all(r.reason != "TooManyProviderTokenUpdates" for r in apns_server.received)
    assert len(apns_server.provider_tokens) == 1


# -- Web Push VAPID ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "subject", ["mailto:admin@localhost", "https://localhost", "https://app.localhost:8443/x"]
)
def test_a_localhost_vapid_subject_is_refused_with_the_settings(
    webpush_settings: dict[str, Any], subject: str
) -> None:
    with pytest.raises(ValueError, match="localhost"):
        parse_config("webpush", {**webpush_settings, "subject": subject})


def test_apple_refuses_a_localhost_subject(
    webpush_server: WebPushServer, tls: LocalTLS, vapid_key: ec.EllipticCurvePrivateKey
) -> None:
    """The stand-in refuses what Apple's web push does: the reason the settings check exists."""
    webpush_server.apple = True
    subscriber = webpush_server.subscribe()
    token = jwt.encode(
        {"aud": webpush_server.url, "exp": int(time.time()) + 3600, "sub": "mailto:a@localhost"},
        vapid_key,
        algorithm="ES256",
    )
    with httpx.Client(http2=True, verify=ssl.create_default_context(cafile=tls.ca_file)) as client:
        answer = client.post(
            subscriber.endpoint,
            headers={
                "authorization": f"vapid t={token}, k={public_key_of(vapid_key)}",
                "ttl": "60",
                "content-encoding": "aes128gcm",
            },
            content=b"x",
        )
    assert (answer.status_code, answer.json()) == (403, {"reason": "BadJwtToken"})


def test_apple_bad_jwt_pauses_the_web_push_gateway(
    sender: Service, webpush_server: WebPushServer, webpush_settings: dict[str, Any]
) -> None:
    svc = sender
    gateway(svc, 11, "webpush", webpush_settings)
    webpush_server.apple = True
    subscriber = webpush_server.subscribe()
    webpush_server.failures[subscriber.id] = (403,)  # Apple: {"reason": "BadJwtToken"}
    svc.register("s", 11, push_token=subscriber.token)
    _, (code,) = send(svc, ["s"], content="x")
    work(svc, seconds=2, retry_window_seconds=3600)
    assert trail(svc, code)[-1] == ("sent", "Sent")
    pause = _states(svc)[11].pause
    assert pause is not None
    assert pause.reason == "Forbidden"
