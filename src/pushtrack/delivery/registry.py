"""Gateways from stored settings: ``build_gateway("apns", {...})``.

An application's gateway settings are kept as JSON. Each kind's settings are a
msgspec Struct (``ApnsSettings``, ...) whose types and ``Meta`` limits msgspec
checks, as it checks ``config.Settings`` and the API's requests; what a type
cannot say (a key that loads, a known push type, host patterns, rates that sum to
1) is checked after. Every problem is a ``ValueError`` naming the gateway kind and
the setting. Text values are stripped and blank ones count as absent, as do JSON
nulls; secrets are wrapped in ``Secret`` at once.

Settings per kind (``*`` required):

- ``apns``: ``key``* (.p8 PEM text), ``key_id``*, ``team_id``*, ``topic``*,
  ``sandbox``, ``base_url``, ``ca_file``, ``concurrency``, ``timeout``, ``push_type``
  (send every push as voip, location, ...: the topic gets Apple's suffix for it, and
  createMessage checks notifications against what APNs asks of that type; not mdm)
- ``fcm``: ``service_account``* (the JSON file, as text or object),
  ``base_url``, ``token_uri``, ``ca_file``, ``concurrency``, ``timeout``, ``data_only``
- ``webpush``: ``vapid_private_key``* (PEM or base64url), ``subject``* (mailto:/https:),
  ``ca_file``, ``concurrency``, ``timeout``, ``default_ttl``, ``urgency``,
  ``endpoint_hosts``
- ``sandbox``: ``acceptance_rate``, ``failure_rate``, ``retry_rate`` (shares summing
  to 1; acceptance is the rest when left out), ``latency_ms``, ``seed``, ``retry_after``
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from typing import Annotated, Any, TypeVar

import msgspec

from pushtrack.delivery import apns, fcm, outbound, sandbox, webpush
from pushtrack.delivery.base import Gateway
from pushtrack.secret import Secret

GatewayConfig = apns.ApnsConfig | fcm.FcmConfig | webpush.WebPushConfig | sandbox.SandboxConfig
KINDS = ("apns", "fcm", "webpush", "sandbox")

_T = TypeVar("_T")
_S = TypeVar("_S", bound=msgspec.Struct)

#: Value types with their limits, shared by the kinds.
Concurrency = Annotated[int, msgspec.Meta(ge=1, le=10_000)]
Timeout = Annotated[float, msgspec.Meta(ge=0.1, le=600.0)]
Share = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
HttpUrl = Annotated[str, msgspec.Meta(pattern=r"^https?://")]


class ApnsSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    key: str
    key_id: str
    team_id: str
    topic: str
    sandbox: bool = False
    base_url: HttpUrl | None = None
    ca_file: str | None = None
    concurrency: Concurrency = 100
    timeout: Timeout = 30.0
    push_type: str | None = None


class FcmSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    service_account: str | dict[str, Any]
    base_url: HttpUrl = fcm.DEFAULT_BASE_URL
    token_uri: HttpUrl | None = None
    ca_file: str | None = None
    concurrency: Concurrency = 100
    timeout: Timeout = 30.0
    data_only: bool = False


class WebPushSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    vapid_private_key: str
    subject: str
    ca_file: str | None = None
    concurrency: Concurrency = 100
    timeout: Timeout = 30.0
    default_ttl: Annotated[int, msgspec.Meta(ge=0, le=10 * webpush.DEFAULT_TTL)] = (
        webpush.DEFAULT_TTL
    )
    urgency: str = "normal"
    endpoint_hosts: list[str] | None = None


class SandboxSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    acceptance_rate: Share | None = None
    failure_rate: Share | None = None
    retry_rate: Share | None = None
    latency_ms: Annotated[float, msgspec.Meta(ge=0.0, le=60_000.0)] = 0.0
    seed: int | None = None
    retry_after: float | None = None


_Settings = ApnsSettings | FcmSettings | WebPushSettings | SandboxSettings

#: What a setting must be, where its type alone would not say it plainly.
_WANTED = {
    "base_url": "an http(s) URL",
    "token_uri": "an http(s) URL",
    "service_account": "the service-account JSON (text or object)",
    "endpoint_hosts": "a list of host names",
}


def _error(kind: str, name: str, problem: str) -> ValueError:
    return ValueError(f"{kind} gateway setting {name!r} {problem}")


def _said(t: msgspec.inspect.Type) -> str:
    """A value type in words: ``an integer``, ``a number``, ..."""
    if isinstance(t, msgspec.inspect.UnionType):
        return " or ".join(_said(u) for u in t.types if not isinstance(u, msgspec.inspect.NoneType))
    if isinstance(t, msgspec.inspect.BoolType):
        return "true or false"
    if isinstance(t, msgspec.inspect.IntType):
        return "an integer"
    if isinstance(t, msgspec.inspect.FloatType):
        return "a number"
    if isinstance(t, msgspec.inspect.StrType):
        return "a string"
    if isinstance(t, msgspec.inspect.ListType):
        return "a list"
    return "an object"


def _members(t: msgspec.inspect.Type) -> tuple[msgspec.inspect.Type, ...]:
    return t.types if isinstance(t, msgspec.inspect.UnionType) else (t,)


def _limits(t: msgspec.inspect.Type, value: Any) -> str | None:
    """``must be between …`` when ``value`` is of ``t``'s kind but outside its limits."""
    if isinstance(t, msgspec.inspect.UnionType):
        return next((p for u in t.types if (p := _limits(u, value)) is not None), None)
    if isinstance(value, bool) or not isinstance(
        t, msgspec.inspect.IntType | msgspec.inspect.FloatType
    ):
        return None
    if not isinstance(value, int | float) or (
        isinstance(t, msgspec.inspect.IntType) and not isinstance(value, int)
    ):
        return None
    low, high = _number(t.ge), _number(t.le)
    if low and high:
        return f"must be between {low} and {high}"
    if low:
        return f"must be at least {low}"
    return f"must be at most {high}" if high else None


