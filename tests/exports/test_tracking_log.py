"""getTrackingLog → getResults → GET /files/<id>.zip, over HTTP on every engine."""

from __future__ import annotations

import re
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from pushtrack.domain.codes import REQUEST_ID_RE
from pushtrack.domain.status import Status
from pushtrack.jobs.tracklog import day_query, write_zip
from pushtrack.store.exports import TrackRow
from tests.exports._support import (
    Clock,
    at,
    clocked_service,
    create,
    only_member,
    result,
    run_jobs,
    tracking_log,
)
from tests.support import run


def _lines(data: bytes) -> list[str]:
    return data.decode().splitlines()


def test_request_pending_then_done_with_a_download(database_url: str, tmp_path: Path) -> None:
    clock = Clock("2024-05-01 12:00:00")
    with clocked_service(database_url, tmp_path, clock) as (svc, settings):
        svc.register("hw-1")
        create(svc, content="hello", devices=["hw-1"])
        out = svc.server("getTrackingLog", date="2024-05-01")
        assert out["status_code"] == 200, out
        request_id = out["response"]["request_id"]
        assert REQUEST_ID_RE.match(request_id)
        assert result(svc, request_id) == {"request_id": request_id, "status": "pending"}

        run_jobs(svc.store, settings)
        done = result(svc, request_id)
        assert set(done) == {"request_id", "status", "fileName"}
        assert done["status"] == "done"
        match = re.fullmatch(
            r"http://127\.0\.0\.1:8080/files/([A-Za-z0-9_-]+)\.zip", done["fileName"]
        )
        assert match, done
        assert len(match.group(1)) * 6 >= 128  # base64url characters carry 6 bits each
        path = "/files/" + match.group(1) + ".zip"

        full = svc.http.get(path)
        assert full.status_code == 200
        assert full.headers["content-type"] == "application/zip"
        assert full.headers["accept-ranges"] == "bytes"
        assert "tracking_log_2024-05-01.zip" in full.headers["content-disposition"]
        assert _lines(only_member(full.content))[0].split(";")[4] == "created"

        head = svc.http.head(path)
        assert head.status_code == 200
        assert head.content == b""
        assert int(head.headers["content-length"]) == len(full.content)

        part = svc.http.get(path, headers={"Range": "bytes=10-29"})
        assert part.status_code == 206
        assert part.content == full.content[10:30]
        assert part.headers["content-range"] == f"bytes 10-29/{len(full.content)}"
        tail = svc.http.get(path, headers={"Range": "bytes=-7"})
        assert tail.status_code == 206
        assert tail.content == full.content[-7:]
        beyond = svc.http.get(path, headers={"Range": f"bytes={len(full.content) + 5}-"})
        assert beyond.status_code == 416

        for bad in ("/files/nope.zip", path.replace(".zip", ".csv"), path[:-6] + "AA.zip"):
            assert svc.http.get(bad).status_code == 404
        # Only the database knows the file: its name on disk is no use without the row.
        assert svc.http.get("/files/" + "A" * 32 + ".zip").status_code == 404


def test_unknown_and_foreign_request_ids_are_210(database_url: str, tmp_path: Path) -> None:
    with clocked_service(database_url, tmp_path, Clock()) as (svc, _):
        mine = svc.server("getTrackingLog")["response"]["request_id"]
        for bad in ("0" * 32, "not-an-id", "", "periodic:retention"):
            out = svc.server("getResults", request_id=bad)
            assert out["status_code"] == 210, (bad, out)
            assert "request_id" in out["status_message"]
        assert svc.server("getResults")["status_code"] == 210
        stranger = svc.make_token("server", account="someone-else")
        out = svc.call("getResults", {"auth": stranger, "request_id": mine}).json()
        assert out["status_code"] == 210
        # Jobs that are not requests (dispatch) are not results either.
        svc.register("hw-1")
        create(svc, content="x", devices=["hw-1"])
        ((dispatch_id,),) = svc.db.rows("SELECT request_id FROM jobs WHERE kind = 'dispatch'")
        assert svc.server("getResults", request_id=dispatch_id)["status_code"] == 210


@pytest.mark.parametrize(
    ("date", "message"),
    [
        ("2024-13-01", "YYYY-MM-DD"),
        ("01.05.2024", "YYYY-MM-DD"),
        ("2024-05-02", "future"),
        ("2024-04-16", "retention window"),
    ],
)
def test_bad_dates_are_210(tmp_path: Path, date: str, message: str) -> None:
    clock = Clock("2024-05-01 12:00:00")
    with clocked_service(f"sqlite:///{tmp_path}/db", tmp_path, clock) as (svc, _):
        out = svc.server("getTrackingLog", date=date)
        assert out["status_code"] == 210, out
        assert message in out["status_message"]
        assert svc.db.count("jobs") == 0
        # The first day the window touches is still served (its in-window part).
        assert svc.server("getTrackingLog", date="2024-04-17")["status_code"] == 200


