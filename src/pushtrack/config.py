"""Settings: built-in defaults, then an optional TOML file, then ``PUSHTRACK_*`` env.

Validated once at start-up. ``redacted()`` is the view that logs and the
dashboard may show.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

DEFAULT_DATABASE = "sqlite:///./pushtrack.db"


@dataclass(frozen=True)
class Settings:
    database: str = DEFAULT_DATABASE
    host: str = "127.0.0.1"
    port: int = 8080
    #: Largest request body accepted, in bytes.
    max_body_bytes: int = 4 * 1024 * 1024
    #: Requests per second allowed per token (0: no limit), with this burst.
    rate_limit: float = 0.0
    rate_burst: int = 100
    retention_days: int = 14
    #: Base URL used in links the service hands out (export downloads); default from host/port.
    public_url: str = ""
    #: Hours a download link stays valid.
    file_ttl_hours: int = 24
    #: Where export files are written.
    files_dir: str = "./pushtrack-files"
    #: Run a dispatch/export worker inside ``serve``.
    worker: bool = True
    #: Jobs one worker runs at once; seconds a claimed job's lease lasts.
    worker_concurrency: int = 4
    worker_lease_seconds: float = 30.0
    #: Sending: tries per delivery before it ends failed; first backoff in seconds.
    max_attempts: int = 5
    retry_backoff_seconds: float = 2.0

    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    def redacted(self) -> dict[str, Any]:
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        out["database"] = _redact_url(self.database)
        return out

    def validate(self) -> Settings:
        if self.port < 0 or self.port > 65535:
            raise ValueError(f"port {self.port} is out of range")
        if self.max_body_bytes < 1024:
            raise ValueError("max_body_bytes must be at least 1024")
        if self.rate_limit < 0 or self.rate_burst < 1:
            raise ValueError("rate_limit must be >= 0 and rate_burst >= 1")
        if self.retention_days < 1:
            raise ValueError("retention_days must be at least 1")
        if self.worker_concurrency < 1 or self.worker_lease_seconds < 1:
            raise ValueError("worker_concurrency and worker_lease_seconds must be at least 1")
        if self.max_attempts < 1 or self.retry_backoff_seconds < 0:
            raise ValueError("max_attempts must be at least 1, retry_backoff_seconds >= 0")
        if self.file_ttl_hours < 1:
            raise ValueError("file_ttl_hours must be at least 1")
        if not self.database.startswith(("sqlite:", "postgresql:", "postgres:")):
            raise ValueError("database must be a sqlite:/// or postgresql:// URL")
        return self


def _redact_url(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}"
    return url


def _cast(name: str, value: Any) -> Any:
    kind = {f.name: f.type for f in fields(Settings)}[name]
    if kind in (int, "int"):
        return int(value)
    if kind in (float, "float"):
        return float(value)
    if kind in (bool, "bool"):
        if isinstance(value, bool):
            return value
        return str(value).strip().lower() in ("1", "true", "yes", "on")
    return str(value)


def load(overrides: dict[str, Any] | None = None, env: dict[str, str] | None = None) -> Settings:
    """Defaults → file named by PUSHTRACK_CONFIG → PUSHTRACK_* env → explicit overrides."""
    env = dict(os.environ if env is None else env)
    values: dict[str, Any] = {}
    names = {f.name for f in fields(Settings)}
    path = env.get("PUSHTRACK_CONFIG")
    if path:
        data = tomllib.loads(Path(path).read_text())
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown settings in {path}: {', '.join(sorted(unknown))}")
        values.update({k: _cast(k, v) for k, v in data.items()})
    for name in names:
        key = f"PUSHTRACK_{name.upper()}"
        if key in env and env[key] != "":
            values[name] = _cast(name, env[key])
    for name, value in (overrides or {}).items():
        if value is not None:
            values[name] = _cast(name, value)
    return replace(Settings(), **values).validate()