def _number(limit: float | None) -> str:
    """A limit as people write it: ``10000``, ``0.1``; "" for none."""
    if limit is None:
        return ""
    return str(int(limit)) if float(limit).is_integer() else f"{limit:g}"


def _problem(
    kind: str, cls: type[msgspec.Struct], values: dict[str, Any], exc: Exception
) -> ValueError:
    """msgspec's refusal of ``values`` as a ``ValueError`` naming the setting in our words."""
    text = str(exc)
    missing = re.match(r"Object missing required field `(\w+)`", text)
    if missing:
        return _error(kind, missing.group(1), "is required")
    where = re.search(r" - at `\$\.(\w+)(?:\[(\d+)\])?", text)
    info = msgspec.inspect.type_info(cls)
    if where is None or not isinstance(info, msgspec.inspect.StructType):
        return ValueError(f"{kind} gateway settings: {text}")
    name = where.group(1)
    field = next(f for f in info.fields if f.name == name)
    value = values.get(name)
    wanted = _WANTED.get(name) or _said(field.type)
    if where.group(2) is not None and isinstance(value, list):  # one item of a list
        index = int(where.group(2))
        items = [t for t in _members(field.type) if isinstance(t, msgspec.inspect.ListType)]
        item = "a value" if not items else _said(items[0].item_type)
        return _error(kind, name, f"item {index} must be {item}, not {_type_name(value[index])}")
    limits = _limits(field.type, value)
    if limits is not None:
        return _error(kind, name, limits)
    return _error(kind, name, f"must be {wanted}, not {_type_name(value)}")


