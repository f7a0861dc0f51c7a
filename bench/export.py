"""export: the tracking-log ZIP of one day of events (getTrackingLog): rows/s and peak RSS.

A day of 2,000,000 events (full scale) is written with bare executemany in the
product's schema (``bench.trail``). A real ``pushtrack serve`` takes the
getTrackingLog request and a real ``pushtrack worker`` process builds the
file; the time runs from the request until getResults reports it done, and
the file is downloaded and its rows counted. Peak RSS is the worker's. The
baseline is the command-line tools on the same rows: ``sqlite3 -csv`` (or
``psql`` with ``COPY … CSV``) of the same join, the payload spliced from the
stored template, piped into ``zip -1``.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import time
import zipfile

import httpx

from bench.dispatching import wait_for_log
from bench.harness import Bench, Figure, sqlite_path, stopwatch
from bench.procs import pushtrack_server, pushtrack_worker
from bench.profiling import Profile
from bench.rawdb import Raw
from bench.tenant import Tenant, create_tenant, with_store
from bench.trail import EVENTS_PER_DELIVERY, populate
from pushtrack.domain.timeutil import DAY_US, HOUR_US, day_of, now_us, to_wire

NAME = "export"
POLL = 0.1

#: The same rows, columns and order as the export, for the engine's command-line tool.
#: (Events, and the deliveries' ``created`` their rows carry, merged by time.)
BARE_SQL = """
SELECT :stamp, 'T-' || d.id,
  d.target_id, d.hwid,
  CASE e.status WHEN 1 THEN 'created' WHEN 2 THEN 'sent' WHEN 3 THEN 'delivered'
    WHEN 4 THEN 'failed' ELSE 'opened' END,
  e.description, a.code,
  substr(p.body, 1, length(p.body) - 1) || ',"md":{"mid":' || d.message_id
    || ',"user_id":"' || coalesce(d.user_id, d.hwid) || '"},"p":"' || d.hash || '"}'
FROM (SELECT ts, id + 4611686018427387904 AS k, status, description, delivery_id FROM events
    WHERE ts >= :start AND ts < :end
  UNION ALL SELECT created_at, id, 1, 'Created', id FROM deliveries
    WHERE created_at >= :start AND created_at < :end) e
  JOIN deliveries d ON d.id = e.delivery_id
  JOIN messages m ON m.id = d.message_id JOIN applications a ON a.id = m.app_id
  LEFT JOIN payloads p ON p.id = d.payload_id
