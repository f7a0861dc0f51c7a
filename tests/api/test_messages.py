"""createMessage and deleteMessage over HTTP: targeting, codes, scheduling, payloads, atomicity."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest

from pushtrack.domain.codes import MESSAGE_CODE_RE, TRACKING_CODE_RE
from tests.support import Service, json_value

US = 1_000_000

#: The messages of one account (every test has its own).
OF_ACCOUNT = (
    "SELECT m.id FROM messages m JOIN applications a ON a.id = m.app_id"
    " JOIN accounts acc ON acc.id = a.account_id WHERE acc.name = ?"
)


@pytest.fixture
def svc(shared: Service) -> Service:
    return shared.fresh_account()


def owned(svc: Service, table: str) -> int:
    """Rows of ``messages`` or ``deliveries`` that belong to this test's account."""
    column = "id" if table == "messages" else "message_id"
    sql = f"SELECT COUNT(*) FROM {table} WHERE {column} IN ({OF_ACCOUNT})"
    return int(svc.db.rows(sql, (svc.account,))[0][0])


def by_code(rows: list[dict[str, Any]]) -> dict[str, list[tuple[str, str]]]:
    """(action, description) per tracking code, in log order."""
    out: dict[str, list[tuple[str, str]]] = {}
    for r in rows:
        out.setdefault(r["tracking_code"], []).append((r["action"], r["description"]))
    return out


def message_row(svc: Service, code: str) -> tuple[str, int]:
    (row,) = svc.db.rows("SELECT status, send_at FROM messages WHERE code = ?", (code,))
    return str(row[0]), int(row[1])


def counters_agree_with_events(svc: Service) -> None:
    """Every hourly counter equals the number of events of its status (and nothing else)."""
    column_of = {2: "sends", 3: "deliveries", 4: "errors", 5: "opens"}
    from_events = Counter[tuple[int, int, int, str]]()
    for message_id, hour, platform, status, n in svc.db.rows(
        "SELECT d.message_id, (e.ts / 3600000000) * 3600000000, d.platform, e.status, COUNT(*)"
        " FROM events e JOIN deliveries d ON d.id = e.delivery_id"
        f" WHERE d.message_id IN ({OF_ACCOUNT})"
        " GROUP BY d.message_id, (e.ts / 3600000000) * 3600000000, d.platform, e.status",
        (svc.account,),
    ):
        if int(status) in column_of:
            from_events[(int(message_id), int(hour), int(platform), column_of[int(status)])] += n
    from_counters = Counter[tuple[int, int, int, str]]()
    for row in svc.db.rows(
        "SELECT message_id, hour, platform, sends, deliveries, errors, opens FROM counters"
        f" WHERE message_id IN ({OF_ACCOUNT})",
        (svc.account,),
    ):
        for column, value in zip(("sends", "deliveries", "errors", "opens"), row[3:], strict=True):
            if value:
                from_counters[(int(row[0]), int(row[1]), int(row[2]), column)] += int(value)
    assert from_counters == from_events


# -- codes and targeting ------------------------------------------------------------------


def test_one_message_code_per_notification(svc: Service) -> None:
    svc.register("hw-1")
    out = svc.server(
        "createMessage",
        notifications=[{"content": "a"}, {"content": "b", "devices": ["hw-1"]}, {"content": "c"}],
    )
    assert out["status_code"] == 200, out
    messages = out["response"]["Messages"]
    assert len(messages) == 3
    assert len(set(messages)) == 3
    assert all(MESSAGE_CODE_RE.match(c) for c in messages)
    assert len(out["response"]["TrackingCodes"]) == 1  # only the notification naming devices
    assert owned(svc, "messages") == 3
    svc.expand()  # the audience messages' deliveries are written by their expansion job
    # the codes are real: each one finds its own message in the log
    assert {r["message_code"] for r in svc.log(hwid="hw-1")} == set(messages)


