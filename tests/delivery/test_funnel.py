"""The honest funnel end to end, through the HTTP API and the CLI, on both engines:
the gateways' ids round trip from the local gateway servers to getMessageLog, a
device's confirmation is a fact of its own (log, counters, not the export), failures
carry their class, and every device a gateway's answer unsubscribed is in the
dead-token ledger (devices/deadTokens, ``pushtrack devices dead``), which retention
trims."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from pushtrack import config
from pushtrack.cli.root import cli
from pushtrack.worker import build_worker
from tests.delivery._support import apns_token
from tests.exports._support import Clock, clocked_service, tracking_log
from tests.gateways import ApnsServer, FcmServer, WebPushServer
from tests.support import Service, run, service

SETTINGS = {"max_attempts": 3, "retry_backoff_seconds": 0.05, "worker_lease_seconds": 5}
DEAD = "devices/deadTokens"
runner = CliRunner()


@pytest.fixture
def sender(database_url: str, tmp_path: Path) -> Iterator[Service]:
    with service(database_url, files_dir=str(tmp_path / "files"), **SETTINGS) as s:
        yield s


def work(svc: Service) -> None:
    settings = config.load({"database": svc.store.url, **SETTINGS}, env={})
    run(build_worker(settings, svc.store, poll_seconds=0.05).run_until_idle(30))


def gateway(svc: Service, platform: int, kind: str, settings: dict[str, Any]) -> None:
    run(svc.store.dispatch.set_gateway(svc.account, svc.app.code, platform, kind, settings))


def send(svc: Service, devices: list[str], **fields: Any) -> tuple[str, list[str]]:
    out = svc.server(
        "createMessage", notifications=[{"content": "x", "devices": devices, **fields}]
    )
    assert out["status_code"] == 200, out
    return out["response"]["Messages"][0], out["response"]["TrackingCodes"]


def rows_of(svc: Service, message: str) -> dict[tuple[str, str], dict[str, Any]]:
    """getMessageLog of a message, by (hwid, action)."""
    rows = svc.log(message_code=message)
    by_key = {(r["hwid"], r["action"]): r for r in rows}
    assert len(by_key) == len(rows), rows  # one event per (delivery, status)
    return by_key


def invoke(*args: str) -> tuple[int, str, str]:
    res = runner.invoke(cli, list(args), env={"PUSHTRACK_CONFIG": "", "COLUMNS": "200"})
    return res.exit_code, res.stdout, res.stderr


def test_gateway_ids_round_trip_from_every_gateway(
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
    subscriber = webpush_server.subscribe()
    svc.register("iphone", 1, push_token=apns_token())
    svc.register("pixel", 3, push_token="fcm-token-pixel-0001")
    svc.register("browser", 11, push_token=subscriber.token)
    message, codes = send(svc, ["iphone", "pixel", "browser"])
    work(svc)

    (apns,) = apns_server.delivered()
    (fcm,) = [m for m in fcm_server.received if m.status == 200]
    (web,) = [r for r in webpush_server.received if r.status == 201]
    ids = {"iphone": apns.apns_id, "pixel": fcm.name, "browser": web.location}
    # what the gateways answered, as they answer it
    assert len(ids["iphone"]) == 36
    assert (ids["pixel"] or "").startswith("projects/")
    assert "/messages/" in (ids["pixel"] or "")
    assert (ids["browser"] or "").startswith(webpush_server.url)
    assert len(set(ids.values())) == 3

    rows = rows_of(svc, message)
    for hwid, gateway_id in ids.items():
        delivered = rows[(hwid, "delivered")]
        assert delivered["gateway_id"] == gateway_id, hwid
        assert delivered["description"] == "Success"
        assert delivered["failure_class"] is None
        # one try; the other events of the delivery carry no gateway id
        assert {r["attempts"] for (h, _), r in rows.items() if h == hwid} == {1}
        assert rows[(hwid, "sent")]["gateway_id"] is None
        assert rows[(hwid, "sent")]["retry_reason"] is None
    # the device's timeline (getMessageLog by hwid) shows it too
    (row,) = [r for r in svc.log(hwid="pixel") if r["action"] == "delivered"]
    assert (row["tracking_code"], row["gateway_id"]) == (codes[1], ids["pixel"])
    # and so does its timeline on the command line
    args = ("app", "device", svc.app.code, "pixel", "--database", svc.db.url)
    code, out, err = invoke(*args, "--trail", "2", "--json")
    assert code == 0, err
    timeline = json.loads(out)["trail"]
    assert [(e["status"], e["gateway_id"], e["attempt"]) for e in timeline] == [
        ("sent", None, 1),
        ("delivered", ids["pixel"], 1),
    ]
    assert {e["tracking_code"] for e in timeline} == {codes[1]}
    code, out, _ = invoke(*args, "--trail", "5")
    assert code == 0
    assert f"delivered  Success  gateway_id={ids['pixel']}  attempt=1" in out


def test_failures_are_classed_and_dead_tokens_ledgered(
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
    tokens = {name: apns_token() for name in ("ok", "gone", "bad", "big")}
    for name, token in tokens.items():
        svc.register(name, 1, push_token=token)
    apns_server.failures[tokens["gone"]] = (410, "Unregistered")
    # dead since after the device registered it (an older "since" keeps it subscribed)
    apns_server.gone_since_ms = int(time.time() * 1000) + 60_000
    apns_server.failures[tokens["bad"]] = (400, "BadDeviceToken")
    apns_server.failures[tokens["big"]] = (413, "PayloadTooLarge")
    fcm_dead = "fcm-token-dead-0002"
    svc.register("android-gone", 3, push_token=fcm_dead)
    fcm_server.failures[fcm_dead] = "UNREGISTERED"
    subscriber = webpush_server.subscribe()
    svc.register("browser-gone", 11, push_token=subscriber.token)
    webpush_server.failures[subscriber.id] = (410,)
    svc.register("no-gateway", 7)  # macOS: no gateway set for it
    hwids = [*tokens, "android-gone", "browser-gone", "no-gateway", "ghost"]
    message, codes = send(svc, hwids)
    code_of = dict(zip(hwids, codes, strict=True))
    work(svc)

    rows = rows_of(svc, message)
    classes = {h: rows[(h, "failed")]["failure_class"] for h in hwids if (h, "failed") in rows}
    assert classes == {
        "gone": "token_dead",
        "bad": "token_invalid",  # often the other APNs environment: stays subscribed
        "big": "payload",
        "android-gone": "token_dead",
        "browser-gone": "token_dead",
        "no-gateway": "configuration",
        "ghost": "unknown_device",
    }
    assert rows[("ok", "delivered")]["failure_class"] is None
    # a gateway's refusal counts its try; the service's own refusals tried nothing
    assert rows[("gone", "failed")]["attempts"] == 1
    assert rows[("no-gateway", "failed")]["attempts"] == 0
    assert rows[("ghost", "failed")]["attempts"] == 0

    # the ledger: exactly the devices a gateway's answer unsubscribed
    page = svc.v2(DEAD, {}).json()
    assert page["pagination_token"] is None
    listed = {e["hwid"]: e for e in page["items"]}
    assert set(listed) == {"gone", "android-gone", "browser-gone"}
    for hwid, reason, platform in (
        ("gone", "Unregistered", "ios"),
        ("android-gone", "UNREGISTERED", "android"),
        ("browser-gone", "Gone", "chrome"),
    ):
        e = listed[hwid]
        assert (e["reason"], e["platform"], e["application_code"]) == (
            reason,
            platform,
            svc.app.code,
        )
        assert (e["message_code"], e["tracking_code"]) == (message, code_of[hwid])
        assert e["message_id"] == rows[(hwid, "created")]["message_id"]
        assert e["found_at"] == rows[(hwid, "failed")]["timestamp"]
    # tokens masked: recognisable, never whole
    assert listed["gone"]["push_token"] == f"{tokens['gone'][:6]}…{tokens['gone'][-4:]}"
    assert listed["android-gone"]["push_token"] == "fcm-to…0002"
    assert listed["browser-gone"]["push_token"].startswith("https://127.0.0.1:")
    assert subscriber.id not in listed["browser-gone"]["push_token"]
    assert svc.db.rows("SELECT hwid FROM devices WHERE subscribed = 0 ORDER BY hwid") == [
        ("android-gone",),
        ("browser-gone",),
        ("gone",),
    ]

    # filters and pages
    assert svc.v2(DEAD, {"application": svc.app.code}).json() == page
    assert svc.v2(DEAD, {"date_from": "2099-01-01"}).json() == {
        "items": [],
        "pagination_token": None,
    }
    other = svc.new_app("other").code
    assert svc.v2(DEAD, {"application": other}).json()["items"] == []
    # a token restricted to an application sees only that application's entries
    only_other = svc.make_token("server", apps=[other])
    assert svc.v2(DEAD, {}, token=only_other).json()["items"] == []
    only_this = svc.make_token("server", apps=[svc.app.code])
    assert svc.v2(DEAD, {}, token=only_this).json() == page
    walked, token = [], None
    while True:
        body: dict[str, Any] = {"limit": 1}
        if token:
            body["pagination_token"] = token
        one = svc.v2(DEAD, body).json()
        walked += one["items"]
        token = one["pagination_token"]
        if token is None:
            break
    assert walked == page["items"]
    for bad, field in (
        ({"date_from": "yesterday"}, "date_from"),
        ({"pagination_token": "nope"}, "pagination_token"),
        ({"limit": 0}, "limit"),
        ({"application": "00000-00000"}, "application"),
        ({"hwid": "gone"}, "hwid"),
    ):
        resp = svc.v2(DEAD, bad)
        assert resp.status_code == 400, (bad, resp.text)
        assert field in resp.json()["error"], (bad, resp.text)

    # the same ledger on the command line
    code, out, err = invoke("devices", "dead", "--database", svc.db.url, "--json")
    assert code == 0, err
    assert json.loads(out) == page["items"]
    code, out, _ = invoke("devices", "dead", "--database", svc.db.url, "--app", svc.app.code)
    assert code == 0
    assert "3 dead tokens" in out
    assert "Unregistered" in out
    assert listed["gone"]["push_token"] in out
    assert tokens["gone"] not in out
    code, out, _ = invoke("devices", "dead", "--database", svc.db.url, "--app", other, "--json")
    assert (code, json.loads(out)) == (0, [])
    code, out, _ = invoke("devices", "dead", "--database", svc.db.url, "--since", "2099-01-01")
    assert code == 0
    assert "0 dead tokens" in out
    code, _, err = invoke("devices", "dead", "--database", svc.db.url, "--since", "soon")
    assert code == 2
    assert "--since" in err
    code, _, err = invoke("devices", "dead", "--database", svc.db.url, "--app", "00000-00000")
    assert code == 2
    assert "no application" in err


def test_a_confirmation_after_the_gateways_delivery_is_a_fact_of_its_own(
    sender: Service, apns_server: ApnsServer, apns_settings: dict[str, Any]
) -> None:
    svc = sender
    gateway(svc, 1, "apns", apns_settings)
    svc.register("phone", 1, push_token=apns_token())
    svc.register("quiet", 1, push_token=apns_token())
    message, (code, _) = send(svc, ["phone", "quiet"])
    work(svc)
    (received, _) = sorted(apns_server.delivered(), key=lambda r: r.payload["md"]["user_id"])
    assert received.payload["md"]["user_id"] == "phone"
    for _ in range(2):  # a repeated confirmation is one fact
        out = svc.device("messageDeliveryEvent", hwid="phone", hash=received.payload["p"])
        assert out["status_code"] == 200
    steps = [(r["action"], r["description"]) for r in svc.log(tracking_code=code)]
    assert steps == [
        ("created", "Created"),
        ("sent", "Sent"),
        ("delivered", "Success"),  # the gateway accepted it
        ("confirmed", "Confirmed by device"),  # and the device said it arrived
    ]

    # gateway delivery and device confirmation side by side, per platform
    body = svc.v2(
        "statistics/messages/totalsByIntervals", {"message_code": message, "interval": "day"}
    ).json()
    (day,) = body["metrics"]
    assert (day["platform"], day["sends"], day["deliveries"], day["confirmed"]) == (
        1,
        "2",
        "2",
        "1",
    )
    code_, out, _ = invoke("stats", message, "--database", svc.db.url, "--json")
    assert code_ == 0
    (hour,) = json.loads(out)
    assert (hour["deliveries"], hour["confirmed"], hour["opens"]) == (2, 1, 0)

    # the tracking-log export stays in the seed's vocabulary: no `confirmed` line
    assert svc.settings is not None
    csv_bytes = tracking_log(svc, svc.settings, application=svc.app.code)
    lines = list(csv.reader(io.StringIO(csv_bytes.decode()), delimiter=";"))
    statuses = sorted(line[4] for line in lines if line[1] == code)
    assert statuses == ["created", "delivered", "sent"]


def test_retention_trims_the_ledger(
    database_url: str, tmp_path: Path, apns_server: ApnsServer, apns_settings: dict[str, Any]
) -> None:
    clock = Clock("2024-05-01 10:00:00")
    with clocked_service(database_url, tmp_path, clock, **SETTINGS) as (svc, settings):
        gateway(svc, 1, "apns", apns_settings)
        token = apns_token()
        svc.register("gone", 1, push_token=token)
        apns_server.failures[token] = (410, "Unregistered")
        send(svc, ["gone"])
        run(build_worker(settings, svc.store, poll_seconds=0.02).run_until_idle(30))
        clock.set("2024-05-02 10:00:00")
        (entry,) = svc.v2(DEAD, {}).json()["items"]
        assert (entry["hwid"], entry["found_at"]) == ("gone", "2024-05-01 10:00:00")
        # out of the window: no longer listed, then removed by the purge
        clock.set("2024-05-20 10:00:00")
        assert svc.v2(DEAD, {}).json()["items"] == []
        code, out, err = invoke("purge", "--database", svc.db.url, "--json")
        assert code == 0, err
        assert json.loads(out)["dead_tokens"] == 1
        clock.set("2024-05-02 10:00:00")
        assert svc.v2(DEAD, {}).json()["items"] == []


def test_a_large_batch_keeps_every_answer(sender: Service) -> None:
    """Dozens of answers in one batch (PostgreSQL writes them with COPY): each event keeps
    its gateway id or failure class, and the ledger holds exactly the devices unsubscribed."""
    svc = sender
    gateway(svc, 1, "sandbox", {"failure_rate": 0.5, "seed": 3})
    hwids = [f"dev-{i:02}" for i in range(60)]
    for hwid in hwids:
        svc.register(hwid, 1)
    message, _ = send(svc, hwids)
    work(svc)
    rows = rows_of(svc, message)
    delivered = [r for (_, action), r in rows.items() if action == "delivered"]
    failed = [r for (_, action), r in rows.items() if action == "failed"]
    assert len(delivered) + len(failed) == 60
    assert len(delivered) >= 16
    assert len(failed) >= 16
    assert all((r["gateway_id"] or "").startswith("sandbox-") for r in delivered)
    assert len({r["gateway_id"] for r in delivered}) == len(delivered)
    assert all(r["failure_class"] is None for r in delivered)
    by_reason = {r["description"].split(" ")[0]: r["failure_class"] for r in failed}
    assert by_reason == {
        "Unregistered": "token_dead",
        "BadDeviceToken": "token_invalid",
        "DeviceTokenNotForTopic": "token_invalid",
    }
    unsubscribed = {h for (h,) in svc.db.rows("SELECT hwid FROM devices WHERE subscribed = 0")}
    dead = {r["hwid"] for r in failed if r["failure_class"] == "token_dead"}
    assert unsubscribed == dead
    listed = svc.v2(DEAD, {"limit": 1000}).json()["items"]
    assert sorted(e["hwid"] for e in listed) == sorted(dead)
    assert {e["reason"] for e in listed} == {"Unregistered"}
