"""Identifiers: application, message and tracking codes, payload hashes, request ids.

Message and tracking codes carry 80 random bits, so they are unguessable; the
store's unique constraints make them unique.
"""

from __future__ import annotations

import base64
import os
import re

APP_CODE_RE = re.compile(r"^[0-9A-F]{5}-[0-9A-F]{5}$")
MESSAGE_CODE_RE = re.compile(r"^[0-9A-F]{4}-[0-9A-F]{8}-[0-9A-F]{8}$")
TRACKING_CODE_RE = re.compile(r"^T-[0-9A-F]{4}-[0-9A-F]{8}-[0-9A-F]{8}$")
REQUEST_ID_RE = re.compile(r"^[0-9a-f]{32}$")


def app_code() -> str:
    h = os.urandom(5).hex().upper()
    return f"{h[:5]}-{h[5:]}"


def _code(h: str) -> str:
    return f"{h[:4]}-{h[4:12]}-{h[12:20]}"


def message_code() -> str:
    return _code(os.urandom(10).hex().upper())


def tracking_codes(n: int) -> list[str]:
    """``n`` fresh tracking codes, made from one read of the random source."""
    h = os.urandom(10 * n).hex().upper()
    return ["T-" + _code(h[i : i + 20]) for i in range(0, 20 * n, 20)]


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
