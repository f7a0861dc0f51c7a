"""Sending end to end: HTTP API → store → worker → local gateway servers → audit trail."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pushtrack import config, metrics
from pushtrack.worker import build_worker
from tests.delivery._support import apns_token
from tests.gateways import ApnsServer, FcmServer, WebPushServer
from tests.support import Service, delivery_id, run, service

SETTINGS = {"max_attempts": 3, "retry_backoff_seconds": 0.05, "worker_lease_seconds": 5}


@pytest.fixture
def sender(database_url: str) -> Iterator[Service]:
    with service(database_url, **SETTINGS) as s:
        yield s


def work(svc: Service, seconds: float = 30) -> None:
    """Run a worker over the service's store until nothing is due or running."""
    settings = config.load({"database": svc.store.url, **SETTINGS}, env={})
    run(build_worker(settings, svc.store, poll_seconds=0.05).run_until_idle(seconds))


def gateway(svc: Service, platform: int, kind: str, settings: dict[str, Any]) -> None:
    run(svc.store.dispatch.set_gateway("default", svc.app.code, platform, kind, settings))


def send(svc: Service, devices: list[str], **fields: Any) -> tuple[str, list[str]]:
    out = svc.server("createMessage", notifications=[{"devices": devices, **fields}])
    assert out["status_code"] == 200, out
    return out["response"]["Messages"][0], out["response"]["TrackingCodes"]


def trail(svc: Service, code: str) -> list[tuple[str, str]]:
    """The (action, description) steps of one tracking code, read through getMessageLog."""
    return [
        (r["action"], r["description"])
        for r in svc.log(hwid=_hwid_of(svc, code))
        if r["tracking_code"] == code
    ]


def _hwid_of(svc: Service, code: str) -> str:
    return str(
        svc.db.rows("SELECT hwid FROM deliveries WHERE id = ?", (delivery_id(svc.db, code),))[0][0]
    )


def test_every_platform_walks_created_sent_delivered(
    sender: Service,
    apns_server: ApnsServer,
    fcm_server: FcmServer,
    webpush_server: WebPushServer,
    apns_settings: dict[str, Any],
    fcm_settings: dict[str, Any],
    webpush_settings: dict[str, Any],
) -> None:
    svc = sender
    gateway(svc, 1, "apns", apns_settings)
    gateway(svc, 3, "fcm", fcm_settings)
    gateway(svc, 11, "webpush", webpush_settings)
    ios_token = apns_token()
    subscriber = webpush_server.subscribe()
    svc.register("iphone", 1, push_token=ios_token, userId="alice")
    svc.register("pixel", 3, push_token="fcm-token-pixel-0001", userId="bob")
    svc.register("browser", 11, push_token=subscriber.token)
    message, codes = send(
        svc, ["iphone", "pixel", "browser"], content="Hi", data={"order": 7}, ios_badges=3
    )
    counted = {
        k: metrics.value(metrics.DELIVERY_OUTCOMES, status="delivered", platform=p, kind=k)
        for p, k in (("ios", "apns"), ("android", "fcm"), ("chrome", "webpush"))
    }
    work(svc)
    for p, k in (("ios", "apns"), ("android", "fcm"), ("chrome", "webpush")):
        now = metrics.value(metrics.DELIVERY_OUTCOMES, status="delivered", platform=p, kind=k)
        assert now == counted[k] + 1, (p, k)

    for code in codes:
        assert trail(svc, code) == [
            ("created", "Created"),
            ("sent", "Sent"),
            ("delivered", "Success"),
        ]
    (apns,) = apns_server.delivered()
    assert apns.token == ios_token
    assert apns.payload["aps"]["alert"] == "Hi"
    assert apns.payload["aps"]["badge"] == 3
    assert apns.payload["pw_msg"] == "1"
    assert json.loads(apns.payload["u"]) == {"order": 7}  # a JSON string, as the SDKs read it
    assert apns.payload["md"]["user_id"] == "alice"
    assert apns.payload["p"]
    (fcm,) = [m for m in fcm_server.received if m.status == 200]
    assert fcm.token == "fcm-token-pixel-0001"
    data = fcm.message["data"]
    assert data["pw_msg"] == "1"
    assert data["p"]
    assert "md" in data
    assert "u" in data
    (web,) = [r for r in webpush_server.received if r.status in (200, 201)]
    assert web.payload["pw_msg"] == "1"
    assert json.loads(web.payload["u"]) == {"order": 7}
    status = svc.db.rows("SELECT status FROM messages WHERE code = ?", (message,))
    assert status == [("done",)]

    # the device reports the open with the payload's p: `opened` joins the trail
    out = svc.device("pushStat", hwid="iphone", hash=apns.payload["p"])
    assert out["status_code"] == 200
    assert trail(svc, codes[0])[-1] == ("opened", "Opened")


