"""Gateways from stored settings: ``build_gateway("apns", {...})``.

An application's gateway settings are kept as JSON, so secrets arrive here as
plain strings; they are wrapped in ``Secret`` at once. Every problem with the
settings (a missing or unknown key, a wrong type, a key that does not load) is
a ``ValueError`` naming the gateway kind and the setting.

Settings per kind (``*`` required):

- ``apns``: ``key``* (.p8 PEM text), ``key_id``*, ``team_id``*, ``topic``*,
  ``sandbox``, ``base_url``, ``ca_file``, ``concurrency``, ``timeout``, ``push_type``
  (send every push as voip, location, ...: the topic gets Apple's suffix for it, and
  createMessage checks notifications against what APNs asks of that type; not mdm)
- ``fcm``: ``service_account``* (the JSON file, as text or object),
  ``base_url``, ``token_uri``, ``ca_file``, ``concurrency``, ``timeout``, ``data_only``
- ``webpush``: ``vapid_private_key``* (PEM or base64url), ``subject``* (mailto:/https:),
  ``ca_file``, ``concurrency``, ``timeout``, ``default_ttl``, ``urgency``
- ``sandbox``: ``acceptance_rate``, ``failure_rate``, ``retry_rate`` (shares summing
  to 1; acceptance is the rest when left out), ``latency_ms``, ``seed``, ``retry_after``
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from pushtrack.delivery import apns, fcm, outbound, sandbox, webpush
from pushtrack.delivery.base import Gateway
from pushtrack.secret import Secret

GatewayConfig = apns.ApnsConfig | fcm.FcmConfig | webpush.WebPushConfig | sandbox.SandboxConfig
KINDS = ("apns", "fcm", "webpush", "sandbox")

_T = TypeVar("_T")


class _Settings:
    """Reads typed values out of a settings dict."""

    def __init__(self, kind: str, config: Mapping[str, Any]) -> None:
        self.kind, self.config = kind, config

    def error(self, name: str, problem: str) -> ValueError:
        return ValueError(f"{self.kind} gateway setting {name!r} {problem}")

    def get(self, name: str, kind: type[_T] | tuple[type, ...], what: str) -> Any:
        value = self.config.get(name)
        if value is None:
            return None
        if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
            raise self.error(name, f"must be {what}")
        if not isinstance(value, kind):
            raise self.error(name, f"must be {what}, not {type(value).__name__}")
        return value

    def text(self, name: str, *, required: bool = False) -> str | None:
        value = self.get(name, str, "a string")
        if value is not None and not value.strip():
            value = None
        if value is None and required:
            raise self.error(name, "is required")
        return value.strip() if value is not None else None

    def required(self, name: str) -> str:
        value = self.text(name, required=True)
        assert value is not None
        return value

    def number(self, name: str, default: float, low: float, high: float) -> float:
        value = self.get(name, (int, float), "a number")
        if value is None:
            return default
        if not low <= value <= high:
            raise self.error(name, f"must be between {low:g} and {high:g}")
        return float(value)

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        value = self.get(name, int, "an integer")
        if value is None:
            return default
        if not low <= value <= high:
            raise self.error(name, f"must be between {low} and {high}")
        return int(value)

    def flag(self, name: str, default: bool = False) -> bool:
        value = self.get(name, bool, "true or false")
        return default if value is None else bool(value)

    def url(self, name: str) -> str | None:
        value = self.text(name)
        if value is not None and not value.startswith(("https://", "http://")):
            raise self.error(name, "must be an http(s) URL")
        return value.rstrip("/") if value else None

    def checked(self, build: Callable[[], _T]) -> _T:
        """Run a constructor that may refuse a value (a key that does not load)."""
        try:
            return build()
        except ValueError as exc:
            raise ValueError(f"{self.kind} gateway: {exc}") from exc


def _apns(s: _Settings) -> apns.ApnsConfig:
    config = apns.ApnsConfig(
        key=Secret(s.required("key")),
        key_id=s.required("key_id"),
        team_id=s.required("team_id"),
        topic=s.required("topic"),
        sandbox=s.flag("sandbox"),
        base_url=s.url("base_url"),
        ca_file=s.text("ca_file"),
        concurrency=s.integer("concurrency", 100, 1, 10_000),
        timeout=s.number("timeout", 30.0, 0.1, 600.0),
        push_type=s.text("push_type"),
    )
    if config.push_type == "mdm":
        raise s.error(
            "push_type",
            "mdm is not supported: MDM pushes need the MDM push certificate's topic and"
            " certificate authentication, and pushtrack signs with a token key",
        )
    if config.push_type is not None and config.push_type not in apns.TOPIC_SUFFIXES:
        raise s.error("push_type", f"must be one of {', '.join(sorted(apns.TOPIC_SUFFIXES))}")
    s.checked(lambda: apns.ProviderToken(config.key, config.key_id, config.team_id))
    return config


def _fcm(s: _Settings) -> fcm.FcmConfig:
    account = s.config.get("service_account")
    if not account:
        raise s.error("service_account", "is required")
    if not isinstance(account, str | Mapping):
        raise s.error("service_account", "must be the service-account JSON (text or object)")
    return fcm.FcmConfig(
        service_account=s.checked(lambda: fcm.ServiceAccount.from_json(account)),
        base_url=s.url("base_url") or fcm.DEFAULT_BASE_URL,
        token_uri=s.url("token_uri"),
        ca_file=s.text("ca_file"),
        concurrency=s.integer("concurrency", 100, 1, 10_000),
        timeout=s.number("timeout", 30.0, 0.1, 600.0),
        data_only=s.flag("data_only"),
    )


_HOST_PATTERN = re.compile(
    r"(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*"
)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _hosts(s: _Settings, name: str) -> tuple[str, ...] | None:
    """A list of host names or ``*.domain`` patterns."""
    value = s.get(name, list, "a list of host names")
    if value is None:
        return None
    hosts = []
    for item in value:
        host = item.strip().lower() if isinstance(item, str) else ""
        if not (_HOST_PATTERN.fullmatch(host) or _is_ip(host)):
            raise s.error(name, f"must hold host names or *.domain patterns, not {item!r}")
        hosts.append(host)
    return tuple(hosts) or None


def _webpush(s: _Settings) -> webpush.WebPushConfig:
    config = webpush.WebPushConfig(
        vapid_private_key=Secret(s.required("vapid_private_key")),
        subject=s.required("subject"),
        ca_file=s.text("ca_file"),
        concurrency=s.integer("concurrency", 100, 1, 10_000),
        timeout=s.number("timeout", 30.0, 0.1, 600.0),
        default_ttl=s.integer("default_ttl", webpush.DEFAULT_TTL, 0, 10 * webpush.DEFAULT_TTL),
        urgency=s.text("urgency") or "normal",
        endpoint_hosts=_hosts(s, "endpoint_hosts") or outbound.DEFAULT_WEBPUSH_HOSTS,
    )
    if config.urgency not in webpush.URGENCIES:
        raise s.error("urgency", f"must be one of {', '.join(sorted(webpush.URGENCIES))}")
    s.checked(lambda: webpush.Vapid(config.vapid_private_key, config.subject))
    return config


def _sandbox(s: _Settings) -> sandbox.SandboxConfig:
    rates = {
        name: s.get(name, (int, float), "a number")
        for name in ("acceptance_rate", "failure_rate", "retry_rate")
    }
    for name, value in rates.items():
        if value is not None and not 0 <= value <= 1:
            raise s.error(name, "must be between 0 and 1")
    accept, fail, retry = rates.values()
    if accept is not None:
        if fail is None:
            fail = max(0.0, 1.0 - accept - (retry or 0.0))
        retry = retry if retry is not None else max(0.0, 1.0 - accept - fail)
        if abs(accept + fail + retry - 1.0) > 1e-6:
            raise ValueError(
                "sandbox gateway rates must sum to 1 "
                f"(acceptance {accept:g} + failure {fail:g} + retry {retry:g})"
            )
    retry_after = s.get("retry_after", (int, float), "a number")
    seed = s.get("seed", int, "an integer")
    return s.checked(
        lambda: sandbox.SandboxConfig(
            failure_rate=float(fail or 0.0),
            retry_rate=float(retry or 0.0),
            latency_ms=s.number("latency_ms", 0.0, 0.0, 60_000.0),
            seed=seed,
            retry_after=None if retry_after is None else float(retry_after),
        )
    )


_PARSERS: dict[str, tuple[type[GatewayConfig], Callable[[_Settings], GatewayConfig]]] = {
    "apns": (apns.ApnsConfig, _apns),
    "fcm": (fcm.FcmConfig, _fcm),
    "webpush": (webpush.WebPushConfig, _webpush),
    "sandbox": (sandbox.SandboxConfig, _sandbox),
}
#: Setting names are the config fields; the sandbox also takes its derived acceptance_rate.
_KNOWN: dict[str, frozenset[str]] = {
    kind: frozenset(f.name for f in dataclasses.fields(cls))
    | ({"acceptance_rate"} if kind == "sandbox" else set())
    for kind, (cls, _) in _PARSERS.items()
}


def parse_config(kind: str, config: Mapping[str, Any]) -> GatewayConfig:
    """Validated, typed settings of a gateway kind (keys are loaded to check them)."""
    if kind not in _PARSERS:
        raise ValueError(f"unknown gateway kind {kind!r}; expected one of {', '.join(KINDS)}")
    if not isinstance(config, Mapping):
        raise ValueError(f"{kind} gateway settings must be an object")
    unknown = sorted(set(config) - _KNOWN[kind])
    if unknown:
        names = ", ".join(repr(k) for k in unknown)
        raise ValueError(
            f"unknown {kind} gateway setting(s) {names}; known: {', '.join(sorted(_KNOWN[kind]))}"
        )
    return _PARSERS[kind][1](_Settings(kind, config))


def gateway_for(config: GatewayConfig) -> Gateway:
    """The gateway for typed settings."""
    if isinstance(config, apns.ApnsConfig):
        return apns.ApnsGateway(config)
    if isinstance(config, fcm.FcmConfig):
        return fcm.FcmGateway(config)
    if isinstance(config, webpush.WebPushConfig):
        return webpush.WebPushGateway(config)
    return sandbox.SandboxGateway(config)


def build_gateway(kind: str, config: Mapping[str, Any]) -> Gateway:
    """A ready gateway of ``kind`` ("apns", "fcm", "webpush", "sandbox") from stored settings."""
    return gateway_for(parse_config(kind, config))
