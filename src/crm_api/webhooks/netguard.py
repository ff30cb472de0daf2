"""The SSRF guard: webhooks reach public addresses only, unless a network is allowed explicitly.

The host is resolved and *every* address checked, at save time and again before each attempt; the attempt
then connects to one of the addresses checked (``transport.connecting_to``), never to a second lookup's
answer, so a name that answers differently from one lookup to the next (DNS rebinding) cannot slip
through. IPv4 written in decimal or hex (``2130706433``, ``0x7f.1``) is what ``getaddrinfo`` turns into a
real address, so it is checked as that address. IPv6 that carries an IPv4 address the packets go to
(mapped, SIIT-translated, NAT64, 6to4) is checked as that IPv4; IPv4-compatible IPv6 (``::/96``,
deprecated) and Teredo are refused outright.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
import urllib.parse
from collections.abc import Sequence
from typing import NamedTuple

import httpx

from ..errors import field_error

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

_net = ipaddress.ip_network
# The only IPv6 unicast space routed on the internet (RFC 4291 2.4); the rest is reserved, local or special.
_V6_GLOBAL_UNICAST = _net("2000::/3")
# Forms whose packets go to the IPv4 address in their low 32 bits.
_V4_INSIDE = (
    _net("::ffff:0:0/96"),  # IPv4-mapped: the socket layer sends to the IPv4 address itself
    _net("::ffff:0:0:0/96"),  # IPv4-translated (SIIT, RFC 6052 2.1)
    _net("64:ff9b::/96"),  # NAT64 well-known prefix (RFC 6052)
)
_V4_COMPATIBLE = _net("::/96")  # deprecated (RFC 4291 2.5.5.1); some stacks still route it as IPv4
# Not globally reachable (IANA special-purpose registries) although this Python's ipaddress may say so:
# its tables differ between versions, so these are named here.
_NOT_GLOBAL: tuple[Network, ...] = (
    _net("192.0.0.8/32"),  # IPv4 dummy address (RFC 7600)
    _net("192.88.99.0/24"),  # 6to4 relay anycast, deprecated (RFC 7526)
    _net("2001::/23"),  # IETF protocol assignments, Teredo (2001::/32) among them
    _net("2001:db8::/32"),  # documentation
    _net("3fff::/20"),  # documentation (RFC 9637)
    _net("64:ff9b:1::/48"),  # local-use NAT64 (RFC 8215)
)


class Refused(Exception):
    """The URL may not be called; the message says why."""


class Target(NamedTuple):
    """Where an attempt may connect: ``host`` as the HTTP transport names it, and its checked addresses."""

    host: str
    port: int
    addresses: list[Address]


def parse_allow(value: str) -> list[Network]:
    return [ipaddress.ip_network(part.strip(), strict=False) for part in value.split(",") if part.strip()]


def _v4_inside(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.sixtofour is not None:
        return address.sixtofour
    for net in _V4_INSIDE:
        if address in net:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _is_public(address: Address) -> bool:
    if not address.is_global or address.is_multicast or address.is_reserved:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address not in _V6_GLOBAL_UNICAST:
        return False
    return not any(address in net for net in _NOT_GLOBAL if net.version == address.version)


def check_address(address: Address, allow: Sequence[Network]) -> None:
    if any(address in net for net in allow if net.version == address.version):
        return
    if isinstance(address, ipaddress.IPv6Address):
        inner = _v4_inside(address)
        if inner is not None:
            check_address(inner, allow)
            return
        if address in _V4_COMPATIBLE and not (address.is_loopback or address.is_unspecified):
            raise Refused(f"{address} is an IPv4-compatible IPv6 address")
    if not _is_public(address):
        raise Refused(f"{address} is not a public address")


def split_url(url: str) -> tuple[str, int]:
    """The URL's host as the HTTP transport will connect to it (httpx's ASCII form: IDNA-encoded, IPv6
    without brackets) and its port. The checked addresses are pinned to exactly that name."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:  # "https://[::1/": an unclosed IPv6 literal
        raise Refused("not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Refused("the URL must be http:// or https:// with a host")
    if parts.username or parts.password:
        raise Refused("the URL must not carry credentials")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        host = httpx.URL(url).raw_host.decode("ascii")
    except (ValueError, httpx.InvalidURL):
        raise Refused("the URL's host or port is not valid") from None
    return host, port


_CACHE_SECONDS = 5.0
_cache: dict[tuple[str, int], tuple[float, list[Address]]] = {}


def _literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


async def resolve(host: str, port: int, cached: bool = True) -> list[Address]:
    """The host's addresses. An IP literal needs no lookup; a name is looked up at most every 5 s per
    process when ``cached`` (getaddrinfo runs in a thread and was a dispatcher's largest cost per send).
    The answers are checked at each use, and an attempt connects only to one of them."""
    literal = _literal(host)
    if literal is not None:
        return [literal]
    if cached:
        hit = _cache.get((host, port))
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
    addresses = await _lookup(host, port)
    if cached:
        if len(_cache) > 10_000:
            _cache.clear()
        _cache[(host, port)] = (time.monotonic() + _CACHE_SECONDS, addresses)
    return addresses


async def _lookup(host: str, port: int) -> list[Address]:
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise Refused(f"cannot resolve {host}: {exc}") from None
    out: list[Address] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if address not in out:
            out.append(address)
    if not out:
        raise Refused(f"{host} has no addresses")
    return out


async def check_url(url: str, allow: Sequence[Network], cached: bool = True) -> Target:
    """Where ``url`` may be called: raises ``Refused`` unless every address its host resolves to may be."""
    host, port = split_url(url)
    addresses = await resolve(host, port, cached)
    for address in addresses:
        check_address(address, allow)
    return Target(host, port, addresses)


async def validate_for_save(url: str, allow: Sequence[Network]) -> None:
    """A save looks the name up afresh: what it checks is what the name answers now."""
    try:
        await check_url(url, allow, cached=False)
    except Refused as exc:
        raise field_error("/url", str(exc)) from None
