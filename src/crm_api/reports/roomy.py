"""The reports that sort or hash hundreds of thousands of rows run with room to do it in memory.

With the server's default ``work_mem`` (4 MB) the sales cycle's sorts of a year's stage changes and the
lead conversion's and attribution's hashes of a year's leads spill to disk (``external merge``, hash
batches), several times slower on a busy machine. Such a statement runs in a read-only transaction of its
own with ``SET LOCAL work_mem``: the setting ends with it, and only these statements get it. JIT is off
there too: its compilation costs more than it saves on statements this size (and is paid per execution).
"""

from __future__ import annotations

from typing import Any

import asyncpg

from .. import sql

WORK_MEM = "64MB"
_SETTINGS = f"SET LOCAL work_mem = '{WORK_MEM}'; SET LOCAL jit = off"


async def fetch(
    conn: asyncpg.Pool | asyncpg.Connection, stmt: sql.Compiled, /, **params: Any
) -> list[asyncpg.Record]:
    """``stmt.fetch`` with the settings above, on a connection of the pool (or the one given)."""
    if isinstance(conn, asyncpg.Connection):
        async with conn.transaction(readonly=True):
            await conn.execute(_SETTINGS)
            return await stmt.fetch(conn, **params)
    async with conn.acquire() as taken, taken.transaction(readonly=True):
        await taken.execute(_SETTINGS)
        return await stmt.fetch(taken, **params)
