"""The device methods real SDKs call, over HTTP on both engines.

registerDevice as the Web SDK and the mobile SDKs send it, applicationOpen,
registerUser, setBadge, checkDevice, postEvent, and getEventStatistics (the
server's view of posted events). Payloads below are what Pushwoosh's Android,
iOS and Web SDKs put in each request (read from their sources).
"""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from pushtrack.api.devices import IGNORED
from pushtrack.worker import build_worker
from tests.support import Service, run


@pytest.fixture
def svc(shared: Service) -> Service:
    return shared.fresh_account()


def row(svc: Service, hwid: str, columns: str) -> dict[str, Any]:
    names = [c.strip() for c in columns.split(",")]
    rows = svc.db.rows(
        f"SELECT {columns} FROM devices WHERE app_id = ? AND hwid = ?", (svc.app.id, hwid)
    )
    assert len(rows) == 1, rows
    return dict(zip(names, rows[0], strict=True))


def device_count(svc: Service) -> int:
    return int(svc.db.rows("SELECT COUNT(*) FROM devices WHERE app_id = ?", (svc.app.id,))[0][0])


def ok(out: dict[str, Any]) -> Any:
    assert (out["status_code"], out["status_message"]) == (200, "OK"), out
    return out["response"]


def refused(out: dict[str, Any], field: str) -> str:
    assert out["status_code"] == 210, out
    assert out["response"] is None
    message = str(out["status_message"])
    assert field in message, out
    return message


def now_s() -> int:
    return int(time.time())


def browser_keys() -> tuple[str, str]:
    """A browser subscription's keys as the Web SDK sends them: standard base64 (btoa)."""
    point = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    )
    return base64.b64encode(point).decode(), base64.b64encode(b"0123456789abcdef").decode()


# -- what each SDK sends ---------------------------------------------------------------------------


def android(hwid: str) -> dict[str, Any]:
    return {"hwid": hwid, "v": "6.10.0", "device_type": 3, "userId": "android-user"}


def android_open(hwid: str) -> dict[str, Any]:
    return {
        **android(hwid),
        "language": "en",
        "timezone": 3600,
        "android_package": "com.example.app",
        "device_model": "Pixel 8",
        "device_name": "Phone",
        "os_version": "14",
        "app_version": "2.3.4",
        "notificationTypes": 6,
    }


def ios(hwid: str) -> dict[str, Any]:
    return {"hwid": hwid, "v": "7.1.3", "device_type": 1, "userId": hwid}


def ios_open(hwid: str) -> dict[str, Any]:
    return {
        **ios(hwid),
        "package": "com.example.app",
        "timezone": "-18000",
        "app_version": "2.3.4",
        "os_version": "17.4",
        "device_model": "iPhone15,2",
        "language": "en",
        "time_sensitive_notifications": True,
        "scheduled_summary": False,
        "notificationTypes": 7,
        "jailbroken": 0,
    }


def web(hwid: str) -> dict[str, Any]:
    return {
        "hwid": hwid,
        "userId": hwid,
        "device_type": 11,
        "device_model": "120.0.0.0",
        "timezone": 3600,
        "language": "en-US",
        "v": "3.2.0",
    }