def test_devices_by_hwid_and_push_token_mixed(svc: Service) -> None:
    svc.register("hw-a", push_token="tok-a")
    svc.register("hw-b", push_token="tok-b", device_type=3)
    entries = ["hw-a", "tok-b", "nobody", "hw-a", "tok-a", "nobody"]
    out = svc.send(devices=entries)
    codes = out["TrackingCodes"]
    assert len(codes) == len(entries)
    assert all(TRACKING_CODE_RE.match(c) for c in codes)
    # duplicates of one device (by hwid or by its token) share one code
    assert codes[0] == codes[3] == codes[4]
    assert codes[2] == codes[5]
    assert len({codes[0], codes[1], codes[2]}) == 3
    assert out["Messages"][0] not in codes  # the real message code comes in Messages

    rows = svc.log(message_code=out["Messages"][0])
    trail = by_code(rows)
    assert trail == {
        codes[0]: [("created", "Created")],
        codes[1]: [("created", "Created")],
        codes[2]: [("created", "Created"), ("failed", "Unknown device")],
    }
    seen = {(r["tracking_code"], r["target_id"], r["hwid"], r["platform"]) for r in rows}
    assert (codes[0], "hw-a", "hw-a", "ios") in seen
    assert (codes[1], "tok-b", "hw-b", "android") in seen
    assert owned(svc, "deliveries") == 3


def test_targeting_by_platforms_users_and_whole_app(svc: Service) -> None:
    svc.register("ios-1", device_type=1, userId="alice")
    svc.register("ios-2", device_type=1, userId="bob")
    svc.register("and-1", device_type=3, userId="alice")
    svc.register("web-1", device_type=11)
    svc.register("ios-off", device_type=1, userId="alice")
    assert svc.device("unregisterDevice", hwid="ios-off")["status_code"] == 200
    svc.register("no-token", device_type=3, push_token=None)

    def audience(**targeting: Any) -> set[str]:
        out = svc.send(**targeting)
        assert "TrackingCodes" not in out  # only `devices` gets codes in the response
        rows = svc.log(message_code=out["Messages"][0])
        # tracked the same: every delivery has its own code and a `created` event
        assert all(TRACKING_CODE_RE.match(r["tracking_code"]) for r in rows)
        assert [r["action"] for r in rows] == ["created"] * len(rows)
        assert len({r["tracking_code"] for r in rows}) == len(rows)
        return {r["hwid"] for r in rows}

    assert audience(platforms=[1]) == {"ios-1", "ios-2"}
    assert audience(platforms=[3, 11]) == {"and-1", "web-1"}
    assert audience(platforms=[1, 1, 1] * 50) == {"ios-1", "ios-2"}
    assert audience(users=["alice"]) == {"ios-1", "and-1"}
    assert audience(users=["alice"], platforms=[3]) == {"and-1"}
    assert audience() == {"ios-1", "ios-2", "and-1", "web-1"}  # only subscribed devices
    assert audience(users=["nobody"]) == set()


def test_tracking_off_returns_no_tracking_codes(svc: Service) -> None:
    quiet = svc.new_app("untracked", tracking=False)
    headers = {"Authorization": f"Token {svc.device_token}"}
    reg = {"application": quiet.code, "hwid": "h", "device_type": 1, "push_token": "t"}
    assert svc.call("registerDevice", reg, headers=headers).json()["status_code"] == 200
    body = {
        "auth": svc.server_token,
        "application": quiet.code,
        "notifications": [{"content": "x", "devices": ["h", "nobody"]}],
    }
    out = svc.call("createMessage", body).json()
    assert out["status_code"] == 200
    assert set(out["response"]) == {"Messages"}
    assert MESSAGE_CODE_RE.match(out["response"]["Messages"][0])


# -- when ---------------------------------------------------------------------------------


def _at(*args: int, tz: Any = UTC) -> int:
    return int(datetime(*args, tzinfo=tz).timestamp()) * US  # type: ignore[misc]


def test_send_date_now_later_and_time_zones(svc: Service) -> None:
    svc.register("hw-1")
    before = time.time_ns() // 1000
    code = svc.send(devices=["hw-1"])["Messages"][0]
    after = time.time_ns() // 1000
    status, send_at = message_row(svc, code)
    assert status == "pending"
    assert before <= send_at <= after

    cases = [
        ({"send_date": "2099-06-01 12:00"}, _at(2099, 6, 1, 12, 0)),
        ({"send_date": "2099-06-01 12:00", "timezone": "America/New_York"}, _at(2099, 6, 1, 16, 0)),
        (
            {"send_date": "2099-01-15 12:00", "timezone": "America/New_York"},
            _at(2099, 1, 15, 17, 0),
        ),
        ({"send_date": "2099-01-15 12:00", "timezone": "Asia/Tokyo"}, _at(2099, 1, 15, 3, 0)),
    ]
    for fields, due in cases:
        code = svc.send(devices=["hw-1"], **fields)["Messages"][0]
        assert message_row(svc, code) == ("scheduled", due), fields
        (mid,) = svc.db.rows("SELECT id FROM messages WHERE code = ?", (code,))[0]
        (run_at,) = svc.db.rows(
            "SELECT run_at FROM jobs WHERE kind = 'dispatch' AND params LIKE ?",
            (f'{{"message_id":{mid},%',),
        )[0]
        assert run_at == due  # the send job waits until then

    before = time.time_ns() // 1000
    code = svc.send(devices=["hw-1"], send_date="2001-01-01 00:00")["Messages"][0]
    status, send_at = message_row(svc, code)
    assert status == "pending"
    assert send_at >= before


