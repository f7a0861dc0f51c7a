"""Device methods over HTTP: registerDevice, unregisterDevice, pushStat, messageDeliveryEvent."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support import Service, delivery_id, run


@pytest.fixture
def svc(shared: Service) -> Service:
    return shared.fresh_account()


DEVICE_COLUMNS = (
    "hwid, push_token, device_type, language, timezone, user_id, app_version,"
    " device_model, os_version, subscribed"
)


def device_row(svc: Service, hwid: str, app_id: int | None = None) -> dict[str, Any]:
    rows = svc.db.rows(
        f"SELECT {DEVICE_COLUMNS} FROM devices WHERE app_id = ? AND hwid = ?",
        (app_id or svc.app.id, hwid),
    )
    assert len(rows) == 1, rows
    row = dict(zip([c.strip() for c in DEVICE_COLUMNS.split(",")], rows[0], strict=True))
    app = (
        svc.app
        if app_id is None
        else next(a for a in run(svc.store.list_apps(svc.account)) if a.id == app_id)
    )
    row["tags"] = run(svc.store.targeting.get_tags(app, hwid)) or None
    row["subscribed"] = bool(row["subscribed"])
    return row


def trail(svc: Service, tracking_code: str) -> list[tuple[str, str]]:
    """(action, description) of every event of one delivery, in time order."""
    rows = [
        r for r in svc.log(hwid=svc_hwid(svc, tracking_code)) if r["tracking_code"] == tracking_code
    ]
    return [(r["action"], r["description"]) for r in rows]


def devices(svc: Service) -> int:
    """How many devices this test's application has."""
    return int(svc.db.rows("SELECT COUNT(*) FROM devices WHERE app_id = ?", (svc.app.id,))[0][0])


def svc_hwid(svc: Service, tracking_code: str) -> str:
    return str(
        svc.db.rows(
            "SELECT hwid FROM deliveries WHERE id = ?", (delivery_id(svc.db, tracking_code),)
        )[0][0]
    )


# -- registerDevice ----------------------------------------------------------------------


def test_register_stores_every_field(svc: Service) -> None:
    out = svc.device(
        "registerDevice",
        hwid="hw-1",
        device_type=3,
        push_token="fcm-token-1",
        language="DE",
        timezone=-5 * 3600,
        tags={"plan": "gold", "age": 31, "list": ["a", "b"]},
        userId="user-1",
        app_version="2.3.4",
        device_model="Pixel 8",
        os_version="14",
    )
    assert out == {"status_code": 200, "status_message": "OK", "response": None}
    assert device_row(svc, "hw-1") == {
        "hwid": "hw-1",
        "push_token": "fcm-token-1",
        "device_type": 3,
        "language": "de",
        "timezone": -18000,
        "tags": {"plan": "gold", "age": 31, "list": ["a", "b"]},
        "user_id": "user-1",
        "app_version": "2.3.4",
        "device_model": "Pixel 8",
        "os_version": "14",
        "subscribed": True,
    }
    out = svc.device("registerDevice", hwid="bare", device_type=1)
    assert out["status_code"] == 200
    row = device_row(svc, "bare")
    assert row["push_token"] is None
    assert row["subscribed"] is False  # nothing to send to until a push token arrives
    assert row["language"] is None
    assert row["tags"] is None
    assert row["user_id"] is None


def test_reregister_updates_the_same_device(svc: Service) -> None:
    svc.register(
        "hw-1",
        device_type=1,
        push_token="old",
        language="en",
        userId="u1",
        app_version="1.0",
        tags={"a": 1},
    )
    svc.register("hw-1", device_type=3, push_token="new", language="fr", app_version="1.1")
    assert devices(svc) == 1
    row = device_row(svc, "hw-1")
    assert row["push_token"] == "new"
    assert row["device_type"] == 3
    assert row["language"] == "fr"
    assert row["app_version"] == "1.1"
    # fields the second call did not send keep their values
    assert row["user_id"] == "u1"
    assert row["tags"] == {"a": 1}


def test_devices_belong_to_their_application(svc: Service) -> None:
    other = svc.new_app("other")
    svc.register("shared", push_token="in-a")
    resp = svc.call(
        "registerDevice",
        {"application": other.code, "hwid": "shared", "device_type": 3, "push_token": "in-b"},
        headers={"Authorization": f"Token {svc.device_token}"},
    )
    assert resp.json()["status_code"] == 200
    assert device_row(svc, "shared")["push_token"] == "in-a"
    assert device_row(svc, "shared", other.id)["push_token"] == "in-b"
    # tokenless device calls only where the application allows them (old SDKs)
    open_app = svc.new_app("old sdk", device_token_required=False)
    body = {"application": open_app.code, "hwid": "h", "device_type": 1, "push_token": "t"}
    assert svc.call("registerDevice", body).json()["status_code"] == 200
    assert device_row(svc, "h", open_app.id)["subscribed"] is True
    body["application"] = svc.app.code  # requires the device token
    assert svc.call("registerDevice", body).status_code == 401
    # a device token restricted to one application is refused the others
    only_other = svc.make_token("device", apps=[other.code])
    resp = svc.call("registerDevice", body, headers={"Authorization": f"Token {only_other}"})
    assert (resp.status_code, resp.json()["status_code"]) == (403, 403)
    body["application"] = other.code
    resp = svc.call("registerDevice", body, headers={"Authorization": f"Token {only_other}"})
    assert resp.json()["status_code"] == 200


REGISTER_ERRORS: list[tuple[dict[str, Any], str]] = [
    ({"device_type": 4}, "device_type"),
    ({"device_type": 999}, "device_type"),
    ({"device_type": -1}, "device_type"),
    ({"device_type": "1"}, "device_type"),
    ({"device_type": 1.5}, "device_type"),
    ({"device_type": True}, "device_type"),
    ({"device_type": None}, "device_type"),
    ({"language": "en_US"}, "language"),
    ({"language": "english"}, "language"),
    ({"language": "e"}, "language"),
    ({"language": "e1"}, "language"),
    ({"language": ""}, "language"),
    ({"language": 12}, "language"),
    ({"timezone": 18 * 3600 + 1}, "timezone"),
    ({"timezone": -18 * 3600 - 1}, "timezone"),
    ({"timezone": 2**70}, "timezone"),
    ({"timezone": "+0100"}, "timezone"),
    ({"hwid": ""}, "hwid"),
    ({"hwid": "x" * 256}, "hwid"),
    ({"hwid": 12345}, "hwid"),
    ({"hwid": None}, "hwid"),
    ({"push_token": 5}, "push_token"),
    ({"push_token": "t" * 5000}, "push_token"),
    ({"tags": ["a"]}, "tags"),
    ({"tags": "a=b"}, "tags"),
    ({"userId": 7}, "userId"),
    ({"app_version": "v" * 65}, "app_version"),
    ({"device_model": ["x"]}, "device_model"),
    ({"os_version": {}}, "os_version"),
]


def test_register_validation_errors_are_210(svc: Service) -> None:
    for fields, named in REGISTER_ERRORS:
        body = {"hwid": "hw-1", "device_type": 1, "push_token": "t", **fields}
        out = svc.device("registerDevice", **body)
        assert out["status_code"] == 210, (fields, out)
        assert named in out["status_message"], (fields, out)
        assert out["response"] is None
    headers = {"Authorization": f"Token {svc.device_token}"}
    for missing in ("hwid", "device_type", "application"):
        body = {"application": svc.app.code, "hwid": "h", "device_type": 1}
        del body[missing]
        resp = svc.call("registerDevice", body, headers=headers)
        out = resp.json()
        assert (resp.status_code, out["status_code"]) == (200, 210), out
        assert missing in out["status_message"]
    body = {"application": "FFFFF-FFFFF", "hwid": "h", "device_type": 1}
    out = svc.call("registerDevice", body, headers=headers).json()
    assert out["status_code"] == 210
    assert "application" in out["status_message"]
    assert devices(svc) == 0
    # the edges themselves are accepted
    svc.register("x" * 255, timezone=18 * 3600, language="pt")
    svc.register("tz-min", timezone=-18 * 3600)
    for code in (1, 3, 7, 9, 10, 11, 12, 17, 2, 5, 8, 13, 18, 19, 21):
        svc.register(f"type-{code}", device_type=code)
    assert devices(svc) == 17


