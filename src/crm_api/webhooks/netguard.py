"""The SSRF guard: webhooks reach public addresses only, unless a network is allowed explicitly.

The host is resolved and *every* address checked, at save time and again before each send. IPv4 written in
decimal, octal or hex (``2130706433``, ``0177.0.0.1``) is what ``getaddrinfo`` turns into a real address,
so it is checked as that address; IPv4-mapped and 6to4/NAT64 IPv6 forms are unwrapped to the IPv4 inside.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
import urllib.parse
from collections.abc import Sequence

from ..errors import field_error

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class Refused(Exception):
    """The URL may not be called; the message says why."""


def parse_allow(value: str) -> list[Network]:
    return [ipaddress.ip_network(part.strip(), strict=False) for part in value.split(",") if part.strip()]


def _embedded_v4(address: Address) -> ipaddress.IPv4Address | None:
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.sixtofour is not None:
            return address.sixtofour
        if address in _NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if address.teredo is not None:
            return address.teredo[1]
    return None


def check_address(address: Address, allow: Sequence[Network]) -> None:
    if any(address in net for net in allow if net.version == address.version):
        return
    inner = _embedded_v4(address)
    if inner is not None:
        check_address(inner, allow)
        return
    if not address.is_global or address.is_multicast:
        raise Refused(f"{address} is not a public address")


def split_url(url: str) -> tuple[str, int]:
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
    except ValueError:
        raise Refused("the URL's port is not valid") from None
    return parts.hostname, port


_CACHE_SECONDS = 5.0
_cache: dict[tuple[str, int], tuple[float, list[Address]]] = {}


async def resolve(host: str, port: int) -> list[Address]:
    """The host's addresses. An IP literal needs no lookup; a name is looked up at most every 5 s per
    process (getaddrinfo runs in a thread and was a dispatcher's largest cost per send)."""
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    hit = _cache.get((host, port))
    if hit is not None and hit[0] > time.monotonic():
        return hit[1]
    addresses = await _lookup(host, port)
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
        raw = str(info[4][0]).split("%")[0]
        out.append(ipaddress.ip_address(raw))
    if not out:
        raise Refused(f"{host} has no addresses")
    return out


async def check_url(url: str, allow: Sequence[Network]) -> list[Address]:
    """Raise ``Refused`` unless every address the URL's host resolves to may be called."""
    host, port = split_url(url)
    addresses = await resolve(host, port)
    for address in addresses:
        check_address(address, allow)
    return addresses


async def validate_for_save(url: str, allow: Sequence[Network]) -> None:
    try:
        await check_url(url, allow)
    except Refused as exc:
        raise field_error("/url", str(exc)) from None
