"""The real ``pushtrack`` console script, run as a subprocess against a temporary SQLite file."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import pytest

from pushtrack.domain.codes import APP_CODE_RE, MESSAGE_CODE_RE
from tests.conftest import ENGINES, fresh_database_url
from tests.support import free_port

PUSHTRACK = str(Path(sys.executable).with_name("pushtrack"))


@dataclass
class Cli:
    cwd: Path
    env: dict[str, str]

    @property
    def database(self) -> str:
        return self.env["PUSHTRACK_DATABASE"]

    def __call__(self, *args: str, rc: int = 0, **env: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [PUSHTRACK, *args],
            cwd=self.cwd,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == rc, (args, done.returncode, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr + done.stdout, done.stderr
        return done

    def json(self, *args: str, **env: str) -> Any:
        return json.loads(self(*args, "--json", **env).stdout)


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUSHTRACK_")}
    env |= {"PUSHTRACK_DATABASE": f"sqlite:///{tmp_path}/cli.db", "COLUMNS": "200"}
    return Cli(tmp_path, env)


@pytest.mark.slow
def test_app_create_and_list(cli: Cli) -> None:
    shop = cli.json("app", "create", "Shop")
    assert set(shop) == {"code", "name"}
    assert shop["name"] == "Shop"
    assert APP_CODE_RE.match(shop["code"])
    quiet = cli.json(
        "app",
        "create",
        "Quiet",
        "--no-tracking",
        "--no-open-logging",
        "--no-device-token-required",
    )
    other = cli.json("app", "create", "Elsewhere", "--account", "acme")

    listed = {a["code"]: a for a in cli.json("app", "list")}
    assert set(listed) == {shop["code"], quiet["code"]}  # not the other account's
    assert listed[shop["code"]]["name"] == "Shop"
    flags = ("tracking", "open_logging", "device_token_required")
    assert [listed[shop["code"]][f] for f in flags] == [True, True, True]
    assert [listed[quiet["code"]][f] for f in flags] == [False, False, False]
    assert [a["code"] for a in cli.json("app", "list", "--account", "acme")] == [other["code"]]

    text = cli("app", "list").stdout
    assert shop["code"] in text
    assert quiet["code"] in text
    assert "Shop" in text
    assert other["code"] not in text

    # --database names another file than PUSHTRACK_DATABASE
    elsewhere = f"sqlite:///{cli.cwd}/other.db"
    there = cli.json("app", "create", "There", "--database", elsewhere)["code"]
    assert [a["code"] for a in cli.json("app", "list", "--database", elsewhere)] == [there]
    assert [a["code"] for a in cli.json("app", "list", PUSHTRACK_DATABASE=elsewhere)] == [there]


@pytest.mark.parametrize(
    "command",
    [
        ["app", "list"],
        ["token", "list"],
        ["stats", "X"],
        ["export", "--date", time.strftime("%Y-%m-%d", time.gmtime())],
        ["purge"],
        ["devices", "dead"],
        ["webhook", "list"],
        ["webhook", "add", "X", "https://hooks.example.com/a"],  # its secret's key file too
        ["tail"],
        ["worker"],
        ["secrets", "seal"],
    ],
)
def test_a_database_file_that_does_not_exist_is_refused_not_created(
    cli: Cli, command: list[str]
) -> None:
    """Only serve, demo and app create make a database; the others name the missing
    file and leave nothing behind (no database, no key file beside it)."""
    typo = cli.cwd / "pushtrak.db"
    done = cli(*command, "--database", f"sqlite:///{typo}", rc=2)
    assert "pushtrak.db does not exist" in done.stderr, done.stderr
    assert list(cli.cwd.glob("pushtrak*")) == []


def test_set_gateway_refuses_a_missing_database_before_making_its_key(cli: Cli) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    (cli.cwd / "AuthKey.p8").write_bytes(key)
    typo = cli.cwd / "pushtrak.db"
    done = cli(
        *("app", "set-gateway", "X", "--platform", "ios", "--kind", "apns"),
        *("--key-file", "AuthKey.p8", "--set", "key_id=ABC123DEFG", "--set", "team_id=DEF123GHIJ"),
        *("--set", "topic=com.example.shop", "--database", f"sqlite:///{typo}"),
        rc=2,
    )
    assert "pushtrak.db does not exist" in done.stderr, done.stderr
    assert list(cli.cwd.glob("pushtrak*")) == []


@pytest.mark.slow
def test_tokens_create_list_revoke(cli: Cli) -> None:
    app = cli.json("app", "create", "Shop")["code"]
    server = cli.json("token", "create", "--kind", "server")
    assert set(server) == {"token"}
    device = cli.json(
        "token",
        "create",
        "--kind",
        "device",
        "--app",
        app,
        "--method",
        "registerDevice",
        "--method",
        "pushStat",
    )["token"]
    assert server["token"] != device
    assert len(server["token"]) >= 32

    listed = cli.json("token", "list")
    assert [(t["prefix"], t["kind"]) for t in listed] == [
        (server["token"][:8], "server"),
        (device[:8], "device"),
    ]
    assert (listed[0]["apps"], listed[0]["methods"], listed[0]["revoked"]) == (None, None, False)
    assert listed[1]["apps"] == [app]
    assert listed[1]["methods"] == ["pushStat", "registerDevice"]
    text = cli("token", "list").stdout
    assert server["token"][:8] in text
    for raw in (server["token"], device):
        assert raw not in text
        assert raw not in json.dumps(listed)

    out = cli("token", "revoke", server["token"][:8]).stdout
    assert "revoked 1" in out
    states = {t["prefix"]: t["revoked"] for t in cli.json("token", "list")}
    assert states == {server["token"][:8]: True, device[:8]: False}
    again = cli("token", "revoke", server["token"][:8], rc=2)
    assert "no active token" in again.stderr

    # accounts are separate: no tokens there, and no access to this account's applications
    assert cli.json("token", "list", "--account", "acme") == []
    refused = cli("token", "create", "--kind", "server", "--account", "acme", "--app", app, rc=2)
    assert app in refused.stderr


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (["token", "create", "--kind", "bogus"], {}, "--kind"),
        (["token", "create"], {}, "--kind"),
        (["app", "create", " "], {}, "name"),
        (["token", "revoke", "abc"], {}, "prefix"),
        (["token", "create", "--kind", "server", "--app", "00000-00000"], {}, "00000-00000"),
        (["app", "list", "--database", "mysql://db/x"], {}, "database"),
        (["app", "list", "--database", "sqlite:////proc/no/such/dir/x.db"], {}, "database"),
        (["app", "list"], {"PUSHTRACK_PORT": "eighty"}, "pushtrack_port"),
        (["serve", "--port", "70000", "--no-worker"], {}, "port"),
    ],
)
def test_bad_arguments_exit_2_with_a_clear_error(
    cli: Cli, args: list[str], env: dict[str, str], says: str
) -> None:
    cli.json("app", "create", "Seed")  # the database exists: each case is about its own error
    done = cli(*args, rc=2, **env)
    assert says in done.stderr.lower(), done.stderr
    assert done.stdout == ""


def test_version_is_the_installed_package_version(cli: Cli) -> None:
    done = cli("--version")
    assert done.stdout == f"pushtrack {metadata.version('pushtrack')}\n"
    assert done.stderr == ""


# -- serve ---------------------------------------------------------------------------------


class Server:
    """``pushtrack serve`` as a subprocess, its stdout read line by line."""

    def __init__(self, cli: Cli, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = (cli.cwd / f"serve-{self.port}.log").open("w")
        self.proc = subprocess.Popen(
            [PUSHTRACK, "serve", "--port", str(self.port), "--no-worker", *args],
            cwd=cli.cwd,
            env=cli.env,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def output_until(self, text: str) -> list[str]:
        """stdout lines up to and including the first one holding ``text``."""
        seen: list[str] = []
        deadline = time.monotonic() + 60
        while not seen or text not in seen[-1]:
            seen.append(self.lines.get(timeout=max(0.1, deadline - time.monotonic())))
        return seen

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.url}/health", timeout=2).json() == {"status": "ok"}:
                    return
            except httpx.HTTPError:
                pass
            assert self.proc.poll() is None, "pushtrack serve exited"
            assert time.monotonic() < deadline, "pushtrack serve did not become healthy"
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM; uvicorn shuts down, then re-raises the signal it caught."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            assert self.proc.wait(30) in (0, -signal.SIGTERM)
        finally:
            self.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.reader.join(10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        self.log.close()


@pytest.fixture
def servers(cli: Cli) -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        server.close()


def create_message(url: str, token: str, app: str) -> dict[str, Any]:
    body = {"request": {"auth": token, "application": app, "notifications": [{"content": "hi"}]}}
    out: dict[str, Any] = httpx.post(f"{url}/json/1.3/createMessage", json=body, timeout=30).json()
    return out


def test_serve_first_start_makes_a_demo_and_cli_tokens_work(
    cli: Cli, servers: list[Server]
) -> None:
    first = Server(cli, "--json", "--demo")
    servers.append(first)
    lines = [json.loads(line) for line in first.output_until("listening")]
    demo, listening = lines[0], lines[-1]
    assert set(demo) == {"application", "server_token", "device_token"}
    assert APP_CODE_RE.match(demo["application"])
    assert listening["listening"] == first.url
    first.wait_healthy()

    # the demo's tokens work
    out = create_message(first.url, demo["server_token"], demo["application"])
    assert out["status_code"] == 200, out
    assert MESSAGE_CODE_RE.match(out["response"]["Messages"][0])
    reg = {"request": {"application": demo["application"], "hwid": "h", "device_type": 1}}
    resp = httpx.post(
        f"{first.url}/json/1.3/registerDevice",
        json=reg,
        timeout=30,
        headers={"Authorization": f"Token {demo['device_token']}"},
    )
    assert resp.json()["status_code"] == 200

    # an application and a token made with the CLI work over HTTP, while the server runs
    app = cli.json("app", "create", "Shop")["code"]
    token = cli.json("token", "create", "--kind", "server", "--app", app)["token"]
    out = create_message(first.url, token, app)
    assert out["status_code"] == 200, out
    assert create_message(first.url, token, demo["application"])["status_code"] == 403
    first.stop()

    # the second start finds applications and makes no demo
    second = Server(cli, "--demo")
    servers.append(second)
    text = "".join(second.output_until("listening"))
    assert "demo" not in text
    assert demo["server_token"] not in text
    second.wait_healthy()
    assert (
        create_message(second.url, demo["server_token"], demo["application"])["status_code"] == 200
    )
    second.stop()
    assert [a["name"] for a in cli.json("app", "list")] == ["demo", "Shop"]


def test_serve_makes_a_demo_only_when_asked_on_an_empty_sqlite_database(
    cli: Cli, servers: list[Server]
) -> None:
    plain = Server(cli)  # no --demo: nothing made, no token printed
    servers.append(plain)
    text = "".join(plain.output_until("listening"))
    assert "token" not in text
    plain.wait_healthy()
    plain.stop()
    assert cli.json("app", "list") == []

    # an account exists already (another one than the demo's): --demo makes nothing
    cli.json("app", "create", "Shop", "--account", "acme")
    asked = Server(cli, "--demo")
    servers.append(asked)
    text = "".join(asked.output_until("listening"))
    assert "token" not in text
    asked.stop()
    assert cli.json("app", "list") == []

    # `pushtrack demo` makes one on purpose, on any database, and prints its tokens once
    made = cli.json("demo")
    assert set(made) == {"application", "server_token", "device_token"}
    assert [a["code"] for a in cli.json("app", "list")] == [made["application"]]


@pytest.mark.skipif("postgresql" not in ENGINES, reason="needs psycopg")
def test_serve_never_makes_a_demo_on_postgresql(
    cli: Cli, servers: list[Server], tmp_path: Path, pg_template: str
) -> None:
    for url in fresh_database_url("postgresql", tmp_path, pg_template):
        cli.env["PUSHTRACK_DATABASE"] = url
        empty = Server(cli, "--demo")  # an empty database, and asked for a demo
        servers.append(empty)
        text = "".join(empty.output_until("listening"))
        assert "token" not in text
        empty.wait_healthy()
        empty.stop()
        assert cli.json("app", "list") == []
