"""getMessageLog (Statistics v2) over HTTP: filters, errors, auth forms, shape, paging."""

from __future__ import annotations

import base64
import re
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from pushtrack.api import message_log
from pushtrack.domain.codes import MESSAGE_CODE_RE, TRACKING_CODE_RE
from tests.support import Service

ROW_KEYS = {
    "timestamp",
    "action",
    "application_code",
    "message_code",
    "message_id",
    "tracking_code",
    "hwid",
    "target_id",
    "user_id",
    "platform",
    "description",
    # (ours)
    "gateway_id",
    "attempts",
    "retry_reason",
    "failure_class",
}
WIRE_TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")
LOG = "statistics/getMessageLog"


@dataclass
class World:
    """One application A (the service's) and one B, with a small known event log."""

    svc: Service
    b: str  # application B's code
    m1: str
    m2: str
    m3: str
    m4: str  # in B


def _wire(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%d %H:%M:%S")


def _build(svc: Service) -> World:
    b = svc.new_app("app B").code
    svc.register("ios-1", device_type=1, userId="u1", language="en")
    svc.register("and-1", device_type=3, userId="u2")
    svc.register("web-1", device_type=11, userId="u1")
    svc.register("off-1", device_type=1, push_token=None)
    headers = {"Authorization": f"Token {svc.device_token}"}
    for hwid, kind in (("ios-1", 1), ("and-b", 3)):
        reg = {
            "application": b,
            "hwid": hwid,
            "device_type": kind,
            "push_token": f"b-{hwid}",
            "userId": "u1" if hwid == "ios-1" else None,
        }
        assert svc.call("registerDevice", reg, headers=headers).json()["status_code"] == 200
    m1 = svc.send(devices=["ios-1", "and-1", "ghost"], campaign="camp-1")
    ios_code, and_code, _ = m1["TrackingCodes"]
    m2 = svc.send(platforms=[1])
    m3 = svc.send(devices=["off-1", "web-1"], campaign="camp-2")
    body = {
        "auth": svc.server_token,
        "application": b,
        "notifications": [{"content": "x", "devices": ["ios-1", "and-b"], "campaign": "camp-1"}],
    }
    m4 = svc.call("createMessage", body).json()["response"]
    assert svc.device("pushStat", hwid="ios-1", hash=svc.hash_of(ios_code))["status_code"] == 200
    out = svc.device("messageDeliveryEvent", hwid="and-1", hash=svc.hash_of(and_code))
    assert out["status_code"] == 200
    return World(svc, b, m1["Messages"][0], m2["Messages"][0], m3["Messages"][0], m4["Messages"][0])


@pytest.fixture(scope="module")
def world(shared: Service) -> World:
    """Built once per engine: the tests using it only read."""
    return _build(shared.fresh_account())


@pytest.fixture
def svc(shared: Service) -> Service:
    return shared.fresh_account()


def actions(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(r["hwid"], r["action"]) for r in rows]


# -- shape and filters ------------------------------------------------------------------


def test_response_shape(world: World) -> None:
    svc = world.svc
    resp = svc.v2(LOG, {"message_code": world.m1})
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/json"
    page = resp.json()
    assert set(page) == {"data", "pagination_token"}
    assert page["pagination_token"] is None
    rows = page["data"]
    assert len(rows) == 7
    for row in rows:
        assert set(row) == ROW_KEYS
        assert WIRE_TIME.match(row["timestamp"])
        assert row["application_code"] == svc.app.code
        assert row["message_code"] == world.m1
        assert MESSAGE_CODE_RE.match(row["message_code"])
        assert TRACKING_CODE_RE.match(row["tracking_code"])
        assert isinstance(row["message_id"], int)
        assert isinstance(row["description"], str)
    assert [r["timestamp"] for r in rows] == sorted(r["timestamp"] for r in rows)
    first = {(r["hwid"], r["action"]): r for r in rows}
    assert first[("ios-1", "created")]["platform"] == "ios"
    assert first[("ios-1", "created")]["user_id"] == "u1"
    assert first[("ios-1", "created")]["target_id"] == "ios-1"
    assert first[("and-1", "delivered")]["platform"] == "android"
    assert first[("and-1", "delivered")]["description"] == "Confirmed by device"
    # the device's confirmation is a fact of its own beside the delivery
    assert first[("and-1", "confirmed")]["description"] == "Confirmed by device"
    assert first[("ghost", "failed")]["description"] == "Unknown device"
    assert first[("ghost", "failed")]["user_id"] is None
    assert first[("ghost", "failed")]["failure_class"] == "unknown_device"
    assert first[("ios-1", "created")]["failure_class"] is None
    # nothing was sent (no gateway ran): no gateway id, no attempt
    assert {(r["gateway_id"], r["attempts"], r["retry_reason"]) for r in rows} == {(None, 0, None)}
    assert first[("ios-1", "opened")]["action"] == "opened"


def test_id_filters(world: World) -> None:
    svc = world.svc
    m1 = svc.log(message_code=world.m1)
    assert sorted(actions(m1)) == sorted(
        [
            ("ios-1", "created"),
            ("and-1", "created"),
            ("ghost", "created"),
            ("ghost", "failed"),
            ("ios-1", "opened"),
            ("and-1", "delivered"),
            ("and-1", "confirmed"),
        ]
    )
    assert svc.log(message_id=m1[0]["message_id"]) == m1
    assert {r["message_code"] for r in svc.log(campaign_code="camp-1")} == {world.m1, world.m4}
    assert {r["message_code"] for r in svc.log(campaign_code="camp-2")} == {world.m3}
    assert svc.log(campaign_code="nope") == []

    ios = svc.log(hwid="ios-1")
    assert sorted((r["message_code"], r["action"]) for r in ios) == sorted(
        [
            (world.m1, "created"),
            (world.m1, "opened"),
            (world.m2, "created"),
            (world.m4, "created"),
        ]
    )
    assert {r["application_code"] for r in ios} == {svc.app.code, world.b}
    pair = svc.log(hwid=["and-1", "web-1"])
    assert sorted(actions(pair)) == [
        ("and-1", "confirmed"),
        ("and-1", "created"),
        ("and-1", "delivered"),
        ("web-1", "created"),
    ]
    assert svc.log(hwid=["nobody"]) == []

    u1 = svc.log(user_id="u1")
    assert {r["hwid"] for r in u1} == {"ios-1", "web-1"}
    assert len(u1) == 5
    assert len(svc.log(application_code=svc.app.code)) == 11
    assert {r["message_code"] for r in svc.log(application_code=world.b)} == {world.m4}
    assert svc.log(application_code="00000-00000") == []
    # filters combine
    assert actions(svc.log(message_code=world.m1, hwid="ios-1")) == [
        ("ios-1", "created"),
        ("ios-1", "opened"),
    ]
    assert svc.log(message_code=world.m1, application_code=world.b) == []


def test_dates_actions_and_platforms(world: World) -> None:
    svc = world.svc
    now = datetime.now(UTC)
    around = {
        "date_from": _wire(now - timedelta(hours=1)),
        "date_to": _wire(now + timedelta(hours=1)),
    }
    assert len(svc.log(**around)) == 13
    past = {"date_from": _wire(now - timedelta(days=3)), "date_to": _wire(now - timedelta(days=2))}
    assert svc.log(**past) == []
    assert svc.log(message_code=world.m1, **past) == []
    assert len(svc.log(message_code=world.m1, date_from=around["date_from"])) == 7
    assert svc.log(message_code=world.m1, date_to=past["date_to"]) == []

    a = {"application_code": svc.app.code}
    assert len(svc.log(actions=["created"], **a)) == 6
    failed = svc.log(actions=["failed"], **a)
    assert sorted((r["hwid"], r["description"]) for r in failed) == [
        ("ghost", "Unknown device"),
        ("off-1", "Device unsubscribed"),
    ]
    assert sorted(actions(svc.log(actions=["opened", "delivered"], **a))) == [
        ("and-1", "delivered"),
        ("ios-1", "opened"),
    ]
    assert svc.log(actions=["sent"], **a) == []
    assert actions(svc.log(actions=["confirmed"], **a)) == [("and-1", "confirmed")]
    assert len(svc.log(actions=[], **a)) == 11
    assert len(svc.log(actions=["created"] * 5000, **a)) == 6

    ios = svc.log(platforms=["ios"], **a)
    assert {r["platform"] for r in ios} == {"ios"}
    assert sorted(actions(ios)) == [
        ("ios-1", "created"),
        ("ios-1", "created"),
        ("ios-1", "opened"),
        ("off-1", "created"),
        ("off-1", "failed"),
    ]
    assert len(svc.log(platforms=["android", "chrome"], **a)) == 4
    assert len(svc.log(platforms=["Android"], **a)) == 3
    assert len(svc.log(platforms=["ANDROID"], **a)) == 3  # (ours) messages:list's spelling
    assert svc.log(platforms=["huawei android"], **a) == []
    both = svc.log(platforms=["ios"], actions=["created"], hwid="ios-1", **around)
    assert {r["message_code"] for r in both} == {world.m1, world.m2, world.m4}


#: Pushwoosh's getMessageLog vocabularies, as its reference lists them.
PUSHWOOSH_ACTIONS = (
    "sent",
    "delivered",
    "opened",
    "inbox_delivered",
    "inbox_read",
    "inbox_opened",
    "inbox_deleted",
)
PUSHWOOSH_PLATFORMS = (
    "ios",
    "blackberry",
    "android",
    "windows phone",
    "osx",
    "windows",
    "amazon",
    "safari",
    "chrome",
    "firefox",
    "ie",
    "email",
    "baidu android",
    "huawei android",
)


def test_pushwoosh_action_names(world: World) -> None:
    """Every action Pushwoosh lists is understood; inbox actions select nothing (no inbox)."""
    svc = world.svc
    a = {"application_code": svc.app.code}
    for action in PUSHWOOSH_ACTIONS:
        resp = svc.v2(LOG, {"actions": [action], **a})
        assert resp.status_code == 200, (action, resp.text)
    inbox = [x for x in PUSHWOOSH_ACTIONS if x.startswith("inbox_")]
    for action in inbox:
        assert svc.log(actions=[action], **a) == []
    assert actions(svc.log(actions=[*inbox, "opened"], **a)) == [("ios-1", "opened")]
    assert actions(svc.log(actions=["delivered", "inbox_delivered"], **a)) == [
        ("and-1", "delivered")
    ]
    assert svc.log(actions=inbox, message_code=world.m1) == []


def test_pushwoosh_platform_names(world: World) -> None:
    """Every platform Pushwoosh lists is understood; one no device here can be on selects none."""
    svc = world.svc
    a = {"application_code": svc.app.code}
    # an entry that matched no device (ghost) has no platform
    everything = [r for r in svc.log(**a) if r["platform"] != "unknown"]
    assert len(everything) == 9
    assert svc.log(platforms=list(PUSHWOOSH_PLATFORMS), **a) == everything
    by_name = {name: svc.log(platforms=[name], **a) for name in PUSHWOOSH_PLATFORMS}
    assert {name for name, rows in by_name.items() if rows} == {"ios", "android", "chrome"}
    for name, rows in by_name.items():
        assert {r["platform"] for r in rows} <= {name}
    assert sum(len(rows) for rows in by_name.values()) == len(everything)
    assert svc.log(platforms=["email", "baidu android"], **a) == []
    assert svc.log(platforms=["email", "chrome"], **a) == by_name["chrome"]


def test_platform_names_of_rows(svc: Service) -> None:
    """Rows name platforms as Pushwoosh does, for types no gateway here serves too."""
    svc.register("ie-1", device_type=13)
    svc.register("hw-1", device_type=17)
    svc.register("sms-1", device_type=18)
    code = svc.send(devices=["ie-1", "hw-1", "sms-1"])["Messages"][0]
    created = svc.log(message_code=code, actions=["created"])
    assert {r["hwid"]: r["platform"] for r in created} == {
        "ie-1": "ie",
        "hw-1": "huawei android",
        "sms-1": "sms",
    }
    assert actions(svc.log(message_code=code, platforms=["ie"], actions=["created"])) == [
        ("ie-1", "created")
    ]


def test_tracking_code_filter(world: World) -> None:
    """(ours) one delivery's events, by its tracking code; enough on its own."""
    svc = world.svc
    m1 = svc.log(message_code=world.m1)
    codes = {r["hwid"]: r["tracking_code"] for r in m1}
    ios = svc.log(tracking_code=codes["ios-1"])
    assert actions(ios) == [("ios-1", "created"), ("ios-1", "opened")]
    assert ios == [r for r in m1 if r["tracking_code"] == codes["ios-1"]]
    ghost = svc.log(tracking_code=codes["ghost"])
    assert actions(ghost) == [("ghost", "created"), ("ghost", "failed")]
    assert svc.log(tracking_code=codes["ios-1"], actions=["opened"]) == ios[1:]
    assert svc.log(tracking_code=codes["ios-1"], message_code=world.m2) == []
    assert svc.log(tracking_code=codes["ios-1"], hwid="and-1") == []
    assert svc.log(tracking_code="T-0000-00000000-00000000") == []
    assert svc.log(tracking_code="") == []


def test_limit_and_pagination(world: World) -> None:
    svc = world.svc
    everything = svc.log(application_code=svc.app.code)
    for limit in (1, 3, 10):
        rows, token, pages = [], None, 0
        while True:
            body: dict[str, Any] = {"application_code": svc.app.code, "limit": limit}
            if token:
                body["pagination_token"] = token
            page = svc.v2(LOG, body).json()
            assert len(page["data"]) <= limit
            rows += page["data"]
            pages += 1
            token = page["pagination_token"]
            if token is None:
                break
            assert isinstance(token, str)
        assert rows == everything
        assert pages == -(-11 // limit)  # the last page with rows carries no token
    page = svc.v2(LOG, {"application_code": svc.app.code, "limit": 100000}).json()
    assert page["data"] == everything
    assert page["pagination_token"] is None


def test_pages_by_each_lookup_join_up_to_the_whole_answer(world: World) -> None:
    """Paged one or two rows at a time, each lookup (where the statement starts from a
    different index, and created rows can fill a page) gives its whole answer, in order."""
    svc = world.svc
    for lookup in (
        {"message_code": world.m1},
        {"campaign_code": "camp-1"},
        {"hwid": "ios-1"},
        {"hwid": ["and-1", "ghost"]},
        {"user_id": "u1"},
        {"application_code": svc.app.code, "actions": ["created", "delivered"]},
    ):
        everything = svc.log(**lookup)
        assert everything, lookup
        for limit in (1, 2):
            rows: list[dict[str, Any]] = []
            token = None
            while True:
                body: dict[str, Any] = {**lookup, "limit": limit}
                if token:
                    body["pagination_token"] = token
                page = svc.v2(LOG, body).json()
                rows += page["data"]
                token = page["pagination_token"]
                if token is None:
                    break
            assert rows == everything, (lookup, limit)


# -- auth -------------------------------------------------------------------------------


def test_both_auth_forms(world: World) -> None:
    svc = world.svc
    expected = svc.log(message_code=world.m1)
    for body, headers in (
        ({"message_code": world.m1}, {"Authorization": f"Token {svc.server_token}"}),
        ({"message_code": world.m1}, {"Authorization": f"Bearer {svc.server_token}"}),
        ({"request": {"message_code": world.m1, "auth": svc.server_token}}, {}),
        ({"message_code": world.m1, "auth": svc.server_token}, {}),
    ):
        resp = svc.http.post(f"/api/v2/{LOG}", json=body, headers=headers)
        assert resp.status_code == 200, (body, resp.text)
        assert resp.json() == {"data": expected, "pagination_token": None}


def test_restricted_token_never_sees_other_applications(world: World) -> None:
    svc = world.svc
    only_a = svc.make_token("server", apps=[svc.app.code])
    only_b = svc.make_token("server", apps=[world.b])
    stranger = svc.make_token("server", account="someone-else")

    def seen(token: str, **filters: Any) -> set[str]:
        resp = svc.v2(LOG, filters, token=token)
        if resp.status_code == 403:
            return set()
        assert resp.status_code == 200, resp.text
        return {r["application_code"] for r in resp.json()["data"]}

    now = datetime.now(UTC)
    around = {
        "date_from": _wire(now - timedelta(hours=1)),
        "date_to": _wire(now + timedelta(hours=1)),
    }
    (b_code,) = {r["tracking_code"] for r in svc.log(message_code=world.m4, hwid="ios-1")}
    for filters in (
        {"hwid": "ios-1"},
        {"tracking_code": b_code},
        {"campaign_code": "camp-1"},
        {"user_id": "u1"},
        {"application_code": world.b},
        {"message_code": world.m4},
        around,
    ):
        assert seen(only_a, **filters) <= {svc.app.code}, filters
        assert seen(only_b, **filters) <= {world.b}, filters
        assert seen(stranger, **filters) == set(), filters
    assert seen(only_b, tracking_code=b_code) == {world.b}
    assert seen(only_a, **around) == {svc.app.code}
    assert seen(only_b, **around) == {world.b}


def test_unauthenticated_is_401(world: World) -> None:
    svc = world.svc
    for headers, body in (
        ({}, {"message_code": world.m1}),
        ({"Authorization": "Token nope"}, {"message_code": world.m1}),
        ({"Authorization": "Basic abc"}, {"message_code": world.m1}),
        ({}, {"message_code": world.m1, "auth": "nope"}),
        ({}, {"request": {"message_code": world.m1, "auth": 5}}),
    ):
        resp = svc.http.post(f"/api/v2/{LOG}", json=body, headers=headers)
        assert resp.status_code == 401, (headers, body)
        assert resp.json() == {"error": "Access denied or application not found"}


# -- errors ---------------------------------------------------------------------------------


def _token(*values: Any) -> str:
    import json

    return base64.urlsafe_b64encode(json.dumps(list(values)).encode()).decode().rstrip("=")


ERRORS: list[tuple[dict[str, Any], str | None]] = [
    ({}, "required"),
    ({"date_from": "2024-01-01 00:00:00"}, "required"),
    ({"date_to": "2024-01-01 00:00:00"}, "required"),
    ({"hwid": []}, "required"),
    ({"actions": ["created"]}, "required"),
    (
        {"date_from": "2024-01-01 00:00:00", "date_to": "2024-01-31 00:00:01"},
        "exceeded the maximum date interval. Max interval: 30 days",
    ),
    (
        {"date_from": "2024-01-01 00:00:00", "date_to": "2024-06-01 00:00:00", "hwid": "x"},
        "exceeded the maximum date interval. Max interval: 30 days",
    ),
    ({"date_from": "2024-01-02 00:00:00", "date_to": "2024-01-01 00:00:00"}, "date_to"),
    ({"date_from": "2024-01-01", "date_to": "2024-01-02 00:00:00"}, "date_from"),
    ({"date_from": "2024-13-01 00:00:00", "date_to": "2024-01-02 00:00:00"}, "date_from"),
    ({"date_from": "2024-01-01T00:00:00", "date_to": "2024-01-02 00:00:00"}, "date_from"),
    ({"date_from": "2024-01-01 00:00:00", "date_to": "tomorrow"}, "date_to"),
    ({"date_from": 1704067200, "date_to": "2024-01-02 00:00:00"}, "date_from"),
    ({"hwid": "x", "limit": 0}, "limit"),
    ({"hwid": "x", "limit": -5}, "limit"),
    ({"hwid": "x", "limit": 100001}, "limit"),
    ({"hwid": "x", "limit": "10"}, "limit"),
    ({"hwid": "x", "limit": 1.5}, "limit"),
    ({"hwid": "x", "limit": True}, "limit"),
    ({"hwid": "x", "pagination_token": "!!!"}, "pagination_token"),
    ({"hwid": "x", "pagination_token": "abc"}, "pagination_token"),
    ({"hwid": "x", "pagination_token": "é"}, "pagination_token"),
    ({"hwid": "x", "pagination_token": _token(1)}, "pagination_token"),
    ({"hwid": "x", "pagination_token": _token("a", "b")}, "pagination_token"),
    ({"hwid": "x", "pagination_token": _token(2**70, 1)}, "pagination_token"),
    ({"hwid": "x", "pagination_token": _token(1, -(2**64))}, "pagination_token"),
    ({"hwid": "x", "pagination_token": 12}, "pagination_token"),
    ({"hwid": "x", "actions": ["clicked"]}, "actions"),
    ({"hwid": "x", "actions": ["inbox_received"]}, "actions"),
    ({"hwid": "x", "actions": ["send"]}, "actions"),
    ({"hwid": "x", "platforms": ["internet explorer"]}, "platforms"),
    ({"hwid": "x", "platforms": ["mac os"]}, "platforms"),
    ({"tracking_code": 5}, "tracking_code"),
    ({"tracking_code": ["T-1"]}, "tracking_code"),
    ({"tracking_code": "T" * 65}, "tracking_code"),
    ({"tracking_codes": ["T-1"]}, 'unknown field "tracking_codes"'),
    ({"hwid": "x", "actions": "created"}, "actions"),
    ({"hwid": "x", "platforms": ["ios9"]}, "platforms"),
    ({"hwid": "x", "platforms": [1]}, "platforms"),
    ({"hwid": 5}, "hwid"),
    ({"hwid": [5]}, "hwid"),
    ({"message_id": "abc"}, "message_id"),
    ({"message_id": 2**64}, "message_id"),
    ({"message_id": -(2**70)}, "message_id"),
    ({"message_code": 5}, "message_code"),
    ({"user_id": ["u"]}, "user_id"),
]


def test_every_argument_error_is_400_with_error_body(world: World) -> None:
    for body, says in ERRORS:
        resp = world.svc.v2(LOG, body)
        assert resp.status_code == 400, (body, resp.status_code, resp.text)
        out = resp.json()
        assert set(out) == {"error"}, (body, out)
        if says:
            assert says in out["error"], (body, out)
    resp = world.svc.v2(LOG, {"date_from": "2024-01-01 00:00:00", "date_to": "2024-01-31 00:00:00"})
    assert resp.json() == {"data": [], "pagination_token": None}  # exactly 30 days is fine


def test_malformed_bodies_are_400(world: World) -> None:
    headers = {
        "Authorization": f"Token {world.svc.server_token}",
        "Content-Type": "application/json",
    }
    for raw in (b"", b"not json", b"[1, 2]", b"5", b'"x"', b"\xff", b"{"):
        resp = world.svc.http.post(f"/api/v2/{LOG}", content=raw, headers=headers)
        assert resp.status_code == 400, raw
        assert resp.json() == {"error": "Malformed request string"}, raw


def test_big_filter_lists_are_not_a_fault(world: World) -> None:
    svc = world.svc
    many = [f"h{i}" for i in range(40_000)] + ["ios-1"]
    resp = svc.v2(LOG, {"hwid": many})
    assert resp.status_code in (200, 400), resp.text
    resp = svc.v2(LOG, {"hwid": "ios-1", "platforms": ["ios"] * 40_000})
    assert resp.status_code == 200, resp.text
    assert len(resp.json()["data"]) == 4


# -- paging while events keep arriving --------------------------------------------------------


def test_paging_is_stable_while_new_events_arrive(svc: Service) -> None:
    for i in range(10):
        svc.register(f"hw-{i}", device_type=(1, 3)[i % 2])
    for _ in range(10):
        svc.send(devices=[f"hw-{i}" for i in range(10)] + ["ghost-a", "ghost-b"])
    old = svc.log(application_code=svc.app.code)
    assert len(old) == 140

    stop = threading.Event()
    made: list[int] = []

    def writer() -> None:
        with httpx.Client(base_url=svc.url, timeout=30) as http:
            device = {"Authorization": f"Token {svc.device_token}"}
            n = 0
            # bounded, so the walk ends however slow its pages are beside the writer
            while not stop.is_set() and n < 100:
                reg = {
                    "request": {
                        "application": svc.app.code,
                        "hwid": f"new-{n}",
                        "device_type": 1,
                        "push_token": f"t-{n}",
                    }
                }
                assert (
                    http.post("/json/1.3/registerDevice", json=reg, headers=device).json()[
                        "status_code"
                    ]
                    == 200
                )
                msg = {
                    "request": {
                        "auth": svc.server_token,
                        "application": svc.app.code,
                        "notifications": [
                            {"content": "more", "devices": [f"new-{n}", "hw-0", "g"]}
                        ],
                    }
                }
                assert http.post("/json/1.3/createMessage", json=msg).json()["status_code"] == 200
                n += 1
                made.append(n)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while len(made) < 3 and time.monotonic() < deadline:
            time.sleep(0.005)
        walked: list[dict[str, Any]] = []
        token = None
        while True:
            body: dict[str, Any] = {"application_code": svc.app.code, "limit": 7}
            if token:
                body["pagination_token"] = token
            resp = svc.v2(LOG, body)
            assert resp.status_code == 200, resp.text
            page = resp.json()
            walked += page["data"]
            token = page["pagination_token"]
            if token is None:
                break
            time.sleep(0.002)
    finally:
        stop.set()
        thread.join(30)
    assert len(made) >= 3

    def key(r: dict[str, Any]) -> tuple[str, str]:
        return r["tracking_code"], r["action"]

    old_keys = {key(r) for r in old}
    assert [r for r in walked if key(r) in old_keys] == old  # each once, in the same order
    assert len({key(r) for r in walked}) == len(walked)  # nothing twice
    assert [r["timestamp"] for r in walked] == sorted(r["timestamp"] for r in walked)
    assert len(walked) > len(old)  # new events did arrive while walking


def test_a_large_page_is_encoded_while_other_requests_are_answered(
    svc: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large page is encoded off the event loop: a small request sent while the large
    page is being encoded is answered before it."""
    big = svc.send(devices=[f"ghost-{i}" for i in range(message_log.INLINE_ROWS + 20)])
    small = svc.send(devices=["ghost-x"])
    encoding = threading.Event()
    answered = threading.Event()

    def hold(rows: int) -> None:
        if rows > message_log.INLINE_ROWS:  # the large page waits here until the small is answered
            encoding.set()
            answered.wait(30)

    monkeypatch.setattr(message_log, "before_encoding", hold)
    done: list[str] = []
    pages: dict[str, Any] = {}

    def large() -> None:
        with httpx.Client(base_url=svc.url, timeout=60) as http:
            resp = http.post(
                f"/api/v2/{LOG}",
                json={"message_code": big["Messages"][0], "limit": 1000},
                headers={"Authorization": f"Token {svc.server_token}"},
            )
        pages["large"] = resp.json()
        done.append("large")

    thread = threading.Thread(target=large)
    thread.start()
    try:
        assert encoding.wait(30)
        resp = svc.v2(LOG, {"message_code": small["Messages"][0]})
        done.append("small")
        answered.set()
    finally:
        answered.set()
        thread.join(60)
    assert done == ["small", "large"]
    assert resp.status_code == 200
    assert [r["hwid"] for r in resp.json()["data"]][:1] == ["ghost-x"]
    rows = pages["large"]["data"]
    assert {r["hwid"] for r in rows} == {f"ghost-{i}" for i in range(message_log.INLINE_ROWS + 20)}
    assert pages["large"]["pagination_token"] is None
