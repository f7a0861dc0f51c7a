"""Where the service may connect on a tenant's say-so: Web Push endpoints, webhooks.

A browser subscription names the URL pushes are POSTed to, and a device (or
anyone holding a device token) registers it. Without a rule the worker would
connect wherever a subscription points, the service's own network included
(server-side request forgery). The rule:

- the endpoint is ``https`` on the default port, with a host name matching one
  of the patterns (``fcm.googleapis.com``, ``*.push.apple.com``: any subdomain);
- a host matched by a wildcard must resolve only to public addresses (not
  loopback, private, link-local, multicast or reserved: the cloud metadata
  address 169.254.169.254 is link-local), checked again when sending, so a name
  that later resolves inward is refused;
- a pattern that is an exact host or an IP address is the operator's explicit
  choice and may be private (a push service inside the operator's network);
- the setting ``outbound_allow`` (the same that webhooks follow) names hosts,
  addresses and networks the service may reach whatever else holds: an endpoint
  whose host, or every address its host resolves to, is named there is allowed
  on any port (a push service in the operator's network, local stand-ins in tests).

The patterns are the Web Push gateway setting ``endpoint_hosts`` (default: the
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


def check_url(url: str, allowed: Sequence[str], allow: Sequence[str] = ()) -> tuple[str, bool]:
    """The endpoint's host, and whether it was named explicitly (by ``endpoint_hosts``
    or ``outbound_allow``: no address check follows); ``Refused`` if the URL is not
    https on the default port to an allowed host."""
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
    try:
        literal: str | None = str(ipaddress.ip_address(host))
    except ValueError:
        literal = None
    if allow and _allowed(host, literal, allow):
        return host, True
    for pattern in allowed:
        hit, explicit = _matches(host, pattern)
        if hit:
            if port not in (None, 443) and not explicit:
                raise Refused(f"endpoint port {port} is not allowed (443 only)")
            return host, explicit
    if literal is not None and not is_public(literal):
        raise Refused(f"endpoint host {host} is not a public address (setting outbound_allow)")
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

    async def check(self, url: str, allowed: Sequence[str], allow: Sequence[str] = ()) -> None:
        """``Refused`` unless ``url`` may be connected to now; ``allow``: the entries of
        ``outbound_allow`` (addresses and networks there may be private)."""
        host, explicit = check_url(url, allowed, allow)
        if explicit:
            return
        now = time.monotonic()
        hit = self._cache.get(host)
        if hit is None or hit[0] < now:
            hit = (now + self.ttl, await self._problem(host, allow))
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[host] = hit
        if hit[1] is not None:
            raise Refused(hit[1])

    @staticmethod
    async def address(
        host: str, port: int, allowed: Sequence[str], allow: Sequence[str] = ()
    ) -> str:
        """The address a new connection to an endpoint host goes to: the host itself
        when the operator named it (``endpoint_hosts`` exactly, or ``outbound_allow``),
        else the first address it resolves to now, every one of which must still be
        public (or named by ``outbound_allow``). ``check`` ran when the push was sent,
        with a cache; this runs as the connection is made, and the connection goes to
        the address it checked, never to a second lookup's: ``Refused`` if not allowed."""
        shown = f"[{host}]" if ":" in host else host
        _, explicit = check_url(f"https://{shown}:{port}/", allowed, allow)
        if explicit:
            return host
        return await _public_address("endpoint host", host, port, allow)

    @staticmethod
    async def _problem(host: str, allow: Sequence[str]) -> str | None:
        try:
            await _public_address("endpoint host", host, 443, allow)
        except Refused as exc:
            return str(exc)
        return None


# -- webhooks -------------------------------------------------------------------------
#
# A webhook's URL is the sender's choice, so the same worry applies: a webhook must not
# reach the service's own network. It is https to a host that resolves to public
# addresses only (checked when connecting: the connection goes to the address that was
# checked), unless the setting ``outbound_allow`` names the host, the address or a
# network holding it; then http is allowed too.


def parse_allow(setting: str) -> tuple[str, ...]:
    """``outbound_allow`` as its entries (host names lower-cased, networks as written);
    ``Refused`` naming a malformed network."""
    out = []
    for part in setting.split(","):
        entry = part.strip().lower().rstrip(".")
        if not entry:
            continue
        if "/" in entry:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError as exc:
                raise Refused(f"outbound_allow: {entry!r} is not a network ({exc})") from None
        out.append(entry)
    return tuple(out)


def _allowed(host: str, address: str | None, allow: Sequence[str]) -> bool:
    for entry in allow:
        if entry == host or (address is not None and entry == address):
            return True
        if "/" in entry and address is not None:
            ip = ipaddress.ip_address(address)
            if ip in ipaddress.ip_network(entry, strict=False):
                return True
    return False


def check_webhook_url(url: str, allow: Sequence[str]) -> tuple[str, str, int]:
    """``(scheme, host, port)`` of a webhook URL; ``Refused`` saying why it may not be
    used (before any address is looked up: a literal address is checked here)."""
    if len(url) > 2048:
        raise Refused("url is longer than 2048 characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise Refused(f"url is not a URL ({exc})") from None
    if parts.scheme not in ("https", "http"):
        raise Refused("url must be an https URL")
    host = (parts.hostname or "").lower().rstrip(".")
    if not host:
        raise Refused("url has no host")
    if parts.username is not None or parts.password is not None:
        raise Refused("url must not carry credentials")
    if parts.fragment:
        raise Refused("url must not have a fragment")
    try:
        literal: str | None = str(ipaddress.ip_address(host))
    except ValueError:
        literal = None
    named = _allowed(host, literal, allow)
    if parts.scheme == "http" and not named:
        raise Refused("url must be an https URL (http only for hosts outbound_allow names)")
    if literal is not None and not named and not is_public(literal):
        raise Refused(f"url host {host} is not a public address (setting outbound_allow)")
    return parts.scheme, host, port or (443 if parts.scheme == "https" else 80)


async def webhook_address(host: str, port: int, allow: Sequence[str]) -> str:
    """The address to connect to for a webhook's host: the first it resolves to, all
    of which must be public unless ``outbound_allow`` names them; ``Refused`` if not."""
    return await _public_address("url host", host, port, allow)


async def _public_address(what: str, host: str, port: int, allow: Sequence[str]) -> str:
    """The first address ``host`` resolves to now, every one of which must be public
    unless ``outbound_allow`` names it; ``Refused`` saying why (of ``what``) if not."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise Refused(f"{what} {host} does not resolve ({exc.strerror or exc})") from None
    addresses = [str(info[4][0]) for info in infos]
    if not addresses:
        raise Refused(f"{what} {host} does not resolve")
    for address in addresses:
        if not is_public(address) and not _allowed(host, address, allow):
            raise Refused(
                f"{what} {host} resolves to a non-public address ({address});"
                " setting outbound_allow"
            )
    return addresses[0]