def test_a_token_registered_after_apns_declared_it_dead_stays_subscribed(
    sender: Service, apns_server: ApnsServer, apns_settings: dict[str, Any]
) -> None:
    """APNs' 410 says since when the token is invalid; a device that registered a token
    after that keeps its subscription (the delivery still fails with APNs' reason)."""
    svc = sender
    gateway(svc, 1, "apns", apns_settings)
    token = apns_token()
    apns_server.failures[token] = (410, "Unregistered")
    apns_server.gone_since_ms = int(time.time() * 1000) - 3_600_000  # an hour ago
    svc.register("phone", 1, push_token=token)
    _, (code,) = send(svc, ["phone"], content="x")
    work(svc)
    action, description = trail(svc, code)[-1]
    assert (action, description.split(" (since ")[0]) == ("failed", "Unregistered")
    assert svc.db.rows("SELECT subscribed FROM devices WHERE hwid = 'phone'") == [(1,)]

    # once APNs confirms it dead after that registration, the device is unsubscribed
    apns_server.gone_since_ms = int(time.time() * 1000) + 60_000
    send(svc, ["phone"], content="y")
    work(svc)
    assert svc.db.rows("SELECT subscribed FROM devices WHERE hwid = 'phone'") == [(0,)]


def test_gateway_reasons_reach_the_trail_and_dead_tokens_unsubscribe(
    sender: Service, apns_server: ApnsServer, apns_settings: dict[str, Any]
) -> None:
    svc = sender
    gateway(svc, 1, "apns", apns_settings)
    tokens = {name: apns_token() for name in ("ok", "bad", "gone", "big")}
    for name, token in tokens.items():
        svc.register(name, 1, push_token=token)
    apns_server.failures[tokens["bad"]] = (400, "BadDeviceToken")
    apns_server.failures[tokens["gone"]] = (410, "Unregistered")
    # APNs confirmed the token dead after the device registered it
    apns_server.gone_since_ms = int(time.time() * 1000) + 60_000
    apns_server.failures[tokens["big"]] = (413, "PayloadTooLarge")
    _, codes = send(svc, list(tokens), content="x")
    work(svc)
    ends = [trail(svc, c)[-1] for c in codes]
    assert ends[0] == ("delivered", "Success")
    assert ends[1] == ("failed", "BadDeviceToken")
    assert ends[2][0] == "failed"
    assert ends[2][1].startswith("Unregistered")
    assert ends[3] == ("failed", "PayloadTooLarge")
    assert svc.db.rows("SELECT subscribed FROM devices WHERE hwid = 'gone'") == [(0,)]
    assert svc.db.rows("SELECT subscribed FROM devices WHERE hwid = 'bad'") == [(1,)]

    # a later message skips the unsubscribed device, and never sends to it
    before = len(apns_server.received)
    _, (code,) = send(svc, ["gone"], content="again")
    work(svc)
    assert trail(svc, code) == [("created", "Created"), ("failed", "Device unsubscribed")]
    assert len(apns_server.received) == before


def test_transient_failures_retry_then_give_up_with_the_last_reason(
    sender: Service, apns_server: ApnsServer, apns_settings: dict[str, Any]
) -> None:
    svc = sender
    gateway(svc, 1, "apns", apns_settings)
    flaky, down = apns_token(), apns_token()
    svc.register("flaky", 1, push_token=flaky)
    svc.register("down", 1, push_token=down)
    apns_server.failures[down] = (503, "ServiceUnavailable")
    # a second before the next try: time for the device to recover, however soon the
    # worker takes the job again
    apns_server.failures[flaky] = (429, "TooManyRequests", {"retry-after": "1"})
    _, (flaky_code, down_code) = send(svc, ["flaky", "down"], content="x")

    # first pass: both deferred; the flaky device recovers before the next try
    svc_settings = config.load({"database": svc.store.url, **SETTINGS}, env={})
    worker = build_worker(svc_settings, svc.store, poll_seconds=0.05)

    async def first_then_recover() -> None:
        import asyncio

        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        while not any(r.token == flaky for r in apns_server.received):  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        apns_server.failures.pop(flaky)
        # stop once both first attempts are recorded, not while they are in flight
        while svc.db.count_where("deliveries", "attempts >= 1") < 2:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        stop.set()
        await task

    run(first_then_recover())
    work(svc)
    assert trail(svc, flaky_code)[-1] == ("delivered", "Success")
    assert trail(svc, down_code) == [
        ("created", "Created"),
        ("sent", "Sent"),
        ("failed", "ServiceUnavailable (gave up after 3 attempts)"),
    ]
    assert sum(r.token == down for r in apns_server.received) == 3
    assert sum(1 for r in trail(svc, flaky_code) if r[0] == "sent") == 1


