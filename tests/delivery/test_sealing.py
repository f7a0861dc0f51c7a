"""Gateway private keys are stored sealed, never in plain text, and still send."""

from __future__ import annotations

import json
import stat
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from pushtrack import config
from pushtrack.sealing import Sealer, SealingError, new_key, unseal
from pushtrack.worker import build_worker
from tests.cli.test_gateways import cli
from tests.delivery._support import apns_token
from tests.gateways import ApnsServer
from tests.support import Database, run, service


def test_set_gateway_seals_the_key_and_the_worker_sends_with_it(
    tmp_path: Path, apns_server: ApnsServer, apns_settings: dict[str, Any]
) -> None:
    db = f"sqlite:///{tmp_path}/seal.db"
    with service(db, retry_backoff_seconds=0.05) as svc:
        (tmp_path / "key.p8").write_text(apns_settings["key"])
        args = [f"--set={k}={v}" for k, v in apns_settings.items() if k != "key"]
        out = cli(
            db,
            "app",
            "set-gateway",
            svc.app.code,
            "--platform",
            "ios",
            "--kind",
            "apns",
            "--key-file",
            str(tmp_path / "key.p8"),
            *args,
        )
        assert out.returncode == 0, out.stderr
        [(stored,)] = svc.db.rows("SELECT config FROM gateways")
        assert "PRIVATE KEY" not in stored
        assert set(json.loads(stored)["key"]) == {"sealed"}
        key_file = tmp_path / "seal.db.key"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600

        token = apns_token()
        svc.register("iphone", 1, push_token=token)
        assert svc.send(devices=["iphone"])
        settings = config.load({"database": db, "retry_backoff_seconds": 0.05}, env={})
        run(build_worker(settings, svc.store, poll_seconds=0.05).run_until_idle(30))
        assert [m.token for m in apns_server.delivered()] == [token]

        # without the key the sealed setting cannot be used (the gateway pauses)
        other = config.load({"database": db, "secret_key": new_key()}, env={})
        with pytest.raises(SealingError, match="key this service does not have"):
            unseal("apns", json.loads(stored), Sealer.load(other))


@pytest.mark.slow
def test_doctor_reports_plain_keys_and_secrets_seal_seals_them(
    tmp_path: Path, apns_settings: dict[str, Any]
) -> None:
    db = f"sqlite:///{tmp_path}/plain.db"
    with service(db) as svc:  # as an older pushtrack stored it: in plain text
        run(svc.store.dispatch.set_gateway("default", svc.app.code, 1, "apns", apns_settings))
        code = svc.app.code
    report = json.loads(cli(db, "doctor", "--json").stdout)
    checks = {c["what"]: c for c in report["checks"]}
    assert checks[f"gateway {code} ios (apns)"]["detail"] == (
        "key stored in plain text (pushtrack secrets seal)"
    )
    out = cli(db, "secrets", "seal", "--json")
    assert json.loads(out.stdout) == {
        "sealed": 1,
        "resealed": 0,
        "webhooks_sealed": 0,
        "webhooks_resealed": 0,
    }
    report = json.loads(cli(db, "doctor", "--json").stdout)
    assert report["ok"], report
    # rotation: a new key in front of the old one, then everything re-sealed with it
    key_file = tmp_path / "plain.db.key"
    old = key_file.read_text()
    key_file.write_text(new_key() + "\n" + old)
    assert json.loads(cli(db, "secrets", "seal", "--json").stdout) == {
        "sealed": 0,
        "resealed": 1,
        "webhooks_sealed": 0,
        "webhooks_resealed": 0,
    }
    key_file.write_text(key_file.read_text().splitlines()[0] + "\n")  # the old key retired
    assert json.loads(cli(db, "doctor", "--json").stdout)["ok"]


