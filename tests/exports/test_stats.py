"""totalsByIntervals, getMsgStats and messages:list: served from counters, equal to the log."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from pushtrack.domain.platforms import BY_NAME
from pushtrack.jobs import msgstats
from pushtrack.worker import build_worker
from tests.exports._support import Clock, at, clocked_service, create, result, run_jobs
from tests.support import Service, run

COLUMN_OF = {
    "sent": "sends",
    "delivered": "deliveries",
    "opened": "opens",
    "failed": "errors",
    "confirmed": "confirmed",
}
COUNTERS = (
    "sends",
    "deliveries",
    "opens",
    "inbox_opens",
    "unshowable_sends",
    "errors",
    "confirmed",
)
WIDTH = {"minute": 60, "hour": 3600, "day": 86400}
PLATFORMS = (1, 3, 11)  # iOS, Android, Chrome


def totals(svc: Service, code: str, **extra: Any) -> dict[str, Any]:
    resp = svc.v2("statistics/messages/totalsByIntervals", {"message_code": code, **extra})
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def from_log(svc: Service, code: str, interval: str) -> Counter[tuple[str, int, str]]:
    """(bucket start, platform, counter) -> count, from getMessageLog."""
    width = WIDTH[interval]
    out: Counter[tuple[str, int, str]] = Counter()
    for row in svc.log(message_code=code):
        column = COLUMN_OF.get(row["action"])
        if column is None:
            continue
        seconds = at(row["timestamp"]) // 1_000_000
        bucket = seconds - seconds % width
        platform = int(BY_NAME[row["platform"]]) if row["platform"] in BY_NAME else 0
        out[(_wire(bucket), platform, column)] += 1
    return out


def from_counters(body: dict[str, Any]) -> Counter[tuple[str, int, str]]:
    out: Counter[tuple[str, int, str]] = Counter()
    for m in body["metrics"]:
        assert set(m) == {"timestamp", "platform", *COUNTERS}
        for column in COUNTERS:
            assert isinstance(m[column], str)
            if int(m[column]):
                out[(m["timestamp"], m["platform"], column)] += int(m[column])
    return out


def _wire(seconds: int) -> str:
    from pushtrack.domain.timeutil import to_wire

    return to_wire(seconds * 1_000_000)


@pytest.mark.parametrize("seed", [1, 2])
def test_counters_equal_the_event_log(database_url: str, tmp_path: Path, seed: int) -> None:
    rnd = random.Random(seed)
    clock = Clock("2024-05-01 10:58:30")
    with clocked_service(database_url, tmp_path, clock, max_attempts=2) as (svc, settings):
        for platform in PLATFORMS:
            run(
                svc.store.dispatch.set_gateway(
                    "default",
                    svc.app.code,
                    platform,
                    "sandbox",
                    {"failure_rate": 0.25, "seed": seed},
                )
            )
        devices = [(f"hw-{i}", rnd.choice(PLATFORMS)) for i in range(24)]
        for hwid, platform in devices:
            svc.register(hwid, platform)
        codes: list[str] = []
        for _ in range(8):
            clock.advance(rnd.randint(5, 2400) + rnd.random())
            action = rnd.random()
            if action < 0.35 or not codes:
                chosen = rnd.sample([d for d, _ in devices], rnd.randint(1, 10))
                if rnd.random() < 0.3:
                    chosen.append(f"ghost-{rnd.randint(0, 99)}")
                codes.extend(create(svc, content="hi", devices=chosen)["Messages"])
            elif action < 0.6:
                run(build_worker(settings, svc.store, poll_seconds=0.02).run_until_idle(30))
            else:
                rows = svc.db.rows("SELECT hwid, hash FROM deliveries WHERE hash IS NOT NULL")
                for hwid, p in rnd.sample(rows, min(len(rows), 6)):
                    method = rnd.choice(("pushStat", "messageDeliveryEvent"))
                    assert svc.device(method, hwid=hwid, hash=p)["status_code"] == 200
        clock.advance(1)
        run(build_worker(settings, svc.store, poll_seconds=0.02).run_until_idle(30))

        seen: Counter[str] = Counter()
        for code in codes:
            for interval in ("minute", "hour", "day"):
                body = totals(svc, code, interval=interval)
                assert from_counters(body) == from_log(svc, code, interval), (code, interval)
                for key in from_counters(body):
                    seen[key[2]] += 1
            hourly = totals(svc, code)
            assert hourly == totals(svc, code, interval="hour")
            logged = from_log(svc, code, "hour")
            assert hourly["conversion"] == {
                "sends": str(sum(n for k, n in logged.items() if k[2] == "sends")),
                "opens": str(sum(n for k, n in logged.items() if k[2] == "opens")),
                "events": [],
            }
        assert {"sends", "deliveries", "errors", "opens", "confirmed"} <= set(seen), seen


def test_totals_filters_and_errors(database_url: str, tmp_path: Path) -> None:
    clock = Clock("2024-05-01 10:30:00")
    with clocked_service(database_url, tmp_path, clock) as (svc, _):
        svc.register("ios", 1)
        svc.register("android", 3)
        code = create(svc, content="x", devices=["ios", "android", "ghost"])["Messages"][0]
        hashes = dict(svc.db.rows("SELECT hwid, hash FROM deliveries"))
        clock.set("2024-05-01 12:10:00")
        svc.device("pushStat", hwid="ios", hash=hashes["ios"])
        svc.device("pushStat", hwid="android", hash=hashes["android"])

        body = totals(svc, code)
        assert body["metrics"] == [
            {
                "timestamp": "2024-05-01 10:00:00",
                "platform": 0,
                "sends": "0",
                "deliveries": "0",
                "opens": "0",
                "inbox_opens": "0",
                "unshowable_sends": "0",
                "errors": "1",
                "confirmed": "0",
            },
            {
                "timestamp": "2024-05-01 12:00:00",
                "platform": 1,
                "sends": "0",
                "deliveries": "0",
                "opens": "1",
                "inbox_opens": "0",
                "unshowable_sends": "0",
                "errors": "0",
                "confirmed": "0",
            },
            {
                "timestamp": "2024-05-01 12:00:00",
                "platform": 3,
                "sends": "0",
                "deliveries": "0",
                "opens": "1",
                "inbox_opens": "0",
                "unshowable_sends": "0",
                "errors": "0",
                "confirmed": "0",
            },
        ]
        assert body["conversion"] == {"sends": "0", "opens": "2", "events": []}
        only_ios = totals(svc, code, platforms=[1])["metrics"]
        assert [(m["timestamp"], m["platform"]) for m in only_ios] == [("2024-05-01 12:00:00", 1)]
        ranged = totals(svc, code, date_from="2024-05-01 11:00:00", date_to="2024-05-01 11:59:59")
        assert ranged["metrics"] == []
        ranged = totals(svc, code, date_from="2024-05-01 10:59:59")  # overlaps the 10:00 hour
        assert ranged["metrics"][0]["timestamp"] == "2024-05-01 10:00:00"
        (day,) = totals(svc, code, interval="day", platforms=[1, 3])["metrics"][:1]
        assert day["timestamp"] == "2024-05-01 00:00:00"

        bad = [
            {"message_code": "0000-00000000-00000000"},
            {"message_code": code, "interval": "week"},
            {"message_code": code, "platforms": ["ios"]},
            {"message_code": code, "platforms": [4]},
            {"message_code": code, "date_from": "yesterday"},
            {
                "message_code": code,
                "date_from": "2024-05-02 00:00:00",
                "date_to": "2024-05-01 00:00:00",
            },
            {},
        ]
        for body in bad:
            resp = svc.v2("statistics/messages/totalsByIntervals", body)
            assert resp.status_code == 400, (body, resp.text)
            assert set(resp.json()) == {"error"}
        stranger = svc.make_token("server", account="someone-else")
        resp = svc.v2("statistics/messages/totalsByIntervals", {"message_code": code}, stranger)
        assert resp.status_code == 400
        # The JSON 1.3 wrapper is accepted too.
        wrapped = svc.v2(
            "statistics/messages/totalsByIntervals", {"request": {"message_code": code}}
        )
        assert wrapped.json() == totals(svc, code)


ACTIONS = ("send", "delivery", "open", "inboxopen")


def msg_stats(svc: Service, settings: Any, code: str) -> dict[str, Any]:
    """getMsgStats, run the job, getResults: the finished report."""
    out = svc.server("getMsgStats", message=code)
    assert out["status_code"] == 200, out
    request_id = out["response"]["request_id"]
    assert result(svc, request_id)["status"] == "pending"
    run_jobs(svc.store, settings)
    done = result(svc, request_id)
    assert done["status"] == "done", done
    assert set(done) == {"request_id", "status", "formatter", "rows", "conversion"}
    return done


def rows(*buckets: tuple[str, dict[str, int]]) -> list[dict[str, str]]:
    """The rows Pushwoosh's shape expects: every action of each bucket, counts as strings."""
    return [
        {"datetime": when, "action": action, "count": str(counts.get(action, 0))}
        for when, counts in buckets
        for action in ACTIONS
    ]


