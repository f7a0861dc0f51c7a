"""What every handler gets: the settings, the store, and the caller's identity."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pushtrack.api import auth
from pushtrack.api.errors import ArgumentError, AuthError
from pushtrack.config import Settings
from pushtrack.store import Store
from pushtrack.store.base import App, TokenInfo

#: Default seconds a token or application looked up stays cached (revocation takes
#: this long to be seen).
CACHE_SECONDS = 2.0
#: Tokens up to this long are cached by their text (issued ones are 40 characters).
TOKEN_KEY_MAX = 64


@dataclass
class Context:
    """Built once at start-up and passed down; no process-wide globals."""

    settings: Settings
    store: Store
    limiter: auth.RateLimiter
    #: createMessage / createTargetedMessage per application (``messages_per_minute``)
    message_limiter: auth.RateLimiter
    #: Seconds a looked-up token or application is reused before the store is asked again.
    cache_seconds: float = CACHE_SECONDS
    #: API requests being worked on now (``max_in_flight`` caps it).
    in_flight: int = 0
    #: Whether the worker running in this process is alive (None: no worker here).
    worker_alive: Callable[[], bool] | None = None
    #: Whether the server is shutting down (None: never told); long-lived responses
    #: (the dashboard's event stream) end when it is.
    stopping: Callable[[], bool] | None = None
    _tokens: dict[str, tuple[float, TokenInfo | None]] = field(default_factory=dict)
    _apps: dict[str, tuple[float, App | None]] = field(default_factory=dict)

    @classmethod
    def build(
        cls, settings: Settings, store: Store, *, cache_seconds: float = CACHE_SECONDS
    ) -> Context:
        limiter = auth.RateLimiter(settings.rate_limit, settings.rate_burst)
        per_minute = settings.messages_per_minute
        message_limiter = auth.RateLimiter(per_minute / 60, max(1, per_minute))
        return cls(settings, store, limiter, message_limiter, cache_seconds)

    def store_clock(self) -> int:
        return self.store.clock()

    async def token(self, raw: str) -> TokenInfo:
        now = time.monotonic()
        # Kept by the token as given, so a hit needs no hash (device tokens come with
        # every call); one longer than any issued is kept by its hash, so what the cache
        # holds stays small whatever callers send.
        key = raw if len(raw) <= TOKEN_KEY_MAX else "sha256:" + auth.hash_token(raw)
        hit = self._tokens.get(key)
        if hit is None or hit[0] < now:
            info = await self.store.find_token(auth.hash_token(raw))
            if len(self._tokens) > 10_000:
                self._tokens.clear()
            self._tokens[key] = (now + self.cache_seconds, info)
        else:
            info = hit[1]
        if info is None or info.revoked:
            raise AuthError
        return info

    async def app(self, code: str) -> App | None:
        now = time.monotonic()
        hit = self._apps.get(code)
        if hit is not None and hit[0] >= now:
            return hit[1]
        found = await self.store.get_app(code)
        if len(self._apps) > 10_000:
            self._apps.clear()
        self._apps[code] = (now + self.cache_seconds, found)
        return found


@dataclass
class Call:
    """One API call: who makes it and what they asked."""

    ctx: Context
    method: str
    token: TokenInfo | None

    async def app_for(self, code: Any) -> App:
        """The application a server call names, checked against the token."""
        if not isinstance(code, str) or not code:
            raise ArgumentError("application: required")
        if self.token is not None:
            # before the lookup, so a restricted token cannot tell whether it exists
            auth.check_app_code(self.token, code)
        app = await self.ctx.app(code)
        if app is None or self.token is None or app.account != self.token.account:
            raise ArgumentError(f"application: {code} not found")
        return app

    async def device_app_for(self, code: Any) -> App:
        """The application a device call names; tokenless calls only where it allows them."""
        if not isinstance(code, str) or not code:
            raise ArgumentError("application: required")
        app = await self.ctx.app(code)
        if self.token is None:
            if app is None or app.device_token_required:
                raise AuthError
            return app
        auth.check_app_code(self.token, code)
        if app is None or app.account != self.token.account:
            raise ArgumentError(f"application: {code} not found")
        return app
