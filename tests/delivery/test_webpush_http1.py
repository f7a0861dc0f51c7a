"""Web Push to a push service that speaks only HTTP/1.1: the gateway falls back to it."""

from __future__ import annotations

from typing import Any

import pytest

from pushtrack.delivery import _http
from pushtrack.delivery.base import Verdict
from pushtrack.delivery.registry import parse_config
from pushtrack.delivery.webpush import WebPushConfig, WebPushGateway
from pushtrack.domain.platforms import Platform
from tests.delivery._support import notification
from tests.gateways import LocalTLS, WebPushServer

pytestmark = pytest.mark.anyio


def gateway(settings: dict[str, Any]) -> WebPushGateway:
    config = parse_config("webpush", settings)
    assert isinstance(config, WebPushConfig)
    return WebPushGateway(config)


async def test_an_http1_only_push_service_gets_its_pushes(
    webpush_http1_server: WebPushServer, webpush_settings: dict[str, Any]
) -> None:
    push = webpush_http1_server
    subscribers = [push.subscribe() for _ in range(6)]
    batch = [
        notification(Platform.CHROME, s.token, i, options={"ttl": 60, "collapse_id": "news"})
        for i, s in enumerate(subscribers, 1)
    ]
    async with gateway({**webpush_settings, "concurrency": 3}) as wp:
        outcomes = await wp.send(batch)
        assert [o.verdict for o in outcomes] == [Verdict.DELIVERED] * 6, outcomes
        assert all(o.http_status == 201 for o in outcomes)
        # what the service decrypted is what was sent, with the same headers as over HTTP/2
        received = {r.subscriber: r for r in push.received}
        for s, sent in zip(subscribers, batch, strict=True):
            assert received[s.id].payload == sent.payload
            assert (received[s.id].headers["ttl"], received[s.id].headers["topic"]) == (
                "60",
                "news",
            )
        # never a byte of HTTP/2 to it; at most the gateway's concurrency at once (plus the
        # first connection, which offered h2 and was closed unused)
        assert push.http1.h2_refused == 0
        assert push.http1.peak_connections <= 3 + 1
        connections = push.http1.connections

        # remembered: the next pushes go over the kept-alive HTTP/1.1 connections
        more = [notification(Platform.CHROME, s.token, 10 + i) for i, s in enumerate(subscribers)]
        again = await wp.send(more[:3])
        assert [o.verdict for o in again] == [Verdict.DELIVERED] * 3
        assert push.http1.connections == connections
    assert len(push.received) == 9  # each push once


async def test_a_push_service_without_alpn_is_spoken_to_over_http1(
    tls: LocalTLS, webpush_settings: dict[str, Any]
) -> None:
    with WebPushServer(tls, http1=True, alpn=None) as push:
        subscriber = push.subscribe()
        async with gateway(webpush_settings) as wp:
            [outcome] = await wp.send([notification(Platform.FIREFOX, subscriber.token)])
        assert outcome.verdict is Verdict.DELIVERED, outcome
        assert push.http1.h2_refused == 0
        assert not push.errors


async def test_http1_answers_map_like_http2_ones(
    webpush_http1_server: WebPushServer, webpush_settings: dict[str, Any]
) -> None:
    push = webpush_http1_server
    gone, throttled = push.subscribe(), push.subscribe()
    push.unsubscribe(gone)
    push.failures[throttled.id] = (429, {"retry-after": "120"})
    async with gateway(webpush_settings) as wp:
        first, second = await wp.send(
            [
                notification(Platform.CHROME, gone.token, 1),
                notification(Platform.CHROME, throttled.token, 2),
            ]
        )
    assert (first.verdict, first.unsubscribe, first.http_status) == (Verdict.FAILED, True, 410)
    assert (second.verdict, second.retry_after) == (Verdict.RETRY, 120.0)


async def test_no_answer_over_http1_is_outcome_unknown_and_not_sent_again(
    webpush_http1_server: WebPushServer, webpush_settings: dict[str, Any]
) -> None:
    push = webpush_http1_server
    subscriber = push.subscribe()
    push.latency = 2.0
    async with gateway({**webpush_settings, "timeout": 0.5}) as wp:
        [outcome] = await wp.send([notification(Platform.CHROME, subscriber.token)])
    assert (outcome.verdict, outcome.reason) == (Verdict.FAILED, "OutcomeUnknown")
    assert outcome.description.startswith("Outcome unknown")
    push.latency = 0.0


async def test_the_endpoint_rule_holds_over_http1(
    webpush_http1_server: WebPushServer, webpush_settings: dict[str, Any]
) -> None:
    """The push service's host must still be allowed: nothing connects to it otherwise."""
    push = webpush_http1_server
    subscriber = push.subscribe()
    connections = push.http1.connections
    settings = {**webpush_settings, "endpoint_hosts": ["push.example.com"]}
    async with gateway(settings) as wp:
        [outcome] = await wp.send([notification(Platform.CHROME, subscriber.token)])
    assert (outcome.verdict, outcome.reason) == (Verdict.FAILED, "EndpointNotAllowed")
    assert push.http1.connections == connections
    assert push.received == []


async def test_apns_and_fcm_clients_never_fall_back(
    webpush_http1_server: WebPushServer, tls: LocalTLS
) -> None:
    """Only Web Push falls back: APNs and FCM speak HTTP/2 only, and say so."""
    client = _http.Client(ca_file=tls.ca_file, timeout=5)
    try:
        with pytest.raises(_http.ConnectError, match="does not speak HTTP/2") as info:
            await client.post(
                webpush_http1_server.url + "/push/x", headers={"ttl": "0"}, content=b"{}"
            )
    finally:
        await client.aclose()
    assert not info.value.may_have_reached
    assert webpush_http1_server.http1.h2_refused == 0
    assert webpush_http1_server.received == []


async def test_h2_is_offered_again_after_the_recheck_interval(
    webpush_http1_server: WebPushServer,
    webpush_settings: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    push = webpush_http1_server
    monkeypatch.setattr(_http, "HTTP1_RECHECK", 0.0)  # every request offers h2 again
    subscriber = push.subscribe()
    connections = push.http1.connections
    async with gateway(webpush_settings) as wp:
        for i in (1, 2):
            [outcome] = await wp.send([notification(Platform.CHROME, subscriber.token, i)])
            assert outcome.verdict is Verdict.DELIVERED
    # each push: one connection offering h2 (closed unused); the HTTP/1.1 one is kept
    assert push.http1.connections == connections + 3
    assert push.http1.h2_refused == 0
    assert len(push.received) == 2
