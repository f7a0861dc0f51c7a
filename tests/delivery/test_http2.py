"""HTTP/2 connection life of the gateways against the local servers' connection-level knobs.

What real gateways do to a connection, and what the gateways must do about it
(docs/api.md §7): connections stay open while idle; the server's stream limit is
honoured as it changes; on GOAWAY the streams at or below the last stream id are
answered on the old connection and only the others go on a new one; every
request has a hard deadline, after which the connection is replaced; a request
that may have reached the gateway is never sent again.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any

import pytest

from pushtrack.delivery import _http
from pushtrack.delivery.apns import ApnsGateway
from pushtrack.delivery.base import Notification, Outcome, Verdict
from pushtrack.delivery.fcm import FcmGateway
from pushtrack.delivery.registry import parse_config
from pushtrack.delivery.webpush import WebPushGateway
from pushtrack.domain.platforms import Platform
from tests.delivery._support import apns_token, notification
from tests.gateways import ApnsServer, FcmServer, WebPushServer

pytestmark = pytest.mark.anyio

#: Guards against a hang: far above what any of these sends takes when it works.
HANG = 60.0


def apns(settings: dict[str, Any], **overrides: Any) -> ApnsGateway:
    config = parse_config("apns", {**settings, **overrides})
    return ApnsGateway(config)  # type: ignore[arg-type]


def fcm(settings: dict[str, Any], **overrides: Any) -> FcmGateway:
    config = parse_config("fcm", {**settings, **overrides})
    return FcmGateway(config)  # type: ignore[arg-type]


def ios_batch(n: int) -> list[Notification]:
    return [notification(Platform.IOS, apns_token(), i) for i in range(1, n + 1)]


def android_batch(n: int) -> list[Notification]:
    return [notification(Platform.ANDROID, f"fcm-{apns_token()}", i) for i in range(1, n + 1)]


def webpush(settings: dict[str, Any], **overrides: Any) -> WebPushGateway:
    config = parse_config("webpush", {**settings, **overrides})
    return WebPushGateway(config)  # type: ignore[arg-type]


def chrome_batch(server: WebPushServer, n: int) -> list[Notification]:
    return [notification(Platform.CHROME, server.subscribe().token, i) for i in range(1, n + 1)]


async def send(
    gateway: ApnsGateway | FcmGateway | WebPushGateway, batch: list[Notification]
) -> list[Outcome]:
    return await asyncio.wait_for(gateway.send(batch), HANG)


def verdicts(outcomes: list[Outcome]) -> collections.Counter[tuple[Verdict, str | None]]:
    return collections.Counter((o.verdict, o.reason) for o in outcomes)


# -- connections stay open ---------------------------------------------------------


@pytest.mark.slow
async def test_idle_connection_is_kept_open(
    apns_server: ApnsServer, apns_settings: dict[str, Any]
) -> None:
    async with apns(apns_settings) as gateway:
        await send(gateway, ios_batch(1))
        await asyncio.sleep(6)  # idle for longer than an HTTP client's usual keep-alive
        await send(gateway, ios_batch(1))
    first, second = apns_server.received
    assert first.connection == second.connection


async def test_idle_connection_is_checked_with_a_ping_and_replaced_when_silent(
    apns_server: ApnsServer, apns_settings: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_http, "IDLE_PING_AFTER", 0.2)  # the setting, shortened for the test
    async with apns(apns_settings, timeout=2.0) as gateway:
        await send(gateway, ios_batch(1))
        await send(gateway, ios_batch(1))  # not idle yet: the same connection, no PING
        apns_server.http2.silence_connections()  # a NAT forgets the connection
        await asyncio.sleep(0.3)
        [outcome] = await send(gateway, ios_batch(1))
    assert outcome.verdict is Verdict.DELIVERED  # on a new connection, sent once
    first, second, third = apns_server.received
    assert first.connection == second.connection != third.connection


# -- the server's stream limit, as it changes ---------------------------------------


async def test_apns_stream_limit_lowered_to_one_mid_flight_then_raised(
    apns_server: ApnsServer, apns_settings: dict[str, Any]
) -> None:
    apns_server.latency = 0.02
    # down to one stream after the first taken, with a hundred in flight; up again later
    apns_server.http2.stream_limits = {1: 1, 110: 100}
    batch = ios_batch(200)
    async with apns(apns_settings) as gateway:
        outcomes = await send(gateway, batch)
        assert verdicts(outcomes) == {(Verdict.DELIVERED, None): 200}
        # the connection is still good for more
        assert verdicts(await send(gateway, ios_batch(5))) == {(Verdict.DELIVERED, None): 5}
    per_token = collections.Counter(r.token for r in apns_server.received)
    assert set(per_token.values()) == {1}
    assert {r.connection for r in apns_server.received} == {apns_server.connections}
    # (the fixture checks the server saw no stream beyond the limit it had announced)


async def test_fcm_stream_limit_lowered_to_one_mid_flight_then_raised(
    fcm_server: FcmServer, fcm_settings: dict[str, Any]
) -> None:
    fcm_server.latency = 0.02
    fcm_server.http2.stream_limits = {2: 1, 80: 100}
    async with fcm(fcm_settings) as gateway:
        outcomes = await send(gateway, android_batch(150))
    assert verdicts(outcomes) == {(Verdict.DELIVERED, None): 150}
    assert set(collections.Counter(r.token for r in fcm_server.received).values()) == {1}


async def test_a_connection_that_starts_with_one_stream_uses_more_once_raised(
    apns_server: ApnsServer, apns_settings: dict[str, Any]
) -> None:
    # APNs starts a new connection with a low stream limit and raises it later
    apns_server.latency = 0.05
    apns_server.http2.max_streams = 1
    apns_server.http2.stream_limits = {3: 100}
    connections = apns_server.connections
    batch = ios_batch(60)
    async with apns(apns_settings) as gateway:
        outcomes = await send(gateway, batch)
    assert verdicts(outcomes) == {(Verdict.DELIVERED, None): 60}
    assert collections.Counter(r.token for r in apns_server.received) == {
        n.push_token: 1 for n in batch
    }
    assert apns_server.connections == connections + 1
    assert apns_server.peak_in_flight > 1  # the raised limit was used, not one at a time
    # (the fixture checks the server saw no stream beyond the limit it had announced)


async def test_a_request_that_found_no_stream_in_time_leaves_the_gateway_usable(
    apns_server: ApnsServer, apns_settings: dict[str, Any]
) -> None:
    apns_server.http2.stream_limits = {1: 0}  # after its first stream, a connection takes none
    connections = apns_server.connections
    async with apns(apns_settings, timeout=0.5) as gateway:
        [first] = await send(gateway, ios_batch(1))
        [waited] = await send(gateway, ios_batch(1))
        [after] = await send(gateway, ios_batch(1))
    assert first.verdict is Verdict.DELIVERED
    # never written (no stream came before the deadline): tried again later, not lost
    assert (waited.verdict, waited.reason) == (Verdict.RETRY, "Timeout")
    # the connection that gave no stream was replaced: the gateway is not stuck with it
    assert after.verdict is Verdict.DELIVERED
    assert [r.connection for r in apns_server.received] == [connections + 1, connections + 2]


async def test_web_push_stream_limit_lowered_to_one_mid_flight_then_raised(
    webpush_server: WebPushServer, webpush_settings: dict[str, Any]
) -> None:
    webpush_server.latency = 0.02
    webpush_server.http2.stream_limits = {1: 1, 40: 100}
    batch = chrome_batch(webpush_server, 80)
    async with webpush(webpush_settings) as gateway:
        outcomes = await send(gateway, batch)
    assert verdicts(outcomes) == {(Verdict.DELIVERED, None): 80}
    assert set(collections.Counter(r.subscriber for r in webpush_server.received).values()) == {1}


# -- GOAWAY by RFC 9113 ------------------------------------------------------------------


async def test_apns_goaway_streams_in_flight_are_answered_once(
    apns_server: ApnsServer, apns_settings: dict[str, Any]
) -> None:
    # GOAWAY as soon as five streams are taken, while they are still being processed:
    # those five are answered on the old connection, the others go on a new one.
    apns_server.latency = 0.2
    apns_server.http2.goaway_after = 5
    apns_server.http2.goaway_early = True
    connections = apns_server.connections
    batch = ios_batch(8)
    async with apns(apns_settings) as gateway:
        outcomes = await send(gateway, batch)
    assert verdicts(outcomes) == {(Verdict.DELIVERED, None): 8}
    per_token = collections.Counter(r.token for r in apns_server.received)
    assert per_token == {n.push_token: 1 for n in batch}  # never sent twice
    assert apns_server.connections == connections + 2


async def test_fcm_goaway_streams_in_flight_are_answered_once(
    fcm_server: FcmServer, fcm_settings: dict[str, Any]
) -> None:
    fcm_server.latency = 0.2
    fcm_server.http2.goaway_after = 5  # the token request is one of them
    fcm_server.http2.goaway_early = True
    batch = android_batch(8)
    async with fcm(fcm_settings) as gateway:
        outcomes = await send(gateway, batch)
    assert verdicts(outcomes) == {(Verdict.DELIVERED, None): 8}
    per_token = collections.Counter(r.token for r in fcm_server.received)
    assert per_token == {n.push_token: 1 for n in batch}


async def test_web_push_goaway_streams_in_flight_are_answered_once(
    webpush_server: WebPushServer, webpush_settings: dict[str, Any]
) -> None:
    webpush_server.latency = 0.2
    webpush_server.http2.goaway_after = 5
    webpush_server.http2.goaway_early = True
    batch = chrome_batch(webpush_server, 8)
    async with webpush(webpush_settings) as gateway:
        outcomes = await send(gateway, batch)
    assert verdicts(outcomes) == {(Verdict.DELIVERED, None): 8}
    per_subscriber = collections.Counter(r.subscriber for r in webpush_server.received)
    assert per_subscriber == dict.fromkeys(webpush_server.subscribers, 1)


async def test_refused_streams_are_sent_again(
    apns_server: ApnsServer, apns_settings: dict[str, Any]
) -> None:
    apns_server.http2.refuse_next = 3  # RST_STREAM(REFUSED_STREAM): never processed
    batch = ios_batch(5)
    async with apns(apns_settings) as gateway:
        outcomes = await send(gateway, batch)
    assert verdicts(outcomes) == {(Verdict.DELIVERED, None): 5}
    assert collections.Counter(r.token for r in apns_server.received) == {
        n.push_token: 1 for n in batch
    }


# -- deadlines, and what may have reached the gateway -----------------------------------


async def test_stalled_server_deadline_outcome_unknown_then_a_new_connection(
    apns_server: ApnsServer, apns_settings: dict[str, Any]
) -> None:
    apns_server.http2.stall_after = 0  # takes every stream, answers none
    async with apns(apns_settings, timeout=0.5) as gateway:
        [outcome] = await send(gateway, ios_batch(1))
        # written and unanswered: it may have reached APNs, so it is not sent again
        assert (outcome.verdict, outcome.reason) == (Verdict.FAILED, "OutcomeUnknown")
        assert outcome.description.startswith("Outcome unknown")
        assert apns_server.http2.taken == 1
        stalled_on = apns_server.connections
        apns_server.http2.stall_after = None
        [outcome] = await send(gateway, ios_batch(1))
    assert outcome.verdict is Verdict.DELIVERED
    assert apns_server.received[-1].connection == stalled_on + 1  # the connection was replaced


async def test_no_free_stream_before_the_deadline_is_a_retry(
    apns_server: ApnsServer, apns_settings: dict[str, Any]
) -> None:
    # The server allows no stream at all: the request is never written, so it may be
    # tried again later.
    apns_server.http2.max_streams = 0
    async with apns(apns_settings, timeout=0.5) as gateway:
        [outcome] = await send(gateway, ios_batch(1))
    assert (outcome.verdict, outcome.reason) == (Verdict.RETRY, "Timeout")
    assert apns_server.http2.taken == 0


async def test_fcm_stalled_server_is_outcome_unknown(
    fcm_server: FcmServer, fcm_settings: dict[str, Any]
) -> None:
    fcm_server.http2.stall_after = 1  # the access token is fetched, the message never answered
    async with fcm(fcm_settings, timeout=0.5) as gateway:
        [outcome] = await send(gateway, android_batch(1))
    assert (outcome.verdict, outcome.reason) == (Verdict.FAILED, "OutcomeUnknown")
    assert fcm_server.http2.taken == 2


# -- framing: the client reads common frames itself, the rest through jh2 ----------


async def test_header_blocks_read_alike_on_either_path_share_one_hpack_state(
    tls: Any,
) -> None:
    """Answers whose header block fits one frame are read by the client itself; one
    split into HEADERS and CONTINUATION frames, or with a body, goes through jh2.
    Both decode with the connection's one HPACK state, so answers of every shape,
    interleaved, keep their own headers, and the connection stays usable."""
    from tests.gateways._h2server import H2Server, Request
    from tests.gateways._h2server import Response as H2Response

    async def handler(request: Request) -> H2Response:
        n = int(request.path.rsplit("/", 1)[1])
        headers = {"x-n": str(n), "x-same": "repeated-value"}
        if n % 5 == 0:
            headers["x-big"] = "b" * 20_000  # past one 16 KiB frame: CONTINUATION
        body = request.body if n % 3 == 0 else b""
        return H2Response(200 + n % 2, headers, body)

    with H2Server(handler, tls.server_context()) as server:
        client = _http.Client(ca_file=tls.ca_file, timeout=HANG)
        try:
            for _ in range(2):  # the second round on the same connection
                answers = await asyncio.gather(
                    *(
                        client.post(
                            f"{server.url}/n/{n}",
                            headers={"content-type": "application/json", "x-n": str(n)},
                            content=b'{"n": %d}' % n,
                        )
                        for n in range(1, 61)
                    )
                )
                for n, answer in enumerate(answers, start=1):
                    assert answer.status_code == 200 + n % 2
                    assert answer.headers["x-n"] == str(n)
                    assert answer.headers["x-same"] == "repeated-value"
                    assert answer.headers.get("x-big") == ("b" * 20_000 if n % 5 == 0 else None)
                    assert answer.content == (b'{"n": %d}' % n if n % 3 == 0 else b"")
        finally:
            await client.aclose()
        assert server.connections == 1
        assert server.errors == []
