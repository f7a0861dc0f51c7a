"""``pushtrack app set-gateway`` / ``app gateways`` through the real command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

PUSHTRACK = str(Path(sys.executable).with_name("pushtrack"))


def cli(db: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PUSHTRACK, *args, "--database", db],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def app_code(tmp_path: Path) -> tuple[str, str]:
    db = f"sqlite:///{tmp_path}/cli.db"
    out = cli(db, "app", "create", "shop", "--json")
    assert out.returncode == 0, out.stderr
    return db, json.loads(out.stdout)["code"]


def test_set_gateway_stores_settings_and_never_prints_secrets(
    app_code: tuple[str, str], tmp_path: Path
) -> None:
    db, code = app_code
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    key_file = tmp_path / "AuthKey.p8"
    key_file.write_text(key)
    out = cli(
        db,
        "app",
        "set-gateway",
        code,
        "--platform",
        "ios",
        "--kind",
        "apns",
        "--key-file",
        str(key_file),
        "--set",
        "key_id=ABC123DEFG",
        "--set",
        "team_id=DEF123GHIJ",
        "--set",
        "topic=com.example.shop",
        "--json",
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"application": code, "platform": "ios", "kind": "apns"}
    assert "PRIVATE KEY" not in out.stdout + out.stderr
    out = cli(
        db,
        "app",
        "set-gateway",
        code,
        "--platform",
        "android",
        "--kind",
        "sandbox",
        "--set",
        "failure_rate=0.1",
    )
    assert out.returncode == 0, out.stderr
    listed = cli(db, "app", "gateways", code, "--json")
    assert json.loads(listed.stdout) == {
        "ios": {"kind": "apns", "status": "active"},
        "android": {"kind": "sandbox", "status": "active"},
    }
    assert "PRIVATE KEY" not in listed.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--platform", "ios", "--kind", "apns", "--set", "key_id=x"], "apns gateway setting"),
        (["--platform", "nokia", "--kind", "sandbox"], "unknown platform"),
        (["--platform", "chrome", "--kind", "apns"], "cannot send to chrome"),
        (["--platform", "ios", "--kind", "pigeon"], "--kind must be one of"),
        (["--platform", "ios", "--kind", "sandbox", "--set", "novalue"], "KEY=VALUE"),
        (["--platform", "ios", "--kind", "sandbox", "--set", "failure_rate=2"], "failure_rate"),
        (["--platform", "ios", "--kind", "sandbox", "--set", "bogus=1"], "unknown sandbox"),
    ],
)
def test_bad_gateway_settings_are_refused_and_change_nothing(
    app_code: tuple[str, str], args: list[str], message: str
) -> None:
    db, code = app_code
    out = cli(db, "app", "set-gateway", code, *args)
    assert out.returncode == 2
    assert message in out.stderr
    assert "Traceback" not in out.stderr
    assert json.loads(cli(db, "app", "gateways", code, "--json").stdout) == {}


def test_set_gateway_for_unknown_application(app_code: tuple[str, str]) -> None:
    db, _ = app_code
    out = cli(db, "app", "set-gateway", "00000-00000", "--platform", "ios", "--kind", "sandbox")
    assert out.returncode == 2
    assert "no application 00000-00000" in out.stderr


def test_token_methods_must_exist(app_code: tuple[str, str]) -> None:
    db, _ = app_code
    out = cli(db, "token", "create", "--kind", "server", "--method", "createMesage")
    assert out.returncode == 2
    assert "unknown method(s) createMesage" in out.stderr
    out = cli(
        db,
        "token",
        "create",
        "--kind",
        "server",
        "--method",
        "createMessage",
        "--method",
        "getMessageLog",
        "--json",
    )
    assert out.returncode == 0, out.stderr


def test_a_paused_gateway_is_shown_and_new_settings_lift_the_pause(
    app_code: tuple[str, str],
) -> None:
    from pushtrack.store import open_store
    from tests.support import run

    db, code = app_code
    args = ["--platform", "android", "--kind", "sandbox"]
    assert cli(db, "app", "set-gateway", code, *args).returncode == 0

    async def pause() -> None:
        store = open_store(db)
        try:
            [app] = [a for a in await store.list_apps("default") if a.code == code]
            [(_, _, version)] = (await store.dispatch.gateways(app.id)).values()
            assert await store.dispatch.pause_gateway(app.id, 3, version, "PERMISSION_DENIED")
        finally:
            await store.close()

    run(pause())
    listed = json.loads(cli(db, "app", "gateways", code, "--json").stdout)["android"]
    assert (listed["status"], listed["reason"]) == ("paused", "PERMISSION_DENIED")
    assert listed["paused_since"].endswith(" UTC")
    table = cli(db, "app", "gateways", code).stdout
    assert "PAUSED" in table
    assert "PERMISSION_DENIED" in table
    assert cli(db, "app", "set-gateway", code, *args).returncode == 0
    listed = json.loads(cli(db, "app", "gateways", code, "--json").stdout)["android"]
    assert listed == {"kind": "sandbox", "status": "active"}
