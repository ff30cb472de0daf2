"""When each API key was last used (``api_keys.last_used_at``), without a write per request.

Authentication notes the key's use in memory (one dict store). A background task of each API process writes,
every ``key_use_flush_seconds``, the keys used since then, in one statement, skipping any whose
``last_used_at`` this process wrote less than ``key_use_seconds`` (a minute) before; the statement's own
condition does the same for what other processes wrote. So a key in constant use is written once a minute,
and ``last_used_at`` is right to within that minute plus one flush.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import math
import time
import uuid
from typing import Any

import asyncpg
from sqlalchemy import DateTime, Float, Interval, Update, cast, column, func, or_, update
from sqlalchemy.dialects.postgresql import JSONB, UUID

from . import jsonutil, sql
from .auth import Principal

log = logging.getLogger("crm_api.key_use")

_SECOND = cast(sql.const("1 second"), Interval)
_FORGET_AFTER = 100_000  # keys remembered as written; past this the memory starts over


def _touch() -> Update:
    """``last_used_at`` of the keys in ``rows`` (workspace_id, id, at), each unless written less than
    ``every`` seconds before its ``at``."""
    k = sql.table("api_keys")
    r = (
        func.jsonb_to_recordset(sql.param("rows", JSONB))
        .table_valued(column("workspace_id", UUID), column("id", UUID), column("at", DateTime(timezone=True)))
        .render_derived(name="r", with_types=True)
    )
    return (
        update(k)
        .values(last_used_at=r.c.at)
        .where(
            k.c.workspace_id == r.c.workspace_id,
            k.c.id == r.c.id,
            or_(k.c.last_used_at.is_(None), k.c.last_used_at <= r.c.at - sql.param("every", Float) * _SECOND),
        )
    )


_TOUCH = sql.Query(_touch)


class KeyUse:
    def __init__(self, every: float) -> None:
        self.every = every
        self._seen: dict[uuid.UUID, tuple[uuid.UUID, float]] = {}  # key id -> (workspace id, last use)
        self._written: dict[uuid.UUID, float] = {}  # key id -> the use this process last wrote

    def note(self, principal: Principal) -> None:
        self._seen[principal.key_id] = (principal.workspace_id, time.time())

    async def flush(self, pool: Any) -> int:
        """Write what is due; returns how many keys the statement changed."""
        seen, self._seen = self._seen, {}
        due = [
            (key_id, workspace_id, at)
            for key_id, (workspace_id, at) in seen.items()
            if at - self._written.get(key_id, -math.inf) >= self.every
        ]
        if not due:
            return 0
        rows = [
            {
                "workspace_id": str(ws),
                "id": str(key_id),
                "at": dt.datetime.fromtimestamp(at, dt.UTC).isoformat(),
            }
            for key_id, ws, at in due
        ]
        status = await _TOUCH.execute(pool, rows=jsonutil.dumps_str(rows), every=self.every)
        if len(self._written) > _FORGET_AFTER:
            self._written.clear()
        self._written.update((key_id, at) for key_id, _, at in due)
        return int(status.split()[-1])

    async def run(self, pool: Any, every: float, stop: asyncio.Event) -> None:
        """Flush every ``every`` seconds until ``stop``, then once more."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)
            try:
                await self.flush(pool)
            except (asyncpg.PostgresError, OSError) as exc:  # the next uses are noted again
                log.warning("could not record API keys' last use: %s", exc)
