"""The dispatcher's transport: a pooled connection the receiver hung up on is noticed and never reused."""

from __future__ import annotations

import asyncio

import httpx

from crm_api.webhooks.transport import _Backend, connecting_to, make_transport


async def test_a_hung_up_connection_reads_as_readable() -> None:
    hang_up = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await hang_up.wait()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        with connecting_to("127.0.0.1", ["127.0.0.1"]):
            stream = await _Backend().connect_tcp("127.0.0.1", port)
        assert stream.get_extra_info("is_readable") is False  # open and quiet: fit for reuse
        hang_up.set()
        for _ in range(100):
            if stream.get_extra_info("is_readable"):
                break
            await asyncio.sleep(0.01)
        assert stream.get_extra_info("is_readable") is True
        await stream.aclose()
        assert stream.get_extra_info("is_readable") is True  # closed: never handed out again


async def test_keep_alive_survives_a_receiver_that_closes_after_each_answer() -> None:
    """Each answer closes its connection; the next request must open a new one, not fail on the old."""
    served = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal served
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.partition(b":")[2])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
        await reader.readexactly(length)
        served += 1
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport = make_transport(4, 4)
    async with server:
        for _ in range(3):
            request = httpx.Request("POST", f"http://127.0.0.1:{port}/", content=b"{}")
            with connecting_to("127.0.0.1", ["127.0.0.1"]):
                response = await transport.handle_async_request(request)
            await response.aread()
            assert response.status_code == 200
            await asyncio.sleep(0.05)  # the hang-up reaches us before the next request
    await transport.aclose()
    assert served == 3