def test_no_gateway_and_unserved_platforms_fail_clearly(sender: Service) -> None:
    svc = sender
    svc.register("phone", 3, push_token="t1")
    svc.register("blackberry", 2, push_token="t2")
    _, (a, b) = send(svc, ["phone", "blackberry"], content="x")
    work(svc)
    assert trail(svc, a)[-1] == ("failed", "No gateway configured for android")
    assert trail(svc, b)[-1] == ("failed", "Platform not supported: blackberry")


def test_scheduled_message_waits_and_delete_cancels_it(sender: Service) -> None:
    svc = sender
    gateway(svc, 1, "sandbox", {})
    svc.register("later", 1)
    message, (code,) = send(svc, ["later"], content="x", send_date="2099-01-01 10:00")
    work(svc, seconds=2)
    assert trail(svc, code) == [("created", "Created")]
    out = svc.server("deleteMessage", message=message)
    assert out["status_code"] == 200
    work(svc, seconds=2)
    assert trail(svc, code) == [("created", "Created"), ("failed", "Cancelled")]


def test_sandbox_outcomes_are_labelled_simulated(sender: Service) -> None:
    svc = sender
    gateway(svc, 3, "sandbox", {"failure_rate": 0.5, "seed": 7})
    for i in range(40):
        svc.register(f"d{i}", 3)
    _, codes = send(svc, [f"d{i}" for i in range(40)], content="x")
    work(svc)
    ends = [trail(svc, c)[-1] for c in codes]
    assert {e[0] for e in ends} == {"delivered", "failed"}
    assert all(e[1].endswith("(sandbox)") for e in ends)


def test_gateway_settings_errors_pause_the_gateway_not_the_worker(
    sender: Service, tmp_path: Path
) -> None:
    svc = sender
    gateway(svc, 1, "apns", {"key_id": "x"})  # stored as given; it cannot build a gateway
    svc.register("p", 1, push_token=apns_token())
    _, (code,) = send(svc, ["p"], content="x")
    work(svc)
    # the delivery waits for settings that work (tests/delivery/test_retry_policy.py)
    assert trail(svc, code)[-1] == ("sent", "Sent")
    [pause] = run(svc.store.dispatch.gateway_pauses(svc.app.id)).values()
    assert pause.reason.startswith("Gateway error:")


def test_device_confirmation_settles_a_delivery_awaiting_retry(
    sender: Service, apns_server: ApnsServer, apns_settings: dict[str, Any]
) -> None:
    svc = sender
    gateway(svc, 1, "apns", apns_settings)
    token = apns_token()
    svc.register("phone", 1, push_token=token)
    # APNs says "try later", but the push did reach the phone, which says so
    apns_server.failures[token] = (503, "ServiceUnavailable", {"retry-after": "3600"})
    _, (code,) = send(svc, ["phone"], content="x")
    work(svc, seconds=3)
    (received,) = apns_server.received
    # while it waits for its retry, the log shows the try and why it is retried
    sent = [r for r in svc.log(hwid="phone") if r["action"] == "sent"]
    assert [(r["attempts"], r["retry_reason"], r["failure_class"]) for r in sent] == [
        (1, "ServiceUnavailable", "transient")
    ]
    out = svc.device("messageDeliveryEvent", hwid="phone", hash=received.payload["p"])
    assert out["status_code"] == 200
    assert trail(svc, code) == [
        ("created", "Created"),
        ("sent", "Sent"),
        ("delivered", "Confirmed by device"),
        ("confirmed", "Confirmed by device"),
    ]
    # no longer retried: the reason goes, the count of tries stays
    sent = [r for r in svc.log(hwid="phone") if r["action"] == "sent"]
    assert [(r["attempts"], r["retry_reason"], r["failure_class"]) for r in sent] == [
        (1, None, None)
    ]
    # the pending retry finds the delivery ended and sends nothing more
    apns_server.failures.clear()
    svc.db.execute("UPDATE deliveries SET next_at = 0")
    svc.db.execute("UPDATE jobs SET run_at = 0 WHERE state = 'pending'")
    work(svc)
    assert len(apns_server.received) == 1
    assert svc.db.rows("SELECT status FROM messages") == [("done",)]