def test_invalid_send_dates_and_time_zones_are_210(svc: Service) -> None:
    svc.register("hw-1")
    cases: list[tuple[dict[str, Any], str]] = [
        ({"send_date": "2099-13-01 10:00"}, "send_date"),
        ({"send_date": "2099-02-30 10:00"}, "send_date"),
        ({"send_date": "tomorrow"}, "send_date"),
        ({"send_date": "2099/06/01 12:00"}, "send_date"),
        ({"send_date": "2099-06-01T12:00"}, "send_date"),
        ({"send_date": "2099-06-01 25:00"}, "send_date"),
        ({"send_date": 1234567890}, "send_date"),
        ({"send_date": None}, "send_date"),
        ({"send_date": "2099-06-01 12:00", "timezone": "Mars/Olympus"}, "timezone"),
        ({"send_date": "2099-06-01 12:00", "timezone": "../../etc/passwd"}, "timezone"),
        ({"send_date": "2099-06-01 12:00", "timezone": "/etc/localtime"}, "timezone"),
        ({"send_date": "2099-06-01 12:00", "timezone": "America"}, "timezone"),
        ({"send_date": "2099-06-01 12:00", "timezone": "UTC+3"}, "timezone"),
        ({"send_date": "2099-06-01 12:00", "timezone": 3}, "timezone"),
        ({"timezone": "Nowhere/Land"}, "timezone"),
    ]
    before = svc.db.counts()
    for fields, named in cases:
        out = svc.server(
            "createMessage", notifications=[{"content": "x", "devices": ["hw-1"], **fields}]
        )
        assert out["status_code"] == 210, (fields, out)
        assert named in out["status_message"], (fields, out)
    assert svc.db.counts() == before


def test_invalid_notifications_are_210_and_write_nothing(svc: Service) -> None:
    svc.register("hw-1")
    ok = {"content": "x"}
    cases: list[tuple[Any, str]] = [
        (None, "notifications"),
        ([], "notifications"),
        ("x", "notifications"),
        ([5], "notifications"),
        ([{}], "content"),
        ([{"content": ""}], "content"),
        ([{"content": {}}], "content"),
        ([{"content": 5}], "content"),
        ([{"content": {"en": 5}}], "content"),
        ([{"content": "x", "data": "not an object"}], "data"),
        ([{"content": "x", "platforms": [4]}], "platforms"),
        ([{"content": "x", "platforms": "ios"}], "platforms"),
        ([{"content": "x", "devices": []}], "devices"),
        ([{"content": "x", "devices": [""]}], "devices"),
        ([{"content": "x", "devices": [5]}], "devices"),
        ([{"content": "x", "devices": ["d"] * 1001}], "devices"),
        ([{"content": "x", "users": [None]}], "users"),
        ([{"content": "x", "ios_ttl": -1}], "ios_ttl"),
        ([{"content": "x", "campaign": "c" * 65}], "campaign"),
        ([ok, {"content": "x", "platforms": [99]}], "notifications[1]"),
        ([ok] * 101, "notifications"),
    ]
    before = svc.db.counts()
    for notifications, named in cases:
        fields = {} if notifications is None else {"notifications": notifications}
        out = svc.server("createMessage", **fields)
        assert out["status_code"] == 210, (notifications, out)
        assert named in out["status_message"], (notifications, out)
    assert svc.db.counts() == before


# -- payload templates --------------------------------------------------------------------


