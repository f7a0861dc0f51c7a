"""Fixtures for the gateway tests: the local gateway servers, started once per test run.

Each server fixture (``apns_server``, ``fcm_server``, ``webpush_server``) hands a
server that runs for the whole session (per xdist worker), reset before each
test. The ``*_settings`` fixtures are the gateway settings dicts, as stored for
an application, pointing at that server and trusting its CA.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.delivery._support import APNS_KEY_ID, APNS_TEAM_ID, APNS_TOPIC, pem_of
from tests.gateways import ApnsServer, FcmServer, LocalTLS, WebPushServer


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def tls() -> Iterator[LocalTLS]:
    with LocalTLS() as local:
        yield local


@pytest.fixture(scope="session")
def apns_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="session")
def vapid_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="session")
def _apns_server(tls: LocalTLS, apns_key: ec.EllipticCurvePrivateKey) -> Iterator[ApnsServer]:
    server = ApnsServer(
        tls,
        public_key=apns_key.public_key(),
        key_id=APNS_KEY_ID,
        team_id=APNS_TEAM_ID,
        topic=APNS_TOPIC,
    )
    with server:
        yield server


@pytest.fixture(scope="session")
def _fcm_server(tls: LocalTLS) -> Iterator[FcmServer]:
    with FcmServer(tls) as server:
        yield server


@pytest.fixture(scope="session")
def _webpush_server(tls: LocalTLS) -> Iterator[WebPushServer]:
    with WebPushServer(tls) as server:
        yield server


@pytest.fixture(scope="session")
def _webpush_http1_server(tls: LocalTLS) -> Iterator[WebPushServer]:
    with WebPushServer(tls, http1=True) as server:
        yield server


@pytest.fixture
def webpush_http1_server(_webpush_http1_server: WebPushServer) -> Iterator[WebPushServer]:
    """A push service that speaks only HTTP/1.1 (ALPN offers http/1.1 alone)."""
    _webpush_http1_server.reset()
    yield _webpush_http1_server
    assert not _webpush_http1_server.errors, _webpush_http1_server.errors


@pytest.fixture
def apns_server(_apns_server: ApnsServer) -> Iterator[ApnsServer]:
    _apns_server.reset()
    yield _apns_server
    assert not _apns_server.errors, _apns_server.errors


@pytest.fixture
def fcm_server(_fcm_server: FcmServer) -> Iterator[FcmServer]:
    _fcm_server.reset()
    yield _fcm_server
    assert not _fcm_server.errors, _fcm_server.errors


@pytest.fixture
def webpush_server(_webpush_server: WebPushServer) -> Iterator[WebPushServer]:
    _webpush_server.reset()
    yield _webpush_server
    assert not _webpush_server.errors, _webpush_server.errors


@pytest.fixture
def apns_settings(
    apns_server: ApnsServer, tls: LocalTLS, apns_key: ec.EllipticCurvePrivateKey
) -> dict[str, Any]:
    return {
        "key": pem_of(apns_key),
        "key_id": APNS_KEY_ID,
        "team_id": APNS_TEAM_ID,
        "topic": APNS_TOPIC,
        "base_url": apns_server.url,
        "ca_file": tls.ca_file,
    }


@pytest.fixture
def fcm_settings(fcm_server: FcmServer, tls: LocalTLS) -> dict[str, Any]:
    return {
        "service_account": fcm_server.service_account,
        "base_url": fcm_server.url,
        "ca_file": tls.ca_file,
    }


@pytest.fixture
def webpush_settings(tls: LocalTLS, vapid_key: ec.EllipticCurvePrivateKey) -> dict[str, Any]:
    return {
        "vapid_private_key": pem_of(vapid_key),
        "subject": "mailto:ops@example.com",
        "ca_file": tls.ca_file,
        # the local push service is named explicitly (not a browser's push service)
        "endpoint_hosts": ["127.0.0.1", "localhost"],
    }