def test_local_time_sends_reach_each_device_at_its_own_clock(sender: Service) -> None:
    from datetime import UTC, datetime, timedelta

    svc = sender
    gateway(svc, 1, "sandbox", {})
    svc.register("east", 1, timezone=3 * 3600)  # UTC+3: the wall-clock time has passed there
    svc.register("utc", 1, timezone=0)
    wall = (datetime.now(UTC) + timedelta(hours=2)).strftime("%Y-%m-%d %H:%M")
    _, (east, utc) = send(
        svc, ["east", "utc"], content="x", send_date=wall, ignore_user_timezone=False
    )
    work(svc, seconds=3)
    assert trail(svc, east)[-1] == ("delivered", "Success (sandbox)")
    assert trail(svc, utc) == [("created", "Created")]
    # the dispatch job waits for the device still ahead, about two hours from now
    run_at = svc.db.rows("SELECT run_at FROM jobs WHERE kind = 'dispatch'")[0]
    due = datetime.strptime(wall, "%Y-%m-%d %H:%M").replace(tzinfo=UTC).timestamp()
    assert abs(run_at[0] / 1e6 - due) < 1

    # with ignore_user_timezone left out, the same date is UTC for everyone
    _, codes = send(svc, ["east", "utc"], content="y", send_date=wall)
    work(svc, seconds=2)
    assert [trail(svc, c) for c in codes] == [[("created", "Created")]] * 2


def dispatch_params(svc: Service) -> list[dict[str, Any]]:
    rows = svc.db.rows("SELECT params FROM jobs WHERE kind = 'dispatch' ORDER BY id")
    return [json.loads(r[0]) for r in rows]


def test_dispatch_jobs_carry_the_application_of_their_message(sender: Service) -> None:
    svc = sender
    gateway(svc, 1, "sandbox", {})
    for i in range(3):
        svc.register(f"d{i}", 1)
    send(svc, ["d0", "d1"], content="explicit")
    svc.send(content="audience")  # its deliveries' job is written by the expansion
    params = dispatch_params(svc)
    assert len(params) == 2
    assert [p["app_id"] for p in params] == [svc.app.id] * 2


def test_a_dispatch_job_made_before_jobs_carried_the_application_still_sends(
    sender: Service,
) -> None:
    """A job stored without ``app_id`` (an older pushtrack's) takes the message's."""
    svc = sender
    gateway(svc, 1, "sandbox", {})
    gateway(svc, 3, "sandbox", {})
    svc.register("phone", 1)
    svc.register("pixel", 3)
    svc.register("blackberry", 2)
    _, codes = send(svc, ["phone", "pixel", "blackberry"], content="x")
    ((job_id,),) = svc.db.rows("SELECT id FROM jobs WHERE kind = 'dispatch'")
    (params,) = dispatch_params(svc)
    old = {k: v for k, v in params.items() if k != "app_id"}
    assert set(old) == {"message_id", "first", "last"}
    svc.db.execute(f"UPDATE jobs SET params = '{json.dumps(old)}' WHERE id = {job_id}")
    work(svc)
    assert [trail(svc, c)[-1] for c in codes] == [
        ("delivered", "Success (sandbox)"),
        ("delivered", "Success (sandbox)"),
        ("failed", "Platform not supported: blackberry"),
    ]
    assert svc.db.rows("SELECT state FROM jobs WHERE id = ?", (job_id,)) == [("done",)]
    assert svc.db.rows("SELECT status FROM messages") == [("done",)]


def test_a_job_sends_with_the_gateway_settings_its_first_batch_saw(sender: Service) -> None:
    """The settings a job sends with are read in its first batch's transaction: a
    gateway set just before that batch starts is the one it sends through (nothing read
    before the batch can miss it)."""
    svc = sender
    svc.register("pixel", 3)
    _, (code,) = send(svc, ["pixel"], content="x")
    start_batch = svc.store.dispatch.start_batch
    starts: list[bool] = []

    async def set_then_start(*args: Any, **kwargs: Any) -> Any:
        if not starts:  # the job's first batch: the settings change commits just before
            await svc.store.dispatch.set_gateway("default", svc.app.code, 3, "sandbox", {})
        starts.append(True)
        return await start_batch(*args, **kwargs)

    svc.store.dispatch.start_batch = set_then_start  # type: ignore[method-assign]
    try:
        work(svc)
    finally:
        del svc.store.dispatch.start_batch
    assert starts
    assert trail(svc, code)[-1] == ("delivered", "Success (sandbox)")
