"""Slow, idle and greedy clients against a real ``crm-api serve``, over raw sockets: headers that never
finish are closed at the header deadline however slowly they trickle, an oversized header is refused
without being read, and a connection over the cap is answered 503 at once."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from faultkit import Serve

HEADER_TIMEOUT = 2.0
MAX_HEADER = 8192
MAX_CONNECTIONS = 20


@pytest.fixture(scope="module")
def serve(crm_url: str, workdir: Path) -> Iterator[Serve]:
    options = ["--header-timeout", str(HEADER_TIMEOUT), "--max-header-bytes", str(MAX_HEADER)]
    options += ["--max-connections", str(MAX_CONNECTIONS), "--keep-alive", "1"]
    server = Serve(crm_url, workdir / "slow-clients.log", {}, *options)
    yield server
    server.stop()


async def _until_closed(
    reader: asyncio.StreamReader, limit: float = HEADER_TIMEOUT + 4
) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and when it closed."""
    started = time.monotonic()
    data = b""
    try:
        async with asyncio.timeout(limit):
            while chunk := await reader.read(65536):
                data += chunk
    except ConnectionResetError:
        pass
    return data, time.monotonic() - started


async def test_half_sent_requests_are_closed_at_the_header_deadline(serve: Serve) -> None:
    conns = [await asyncio.open_connection("127.0.0.1", serve.port) for _ in range(15)]
    for _, writer in conns:
        writer.write(b"GET /v1/companies HTTP/1.1\r\nHost: x\r\n")  # never the blank line
        await writer.drain()
    outcomes = await asyncio.gather(*(_until_closed(reader) for reader, _ in conns))
    for data, after in outcomes:
        assert data.startswith(b"HTTP/1.1 408 "), data
        assert b"request_timeout" in data
        assert HEADER_TIMEOUT - 0.5 < after < HEADER_TIMEOUT + 3
    for _, writer in conns:
        writer.close()


async def test_a_trickle_does_not_extend_the_deadline(serve: Serve) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", serve.port)
    started = time.monotonic()

    async def trickle() -> None:
        for byte in b"GET /v1/companies HTTP/1.1\r\nX-Slow: " + b"a" * 100:
            if writer.is_closing():
                return
            writer.write(bytes([byte]))
            await asyncio.sleep(0.1)

    sender = asyncio.create_task(trickle())
    data, _ = await _until_closed(reader)
    sender.cancel()
    assert data.startswith(b"HTTP/1.1 408 "), data
    assert time.monotonic() - started < HEADER_TIMEOUT + 3
    writer.close()


async def test_a_silent_connection_is_closed(serve: Serve) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", serve.port)
    _, after = await _until_closed(reader)
    assert after < HEADER_TIMEOUT + 3
    writer.close()


@pytest.mark.parametrize("size", [1 << 20, 5 * MAX_HEADER], ids=["1 MB", "5 times the cap, unfinished"])
async def test_an_oversized_header_is_refused_before_it_ends(serve: Serve, size: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", serve.port)
    head = b"GET /v1/companies HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + b"k" * size

    async def send() -> None:
        with contextlib.suppress(ConnectionError):
            for at in range(0, len(head), 16384):
                writer.write(head[at : at + 16384])
                await writer.drain()

    sender = asyncio.create_task(send())
    data, after = await _until_closed(reader)
    await sender
    assert data.startswith(b"HTTP/1.1 431 "), data
    assert b"headers_too_large" in data
    assert after < HEADER_TIMEOUT  # refused on size, not at the deadline: the header never ended
    writer.close()


async def test_a_large_header_within_the_cap_is_served(serve: Serve) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", serve.port)
    writer.write(
        b"GET /v1/companies HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + b"k" * 6000 + b"\r\n\r\n"
    )
    status = await asyncio.wait_for(reader.readline(), 10)
    assert status.startswith(b"HTTP/1.1 401 "), status  # read, and answered: an unknown key
    writer.close()


async def test_connections_over_the_cap_are_answered_503(serve: Serve) -> None:
    held = [await asyncio.open_connection("127.0.0.1", serve.port) for _ in range(MAX_CONNECTIONS)]
    reader, writer = await asyncio.open_connection("127.0.0.1", serve.port)
    data, after = await _until_closed(reader)
    assert data.startswith(b"HTTP/1.1 503 "), data
    assert b"overloaded" in data and b"retry-after: 1" in data.lower()
    assert after < HEADER_TIMEOUT
    writer.close()
    for _, w in held:
        w.close()
    await asyncio.sleep(0.5)
    reader, writer = await asyncio.open_connection("127.0.0.1", serve.port)
    writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await asyncio.wait_for(reader.readline(), 10)).startswith(b"HTTP/1.1 200 ")
    writer.close()


async def test_an_idle_keep_alive_connection_is_closed(serve: Serve) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", serve.port)
    writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    data, after = await _until_closed(reader)
    assert data.startswith(b"HTTP/1.1 200 ")
    assert after < 1 + 3  # --keep-alive 1
    writer.close()