def sdk_calls(hwid: str) -> list[tuple[str, dict[str, Any]]]:
    """(method, request) of every SDK call, in the order an app makes them."""
    public_key, auth_token = browser_keys()
    event = {"event": "purchase", "attributes": {"sku": "a1"}}
    stamps = {"timestampUTC": now_s(), "timestampCurrent": now_s() + 3600}
    return [
        ("applicationOpen", android_open(f"a-{hwid}")),
        (
            "registerDevice",
            {**android_open(f"a-{hwid}"), "push_token": "fcm-token-1", "sounds": ["bell"]},
        ),
        ("registerUser", {**android(f"a-{hwid}"), "userId": "android-user"}),
        ("postEvent", {**android(f"a-{hwid}"), **event, **stamps}),
        ("applicationOpen", ios_open(f"i-{hwid}")),
        (
            "registerDevice",
            {
                **ios_open(f"i-{hwid}"),
                "push_token": "ab" * 32,
                "gateway": "production",
                "sounds": ["chime.caf"],
                "voip_push_token": "cd" * 32,
            },
        ),
        ("registerUser", ios(f"i-{hwid}")),
        ("setBadge", {**ios(f"i-{hwid}"), "badge": 4}),
        ("postEvent", {**ios(f"i-{hwid}"), **event, **stamps}),
        ("checkDevice", web(f"w-{hwid}")),
        (
            "registerDevice",
            {
                **web(f"w-{hwid}"),
                "push_token": "https://push.example.com/wpush/abc",
                "public_key": public_key,
                "auth_token": auth_token,
            },
        ),
        ("applicationOpen", web(f"w-{hwid}")),
        ("registerUser", {**web(f"w-{hwid}"), "userId": "web-user", "ts_offset": 3600}),
        ("postEvent", {**web(f"w-{hwid}"), **event, **stamps}),
        ("pushStat", {**web(f"w-{hwid}"), "hash": "unknown", "metaData": {}}),
        ("messageDeliveryEvent", {**web(f"w-{hwid}"), "hash": "unknown", "metaData": {}}),
        ("unregisterDevice", web(f"w-{hwid}")),
        # Pushwoosh's reference documents these registerDevice fields too
        (
            "registerDevice",
            {
                "hwid": f"d-{hwid}",
                "device_type": 11,
                "push_token": "https://push.example.com/wpush/def",
                "idfa": "AEBE52E7-03EE-455A-B3C4-E57283966239",
                "public_key": public_key,
                "auth_token": auth_token,
                "fcm_token": "legacy",
                "fcm_push_set": "legacy",
            },
        ),
        # Pushwoosh's Python library (pypushwoosh) names the badge "badges"
        ("setBadge", {"hwid": f"i-{hwid}", "badges": 2}),
    ]


def test_every_call_real_sdks_make_is_understood(svc: Service) -> None:
    for method, request in sdk_calls("x"):
        out = svc.device(method, **request)
        assert out["status_code"] == 200, (method, request, out)
    assert row(svc, "a-x", "push_token, language, timezone, user_id, device_model") == {
        "push_token": "fcm-token-1",
        "language": "en",
        "timezone": 3600,
        "user_id": "android-user",
        "device_model": "Pixel 8",
    }
    assert row(svc, "i-x", "timezone, badge, app_version") == {
        "timezone": -18000,
        "badge": 2,
        "app_version": "2.3.4",
    }
    assert row(svc, "w-x", "language, user_id, subscribed") == {
        "language": "en",
        "user_id": "web-user",
        "subscribed": 0,
    }
    events = svc.db.rows(
        "SELECT hwid FROM device_events WHERE app_id = ? ORDER BY id", (svc.app.id,)
    )
    assert events == [("a-x",), ("i-x",), ("w-x",)]


def test_every_ignored_field_is_one_an_sdk_sends() -> None:
    sent = {key for _, request in sdk_calls("x") for key in request}
    assert set(IGNORED) <= sent


# -- registerDevice --------------------------------------------------------------------------------


def test_timezone_as_an_iana_name_or_offset(svc: Service) -> None:
    ok(svc.device("registerDevice", hwid="b", device_type=1, timezone="Europe/Berlin"))
    berlin = datetime.now(ZoneInfo("Europe/Berlin")).utcoffset()
    assert berlin is not None
    assert row(svc, "b", "timezone, tz_name") == {
        "timezone": int(berlin.total_seconds()),
        "tz_name": "Europe/Berlin",
    }
    # an offset alone replaces the zone; the iOS SDK sends the offset as text
    ok(svc.device("registerDevice", hwid="b", device_type=1, timezone="-18000"))
    assert row(svc, "b", "timezone, tz_name") == {"timezone": -18000, "tz_name": None}
    ok(svc.device("registerDevice", hwid="b", device_type=1, timezone="Asia/Kolkata"))
    ok(svc.device("registerDevice", hwid="b", device_type=1, app_version="9"))
    assert row(svc, "b", "timezone, tz_name") == {"timezone": 19800, "tz_name": "Asia/Kolkata"}
    for bad in ("Mars/Olympus", "+0100", "UTC+1", "../../etc/passwd", "", "1e3", True):
        out = svc.device("registerDevice", hwid="c", device_type=1, timezone=bad)
        refused(out, "timezone")
    assert device_count(svc) == 1


