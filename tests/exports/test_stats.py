"""totalsByIntervals, getMsgStats and messages:list: served from counters, equal to the log."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from pushtrack.domain.platforms import BY_NAME
from pushtrack.worker import build_worker
from tests.exports._support import Clock, at, clocked_service, create, result, run_jobs
from tests.support import Service, run

COLUMN_OF = {"sent": "sends", "delivered": "deliveries", "opened": "opens", "failed": "errors"}
COUNTERS = ("sends", "deliveries", "opens", "inbox_opens", "unshowable_sends", "errors")
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
        assert {"sends", "deliveries", "errors", "opens"} <= set(seen), seen


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


def test_get_msg_stats(database_url: str, tmp_path: Path) -> None:
    clock = Clock("2024-05-01 10:30:00")
    with clocked_service(database_url, tmp_path, clock) as (svc, settings):
        svc.register("ios", 1)
        svc.register("android", 3)
        code = create(svc, content="x", devices=["ios", "android"])["Messages"][0]
        hashes = dict(svc.db.rows("SELECT hwid, hash FROM deliveries"))
        svc.device("messageDeliveryEvent", hwid="ios", hash=hashes["ios"])
        clock.set("2024-05-01 11:05:00")
        svc.device("messageDeliveryEvent", hwid="android", hash=hashes["android"])
        svc.device("pushStat", hwid="android", hash=hashes["android"])

        assert svc.server("getMsgStats", message="0000-00000000-00000000")["status_code"] == 210
        out = svc.server("getMsgStats", message=code)
        assert out["status_code"] == 200, out
        request_id = out["response"]["request_id"]
        assert result(svc, request_id)["status"] == "pending"
        run_jobs(svc.store, settings)
        done = result(svc, request_id)
        assert done["status"] == "done"
        assert done["formatter"] == "hourly"
        assert done["rows"] == [
            {"datetime": "2024-05-01 10:00:00", "action": "send", "count": 0},
            {"datetime": "2024-05-01 10:00:00", "action": "delivery", "count": 1},
            {"datetime": "2024-05-01 10:00:00", "action": "open", "count": 0},
            {"datetime": "2024-05-01 10:00:00", "action": "inboxopen", "count": 0},
            {"datetime": "2024-05-01 11:00:00", "action": "send", "count": 0},
            {"datetime": "2024-05-01 11:00:00", "action": "delivery", "count": 1},
            {"datetime": "2024-05-01 11:00:00", "action": "open", "count": 1},
            {"datetime": "2024-05-01 11:00:00", "action": "inboxopen", "count": 0},
        ]
        assert done["conversion"] == {
            "sends": 0,
            "deliveries": 2,
            "opens": 1,
            "inbox_opens": 0,
            "errors": 0,
        }
        stranger = svc.make_token("server", account="someone-else")
        out = svc.call("getMsgStats", {"auth": stranger, "message": code}).json()
        assert out["status_code"] == 210


def test_messages_list(database_url: str, tmp_path: Path) -> None:
    clock = Clock("2024-05-01 10:00:00")
    with clocked_service(database_url, tmp_path, clock) as (svc, _):
        svc.register("ios", 1)
        svc.register("android", 3)
        first = create(svc, content={"en": "one"}, devices=["ios"], data={"k": 1})["Messages"][0]
        clock.advance(60)
        second = create(svc, content="two", devices=["ios", "android"], campaign="C1")
        second_code = second["Messages"][0]
        clock.advance(60)
        out = create(svc, content="3", devices=["ios"], send_date="2024-05-03 09:00")
        later = out["Messages"][0]
        hashes = dict(svc.db.rows("SELECT tracking_code, hash FROM deliveries"))
        svc.device("pushStat", hwid="android", hash=hashes[second["TrackingCodes"][1]])

        def page(filters: dict[str, Any], **extra: Any) -> dict[str, Any]:
            body = {"filters": {"application": svc.app.code, **filters}, **extra}
            resp = svc.v2("messages:list", body)
            assert resp.status_code == 200, resp.text
            out: dict[str, Any] = resp.json()
            return out

        everything = page({})
        assert everything["total"] == 3
        assert [i["code"] for i in everything["items"]] == [later, second_code, first]
        item = everything["items"][1]
        assert item["created_date"] == "2024-05-01 10:01:00"
        assert item["send_date"] == "2024-05-01 10:01:00"
        assert item["platforms"] == [1, 3]
        assert item["source"] == "API"
        assert item["campaign_code"] == "C1"
        assert item["push_info"]["details"]["content"] == "two"
        assert "devices" not in item["push_info"]["details"]
        metrics = {m["platform"]: m for m in item["push_info"]["metrics"]}
        assert metrics[3]["opens"] == "1"
        assert metrics[1]["opens"] == "0"
        assert everything["items"][0]["send_date"] == "2024-05-03 09:00:00"
        assert everything["items"][2]["push_info"]["details"]["data"] == {"k": 1}

        paged = [page({}, per_page=2, page=n) for n in (1, 2, 3)]
        assert [p["total"] for p in paged] == [3, 3, 3]
        assert [[i["code"] for i in p["items"]] for p in paged] == [
            [later, second_code],
            [first],
            [],
        ]
        assert page({"platforms": [3]})["total"] == 1
        assert page({"platforms": ["android", "ios"]})["total"] == 3
        assert [i["code"] for i in page({"messages_codes": [first, later]})["items"]] == [
            later,
            first,
        ]
        dated = page({"date_range": {"date_from": "2024-05-02", "date_to": "2024-05-03"}})
        assert [i["code"] for i in dated["items"]] == [later]

        for bad in (
            {"filters": {}},
            {"filters": {"application": "00000-00000"}},
            {"filters": {"application": svc.app.code}, "per_page": 1001},
            {"filters": {"application": svc.app.code}, "page": 0},
            {"filters": {"application": svc.app.code}, "page": 10**20},
            {"filters": {"application": svc.app.code, "platforms": ["nokia"]}},
            {"filters": {"application": svc.app.code, "date_range": {"date_from": "x"}}},
        ):
            resp = svc.v2("messages:list", bad)
            assert resp.status_code == 400, (bad, resp.text)
        other = run(svc.store.create_app("default", "other"))
        limited = svc.make_token("server", apps=[other.code])
        resp = svc.v2("messages:list", {"filters": {"application": svc.app.code}}, limited)
        assert resp.status_code == 403
