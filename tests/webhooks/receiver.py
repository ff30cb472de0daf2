"""A real HTTP/1.1 webhook receiver on 127.0.0.1 for the dispatcher tests.

It listens on a free port in the test's own event loop, records every request (path, headers, raw body,
the status it answered) and answers as the test programs it, per request: a status code, extra headers
(``Retry-After``, ``Location``), a delay, or a hang that lasts until ``release()`` or its time is up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from crm_api.webhooks.dispatcher import Dispatcher


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering; ended early by Receiver.release()
    body: bytes = b"ok"


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    received_at: float
    status: int | None = None  # what the receiver answered (None until it has)
    peer_port: int = 0  # the sender's side of the connection
    answer_at: float = 0.0  # when the receiver means to answer (received_at + the reply's delay)

    def json(self) -> Any:
        return json.loads(self.body)


StartDispatcher = Callable[..., Awaitable[Dispatcher]]
Behaviour = Callable[[Request, int], Reply]  # (the request, its 0-based index for its path) -> reply

_REASONS = {200: "OK", 204: "No Content", 302: "Found", 410: "Gone", 429: "Too Many Requests"}


class Receiver:
    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.behaviours: dict[str, Behaviour] = {}
        self._counts: Counter[str] = Counter()
        self._released = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[Any]] = set()
        self.port = 0

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> Receiver:
        self._server = await asyncio.start_server(self._serve, host, port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        self.release()
        if self._server is not None:
            self._server.close()
            for task in list(self._handlers):
                task.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def on(self, path: str, behaviour: Behaviour) -> None:
        self.behaviours[path] = behaviour

    def release(self) -> None:
        """End every delay now and from now on."""
        self._released.set()

    def at(self, path: str = "/hook") -> list[Request]:
        return [r for r in self.requests if r.path == path]

    def accepted(self, path: str = "/hook") -> list[Request]:
        return [r for r in self.at(path) if r.status is not None and 200 <= r.status < 300]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        peer = writer.get_extra_info("peername")
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers: dict[str, str] = {}
                for line in lines[1:]:
                    if line:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                request = Request(method, path, headers, body, time.monotonic(), peer_port=peer[1])
                index = self._counts[path]  # the request's index for its path
                self._counts[path] += 1
                self.requests.append(request)
                behaviour = self.behaviours.get(path)
                reply = behaviour(request, index) if behaviour else Reply()
                request.answer_at = request.received_at + reply.delay
                if reply.delay:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._released.wait(), reply.delay)
                out = [f"HTTP/1.1 {reply.status} {_REASONS.get(reply.status, 'Status')}"]
                out += [f"{k}: {v}" for k, v in reply.headers.items()]
                out += [f"Content-Length: {len(reply.body)}", "Connection: keep-alive", "", ""]
                writer.write("\r\n".join(out).encode("latin-1") + reply.body)
                await writer.drain()
                request.status = reply.status
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._handlers.discard(task)
            writer.close()


async def wait_for(
    check: Callable[[], Awaitable[Any]] | Callable[[], Any], within: float = 20.0, interval: float = 0.05
) -> Any:
    """Poll ``check`` (sync or async) until it returns something truthy; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    last: Any = None
    while True:
        last = check()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within} s (last value {last!r})")
        await asyncio.sleep(interval)