def test_an_unknown_device_type_lists_the_known_ones(svc: Service) -> None:
    out = svc.device("registerDevice", hwid="h", device_type=4, push_token="t")
    assert out["status_code"] == 210
    message = out["status_message"]
    assert message.startswith("device_type: 4 is not a known device type; known: 1 (ios), ")
    for listed in ("3 (android)", "11 (chrome)", "17 (huawei android)"):
        assert listed in message


# -- unregisterDevice --------------------------------------------------------------------


def test_unregister_clears_the_push_token(svc: Service) -> None:
    svc.register("hw-1", push_token="tok-1")
    out = svc.device("unregisterDevice", hwid="hw-1")
    assert out == {"status_code": 200, "status_message": "OK", "response": None}
    row = device_row(svc, "hw-1")
    assert row["push_token"] is None
    assert row["subscribed"] is False

    sent = svc.send(devices=["hw-1"])
    (code,) = sent["TrackingCodes"]
    assert trail(svc, code) == [("created", "Created"), ("failed", "Device unsubscribed")]
    # its old push token no longer names it
    sent = svc.send(devices=["tok-1"])
    assert trail(svc, sent["TrackingCodes"][0])[-1] == ("failed", "Unknown device")
    # registering again subscribes it again
    svc.register("hw-1", push_token="tok-2")
    sent = svc.send(devices=["hw-1"])
    assert trail(svc, sent["TrackingCodes"][0]) == [("created", "Created")]

    assert svc.device("unregisterDevice", hwid="never-seen")["status_code"] == 200
    assert svc.device("unregisterDevice")["status_code"] == 210
    out = svc.device("unregisterDevice", hwid=["a"])
    assert out["status_code"] == 210
    assert "hwid" in out["status_message"]
    assert devices(svc) == 1


def test_unregistered_device_is_left_out_of_broadcasts(svc: Service) -> None:
    svc.register("stay")
    svc.register("leave")
    assert svc.device("unregisterDevice", hwid="leave")["status_code"] == 200
    sent = svc.send()
    rows = svc.log(message_code=sent["Messages"][0])
    assert {r["hwid"] for r in rows} == {"stay"}


# -- pushStat and messageDeliveryEvent ----------------------------------------------------


def _one_delivery(svc: Service, hwid: str = "hw-1") -> tuple[str, str]:
    svc.register(hwid)
    (code,) = svc.send(devices=[hwid])["TrackingCodes"]
    return code, svc.hash_of(code)


def counter_totals(svc: Service) -> tuple[int, int, int]:
    """Deliveries, opens and errors counted for this test's account."""
    (row,) = svc.db.rows(
        "SELECT COALESCE(SUM(c.deliveries), 0), COALESCE(SUM(c.opens), 0),"
        " COALESCE(SUM(c.errors), 0) FROM counters c JOIN messages m ON m.id = c.message_id"
        " JOIN applications a ON a.id = m.app_id JOIN accounts acc ON acc.id = a.account_id"
        " WHERE acc.name = ?",
        (svc.account,),
    )
    return int(row[0]), int(row[1]), int(row[2])


def test_push_stat_records_opened_once(svc: Service) -> None:
    code, p = _one_delivery(svc)
    for _ in range(3):
        out = svc.device("pushStat", hwid="hw-1", hash=p, metaData={"x": 1})
        assert out["status_code"] == 200, out
        # the Android SDK hands back md as the JSON text FCM carried it in
        out = svc.device("pushStat", hwid="hw-1", hash=p, metaData='{"mid": 1, "user_id": "u"}')
        assert out == {"status_code": 200, "status_message": "OK", "response": None}
    assert [a for a, _ in trail(svc, code)] == ["created", "opened"]
    assert counter_totals(svc) == (0, 1, 0)


