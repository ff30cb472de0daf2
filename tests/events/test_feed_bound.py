"""The feed's bound on a database whose events sequence has drawn nothing yet (migration 0040): a stream
opened there starts after the bound, so a bound of 1 would skip the very first event the database records."""

from __future__ import annotations

import asyncio

import asyncpg

from crm_api.db import asyncpg_dsn
from crm_api.migrate import upgrade


async def _bounds(url: str) -> tuple[int, int]:
    dsn, kwargs = asyncpg_dsn(url)
    conn = await asyncpg.connect(dsn, **kwargs)
    try:
        before = await conn.fetchval("SELECT crm_feed_bound()")
        await conn.execute("SELECT nextval('events_sequence_seq')")  # what an event's insert draws
        after = await conn.fetchval("SELECT crm_feed_bound()")
        return before, after
    finally:
        await conn.close()


def test_the_bound_of_a_sequence_that_drew_nothing_is_zero(empty_database: str) -> None:
    upgrade(empty_database)
    assert asyncio.run(_bounds(empty_database)) == (0, 1)