def test_get_msg_stats_picks_the_formatter_by_the_span(database_url: str, tmp_path: Path) -> None:
    """Spans of up to 3 hours are minutely, then hourly, daily, monthly and yearly."""
    clock = Clock("2024-01-01 10:00:30")
    with clocked_service(database_url, tmp_path, clock, retention_days=500) as (svc, settings):
        for platform in (1, 3):
            run(svc.store.dispatch.set_gateway("default", svc.app.code, platform, "sandbox", {}))
        svc.register("ios", 1)
        svc.register("android", 3)
        # sent and delivered by the gateway at 10:00:30
        minutely = create(svc, content="m", devices=["ios", "android"])["Messages"][0]
        run(build_worker(settings, svc.store, poll_seconds=0.02).run_until_idle(30))
        codes = {"minutely": minutely}
        for name in ("hourly", "daily", "monthly", "yearly"):
            codes[name] = create(svc, content=name, devices=["ios", "android"])["Messages"][0]
        hashes = {
            (code, hwid): p
            for code, hwid, p in svc.db.rows(
                "SELECT m.code, d.hwid, d.hash FROM deliveries d"
                " JOIN messages m ON m.id = d.message_id"
            )
        }

        def report(name: str, hwid: str, method: str, when: str) -> None:
            clock.set(when)
            out = svc.device(method, hwid=hwid, hash=hashes[(codes[name], hwid)])
            assert out["status_code"] == 200, out

        for name in ("hourly", "daily", "monthly", "yearly"):
            report(name, "ios", "messageDeliveryEvent", "2024-01-01 10:00:40")
        # 10:00 to the end of 12:59 is exactly three hours: still minutely
        report("minutely", "ios", "pushStat", "2024-01-01 12:59:10")
        report("hourly", "android", "messageDeliveryEvent", "2024-01-01 13:00:05")
        report("daily", "android", "messageDeliveryEvent", "2024-01-02 10:00:00")
        report("monthly", "android", "messageDeliveryEvent", "2024-02-01 10:00:00")
        report("monthly", "android", "pushStat", "2024-02-01 10:00:01")
        report("yearly", "android", "messageDeliveryEvent", "2025-01-01 10:00:00")

        done = msg_stats(svc, settings, codes["minutely"])
        assert done["formatter"] == "minutely"
        assert done["rows"] == rows(
            ("2024-01-01 10:00:00", {"send": 2, "delivery": 2}),
            ("2024-01-01 12:59:00", {"open": 1}),
        )
        assert done["conversion"] == {"send": 2, "open": 1, "events": []}

        done = msg_stats(svc, settings, codes["hourly"])
        assert done["formatter"] == "hourly"
        assert done["rows"] == rows(
            ("2024-01-01 10:00:00", {"delivery": 1}),
            ("2024-01-01 13:00:00", {"delivery": 1}),
        )
        assert done["conversion"] == {"send": 0, "open": 0, "events": []}

        done = msg_stats(svc, settings, codes["daily"])
        assert done["formatter"] == "daily"
        assert done["rows"] == rows(
            ("2024-01-01 00:00:00", {"delivery": 1}),
            ("2024-01-02 00:00:00", {"delivery": 1}),
        )

        done = msg_stats(svc, settings, codes["monthly"])
        assert done["formatter"] == "monthly"
        assert done["rows"] == rows(
            ("2024-01-01 00:00:00", {"delivery": 1}),
            ("2024-02-01 00:00:00", {"delivery": 1, "open": 1}),
        )
        assert done["conversion"] == {"send": 0, "open": 1, "events": []}

        done = msg_stats(svc, settings, codes["yearly"])
        assert done["formatter"] == "yearly"
        assert done["rows"] == rows(
            ("2024-01-01 00:00:00", {"delivery": 1}),
            ("2025-01-01 00:00:00", {"delivery": 1}),
        )

        # a message with nothing counted yet
        quiet = create(svc, content="q", devices=["ios"])["Messages"][0]
        done = msg_stats(svc, settings, quiet)
        assert done["formatter"] == "minutely"
        assert done["rows"] == []
        assert done["conversion"] == {"send": 0, "open": 0, "events": []}

        assert svc.server("getMsgStats", message="0000-00000000-00000000")["status_code"] == 210
        stranger = svc.make_token("server", account="someone-else")
        out = svc.call("getMsgStats", {"auth": stranger, "message": quiet}).json()
        assert out["status_code"] == 210
        out = svc.call("getMsgStats", {"auth": svc.server_token, "message": quiet, "x": 1}).json()
        assert (out["status_code"], out["status_message"]) == (210, 'unknown field "x"')


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        ("2024-01-01 10:00:00", "2024-01-01 10:00:00", "minutely"),
        ("2024-01-01 10:00:00", "2024-01-01 13:00:00", "minutely"),
        ("2024-01-01 10:00:00", "2024-01-01 13:01:00", "hourly"),
        ("2024-01-01 10:00:00", "2024-01-02 10:00:00", "hourly"),
        ("2024-01-01 10:00:00", "2024-01-02 10:01:00", "daily"),
        ("2024-01-31 10:00:00", "2024-02-29 10:00:00", "daily"),  # Jan 31 + 1 month: Feb 29
        ("2024-01-31 10:00:00", "2024-02-29 10:01:00", "monthly"),
        ("2023-02-01 00:00:00", "2023-03-01 00:00:00", "daily"),  # a 28-day month
        ("2024-01-01 10:00:00", "2025-01-01 10:00:00", "monthly"),
        ("2024-02-29 10:00:00", "2025-02-28 10:00:00", "monthly"),
        ("2024-01-01 10:00:00", "2025-01-01 10:01:00", "yearly"),
    ],
)
def test_formatter_boundaries(start: str, end: str, expected: str) -> None:
    """A span longer than 3 hours, a day, a calendar month, a calendar year moves up a step."""
    assert msgstats.formatter(at(start), at(end)) == expected


