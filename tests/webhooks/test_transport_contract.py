"""What crm_api/webhooks/transport.py takes from httpcore and httpx beyond their documented API, pinned.

The dispatcher's transport swaps httpx's private connection pool (``AsyncHTTPTransport._pool``) for one on
its own network backend, which wraps httpcore's ``AnyIOBackend`` and answers httpcore's ``is_readable``
question from a socket it looks up once. The backend also connects only to addresses the SSRF guard checked
(``connecting_to``), which relies on httpcore: calling ``connect_tcp`` with the URL's host as
``httpx.URL.raw_host`` spells it, in the task that sends the request (the addresses ride in a context
variable); pooling connections per host name, so one opened for a name serves that name only; and taking the
TLS server name (SNI and certificate check) from the URL's host, not from what ``connect_tcp`` got (the TLS
tests in test_rebinding.py hold that one, against a real TLS server). An httpcore or httpx upgrade can
change any of that without a deprecation, so each test here names what changed and what to do: re-read
transport.py against the new version, fix it, then move the pins in pyproject.toml and requirements*.lock
(README: "Dependencies").
"""

from __future__ import annotations

import asyncio
import inspect
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpcore
import httpx
import pytest

from crm_api.webhooks.transport import _Backend, _Stream, connecting_to, make_transport

VERSIONS = f"httpcore {httpcore.__version__}, httpx {httpx.__version__}"


def _contract(what: str) -> str:
    return (
        f"webhooks/transport.py relies on {what}, which {VERSIONS} no longer provides as it did. Re-read "
        "transport.py against this version and adapt it before moving the pins (README: Dependencies)."
    )


def _parameters(function: Callable[..., Any]) -> list[tuple[str, object]]:
    """(name, default) of each parameter after self: what a caller passing them by position relies on."""
    params = list(inspect.signature(function).parameters.values())[1:]
    return [(p.name, p.default) for p in params]


def _methods(cls: type) -> set[str]:
    return {name for name, value in vars(cls).items() if callable(value) and not name.startswith("_")}


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [(_Stream, httpcore.AsyncNetworkStream), (_Backend, httpcore.AsyncNetworkBackend)],
    ids=["stream", "backend"],
)
def test_our_stream_and_backend_implement_every_method_httpcore_calls(ours: type, theirs: type) -> None:
    assert issubclass(ours, theirs), _contract(f"httpcore.{theirs.__name__} as a base class")
    missing = _methods(theirs) - _methods(ours)
    assert not missing, _contract(
        f"httpcore.{theirs.__name__} having no methods besides ours (new: {missing})"
    )
    for name in _methods(theirs):
        assert _parameters(getattr(ours, name)) == _parameters(getattr(theirs, name)), _contract(
            f"the signature of httpcore.{theirs.__name__}.{name}"
        )
        assert inspect.iscoroutinefunction(getattr(ours, name)) == inspect.iscoroutinefunction(
            getattr(theirs, name)
        ), _contract(f"httpcore.{theirs.__name__}.{name} staying sync or async as it was")


def test_anyio_backend_takes_our_arguments_by_position() -> None:
    """_Backend passes its arguments on to AnyIOBackend positionally, in its own order."""
    for name in ("connect_tcp", "connect_unix_socket", "sleep"):
        assert [n for n, _ in _parameters(getattr(httpcore.AnyIOBackend, name))] == [
            n for n, _ in _parameters(getattr(_Backend, name))
        ], _contract(f"the parameter order of httpcore.AnyIOBackend.{name}")
    assert not inspect.signature(httpcore.AnyIOBackend).parameters, _contract(
        "AnyIOBackend() taking no arguments"
    )


def test_the_pool_and_ssl_context_are_built_as_transport_py_builds_them() -> None:
    pool_params = inspect.signature(httpcore.AsyncConnectionPool).parameters
    for name in (
        "ssl_context",
        "max_connections",
        "max_keepalive_connections",
        "keepalive_expiry",
        "network_backend",
    ):
        assert name in pool_params, _contract(f"httpcore.AsyncConnectionPool({name}=...)")
    assert "trust_env" in inspect.signature(httpx.create_ssl_context).parameters, _contract(
        "httpx.create_ssl_context(trust_env=...)"
    )
    assert hasattr(httpcore, "SOCKET_OPTION"), _contract("httpcore.SOCKET_OPTION")
    stock = httpx.AsyncHTTPTransport(trust_env=False)
    assert isinstance(vars(stock).get("_pool"), httpcore.AsyncConnectionPool), _contract(
        "httpx.AsyncHTTPTransport keeping its connection pool in the attribute _pool"
    )
    assert isinstance(make_transport(3, 2)._pool, httpcore.AsyncConnectionPool)


class _Counting(_Stream):
    """Our stream, counting httpcore's questions: the point of transport.py is answering them cheaply."""

    asked: list[str] = []

    def get_extra_info(self, info: str) -> Any:
        self.asked.append(info)
        return super().get_extra_info(info)


