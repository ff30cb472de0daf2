"""``GET /v1/events/stream``: the feed as Server-Sent Events, as its events commit.

Each frame is one event: ``id:`` its sequence (the feed's ``after``), ``event:`` its type, ``data:`` the event
as the feed lists it. A client that reconnects with ``Last-Event-ID`` (a browser's ``EventSource`` does so
by itself) gets every event after that one and no other: the stream reads the feed's own statement
(``feed.after``), so it shows settled events only (``horizon.py``) and an event committing late cannot land
behind a position already sent, across reconnects and restarts alike.

Waking, per process: one ``LISTEN crm_events`` connection (``Hub``) hears the NOTIFY that a trigger sends at
the commit of every statement writing events of a streamed workspace, naming those workspaces (migration
0014), and wakes their streams; a stream then reads what is new. A workspace is streamed while a hub holds
its row in ``event_stream_workspaces`` (written when a stream opens, refreshed every minute, deleted when
the hub's last stream of it closes), so writes nobody streams pay no NOTIFY. No stream polls: an idle one
only sends a heartbeat comment every ``CRM_STREAM_HEARTBEAT_S``. Two cases are looked at again without a
NOTIFY, after 0.5, 1, 2, 4 and 8 seconds: a stream's first moments (a writer whose statement began before
the workspace's row was written does not notify), and a wake-up that finds nothing (its event may be held
back behind an older transaction that will not notify, one that deletes or updates events).

A key holds at most ``CRM_STREAMS_PER_KEY`` streams per process (429 past it). A stream ends when the
server shuts down (``httpserver.DRAIN``) or the database fails under it; the client reconnects and resumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import asyncpg
from sqlalchemy import Delete, Insert, delete, func, select
from sqlalchemy.dialects.postgresql import ARRAY, UUID, insert
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from .. import db, httpserver, jsonutil, sql
from ..auth import Principal
from ..errors import RateLimited
from . import feed

log = logging.getLogger("crm_api.events.stream")

CHANNEL = "crm_events"
BATCH = 100
"""Events read per statement while a stream catches up."""
_RECHECKS = (0.5, 1.0, 2.0, 4.0, 8.0)
REFRESH_S = 60.0
"""How often a hub refreshes its workspaces' rows (the trigger ignores rows older than 5 minutes)."""


def _register() -> Insert:
    s = sql.table("event_stream_workspaces")
    rows = select(func.unnest(sql.param("workspaces", ARRAY(UUID))), sql.param("hub", UUID), func.now())
    stmt = insert(s).from_select(["workspace_id", "hub_id", "seen_at"], rows)
    # the excluded row's time, not now() again: Citus takes only immutable functions in DO UPDATE
    key = [s.c.workspace_id, s.c.hub_id]
    return stmt.on_conflict_do_update(index_elements=key, set_={"seen_at": stmt.excluded.seen_at})


def _unregister() -> Delete:
    s = sql.table("event_stream_workspaces")
    return delete(s).where(s.c.workspace_id == sql.param("ws"), s.c.hub_id == sql.param("hub"))


_REGISTER = sql.Query(_register)
_UNREGISTER = sql.Query(_unregister)


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
        self.id = uuid.uuid4()
        self.streams: dict[uuid.UUID, set[Subscription]] = {}
        self.per_key_open: dict[uuid.UUID, int] = {}
        self.draining = False
        self._listener: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._refresher: asyncio.Task[None] | None = None
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
                self._spawn(self._unregister(sub.workspace_id))
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
            # a new listener may follow a crash of the database, which empties the (unlogged) rows
            await self.register(list(self.streams))
            if self._refresher is None or self._refresher.done():
                self._refresher = asyncio.create_task(self._refresh_forever())
            self._wake_all()

    async def register(self, workspaces: list[uuid.UUID]) -> None:
        """Mark the workspaces as streamed by this hub, so their writes notify (before a stream reads)."""
        if workspaces:
            await _REGISTER.execute(self.pool, workspaces=workspaces, hub=self.id)

    async def _unregister(self, workspace_id: uuid.UUID) -> None:
        await _UNREGISTER.execute(self.pool, ws=workspace_id, hub=self.id)
        if workspace_id in self.streams:  # a stream of it opened meanwhile: its row must stay
            await self.register([workspace_id])

    async def _refresh_forever(self) -> None:
        while not self.draining:
            await asyncio.sleep(REFRESH_S)
            try:
                await self.register(list(self.streams))
            except db.ERRORS as exc:
                log.warning("event stream workspaces not refreshed: %s", exc)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        async def guarded() -> None:
            try:
                await work
            except db.ERRORS as exc:  # the row ages out of the trigger's view by itself
                log.warning("event stream workspace not unregistered: %s", exc)

        task = asyncio.get_running_loop().create_task(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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
        if self._refresher is not None:
            self._refresher.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*self._tasks)
            for workspace_id in list(self.streams):
                await _UNREGISTER.execute(self.pool, ws=workspace_id, hub=self.id)
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
    recheck = 0  # index into _RECHECKS of the next look without a NOTIFY; -1: none due
    starting = True  # the start's looks run to their end; later ones only while wake-ups find nothing
    woken = False
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
                if woken and not starting:
                    recheck = -1 if rows else 0  # a fruitless wake-up: its event may be held back
                if len(rows) > BATCH:
                    continue  # more to catch up on
            waited = _RECHECKS[recheck] if recheck >= 0 else heartbeat_s
            try:
                await asyncio.wait_for(sub.wake.wait(), min(waited, heartbeat_s))
                woken = True
            except TimeoutError:
                woken = False
            read = woken or recheck >= 0
            if not woken and recheck >= 0:
                recheck += 1
                if recheck == len(_RECHECKS):
                    recheck, starting = -1, False
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
