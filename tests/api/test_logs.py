"""Logs as JSON lines, and the access log: one record per API request."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support import free_port


def test_json_logs_and_one_access_record_per_request(tmp_path: Path) -> None:
    port = free_port()
    exe = shutil.which("pushtrack", path=os.path.dirname(sys.executable))
    assert exe is not None
    db = f"sqlite:///{tmp_path}/db"
    app = json.loads(
        subprocess.run(
            [exe, "app", "create", "logs", "--database", db, "--json"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    token = json.loads(
        subprocess.run(
            [exe, "token", "create", "--kind", "server", "--database", db, "--json"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )["token"]
    stderr = tmp_path / "stderr"
    with open(stderr, "wb") as err:
        proc = subprocess.Popen(
            [
                exe,
                "serve",
                "--no-worker",
                "--port",
                str(port),
                "--database",
                db,
                "--log-format",
                "json",
                "--access-log",
            ],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                httpx.get(f"{url}/healthz")
                break
            except httpx.HTTPError:
                time.sleep(0.05)
        ok = httpx.post(
            f"{url}/json/1.3/listTags",
            json={"request": {"auth": token, "application": app["code"]}},
            headers={"X-Request-Id": "req-123"},
        )
        assert ok.headers["x-request-id"] == "req-123"
        missing = httpx.post(f"{url}/json/1.3/noSuchMethod", json={})
        generated = missing.headers["x-request-id"]
        assert len(generated) == 16
    finally:
        proc.terminate()
        proc.wait(10)
    records = [json.loads(line) for line in stderr.read_text().splitlines() if line.strip()]
    assert all({"ts", "level", "logger", "message"} <= set(r) for r in records)
    access = [r for r in records if r["logger"] == "pushtrack.access"]
    assert [(r["method"], r["status"], r["account"], r["request_id"]) for r in access] == [
        ("listTags", 200, "default", "req-123"),
        ("unknown", 404, None, generated),
    ]
    assert all(isinstance(r["ms"], float) and r["api"] == "json13" for r in access)