def test_language_codes_and_tags(svc: Service) -> None:
    for sent, stored in (
        ("de", "de"),
        ("DE", "de"),
        ("haw", "haw"),
        ("en-US", "en"),
        ("zh-Hant-TW", "zh"),
        ("pt-BR", "pt"),
    ):
        ok(svc.device("registerDevice", hwid=sent, device_type=11, language=sent))
        assert row(svc, sent, "language") == {"language": stored}, sent
    for bad in ("en_US", "e", "english", "en-", "-US", "12"):
        refused(svc.device("registerDevice", hwid="bad", device_type=3, language=bad), "language")


def test_an_empty_push_token_is_refused(svc: Service) -> None:
    svc.register("keep", push_token="old-token")
    for empty in ("", "   "):
        out = svc.device("registerDevice", hwid="keep", device_type=1, push_token=empty)
        refused(out, "push_token")
        refused(
            svc.device("registerDevice", hwid="new", device_type=1, push_token=empty), "push_token"
        )
    assert row(svc, "keep", "push_token, subscribed") == {
        "push_token": "old-token",
        "subscribed": 1,
    }
    assert device_count(svc) == 1
    # leaving it out registers a device without one (nothing to send to yet)
    ok(svc.device("registerDevice", hwid="new", device_type=1))
    assert row(svc, "new", "push_token, subscribed") == {"push_token": None, "subscribed": 0}


def test_web_sdk_subscription_keys(svc: Service) -> None:
    public_key, auth_token = browser_keys()
    endpoint = "https://push.example.com/wpush/1"
    body = {"hwid": "web", "device_type": 11, "push_token": endpoint}
    ok(svc.device("registerDevice", **body, public_key=public_key, auth_token=auth_token))
    assert row(svc, "web", "push_token, web_p256dh, web_auth, subscribed") == {
        "push_token": endpoint,
        "web_p256dh": public_key,
        "web_auth": auth_token,
        "subscribed": 1,
    }
    # re-registering without a token keeps the subscription; a new token brings its own keys
    ok(svc.device("registerDevice", hwid="web", device_type=11, language="fr"))
    assert row(svc, "web", "web_auth")["web_auth"] == auth_token
    json_token = '{"endpoint": "https://push.example.com/x", "keys": {}}'
    ok(svc.device("registerDevice", hwid="web", device_type=11, push_token=json_token))
    assert row(svc, "web", "web_p256dh, web_auth") == {"web_p256dh": None, "web_auth": None}
    # unregisterDevice forgets the keys with the token
    ok(svc.device("registerDevice", **body, public_key=public_key, auth_token=auth_token))
    ok(svc.device("unregisterDevice", hwid="web"))
    assert row(svc, "web", "push_token, web_p256dh") == {"push_token": None, "web_p256dh": None}

    before = svc.db.counts()
    cases: list[tuple[dict[str, Any], str]] = [
        ({"auth_token": None}, "auth_token: required with public_key"),
        ({"public_key": None}, "public_key: required with auth_token"),
        ({"public_key": "AAAA", "auth_token": auth_token}, "public_key"),
        ({"public_key": public_key, "auth_token": "AAAA"}, "auth_token"),
        ({"public_key": public_key, "auth_token": "not base64!"}, "auth_token"),
        ({"push_token": "http://push.example.com/1"}, "push_token"),
        ({"push_token": None}, "push_token"),
        ({"email": "someone@example.com"}, '"email" is not supported'),
    ]
    for fields, named in cases:
        request = {**body, "public_key": public_key, "auth_token": auth_token, **fields}
        request = {k: v for k, v in request.items() if v is not None}
        refused(svc.device("registerDevice", **{**request, "hwid": "web2"}), named)
    assert svc.db.counts() == before


