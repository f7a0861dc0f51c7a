"""``pushtrack doctor`` through the real command: what is wrong, in plain words."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from tests.cli.test_gateways import cli


def _doctor(db: str) -> tuple[int, dict[str, tuple[bool, str]]]:
    out = cli(db, "doctor", "--json")
    report = json.loads(out.stdout)
    assert report["ok"] is (out.returncode == 0)
    return out.returncode, {c["what"]: (c["ok"], c["detail"]) for c in report["checks"]}


def test_a_healthy_installation(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/d.db"
    code = json.loads(cli(db, "app", "create", "shop", "--json").stdout)["code"]
    assert (
        cli(db, "app", "set-gateway", code, "--platform", "ios", "--kind", "sandbox").returncode
        == 0
    )
    rc, checks = _doctor(db)
    assert rc == 0, checks
    assert checks[f"gateway {code} ios (sandbox)"] == (True, "settings valid, keys load")
    assert checks["store"][1].startswith("reachable, schema at migration")


def test_it_names_what_is_wrong(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/d.db"
    code = json.loads(cli(db, "app", "create", "shop", "--json").stdout)["code"]
    rc, checks = _doctor(db)
    assert rc == 1
    assert checks["gateways"][0] is False
    assert "no gateway set" in checks["gateways"][1]

    cli(db, "app", "set-gateway", code, "--platform", "ios", "--kind", "sandbox")
    with sqlite3.connect(tmp_path / "d.db") as conn:  # a key that no longer loads
        conn.execute(
            "UPDATE gateways SET kind = 'apns', config = ?",
            (json.dumps({"key": "not a key", "key_id": "K", "team_id": "T", "topic": "x"}),),
        )
    rc, checks = _doctor(db)
    assert rc == 1
    ok, detail = checks[f"gateway {code} ios (apns)"]
    assert not ok
    assert detail.startswith("apns gateway:"), detail


def test_a_missing_database_is_reported_not_created(tmp_path: Path) -> None:
    rc, checks = _doctor(f"sqlite:///{tmp_path}/nope.db")
    assert rc == 1
    assert checks["store"] == (False, f"{tmp_path}/nope.db does not exist (check --database)")
    assert not (tmp_path / "nope.db").exists()
