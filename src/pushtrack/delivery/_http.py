"""Plumbing the network gateways share: the HTTP client, its errors, keys.

httpx is the only library that talks to the network here, and its exceptions
stop in this module: ``post`` gives a request one more try on a fresh
connection when the old one went away under it (an HTTP/2 GOAWAY, a reset),
and ``transport_outcome`` turns whatever still fails into a RETRY outcome.
"""

from __future__ import annotations

import email.utils
import ssl
import time
from collections.abc import Mapping
from typing import Any

import httpx
import msgspec
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from pushtrack.delivery.base import Outcome, Verdict

#: Errors meaning the connection was lost with the request on it, not that the
#: server refused it: worth one more try on a new connection within the same send.
_CONNECTION_LOST = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)

_json_decoder = msgspec.json.Decoder()


def make_client(
    *,
    base_url: str = "",
    ca_file: str | None = None,
    timeout: float = 30.0,
    max_connections: int = 100,
) -> httpx.AsyncClient:
    """An HTTP/2-capable client; ``ca_file`` replaces the trusted roots (tests, private CAs)."""
    verify: ssl.SSLContext | bool = True
    if ca_file:
        try:
            verify = ssl.create_default_context(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"ca_file {ca_file!r} cannot be loaded: {exc}") from exc
    return httpx.AsyncClient(
        base_url=base_url,
        http2=True,
        verify=verify,
        timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=16),
        follow_redirects=False,
    )


async def post(
    client: httpx.AsyncClient, url: str, *, headers: Mapping[str, str], content: bytes
) -> httpx.Response:
    """POST, retried once on a new connection if the connection was lost mid-request."""
    try:
        return await client.post(url, headers=headers, content=content)
    except _CONNECTION_LOST:
        return await client.post(url, headers=headers, content=content)


def transport_outcome(delivery_id: int, exc: httpx.TransportError) -> Outcome:
    """A RETRY outcome for a request that never got an answer."""
    if isinstance(exc, httpx.TimeoutException):
        reason = "Timeout"
        description = f"Timeout talking to the gateway ({type(exc).__name__})"
    else:
        reason = "ConnectionError"
        detail = str(exc) or type(exc).__name__
        if "ConnectionTerminated" in detail:  # h2's event for a GOAWAY frame
            detail = "the gateway closed the connection (HTTP/2 GOAWAY)"
        description = f"Connection error talking to the gateway: {detail}"
    return Outcome(delivery_id, Verdict.RETRY, description, reason=reason)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date), or None."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


def json_body(response: httpx.Response) -> dict[str, Any]:
    """The response body as a JSON object, or {} when it is empty or not one."""
    try:
        body = _json_decoder.decode(response.content)
    except msgspec.DecodeError:
        return {}
    return body if isinstance(body, dict) else {}


def positive_ttl(options: Mapping[str, Any]) -> int | None:
    """The ``ttl`` option in whole seconds (never negative), or None when absent or unusable."""
    ttl = options.get("ttl")
    if ttl is None or isinstance(ttl, bool):
        return None
    try:
        return max(0, int(float(ttl)))
    except (TypeError, ValueError, OverflowError):
        return None


def load_p256_key(pem: str, what: str) -> ec.EllipticCurvePrivateKey:
    """An EC P-256 private key from PEM text (PKCS#8, as in an APNs .p8 file, or SEC1)."""
    try:
        key = load_pem_private_key(pem.strip().encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{what} is not a PEM private key without a password") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ValueError(f"{what} must be an EC P-256 (prime256v1) private key")
    return key