# -- applicationOpen -------------------------------------------------------------------------------


def test_application_open_records_the_open(svc: Service) -> None:
    before = now_s()
    ok(svc.device("applicationOpen", **android_open("new")))
    got = row(svc, "new", "device_type, push_token, subscribed, last_open, language, app_version")
    assert got["last_open"] // 1_000_000 in range(before, now_s() + 1)
    assert got | {"last_open": 0} == {
        "device_type": 3,
        "push_token": None,
        "subscribed": 0,
        "last_open": 0,
        "language": "en",
        "app_version": "2.3.4",
    }
    # a registered device keeps its token; what the open reports is recorded
    svc.register("reg", 1, push_token="tok", language="de", app_version="1.0")
    ok(svc.device("applicationOpen", hwid="reg", app_version="1.1", timezone="America/New_York"))
    got = row(svc, "reg", "push_token, subscribed, language, app_version, tz_name, last_open")
    assert got["last_open"] is not None
    assert got | {"last_open": 0} == {
        "push_token": "tok",
        "subscribed": 1,
        "language": "de",
        "app_version": "1.1",
        "tz_name": "America/New_York",
        "last_open": 0,
    }
    # an open reported late never moves the last open back; one from the future is "now"
    last = got["last_open"]
    ok(svc.device("applicationOpen", hwid="reg", timestampUTC=now_s() - 3600))
    assert row(svc, "reg", "last_open")["last_open"] == last
    ok(svc.device("applicationOpen", hwid="reg", timestampUTC=now_s() + 86400))
    assert row(svc, "reg", "last_open")["last_open"] // 1_000_000 <= now_s()
    # an unknown device needs its type to be recorded
    count = device_count(svc)
    refused(svc.device("applicationOpen", hwid="ghost"), "device_type")
    refused(svc.device("applicationOpen", hwid="ghost", device_type=4), "device_type")
    assert device_count(svc) == count


# -- registerUser ----------------------------------------------------------------------------------


def test_register_user_binds_the_user_to_the_device(svc: Service) -> None:
    svc.register("phone", 3, push_token="t-phone")
    ok(svc.device("registerUser", hwid="phone", userId="alice", tz_offset=7200))
    assert row(svc, "phone", "user_id, timezone, push_token") == {
        "user_id": "alice",
        "timezone": 7200,
        "push_token": "t-phone",
    }
    # a message to the user reaches her device
    sent = svc.send(users=["alice"])
    assert [r["hwid"] for r in svc.log(message_code=sent["Messages"][0])] == ["phone"]
    # an empty user id binds the hwid (Pushwoosh: "if empty, use hwid"); ts_offset (Web SDK)
    ok(svc.device("registerUser", hwid="phone", userId="", ts_offset=-3600))
    assert row(svc, "phone", "user_id, timezone") == {"user_id": "phone", "timezone": -3600}
    # before registerDevice: recorded when the device type is given
    refused(svc.device("registerUser", hwid="early", userId="bob"), "device_type")
    ok(svc.device("registerUser", hwid="early", userId="bob", device_type=1))
    assert row(svc, "early", "user_id, subscribed") == {"user_id": "bob", "subscribed": 0}
    refused(svc.device("registerUser", hwid="phone", userId=5), "userId")
    refused(svc.device("registerUser", hwid="phone", tz_offset="x"), "tz_offset")


# -- setBadge --------------------------------------------------------------------------------------


