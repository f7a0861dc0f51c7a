"""Settings: defaults → PUSHTRACK_CONFIG TOML file → PUSHTRACK_* env → explicit overrides."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from pushtrack import config
from pushtrack.config import Settings
from pushtrack.store import StoreError, open_store
from tests.exports._support import Clock, clocked_service, create, result, run_jobs
from tests.support import Database, free_port, run

PUSHTRACK = str(Path(sys.executable).with_name("pushtrack"))


def toml(tmp_path: Path, text: str) -> dict[str, str]:
    path = tmp_path / "pushtrack.toml"
    path.write_text(text)
    return {"PUSHTRACK_CONFIG": str(path)}


def test_defaults() -> None:
    settings = config.load({}, env={})
    assert settings == Settings()
    assert settings.database == "sqlite:///./pushtrack.db"
    assert (settings.host, settings.port, settings.worker) == ("127.0.0.1", 8080, True)
    assert settings.retention_days == 14
    assert settings.file_ttl_hours == 24
    assert settings.base_url() == "http://127.0.0.1:8080"


def test_each_layer_overrides_the_one_before(tmp_path: Path) -> None:
    env = toml(
        tmp_path,
        'port = 9000\nrate_limit = 5.5\nworker = false\nhost = "0.0.0.0"\nretention_days = 7\n',
    )
    from_file = config.load({}, env=env)
    assert (from_file.port, from_file.rate_limit, from_file.worker) == (9000, 5.5, False)
    assert (from_file.host, from_file.retention_days) == ("0.0.0.0", 7)

    env |= {"PUSHTRACK_PORT": "9100", "PUSHTRACK_WORKER": "yes", "PUSHTRACK_RATE_BURST": "7"}
    from_env = config.load({}, env=env)
    assert (from_env.port, from_env.worker, from_env.rate_burst) == (9100, True, 7)
    assert from_env.rate_limit == 5.5  # still from the file
    assert from_env.host == "0.0.0.0"

    explicit = config.load({"port": 9200, "host": None, "worker": False}, env=env)
    assert (explicit.port, explicit.worker) == (9200, False)
    assert explicit.host == "0.0.0.0"  # None means "not given", not "clear it"

    env["PUSHTRACK_RETENTION_DAYS"] = ""  # empty variables are not set
    assert config.load({}, env=env).retention_days == 7


def test_environment_is_read_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PUSHTRACK_PORT", "8181")
    monkeypatch.setenv("PUSHTRACK_DATABASE", "postgresql://pt@db.example/pt")
    monkeypatch.delenv("PUSHTRACK_CONFIG", raising=False)
    settings = config.load()
    assert settings.port == 8181
    assert settings.database == "postgresql://pt@db.example/pt"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1", True),
        ("true", True),
        ("YES", True),
        (" on ", True),
        ("0", False),
        ("false", False),
        ("No", False),
        ("off", False),
    ],
)
def test_booleans_from_the_environment(value: str, expected: bool) -> None:
    assert config.load({}, env={"PUSHTRACK_WORKER": value}).worker is expected


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"PUSHTRACK_PORT": "abc"}, "PUSHTRACK_PORT: expected an integer, got 'abc'"),
        ({"PUSHTRACK_PORT": "80.5"}, "PUSHTRACK_PORT"),
        ({"PUSHTRACK_PORT": "70000"}, "port: expected an integer <= 65535, got 70000"),
        ({"PUSHTRACK_PORT": "-1"}, "port"),
        ({"PUSHTRACK_WORKER": "maybe"}, "PUSHTRACK_WORKER: expected true or false"),
        ({"PUSHTRACK_RATE_LIMIT": "fast"}, "PUSHTRACK_RATE_LIMIT: expected a number"),
        ({"PUSHTRACK_RATE_LIMIT": "nan"}, "PUSHTRACK_RATE_LIMIT"),
        ({"PUSHTRACK_RATE_LIMIT": "-1"}, "rate_limit"),
        ({"PUSHTRACK_RATE_BURST": "0"}, "rate_burst"),
        ({"PUSHTRACK_MAX_BODY_BYTES": "10"}, "max_body_bytes"),
        ({"PUSHTRACK_RETENTION_DAYS": "0"}, "retention_days"),
        ({"PUSHTRACK_FILE_TTL_HOURS": "0"}, "file_ttl_hours"),
        ({"PUSHTRACK_WORKER_CONCURRENCY": "0"}, "worker_concurrency"),
        ({"PUSHTRACK_MAX_ATTEMPTS": "-1"}, "max_attempts"),
        ({"PUSHTRACK_RETRY_WINDOW_SECONDS": "0"}, "retry_window_seconds"),
        ({"PUSHTRACK_RETRY_MAX_BACKOFF_SECONDS": "1"}, "retry_max_backoff_seconds"),
        ({"PUSHTRACK_GATEWAY_PROBE_SECONDS": "0"}, "gateway_probe_seconds"),
        ({"PUSHTRACK_DATABASE": "mysql://x/y"}, "database: expected a sqlite:/// or postgresql"),
        ({"PUSHTRACK_LOG_FORMAT": "xml"}, 'log_format: expected "text" or "json", got \'xml\''),
        ({"PUSHTRACK_HEADER_TIMEOUT_SECONDS": "0"}, "header_timeout_seconds: expected a number >"),
        ({"PUSHTRACK_MAX_IN_FLIGHT": "0"}, "max_in_flight: expected an integer >= 1"),
        ({"PUSHTRACK_EXPANSION_BATCH": "1001"}, "expansion_batch: expected an integer <= 1000"),
        ({"PUSHTRACK_CONFIG": "/nonexistent/pushtrack.toml"}, "/nonexistent/pushtrack.toml"),
        ({"PUSHTRACK_OUTBOUND_ALLOW": "10.0.0.0/33"}, "outbound_allow: '10.0.0.0/33' is not a"),
    ],
)
def test_invalid_settings_name_what_is_wrong(env: dict[str, str], says: str) -> None:
    with pytest.raises(ValueError, match=re.escape(says)):
        config.load({}, env=env)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("port = 9000\nnot_a_setting = 1\n", "unknown settings"),
        ("[server]\nport = 1\n", "unknown settings"),
        ("port = \n", "pushtrack.toml"),
        ('port = "eighty"\n', "port: expected an integer"),
        ("port = true\n", "port: expected an integer"),
        ("worker = 2\n", "worker: expected true or false"),
        ('database = ["sqlite:///x.db"]\n', "database: expected text"),
        ("rate_limit = nan\n", "rate_limit: expected a number"),
    ],
)
def test_invalid_config_files(tmp_path: Path, text: str, says: str) -> None:
    with pytest.raises(ValueError, match=re.escape(says)):
        config.load({}, env=toml(tmp_path, text))


def test_invalid_explicit_overrides() -> None:
    with pytest.raises(ValueError, match="port"):
        config.load({"port": "x"}, env={})
    with pytest.raises(ValueError, match="unknown setting"):
        config.load({"no_such_setting": 1}, env={})


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("sqlite:///./pushtrack.db", "sqlite:///./pushtrack.db"),
        ("sqlite:////var/lib/pt.db", "sqlite:////var/lib/pt.db"),
        ("postgresql://pt:s3cret@db:5432/pt", "postgresql://pt:***@db:5432/pt"),
        ("postgres://pt:p%40ss@db/pt?sslmode=require", "postgres://pt:***@db/pt?sslmode=require"),
        ("postgresql://pt@db/pt", "postgresql://pt@db/pt"),
        ("postgresql://db/pt?user=pt&password=s3cret", "postgresql://db/pt?user=pt&password=***"),
        ("postgresql://db/pt?Password=s3cret&x=1", "postgresql://db/pt?Password=***&x=1"),
    ],
)
def test_redacted_database_url(url: str, shown: str) -> None:
    settings = config.load({"database": url}, env={})
    redacted: dict[str, Any] = settings.redacted()
    assert redacted["database"] == shown
    assert "s3cret" not in str(redacted)
    assert settings.database == url  # the real value is untouched
    assert set(redacted) == set(Settings.__struct_fields__)


# -- each setting changes what the service does ----------------------------------------------
#
# Most settings are shown to work where their subject is tested (tests/api/test_connections.py
# for the HTTP limits, tests/delivery/test_retry_policy.py for the retry policy,
# tests/delivery/test_setting_effects.py for the worker's and the webhooks' concurrency, ...);
# the ones below have no other home.


def _readme_configuration() -> str:
    text = (Path(__file__).parents[1] / "README.md").read_text()
    return text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]


def test_every_setting_is_in_the_readme() -> None:
    section = _readme_configuration()
    missing = [name for name in Settings.__struct_fields__ if f"`{name}`" not in section]
    assert not missing, f"README's Configuration does not name {missing}"


def test_public_url_is_where_download_links_point(database_url: str, tmp_path: Path) -> None:
    clock = Clock("2024-05-01 12:00:00")
    public = "https://push.example.org/pt"
    with clocked_service(database_url, tmp_path, clock, public_url=public + "/") as (svc, cfg):
        svc.register("hw-1")
        create(svc, content="x", devices=["hw-1"])
        request_id = svc.server("getTrackingLog")["response"]["request_id"]
        run_jobs(svc.store, cfg)
        link = result(svc, request_id)["fileName"]
        assert re.fullmatch(re.escape(public) + r"/files/[A-Za-z0-9_-]+\.zip", link), link
        # the path is this server's: a proxy at the public URL forwards to it
        assert svc.http.get(urlsplit(link).path.removeprefix("/pt")).status_code == 200


def _serve(tmp_path: Path, **env: str) -> tuple[subprocess.Popen[str], str, dict[str, Any]]:
    """``pushtrack serve --demo`` on a new SQLite file; its URL and the demo's codes."""
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PUSHTRACK_")}
    environ |= {"PUSHTRACK_DATABASE": f"sqlite:///{tmp_path}/serve.db", **env}
    proc = subprocess.Popen(
        [PUSHTRACK, "serve", "--demo", "--json", "--port", str(port)],
        cwd=tmp_path,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    demo = json.loads(proc.stdout.readline())
    while "listening" not in proc.stdout.readline():
        pass
    return proc, f"http://127.0.0.1:{port}", demo


@pytest.mark.parametrize("worker", [True, False])
def test_worker_runs_inside_serve_only_when_set(tmp_path: Path, worker: bool) -> None:
    proc, url, demo = _serve(tmp_path, PUSHTRACK_WORKER="true" if worker else "false")
    try:
        app = demo["application"]
        device = {"Authorization": f"Token {demo['device_token']}"}
        reg = {"application": app, "hwid": "mine", "device_type": 1, "push_token": "t"}
        out = httpx.post(
            f"{url}/json/1.3/registerDevice", json={"request": reg}, headers=device, timeout=30
        ).json()
        assert out["status_code"] == 200, out
        # the demo's sandbox fails and defers a few pushes, as gateways do: this one
        # accepts everything, so a worker's send ends ``delivered``
        cli_env = {k: v for k, v in os.environ.items() if not k.startswith("PUSHTRACK_")}
        cli_env["PUSHTRACK_DATABASE"] = f"sqlite:///{tmp_path}/serve.db"
        subprocess.run(
            [PUSHTRACK, "app", "set-gateway", app, "--platform", "ios", "--kind", "sandbox",
             "--set", "failure_rate=0", "--set", "retry_rate=0"],
            cwd=tmp_path, env=cli_env, capture_output=True, timeout=60, check=True,
        )  # fmt: skip
        body = {
            "auth": demo["server_token"],
            "application": app,
            "notifications": [{"content": "hi", "devices": ["mine"]}],
        }
        sent = httpx.post(f"{url}/json/1.3/createMessage", json={"request": body}, timeout=30)
        (code,) = sent.json()["response"]["Messages"]
        db = Database(f"sqlite:///{tmp_path}/serve.db")
        sql = (
            "SELECT d.state FROM deliveries d JOIN messages m ON m.id = d.message_id"
            " WHERE m.code = ?"
        )
        deadline = time.monotonic() + (60 if worker else 3)
        states = db.rows(sql, (code,))
        while time.monotonic() < deadline and states != [(3,)]:
            time.sleep(0.1)
            states = db.rows(sql, (code,))
        # only a worker sends it
        assert states == ([(3,)] if worker else [(1,)])
    finally:
        proc.terminate()
        proc.wait(30)
        assert proc.stdout is not None
        proc.stdout.close()


def test_sqlite_cache_mb_sizes_the_page_caches(tmp_path: Path) -> None:
    """``?cache_mb=N`` on a SQLite URL: the writer's page cache, a quarter for readers."""

    def caches(url: str) -> tuple[int, int]:
        store = open_store(url)
        try:
            pragma = "PRAGMA cache_size"  # negative: KiB
            (writer,) = store.engine.write_sync(lambda tx: tx.one(pragma)) or (0,)
            (reader,) = store.engine.read_sync(lambda tx: tx.one(pragma)) or (0,)
            return -writer // 1024, -reader // 1024
        finally:
            run(store.close())

    assert caches(f"sqlite:///{tmp_path}/a.db?cache_mb=8") == (8, 2)
    default = caches(f"sqlite:///{tmp_path}/b.db")
    assert default != (8, 2)
    assert default[0] == 4 * default[1]
    with pytest.raises(StoreError, match=re.escape("only cache_mb=1..65536")):
        open_store(f"sqlite:///{tmp_path}/c.db?cache_mb=0")


def test_an_in_memory_sqlite_database_is_refused(tmp_path: Path) -> None:
    """Every connection to ``:memory:`` would be a database of its own: the readers
    would find no tables, and every request would fail."""
    with pytest.raises(StoreError, match="needs a file that its connections share"):
        open_store("sqlite:///:memory:")
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PUSHTRACK_")}
    done = subprocess.run(
        [PUSHTRACK, "serve", "--database", "sqlite:///:memory:", "--port", str(free_port())],
        cwd=tmp_path,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "needs a file that its connections share" in " ".join(done.stderr.split())
    assert "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []
