"""Web Push endpoints: only allowed push services, never the service's own network."""

from __future__ import annotations

import asyncio

import pytest

from pushtrack.delivery.outbound import (
    DEFAULT_WEBPUSH_HOSTS,
    Refused,
    Resolver,
    check_url,
    is_public,
    parse_allow,
)


@pytest.mark.parametrize(
    "url",
    [
        "https://fcm.googleapis.com/fcm/send/abc",
        "https://updates.push.services.mozilla.com/wpush/v2/abc",
        "https://web.push.apple.com/QGx",
        "https://wns2-par02p.notify.windows.com/w/?token=x",
    ],
)
def test_the_browsers_push_services_are_allowed(url: str) -> None:
    check_url(url, DEFAULT_WEBPUSH_HOSTS)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://fcm.googleapis.com/fcm/send/abc", "https URL"),
        ("https://127.0.0.1:8443/internal", "127.0.0.1 is not a public address"),
        ("https://localhost/x", "not an allowed push service"),
        ("https://169.254.169.254/latest/meta-data", "169.254.169.254 is not a public address"),
        ("https://10.1.2.3/x", "10.1.2.3 is not a public address"),
        ("https://[fd00::1]/x", "fd00::1 is not a public address"),
        ("https://8.8.8.8/x", "8.8.8.8 is not an allowed push service"),
        ("https://fcm.googleapis.com.evil.example/x", "not an allowed push service"),
        ("https://evilfcm.googleapis.com/x", "not an allowed push service"),
        ("https://push.apple.com/x", "not an allowed push service"),  # the bare domain
        ("https://web.push.apple.com:8443/x", "443 only"),
        ("https://user:pw@fcm.googleapis.com/x", "credentials"),
        ("https://[::1/x", "not a URL"),
        ("https:///x", "no host"),
    ],
)
def test_anything_else_is_refused_with_the_reason(url: str, why: str) -> None:
    with pytest.raises(Refused, match=why):
        check_url(url, DEFAULT_WEBPUSH_HOSTS)


def test_a_wildcard_host_resolving_inward_is_refused_an_explicit_one_is_not() -> None:
    asyncio.run(_resolving())


async def _resolving() -> None:
    resolver = Resolver()
    # a name a wildcard allows, resolving to loopback (an IP literal resolves to itself)
    with pytest.raises(Refused, match="non-public address"):
        await resolver.check("https://127.0.0.1/x", ["*.0.0.1"])
    with pytest.raises(Refused, match="does not resolve"):
        await resolver.check("https://nowhere.invalid/x", ["*.invalid"])
    # named exactly, it is the operator's choice
    await resolver.check("https://localhost:8443/x", ["localhost"])
    await resolver.check("https://127.0.0.1:8443/x", ["127.0.0.1"])


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("142.250.74.78", True),
        ("2a00:1450:4007:80c::200a", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),
        ("::1", False),
        ("fe80::1", False),
        ("fd00::1", False),
        ("::ffff:10.0.0.1", False),
        ("224.0.0.1", False),
    ],
)
def test_public_addresses(address: str, public: bool) -> None:
    assert is_public(address) is public


@pytest.mark.parametrize(
    ("url", "allow"),
    [
        ("https://127.0.0.1:8443/internal", "127.0.0.1"),
        ("https://127.0.0.1:8443/internal", "10.0.0.0/8, 127.0.0.0/8"),
        ("https://push.internal/x", "push.internal"),
        ("https://[::1]:9000/x", "::1"),
    ],
)
def test_outbound_allow_names_what_may_be_reached_inward(url: str, allow: str) -> None:
    assert check_url(url, DEFAULT_WEBPUSH_HOSTS, parse_allow(allow))[1] is True
    with pytest.raises(Refused):
        check_url(url, DEFAULT_WEBPUSH_HOSTS, parse_allow("192.168.0.0/16, other.internal"))


def test_a_wildcard_host_may_resolve_into_a_network_outbound_allow_names() -> None:
    async def check() -> None:
        await Resolver().check("https://127.0.0.1/x", ["*.0.0.1"], parse_allow("127.0.0.0/8"))
        with pytest.raises(Refused, match=r"non-public address \(127.0.0.1\); setting outbound"):
            await Resolver().check("https://127.0.0.1/x", ["*.0.0.1"], parse_allow("10.0.0.0/8"))

    asyncio.run(check())


def test_a_connection_goes_to_the_address_checked_as_it_is_made() -> None:
    # Resolver.address runs when a Web Push connection is opened (the send-time check
    # is cached): the connection goes to the address it returns, never to a second
    # lookup's, so a name that resolves inward by then is never connected to.
    async def check() -> None:
        with pytest.raises(Refused, match=r"non-public address \(127.0.0.1\); setting outbound"):
            await Resolver.address("127.0.0.1", 443, ["*.0.0.1"])
        with pytest.raises(Refused, match="does not resolve"):
            await Resolver.address("nowhere.invalid", 443, ["*.invalid"])
        with pytest.raises(Refused, match="not an allowed push service"):
            await Resolver.address("localhost", 443, DEFAULT_WEBPUSH_HOSTS)
        # a network outbound_allow names: its address, as looked up now
        assert await Resolver.address("127.0.0.1", 443, ["*.0.0.1"], ("127.0.0.0/8",)) == (
            "127.0.0.1"
        )
        # named by the operator (exactly, or by outbound_allow): connected to by name
        assert await Resolver.address("localhost", 8443, ["localhost"]) == "localhost"
        assert await Resolver.address("push.internal", 9000, [], ("push.internal",)) == (
            "push.internal"
        )
        assert await Resolver.address("::1", 9000, [], parse_allow("::1")) == "::1"

    asyncio.run(check())
