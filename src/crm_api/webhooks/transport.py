"""The dispatcher's HTTP transport: httpx's, on a network backend that connects only to addresses the SSRF
guard checked, and finds a connection's socket once.

Connecting: httpcore hands the backend the URL's host name. The backend never resolves it: it connects to
the addresses the caller checked for that very name (``connecting_to``, set around each request), and to
nothing when there are none. The request itself keeps the name, so the ``Host`` header, TLS SNI and the
certificate check are the name's; only the TCP connect gets the IP. A kept-alive connection is reused for
the same name only (httpcore pools by scheme, host and port), and it goes to an address checked when it was
opened.

Polling: httpcore asks every pooled connection whether its socket is readable (did the server hang up?) each
time it hands out a connection and each time one is returned; through anyio every ask rebuilds the stream's
whole attribute table (a ``getpeername`` call and enum conversions), which was ~20% of a dispatcher's CPU
under py-spy. Here the socket is looked up once per connection and polled directly: the same check, done
cheaply.
"""

# The timeout parameters are httpcore's interface, passed through as they come.
# ruff: noqa: ASYNC109

from __future__ import annotations

import contextlib
import contextvars
import select
import socket
import ssl
import typing
from collections.abc import Iterator, Sequence

import httpcore
import httpx


def _readable(sock: socket.socket) -> bool:
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    return bool(poller.poll(0))


class _Stream(httpcore.AsyncNetworkStream):
    __slots__ = ("_inner", "_sock")

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner
        self._sock: socket.socket | None = inner.get_extra_info("socket")

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.AsyncNetworkStream:
        return _Stream(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> typing.Any:
        if info == "is_readable":
            # a closed socket has no descriptor: it cannot be reused, which is what "readable" tells httpcore
            return self._sock is None or self._sock.fileno() < 0 or _readable(self._sock)
        return self._inner.get_extra_info(info)


# (host as httpcore names it, the addresses to connect to in order): set per request by ``connecting_to``.
# A context variable because httpcore connects in the task that sends the request, and passes the backend
# nothing of the request.
_CHECKED: contextvars.ContextVar[tuple[str, tuple[str, ...]] | None] = contextvars.ContextVar(
    "crm_webhook_checked_addresses", default=None
)


@contextlib.contextmanager
def connecting_to(host: str, addresses: Sequence[object]) -> Iterator[None]:
    """Within this block a new connection to ``host`` goes to one of ``addresses`` (IPs the caller checked),
    tried in order; ``host`` is the URL's host in httpx's ASCII form (``httpx.URL.raw_host``)."""
    token = _CHECKED.set((host, tuple(str(a) for a in addresses)))
    try:
        yield
    finally:
        _CHECKED.reset(token)


class _Backend(httpcore.AsyncNetworkBackend):
    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        checked = _CHECKED.get()
        if checked is None or checked[0] != host or not checked[1]:
            raise httpcore.ConnectError(f"no checked address to connect to for {host}")
        options = list(socket_options or ())  # an iterable may be read once; each try needs it whole
        failure: httpcore.ConnectError | None = None
        for address in checked[1]:  # an IP literal: AnyIO connects to it without a lookup
            try:
                stream = await self._inner.connect_tcp(address, port, timeout, local_address, options)
            except httpcore.ConnectError as exc:  # refused or unreachable: the next checked address
                failure = exc
                continue
            return _Stream(stream)
        assert failure is not None
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        # the pool is never given a socket path; were it, there would be no checked address to go to
        raise httpcore.ConnectError("webhooks connect over TCP to checked addresses only")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def make_transport(
    max_connections: int,
    max_keepalive: int,
    backend: httpcore.AsyncNetworkBackend | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> httpx.AsyncHTTPTransport:
    """httpx's transport (its request/response mapping and exceptions) over a pool on ``_Backend``.
    ``ssl_context`` defaults to httpx's (certifi's CAs, hostname checked); tests pass one trusting their CA.

    It reaches into httpx (``_pool``) and httpcore (the backend and stream classes): the versions it was
    written for are pinned, and tests/webhooks/test_transport_contract.py fails when an upgrade moves them.
    """
    transport = httpx.AsyncHTTPTransport(trust_env=False)
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=ssl_context or httpx.create_ssl_context(trust_env=False),
        max_connections=max_connections,
        max_keepalive_connections=max_keepalive,
        keepalive_expiry=5.0,  # httpx's default
        network_backend=backend or _Backend(),
    )
    return transport
