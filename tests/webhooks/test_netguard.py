"""The SSRF guard: every spelling of a non-public address is refused unless an allow list names it."""

from __future__ import annotations

import ipaddress

import pytest

from crm_api.webhooks import netguard

REFUSED = [
    "http://127.0.0.1/",
    "http://2130706433/",  # 127.0.0.1 in decimal
    "http://0177.0.0.1/",  # octal
    "http://0x7f.1/",  # hex, short form
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",  # IPv4-mapped
    "http://[::ffff:7f00:1]/",
    "http://[64:ff9b::7f00:1]/",  # NAT64
    "http://[2002:7f00:1::]/",  # 6to4
    "http://10.1.2.3/",
    "http://172.16.0.1/",
    "http://172.31.255.255/",
    "http://192.168.0.1/",
    "http://169.254.169.254/latest/meta-data/",  # cloud metadata
    "http://100.64.0.1/",  # carrier-grade NAT
    "http://0.0.0.0/",
    "http://[fe80::1]/",
    "http://[fc00::1]/",
    "http://224.0.0.1/",  # multicast
    "http://239.255.255.250/",
    "http://[ff02::1]/",
    "http://localhost:8080/hook",
    "http://localhost./",
    "http://127.1/",
    "http://0/",
    "http://[::127.0.0.1]/",  # IPv4-compatible IPv6 (::/96, deprecated)
    "http://[::7f00:1]/",
    "http://[::8.8.8.8]/",  # refused whatever IPv4 it carries
    "http://[::ffff:0:127.0.0.1]/",  # IPv4-translated (SIIT)
    "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",  # Teredo
    "http://[::]/",
]

# IANA's special-purpose address registries: every block not globally reachable (or deprecated), IPv4 and
# IPv6 (ipaddress's own tables differ between Python versions, so the guard must not lean on them alone)
NOT_GLOBAL = [
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/29", "192.0.0.8/32", "192.0.0.170/31", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16",
    "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4", "255.255.255.255/32",
    "::/128", "::1/128", "::/96", "64:ff9b:1::/48", "100::/64", "100:0:0:1::/64",
    "2001::/23", "2001::/32", "2001:2::/48", "2001:10::/28", "2001:20::/28", "2001:db8::/32", "3fff::/20",
    "5f00::/16", "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8", "4000::/3", "e000::/4",
]  # fmt: skip


@pytest.mark.parametrize("block", NOT_GLOBAL)
def test_every_special_purpose_block_is_refused(block: str) -> None:
    net = ipaddress.ip_network(block)
    for address in {net[0], net[min(1, net.num_addresses - 1)], net[net.num_addresses // 2], net[-1]}:
        with pytest.raises(netguard.Refused):
            netguard.check_address(address, [])


@pytest.mark.parametrize("url", REFUSED)
async def test_non_public_addresses_are_refused(url: str) -> None:
    with pytest.raises(netguard.Refused):
        await netguard.check_url(url, [])


async def test_public_address_is_allowed() -> None:
    assert await netguard.check_url("http://8.8.8.8/hook", []) == (
        "8.8.8.8",
        80,
        [ipaddress.ip_address("8.8.8.8")],
    )
    assert (await netguard.check_url("https://8.8.8.8:8443/hook", [])).port == 8443
    assert await netguard.check_url("http://[2001:4860:4860::8888]/", [])
    # IPv6 forms whose packets go to a public IPv4 address
    for url in ("http://[::ffff:8.8.8.8]/", "http://[64:ff9b::8.8.8.8]/", "http://[2002:808:808::1]/"):
        assert await netguard.check_url(url, [])


async def test_the_host_is_named_as_the_transport_names_it() -> None:
    """The checked addresses are pinned to this name: httpx's ASCII form (IDNA, IPv6 without brackets)."""
    assert netguard.split_url("https://Bücher.example:8443/x") == ("xn--bcher-kva.example", 8443)
    assert netguard.split_url("http://[2001:4860::8888]/") == ("2001:4860::8888", 80)
    assert netguard.split_url("http://EXAMPLE.com/") == ("example.com", 80)


async def test_allow_list_lets_only_its_networks_through() -> None:
    allow = netguard.parse_allow(" 127.0.0.0/8 , ")
    assert [str(n) for n in allow] == ["127.0.0.0/8"]
    assert await netguard.check_url("http://127.0.0.1:9/hook", allow)
    assert await netguard.check_url("http://2130706433/", allow)
    assert await netguard.check_url("http://[::ffff:127.0.0.1]/", allow)
    refused = ("http://10.0.0.1/", "http://169.254.169.254/", "http://[::1]/", "http://192.168.1.1/")
    for url in (*refused, "http://[::127.0.0.1]/"):
        with pytest.raises(netguard.Refused):
            await netguard.check_url(url, allow)
    assert netguard.parse_allow("") == []


@pytest.mark.parametrize(
    "url",
    [
        "http://user:pw@8.8.8.8/",
        "http://user@8.8.8.8/",
        "ftp://8.8.8.8/",
        "file:///etc/passwd",
        "gopher://8.8.8.8/",
        "javascript:alert(1)",
        "http:///nohost",
        "http://8.8.8.8:99999/",
        "http://host.invalid/",
    ],
)
async def test_malformed_urls_are_refused(url: str) -> None:
    with pytest.raises(netguard.Refused):
        await netguard.check_url(url, netguard.parse_allow("0.0.0.0/0"))