def test_push_stat_not_recorded_when_open_logging_is_off(svc: Service) -> None:
    quiet = svc.new_app("quiet", open_logging=False)
    headers = {"Authorization": f"Token {svc.device_token}"}
    svc.call(
        "registerDevice",
        {"application": quiet.code, "hwid": "q", "device_type": 1, "push_token": "tq"},
        headers=headers,
    )
    body = {
        "auth": svc.server_token,
        "application": quiet.code,
        "notifications": [{"content": "x", "devices": ["q"]}],
    }
    (code,) = svc.call("createMessage", body).json()["response"]["TrackingCodes"]
    out = svc.call(
        "pushStat",
        {"application": quiet.code, "hwid": "q", "hash": svc.hash_of(code)},
        headers=headers,
    ).json()
    assert out["status_code"] == 200
    assert [a for a, _ in trail(svc, code)] == ["created"]
    assert counter_totals(svc) == (0, 0, 0)


def test_reports_that_match_no_delivery_record_nothing(svc: Service) -> None:
    code, p = _one_delivery(svc)
    svc.register("hw-2")
    other = svc.new_app("other")
    before = svc.db.counts()
    for method in ("pushStat", "messageDeliveryEvent"):
        assert svc.device(method, hwid="hw-1", hash="nope")["status_code"] == 200
        assert svc.device(method, hwid="hw-2", hash=p)["status_code"] == 200  # not its delivery
    out = svc.call(
        "pushStat",
        {"application": other.code, "hwid": "hw-1", "hash": p},
        headers={"Authorization": f"Token {svc.device_token}"},
    ).json()
    assert out["status_code"] == 200  # a report naming another application finds nothing
    cases: list[dict[str, Any]] = [
        {},
        {"hwid": "hw-1"},
        {"hash": p},
        {"hwid": "hw-1", "hash": 5},
        {"hwid": "hw-1", "hash": ""},
        {"hwid": "hw-1", "hash": p, "metaData": 5},
        {"hwid": "hw-1", "hash": p, "metaData": "x" * 4097},
    ]
    for method in ("pushStat", "messageDeliveryEvent"):
        for fields in cases:
            out = svc.device(method, **fields)
            assert out["status_code"] == 210, (method, fields, out)
    assert svc.db.counts() == before
    assert trail(svc, code) == [("created", "Created")]


def test_message_delivery_event_confirms_delivery_once(svc: Service) -> None:
    code, p = _one_delivery(svc)
    for _ in range(2):
        out = svc.device("messageDeliveryEvent", hwid="hw-1", hash=p)
        assert out == {"status_code": 200, "status_message": "OK", "response": None}
    # settled delivered (nothing had answered yet), and the confirmation kept as its own
    assert trail(svc, code) == [
        ("created", "Created"),
        ("delivered", "Confirmed by device"),
        ("confirmed", "Confirmed by device"),
    ]
    assert svc.device("pushStat", hwid="hw-1", hash=p)["status_code"] == 200
    assert [a for a, _ in trail(svc, code)] == ["created", "delivered", "confirmed", "opened"]
    assert counter_totals(svc) == (1, 1, 0)


def test_delivery_event_after_failure_keeps_the_one_terminal_status(svc: Service) -> None:
    svc.register("hw-1", push_token="t1")
    sent = svc.send(devices=["hw-1"], send_date="2099-01-01 00:00")
    (code,) = sent["TrackingCodes"]
    assert svc.server("deleteMessage", message=sent["Messages"][0])["status_code"] == 200
    p = svc.hash_of(code)
    assert svc.device("messageDeliveryEvent", hwid="hw-1", hash=p)["status_code"] == 200
    # never sent: no confirmation can be true of it
    assert trail(svc, code) == [("created", "Created"), ("failed", "Cancelled")]


def test_re_registering_without_a_push_token_keeps_the_token(svc: Service) -> None:
    svc.register("keeper", 1, push_token="kept-token", language="de")
    out = svc.device("registerDevice", hwid="keeper", device_type=1, app_version="2.0")
    assert out["status_code"] == 200
    rows = svc.db.rows(
        "SELECT push_token, subscribed, language, app_version FROM devices WHERE hwid = 'keeper'"
    )
    assert rows == [("kept-token", 1, "de", "2.0")]
    # unregisterDevice is the way to clear it
    svc.device("unregisterDevice", hwid="keeper")
    assert svc.db.rows("SELECT push_token, subscribed FROM devices WHERE hwid = 'keeper'") == [
        (None, 0)
    ]