def test_payload_templates_per_platform_and_language(svc: Service) -> None:
    svc.register("ios-en", device_type=1, language="en")
    svc.register("ios-de", device_type=1, language="de")
    svc.register("ios-fr", device_type=1, language="fr")
    svc.register("and-de", device_type=3, language="de")
    svc.register("web", device_type=11)
    out = svc.send(
        content={"en": "Hello", "de": "Hallo"},
        title={"en": "News", "de": "Neues"},
        data={"deep": {"link": 1}},
        ios_sound="ping.caf",
        ios_badges=3,
        android_header="Header",
        android_gcm_ttl=60,
        chrome_title="Web title",
    )
    (mid,) = svc.db.rows("SELECT id FROM messages WHERE code = ?", (out["Messages"][0],))[0]
    templates = {
        (int(platform), language): (json_value(body), json_value(options))
        for platform, language, body, options in svc.db.rows(
            "SELECT platform, language, body, options FROM payloads WHERE message_id = ?", (mid,)
        )
    }
    assert set(templates) == {(1, "en"), (1, "de"), (1, None), (3, "de"), (11, None)}
    for key, (text, title) in {
        (1, "de"): ("Hallo", "Neues"),
        (1, "en"): ("Hello", "News"),
        (1, None): ("Hello", "News"),
    }.items():
        body, _ = templates[key]
        assert body["aps"]["alert"] == {"body": text, "title": title}, key
        assert body["aps"]["sound"] == "ping.caf"
        assert body["aps"]["badge"] == 3
        assert body["u"] == '{"deep":{"link":1}}'  # data travels as a JSON string
        assert body["pw_msg"] == "1"
    body, options = templates[(3, "de")]
    # Android: the Pushwoosh SDK reads the text from "title" and the title from "header"
    assert (body["header"], body["title"], body["u"], options) == (
        "Header",
        "Hallo",
        '{"deep":{"link":1}}',
        {"ttl": 60},
    )
    body, _ = templates[(11, None)]
    assert (body["header"], body["body"]) == ("Web title", "Hello")
    # each delivery points at the template of its platform and language
    chosen = {
        hwid: (int(platform), language)
        for hwid, platform, language in svc.db.rows(
            "SELECT d.hwid, p.platform, p.language FROM deliveries d"
            " JOIN payloads p ON p.id = d.payload_id WHERE d.message_id = ?",
            (mid,),
        )
    }
    assert chosen == {
        "ios-en": (1, "en"),
        "ios-de": (1, "de"),
        "ios-fr": (1, None),
        "and-de": (3, "de"),
        "web": (11, None),
    }


# -- 1000 devices, one transaction ------------------------------------------------------------

MIDDLE = "hw-0500"


def _inject_failure(svc: Service) -> None:
    """Make the database itself refuse the delivery to MIDDLE."""
    if svc.db.url.startswith("sqlite:"):
        svc.db.execute(
            f"CREATE TRIGGER inject BEFORE INSERT ON deliveries WHEN NEW.target_id = '{MIDDLE}'"
            " BEGIN SELECT RAISE(ABORT, 'injected'); END;"
        )
        return
    svc.db.execute(
        "CREATE FUNCTION inject() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        f" IF NEW.target_id = '{MIDDLE}' THEN RAISE EXCEPTION 'injected'; END IF;"
        " RETURN NEW; END $$;"
        " CREATE TRIGGER inject BEFORE INSERT ON deliveries"
        " FOR EACH ROW EXECUTE FUNCTION inject();"
    )


def _remove_failure(svc: Service) -> None:
    if svc.db.url.startswith("sqlite:"):
        svc.db.execute("DROP TRIGGER inject;")
    else:
        svc.db.execute("DROP TRIGGER inject ON deliveries; DROP FUNCTION inject();")


def test_thousand_devices_in_one_transaction(svc: Service) -> None:
    # 900 hwids (30 of them without a push token), 50 push tokens, 50 unknown entries
    for i in range(950):
        token = None if i < 900 and i % 30 == 7 else f"tok-{i:04d}"
        svc.register(f"hw-{i:04d}", device_type=(1, 3, 11)[i % 3], push_token=token)
    entries = [f"hw-{i:04d}" for i in range(900)]
    entries += [f"tok-{i:04d}" for i in range(900, 950)]
    entries += [f"ghost-{i}" for i in range(50)]
    body = {
        "auth": svc.server_token,
        "application": svc.app.code,
        "notifications": [{"content": "hi", "devices": entries}],
    }

    before = svc.db.counts()
    _inject_failure(svc)
    try:
        resp = svc.call("createMessage", body)
    finally:
        _remove_failure(svc)
    assert resp.status_code == 500
    assert resp.json() == {"status_code": 500, "status_message": "Internal error", "response": None}
    assert "injected" not in resp.text
    assert svc.db.counts() == before  # no message, delivery, event, counter, payload or job
    assert owned(svc, "messages") == 0

    out = svc.call("createMessage", body).json()
    assert out["status_code"] == 200, out
    codes = out["response"]["TrackingCodes"]
    assert len(codes) == 1000
    assert len(set(codes)) == 1000
    assert all(TRACKING_CODE_RE.match(c) for c in codes)
    rows = svc.log(message_code=out["response"]["Messages"][0])
    target_of = {r["tracking_code"]: r["target_id"] for r in rows}
    assert [target_of[c] for c in codes] == entries  # aligned one-to-one with `devices`
    actions = Counter((r["action"], r["description"]) for r in rows)
    unsubscribed = sum(1 for i in range(900) if i % 30 == 7)
    assert actions == {
        ("created", "Created"): 1000,
        ("failed", "Device unsubscribed"): unsubscribed,
        ("failed", "Unknown device"): 50,
    }
    assert owned(svc, "deliveries") == 1000
    counters_agree_with_events(svc)
    (errors,) = svc.db.rows(
        f"SELECT SUM(errors) FROM counters WHERE message_id IN ({OF_ACCOUNT})", (svc.account,)
    )[0]
    assert errors == unsubscribed + 50


