"""The message page's chart over a message's life, on a clock the test moves: per minute
for its first hours, per hour once its activity spans more than three; every bucket from
the first on, equal to the counters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pushtrack.domain.platforms import Platform
from pushtrack.worker import build_worker
from tests.dashboard._support import CLEAN, sandbox, sign_in
from tests.exports._support import Clock, at, clocked_service
from tests.support import run

SERIES = ("sends", "deliveries", "opens", "errors")


def _points(series: dict[str, Any]) -> dict[int, list[int]]:
    return {t: [series[k][i] for k in SERIES] for i, t in enumerate(series["t"])}


def test_the_chart_is_per_minute_for_the_first_hours_then_per_hour(
    database_url: str, tmp_path: Path
) -> None:
    clock = Clock("2024-05-01 10:00:20")
    with clocked_service(database_url, tmp_path, clock) as (svc, settings):
        sandbox(svc, CLEAN, (Platform.IOS,))
        for h in ("a", "b", "c"):
            svc.register(f"chart-{h}", 1)
        out = svc.send(devices=["chart-a", "chart-b", "chart-c"], content="over time")
        code = out["Messages"][0]
        hashes = {h: svc.hash_of(c) for h, c in zip("abc", out["TrackingCodes"], strict=True)}
        run(build_worker(settings, svc.store, poll_seconds=0.02).run_until_idle(30))
        http = sign_in(svc, svc.server_token)
        url = f"/apps/{svc.app.code}/messages/{code}/series"
        s = at("2024-05-01 10:00:00") // 1_000_000

        def opened(hwid: str) -> None:
            reply = svc.device("pushStat", hwid=f"chart-{hwid}", hash=hashes[hwid])
            assert reply["status_code"] == 200

        # the first minutes: per minute, up to now's minute
        clock.set("2024-05-01 10:04:30")
        first = http.get(url).json()
        assert first["interval"] == "minute"
        assert first["t"] == [s + 60 * i for i in range(5)]
        assert _points(first)[s] == [3, 3, 0, 0]
        assert all(v == [0, 0, 0, 0] for t, v in _points(first).items() if t != s)

        # an open 90 minutes on: still per minute (activity spans less than three hours)
        clock.set("2024-05-01 11:30:10")
        opened("a")
        later = http.get(url).json()
        assert later["interval"] == "minute"
        assert later["t"] == [s + 60 * i for i in range(91)]
        assert _points(later)[s + 90 * 60] == [0, 0, 1, 0]
        assert sum(v[2] for v in _points(later).values()) == 1

        # an open three and a half hours on: the chart is per hour, the same counters
        clock.set("2024-05-01 13:30:40")
        opened("b")
        hourly = http.get(url).json()
        assert hourly["interval"] == "hour"
        assert hourly["t"] == [s + 3600 * i for i in range(4)]
        assert _points(hourly) == {
            s: [3, 3, 0, 0],
            s + 3600: [0, 0, 1, 0],
            s + 7200: [0, 0, 0, 0],
            s + 10800: [0, 0, 1, 0],
        }
        # asked for by name, either width is drawn
        minutes = http.get(url, params={"interval": "minute"}).json()
        assert minutes["interval"] == "minute"
        assert sum(v[2] for v in _points(minutes).values()) == 2
        assert http.get(url, params={"interval": "day"}).status_code == 400
