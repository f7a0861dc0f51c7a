"""Soak: a real ``pushtrack serve`` (with its worker, sending through the sandbox)
under a steady mix of createMessage, device callbacks, getMessageLog and exports.

No request may fail, the process' memory must level off, and at the end the
store holds exactly what was acknowledged. ``PUSHTRACK_SOAK_SECONDS`` sets the
length (60 s in ``make test``; ``make soak`` runs 10 minutes).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cli.test_gateways import PUSHTRACK, cli
from tests.support import free_port, rss_kb

SECONDS = float(os.environ.get("PUSHTRACK_SOAK_SECONDS", "60"))
DEVICES = [f"soak-{i:03d}" for i in range(200)]
PER_MESSAGE = 50


class Load:
    """Client threads; every answer is checked, every acknowledgement counted."""

    def __init__(self, url: str, app: str, server: str, device: str, db: Path) -> None:
        self.url, self.app, self.server, self.device, self.db = url, app, server, device, db
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.messages: list[str] = []
        self.opened: set[str] = set()
        self.exports = 0
        self.lock = threading.Lock()

    def _post(self, client: httpx.Client, method: str, body: dict[str, Any], **kw: Any) -> Any:
        """The answer's ``response`` ({} for an empty one); None if the call failed."""
        resp = client.post(f"/json/1.3/{method}", json={"request": body}, **kw)
        out = resp.json()
        if resp.status_code != 200 or out["status_code"] != 200:
            self.errors.append(f"{method}: {resp.status_code} {resp.text[:300]}")
            return None
        return out["response"] if out["response"] is not None else {}

    def senders(self) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as client:
            i = 0
            while not self.stop.is_set():
                devices = [DEVICES[(i * 7 + k) % len(DEVICES)] for k in range(PER_MESSAGE)]
                out = self._post(
                    client,
                    "createMessage",
                    {
                        "auth": self.server,
                        "application": self.app,
                        "notifications": [{"content": f"soak {i}", "devices": devices}],
                    },
                )
                if out is not None:
                    with self.lock:
                        self.messages.append(out["Messages"][0])
                i += 1
                time.sleep(0.02)

    def callbacks(self) -> None:
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)
        headers = {"Authorization": f"Token {self.device}"}
        with httpx.Client(base_url=self.url, timeout=60) as client:
            while not self.stop.is_set():
                rows = conn.execute(
                    "SELECT d.hash, d.hwid FROM deliveries d WHERE d.hash IS NOT NULL"
                    " ORDER BY d.id DESC LIMIT 20"
                ).fetchall()
                for hash_, hwid in rows:
                    body = {"application": self.app, "hwid": hwid, "hash": hash_}
                    if self._post(client, "pushStat", body, headers=headers) is not None:
                        with self.lock:
                            self.opened.add(hash_)
                time.sleep(0.05)
        conn.close()

    def readers(self) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as client:
            i = 0
            while not self.stop.is_set():
                resp = client.post(
                    "/api/v2/statistics/getMessageLog",
                    json={"hwid": DEVICES[i % len(DEVICES)], "limit": 100},
                    headers={"Authorization": f"Token {self.server}"},
                )
                if resp.status_code != 200:
                    self.errors.append(f"getMessageLog: {resp.status_code} {resp.text[:300]}")
                i += 1
                time.sleep(0.05)

    def exporters(self) -> None:
        today = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
        with httpx.Client(base_url=self.url, timeout=60) as client:
            while not self.stop.is_set():
                out = self._post(client, "getTrackingLog", {"auth": self.server, "date": today})
                if out is None:
                    return
                while not self.stop.is_set():
                    res = self._post(
                        client, "getResults", {"auth": self.server, "request_id": out["request_id"]}
                    )
                    if res is None or res["status"] == "failed":
                        self.errors.append(f"export: {res}")
                        return
                    if res["status"] == "done":
                        if client.get(res["fileName"]).status_code != 200:
                            self.errors.append("export download failed")
                        self.exports += 1
                        break
                    time.sleep(0.5)
                time.sleep(2)


@pytest.mark.slow
def test_soak(tmp_path: Path) -> None:
    # small page caches, full before the measurement starts: growth after that is a leak
    db = f"sqlite:///{tmp_path}/soak.db?cache_mb=4"
    app = json.loads(cli(db, "app", "create", "soak", "--json").stdout)["code"]
    cli(db, "app", "set-gateway", app, "--platform", "android", "--kind", "sandbox")
    server = json.loads(cli(db, "token", "create", "--kind", "server", "--json").stdout)["token"]
    device = json.loads(cli(db, "token", "create", "--kind", "device", "--json").stdout)["token"]
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PUSHTRACK_")},
        "PUSHTRACK_MESSAGES_PER_MINUTE": "0",
        "PUSHTRACK_FILES_DIR": str(tmp_path / "files"),
        "PUSHTRACK_PUBLIC_URL": f"http://127.0.0.1:{port}",
    }
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [PUSHTRACK, "serve", "--port", str(port), "--database", db],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                httpx.get(f"{url}/healthz")
                break
            except httpx.HTTPError:
                time.sleep(0.05)
        with httpx.Client(base_url=url) as client:
            for hwid in DEVICES:
                resp = client.post(
                    "/json/1.3/registerDevice",
                    json={
                        "request": {
                            "application": app,
                            "hwid": hwid,
                            "device_type": 3,
                            "push_token": f"tok-{hwid}",
                        }
                    },
                    headers={"Authorization": f"Token {device}"},
                )
                assert resp.json()["status_code"] == 200, resp.text
        load = Load(url, app, server, device, tmp_path / "soak.db")
        threads = [
            threading.Thread(target=fn, daemon=True)
            for fn in (load.senders, load.senders, load.callbacks, load.readers, load.exporters)
        ]
        for t in threads:
            t.start()
        samples = []
        started = time.monotonic()
        while time.monotonic() - started < SECONDS:
            time.sleep(SECONDS / 12)
            samples.append(rss_kb(proc.pid))
        settled, final = samples[5], samples[-1]
        load.stop.set()
        for t in threads:
            t.join(60)
        assert not load.errors, load.errors[:10]
        assert load.messages, "nothing was sent"
        assert load.exports >= 1
        assert final < settled * 1.10, samples
        assert proc.poll() is None, "the server died"
    finally:
        proc.terminate()
        proc.wait(30)
    with sqlite3.connect(tmp_path / "soak.db") as conn:
        codes = {r[0] for r in conn.execute("SELECT code FROM messages")}
        assert codes == set(load.messages)
        (deliveries,) = conn.execute("SELECT COUNT(*) FROM deliveries").fetchone()
        assert deliveries == PER_MESSAGE * len(load.messages)
        (opened,) = conn.execute("SELECT COUNT(*) FROM deliveries WHERE opened = 1").fetchone()
        assert opened == len(load.opened)
    assert "Traceback" not in log.read_text()
