"""Where the service may connect on a device's say-so: Web Push endpoints.

A browser subscription names the URL pushes are POSTed to, and a device (or
anyone holding a device token) registers it. Without a rule the worker would
connect wherever a subscription points, the service's own network included
(server-side request forgery). The rule:

- the endpoint is ``https`` on the default port, with a host name matching one
  of the patterns (``fcm.googleapis.com``, ``*.push.apple.com``: any subdomain);
- a host matched by a wildcard must resolve only to public addresses (not
  loopback, private, link-local, multicast or reserved), checked again when
  sending, so a name that later resolves inward is refused;
- a pattern that is an exact host or an IP address is the operator's explicit
  choice and may be private (a push service inside the operator's network, or a
  local stand-in in tests).

The rule is the Web Push gateway setting ``endpoint_hosts`` (default: the
browsers' push services); a push to any other endpoint fails at once with
``EndpointNotAllowed`` and nothing is sent.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Sequence
from urllib.parse import urlsplit

#: The push services browsers subscribe with: Chrome/Edge/Opera (FCM), Firefox
#: (Mozilla autopush), Safari (Apple), Windows (WNS).
DEFAULT_WEBPUSH_HOSTS = (
    "fcm.googleapis.com",
    "*.push.services.mozilla.com",
    "*.push.apple.com",
    "*.notify.windows.com",
)

#: Seconds a host's resolution is trusted before it is checked again.
RESOLVE_TTL_S = 60.0


class Refused(ValueError):
    """The endpoint is not one the service may connect to; the message says why."""


def _matches(host: str, pattern: str) -> tuple[bool, bool]:
    """(matches, explicitly named): a wildcard matches subdomains only, and is not explicit."""
    pattern = pattern.lower().rstrip(".")
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and host != pattern[2:], False
    return host == pattern, True


def check_url(url: str, allowed: Sequence[str]) -> tuple[str, bool]:
    """The endpoint's host, and whether it was named explicitly; ``Refused`` if the
    URL is not https on the default port to an allowed host."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise Refused(f"endpoint is not a URL ({exc})") from None
    if parts.scheme != "https":
        raise Refused("endpoint must be an https URL")
    host = (parts.hostname or "").lower().rstrip(".")
    if not host:
        raise Refused("endpoint has no host")
    if parts.username is not None or parts.password is not None:
        raise Refused("endpoint must not carry credentials")
    for pattern in allowed:
        hit, explicit = _matches(host, pattern)
        if hit:
            if port not in (None, 443) and not explicit:
                raise Refused(f"endpoint port {port} is not allowed (443 only)")
            return host, explicit
    raise Refused(
        f"endpoint host {host} is not an allowed push service (gateway setting endpoint_hosts)"
    )


def is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


class Resolver:
    """Checks that a wildcard-matched host resolves only to public addresses, with a
    short cache (the check runs for every push to an endpoint)."""

    def __init__(self, ttl: float = RESOLVE_TTL_S) -> None:
        self.ttl = ttl
        self._cache: dict[str, tuple[float, str | None]] = {}

    async def check(self, url: str, allowed: Sequence[str]) -> None:
        """``Refused`` unless ``url`` may be connected to now."""
        host, explicit = check_url(url, allowed)
        if explicit:
            return
        now = time.monotonic()
        hit = self._cache.get(host)
        if hit is None or hit[0] < now:
            hit = (now + self.ttl, await self._problem(host))
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[host] = hit
        if hit[1] is not None:
            raise Refused(hit[1])

    @staticmethod
    async def _problem(host: str) -> str | None:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, 443, type=socket.SOCK_STREAM)
        except OSError as exc:
            return f"endpoint host {host} does not resolve ({exc.strerror or exc})"
        inward = sorted({str(info[4][0]) for info in infos if not is_public(str(info[4][0]))})
        if inward:
            return f"endpoint host {host} resolves to a non-public address ({inward[0]})"
        return None
