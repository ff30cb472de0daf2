"""DNS rebinding: an attempt connects to an address the SSRF guard checked, never to a later lookup's answer.

A resolver the test controls answers for a name of the test's own: ``socket.getaddrinfo``, which both the
guard's lookup (asyncio's) and AnyIO's would call. Two real receivers share one port: one on 127.0.0.2,
the address the guard allows, and one on 127.0.0.1, the internal service a rebinding aims at. The TLS
tests serve a certificate from a CA made in the test (trustme) and see which name the client asked for.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import httpx
import pytest
import trustme
from receiver import Receiver, StartDispatcher, wait_for

from crm_api.webhooks.transport import connecting_to, make_transport

ALLOWED, INTERNAL = "127.0.0.2", "127.0.0.1"


class Resolver:
    """Answers ``name`` with ``first`` for the first lookups, then ``then`` for every later one."""

    def __init__(self, name: str, first: list[str], then: str) -> None:
        self.name, self.first, self.then = name, first, then
        self.lookups = 0

    def answer(self) -> str:
        self.lookups += 1
        return self.first[self.lookups - 1] if self.lookups <= len(self.first) else self.then


@pytest.fixture
def resolve(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """``resolve(first=[...], then=...)``: a fresh name answered by a Resolver; other names as usual."""
    real = socket.getaddrinfo
    resolvers: dict[str, Resolver] = {}

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name in resolvers:
            address = resolvers[name].answer()
            return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, int(port or 0)))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)

    def make(first: list[str], then: str) -> Resolver:
        resolver = Resolver(f"rebind-{uuid.uuid4().hex[:12]}.test", first, then)
        resolvers[resolver.name] = resolver
        return resolver

    yield make


@pytest.fixture
async def pair() -> AsyncIterator[tuple[Receiver, Receiver]]:
    """(allowed, internal): receivers on 127.0.0.2 and 127.0.0.1, on the same port."""
    for _ in range(10):
        allowed = await Receiver().start(ALLOWED)
        try:
            internal = await Receiver().start(INTERNAL, allowed.port)
        except OSError:  # that port is taken on 127.0.0.1: another one
            await allowed.close()
            continue
        break
    else:
        raise AssertionError("no port free on both 127.0.0.1 and 127.0.0.2")
    yield allowed, internal
    await allowed.close()
    await internal.close()


async def _post(transport: httpx.AsyncHTTPTransport, url: str) -> httpx.Response:
    response = await transport.handle_async_request(httpx.Request("POST", url, content=b"{}"))
    await response.aread()
    return response


# -- the transport ------------------------------------------------------------------------------------------


async def test_the_connection_goes_to_the_checked_address_and_the_request_keeps_the_name(
    resolve: Any, pair: tuple[Receiver, Receiver]
) -> None:
    allowed, internal = pair
    resolver = resolve(first=[], then=INTERNAL)  # any lookup of the name would answer the internal address
    url = f"http://{resolver.name}:{allowed.port}/hook"
    transport = make_transport(4, 4)
    try:
        # 127.0.0.3 answers nothing (connection refused): the next checked address is tried
        with connecting_to(resolver.name, ["127.0.0.3", ALLOWED]):
            assert (await _post(transport, url)).status_code == 200
    finally:
        await transport.aclose()
    assert [r.headers["host"] for r in allowed.at("/hook")] == [f"{resolver.name}:{allowed.port}"]
    assert internal.requests == [] and resolver.lookups == 0  # the transport never looked the name up


async def test_without_checked_addresses_for_the_name_nothing_is_connected(
    resolve: Any, pair: tuple[Receiver, Receiver]
) -> None:
    allowed, internal = pair
    resolver = resolve(first=[], then=INTERNAL)
    url = f"http://{resolver.name}:{allowed.port}/hook"
    for pinned in (None, ("other.test", [ALLOWED]), (resolver.name, [])):
        transport = make_transport(4, 4)  # a new pool each time: nothing kept alive to reuse
        try:
            with pytest.raises(httpx.ConnectError, match="no checked address"):
                if pinned is None:
                    await _post(transport, url)
                else:
                    with connecting_to(*pinned):
                        await _post(transport, url)
        finally:
            await transport.aclose()
    assert allowed.requests == [] and internal.requests == [] and resolver.lookups == 0


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


async def _tls_server(ca: trustme.CA, cert_for: str) -> tuple[asyncio.Server, list[str | None], list[bytes]]:
    """An HTTPS server on 127.0.0.1 with a certificate for ``cert_for``; records the SNI names asked for
    and each request's head."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(cert_for).configure_cert(context)
    names: list[str | None] = []
    heads: list[bytes] = []
    context.sni_callback = lambda _sock, name, _ctx: names.append(name)  # type: ignore[assignment,func-returns-value]

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            heads.append(head)
            await reader.readexactly(2)  # the test's body: b"{}"
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, INTERNAL, 0, ssl=context)
    return server, names, heads


