"""Faults of ours become answers: a database that is down or out of time is a 503 with ``Retry-After``, a
request past its deadline is cancelled and answered, and nothing escapes to the server.

An exception that reaches uvicorn makes it close the connection without saying so (after Starlette's
``ServerErrorMiddleware`` has already sent a 500 and re-raised): the client's next request on that
connection gets no answer, which leaves a write without an Idempotency-Key ambiguous. ``Guard`` answers
every exception itself, so an error response is an ordinary response and the connection stays usable.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import sqlalchemy.exc
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import jsonutil
from .db import ConnectionLost
from .errors import PROBLEM_JSON, CRMError, DatabaseUnavailable, RequestTimeout, Timeout

log = logging.getLogger("crm_api.faults")

_GRACE = 5.0  # seconds a cancelled request may take to wind down before it is cancelled again

# SQLSTATE classes and codes that say the database cannot serve now, not that the request is wrong
_UNAVAILABLE_CLASSES = (
    "08",  # connection exception (08003: the connection is gone, 08006: it failed)
    "53",  # insufficient resources: disk full, out of memory, too many connections
    "57P",  # operator intervention: admin or crash shutdown, cannot connect now (starting up)
    "58",  # system error: I/O error
)
_TIMEOUT_CODES = {
    "57014": "a statement ran longer than the statement timeout",  # query_canceled
    "55P03": "a lock was not granted within the lock timeout",  # lock_not_available
    "25P03": "a transaction stayed idle too long",  # idle_in_transaction_session_timeout
    "40P01": "a deadlock was broken",  # deadlock_detected
    "40001": "a concurrent transaction got in the way",  # serialization_failure
}


def _sqlstate(exc: BaseException) -> str | None:
    # asyncpg's errors carry it; SQLAlchemy wraps a failed connect in a DBAPIError whose ``orig`` (its
    # adaptation of asyncpg's error) carries it too
    if isinstance(exc, sqlalchemy.exc.DBAPIError):
        exc = exc.orig or exc
    state = getattr(exc, "sqlstate", None)
    return state if isinstance(state, str) else None


def classify(exc: BaseException) -> CRMError | None:
    """The problem a database fault is, or None when ``exc`` is no fault of the database (a bug: 500)."""
    if isinstance(exc, CRMError):
        return exc
    if isinstance(exc, sqlalchemy.exc.TimeoutError):
        return Timeout("No database connection became free in time; the server is saturated")
    state = _sqlstate(exc)
    if state is not None:
        if state in _TIMEOUT_CODES:
            return Timeout(f"The request was stopped: {_TIMEOUT_CODES[state]}; nothing was written")
        if state.startswith(_UNAVAILABLE_CLASSES):
            return DatabaseUnavailable(f"The database cannot serve requests now ({state})")
        return None
    if isinstance(exc, ConnectionLost):
        return DatabaseUnavailable("The database connection was lost")
    if isinstance(exc, OSError):  # refused, reset, unreachable, a client-side timeout
        return DatabaseUnavailable("The database cannot be reached")
    if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated:
        return DatabaseUnavailable("The database connection was lost")
    return None


def first_line(exc: BaseException) -> str:
    """What a log line says of a fault (SQLAlchemy's messages run over several lines)."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def problem_body(error: CRMError, request_id: str) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """A problem's body and headers, as raw ASGI headers."""
    body = jsonutil.dumps(error.body(request_id))
    headers = [(b"content-type", PROBLEM_JSON.encode()), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in (error.headers() or {}).items()]
    return body, headers


class _InFlight:
    __slots__ = ("cancels", "deadline", "reading", "started")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.started = False  # the response has begun: too late to cancel or to answer anything else
        self.reading = False  # the app waits for body bytes: a deadline passing now is the client's slowness
        self.cancels = 0  # how often the sweep cancelled it

    @property
    def expired(self) -> bool:
        return self.cancels > 0


class Guard:
    """Runs each request under its deadline and answers whatever it raises.

    Placed inside ``RequestContext`` (its answers carry the request id) and outside everything else, so no
    exception reaches Starlette's ``ServerErrorMiddleware`` or the server.

    The deadline is kept by one sweep a second (a quarter of the deadline when shorter), which cancels the
    requests past it that have not begun their response: a timer armed and cancelled per request
    (``asyncio.timeout``) cost 11 us of a request's CPU, the sweep well under one. A request still there
    ``_GRACE`` seconds after a cancel is cancelled again: its cleanup waits on a database that does not
    answer (a ROLLBACK to a frozen server), and each cancel breaks that wait (the connection is then
    dropped, ``db.EnginePool.acquire``)."""

    def __init__(
        self, app: ASGIApp, request_timeout_s: float, uploads: dict[str, float] | None = None
    ) -> None:
        self.app = app
        self.timeout = request_timeout_s
        self.uploads = uploads or {}
        """path -> the deadline of a multipart POST there (a large file takes longer than any request)"""
        # per event loop (one in a server process; tests may run an app on several), each with its sweep
        self.in_flight: dict[asyncio.AbstractEventLoop, dict[asyncio.Task[Any], _InFlight]] = {}

    def _sweep(self, loop: asyncio.AbstractEventLoop, every: float) -> None:
        now = loop.time()
        for task, request in self.in_flight[loop].items():
            if now >= request.deadline and not request.started:
                request.cancels += 1
                request.deadline = now + _GRACE
                task.cancel()  # delivered where the request waits, which is before its response
        loop.call_later(every, self._sweep, loop, every)

    def _timeout(self, scope: Scope) -> float:
        if scope["method"] == "POST" and scope["path"] in self.uploads:
            for name, value in scope["headers"]:
                if name == b"content-type" and value.lower().startswith(b"multipart/form-data"):
                    return self.uploads[scope["path"]]
        return self.timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        task = asyncio.current_task()
        assert task is not None
        loop = task.get_loop()
        in_flight = self.in_flight.get(loop)
        if in_flight is None:
            in_flight = self.in_flight[loop] = {}
            every = min(1.0, self.timeout / 4)
            loop.call_later(every, self._sweep, loop, every)
        request = in_flight[task] = _InFlight(loop.time() + self._timeout(scope))

        async def watched_receive() -> Message:
            request.reading = True
            message = await receive()
            request.reading = False
            return message

        async def watched_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                request.started = True
            await send(message)

        try:
            await self.app(scope, watched_receive, watched_send)
        except asyncio.CancelledError:
            if not request.expired:
                raise  # the server's own cancellation (shutdown)
            await self._answer(scope, send, request, self._late(scope, request, "CancelledError"))
        except ClientDisconnect:
            return  # nobody to answer
        except Exception as exc:
            # the deadline's cancellation can surface as another error (a cleanup that failed on the way)
            error = self._late(scope, request, type(exc).__name__) if request.expired else None
            if error is None:
                error = classify(exc) or _crash(scope, exc)
                if isinstance(error, Timeout | DatabaseUnavailable):
                    log.warning("%s %s: %s (%s)", scope["method"], scope["path"], error.code, first_line(exc))
            await self._answer(scope, send, request, error)
        finally:
            del in_flight[task]
            for _ in range(request.cancels):
                task.uncancel()  # the cancellations were ours and have been answered

    def _late(self, scope: Scope, request: _InFlight, what: str) -> CRMError:
        log.warning("%s %s: past the request deadline (%s)", scope["method"], scope["path"], what)
        if request.reading:
            return RequestTimeout(f"The request body did not arrive within {self.timeout:g} s")
        return Timeout(f"The request did not finish within {self.timeout:g} s and was cancelled")

    async def _answer(self, scope: Scope, send: Send, request: _InFlight, error: CRMError) -> None:
        if request.started:  # too late for an answer; the server closes the connection
            log.warning("%s %s failed after its response started", scope["method"], scope["path"])
            return
        body, headers = problem_body(error, scope.get("state", {}).get("request_id", ""))
        await send({"type": "http.response.start", "status": error.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _crash(scope: Scope, exc: Exception) -> CRMError:
    log.error("unhandled error on %s %s", scope["method"], scope["path"], exc_info=exc)
    return CRMError("An unexpected error occurred; it has been logged")
