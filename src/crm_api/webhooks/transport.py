"""The dispatcher's HTTP transport: httpx's, on a network backend that finds a connection's socket once.

httpcore asks every pooled connection whether its socket is readable (did the server hang up?) each time it
hands out a connection and each time one is returned; through anyio every ask rebuilds the stream's whole
attribute table (a ``getpeername`` call and enum conversions), which was ~20% of a dispatcher's CPU under
py-spy. Here the socket is looked up once per connection and polled directly: the same check, done cheaply.
"""

# The timeout parameters are httpcore's interface, passed through as they come.
# ruff: noqa: ASYNC109

from __future__ import annotations

import select
import socket
import ssl
import typing

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
        return _Stream(await self._inner.connect_tcp(host, port, timeout, local_address, socket_options))

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return _Stream(await self._inner.connect_unix_socket(path, timeout, socket_options))

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def make_transport(
    max_connections: int, max_keepalive: int, backend: httpcore.AsyncNetworkBackend | None = None
) -> httpx.AsyncHTTPTransport:
    """httpx's transport (its request/response mapping and exceptions) over a pool on ``_Backend``.

    It reaches into httpx (``_pool``) and httpcore (the backend and stream classes): the versions it was
    written for are pinned, and tests/webhooks/test_transport_contract.py fails when an upgrade moves them.
    """
    transport = httpx.AsyncHTTPTransport(trust_env=False)
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(trust_env=False),
        max_connections=max_connections,
        max_keepalive_connections=max_keepalive,
        keepalive_expiry=5.0,  # httpx's default
        network_backend=backend or _Backend(),
    )
    return transport
