"""``pushtrack export``, ``stats`` and ``purge`` against a live database."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path

from typer.testing import CliRunner

from pushtrack.cli.root import cli
from pushtrack.domain.timeutil import DAY_US, now_us, to_wire
from tests.support import Service

runner = CliRunner()


def _invoke(*args: str) -> tuple[int, str, str]:
    res = runner.invoke(cli, list(args), env={"PUSHTRACK_CONFIG": ""})
    return res.exit_code, res.stdout, res.stderr


def _message(svc: Service) -> str:
    svc.register("hw-1", 1)
    svc.register("hw-2", 3)
    out = svc.server(
        "createMessage", notifications=[{"content": "a;b", "devices": ["hw-1", "hw-2", "x"]}]
    )
    assert out["status_code"] == 200, out
    ((p,),) = svc.db.rows("SELECT hash FROM deliveries WHERE hwid = 'hw-2'")
    assert svc.device("pushStat", hwid="hw-2", hash=p)["status_code"] == 200
    code: str = out["response"]["Messages"][0]
    return code


def test_export_writes_the_days_zip(svc: Service, tmp_path: Path) -> None:
    _message(svc)
    today = to_wire(now_us())[:10]
    target = tmp_path / "out.zip"
    code, out, _ = _invoke(
        "export", "--date", today, "-o", str(target), "--database", svc.db.url, "--json"
    )
    assert code == 0, out
    report = json.loads(out)
    assert report["rows"] == svc.db.trail() == 5
    assert report["bytes"] == target.stat().st_size
    with zipfile.ZipFile(target) as zf:
        (name,) = zf.namelist()
        assert name == f"tracking_log_{today}.csv"
        rows = list(csv.reader(io.StringIO(zf.read(name).decode(), newline=""), delimiter=";"))
    assert [r[4] for r in rows] == ["created", "created", "created", "failed", "opened"]
    assert {r[6] for r in rows} == {svc.app.code}

    # Narrowed to an application; the human output names the file and the rate.
    code, out, err = _invoke(
        "export",
        "--date",
        today,
        "--app",
        svc.app.code,
        "-o",
        str(tmp_path / "b.zip"),
        "--database",
        svc.db.url,
    )
    assert code == 0, out + err
    assert "wrote" in out
    assert "5 rows" in out
    assert "rows/s" in out
    assert "export " + today in err  # the progress bar, on stderr

    code, _, err = _invoke(
        "export", "--date", today, "--app", "00000-00000", "--database", svc.db.url
    )
    assert code == 2
    assert "no application" in err
    code, _, err = _invoke("export", "--date", "yesterday", "--database", svc.db.url)
    assert code == 2
    assert "YYYY-MM-DD" in err


def test_export_refuses_days_it_cannot_hold(svc: Service, tmp_path: Path) -> None:
    """A day in the future or outside the retention window has no data: say so, write nothing."""
    now = now_us()
    for day, says in (
        (to_wire(now + DAY_US)[:10], "is in the future"),
        (to_wire(now - 15 * DAY_US)[:10], "outside the retention window of 14 days"),
    ):
        target = tmp_path / f"{day}.zip"
        code, out, err = _invoke(
            "export", "--date", day, "-o", str(target), "--database", svc.db.url
        )
        assert code == 2, out
        assert says in err, err
        assert not target.exists()


def test_stats_prints_the_hourly_table(svc: Service) -> None:
    message = _message(svc)
    code, out, _ = _invoke("stats", message, "--database", svc.db.url, "--json")
    assert code == 0, out
    rows = json.loads(out)
    assert {(r["platform"], r["opens"], r["errors"]) for r in rows} == {
        ("unknown", 0, 1),
        ("android", 1, 0),
    }
    code, out, _ = _invoke("stats", message, "--database", svc.db.url, "--interval", "minute")
    assert code == 0, out
    assert "android" in out
    assert "total" in out
    # not on a terminal: every column whole, not cut to 80 columns
    header = next(line for line in out.splitlines() if "platform" in line)
    for column in ("sends", "deliveries", "inbox opens", "unshowable sends", "errors"):
        assert column in header, header
    code, _, err = _invoke("stats", "0000-00000000-00000000", "--database", svc.db.url)
    assert code == 2
    assert "no message" in err
    code, _, _ = _invoke("stats", message, "--database", svc.db.url, "--interval", "week")
    assert code == 2


def test_purge_reports_what_it_removed(svc: Service) -> None:
    _message(svc)
    code, out, _ = _invoke("purge", "--database", svc.db.url, "--json", "--retention-days", "1")
    assert code == 0, out
    report = json.loads(out)
    assert report["events"] == 0
    assert svc.db.trail() == 5
    code, out, _ = _invoke("purge", "--database", svc.db.url)
    assert code == 0
    assert "removed what is older than" in out
