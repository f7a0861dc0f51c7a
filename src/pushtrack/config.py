"""Settings: built-in defaults, then an optional TOML file, then ``PUSHTRACK_*`` env.

Validated once at start-up. ``redacted()`` is the view logs may show (the
server's start-up line takes the database from it).
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Callable
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
    #: Seconds a client has to send a request's headers (from connecting, or from the
    #: request's first byte), then its body (from the end of the headers); past
    #: either the connection is closed.
    header_timeout_seconds: float = 10.0
    body_timeout_seconds: float = 30.0
    #: Seconds an idle keep-alive connection stays open after a response.
    keepalive_timeout_seconds: float = 5.0
    #: Connections and requests in flight at once; above it new ones get 503.
    max_connections: int = 1000
    #: API requests being worked on at once; above it new ones are answered 503 in
    #: the envelope with Retry-After, so queues (and memory) stay bounded.
    max_in_flight: int = 256
    #: Keys that seal gateway private keys at rest (sealing.py): Fernet keys, comma
    #: separated (the first seals), or a file of them one per line; for SQLite the
    #: default file is the database's path plus ".key".
    secret_key: str = ""
    secret_key_file: str = ""
    #: Log lines as "text" or "json" (one object per line); one access-log record per
    #: API request (method, status, ms, account, request id) when ``access_log``.
    log_format: str = "text"
    access_log: bool = False
    #: createMessage and createTargetedMessage calls allowed per application per
    #: minute (0: no limit), counted per serve process.
    messages_per_minute: int = 600
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
    #: Sending (docs/api.md §7): a refused delivery is retried until its message's TTL
    #: (or, without one, ``retry_window_seconds``) has passed since the message's send
    #: time. After a 5xx or a lost connection the wait starts at ``retry_backoff_seconds``
    #: and doubles up to ``retry_max_backoff_seconds``; after a 429 without Retry-After
    #: it is at least ``retry_throttled_seconds``; a Retry-After is honoured.
    retry_backoff_seconds: float = 15.0
    retry_max_backoff_seconds: float = 900.0
    retry_throttled_seconds: float = 60.0
    retry_window_seconds: float = 86400.0
    #: An optional cap on tries per delivery (0: none, time alone bounds retries).
    max_attempts: int = 0
    #: A gateway paused for refused credentials is tried again this often (seconds).
    gateway_probe_seconds: float = 60.0
    #: Devices per step when an audience message is expanded into deliveries (1-1000):
    #: each step is one write transaction.
    expansion_batch: int = 250
    #: Webhooks (docs/api.md, "Webhooks"): events per POST, and how long (ms) the first
    #: event of a batch waits for more; seconds a POST may take.
    webhook_batch: int = 100
    webhook_linger_ms: int = 200
    webhook_timeout_seconds: float = 10.0
    #: After a failed POST the endpoint is tried again after ``webhook_backoff_seconds``,
    #: doubling up to ``webhook_max_backoff_seconds``; failing for longer than
    #: ``webhook_failing_seconds`` marks it failing (it is still retried).
    webhook_backoff_seconds: float = 1.0
    webhook_max_backoff_seconds: float = 300.0
    webhook_failing_seconds: float = 86400.0
    #: How often (ms) an endpoint that has everything looks for new events.
    webhook_poll_ms: int = 250
    #: Endpoints served at once per worker (beside ``worker_concurrency``'s jobs).
    webhook_concurrency: int = 16
    #: Hosts, addresses and networks (comma separated: ``hooks.internal,10.0.0.0/8``)
    #: webhooks may reach although they are not public, over http or https; anything
    #: else must be https to a host that resolves to public addresses only.
    outbound_allow: str = ""

    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    def redacted(self) -> dict[str, Any]:
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        out["database"] = _redact_url(self.database)
        out["secret_key"] = "***" if self.secret_key else ""
        return out

    def validate(self) -> Settings:
        if self.port < 0 or self.port > 65535:
            raise ValueError(f"port {self.port} is out of range")
        if self.max_body_bytes < 1024:
            raise ValueError("max_body_bytes must be at least 1024")
        if (
            min(
                self.header_timeout_seconds,
                self.body_timeout_seconds,
                self.keepalive_timeout_seconds,
            )
            <= 0
        ):
            raise ValueError("header, body and keep-alive timeouts must be positive")
        if self.log_format not in ("text", "json"):
            raise ValueError('log_format must be "text" or "json"')
        if self.max_connections < 1 or self.max_in_flight < 1:
            raise ValueError("max_connections and max_in_flight must be at least 1")
        if self.messages_per_minute < 0:
            raise ValueError("messages_per_minute must be >= 0 (0: no limit)")
        if self.rate_limit < 0 or self.rate_burst < 1:
            raise ValueError("rate_limit must be >= 0 and rate_burst >= 1")
        if self.retention_days < 1:
            raise ValueError("retention_days must be at least 1")
        if self.worker_concurrency < 1 or self.worker_lease_seconds < 1:
            raise ValueError("worker_concurrency and worker_lease_seconds must be at least 1")
        if self.max_attempts < 0 or self.retry_backoff_seconds < 0:
            raise ValueError("max_attempts and retry_backoff_seconds must be >= 0")
        if self.retry_max_backoff_seconds < self.retry_backoff_seconds:
            raise ValueError("retry_max_backoff_seconds must be >= retry_backoff_seconds")
        if self.retry_throttled_seconds < 0 or self.retry_window_seconds <= 0:
            raise ValueError("retry_throttled_seconds must be >= 0, retry_window_seconds > 0")
        if self.gateway_probe_seconds <= 0:
            raise ValueError("gateway_probe_seconds must be > 0")
        if not 1 <= self.expansion_batch <= 1000:
            raise ValueError("expansion_batch must be between 1 and 1000")
        if self.webhook_batch < 1 or self.webhook_linger_ms < 0 or self.webhook_poll_ms < 1:
            raise ValueError(
                "webhook_batch and webhook_poll_ms must be >= 1, webhook_linger_ms >= 0"
            )
        if self.webhook_timeout_seconds <= 0 or self.webhook_concurrency < 1:
            raise ValueError("webhook_timeout_seconds must be > 0, webhook_concurrency >= 1")
        if not 0 < self.webhook_backoff_seconds <= self.webhook_max_backoff_seconds:
            raise ValueError(
                "webhook_backoff_seconds must be > 0 and <= webhook_max_backoff_seconds"
            )
        if self.webhook_failing_seconds <= 0:
            raise ValueError("webhook_failing_seconds must be > 0")
        if self.file_ttl_hours < 1:
            raise ValueError("file_ttl_hours must be at least 1")
        if not self.database.startswith(("sqlite:", "postgresql:", "postgres:")):
            raise ValueError("database must be a sqlite:/// or postgresql:// URL")
        return self


def _redact_url(url: str) -> str:
    """The URL with its password hidden (in the user info or a ``password=`` parameter)."""
    if "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    cut = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority, tail = rest[:cut], rest[cut:]
    if "@" in authority:
        creds, host = authority.rsplit("@", 1)
        if ":" in creds:
            authority = f"{creds.split(':', 1)[0]}:***@{host}"
    tail = re.sub(r"(?i)([?&]password=)[^&#]*", r"\1***", tail)
    return f"{scheme}://{authority}{tail}"


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _to_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    return True if text in _TRUE else False if text in _FALSE else None


def _to_int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    number = value if isinstance(value, int | float) else int(value.strip())
    return int(number) if math.isfinite(number) and number == int(number) else None


def _to_float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _to_str(value: Any) -> str | None:
    return None if isinstance(value, bool | list | dict) else str(value)


_CASTS: dict[str, tuple[Callable[[Any], Any], str]] = {
    "bool": (_to_bool, "true or false"),
    "int": (_to_int, "an integer"),
    "float": (_to_float, "a number"),
    "str": (_to_str, "text"),
}


def _cast(name: str, value: Any, label: str = "") -> Any:
    """``value`` as the type of setting ``name``; ValueError naming it (as ``label``) if not."""
    kinds = {f.name: str(f.type) for f in fields(Settings)}
    if name not in kinds:
        raise ValueError(f"unknown setting {name!r}")
    cast, wanted = _CASTS[kinds[name]]
    try:
        result = cast(value)
    except ValueError:
        result = None
    if result is None:
        raise ValueError(f"{label or name}: expected {wanted}, got {value!r}")
    return result


def load(overrides: dict[str, Any] | None = None, env: dict[str, str] | None = None) -> Settings:
    """Defaults → file named by PUSHTRACK_CONFIG → PUSHTRACK_* env → explicit overrides."""
    env = dict(os.environ if env is None else env)
    values: dict[str, Any] = {}
    names = {f.name for f in fields(Settings)}
    path = env.get("PUSHTRACK_CONFIG")
    if path:
        try:
            data = tomllib.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:  # TOMLDecodeError and UnicodeDecodeError too
            raise ValueError(f"PUSHTRACK_CONFIG {path}: {exc}") from None
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown settings in {path}: {', '.join(sorted(unknown))}")
        values.update({k: _cast(k, v, f"{path}: {k}") for k, v in data.items()})
    for name in names:
        key = f"PUSHTRACK_{name.upper()}"
        if key in env and env[key] != "":
            values[name] = _cast(name, env[key], key)
    for name, value in (overrides or {}).items():
        if value is not None:
            values[name] = _cast(name, value)
    return replace(Settings(), **values).validate()
