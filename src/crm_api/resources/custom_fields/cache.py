"""A per-process cache of each workspace's custom field definitions, for the write path's checks.

Every create (and every write that sets custom values) judges them against the definitions: without a cache
that is a round trip per write for a table that changes a few times a month. Entries are dropped when the
definitions change: in the writing process at once (the spec's ``after_write``), and in every other process
when PostgreSQL delivers the NOTIFY that a trigger on ``custom_fields`` sends at commit (channel
``crm_custom_fields``, payload the workspace id; migration 0017).

The LISTEN connection is one of its own, outside the pool (it must not take a request's place). The cache
serves only while this process listens: before that connection is up, after it breaks (the
cache empties and stays off until a new one is up), in processes that never listen (workers, tests calling
services directly) and with ``CRM_DEFINITIONS_CACHE=false`` (Citus: triggers run on the workers, whose
NOTIFY never reaches the coordinator's listeners), every check reads the table as before.

Between a definition's commit and another process's receipt of its NOTIFY (a few milliseconds), that
process judges writes by the definitions as they were: as if the write had come a moment earlier. A write
refused by cached definitions is judged again against the table, so a new field is never refused for being
unknown; unique values stay unique whatever the cache holds (a trigger enforces them).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg

from ...db import ERRORS, EnginePool

log = logging.getLogger("crm_api.custom_fields")

CHANNEL = "crm_custom_fields"
_CLOSE_ERRORS: tuple[type[BaseException], ...] = (*ERRORS, TimeoutError)

Definitions = dict[str, dict[str, Any]]
Token = tuple[int, int]


class DefinitionsCache:
    def __init__(self) -> None:
        self._entries: dict[tuple[uuid.UUID, str], Definitions] = {}
        self._generation: dict[uuid.UUID, int] = {}  # bumped per workspace at each invalidation
        self._epoch = 0  # bumped when the cache empties
        self.live = False
        """Whether this process is listening, so that entries can be trusted."""
        self._suspended = 0

    @property
    def serving(self) -> bool:
        return self.live and not self._suspended

    @contextlib.contextmanager
    def suspended(self) -> Iterator[None]:
        """Reads the table for the block's duration, as a process without the cache does (for tests that
        count a writer's statements)."""
        self._suspended += 1
        try:
            yield
        finally:
            self._suspended -= 1

    def get(self, workspace_id: uuid.UUID, object_type: str) -> Definitions | None:
        return self._entries.get((workspace_id, object_type)) if self.serving else None

    def token(self, workspace_id: uuid.UUID) -> Token | None:
        """Taken before a read of the table: ``put`` keeps the read only if nothing changed meanwhile."""
        return (self._epoch, self._generation.get(workspace_id, 0)) if self.serving else None

    def put(self, workspace_id: uuid.UUID, object_type: str, defs: Definitions, token: Token | None) -> None:
        if token is not None and self.serving and token == self.token(workspace_id):
            self._entries[(workspace_id, object_type)] = defs

    def invalidate(self, workspace_id: uuid.UUID) -> None:
        self._generation[workspace_id] = self._generation.get(workspace_id, 0) + 1
        for key in [k for k in self._entries if k[0] == workspace_id]:
            del self._entries[key]

    def clear(self) -> None:
        self._epoch += 1
        self._entries.clear()
        self._generation.clear()

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            self.invalidate(uuid.UUID(payload))
        except ValueError:
            self.clear()

    async def run(self, pool: EnginePool, stop: asyncio.Event, retry_s: float = 1.0) -> None:
        """Listen until ``stop``; the cache serves only while a LISTEN connection is up."""
        while not stop.is_set():
            try:
                conn = await pool.connect_apart()
            except Exception as exc:
                log.warning("definitions cache: no LISTEN connection (%s); reading the table", exc)
                await _sleep_or_stop(stop, retry_s)
                continue
            lost = asyncio.Event()
            try:
                conn.add_termination_listener(_setter(lost))
                await conn.add_listener(CHANNEL, self._notified)
                self.clear()  # a change made before the LISTEN sent no NOTIFY here
                self.live = True
                await _first(stop.wait(), lost.wait())
            except Exception as exc:  # whatever broke it, the loop must live on: the cache is off meanwhile
                log.warning("definitions cache: LISTEN failed (%r); reading the table", exc)
            finally:
                self.live = False
                self.clear()
                await _close(conn)
            if not stop.is_set():
                await _sleep_or_stop(stop, retry_s)


async def _close(conn: asyncpg.Connection) -> None:
    try:
        await conn.close(timeout=5)
    except _CLOSE_ERRORS:
        conn.terminate()


async def _first(*waits: Any) -> None:
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


def _setter(event: asyncio.Event) -> Any:
    return lambda _conn: event.set()


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


CACHE = DefinitionsCache()
"""This process's cache (the app's lifespan runs its listener)."""
