"""Settings: defaults → PUSHTRACK_CONFIG TOML file → PUSHTRACK_* env → explicit overrides."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from pushtrack import config
from pushtrack.config import Settings


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
