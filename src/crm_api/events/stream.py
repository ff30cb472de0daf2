"""``GET /v1/events/stream``: the feed as Server-Sent Events, as its events commit.

Each frame is one event: ``id:`` its sequence (the feed's ``after``), ``event:`` its type, ``data:`` the event
as the feed lists it. A client that reconnects with ``Last-Event-ID`` (a browser's ``EventSource`` does so
by itself) gets every event after that one and no other: the stream reads the feed's own statement
(``feed.after``), so it shows settled events only (``horizon.py``) and an event committing late cannot land
behind a position already sent, across reconnects and restarts alike.

Waking, per process: one ``LISTEN crm_events`` connection (``Hub``) hears the NOTIFY that a trigger sends at
the commit of every statement writing events, naming their workspaces (migration 0014), and wakes the
streams of those workspaces; a stream then reads what is new. No stream polls: an idle one only sends a
heartbeat comment every ``CRM_STREAM_HEARTBEAT_S``. One case is looked at again without a NOTIFY: a wake-up
that finds nothing, since its event may be held back behind an older transaction that will not notify
(one that deletes or updates events); the stream looks again after 0.5, 1, 2, 4 and 8 seconds.

A key holds at most ``CRM_STREAMS_PER_KEY`` streams per process (429 past it). A stream ends when the
server shuts down (``httpserver.DRAIN``) or the database fails under it; the client reconnects and resumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from .. import db, httpserver, jsonutil
from ..auth import Principal
from ..errors import RateLimited
from . import feed

log = logging.getLogger("crm_api.events.stream")

CHANNEL = "crm_events"
BATCH = 100
"""Events read per statement while a stream catches up."""
_RECHECKS = (0.5, 1.0, 2.0, 4.0, 8.0)


class Subscription:
    """One open stream: its workspace, its key, and the flag a NOTIFY for its workspace sets."""

    __slots__ = ("key_id", "wake", "workspace_id")

    def __init__(self, principal: Principal) -> None:
        self.workspace_id = principal.workspace_id
        self.key_id = principal.key_id
        self.wake = asyncio.Event()


class Hub:
    """The process's streams and the one connection that listens for them (taken with the first stream,
    given back when the app stops)."""

    def __init__(self, pool: Any, per_key: int) -> None:
        self.pool = pool
        self.per_key = per_key
        self.streams: dict[uuid.UUID, set[Subscription]] = {}
        self.per_key_open: dict[uuid.UUID, int] = {}
        self.draining = False
        self._listener: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()
        httpserver.DRAIN.add(self)

    def open(self, principal: Principal) -> Subscription:
        """Count the stream against its key (``RateLimited`` past the cap) and register it for wake-ups."""
        held = self.per_key_open.get(principal.key_id, 0)
        if held >= self.per_key:
            raise RateLimited(f"This API key already holds {held} event streams (at most {self.per_key})", 5)
        self.per_key_open[principal.key_id] = held + 1
        sub = Subscription(principal)
        self.streams.setdefault(sub.workspace_id, set()).add(sub)
        return sub

    def close(self, sub: Subscription) -> None:
        mine = self.streams.get(sub.workspace_id)
        if mine is not None:
            mine.discard(sub)
            if not mine:
                del self.streams[sub.workspace_id]
        left = self.per_key_open.get(sub.key_id, 1) - 1
        if left > 0:
            self.per_key_open[sub.key_id] = left
        else:
            self.per_key_open.pop(sub.key_id, None)

    async def listening(self) -> None:
        """Make sure the LISTEN connection is up. A new one wakes every stream: notifications sent while
        there was none are lost, and each stream reads what it may have missed."""
        if self._listener is not None and not self._listener.is_closed():
            return
        async with self._lock:
            if self._listener is not None and not self._listener.is_closed():
                return
            if self._listener is not None:
                await self.pool.release(self._listener)
                self._listener = None
            listener: asyncpg.Connection = await self.pool.take()
            listener.add_termination_listener(self._lost)
            await listener.add_listener(CHANNEL, self._notified)
            self._listener = listener
            self._wake_all()

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        if not payload:
            self._wake_all()
            return
        for text in payload.split(","):
            with contextlib.suppress(ValueError):
                for sub in self.streams.get(uuid.UUID(text), ()):
                    sub.wake.set()

    def _lost(self, _conn: object) -> None:
        self._wake_all()  # each stream's next read finds the connection gone and listens again

    def _wake_all(self) -> None:
        for subs in self.streams.values():
            for sub in subs:
                sub.wake.set()

    def drain(self) -> None:
        """End every stream (the server is shutting down)."""
        self.draining = True
        self._wake_all()

    async def aclose(self) -> None:
        self.drain()
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self.pool.release(self._listener)
            self._listener = None


def hub_of(app: Any) -> Hub:
    hub: Hub | None = getattr(app.state, "event_streams", None)
    if hub is None:
        settings = app.state.settings
        hub = app.state.event_streams = Hub(app.state.db.pool, settings.streams_per_key)
    return hub


def frame(row: Any) -> bytes:
    """One event as an SSE frame (the JSON is one line: orjson writes no newlines)."""
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (
        row["sequence"],
        row["type"].encode(),
        jsonutil.dumps(feed.to_api(row)),
    )


HEARTBEAT = b": keep-alive\n\n"


async def frames(
    hub: Hub,
    sub: Subscription,
    after: int,
    type_op: str | None,
    params: dict[str, Any],
    heartbeat_s: float,
) -> AsyncIterator[bytes]:
    """The stream's bytes after ``after``: a first comment at once, then events as they settle, heartbeats
    while idle; until the server drains or the database fails. The hub listens already (``Hub.listening``),
    so nothing committed after ``after`` was read is missed."""
    pool = hub.pool
    yield b"retry: 2000\n: connected\n\n"
    loop = asyncio.get_running_loop()
    last_sent = loop.time()
    recheck = -1  # index into _RECHECKS while a fruitless wake-up is looked at again; -1: not
    read = True
    try:
        while not hub.draining:
            if read:
                sub.wake.clear()  # before the read: a NOTIFY arriving during it wakes the next wait
                await hub.listening()
                rows = await feed.after(pool, sub.workspace_id, after, type_op, params, BATCH)
                for row in rows[:BATCH]:
                    yield frame(row)
                    after = row["sequence"]
                if rows:
                    last_sent = loop.time()
                    recheck = -1
                    if len(rows) > BATCH:
                        continue  # more to catch up on
            waited = _RECHECKS[recheck] if recheck >= 0 else heartbeat_s
            woken = True
            try:
                await asyncio.wait_for(sub.wake.wait(), min(waited, heartbeat_s))
            except TimeoutError:
                woken = False
            if woken:
                read = True
                recheck = 0 if recheck < 0 else recheck
            elif recheck >= 0:
                read = True
                recheck = recheck + 1 if recheck + 1 < len(_RECHECKS) else -1
            else:
                read = False
            if not woken and loop.time() - last_sent >= heartbeat_s:
                yield HEARTBEAT
                last_sent = loop.time()
    except db.ERRORS as exc:
        log.warning("event stream ended by a database fault: %s", exc)


class EventStream(StreamingResponse):
    """``text/event-stream`` whose subscription is given back however the response ends (even one never
    begun)."""

    media_type = "text/event-stream"

    def __init__(self, content: AsyncIterator[bytes], release: Callable[[], None]) -> None:
        # no-transform: proxies must not buffer or compress; X-Accel-Buffering: the same for nginx
        super().__init__(
            content, headers={"Cache-Control": "no-store, no-transform", "X-Accel-Buffering": "no"}
        )
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()
