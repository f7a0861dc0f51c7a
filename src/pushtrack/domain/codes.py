"""Identifiers: application, message and tracking codes, payload hashes, request ids.

Message codes carry 80 random bits, so they are unguessable; the store's unique
constraint makes them unique. A tracking code is its delivery's id sealed with a
block cipher under a server secret the database keeps: AES-128 of one block,
the id and 64 zero bits. It is unique by construction, needs no index of its
own, reveals neither the id nor how many deliveries there are, and cannot be
forged (a made-up code opens to zero bits with odds of 2^-64). Codes made before
that (80 random bits) stay valid; the store keeps them beside their deliveries.

Message ids shown to a tenant are the store's ids through a keyed permutation of
52 bits (a Feistel network), so they too say nothing of other tenants' volume.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import os
import re
import struct
import threading
from collections.abc import Sequence
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

APP_CODE_RE = re.compile(r"^[0-9A-F]{5}-[0-9A-F]{5}$")
MESSAGE_CODE_RE = re.compile(r"^[0-9A-F]{4}-[0-9A-F]{8}-[0-9A-F]{8}$")
#: A tracking code: ``T-`` and a sealed delivery id (4 x 8 hex digits), or one made
#: before sealed codes (``T-`` and 80 random bits, ``4-8-8`` hex digits).
TRACKING_CODE_RE = re.compile(
    r"^T-(?:[0-9A-F]{8}-){3}[0-9A-F]{8}$|^T-[0-9A-F]{4}-[0-9A-F]{8}-[0-9A-F]{8}$"
)
_SEALED_RE = re.compile(r"^T-([0-9A-F]{8})-([0-9A-F]{8})-([0-9A-F]{8})-([0-9A-F]{8})$")
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


_ZERO = bytes(8)
_local = threading.local()


@functools.lru_cache(maxsize=8)
def _subkey(key: bytes, purpose: bytes) -> bytes:
    return hashlib.blake2b(purpose, key=key, digest_size=16).digest()


def _ciphers(key: bytes) -> tuple[Any, Any]:
    """This thread's AES-128 encryptor and decryptor under ``key`` (ECB, one block at a
    time: each code is one block; contexts are reused, and are not shared by threads)."""
    cached = getattr(_local, "ciphers", None)
    if cached is None or cached[0] != key:
        # each code is one block enciphered on its own: a keyed permutation, as intended
        cipher = Cipher(algorithms.AES(_subkey(key, b"tracking code")), modes.ECB())  # noqa: S305
        cached = (key, cipher.encryptor(), cipher.decryptor())
        _local.ciphers = cached
    return cached[1], cached[2]


def tracking_codes_of(key: bytes, delivery_ids: Sequence[int]) -> list[str]:
    """The tracking codes of deliveries: each id sealed under the server's ``key``."""
    if not delivery_ids:
        return []
    encryptor, _ = _ciphers(key)
    # each id as a block: 8 bytes big-endian, 8 zero bytes
    blocks = struct.pack(">" + "Q8x" * len(delivery_ids), *delivery_ids)
    # 35 characters a code ("XXXXXXXX-" four times, less the last dash), one dash between
    h = encryptor.update(blocks).hex("-", 4).upper()
    return ["T-" + h[j : j + 35] for j in range(0, len(h), 36)]


def tracking_code(key: bytes, delivery_id: int) -> str:
    """The tracking code of one delivery (``tracking_codes_of``)."""
    return tracking_codes_of(key, [delivery_id])[0]


def tracking_delivery(key: bytes, code: str) -> int | None:
    """The delivery id a sealed tracking code names; None for a code made before sealed
    codes, or a forged one."""
    found = _SEALED_RE.match(code)
    if found is None:
        return None
    _, decryptor = _ciphers(key)
    block = decryptor.update(bytes.fromhex("".join(found.groups())))
    if not hmac.compare_digest(block[8:], _ZERO):
        return None
    delivery_id = int.from_bytes(block[:8], "big")
    return delivery_id if delivery_id < 1 << 63 else None


#: Message ids shown to tenants lie in [0, 2**52): exact in every JSON reader.
_ID_BITS = 52
_HALF = _ID_BITS // 2
_HALF_MASK = (1 << _HALF) - 1


def _round(subkey: bytes, n: int, value: int) -> int:
    data = bytes((n,)) + value.to_bytes(4, "big")
    return int.from_bytes(hashlib.blake2b(data, key=subkey, digest_size=4).digest()) & _HALF_MASK


def shown_message_id(key: bytes, message_id: int) -> int:
    """The id a tenant sees for the store's ``message_id`` (a keyed 52-bit permutation)."""
    subkey = _subkey(key, b"message id")
    left, right = message_id >> _HALF & _HALF_MASK, message_id & _HALF_MASK
    for n in range(4):
        left, right = right, left ^ _round(subkey, n, right)
    return left << _HALF | right


def stored_message_id(key: bytes, shown: int) -> int | None:
    """The store's id of a message id a tenant was shown; None if it cannot be one."""
    if not 0 <= shown < 1 << _ID_BITS:
        return None
    subkey = _subkey(key, b"message id")
    left, right = shown >> _HALF, shown & _HALF_MASK
    for n in reversed(range(4)):
        left, right = right ^ _round(subkey, n, left), left
    return left << _HALF | right


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
    """An API token: URL-safe, long enough that guessing is hopeless, and starting with a
    letter or digit (a token, or its prefix, is also a command-line argument)."""
    while True:
        token = base64.urlsafe_b64encode(os.urandom(nbytes)).decode("ascii").rstrip("=")
        if token[0].isalnum():
            return token
