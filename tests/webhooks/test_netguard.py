"""The SSRF guard: every spelling of a non-public address is refused unless an allow list names it."""

from __future__ import annotations

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
]


@pytest.mark.parametrize("url", REFUSED)
async def test_non_public_addresses_are_refused(url: str) -> None:
    with pytest.raises(netguard.Refused):
        await netguard.check_url(url, [])


async def test_public_address_is_allowed() -> None:
    assert [str(a) for a in await netguard.check_url("http://8.8.8.8/hook", [])] == ["8.8.8.8"]
    assert await netguard.check_url("https://8.8.8.8:8443/hook", [])
    assert await netguard.check_url("http://[2001:4860:4860::8888]/", [])


async def test_allow_list_lets_only_its_networks_through() -> None:
    allow = netguard.parse_allow(" 127.0.0.0/8 , ")
    assert [str(n) for n in allow] == ["127.0.0.0/8"]
    assert await netguard.check_url("http://127.0.0.1:9/hook", allow)
    assert await netguard.check_url("http://2130706433/", allow)
    assert await netguard.check_url("http://[::ffff:127.0.0.1]/", allow)
    for url in ("http://10.0.0.1/", "http://169.254.169.254/", "http://[::1]/", "http://192.168.1.1/"):
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
