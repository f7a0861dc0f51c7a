"""API tokens: hashing, who may call what, and the per-token rate limit."""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, field

from pushtrack.api.errors import AuthError, ForbiddenError, RateLimitedError
from pushtrack.store.base import App, TokenInfo

SERVER = "server"
DEVICE = "device"
KINDS = (SERVER, DEVICE)


def hash_token(token: str) -> str:
    """Tokens are long random strings, so a plain SHA-256 is the right hash."""
    return hashlib.sha256(token.encode()).hexdigest()


def prefix_of(token: str) -> str:
    return token[:8]


def token_from_header(value: str | None) -> str | None:
    """The token of an ``Authorization: Token <token>`` header (also ``Bearer``)."""
    if not value:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() not in ("token", "bearer", "api") or not token.strip():
        raise AuthError
    return token.strip()


def check_method(token: TokenInfo, method: str, *, server_method: bool) -> None:
    if token.revoked:
        raise AuthError
    if server_method and token.kind != SERVER:
        raise ForbiddenError
    if token.methods is not None and method not in token.methods:
        raise ForbiddenError


def check_app(token: TokenInfo, app: App) -> None:
    check_app_code(token, app.code)


def check_app_code(token: TokenInfo, code: str) -> None:
    """A token restricted to some applications may name no other, existing or not."""
    if token.apps is not None and code not in token.apps:
        raise ForbiddenError


@dataclass
class RateLimiter:
    """A token bucket per key; ``rate`` 0 turns it off.

    Keys are authenticated callers only (a token's id, an application's code after its
    lookup), so junk requests make none. Past ``max_keys`` buckets, the ones that have
    filled up again are forgotten (a full bucket is the same as none): a caller's
    spent bucket is never reset by other callers' keys.
    """

    rate: float
    burst: int
    max_keys: int = 100_000
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)
    #: The size past which full buckets are swept next (grows while all are in use).
    _sweep_at: int = 0

    def check(self, key: str) -> None:
        if self.rate <= 0:
            return
        now = time.monotonic()
        tokens, last = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            # whole seconds until the bucket holds one request again
            raise RateLimitedError(retry_after=max(1, math.ceil((1.0 - tokens) / self.rate)))
        self._buckets[key] = (tokens - 1.0, now)
        if len(self._buckets) > max(self.max_keys, self._sweep_at):
            self._forget_full(now)

    def _forget_full(self, now: float) -> None:
        full = [
            key
            for key, (tokens, last) in self._buckets.items()
            if tokens + (now - last) * self.rate >= self.burst
        ]
        for key in full:
            del self._buckets[key]
        # every bucket left is in use: sweep again only when twice as many are kept
        self._sweep_at = 2 * len(self._buckets)