@pytest.mark.slow
def test_a_webhook_secret_stored_in_plain_text_is_reported_and_sealed(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/hooks.db"
    url = "https://hooks.example.com/a"
    with service(db) as svc:  # as pushtrack stored it before secrets were sealed
        run(svc.store.dispatch.set_gateway("default", svc.app.code, 1, "sandbox", {}))
        run(
            svc.store.webhooks.add(
                "default", svc.app.id, url, "plain-secret-0123456789", None, sealed=False
            )
        )
        code = svc.app.code
    checks = {c["what"]: c for c in json.loads(cli(db, "doctor", "--json").stdout)["checks"]}
    assert checks[f"webhook {code} {url}"] == {
        "what": f"webhook {code} {url}",
        "ok": False,
        "detail": "secret stored in plain text (pushtrack secrets seal)",
    }
    out = cli(db, "secrets", "seal", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {
        "sealed": 0,
        "resealed": 0,
        "webhooks_sealed": 1,
        "webhooks_resealed": 0,
    }
    [(stored, sealed)] = Database(db).rows("SELECT secret, secret_sealed FROM webhooks")
    assert sealed == 1
    assert "plain-secret" not in stored
    sealer = Sealer.load(config.load({"database": db}, env={}))
    assert sealer is not None
    assert sealer.open_value(stored, "secret") == "plain-secret-0123456789"
    report = json.loads(cli(db, "doctor", "--json").stdout)
    assert report["ok"], report
    # rotation moves webhook secrets to the new key too
    key_file = tmp_path / "hooks.db.key"
    key_file.write_text(new_key() + "\n" + key_file.read_text())
    assert json.loads(cli(db, "secrets", "seal", "--json").stdout)["webhooks_resealed"] == 1
    key_file.write_text(key_file.read_text().splitlines()[0] + "\n")  # the old key retired
    assert json.loads(cli(db, "doctor", "--json").stdout)["ok"]
    # a key that does not open it is reported
    key_file.write_text(new_key() + "\n")
    checks = {c["what"]: c for c in json.loads(cli(db, "doctor", "--json").stdout)["checks"]}
    assert "key this service does not have" in checks[f"webhook {code} {url}"]["detail"]


def test_postgres_without_a_key_refuses_to_store_a_private_key_in_plain_text(
    pg_template: str, tmp_path: Path, apns_settings: dict[str, Any]
) -> None:
    from tests.conftest import fresh_database_url

    for url in fresh_database_url("postgresql", tmp_path, pg_template):
        code = json.loads(cli(url, "app", "create", "x", "--json").stdout)["code"]
        (tmp_path / "key.p8").write_text(apns_settings["key"])
        args = [f"--set={k}={v}" for k, v in apns_settings.items() if k != "key"]
        out = cli(
            url,
            "app",
            "set-gateway",
            code,
            "--platform",
            "ios",
            "--kind",
            "apns",
            "--key-file",
            str(tmp_path / "key.p8"),
            *args,
        )
        assert out.returncode == 2
        assert "PUSHTRACK_SECRET_KEY" in " ".join(out.stderr.split())
        assert json.loads(cli(url, "app", "gateways", code, "--json").stdout) == {}


def test_secret_key_file_names_where_the_keys_live(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/file.db"
    keys = tmp_path / "keys" / "pushtrack.keys"
    keys.parent.mkdir()
    keys.write_text(new_key() + "\n")
    settings = config.load({"database": db}, env={"PUSHTRACK_SECRET_KEY_FILE": str(keys)})
    sealer = Sealer.load(settings, create=True)
    assert sealer is not None
    sealed = sealer.seal("apns", {"key": "-----BEGIN PRIVATE KEY-----"})
    assert not (tmp_path / "file.db.key").exists()  # the default file is not made
    # the same file opens it again; the default file would not have
    again = Sealer.load(config.load({"database": db, "secret_key_file": str(keys)}, env={}))
    assert again is not None
    assert again.open("apns", sealed)["key"] == "-----BEGIN PRIVATE KEY-----"
    assert Sealer.load(config.load({"database": db}, env={})) is None
    keys.write_text("\n")
    with pytest.raises(SealingError, match="holds no key"):
        Sealer.load(settings)


def _load_at_once(settings: config.Settings, n: int) -> list[Sealer | None]:
    """``Sealer.load(create=True)`` in ``n`` threads released together."""
    start = threading.Barrier(n)

    def load(_: int) -> Sealer | None:
        start.wait()
        return Sealer.load(settings, create=True)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(load, range(n)))


def test_processes_starting_at_once_agree_on_one_key(tmp_path: Path) -> None:
    """Several processes opening a new SQLite database at once (serve, a worker) each
    find no key file: one key is made, every one of them reads it, none fails."""
    for round_ in range(20):
        settings = config.load({"database": f"sqlite:///{tmp_path}/r{round_}.db"}, env={})
        sealers = _load_at_once(settings, 8)
        keys = (tmp_path / f"r{round_}.db.key").read_text().split()
        assert len(keys) == 1
        token = Sealer(keys).seal_text("secret")
        assert None not in sealers
        assert {s.open_value(token, "x") for s in sealers if s is not None} == {"secret"}
    # no temporary file is left beside the keys
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"r{i}.db.key" for i in range(20))
