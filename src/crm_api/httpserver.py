"""The HTTP/1.1 protocol ``crm-api serve`` runs: uvicorn's httptools protocol with the limits it lacks.

uvicorn bounds the idle time between requests (``timeout_keep_alive``) but not the time a client takes to
send a request's headers, nor their size (httptools reads a header of any length): a client that opens
connections and sends a few bytes now and then holds them forever. This protocol closes a connection whose
headers do not arrive within ``CRM_HEADER_TIMEOUT_S`` (408), refuses headers over ``CRM_MAX_HEADER_BYTES``
(431), and answers a connection over ``CRM_MAX_CONNECTIONS`` with a 503 before reading anything. Each answer
is a problem document with ``Connection: close``. The body's time is bounded by the request deadline
(``faults.Guard``).

A response of known length leaves in one write: uvicorn writes the status line and headers, then the body,
each at once (two ``send`` calls, two TCP segments, two wake-ups of the client for one small JSON answer);
``_OneWrite`` holds the head until the body's first bytes and sends them together. Streams (chunked) and
bodiless answers (HEAD, 204, 304, ``content-length: 0``) are written as before.

uvicorn takes it by name (``http="crm_api.httpserver:GuardedHttpTools"``), so worker processes load it too.
It extends uvicorn's own class at its connection and parser callbacks (written against uvicorn 0.54);
tests/faults/test_slow_clients.py drives each limit over real sockets and fails if an upgrade moves them.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Any, Protocol

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from . import jsonutil
from .config import get_settings
from .errors import PROBLEM_JSON, CRMError, HeadersTooLarge, Overloaded, RequestTimeout

log = logging.getLogger("crm_api.httpserver")

_LINGER_S = 1.0
_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large", 503: b"Service Unavailable"}


class _Refused(Exception):
    """Stops the parser after a refusal (uvicorn catches it as a parser error; ``send_400_response`` is
    silenced for it)."""


class Draining(Protocol):
    def drain(self) -> None: ...


DRAIN: weakref.WeakSet[Draining] = weakref.WeakSet()
"""What must end when the server shuts down (the event streams of ``events/stream.py``): uvicorn waits for
every response in progress to finish before it stops, and a stream never finishes by itself."""


# One sweep per server looks for heads past their deadline, instead of a timer per request: a timer armed
# and cancelled for every request costs more than the rest of this class together (measured: 2-5 us).
_SWEPT: weakref.WeakSet[ServerState] = weakref.WeakSet()


def _sweep(state: ServerState, loop: asyncio.AbstractEventLoop, every: float) -> None:
    now = loop.time()
    for protocol in list(state.connections):
        if isinstance(protocol, GuardedHttpTools):
            protocol.check_head(now)
    loop.call_later(every, _sweep, state, loop, every)


class _OneWrite:
    """The transport as one request's response cycle sees it: the head of a response whose body follows
    (a ``content-length`` above 0, not HEAD) is held and written with the body's first bytes, in one
    ``send``. Everything else passes straight through, and a close first writes whatever is held."""

    __slots__ = ("_cycle", "_held", "_transport")

    def __init__(self, transport: asyncio.Transport, cycle: Any) -> None:
        self._transport = transport
        self._cycle = cycle
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        if self._held is not None:
            data, self._held = self._held + data, None
        else:
            cycle = self._cycle
            # the cycle has just read the head's content-length and not yet sent any of the body
            if (
                cycle.response_started
                and not cycle.response_complete
                and cycle.chunked_encoding is False
                and cycle.expected_content_length > 0
                and cycle.scope["method"] != "HEAD"
                and data.startswith(b"HTTP/")
            ):
                self._held = data
                return
        self._transport.write(data)

    def close(self) -> None:
        if self._held is not None:
            self._transport.write(self._held)
            self._held = None
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class GuardedHttpTools(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = get_settings()
        self.head_timeout = settings.header_timeout_s
        self.max_head = settings.max_header_bytes
        self.max_connections = settings.max_connections
        # when the head being read began (the connection's start or a message's); None between heads
        self._head_since: float | None = None
        self._head_bytes = 0
        self._refused = False
        if self.server_state not in _SWEPT:
            _SWEPT.add(self.server_state)
            every = min(1.0, max(0.1, self.head_timeout / 4))
            self.loop.call_later(every, _sweep, self.server_state, self.loop, every)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_since = self.loop.time()
        if len(self.connections) > self.max_connections:
            log.warning("refused a connection: %d are open already", len(self.connections) - 1)
            self._refuse(Overloaded(f"This process serves at most {self.max_connections} connections"))

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        in_head = self._head_since is not None
        super().data_received(data)
        # all of this chunk belonged to headers still incomplete: count it (headers completed by the chunk
        # are measured exactly in on_headers_complete)
        if in_head and self._head_since is not None and not self._refused:
            self._head_bytes += len(data)
            if self._head_bytes > self.max_head:
                self._refuse(HeadersTooLarge(f"The request's headers exceed {self.max_head} bytes"))

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._head_since is None:  # else the connection's first head: its clock runs since the connect
            self._head_since = self.loop.time()
            self._head_bytes = 0

    def on_headers_complete(self) -> None:
        self._head_since = None
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > self.max_head:
            self._refuse(HeadersTooLarge(f"The request's headers exceed {self.max_head} bytes"))
            raise _Refused
        super().on_headers_complete()
        if self.cycle is not None:
            self.cycle.transport = _OneWrite(self.transport, self.cycle)  # type: ignore[assignment]

    def shutdown(self) -> None:
        for draining in list(DRAIN):
            draining.drain()
        super().shutdown()

    def send_400_response(self, msg: str) -> None:
        if not self._refused:
            super().send_400_response(msg)

    def check_head(self, now: float) -> None:
        """Closes the connection when the head being read is past its deadline (called by the sweep)."""
        since = self._head_since
        if since is None or now - since <= self.head_timeout or self.transport.is_closing():
            return
        self._refuse(RequestTimeout(f"The request's headers did not arrive within {self.head_timeout:g} s"))

    def _refuse(self, error: CRMError) -> None:
        """Answer ``error`` (unless a response is under way on this connection) and close."""
        self._refused = True
        self._head_since = None
        if (self.cycle is None or self.cycle.response_complete) and self.transport.can_write_eof():
            body = jsonutil.dumps(error.body(""))
            head = [
                b"HTTP/1.1 %d %s" % (error.status, _REASONS[error.status]),
                b"content-type: " + PROBLEM_JSON.encode(),
                b"content-length: %d" % len(body),
                b"connection: close",
            ]
            head += [f"{k}: {v}".encode() for k, v in (error.headers() or {}).items() if k != "Connection"]
            self.transport.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
            # Closing with the client's bytes unread would reset the connection, and a reset can destroy the
            # answer before the client reads it: end our side, drop what still arrives for a moment, then
            # close (a lingering close).
            self.transport.write_eof()
            self.loop.call_later(_LINGER_S, self.transport.close)
            return
        self.transport.close()
