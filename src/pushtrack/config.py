"""Settings: built-in defaults, then an optional TOML file, then ``PUSHTRACK_*`` env.

Validated once at start-up. ``redacted()`` is the view logs may show (the
server's start-up line takes the database from it).
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

DEFAULT_DATABASE = "sqlite:///./pushtrack.db"


#: Value types with their limits: msgspec checks them, as it checks API requests.
Seconds = Annotated[float, msgspec.Meta(gt=0)]
Count = Annotated[int, msgspec.Meta(ge=1)]


class Settings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    database: Annotated[str, msgspec.Meta(pattern=r"^(sqlite|postgresql|postgres):")] = (
        DEFAULT_DATABASE
    )
    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 8080
    #: Largest request body accepted, in bytes.
    max_body_bytes: Annotated[int, msgspec.Meta(ge=1024)] = 4 * 1024 * 1024
    #: Seconds a client has to send a request's headers (from connecting, or from the
    #: request's first byte), then its body (from the end of the headers); past
    #: either the connection is closed.
    header_timeout_seconds: Seconds = 10.0
    body_timeout_seconds: Seconds = 30.0
    #: Seconds an idle keep-alive connection stays open after a response.
    keepalive_timeout_seconds: Seconds = 5.0
    #: Connections and requests in flight at once; above it new ones get 503.
    max_connections: Count = 1000
    #: API requests being worked on at once; above it new ones are answered 503 in
    #: the envelope with Retry-After, so queues (and memory) stay bounded.
    max_in_flight: Count = 256
    #: Keys that seal gateway private keys at rest (sealing.py): Fernet keys, comma
    #: separated (the first seals), or a file of them one per line; for SQLite the
    #: default file is the database's path plus ".key".
    secret_key: str = ""
    secret_key_file: str = ""
    #: Log lines as "text" or "json" (one object per line); one access-log record per
    #: API request (method, status, ms, account, request id) when ``access_log``.
    log_format: Literal["text", "json"] = "text"
    access_log: bool = False
    #: createMessage and createTargetedMessage calls allowed per application per
    #: minute (0: no limit), counted per serve process.
    messages_per_minute: Annotated[int, msgspec.Meta(ge=0)] = 600
    #: Requests per second allowed per token (0: no limit), with this burst.
    rate_limit: Annotated[float, msgspec.Meta(ge=0)] = 0.0
    rate_burst: Count = 100
    retention_days: Count = 14
    #: Base URL used in links the service hands out (export downloads); default from host/port.
    public_url: str = ""
    #: Hours a download link stays valid.
    file_ttl_hours: Count = 24
    #: Where export files are written.
    files_dir: str = "./pushtrack-files"
    #: Run a dispatch/export worker inside ``serve``.
    worker: bool = True
    #: Jobs one worker runs at once; seconds a claimed job's lease lasts.
    worker_concurrency: Count = 4
    worker_lease_seconds: Annotated[float, msgspec.Meta(ge=1)] = 30.0
    #: Sending (docs/api.md §7): a refused delivery is retried until its message's TTL
    #: (or, without one, ``retry_window_seconds``) has passed since the message's send
    #: time. After a 5xx or a lost connection the wait starts at ``retry_backoff_seconds``
    #: and doubles up to ``retry_max_backoff_seconds``; after a 429 without Retry-After
    #: it is at least ``retry_throttled_seconds``; a Retry-After is honoured.
    retry_backoff_seconds: Annotated[float, msgspec.Meta(ge=0)] = 15.0
    retry_max_backoff_seconds: Annotated[float, msgspec.Meta(ge=0)] = 900.0
    retry_throttled_seconds: Annotated[float, msgspec.Meta(ge=0)] = 60.0
    retry_window_seconds: Seconds = 86400.0
    #: An optional cap on tries per delivery (0: none, time alone bounds retries).
    max_attempts: Annotated[int, msgspec.Meta(ge=0)] = 0
    #: A gateway paused for refused credentials is tried again this often (seconds).
    gateway_probe_seconds: Seconds = 60.0
    #: Devices per step when an audience message is expanded into deliveries (1-1000):
    #: each step is one write transaction.
    expansion_batch: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 250
    #: Webhooks (docs/api.md, "Webhooks"): events per POST, and how long (ms) the first
    #: event of a batch waits for more; seconds a POST may take.
    webhook_batch: Count = 100
    webhook_linger_ms: Annotated[int, msgspec.Meta(ge=0)] = 200
    webhook_timeout_seconds: Seconds = 10.0
    #: After a failed POST the endpoint is tried again after ``webhook_backoff_seconds``,
    #: doubling up to ``webhook_max_backoff_seconds``; failing for longer than
    #: ``webhook_failing_seconds`` marks it failing (it is still retried).
    webhook_backoff_seconds: Seconds = 1.0
    webhook_max_backoff_seconds: Seconds = 300.0
    webhook_failing_seconds: Seconds = 86400.0
    #: How often (ms) an endpoint that has everything looks for new events.
    webhook_poll_ms: Count = 250
    #: Endpoints served at once per worker (beside ``worker_concurrency``'s jobs).
    webhook_concurrency: Count = 16
    #: Hosts, addresses and networks (comma separated: ``hooks.internal,10.0.0.0/8``)
    #: webhooks and Web Push endpoints may reach although they are not public (webhooks
    #: over http or https); anything else must be https to a host that resolves to
    #: public addresses only (``delivery/outbound.py``).
    outbound_allow: str = ""

    def __post_init__(self) -> None:
        if self.retry_max_backoff_seconds < self.retry_backoff_seconds:
            raise ValueError("retry_max_backoff_seconds must be >= retry_backoff_seconds")
        if self.webhook_max_backoff_seconds < self.webhook_backoff_seconds:
            raise ValueError("webhook_max_backoff_seconds must be >= webhook_backoff_seconds")
        for part in self.outbound_allow.split(","):
            entry = part.strip()
            if "/" in entry:
                try:
                    ipaddress.ip_network(entry, strict=False)
                except ValueError as exc:
                    raise ValueError(
                        f"outbound_allow: {entry!r} is not a network ({exc})"
                    ) from None

    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    def redacted(self) -> dict[str, Any]:
        out: dict[str, Any] = msgspec.structs.asdict(self)
        out["database"] = _redact_url(self.database)
        out["secret_key"] = "***" if self.secret_key else ""
        return out

    def validate(self) -> Settings:
        """These settings if every value is within its limits; ValueError naming the first
        that is not."""
        return checked(msgspec.structs.asdict(self))


def checked(values: dict[str, Any]) -> Settings:
    """Settings from ``values`` (typed already) with every limit checked."""
    try:
        return msgspec.convert(values, Settings)
    except msgspec.ValidationError as exc:
        text = str(exc)
        where = re.search(r" - at `\$\.(\w+)`$", text)
        if where is None:  # __post_init__'s own message
            raise ValueError(text) from None
        name = where.group(1)
        wanted = _WANTED.get(name) or _plain(text[: where.start()])
        raise ValueError(f"{name}: expected {wanted}, got {values.get(name)!r}") from None


#: What a setting must be, where msgspec's own words would not say it plainly.
_WANTED = {
    "database": "a sqlite:/// or postgresql:// URL",
    "log_format": '"text" or "json"',
}


def _plain(text: str) -> str:
    """msgspec's "Expected `int` >= 1" as "an integer >= 1"."""
    text = text.removeprefix("Expected ")
    for typed, said in (("`int`", "an integer"), ("`float`", "a number"), ("`str`", "text")):
        text = text.replace(typed, said)
    return text


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


_DEFAULTS = Settings()
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


def _kind(name: str) -> str:
    default = getattr(_DEFAULTS, name)
    return "bool" if isinstance(default, bool) else type(default).__name__


def _cast(name: str, value: Any, label: str = "") -> Any:
    """``value`` as the type of setting ``name``; ValueError naming it (as ``label``) if not."""
    if name not in Settings.__struct_fields__:
        raise ValueError(f"unknown setting {name!r}")
    cast, wanted = _CASTS[_kind(name)]
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
    names = set(Settings.__struct_fields__)
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
    return checked({**msgspec.structs.asdict(_DEFAULTS), **values})
