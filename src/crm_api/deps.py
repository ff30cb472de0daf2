"""Request-scoped dependencies: the write transaction and the caller's context."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import asyncpg
from fastapi import Depends, Request

from .errors import PreconditionFailed, field_error


async def _write_conn(request: Request) -> AsyncIterator[asyncpg.Connection]:
    """One transaction per write request, committed here before the response is sent (the dependency
    has function scope), so a failed commit can never turn into a 201."""
    pool: asyncpg.Pool = request.app.state.db.pool
    async with pool.acquire() as conn, conn.transaction():
        yield conn


WriteConn = Annotated[asyncpg.Connection, Depends(_write_conn, scope="function")]


def if_match(request: Request) -> int | None:
    raw = request.headers.get("if-match")
    if raw is None:
        return None
    value = raw.strip().removeprefix("W/").strip('"')
    if not value.isdigit() or len(value) > 18:
        raise field_error("/headers/If-Match", 'expected an ETag such as "3"')
    return int(value)


IfMatch = Annotated[int | None, Depends(if_match)]

__all__ = ["IfMatch", "PreconditionFailed", "WriteConn"]
