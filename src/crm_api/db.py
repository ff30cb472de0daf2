"""The database: URL resolution, the asyncpg pool the API runs on, and per-request connections.

SQLAlchemy owns the schema and migrations; requests run their statements on asyncpg directly because each
statement through the ORM costs several times its driver cost (see the README's performance notes).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from . import jsonutil
from .config import get_settings

_resolved_url: str | None = None


def database_url() -> str:
    """The configured URL, or an embedded server's (started on first use)."""
    global _resolved_url
    if _resolved_url is None:
        settings = get_settings()
        if settings.database_url:
            _resolved_url = settings.database_url
        else:
            from . import embedded

            _resolved_url = embedded.start(settings.data_dir)
    return _resolved_url


def set_database_url(url: str) -> None:
    global _resolved_url
    _resolved_url = url


def asyncpg_dsn(url: str) -> tuple[str, dict[str, Any]]:
    """Turn a SQLAlchemy URL into an asyncpg DSN plus keyword arguments (unix-socket ``host=``)."""
    parsed = urllib.parse.urlsplit(url.replace("postgresql+asyncpg://", "postgresql://", 1))
    query = urllib.parse.parse_qs(parsed.query)
    kwargs: dict[str, Any] = {}
    if "host" in query:
        kwargs["host"] = query.pop("host")[0]
    rest = urllib.parse.urlencode({k: v[0] for k, v in query.items()})
    dsn = urllib.parse.urlunsplit((parsed.scheme, parsed.netloc, parsed.path, rest, ""))
    return dsn, kwargs


async def _init_connection(conn: asyncpg.Connection) -> None:
    # jsonb in and out as Python values; str passes through so pre-encoded JSON is not encoded twice.
    await conn.set_type_codec(
        "jsonb",
        schema="pg_catalog",
        encoder=lambda v: v if isinstance(v, str) else jsonutil.dumps_str(v),
        decoder=jsonutil.loads,
        format="text",
    )


async def _no_reset(conn: asyncpg.Connection) -> None:
    # Every checkout ends its own transaction; the default RESET ALL/UNLISTEN round trip is pure cost.
    return None


async def create_pool(url: str, size: int) -> asyncpg.Pool:
    dsn, kwargs = asyncpg_dsn(url)
    return await asyncpg.create_pool(
        dsn,
        min_size=1,
        max_size=size,
        init=_init_connection,
        reset=_no_reset,
        server_settings={"timezone": "UTC", "application_name": "crm-api"},
        **kwargs,
    )


class Database:
    """Holds the pool; ``app.state.db``."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        async with self.pool.acquire() as conn:
            yield conn

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        async with self.pool.acquire() as conn, conn.transaction():
            yield conn
