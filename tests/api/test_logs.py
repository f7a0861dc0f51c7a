"""Logs as JSON lines, and the access log: one record per API request."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

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


def test_push_tokens_never_reach_the_log(
    database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Registration, sending, gateway faults, refusals, dead tokens, reports: whatever
    the service logs on the way names no device's push token."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from pushtrack import config
    from pushtrack.domain.platforms import Platform
    from pushtrack.worker import build_worker
    from tests.support import run, service

    key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    closed = free_port()  # an APNs endpoint where nothing listens: the gateway errs
    tokens = {
        "ios": "a1b2c3d4" * 8,
        "android": "fcm-token-" + "Zq9" * 40,
        "chrome": json.dumps(
            {"endpoint": "https://127.0.0.1:9/wpush/v2/SECRETSUBSCRIPTIONPATH", "keys": {}}
        ),
        "firefox": "not a subscription SECRETFIREFOXTOKEN",
    }
    with (
        caplog.at_level(logging.DEBUG, logger="pushtrack"),
        service(database_url, access_log=True, files_dir=str(tmp_path)) as svc,
    ):
        gateways = {
            Platform.IOS: (
                "apns",
                {
                    "key": key.decode(),
                    "key_id": "ABC123DEFG",
                    "team_id": "DEF123GHIJ",
                    "topic": "com.example.x",
                    "base_url": f"https://127.0.0.1:{closed}",
                    "timeout": 1,
                },
            ),
            Platform.ANDROID: ("sandbox", {"failure_rate": 1.0}),
        }
        for platform, (kind, settings) in gateways.items():
            run(
                svc.store.dispatch.set_gateway(
                    "default", svc.app.code, int(platform), kind, settings
                )
            )
        types = {"ios": 1, "android": 3, "chrome": 11, "firefox": 12}
        for name, token in tokens.items():
            svc.register(f"log-{name}", types[name], push_token=token)
        sent = svc.send(devices=[f"log-{name}" for name in tokens])
        for code in sent["TrackingCodes"]:
            svc.device("pushStat", hwid="log-android", hash=svc.hash_of(code))
        settings = config.load(
            {
                "database": svc.store.url,
                "retry_backoff_seconds": 0.05,
                "retry_window_seconds": 2,
                "files_dir": str(tmp_path),
            },
            env={},
        )
        run(build_worker(settings, svc.store, poll_seconds=0.02).run_until_idle(20, horizon=1))
        svc.v2("devices/deadTokens", {"application": svc.app.code})
        svc.v2("statistics/getMessageLog", {"hwid": "log-ios"})
    text = "\n".join(
        r.getMessage() + (logging.Formatter().formatException(r.exc_info) if r.exc_info else "")
        for r in caplog.records
    )
    assert "createMessage" in text  # the access log and the worker's lines were caught
    assert "worker" in text
    for token in (tokens["ios"], tokens["android"], "SECRETSUBSCRIPTIONPATH", "SECRETFIREFOX"):
        assert token not in text
