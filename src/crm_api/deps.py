"""Request-scoped dependencies: the database for reads and writes, and the If-Match version."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import asyncpg
from fastapi import Depends, Header, Request

from .db import EnginePool
from .errors import PreconditionFailed, field_error


async def _locking_conn(request: Request) -> AsyncIterator[asyncpg.Connection]:
    """One transaction for the request, committed here before the response is sent (the dependency has
    function scope), so a failed commit can never turn into a 201."""
    pool: asyncpg.Pool = request.app.state.db.pool
    async with pool.acquire() as conn, conn.transaction():
        yield conn


async def _write_conn(request: Request) -> AsyncIterator[asyncpg.Connection]:
    """No transaction: a plain create, update, archive or restore is one version-checked statement, atomic on
    its own, and BEGIN/COMMIT would be two round trips for nothing. With an Idempotency-Key the record goes
    into that same statement (``idempotency``, folded writes); a spec with upkeep after its write opens a
    transaction for the two (``resources/writes.py``)."""
    pool: asyncpg.Pool = request.app.state.db.pool
    async with pool.acquire() as conn:
        yield conn


def read_pool(request: Request) -> EnginePool:
    """For reads: the pool, so each statement runs on whichever connection is free, outside a transaction (a
    read that needs one snapshot across statements takes a connection of its own). A plain function rather
    than a dependency: each dependency FastAPI solves costs ~30 us of CPU per request (measured)."""
    return request.app.state.db.pool  # type: ignore[no-any-return]


WriteConn = Annotated[asyncpg.Connection, Depends(_write_conn, scope="function")]
LockingConn = Annotated[asyncpg.Connection, Depends(_locking_conn, scope="function")]
"""For writes that take advisory locks or write several statements (upserts, batches, keys)."""


async def if_match(
    raw: Annotated[
        str | None,
        Header(
            alias="If-Match",
            description='The version the write applies to, as the ETag showed it ("3"; 3 and W/"3" too): '
            "if the object has moved on, the answer is 412 and nothing changes. Without it the write "
            "applies to the current version.",
            examples=['"3"'],
        ),
    ] = None,
) -> int | None:
    if raw is None:
        return None
    value = raw.strip().removeprefix("W/").strip('"')
    if not value.isdigit() or len(value) > 18:
        raise field_error("/headers/If-Match", 'expected an ETag such as "3"')
    return int(value)


IfMatch = Annotated[int | None, Depends(if_match)]

__all__ = ["IfMatch", "LockingConn", "PreconditionFailed", "WriteConn", "read_pool"]