def test_set_badge(svc: Service) -> None:
    svc.register("iphone", 1)
    svc.register("mac", 7)
    svc.register("pixel", 3)
    ok(svc.device("setBadge", hwid="iphone", badge=5))
    ok(svc.device("setBadge", hwid="mac", badges=1))
    assert row(svc, "iphone", "badge") == {"badge": 5}
    assert row(svc, "mac", "badge") == {"badge": 1}
    ok(svc.device("setBadge", hwid="iphone", badge=0, badges=0))
    assert row(svc, "iphone", "badge") == {"badge": 0}
    before = svc.db.counts()
    assert (
        refused(svc.device("setBadge", hwid="pixel", badge=3), "iOS")
        == "Badges can be set on iOS devices only"
    )
    assert row(svc, "pixel", "badge") == {"badge": None}
    refused(svc.device("setBadge", hwid="nobody", badge=3), "hwid")
    refused(svc.device("setBadge", hwid="iphone"), "badge")
    refused(svc.device("setBadge", hwid="iphone", badge=-1), "badge")
    refused(svc.device("setBadge", hwid="iphone", badge="3"), "badge")
    refused(svc.device("setBadge", hwid="iphone", badge=1, badges=2), "badges")
    assert svc.db.counts() == before
    assert row(svc, "iphone", "badge") == {"badge": 0}


# -- checkDevice -----------------------------------------------------------------------------------


def test_check_device(svc: Service) -> None:
    def check(hwid: str) -> Any:
        return ok(svc.device("checkDevice", hwid=hwid))

    before = svc.db.counts()
    assert check("nobody") == {"exist": False, "push_token_exist": False}
    assert svc.db.counts() == before  # it only reads
    ok(svc.device("registerDevice", hwid="bare", device_type=3))
    assert check("bare") == {"exist": True, "push_token_exist": False}
    svc.register("full", 3, push_token="tok")
    assert check("full") == {"exist": True, "push_token_exist": True}
    ok(svc.device("unregisterDevice", hwid="full"))
    assert check("full") == {"exist": True, "push_token_exist": False}
    # a token a gateway declared dead is no token (the SDK registers again)
    svc.register("dead", 3, push_token="dead-tok")
    svc.db.execute(
        f"UPDATE devices SET subscribed = 0 WHERE hwid = 'dead' AND app_id = {svc.app.id}"
    )
    assert check("dead") == {"exist": True, "push_token_exist": False}
    refused(svc.device("checkDevice"), "hwid")


# -- postEvent and getEventStatistics --------------------------------------------------------------


def work(svc: Service) -> None:
    assert svc.settings is not None
    run(build_worker(svc.settings, svc.store, poll_seconds=0.05).run_until_idle(10))


def event_statistics(svc: Service, **fields: Any) -> Any:
    request_id = ok(svc.server("getEventStatistics", **fields))["request_id"]
    work(svc)
    return ok(svc.server("getResults", request_id=request_id))


