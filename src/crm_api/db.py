"""The database: URL resolution, the async SQLAlchemy engine that owns the pool, and connections.

Statements are SQLAlchemy Core (see ``sql.py``), compiled once per shape and run on the driver connection of
a connection checked out through the engine: SQLAlchemy's full execution path costs several times the
driver's per statement (see docs/ARCHITECTURE.md), and the compiled text is all it would add.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.util import greenlet_spawn

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


def _install_codecs(dbapi_connection: Any, _record: Any) -> None:
    # jsonb in and out as Python values; str passes through so pre-encoded JSON is not encoded twice.
    # Registered after the dialect's own codecs, so ours win: statements run on the driver connection and
    # hand jsonb parameters over as Python values or as JSON text.
    dbapi_connection.run_async(
        lambda driver: driver.set_type_codec(
            "jsonb",
            schema="pg_catalog",
            encoder=lambda v: v if isinstance(v, str) else jsonutil.dumps_str(v),
            decoder=jsonutil.loads,
            format="text",
        )
    )


def create_engine(url: str, size: int) -> AsyncEngine:
    """The async engine that owns the connection pool.

    No reset on return: every checkout ends its own transaction, and the default ROLLBACK per checkin is a
    round trip for nothing. No overflow: ``size`` is the ceiling the operator set."""
    if url.startswith("postgresql://"):
        url = url.replace("postgresql://", "postgresql+asyncpg://", 1)
    engine = create_async_engine(
        url,
        pool_size=size,
        max_overflow=0,
        pool_reset_on_return=None,
        # no JIT: it pays off for long analytic queries; here it only added its compile time (15-100 ms seen)
        # to statements whose estimated cost crossed jit_above_cost, such as the outbox measure at a scrape
        connect_args={"server_settings": {"timezone": "UTC", "application_name": "crm-api", "jit": "off"}},
    )
    event.listen(engine.sync_engine, "connect", _install_codecs)
    return engine


_LOST = (
    asyncpg.PostgresConnectionError,
    # 57P01 and kin: the server terminated the session (shutdown, pg_terminate_backend)
    asyncpg.OperatorInterventionError,
    # a session the server ended while it sat idle in the pool can fail this way before it reads as closed
    asyncpg.InternalClientError,
    OSError,
)
"""Errors that mean the connection is gone (a bad value or a failed statement keep it)."""


class EnginePool:
    """The engine's pool seen as the driver's pool: ``acquire()`` checks a connection out through an
    ``AsyncConnection`` and yields its driver connection, and the one-statement helpers (``fetch``,
    ``fetchrow``, ``fetchval``, ``execute``) check out, run and check in, as reads do."""

    def __init__(self, engine: AsyncEngine, size: int) -> None:
        self.engine = engine
        self._dialect = engine.sync_engine.dialect
        self._dbapi_error: type[Exception] = self._dialect.loaded_dbapi.Error
        self.size = size
        self.waiting = 0
        """Checkouts waiting for a connection now (the metrics sample it)."""
        self._held: dict[int, AsyncConnection] = {}

    def in_use(self) -> int:
        return self.engine.pool.checkedout()  # type: ignore[attr-defined, no-any-return]

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[asyncpg.Connection]:
        # The pool's own checkout (``AsyncEngine.raw_connection``), not an ``AsyncConnection`` around it:
        # the same pool and connection, without the Connection object and the greenlet switches to open and
        # close it (24 us of CPU per checkout against 108 us, measured; every request checks out).
        self.waiting += 1
        try:
            raw = await self.engine.raw_connection()
        except self._dbapi_error as exc:
            # as ``engine.connect()`` raises it: SQLAlchemy's OperationalError (and kin) around the driver's
            raise DBAPIError.instance(None, None, exc, self._dbapi_error, dialect=self._dialect) from exc
        finally:
            self.waiting -= 1
        driver: asyncpg.Connection = raw.driver_connection
        lost = False
        try:
            yield driver
        except _LOST:
            lost = True
            raise
        finally:
            if lost or driver.is_closed():
                # the server dropped it (restart, failover): out of the pool, not handed out again; closing
                # it may talk to the driver, which SQLAlchemy's adapter does inside a greenlet
                await greenlet_spawn(raw.invalidate)
                await greenlet_spawn(raw.close)
            else:
                raw.close()  # a checkin: no reset query (pool_reset_on_return=None), nothing awaited

    async def take(self) -> asyncpg.Connection:
        """A connection held until ``release`` (a LISTEN connection lives as long as its dispatcher)."""
        self.waiting += 1
        try:
            conn = await self.engine.connect()
        finally:
            self.waiting -= 1
        driver = await driver_connection(conn)
        self._held[id(driver)] = conn
        return driver

    async def release(self, driver: asyncpg.Connection) -> None:
        conn = self._held.pop(id(driver), None)
        if conn is not None:
            await conn.close()

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        async with self.acquire() as conn:
            return await conn.fetch(sql, *args)  # type: ignore[no-any-return]

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        async with self.acquire() as conn:
            return await conn.fetchrow(sql, *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        async with self.acquire() as conn:
            return await conn.fetchval(sql, *args)

    async def execute(self, sql: str, *args: Any) -> str:
        async with self.acquire() as conn:
            return await conn.execute(sql, *args)  # type: ignore[no-any-return]

    async def close(self) -> None:
        await self.engine.dispose()


async def driver_connection(conn: AsyncConnection) -> asyncpg.Connection:
    """The asyncpg connection under a checked-out ``AsyncConnection``: compiled statements run on it."""
    raw = await conn.get_raw_connection()
    return raw.driver_connection


async def create_pool(url: str, size: int) -> EnginePool:
    engine = create_engine(url, size)
    pool = EnginePool(engine, size)
    async with pool.acquire():  # connect once now, so a bad URL fails at start, not on the first request
        pass
    return pool


class Database:
    """Holds the engine's pool; ``app.state.db``."""

    def __init__(self, pool: EnginePool) -> None:
        self.pool = pool

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        async with self.pool.acquire() as conn:
            yield conn

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        async with self.pool.acquire() as conn, conn.transaction():
            yield conn