def _type_name(value: Any) -> str:
    """The value a setting was given, as JSON spells it (or its kind, for a long one)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return repr(value) if len(value) <= 40 else "a long text"
    if isinstance(value, list):
        return "a list"
    return "an object" if isinstance(value, dict) else type(value).__name__


def _read(kind: str, cls: type[_S], config: Mapping[str, Any]) -> _S:
    """``config`` as ``cls``: text stripped, blank text and nulls left out."""
    values: dict[str, Any] = {}
    for name, value in config.items():
        if isinstance(value, str):
            value = value.strip()
        if value is None or value == "":
            continue
        values[name] = value
    try:
        return msgspec.convert(values, cls)
    except msgspec.ValidationError as exc:
        raise _problem(kind, cls, values, exc) from None


def _checked(kind: str, build: Callable[[], _T]) -> _T:
    """Run a constructor that may refuse a value (a key that does not load)."""
    try:
        return build()
    except ValueError as exc:
        raise ValueError(f"{kind} gateway: {exc}") from exc


def _url(value: str | None) -> str | None:
    return value.rstrip("/") if value else None


def _apns(config: Mapping[str, Any]) -> apns.ApnsConfig:
    s = _read("apns", ApnsSettings, config)
    if s.push_type == "mdm":
        raise _error(
            "apns",
            "push_type",
            "mdm is not supported: MDM pushes need the MDM push certificate's topic and"
            " certificate authentication, and pushtrack signs with a token key",
        )
    if s.push_type is not None and s.push_type not in apns.TOPIC_SUFFIXES:
        known = ", ".join(sorted(apns.TOPIC_SUFFIXES))
        raise _error("apns", "push_type", f"must be one of {known}")
    result = apns.ApnsConfig(
        key=Secret(s.key),
        key_id=s.key_id,
        team_id=s.team_id,
        topic=s.topic,
        sandbox=s.sandbox,
        base_url=_url(s.base_url),
        ca_file=s.ca_file,
        concurrency=s.concurrency,
        timeout=s.timeout,
        push_type=s.push_type,
    )
    _checked("apns", lambda: apns.ProviderToken(result.key, result.key_id, result.team_id))
    return result


def _fcm(config: Mapping[str, Any]) -> fcm.FcmConfig:
    s = _read("fcm", FcmSettings, config)
    return fcm.FcmConfig(
        service_account=_checked("fcm", lambda: fcm.ServiceAccount.from_json(s.service_account)),
        base_url=_url(s.base_url) or fcm.DEFAULT_BASE_URL,
        token_uri=_url(s.token_uri),
        ca_file=s.ca_file,
        concurrency=s.concurrency,
        timeout=s.timeout,
        data_only=s.data_only,
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


def _hosts(kind: str, name: str, value: list[str] | None) -> tuple[str, ...] | None:
    """A list of host names or ``*.domain`` patterns."""
    if value is None:
        return None
    hosts = []
    for item in value:
        host = item.strip().lower()
        if not (_HOST_PATTERN.fullmatch(host) or _is_ip(host)):
            raise _error(kind, name, f"must hold host names or *.domain patterns, not {item!r}")
        hosts.append(host)
    return tuple(hosts) or None


def _webpush(config: Mapping[str, Any]) -> webpush.WebPushConfig:
    s = _read("webpush", WebPushSettings, config)
    if s.urgency not in webpush.URGENCIES:
        raise _error("webpush", "urgency", f"must be one of {', '.join(sorted(webpush.URGENCIES))}")
    result = webpush.WebPushConfig(
        vapid_private_key=Secret(s.vapid_private_key),
        subject=s.subject,
        ca_file=s.ca_file,
        concurrency=s.concurrency,
        timeout=s.timeout,
        default_ttl=s.default_ttl,
        urgency=s.urgency,
        endpoint_hosts=_hosts("webpush", "endpoint_hosts", s.endpoint_hosts)
        or outbound.DEFAULT_WEBPUSH_HOSTS,
    )
    _checked("webpush", lambda: webpush.Vapid(result.vapid_private_key, result.subject))
    return result


def _sandbox(config: Mapping[str, Any]) -> sandbox.SandboxConfig:
    s = _read("sandbox", SandboxSettings, config)
    accept, fail, retry = s.acceptance_rate, s.failure_rate, s.retry_rate
    if accept is not None:
        if fail is None:
            fail = max(0.0, 1.0 - accept - (retry or 0.0))
        retry = retry if retry is not None else max(0.0, 1.0 - accept - fail)
        if abs(accept + fail + retry - 1.0) > 1e-6:
            raise ValueError(
                "sandbox gateway rates must sum to 1 "
                f"(acceptance {accept:g} + failure {fail:g} + retry {retry:g})"
            )
    return _checked(
        "sandbox",
        lambda: sandbox.SandboxConfig(
            failure_rate=float(fail or 0.0),
            retry_rate=float(retry or 0.0),
            latency_ms=float(s.latency_ms),
            seed=s.seed,
            retry_after=None if s.retry_after is None else float(s.retry_after),
        ),
    )


_PARSERS: dict[str, tuple[type[_Settings], Callable[[Mapping[str, Any]], GatewayConfig]]] = {
    "apns": (ApnsSettings, _apns),
    "fcm": (FcmSettings, _fcm),
    "webpush": (WebPushSettings, _webpush),
    "sandbox": (SandboxSettings, _sandbox),
}
#: The setting names of each kind: its Struct's fields.
_KNOWN: dict[str, frozenset[str]] = {
    kind: frozenset(cls.__struct_fields__) for kind, (cls, _) in _PARSERS.items()
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
    return _PARSERS[kind][1](config)


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