def test_default_date_is_today_and_application_narrows(database_url: str, tmp_path: Path) -> None:
    clock = Clock("2024-05-01 23:59:59")
    with clocked_service(database_url, tmp_path, clock) as (svc, settings):
        other = run(svc.store.create_app("default", "other"))
        svc.register("hw-1")
        create(svc, content="one", devices=["hw-1"])
        out = svc.call(
            "createMessage",
            {
                "auth": svc.server_token,
                "application": other.code,
                "notifications": [{"content": "two", "devices": ["ghost"]}],
            },
        ).json()
        assert out["status_code"] == 200
        both = _lines(tracking_log(svc, settings))
        assert [line.split(";")[6] for line in both] == [svc.app.code, other.code, other.code]
        only = _lines(tracking_log(svc, settings, application=other.code))
        assert [line.split(";")[6] for line in only] == [other.code, other.code]
        assert svc.server("getTrackingLog", application="00000-00000")["status_code"] == 210

        # A token limited to one application exports that application only.
        limited = svc.make_token("server", apps=[svc.app.code])
        out = svc.call("getTrackingLog", {"auth": limited, "application": other.code}).json()
        assert out["status_code"] == 403
        request_id = svc.call("getTrackingLog", {"auth": limited}).json()["response"]["request_id"]
        run_jobs(svc.store, settings)
        done = svc.call("getResults", {"auth": limited, "request_id": request_id}).json()
        url = done["response"]["fileName"].removeprefix(settings.base_url())
        lines = _lines(only_member(svc.http.get(url).content))
        assert [line.split(";")[6] for line in lines] == [svc.app.code]


def test_link_expires_and_purge_removes_the_file(database_url: str, tmp_path: Path) -> None:
    clock = Clock("2024-05-01 12:00:00")
    with clocked_service(database_url, tmp_path, clock, file_ttl_hours=2) as (svc, settings):
        svc.register("hw-1")
        create(svc, content="x", devices=["hw-1"])
        request_id = svc.server("getTrackingLog")["response"]["request_id"]
        run_jobs(svc.store, settings)
        url = result(svc, request_id)["fileName"].removeprefix(settings.base_url())
        (on_disk,) = (tmp_path / "files").glob("*.zip")
        clock.advance(2 * 3600 - 1)
        assert svc.http.get(url).status_code == 200
        clock.advance(1)
        assert svc.http.get(url).status_code == 404
        assert svc.http.head(url).status_code == 404
        assert on_disk.exists()
        from pushtrack.jobs.retention import purge

        report = run(purge(svc.store, settings))
        assert report.files == 1
        assert not on_disk.exists()
        assert svc.db.count("files") == 0
        # The request itself still answers, with a link that no longer works.
        assert result(svc, request_id)["status"] == "done"


def test_keyset_pages_cross_equal_timestamps(database_url: str, tmp_path: Path) -> None:
    clock = Clock("2024-05-01 12:00:00")
    with clocked_service(database_url, tmp_path, clock) as (svc, _):
        devices = [f"hw-{i:02d}" for i in range(12)]
        for hwid in devices:
            svc.register(hwid)
        create(svc, content="a", devices=devices)  # 12 events sharing one timestamp
        clock.advance(1)
        create(svc, content="b", devices=[*devices[:5], "ghost"])
        query = day_query("default", "2024-05-01", now=clock(), retention_days=14)
        whole = [r for page in svc.store.exports.pages(query) for r in page]
        assert len(whole) == 12 + 6 + 1
        pages = list(svc.store.exports.pages(query, page_rows=5))
        assert [len(p) for p in pages] == [5, 5, 5, 4]
        assert [r for p in pages for r in p] == whole
        assert [(r.ts, r.event_id) for r in whole] == sorted((r.ts, r.event_id) for r in whole)
        assert svc.store.exports.count_sync(query) == len(whole)


def _synthetic_pages(n_pages: int, rows_per_page: int) -> Iterator[list[TrackRow]]:
    payload = '{"aps":{"alert":"' + "x" * 200 + '"},"p":"abc","pw_msg":"1"}'
    ts = at("2024-05-01 00:00:00")
    for p in range(n_pages):
        yield [
            TrackRow(
                event_id=p * rows_per_page + i,
                ts=ts + (p * rows_per_page + i) * 1000,
                tracking_code=f"T-0000-{p:08X}-{i:08X}",
                target_id=f"device-{i}",
                hwid=f"device-{i}",
                status=Status.DELIVERED,
                description="Success",
                app_code="C90C0-0E786",
                payload=payload,
            )
            for i in range(rows_per_page)
        ]


def test_the_writer_streams_in_flat_memory(tmp_path: Path) -> None:
    def peak(n_pages: int) -> int:
        tracemalloc.start()
        try:
            result = write_zip(_synthetic_pages(n_pages, 2000), tmp_path / "x.zip", "x.csv")
            assert result.rows == n_pages * 2000
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small, large = peak(2), peak(24)  # 48,000 rows: about 15 MB of CSV
    assert large < small * 1.5 + 1_000_000, (small, large)
    assert large < 8_000_000