class _CountingBackend(_Backend):
    hosts: list[str] = []  # the host each connect_tcp was given

    async def connect_tcp(self, host: str, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        self.hosts.append(host)
        stream = await super().connect_tcp(host, *args, **kwargs)
        assert isinstance(stream, _Stream)
        return _Counting(stream._inner)


@pytest.fixture
async def server() -> AsyncIterator[tuple[int, list[bytes]]]:
    """An HTTP/1.1 server on 127.0.0.1 that keeps connections alive and records each request body."""
    bodies: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.partition(b":")[2])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
                bodies.append(await reader.readexactly(length))
                if b"/slow" in head.split(b"\r\n")[0]:
                    await asyncio.sleep(5)
                writer.write(b"HTTP/1.1 201 Created\r\nContent-Length: 4\r\nRetry-After: 7\r\n\r\nmade")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    srv = await asyncio.start_server(serve, "127.0.0.1", 0)
    async with srv:
        yield srv.sockets[0].getsockname()[1], bodies


async def test_a_real_request_goes_through_our_backend_and_reuses_its_connection(
    server: tuple[int, list[bytes]],
) -> None:
    port, bodies = server
    transport = make_transport(4, 4, _CountingBackend())
    _Counting.asked = []
    try:
        for n in range(3):
            request = httpx.Request("POST", f"http://127.0.0.1:{port}/hook", content=b'{"n": %d}' % n)
            with connecting_to("127.0.0.1", ["127.0.0.1"]):
                response = await transport.handle_async_request(request)
            assert response.status_code == 201 and await response.aread() == b"made"
            assert response.headers["retry-after"] == "7"
        assert bodies == [b'{"n": 0}', b'{"n": 1}', b'{"n": 2}']
        connections = transport._pool.connections
        assert connections, _contract("httpx.AsyncHTTPTransport sending each request through self._pool")
        assert len(connections) == 1, "three requests in a row should share one kept-alive connection"
        assert "is_readable" in _Counting.asked, _contract(
            "httpcore asking a pooled connection's stream get_extra_info('is_readable') before reusing it"
        )
    finally:
        await transport.aclose()


async def test_the_stream_finds_its_socket(server: tuple[int, list[bytes]]) -> None:
    """_Stream polls the descriptor of what AnyIO gives for get_extra_info('socket')."""
    with connecting_to("127.0.0.1", ["127.0.0.1"]):
        stream = await _Backend().connect_tcp("127.0.0.1", server[0])
    try:
        assert isinstance(stream, _Stream)
        fileno = getattr(stream._sock, "fileno", None)
        assert callable(fileno) and fileno() >= 0, _contract(
            "AnyIOBackend streams answering get_extra_info('socket') with the connection's socket"
        )
        assert stream.get_extra_info("is_readable") is False  # open and quiet: fit for reuse
    finally:
        await stream.aclose()


async def test_httpcore_errors_still_arrive_as_httpx_errors(server: tuple[int, list[bytes]]) -> None:
    """The dispatcher catches httpx.TimeoutException and httpx.HTTPError; httpx maps httpcore's errors."""
    transport = make_transport(2, 2)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        free_port = closed.getsockname()[1]
    try:
        with connecting_to("127.0.0.1", ["127.0.0.1"]):
            with pytest.raises(httpx.ConnectError):
                await transport.handle_async_request(
                    httpx.Request("POST", f"http://127.0.0.1:{free_port}/", content=b"")
                )
            timeouts = {"timeout": {"connect": 1.0, "read": 0.2, "write": 1.0, "pool": 1.0}}
            slow = httpx.Request(
                "POST", f"http://127.0.0.1:{server[0]}/slow", content=b"{}", extensions=timeouts
            )
            with pytest.raises(httpx.ReadTimeout):
                await transport.handle_async_request(slow)
    finally:
        await transport.aclose()


async def test_connect_gets_the_url_host_in_the_sending_task_and_connections_are_pooled_per_name(
    server: tuple[int, list[bytes]],
) -> None:
    """Two names checked to one address: each request's connect_tcp gets its URL's host (IDNA-encoded as
    httpx.URL.raw_host spells it) while connecting_to is set in the sending task, and the second name
    gets a connection of its own rather than the first name's kept-alive one."""
    port = server[0]
    transport = make_transport(4, 4, _CountingBackend())
    _CountingBackend.hosts = []
    try:
        for name in ("a.test", "bücher.test", "a.test"):
            request = httpx.Request("POST", f"http://{name}:{port}/hook", content=b"{}")
            host = request.url.raw_host.decode("ascii")
            with connecting_to(host, ["127.0.0.1"]):
                try:
                    response = await transport.handle_async_request(request)
                except httpx.ConnectError as exc:
                    raise AssertionError(
                        _contract(f"httpcore calling connect_tcp(host={host!r}) in the sending task ({exc})")
                    ) from exc
            assert response.status_code == 201
            await response.aread()
        assert _CountingBackend.hosts == ["a.test", "xn--bcher-kva.test"], _contract(
            "httpcore passing connect_tcp the URL's raw host and pooling connections per host name"
        )
    finally:
        await transport.aclose()