ITEM_KEYS = {
    "id",
    "code",
    "created_date",
    "send_date",
    "status",
    "platforms",
    "source",
    "campaign",
    "push_info",
}


def test_messages_list(database_url: str, tmp_path: Path) -> None:
    clock = Clock("2024-05-01 10:00:00")
    with clocked_service(database_url, tmp_path, clock) as (svc, _):
        svc.register("ios", 1)
        svc.register("android", 3)
        first = create(
            svc,
            content={"en": "one"},
            title="T1",
            devices=["ios"],
            data={"k": 1},
            ios_title="iT",
            android_header="aH",
        )["Messages"][0]
        clock.advance(60)
        second = create(svc, content="two", devices=["ios", "android"], campaign="C1")
        second_code = second["Messages"][0]
        clock.advance(60)
        out = create(
            svc,
            content="3",
            devices=["ios"],
            send_date="2024-05-03 09:00",
            ignore_user_timezone=False,
            campaign="C2",
        )
        later = out["Messages"][0]
        hashes = svc.hashes()
        svc.device("pushStat", hwid="android", hash=hashes[second["TrackingCodes"][1]])

        def page(filters: dict[str, Any], **extra: Any) -> dict[str, Any]:
            body = {"filters": {"application": svc.app.code, **filters}, **extra}
            resp = svc.v2("messages:list", body)
            assert resp.status_code == 200, resp.text
            out: dict[str, Any] = resp.json()
            return out

        def codes(filters: dict[str, Any], **extra: Any) -> list[str]:
            found = page(filters, **extra)
            assert found["total"] == len(found["items"])
            return [i["code"] for i in found["items"]]

        everything = page({})
        assert set(everything) == {"total", "items"}
        assert everything["total"] == 3
        assert [i["code"] for i in everything["items"]] == [later, second_code, first]
        for item in everything["items"]:
            assert set(item) == ITEM_KEYS
            assert set(item["push_info"]) == {"details", "metrics"}
            assert item["source"] == "API"
        ids = {i["code"]: i["id"] for i in everything["items"]}

        item = everything["items"][1]
        assert item["created_date"] == "2024-05-01 10:01:00"
        assert item["send_date"] == "2024-05-01 10:01:00"
        assert item["status"] == "pending"
        assert item["platforms"] == [1, 3]
        assert item["campaign"] == "C1"
        assert item["push_info"]["details"] == {
            "title": None,
            "filter_name": None,
            "filter_code": None,
            "content": "two",
            "platform_parameters": {},
            "follow_user_timezone": False,
        }
        assert item["push_info"]["metrics"] == [
            {
                "platform": 1,
                "sends": 0,
                "deliveries": 0,
                "opens": 0,
                "inbox_opens": 0,
                "unshowable_sends": 0,
                "errors": 0,
            },
            {
                "platform": 3,
                "sends": 0,
                "deliveries": 0,
                "opens": 1,
                "inbox_opens": 0,
                "unshowable_sends": 0,
                "errors": 0,
            },
        ]
        # the platform options, data and targeting other than device lists nest
        # in platform_parameters, as Pushwoosh nests them
        assert everything["items"][2]["push_info"]["details"] == {
            "title": "T1",
            "filter_name": None,
            "filter_code": None,
            "content": {"en": "one"},
            "platform_parameters": {"data": {"k": 1}, "ios_title": "iT", "android_header": "aH"},
            "follow_user_timezone": False,
        }
        assert everything["items"][2]["campaign"] is None
        dated = everything["items"][0]
        assert dated["send_date"] == "2024-05-03 09:00:00"
        assert dated["push_info"]["details"]["follow_user_timezone"] is True
        assert dated["push_info"]["details"]["platform_parameters"] == {}

        paged = [page({}, per_page=2, page=n) for n in (1, 2, 3)]
        assert [p["total"] for p in paged] == [3, 3, 3]
        assert [[i["code"] for i in p["items"]] for p in paged] == [
            [later, second_code],
            [first],
            [],
        ]

        # platforms: Pushwoosh's names, device type numbers (ours) and empty lists
        assert codes({"platforms": ["ANDROID"]}) == [second_code]
        assert codes({"platforms": [3]}) == [second_code]
        assert codes({"platforms": ["android", "IOS"]}) == [later, second_code, first]
        assert codes({"platforms": []}) == [later, second_code, first]
        assert codes({"platforms": ["HUAWEI_ANDROID", "CHROME"]}) == []
        # EMAIL and SMS are Pushwoosh platforms no message here goes to
        assert codes({"platforms": ["EMAIL"]}) == []
        assert codes({"platforms": ["SMS", "EMAIL", "ANDROID"]}) == [second_code]
        for name in ("IOS", "ANDROID", "OSX", "WINDOWS", "AMAZON", "SAFARI", "CHROME"):
            assert page({"platforms": [name, "FIREFOX", "IE", "EMAIL", "HUAWEI_ANDROID"]})
        # source: every message here comes from the API
        assert codes({"source": "API"}) == [later, second_code, first]
        assert codes({"source": "CP"}) == []
        assert codes({"source": "CUSTOMER_JOURNEY", "campaign": "C1"}) == []
        # campaign, messages_ids, messages_codes; all filters narrow together
        assert codes({"campaign": "C1"}) == [second_code]
        assert codes({"campaign": "C2"}) == [later]
        assert codes({"campaign": "nope"}) == []
        assert codes({"messages_ids": [ids[first], ids[later]]}) == [later, first]
        assert codes({"messages_ids": [ids[first]] * 3}) == [first]
        assert codes({"messages_ids": []}) == [later, second_code, first]
        assert codes({"messages_ids": [2**63 - 1]}) == []
        assert codes({"messages_codes": [first, later]}) == [later, first]
        assert codes({"messages_codes": [], "campaign": "C2"}) == [later]
        assert codes({"campaign": "C1", "platforms": ["IOS"]}) == [second_code]
        assert codes({"campaign": "C1", "messages_codes": [first]}) == []
        assert codes({"messages_ids": [ids[second_code]], "messages_codes": [second_code]}) == [
            second_code
        ]
        dated_range = {"date_from": "2024-05-02", "date_to": "2024-05-03"}
        assert codes({"date_range": dated_range}) == [later]
        assert codes({"date_range": {"date_to": "2024-05-01 10:00:59"}}) == [first]  # (ours)
        assert codes({"date_range": dated_range, "source": "API", "campaign": "C2"}) == [later]

        # params: with_details / with_metrics, both on unless turned off (ours)
        assert page({}, params={"with_details": True, "with_metrics": True}) == everything
        assert page({}, params={}) == everything
        only_metrics = page({}, params={"with_details": False})
        assert [set(i["push_info"]) for i in only_metrics["items"]] == [{"metrics"}] * 3
        only_details = page({}, params={"with_metrics": False, "with_details": True})
        assert [set(i["push_info"]) for i in only_details["items"]] == [{"details"}] * 3
        bare = page({}, params={"with_metrics": False, "with_details": False})
        assert [i["push_info"] for i in bare["items"]] == [{}, {}, {}]

        app = svc.app.code
        for bad, says in (
            ({"filters": {}}, "filters.application"),
            ({"filters": {"application": "00000-00000"}}, "filters.application"),
            ({"filters": {"application": app}, "per_page": 1001}, "per_page"),
            ({"filters": {"application": app}, "page": 0}, "page"),
            ({"filters": {"application": app}, "page": 10**20}, "page"),
            ({"filters": {"application": app, "platforms": ["nokia"]}}, "filters.platforms"),
            ({"filters": {"application": app, "platforms": [4]}}, "filters.platforms"),
            ({"filters": {"application": app, "date_range": {"date_from": "x"}}}, "date_from"),
            ({"filters": {"application": app, "source": "NOPE"}}, "filters.source"),
            ({"filters": {"application": app, "source": "api"}}, "filters.source"),
            ({"filters": {"application": app, "campaign": 5}}, "filters.campaign"),
            ({"filters": {"application": app, "messages_ids": ["1"]}}, "filters.messages_ids"),
            ({"filters": {"application": app, "messages_ids": [-1]}}, "filters.messages_ids"),
            ({"filters": {"application": app, "messages_ids": [2**63]}}, "filters.messages_ids"),
            (
                {"filters": {"application": app, "messages_ids": list(range(1001))}},
                "filters.messages_ids",
            ),
            ({"filters": {"application": app, "nope": 1}}, 'filters: unknown field "nope"'),
            ({"filters": {"application": app}, "campaign": "C1"}, 'unknown field "campaign"'),
            ({"filters": {"application": app}, "params": {"x": True}}, 'unknown field "x"'),
            ({"filters": {"application": app}, "params": {"with_details": 1}}, "with_details"),
        ):
            resp = svc.v2("messages:list", bad)
            assert resp.status_code == 400, (bad, resp.text)
            assert says in resp.json()["error"], (bad, resp.text)
        other = run(svc.store.create_app("default", "other"))
        limited = svc.make_token("server", apps=[other.code])
        resp = svc.v2("messages:list", {"filters": {"application": svc.app.code}}, limited)
        assert resp.status_code == 403
