"""Every honoured notification field, end to end: validated ``Content`` → store → worker →
the local gateway servers, checking what each gateway received where Pushwoosh's SDKs
read it, and that the stored template renders to exactly those bytes (the export and
getMessageLog side use the same template).

Each test sends one message per case (one device each) and runs the worker once, so a
whole platform's field table costs one dispatch.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest

from pushtrack import config
from pushtrack.domain import codes
from pushtrack.domain.notification import Content, fields
from pushtrack.domain.payload import encode, render
from pushtrack.store.base import MessagePlan, Targeting
from pushtrack.worker import build_worker
from tests.delivery._support import apns_token
from tests.gateways import ApnsServer, FcmServer, WebPushServer
from tests.support import Service, run, server_secret, service

SETTINGS = {"max_attempts": 2, "retry_backoff_seconds": 0.05, "worker_lease_seconds": 5}
LONG = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 70  # ~4,000 bytes
RM = "https://cdn.example.com/rich/ABCDE-12345.zip"


@dataclass
class Case:
    """One notification and what its device must receive."""

    name: str
    fields: dict[str, Any]
    #: True when the received request carries the field as it should.
    check: Callable[[Got], bool]
    language: str | None = None


@dataclass
class Got:
    """What one gateway request carried: the payload as the app sees it, and the rest."""

    payload: dict[str, Any]
    headers: dict[str, str]
    message: dict[str, Any]  # FCM: the whole v1 message


@pytest.fixture
def sender(
    database_url: str,
    apns_settings: dict[str, Any],
    fcm_settings: dict[str, Any],
    webpush_settings: dict[str, Any],
) -> Iterator[Service]:
    with service(database_url, **SETTINGS) as svc:
        for platform in (1, 7, 10):
            gateway(svc, platform, "apns", apns_settings)
        for platform in (3, 9, 17):
            gateway(svc, platform, "fcm", fcm_settings)
        for platform in (11, 12):
            gateway(svc, platform, "webpush", webpush_settings)
        yield svc


def gateway(svc: Service, platform: int, kind: str, settings: dict[str, Any]) -> None:
    run(svc.store.dispatch.set_gateway("default", svc.app.code, platform, kind, settings))


def work(svc: Service, seconds: float = 30) -> None:
    settings = config.load({"database": svc.store.url, **SETTINGS}, env={})
    run(build_worker(settings, svc.store, poll_seconds=0.05).run_until_idle(seconds))


def send_cases(
    svc: Service, platform: int, cases: list[Case], token_for: Callable[[str], str]
) -> dict[str, str]:
    """Register a device per case and send each its message; case name → push token."""
    tokens: dict[str, str] = {}
    plans = []
    for i, case in enumerate(cases):
        hwid = f"p{platform}-{i}"
        tokens[case.name] = token_for(hwid)
        extra = {"language": case.language} if case.language else {}
        svc.register(hwid, platform, push_token=tokens[case.name], **extra)
        content = msgspec.convert(case.fields, Content)
        plans.append(
            MessagePlan(
                notification=fields(content),
                targeting=Targeting(devices=(hwid,)),
                send_at=svc.store.clock(),
            )
        )
    run(svc.store.create_messages(svc.app, plans))
    work(svc)
    return tokens


def stored(svc: Service, token: str) -> dict[str, Any]:
    """The payload the store keeps for the delivery to ``token``, rendered."""
    ((body, mid, p, user),) = svc.db.rows(
        "SELECT pl.body, d.message_id, d.hash, COALESCE(d.user_id, d.hwid) FROM deliveries d"
        " JOIN payloads pl ON pl.id = d.payload_id JOIN devices dev ON dev.id = d.device_id"
        " WHERE dev.push_token = ?",
        (token,),
    )
    template = json.loads(body) if isinstance(body, str) else body
    # payloads carry the message id tenants are shown
    shown = codes.shown_message_id(server_secret(svc.db), int(mid))
    return render(template, str(p), shown, str(user))


def check_all(cases: list[Case], got: dict[str, Got]) -> None:
    failures = []
    for case in cases:
        try:
            ok = case.check(got[case.name])
        except (KeyError, TypeError, AttributeError) as exc:
            ok, why = False, repr(exc)
        else:
            why = "check is false"
        if ok is not True:
            received = got[case.name].payload if case.name in got else None
            failures.append(f"{case.name}: {why} in {received}")
    assert not failures, "\n".join(failures)


def apns_cases(svc: Service, apns: ApnsServer, platform: int, cases: list[Case]) -> dict[str, Got]:
    tokens = send_cases(svc, platform, cases, lambda _: apns_token())
    by_token = {r.token: r for r in apns.received}
    got = {}
    for name, token in tokens.items():
        r = by_token[token]
        assert r.status == 200, (name, r.reason, r.payload)
        assert r.payload == stored(svc, token), name  # the export shows what APNs got
        got[name] = Got(r.payload, r.headers, {})
    return got


def fcm_cases(svc: Service, fcm: FcmServer, platform: int, cases: list[Case]) -> dict[str, Got]:
    tokens = send_cases(svc, platform, cases, lambda hwid: f"fcm-{hwid}-{time.time_ns()}")
    by_token = {r.token: r for r in fcm.received}
    got = {}
    for name, token in tokens.items():
        r = by_token[token]
        assert r.status == 200, (name, r.error, r.message)
        data = r.message["data"]
        expected = {
            k: v if isinstance(v, str) else encode(v).decode()
            for k, v in stored(svc, token).items()
        }
        assert data == expected, name  # FCM data: the stored payload, values as strings
        got[name] = Got(data, r.headers, r.message)
    return got


def web_cases(
    svc: Service, push: WebPushServer, platform: int, cases: list[Case]
) -> dict[str, Got]:
    subscribers = {}

    def subscribe(hwid: str) -> str:
        subscribers[hwid] = push.subscribe()
        return subscribers[hwid].token

    tokens = send_cases(svc, platform, cases, subscribe)
    by_id = {r.subscriber: r for r in push.received}
    by_token = {s.token: s.id for s in subscribers.values()}
    got = {}
    for name, token in tokens.items():
        r = by_id[by_token[token]]
        assert r.status == 201, (name, r.status)
        assert r.payload == stored(svc, token), name
        got[name] = Got(r.payload, r.headers, {})
    return got


def aps(g: Got) -> dict[str, Any]:
    return g.payload["aps"]  # type: ignore[no-any-return]


def push_type(g: Got) -> tuple[str, str]:
    return g.headers["apns-push-type"], g.headers["apns-priority"]


def expires_in(g: Got) -> float:
    return int(g.headers["apns-expiration"]) - time.time()


# -- iOS ----------------------------------------------------------------------------------

IOS = [
    Case("content", {"content": "Hi"}, lambda g: aps(g) == {"alert": "Hi", "sound": "default"}),
    Case(
        "content by language",
        {"content": {"en": "Hi", "de": "Hallo"}},
        lambda g: aps(g)["alert"] == "Hallo",
        language="de",
    ),
    Case(
        "title",
        {"content": "Hi", "title": {"en": "News", "fr": "Infos"}},
        lambda g: aps(g)["alert"] == {"title": "Infos", "body": "Hi"},
        language="fr",
    ),
    Case(
        "subtitle",
        {"content": "Hi", "subtitle": "Sub"},
        lambda g: aps(g)["alert"] == {"subtitle": "Sub", "body": "Hi"},
    ),
    Case(
        "ios_title beats title",
        {"content": "Hi", "title": "T", "ios_title": "iOS T"},
        lambda g: aps(g)["alert"]["title"] == "iOS T",
    ),
    Case(
        "ios_subtitle",
        {"content": "Hi", "ios_subtitle": "iOS S"},
        lambda g: aps(g)["alert"] == {"subtitle": "iOS S", "body": "Hi"},
    ),
    Case(
        "data",
        {"content": "Hi", "data": {"order": 7}},
        lambda g: json.loads(g.payload["u"]) == {"order": 7},
    ),
    Case(
        "data as a JSON string",
        {"content": "Hi", "data": '{"order": 8}'},
        lambda g: json.loads(g.payload["u"]) == {"order": 8},
    ),
    Case(
        "link", {"content": "Hi", "link": "myapp://x/1"}, lambda g: g.payload["l"] == "myapp://x/1"
    ),
    Case(
        "minimize_link is ignored",
        {"content": "Hi", "link": "https://e.com/a", "minimize_link": 2},
        lambda g: g.payload["l"] == "https://e.com/a",
    ),
    Case(
        "rich_media",
        {"content": "Hi", "rich_media": RM},
        lambda g: g.payload["rm"]["url"] == RM and g.payload["rm"]["ts"].isdigit(),
    ),
    Case(
        "remote_page",
        {"content": "Hi", "remote_page": "https://e.com/page"},
        lambda g: g.payload["r"] == "https://e.com/page",
    ),
    Case("ios_badges", {"content": "Hi", "ios_badges": 5}, lambda g: aps(g)["badge"] == 5),
    Case(
        "ios_badges relative",
        {"content": "Hi", "ios_badges": "+2"},
        lambda g: (
            (aps(g)["pw_badge"], aps(g)["mutable-content"], "badge" in aps(g)) == ("+2", 1, False)
        ),
    ),
    Case(
        "ios_badges alone",
        {"data": {"k": 1}, "ios_badges": 0},
        lambda g: (aps(g), push_type(g)) == ({"badge": 0}, ("alert", "10")),
    ),
    Case(
        "ios_sound",
        {"content": "Hi", "ios_sound": "ping.caf"},
        lambda g: aps(g)["sound"] == "ping.caf",
    ),
    Case(
        "ios_sound empty: no sound",
        {"content": "Hi", "ios_sound": ""},
        lambda g: "sound" not in aps(g),
    ),
    Case(
        "ios_critical",
        {"content": "Hi", "ios_critical": 1, "ios_sound": "alarm.caf"},
        lambda g: aps(g)["sound"] == {"critical": 1, "name": "alarm.caf", "volume": 1.0},
    ),
    Case("ios_ttl", {"content": "Hi", "ios_ttl": 3600}, lambda g: 3500 < expires_in(g) <= 3600),
    Case(
        "ios_silent",
        {"content": "Hi", "data": {"sync": 1}, "ios_silent": 1},
        lambda g: (
            (aps(g), push_type(g), json.loads(g.payload["u"]))
            == ({"content-available": 1}, ("background", "5"), {"sync": 1})
        ),
    ),
    Case(
        "no content: silent",
        {"data": {"sync": 2}},
        lambda g: (aps(g), push_type(g)) == ({"content-available": 1}, ("background", "5")),
    ),
    Case(
        "ios_category_id",
        {"content": "Hi", "ios_category_id": 7},
        lambda g: aps(g)["category"] == "7",
    ),
    Case(
        "ios_thread_id",
        {"content": "Hi", "ios_thread_id": "chat-9"},
        lambda g: aps(g)["thread-id"] == "chat-9",
    ),
    Case(
        "ios_root_params",
        {
            "content": "Hi",
            "ios_root_params": {
                "aps": {"interruption-level": "time-sensitive"},
                "attachment": "https://e.com/a.png",
                "k": [1],
            },
        },
        lambda g: (
            (
                aps(g)["interruption-level"],
                aps(g)["alert"],
                aps(g)["mutable-content"],
                g.payload["attachment"],
                g.payload["k"],
            )
            == ("time-sensitive", "Hi", 1, "https://e.com/a.png", [1])
        ),
    ),
    Case(
        "apns_trim_content",
        {"content": LONG, "apns_trim_content": 1},
        lambda g: len(encode(g.payload)) <= 4096 and aps(g)["alert"].endswith("…"),
    ),
    Case(
        "ios_trim_content",
        {"content": LONG, "title": "T", "ios_trim_content": 1},
        lambda g: len(encode(g.payload)) <= 4096 and aps(g)["alert"]["body"].endswith("…"),
    ),
]


def test_ios_fields(sender: Service, apns_server: ApnsServer) -> None:
    check_all(IOS, apns_cases(sender, apns_server, 1, IOS))


# -- macOS and Safari ---------------------------------------------------------------------

MAC = [
    Case(
        "title and subtitle",
        {"content": "Hi", "title": "T", "subtitle": "S", "ios_title": "not for macOS"},
        lambda g: aps(g)["alert"] == {"title": "T", "subtitle": "S", "body": "Hi"},
    ),
    Case("mac_badges", {"content": "Hi", "mac_badges": 3}, lambda g: aps(g)["badge"] == 3),
    Case(
        "mac_sound", {"content": "Hi", "mac_sound": "b.aiff"}, lambda g: aps(g)["sound"] == "b.aiff"
    ),
    Case(
        "mac_root_params",
        {"content": "Hi", "mac_root_params": {"aps": {"content-available": 1}, "x": "y"}},
        lambda g: (
            (aps(g)["content-available"], aps(g)["alert"], g.payload["x"], push_type(g))
            == (1, "Hi", "y", ("alert", "10"))
        ),
    ),
    Case("mac_ttl", {"content": "Hi", "mac_ttl": 600}, lambda g: 500 < expires_in(g) <= 600),
    Case(
        "no content: silent",
        {"data": {"k": 1}},
        lambda g: (aps(g), push_type(g)) == ({"content-available": 1}, ("background", "5")),
    ),
]

SAFARI = [
    Case(
        "safari fields",
        {
            "content": "Hi",
            "title": "ignored for Safari",
            "safari_title": "ST",
            "safari_action": "View",
            "safari_url_args": ["a", "b"],
        },
        lambda g: (
            aps(g)
            == {"alert": {"title": "ST", "body": "Hi", "action": "View"}, "url-args": ["a", "b"]}
        ),
    ),
    Case(
        "title, url-args always there",
        {"content": "Hi", "title": "T"},
        lambda g: aps(g) == {"alert": {"title": "T", "body": "Hi"}, "url-args": []},
    ),
    Case("safari_ttl", {"content": "Hi", "safari_ttl": 900}, lambda g: 800 < expires_in(g) <= 900),
]


def test_macos_and_safari_fields(sender: Service, apns_server: ApnsServer) -> None:
    check_all(MAC, apns_cases(sender, apns_server, 7, MAC))
    check_all(SAFARI, apns_cases(sender, apns_server, 10, SAFARI))


# -- Android, Huawei, Amazon --------------------------------------------------------------


def shown(g: Got) -> dict[str, Any]:
    return g.message.get("notification", {})  # type: ignore[no-any-return]


def android_shown(g: Got) -> dict[str, Any]:
    return g.message["android"].get("notification", {})  # type: ignore[no-any-return]


def android_cases(prefix: str, ttl: str) -> list[Case]:
    """The Android field table for a prefix ("android", "huawei_android", "adm")."""
    p = prefix
    cases = [
        Case(
            "content and title",
            {"content": "Hi", "title": "T"},
            lambda g: (
                (g.payload["title"], g.payload["header"], shown(g))
                == ("Hi", "T", {"title": "T", "body": "Hi"})
            ),
        ),
        Case(
            "content by language",
            {"content": {"en": "Hi", "de": "Hallo"}},
            lambda g: g.payload["title"] == "Hallo",
            language="de",
        ),
        Case(
            f"{p}_header",
            {"content": "Hi", "title": "T", f"{p}_header": "H"},
            lambda g: (g.payload["header"], shown(g)["title"]) == ("H", "H"),
        ),
        Case(
            "data, link, rich_media",
            {"content": "Hi", "data": {"a": [1]}, "link": "https://e.com", "rich_media": RM},
            lambda g: (
                (json.loads(g.payload["u"]), g.payload["l"], json.loads(g.payload["rm"])["url"])
                == ({"a": [1]}, "https://e.com", RM)
            ),
        ),
        Case(
            f"{p}_sound",
            {"content": "Hi", f"{p}_sound": "bell"},
            lambda g: (g.payload["s"], android_shown(g)["sound"]) == ("bell", "bell"),
        ),
        Case(
            f"{p}_icon",
            {"content": "Hi", f"{p}_icon": "ic_news"},
            lambda g: (g.payload["i"], android_shown(g)["icon"]) == ("ic_news", "ic_news"),
        ),
        Case(
            f"{p}_custom_icon",
            {"content": "Hi", f"{p}_custom_icon": "https://e.com/i.png"},
            lambda g: g.payload["ci"] == "https://e.com/i.png",
        ),
        Case(
            f"{p}_banner",
            {"content": "Hi", f"{p}_banner": "https://e.com/b.png"},
            lambda g: (
                (g.payload["b"], shown(g)["image"])
                == ("https://e.com/b.png", "https://e.com/b.png")
            ),
        ),
        Case(
            ttl,
            {"content": "Hi", ttl: 120},
            lambda g: g.message["android"]["ttl"] == "120s",
        ),
        Case(
            f"{p}_priority",
            {"content": "Hi", f"{p}_priority": -1},
            lambda g: (
                (g.payload["pri"], android_shown(g)["notification_priority"])
                == ("-1", "PRIORITY_LOW")
            ),
        ),
        Case(
            f"{p}_root_params",
            {"content": "Hi", f"{p}_root_params": {"pw_channel": "news", "n": 3}},
            lambda g: (g.payload["pw_channel"], g.payload["n"]) == ("news", "3"),
        ),
        Case(
            "no content: data-only",
            {"data": {"sync": 1}},
            lambda g: (
                (g.payload["pw_silent"], "title" in g.payload, "notification" in g.message)
                == ("1", False, False)
            ),
        ),
    ]
    if prefix == "adm":
        return cases
    return [
        *cases,
        Case(
            f"{p}_badges",
            {"content": "Hi", f"{p}_badges": 4},
            lambda g: (g.payload["pw_badges"], android_shown(g)["notification_count"]) == ("4", 4),
        ),
        Case(
            f"{p}_badges relative",
            {"content": "Hi", f"{p}_badges": "-1"},
            lambda g: (
                (g.payload["pw_badges"], "notification_count" in android_shown(g)) == ("-1", False)
            ),
        ),
        Case(
            f"{p}_vibration",
            {"content": "Hi", f"{p}_vibration": 1},
            lambda g: (
                (g.payload["vib"], android_shown(g)["default_vibrate_timings"]) == ("1", True)
            ),
        ),
        Case(
            f"{p}_led",
            {"content": "Hi", f"{p}_led": "#FF0000"},
            lambda g: (
                (g.payload["led"], android_shown(g)["light_settings"]["color"])
                == ("#FF0000", {"red": 1.0, "green": 0.0, "blue": 0.0})
            ),
        ),
        Case(
            f"{p}_ibc",
            {"content": "Hi", f"{p}_ibc": "#00ff00"},
            lambda g: (g.payload["ibc"], android_shown(g)["color"]) == ("#00ff00", "#00ff00"),
        ),
        Case(
            f"{p}_ibc by name",
            {"content": "Hi", f"{p}_ibc": "red"},
            lambda g: (g.payload["ibc"], "color" in android_shown(g)) == ("red", False),
        ),
        Case(
            f"{p}_delivery_priority",
            {"content": "Hi", f"{p}_delivery_priority": "normal"},
            lambda g: g.message["android"]["priority"] == "NORMAL",
        ),
        Case(
            f"{p}_silent",
            {"content": "Hi", "data": {"k": 1}, f"{p}_silent": 1},
            lambda g: (
                (g.payload["pw_silent"], g.payload["title"], "notification" in g.message)
                == ("1", "Hi", False)
            ),
        ),
    ]


@pytest.mark.parametrize(
    ("platform", "prefix", "ttl"),
    [
        (3, "android", "android_gcm_ttl"),
        (17, "huawei_android", "huawei_android_gcm_ttl"),
        (9, "adm", "adm_ttl"),
    ],
)
def test_android_huawei_amazon_fields(
    sender: Service, fcm_server: FcmServer, platform: int, prefix: str, ttl: str
) -> None:
    cases = android_cases(prefix, ttl)
    check_all(cases, fcm_cases(sender, fcm_server, platform, cases))


# -- Chrome and Firefox -------------------------------------------------------------------

CHROME = [
    Case(
        "content and title",
        {"content": "Hi", "title": "T", "data": {"a": 1}, "link": "https://e.com/x"},
        lambda g: (
            (
                g.payload["body"],
                g.payload["header"],
                json.loads(g.payload["u"]),
                g.payload["l"],
            )
            == ("Hi", "T", {"a": 1}, "https://e.com/x")
        ),
    ),
    Case(
        "chrome_title, chrome_icon, chrome_image",
        {
            "content": "Hi",
            "title": "T",
            "chrome_title": "CT",
            "chrome_icon": "https://e.com/i.png",
            "chrome_image": "https://e.com/big.png",
        },
        lambda g: (
            (g.payload["header"], g.payload["i"], g.payload["image"])
            == ("CT", "https://e.com/i.png", "https://e.com/big.png")
        ),
    ),
    Case(
        "chrome_gcm_ttl",
        {"content": "Hi", "chrome_gcm_ttl": 300},
        lambda g: g.headers["ttl"] == "300",
    ),
    Case(
        "chrome_duration 0: until the user acts",
        {"content": "Hi", "chrome_duration": 0},
        lambda g: (g.payload["duration"], g.payload["requireInteraction"]) == (0, True),
    ),
    Case(
        "chrome_duration",
        {"content": "Hi", "chrome_duration": 20},
        lambda g: (g.payload["duration"], "requireInteraction" in g.payload) == (20, False),
    ),
    Case(
        "chrome buttons",
        {
            "content": "Hi",
            "chrome_button_text1": "Open",
            "chrome_button_url1": "https://e.com/1",
            "chrome_button_text2": "Later",
        },
        lambda g: (
            json.loads(g.payload["buttons"])
            == [{"title": "Open", "url": "https://e.com/1"}, {"title": "Later", "url": ""}]
        ),
    ),
    Case(
        "chrome_root_params",
        {"content": "Hi", "chrome_root_params": {"tag": "news", "renotify": True}},
        lambda g: (g.payload["tag"], g.payload["renotify"]) == ("news", True),
    ),
    Case(
        "no content: silent",
        {"data": {"k": 1}},
        lambda g: (g.payload["silent"], g.payload["body"]) == (1, ""),
    ),
]

FIREFOX = [
    Case(
        "firefox fields",
        {
            "content": "Hi",
            "title": "T",
            "chrome_title": "not for Firefox",
            "firefox_title": "FT",
            "firefox_icon": "https://e.com/f.png",
        },
        lambda g: (
            (g.payload["body"], g.payload["header"], g.payload["i"])
            == ("Hi", "FT", "https://e.com/f.png")
        ),
    ),
    Case("firefox_ttl", {"content": "Hi", "firefox_ttl": 60}, lambda g: g.headers["ttl"] == "60"),
    Case(
        "firefox_root_params",
        {"content": "Hi", "firefox_root_params": {"tag": "t1"}},
        lambda g: g.payload["tag"] == "t1",
    ),
]


def test_chrome_and_firefox_fields(sender: Service, webpush_server: WebPushServer) -> None:
    check_all(CHROME, web_cases(sender, webpush_server, 11, CHROME))
    check_all(FIREFOX, web_cases(sender, webpush_server, 12, FIREFOX))