ORDER BY e.ts, e.k
"""
STAMP = {
    "sqlite": "strftime('%Y-%m-%d %H:%M:%S', e.ts / 1000000, 'unixepoch')",
    "postgresql": (
        "to_char(to_timestamp(e.ts / 1000000) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS')"
    ),
}


def run(bench: Bench) -> Figure:
    events = bench.size(2_000_000, 50_000, override=bench.events and bench.events // 5)
    fig = Figure(NAME, unit="rows/s")
    url = bench.database(NAME)
    tenant = with_store(url, create_tenant)
    day_start = day_of(now_us()) - DAY_US  # yesterday, inside the retention window
    trail = populate(
        url,
        tenant.app.id,
        devices=bench.size(50_000, 2_000),
        deliveries=int(events / EVENTS_PER_DELIVERY),
        start_us=day_start,
        span_us=22 * HOUR_US,  # opens come up to an hour later: all inside the day
    )
    with Raw(url) as db:
        rows = int(
            db.scalar(
                "SELECT (SELECT COUNT(*) FROM events WHERE ts >= ? AND ts < ?)"
                " + (SELECT COUNT(*) FROM deliveries WHERE created_at >= ? AND created_at < ?)",
                (day_start, day_start + DAY_US) * 2,
            )
        )
    day = to_wire(day_start)[:10]
    fig.sizes = {**trail.sizes(), "rows": rows, "date": day}

    with (
        pushtrack_server(bench, url) as (_, port),
        pushtrack_worker(bench, url, 1, name="export-worker") as worker,
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http,
    ):
        wait_for_log(worker, "running")
        with Profile(bench, worker.pid, "export worker") as prof, stopwatch() as elapsed:
            link = _export(http, tenant, day)
        seconds = elapsed()
        fig.peak_rss_mb = worker.peak_rss_mb()
        got, size = _count_rows(http, link)
    if got != rows:
        raise RuntimeError(f"the export holds {got} rows, the day {rows}")
    fig.value = rows / seconds
    fig.extra["seconds"] = seconds
    fig.extra["zip_mb"] = size / 2**20
    base = _baseline(bench, url, day_start)
    if base is None:
        fig.notes.append("baseline not run: its command-line tools (sqlite3/psql, zip) are missing")
    else:
        base_seconds, base_rss = base
        fig.baseline = rows / base_seconds
        fig.extra["baseline_peak_rss_mb"] = base_rss
    fig.check(
        ("≥ 150,000 rows/s", fig.value >= 150_000),
        ("≥ 0.5 of baseline", fig.ratio is None or fig.ratio >= 0.5),
        ("peak RSS < 150 MB", (fig.peak_rss_mb or 0.0) < 150),
    )
    if not fig.target_met:
        fig.notes += prof.summary
    return fig


def _call(http: httpx.Client, method: str, request: dict[str, object]) -> dict[str, object]:
    resp = http.post(f"/json/1.3/{method}", json={"request": request})
    doc = resp.json()
    if resp.status_code != 200 or doc.get("status_code") != 200:
        raise RuntimeError(f"{method}: HTTP {resp.status_code} {resp.text[:300]}")
    response: dict[str, object] = doc["response"]
    return response


def _export(http: httpx.Client, tenant: Tenant, day: str) -> str:
    """Ask for the day's log and wait for it; the download link."""
    started = _call(http, "getTrackingLog", {"auth": tenant.server_token, "date": day})
    request_id = started["request_id"]
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        result = _call(http, "getResults", {"auth": tenant.server_token, "request_id": request_id})
        if result.get("status") == "done":
            return str(result["fileName"])
        if result.get("status") not in ("pending", "running"):
            raise RuntimeError(f"the export ended {result}")
        time.sleep(POLL)
    raise RuntimeError("the export did not finish within 600s")


def _count_rows(http: httpx.Client, link: str) -> tuple[int, int]:
    """Rows of the CSV inside the downloaded ZIP, and the ZIP's size."""
    resp = http.get(httpx.URL(link).path)
    resp.raise_for_status()
    with zipfile.ZipFile(io.BytesIO(resp.content)) as zf:
        (name,) = zf.namelist()
        lines = 0
        with zf.open(name) as f:
            while chunk := f.read(1 << 20):
                lines += chunk.count(b"\n")
    return lines, len(resp.content)


def _dump_argv(bench: Bench, url: str, day_start: int) -> list[str] | None:
    """``sqlite3 -csv`` (or ``psql`` with COPY … CSV) of the day's rows, if the tool is here."""
    sql = (
        BARE_SQL.replace(":stamp", STAMP[bench.engine])
        .replace(":start", str(day_start))
        .replace(":end", str(day_start + DAY_US))
    )
    if bench.engine == "sqlite":
        cli = shutil.which("sqlite3")
        return None if cli is None else [cli, "-csv", "-separator", ";", sqlite_path(url), sql]
    cli = shutil.which("psql")
    copy = f"COPY ({sql}) TO STDOUT WITH (FORMAT csv, DELIMITER ';')"
    return None if cli is None else [cli, "-X", "-q", url, "-c", copy]


def _baseline(bench: Bench, url: str, day_start: int) -> tuple[float, float] | None:
    """Seconds (and the larger peak RSS, MB) of ``sqlite3 -csv … | zip -1``."""
    argv, zip_cli = _dump_argv(bench, url, day_start), shutil.which("zip")
    if argv is None or zip_cli is None:
        return None
    out = bench.tmp / "baseline-export.zip"
    with stopwatch() as elapsed:
        dump = subprocess.Popen(argv, stdout=subprocess.PIPE)
        assert dump.stdout is not None
        pack = subprocess.Popen([zip_cli, "-1", "-q", str(out), "-"], stdin=dump.stdout)
        dump.stdout.close()
        rss = 0.0
        for proc, tool in ((dump, argv[0]), (pack, zip_cli)):
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            if proc.returncode != 0:
                raise RuntimeError(f"{tool} exited {proc.returncode}")
            rss = max(rss, usage.ru_maxrss / 1024)
    return elapsed(), rss
