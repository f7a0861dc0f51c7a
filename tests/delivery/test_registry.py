"""Building gateways from stored settings, and every way settings can be wrong."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from pushtrack.delivery.apns import ApnsConfig, ApnsGateway
from pushtrack.delivery.fcm import FcmGateway
from pushtrack.delivery.registry import KINDS, build_gateway, parse_config
from pushtrack.delivery.sandbox import SandboxConfig, SandboxGateway
from pushtrack.delivery.webpush import WebPushGateway
from tests.delivery._support import pem_of

pytestmark = pytest.mark.anyio


@pytest.fixture
def settings(
    apns_settings: dict[str, Any], fcm_settings: dict[str, Any], webpush_settings: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    return {"apns": apns_settings, "fcm": fcm_settings, "webpush": webpush_settings, "sandbox": {}}


async def test_each_kind_builds(settings: dict[str, dict[str, Any]]) -> None:
    expected = {
        "apns": ApnsGateway,
        "fcm": FcmGateway,
        "webpush": WebPushGateway,
        "sandbox": SandboxGateway,
    }
    assert set(KINDS) == set(expected)
    for kind in KINDS:
        gateway = build_gateway(kind, settings[kind])
        assert isinstance(gateway, expected[kind])
        await gateway.aclose()


def test_secrets_stay_hidden(settings: dict[str, dict[str, Any]]) -> None:
    for kind in ("apns", "fcm", "webpush"):
        text = repr(parse_config(kind, settings[kind]))
        assert "PRIVATE KEY" not in text
        assert "Secret('**********')" in text


def test_stored_as_json(settings: dict[str, dict[str, Any]]) -> None:
    for kind in KINDS:
        parse_config(kind, json.loads(json.dumps(settings[kind])))


def test_defaults(apns_settings: dict[str, Any]) -> None:
    config = parse_config("apns", apns_settings)
    assert isinstance(config, ApnsConfig)
    assert (config.concurrency, config.timeout, config.sandbox) == (100, 30.0, False)
    assert config.base_url == apns_settings["base_url"]


def fails(kind: str, config: Any, *fragments: str) -> None:
    with pytest.raises(ValueError, match=re.escape(fragments[0])) as caught:
        parse_config(kind, config)
    for fragment in fragments[1:]:
        assert fragment in str(caught.value)


def test_unknown_kind() -> None:
    fails("mpns", {}, "unknown gateway kind 'mpns'", "apns, fcm, webpush, sandbox")


def test_not_an_object() -> None:
    fails("sandbox", ["x"], "sandbox gateway settings must be an object")


@pytest.mark.parametrize("kind", ["apns", "fcm", "webpush", "sandbox"])
def test_unknown_setting(settings: dict[str, dict[str, Any]], kind: str) -> None:
    fails(kind, {**settings[kind], "colour": "blue"}, f"unknown {kind} gateway setting", "'colour'")


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        ("apns", "key"),
        ("apns", "key_id"),
        ("apns", "team_id"),
        ("apns", "topic"),
        ("fcm", "service_account"),
        ("webpush", "vapid_private_key"),
        ("webpush", "subject"),
    ],
)
def test_required(settings: dict[str, dict[str, Any]], kind: str, name: str) -> None:
    config = {k: v for k, v in settings[kind].items() if k != name}
    fails(kind, config, f"{kind} gateway setting '{name}' is required")
    fails(
        kind,
        {**config, name: "  "} if name != "service_account" else {**config, name: ""},
        "is required",
    )


@pytest.mark.parametrize(
    ("kind", "name", "value", "problem"),
    [
        ("apns", "concurrency", "10", "must be an integer, not '10'"),
        ("apns", "concurrency", 0, "must be between 1 and 10000"),
        ("apns", "concurrency", True, "must be an integer, not true"),
        ("apns", "sandbox", "yes", "must be true or false, not 'yes'"),
        ("apns", "timeout", True, "must be a number, not true"),
        ("apns", "timeout", 0, "must be between 0.1 and 600"),
        ("apns", "key_id", 12, "must be a string, not 12"),
        ("apns", "base_url", "api.push.apple.com", "must be an http(s) URL, not 'api.push"),
        ("apns", "push_type", "video", "must be one of complication, fileprovider"),
        ("fcm", "data_only", 1, "must be true or false, not 1"),
        ("fcm", "service_account", 5, "must be the service-account JSON (text or object), not 5"),
        ("fcm", "token_uri", ["https://t"], "must be an http(s) URL, not a list"),
        ("webpush", "urgency", "urgent", "must be one of high, low, normal, very-low"),
        ("webpush", "default_ttl", -1, "must be between 0 and 24192000"),
        ("webpush", "endpoint_hosts", "push.example", "must be a list of host names, not"),
        ("webpush", "endpoint_hosts", ["push.example", 5], "item 1 must be a string, not 5"),
        ("webpush", "endpoint_hosts", ["a b"], "must hold host names or *.domain patterns"),
        ("sandbox", "failure_rate", 1.5, "must be between 0 and 1"),
        ("sandbox", "latency_ms", -1, "must be between 0 and 60000"),
        ("sandbox", "seed", 1.5, "must be an integer, not 1.5"),
    ],
)
def test_wrong_values(
    settings: dict[str, dict[str, Any]], kind: str, name: str, value: Any, problem: str
) -> None:
    fails(kind, {**settings[kind], name: value}, f"{kind} gateway setting '{name}' {problem}")


@pytest.mark.parametrize(
    "key",
    [
        "not a key",
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----",
        pem_of(ec.generate_private_key(ec.SECP384R1())),
        pem_of(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
    ],
)
def test_apns_key_must_be_p256(apns_settings: dict[str, Any], key: str) -> None:
    fails("apns", {**apns_settings, "key": key}, "apns gateway: APNs key")


@pytest.mark.parametrize(
    ("account", "problem"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "must be a JSON object"),
        ({"project_id": "p"}, "lacks client_email, private_key, token_uri"),
        (
            {
                "project_id": "p",
                "client_email": "e",
                "token_uri": "https://t",
                "private_key": "nope",
            },
            "not a PEM private key",
        ),
        (
            {
                "project_id": "p",
                "client_email": "e",
                "token_uri": "https://t",
                "private_key": pem_of(ec.generate_private_key(ec.SECP256R1())),
            },
            "must be an RSA key",
        ),
    ],
)
def test_fcm_service_account(fcm_settings: dict[str, Any], account: Any, problem: str) -> None:
    fails("fcm", {**fcm_settings, "service_account": account}, "fcm gateway: ", problem)


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"subject": "ops@example.com"}, "mailto: or https:"),
        ({"vapid_private_key": "AAAA"}, "32 bytes"),
        ({"vapid_private_key": "!!not base64!!"}, "neither PEM nor base64url"),
        ({"vapid_private_key": "A" * 43}, "not a valid P-256 private key"),
    ],
)
def test_webpush_vapid(
    webpush_settings: dict[str, Any], changes: dict[str, Any], problem: str
) -> None:
    fails("webpush", {**webpush_settings, **changes}, "webpush gateway: ", problem)


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        ({"failure_rate": 0.7, "retry_rate": 0.7}, "must not exceed 1"),
        ({"acceptance_rate": 0.5, "failure_rate": 0.2, "retry_rate": 0.2}, "must sum to 1"),
        ({"acceptance_rate": 2}, "between 0 and 1"),
        ({"retry_after": "soon"}, "must be a number"),
    ],
)
def test_sandbox_rates(config: dict[str, Any], problem: str) -> None:
    fails("sandbox", config, "sandbox gateway", problem)


def test_nulls_and_blank_text_are_the_default(apns_settings: dict[str, Any]) -> None:
    config = parse_config(
        "apns", {**apns_settings, "concurrency": None, "ca_file": "  ", "topic": " com.x.app "}
    )
    assert isinstance(config, ApnsConfig)
    assert (config.concurrency, config.ca_file, config.topic) == (100, None, "com.x.app")


def test_sandbox_acceptance_rate_alone() -> None:
    config = parse_config("sandbox", {"acceptance_rate": 0.75})
    assert isinstance(config, SandboxConfig)
    assert (config.failure_rate, config.retry_rate) == (0.25, 0.0)
