"""Tracking codes as the store gives and resolves them.

A delivery's tracking code is its id sealed under the server secret kept in
``server_secrets`` (made once, by migration 9; see ``domain/codes.py``): nothing
random is stored per delivery and no index keeps codes unique. The same secret
turns the store's message ids into the ones tenants are shown. Deliveries written
before that keep the random code they were given in ``legacy_code``, and it
stays theirs.
"""

from __future__ import annotations

from pushtrack.domain import codes
from pushtrack.store.base import Tx


def tracking_key(tx: Tx) -> bytes:
    """The server secret tracking codes are derived under: read once per engine (a
    primary-key read, a round trip on PostgreSQL), then kept (``Tx.memo``). It never
    changes: migration 9 makes it, and every code given out depends on it."""
    key: bytes | None = tx.memo.get(_MEMO_KEY)
    if key is None:
        value = tx.scalar("SELECT value FROM server_secrets WHERE name = 'tracking'")
        if value is None:  # pragma: no cover - migration 9 writes it
            raise RuntimeError("the database has no tracking secret (is it migrated?)")
        key = tx.memo[_MEMO_KEY] = bytes.fromhex(value)
    return key


_MEMO_KEY = "tracking_key"


def code_of(key: bytes, delivery_id: int, legacy: str | None) -> str:
    """A delivery's tracking code: the one it was given before derived codes, if any."""
    return legacy if legacy is not None else codes.tracking_code(key, delivery_id)


def where_code(key: bytes, code: str, alias: str = "d") -> tuple[str, list[object]]:
    """The condition (on deliveries ``alias``) that selects the delivery of ``code``:
    by id for a derived code whose MAC is right, else by its legacy code."""
    delivery_id = codes.tracking_delivery(key, code)
    if delivery_id is not None:
        return f"{alias}.id = ?", [delivery_id]
    return f"{alias}.legacy_code = ?", [code]
