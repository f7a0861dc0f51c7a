"""Identifiers: application, message and tracking codes, payload hashes, request ids.

Message codes carry 80 random bits, so they are unguessable; the store's unique
constraint makes them unique. A tracking code is derived from its delivery's id
and a keyed MAC of it (64 bits, BLAKE2b keyed with a server secret the database
keeps), so it is unique by construction, unguessable, checked on lookup, and
needs no index of its own. Codes made before that (80 random bits) stay valid;
the store keeps them beside their deliveries.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re

APP_CODE_RE = re.compile(r"^[0-9A-F]{5}-[0-9A-F]{5}$")
MESSAGE_CODE_RE = re.compile(r"^[0-9A-F]{4}-[0-9A-F]{8}-[0-9A-F]{8}$")
#: A tracking code: ``T-<delivery id, 10+ hex digits>-<MAC, 2 x 8 hex digits>``, or one
#: made before derived codes (``T-`` and 80 random bits, ``4-8-8`` hex digits).
TRACKING_CODE_RE = re.compile(r"^T-(?:[0-9A-F]{4}|[0-9A-F]{10,16})-[0-9A-F]{8}-[0-9A-F]{8}$")
_DERIVED_RE = re.compile(r"^T-([0-9A-F]{10,16})-([0-9A-F]{8})-([0-9A-F]{8})$")
REQUEST_ID_RE = re.compile(r"^[0-9a-f]{32}$")


def app_code() -> str:
    h = os.urandom(5).hex().upper()
    return f"{h[:5]}-{h[5:]}"


def _code(h: str) -> str:
    return f"{h[:4]}-{h[4:12]}-{h[12:20]}"


def message_code() -> str:
    return _code(os.urandom(10).hex().upper())


def tracking_codes(n: int) -> list[str]:
    """``n`` random tracking codes of the form made before derived codes (tests, bench)."""
    h = os.urandom(10 * n).hex().upper()
    return ["T-" + _code(h[i : i + 20]) for i in range(0, 20 * n, 20)]


def _mac(key: bytes, delivery_id: int) -> str:
    return (
        hashlib.blake2b(delivery_id.to_bytes(8, "big"), key=key, digest_size=8).hexdigest().upper()
    )


def tracking_code(key: bytes, delivery_id: int) -> str:
    """The tracking code of a delivery: its id and a MAC of it under the server's ``key``."""
    m = _mac(key, delivery_id)
    return f"T-{delivery_id:010X}-{m[:8]}-{m[8:]}"


def tracking_delivery(key: bytes, code: str) -> int | None:
    """The delivery id a derived tracking code names, if its MAC is right; else None
    (a code made before derived codes, or a forged one)."""
    found = _DERIVED_RE.match(code)
    if found is None:
        return None
    delivery_id = int(found[1], 16)
    if delivery_id >= 1 << 63:
        return None
    expected = _mac(key, delivery_id)
    if not hmac.compare_digest(expected, found[2] + found[3]):
        return None
    return delivery_id


def payload_hashes(n: int) -> list[str]:
    """``n`` fresh ``p`` values (64 random bits each, URL-safe, 11 characters)."""
    raw = os.urandom(8 * n)
    return [
        base64.urlsafe_b64encode(raw[i : i + 8]).decode("ascii").rstrip("=")
        for i in range(0, 8 * n, 8)
    ]


def request_id() -> str:
    return os.urandom(16).hex()


def secret_token(nbytes: int = 30) -> str:
    """An API token: URL-safe, long enough that guessing is hopeless."""
    return base64.urlsafe_b64encode(os.urandom(nbytes)).decode("ascii").rstrip("=")
