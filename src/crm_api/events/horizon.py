"""The feed's bound: the highest sequence ``GET /v1/events`` may show without a reader skipping an event.

An event's sequence is drawn when it is inserted and becomes visible when its transaction commits, so a
writer that commits late can add an event below a sequence a reader already passed. The feed shows an
event only when no transaction still running can commit one below it.

Writers mark themselves: every statement that inserts events first runs ``crm_mark_event_draw()``
(migration 0018; ``store.marked``), which takes a shared advisory lock, held to commit, keyed by the
sequence's last value at that moment. Everything the transaction draws afterwards is above its mark.
``crm_feed_bound()`` reads the sequence's last value, then the lowest mark held now, and answers the lower
of the last value and the lowest mark less one:

- a writer holding a mark can still commit events above its mark only: the bound stays below it;
- a writer without a mark now has drawn nothing yet, and will draw above the last value read first;
- a writer that ended before the bound was read is visible to the page's statement, which runs after it
  with a snapshot of its own (hence two statements: one snapshot cannot be older than the marks it reads).

Transactions that write no events (reports, idle sessions, other databases, ``pg_dump``) hold no mark and
never hold the feed back, and the order in which writers took their transaction ids does not matter (the
rule this replaces compared transaction ids, and a writer that took its id early, with a row lock or an
Idempotency-Key record, could pass one still open). The bound is read on the primary, where the marks are.
"""

from __future__ import annotations

from typing import Any

import asyncpg
from sqlalchemy import Select, func, select

from .. import sql


def _bound() -> Select[Any]:
    return select(func.crm_feed_bound())


_BOUND = sql.Query(_bound)


async def bound(conn: asyncpg.Connection | Any) -> int:
    """The highest sequence the feed may show now (read before the page, in a statement of its own)."""
    value: int = await _BOUND.fetchval(conn)
    return value