# -- deleteMessage ------------------------------------------------------------------------------


def test_delete_cancels_a_scheduled_message(svc: Service) -> None:
    svc.register("hw-1")
    svc.register("hw-2", device_type=3)
    svc.register("off", push_token=None)
    out = svc.send(devices=["hw-1", "hw-2", "off", "ghost"], send_date="2099-01-01 00:00")
    message = out["Messages"][0]
    assert message_row(svc, message)[0] == "scheduled"

    done = svc.server("deleteMessage", message=message)
    assert done == {"status_code": 200, "status_message": "OK", "response": None}
    trail = by_code(svc.log(message_code=message))
    live, live2, off, ghost = out["TrackingCodes"]
    assert trail[live] == [("created", "Created"), ("failed", "Cancelled")]
    assert trail[live2] == [("created", "Created"), ("failed", "Cancelled")]
    assert trail[off] == [("created", "Created"), ("failed", "Device unsubscribed")]
    assert trail[ghost] == [("created", "Created"), ("failed", "Unknown device")]
    # each failure's class, so a sender acts without reading the descriptions
    classes = {
        r["tracking_code"]: r["failure_class"]
        for r in svc.log(message_code=message)
        if r["action"] == "failed"
    }
    assert classes == {
        live: "cancelled",
        live2: "cancelled",
        off: "unsubscribed",
        ghost: "unknown_device",
    }
    assert message_row(svc, message)[0] == "cancelled"
    (mid,) = svc.db.rows("SELECT id FROM messages WHERE code = ?", (message,))[0]
    states = {
        s
        for (s,) in svc.db.rows(
            "SELECT state FROM jobs WHERE kind = 'dispatch' AND params LIKE ?",
            (f'{{"message_id":{mid},%',),
        )
    }
    assert states == {"cancelled"}
    counters_agree_with_events(svc)

    again = svc.server("deleteMessage", message=message)
    assert again["status_code"] == 210
    assert "message" in again["status_message"]
    assert len(svc.log(message_code=message)) == 8  # nothing more was written


def test_delete_errors(svc: Service) -> None:
    svc.register("hw-1")
    finished = svc.send(devices=["ghost"])["Messages"][0]  # every delivery already ended
    other = svc.new_app("other")
    svc.call(
        "registerDevice",
        {"application": other.code, "hwid": "o", "device_type": 1, "push_token": "t"},
        headers={"Authorization": f"Token {svc.device_token}"},
    )
    theirs = svc.call(
        "createMessage",
        {
            "auth": svc.server_token,
            "application": other.code,
            "notifications": [{"content": "x", "send_date": "2099-01-01 00:00"}],
        },
    ).json()["response"]["Messages"][0]
    only_mine = svc.make_token("server", apps=[svc.app.code])
    stranger = svc.make_token("server", account="someone-else")
    before = svc.db.counts()
    for fields in (
        {"message": "0000-00000000-00000000"},
        {"message": finished},
        {},
        {"message": ""},
        {"message": 5},
        {"message": ["x"]},
    ):
        out = svc.server("deleteMessage", **fields)
        assert out["status_code"] == 210, (fields, out)
        assert "message" in out["status_message"], (fields, out)
    # another application's message reads as none to a restricted token (nothing revealed)
    out = svc.call("deleteMessage", {"auth": only_mine, "message": theirs}).json()
    assert out == {
        "status_code": 210,
        "status_message": "message: message not found",
        "response": None,
    }
    out = svc.call("deleteMessage", {"auth": stranger, "message": theirs}).json()
    assert out["status_code"] == 210, out
    assert svc.db.counts() == before
    assert message_row(svc, theirs)[0] == "scheduled"