def test_post_event_is_recorded_and_counted_by_hour(svc: Service) -> None:
    now = now_s()
    hour = now - now % 3600
    two_ago = hour - 2 * 3600 + 60
    posts = [
        ("plan", {"plan": "gold", "n": 3}, hour + 1, "u1"),
        ("plan", {"plan": "gold", "n": 7}, two_ago, None),
        ("plan", {"plan": "free", "n": 1}, two_ago + 1, None),
        ("plan", {"plan": ["gold", "extra"], "n": "12"}, hour + 2, None),
        ("other", {"plan": "gold"}, hour + 3, None),
    ]
    for name, attributes, at, user in posts:
        fields: dict[str, Any] = {"event": name, "attributes": attributes, "timestampUTC": at}
        if user:
            fields["userId"] = user
        assert ok(svc.device("postEvent", hwid="h1", timestampCurrent=at + 7200, **fields)) == {
            "code": ""
        }
    stored = svc.db.rows(
        "SELECT name, attributes, occurred_at, local_time, user_id FROM device_events"
        " WHERE app_id = ? ORDER BY id",
        (svc.app.id,),
    )
    assert stored[0][0] == "plan"
    assert stored[0][2:] == ((hour + 1) * 1_000_000, hour + 1 + 7200, "u1")
    assert len(stored) == 5

    today = datetime.fromtimestamp(hour, UTC).strftime("%Y-%m-%d")
    rows = event_statistics(svc, event="plan", date_from=today, date_to=today)
    day_start = datetime.strptime(today, "%Y-%m-%d").replace(tzinfo=UTC).timestamp()
    assert [r["date"] for r in rows] == [
        datetime.fromtimestamp(day_start + h * 3600, UTC).strftime("%Y-%m-%d %H:00")
        for h in range(24)
    ]

    def counts(rows: list[dict[str, Any]]) -> dict[str, int]:
        return {r["date"]: r["count"] for r in rows if r["count"]}

    def at(ts: int) -> str:
        return datetime.fromtimestamp(ts - ts % 3600, UTC).strftime("%Y-%m-%d %H:00")

    expected: dict[str, int] = {}
    for name, _, ts, _ in posts:
        if name == "plan" and at(ts).startswith(today):
            expected[at(ts)] = expected.get(at(ts), 0) + 1
    assert counts(rows) == expected
    # attribute conditions: list attributes match by item; numbers sent as text compare
    golds = event_statistics(
        svc,
        event="plan",
        date_from=today,
        date_to=today,
        attributes=[{"name": "plan", "operator": "EQ", "values": ["gold"]}],
    )
    assert sum(r["count"] for r in golds) == sum(
        1 for n, a, ts, _ in posts if n == "plan" and at(ts).startswith(today) and "gold" in str(a)
    )
    big = event_statistics(
        svc,
        event="plan",
        date_from=today,
        date_to=today,
        attributes=[
            {"name": "n", "operator": "GTE", "values": [5]},
            {"name": "plan", "operator": "NOTIN", "values": ["free"]},
        ],
    )
    assert sum(r["count"] for r in big) == sum(
        1
        for n, a, ts, _ in posts
        if n == "plan" and at(ts).startswith(today) and int(a["n"]) >= 5 and a["plan"] != "free"
    )


def test_post_event_and_statistics_errors(svc: Service) -> None:
    before = svc.db.counts()
    refused(svc.device("postEvent", hwid="h", event="e"), "attributes")
    refused(svc.device("postEvent", hwid="h", attributes={}), "event")
    refused(svc.device("postEvent", hwid="h", event="", attributes={}), "event")
    refused(svc.device("postEvent", hwid="h", event="e", attributes=[]), "attributes")
    refused(
        svc.device("postEvent", hwid="h", event="e", attributes={}, timestampUTC="x"),
        "timestampUTC",
    )
    assert svc.db.counts() == before
    stats = {"event": "e", "date_from": "2026-01-01", "date_to": "2026-01-01"}
    for fields, named in [
        ({"date_from": "01/01/2026"}, "date_from"),
        ({"date_to": "2026-13-01"}, "date_to"),
        ({"date_from": "2026-01-02"}, "date_to"),
        ({"date_to": "2026-03-01"}, "31 days"),
        ({"attributes": [{"name": "a", "operator": "LIKE", "values": ["x"]}]}, "attributes[0]"),
        ({"attributes": [{"name": "a", "operator": "GTE", "values": ["x"]}]}, "numbers"),
        ({"attributes": [{"name": "a", "operator": "EQ", "values": []}]}, "attributes[0]"),
        ({"attributes": [{"name": "a", "operator": "EQ", "value": ["x"]}]}, "attributes[0]"),
        ({"event": ""}, "event"),
        ({"application": "FFFFF-FFFFF"}, "application"),
    ]:
        refused(svc.server("getEventStatistics", **{**stats, **fields}), named)
    assert svc.db.counts() == before
    # a whole day of a period with no event: 24 rows of zero
    assert event_statistics(svc, **stats) == [
        {"date": f"2026-01-01 {h:02d}:00", "count": 0} for h in range(24)
    ]
    # hours: the period runs from date_from's hour to date_to's hour, inclusive
    rows = event_statistics(
        svc, event="e", date_from="2026-01-01 05:30:00", date_to="2026-01-01 07:00:00"
    )
    assert [r["date"] for r in rows] == ["2026-01-01 05:00", "2026-01-01 06:00", "2026-01-01 07:00"]