def _trusting(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()  # hostname checked, certificate required
    ca.configure_trust(context)
    return context


async def test_tls_sni_and_host_keep_the_name(ca: trustme.CA) -> None:
    server, names, heads = await _tls_server(ca, "hooks.test")
    port = server.sockets[0].getsockname()[1]
    transport = make_transport(2, 2, ssl_context=_trusting(ca))
    try:
        async with server:
            with connecting_to("hooks.test", [INTERNAL]):
                response = await _post(transport, f"https://hooks.test:{port}/hook")
    finally:
        await transport.aclose()
    assert response.status_code == 200
    assert names == ["hooks.test"]
    assert f"host: hooks.test:{port}".encode() in heads[0].lower()


@pytest.mark.parametrize("cert_for", ["127.0.0.1", "other.test"], ids=["the-address", "another-name"])
async def test_the_certificate_is_checked_against_the_name(ca: trustme.CA, cert_for: str) -> None:
    """A certificate for the address connected to, or for another name, is not one for the URL's name."""
    server, names, heads = await _tls_server(ca, cert_for)
    port = server.sockets[0].getsockname()[1]
    transport = make_transport(2, 2, ssl_context=_trusting(ca))
    try:
        async with server:
            with connecting_to("hooks.test", [INTERNAL]), pytest.raises(httpx.ConnectError, match="CERTIF"):
                await _post(transport, f"https://hooks.test:{port}/hook")
    finally:
        await transport.aclose()
    assert names == ["hooks.test"] and heads == []  # asked for by name; nothing sent over it


# -- the dispatcher -----------------------------------------------------------------------------------------


async def _subscribe(api: httpx.AsyncClient, url: str) -> str:
    r = await api.post("/v1/webhooks", json={"url": url, "event_types": ["contact.created"]})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def _attempts(api: httpx.AsyncClient, endpoint: str) -> list[dict[str, Any]]:
    listed = (await api.get(f"/v1/webhooks/{endpoint}/deliveries")).json()["data"]
    if not listed:
        return []
    delivery = (await api.get(f"/v1/webhook-deliveries/{listed[0]['id']}")).json()
    return list(delivery["attempt_log"])


async def test_a_name_rebound_to_loopback_after_the_save_is_refused_at_send_time(
    api: httpx.AsyncClient,
    pool: asyncpg.Pool,
    start_dispatcher: StartDispatcher,
    resolve: Any,
    pair: tuple[Receiver, Receiver],
) -> None:
    allowed, internal = pair
    resolver = resolve(first=[ALLOWED], then=INTERNAL)  # zero-TTL records: the save sees the allowed one
    endpoint = await _subscribe(api, f"http://{resolver.name}:{allowed.port}/hook")
    assert resolver.lookups == 1
    try:
        await start_dispatcher(webhook_allow_cidrs=f"{ALLOWED}/32")
        assert (await api.post("/v1/contacts", json={"first_name": "r"})).status_code == 201
        attempts = await wait_for(lambda: _attempts(api, endpoint), within=30)
        assert attempts[0]["error"] == f"refused: {INTERNAL} is not a public address"
        assert attempts[0]["status_code"] is None and attempts[0]["response_body"] is None
    finally:
        await pool.execute(
            "UPDATE webhook_endpoints SET status = 'disabled' WHERE id = $1", uuid.UUID(endpoint)
        )
    assert internal.requests == [] and allowed.requests == []


async def test_an_attempt_connects_to_the_address_its_lookup_checked(
    api: httpx.AsyncClient,
    pool: asyncpg.Pool,
    start_dispatcher: StartDispatcher,
    resolve: Any,
    pair: tuple[Receiver, Receiver],
) -> None:
    allowed, internal = pair
    # the save's lookup and the attempt's answer the allowed address; a second lookup at connect time
    # would get the internal one
    resolver = resolve(first=[ALLOWED, ALLOWED], then=INTERNAL)
    endpoint = await _subscribe(api, f"http://{resolver.name}:{allowed.port}/hook")
    try:
        await start_dispatcher(webhook_allow_cidrs=f"{ALLOWED}/32")
        assert (await api.post("/v1/contacts", json={"first_name": "r"})).status_code == 201
        await wait_for(lambda: allowed.accepted("/hook"), within=30)
        attempts = await wait_for(lambda: _attempts(api, endpoint), within=30)
        assert attempts[0]["status_code"] == 200 and attempts[0]["error"] is None
    finally:
        await pool.execute(
            "UPDATE webhook_endpoints SET status = 'disabled' WHERE id = $1", uuid.UUID(endpoint)
        )
    assert [r.headers["host"] for r in allowed.at("/hook")] == [f"{resolver.name}:{allowed.port}"]
    assert internal.requests == [] and resolver.lookups == 2