def test_events_of_other_applications_are_not_counted(svc: Service) -> None:
    other = svc.new_app("other")
    headers = {"Authorization": f"Token {svc.device_token}"}
    body = {"application": other.code, "hwid": "h", "event": "e", "attributes": {}}
    assert svc.call("postEvent", body).status_code == 401  # the application needs a token
    assert svc.call("postEvent", body, headers=headers).json()["status_code"] == 200
    ok(svc.device("postEvent", hwid="h", event="e", attributes={}))
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    rows = event_statistics(svc, event="e", date_from=today, date_to=today)
    assert sum(r["count"] for r in rows) == 1
    # a server token restricted to the other application may not ask about this one
    only_other = svc.make_token("server", apps=[other.code])
    out = svc.call(
        "getEventStatistics",
        {"auth": only_other, "application": svc.app.code, "event": "e"}
        | {"date_from": today, "date_to": today},
    )
    assert (out.status_code, out.json()["status_code"]) == (403, 403)
    # device tokens cannot call it
    out = svc.call(
        "getEventStatistics",
        {"auth": svc.device_token, "application": svc.app.code, "event": "e"}
        | {"date_from": today, "date_to": today},
    )
    assert out.status_code == 403


def test_device_events_leave_with_the_retention_window(svc: Service) -> None:
    ok(svc.device("postEvent", hwid="h", event="e", attributes={}))
    assert svc.db.count_where("device_events", f"app_id = {svc.app.id}") == 1
    report = run(svc.store.retention.purge_rows(svc.store.clock() + 1))
    assert report.device_events >= 1
    assert svc.db.count_where("device_events", f"app_id = {svc.app.id}") == 0


# -- auth rules of the new device methods ----------------------------------------------------------

NEW_METHODS: dict[str, dict[str, Any]] = {
    "applicationOpen": {"hwid": "auth-h", "device_type": 1},
    "registerUser": {"hwid": "auth-h", "userId": "u", "device_type": 1},
    "setBadge": {"hwid": "auth-h", "badge": 1},
    "checkDevice": {"hwid": "auth-h"},
    "postEvent": {"hwid": "auth-h", "event": "e", "attributes": {}},
}


@pytest.mark.parametrize("method", sorted(NEW_METHODS))
def test_device_token_rules(svc: Service, method: str) -> None:
    svc.register("auth-h", 1)
    body = {"application": svc.app.code, **NEW_METHODS[method]}

    def call(token: str | None, application: str | None = None) -> tuple[int, int]:
        headers = {"Authorization": f"Token {token}"} if token else {}
        request = {**body, "application": application or svc.app.code}
        resp = svc.call(method, request, headers=headers)
        return resp.status_code, resp.json()["status_code"]

    other = svc.new_app("other")
    elsewhere = svc.make_token("device", apps=[other.code])
    registering = svc.make_token("device", methods=["registerDevice"])
    before = svc.db.counts()
    assert call(None) == (401, 401)  # this application requires a device token
    assert call("not-a-token") == (401, 401)
    assert call(elsewhere) == (403, 403)
    assert call(registering) == (403, 403)
    assert svc.db.counts() == before
    assert call(svc.device_token) == (200, 200)
    assert call(svc.make_token("device", methods=[method])) == (200, 200)
    # tokenless where the application allows it (old SDKs)
    open_app = svc.new_app("old sdk", device_token_required=False)
    headers = {"Authorization": f"Token {svc.device_token}"}
    svc.call(
        "registerDevice",
        {"application": open_app.code, "hwid": "auth-h", "device_type": 1},
        headers=headers,
    )
    assert call(None, open_app.code) == (200, 200)


# -- local-time sends with a device's IANA time zone ----------------------------------------------


def test_local_time_sends_follow_the_zone_of_the_send_date(svc: Service) -> None:
    """A device registered with a zone name gets the zone's offset at the send time (summer
    time included), not the offset it had when it registered."""
    zones = {"ny": "America/New_York", "tokyo": "Asia/Tokyo", "berlin": "Europe/Berlin"}
    for hwid, name in zones.items():
        svc.register(hwid, 1, timezone=name)
    svc.register("fixed", 1, timezone=-18000)
    dues: dict[str, dict[str, int]] = {}
    for wall in ("2027-07-15 09:00", "2027-01-15 09:00"):
        sent = svc.send(devices=[*zones, "fixed"], send_date=wall, ignore_user_timezone=False)
        local = datetime.strptime(wall, "%Y-%m-%d %H:%M")
        expected = {
            hwid: int(local.replace(tzinfo=ZoneInfo(name)).timestamp()) * 1_000_000
            for hwid, name in zones.items()
        }
        expected["fixed"] = int(local.replace(tzinfo=UTC).timestamp() + 18000) * 1_000_000
        dues[wall] = dict(
            svc.db.rows(
                "SELECT d.hwid, d.next_at FROM deliveries d JOIN messages m"
                " ON m.id = d.message_id WHERE m.code = ?",
                (sent["Messages"][0],),
            )
        )
        assert dues[wall] == expected, wall
    # New York is 4 hours behind UTC in July, 5 (like the fixed offset) in January
    hour = 3600 * 1_000_000
    assert dues["2027-07-15 09:00"]["fixed"] - dues["2027-07-15 09:00"]["ny"] == hour
    assert dues["2027-01-15 09:00"]["fixed"] == dues["2027-01-15 09:00"]["ny"]


# -- what the sender sees ------------------------------------------------------------------------


def test_the_sender_sees_a_device_with_its_last_open_and_badge(svc: Service) -> None:
    import json
    import subprocess
    import sys

    svc.register("iphone", 1, push_token="ab" * 32, timezone="Europe/Paris", userId="alice")
    opened = now_s() - 120
    ok(svc.device("applicationOpen", hwid="iphone", timestampUTC=opened, app_version="3.1"))
    ok(svc.device("setBadge", hwid="iphone", badge=2))
    command = [str(Path(sys.executable).with_name("pushtrack")), "app", "device"]
    where = ["--account", svc.account, "--database", svc.store.url]
    done = subprocess.run(
        [*command, svc.app.code, "iphone", *where, "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    shown = json.loads(done.stdout)
    assert shown["last_open"] == datetime.fromtimestamp(opened, UTC).strftime("%Y-%m-%d %H:%M:%S")
    assert {k: shown[k] for k in ("platform", "badge", "timezone", "user_id", "app_version")} == {
        "platform": "ios",
        "badge": 2,
        "timezone": "Europe/Paris",
        "user_id": "alice",
        "app_version": "3.1",
    }
    missing = subprocess.run(
        [*command, svc.app.code, "nobody", *where], capture_output=True, text=True, timeout=60
    )
    assert missing.returncode == 2
    assert "no device 'nobody'" in missing.stderr


def test_timestamps_out_of_any_range_are_refused(svc: Service) -> None:
    before = svc.db.counts()
    for field in ("timestampUTC", "timestampCurrent"):
        for bad in (2**63, 2**64 - 1, -1):
            out = svc.device("postEvent", hwid="h", event="e", attributes={}, **{field: bad})
            refused(out, field)
    refused(
        svc.device("applicationOpen", hwid="h", device_type=1, timestampUTC=2**63), "timestampUTC"
    )
    assert svc.db.counts() == before
