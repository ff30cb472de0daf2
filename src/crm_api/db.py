"""The database: URL resolution, the async SQLAlchemy engine that owns the pool, and connections.

Statements are SQLAlchemy Core (see ``sql.py``), compiled once per shape and run on the driver connection of
a connection checked out through the engine: SQLAlchemy's full execution path costs several times the
driver's per statement (see docs/ARCHITECTURE.md), and the compiled text is all it would add.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

import asyncpg
import sqlalchemy.exc
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError, MissingGreenlet
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import PoolProxiedConnection, QueuePool
from sqlalchemy.util import greenlet_spawn

from . import jsonutil
from .config import Settings, get_settings
from .errors import CRMError


class ConnectionLost(ConnectionError):
    """The database connection broke during a request (the server stopped, restarted or ended the session)."""


# exceptions that already say what went wrong, kept as they are when the connection is found closed
_SAYS_WHAT_HAPPENED = (asyncpg.PostgresError, OSError, CRMError)

ERRORS: tuple[type[Exception], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    OSError,
    sqlalchemy.exc.SQLAlchemyError,
)
"""What a database call can raise when the database, the network or the pool fails (``OSError`` includes
a refused connection and a client-side timeout; ``SQLAlchemyError`` a pool timeout). Background loops catch
these and retry; a request turns them into a 503 (``faults.py``)."""

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


@dataclass(frozen=True)
class Timeouts:
    """Bounds on every wait for the database; 0 turns a server-side one off. The defaults suit a command
    (a migration-sized bootstrap, a key creation); the API and the dispatchers take theirs from settings."""

    statement_ms: int = 0
    """``statement_timeout`` of every statement on the pool's connections."""
    lock_ms: int = 0
    """``lock_timeout``: how long a statement may wait for a lock."""
    pool_s: float = 30.0
    """How long a checkout waits for a free connection."""
    connect_s: float = 60.0
    """How long opening a connection may take."""

    @classmethod
    def of(cls, settings: Settings) -> Timeouts:
        return cls(
            settings.statement_timeout_ms,
            settings.lock_timeout_ms,
            settings.pool_timeout_s,
            settings.connect_timeout_s,
        )

    def server_settings(self) -> dict[str, str]:
        """Sent in the connection's startup packet: set once per connection, no round trip per request.
        (A pooler that refuses these parameters needs them at 0 and the timeouts set on the role.)"""
        values = {"statement_timeout": self.statement_ms, "lock_timeout": self.lock_ms}
        return {name: str(ms) for name, ms in values.items() if ms > 0}


def create_engine(url: str, size: int, timeouts: Timeouts = Timeouts()) -> AsyncEngine:
    """The async engine that owns the connection pool.

    No reset on return: every checkout ends its own transaction, and the default ROLLBACK per checkin is a
    round trip for nothing. No overflow: ``size`` is the ceiling the operator set."""
    if url.startswith("postgresql://"):
        url = url.replace("postgresql://", "postgresql+asyncpg://", 1)
    server_settings = {"timezone": "UTC", "application_name": "crm-api"} | timeouts.server_settings()
    engine = create_async_engine(
        url,
        pool_size=size,
        max_overflow=0,
        pool_reset_on_return=None,
        pool_timeout=timeouts.pool_s,
        connect_args={
            # no JIT: it pays off for long analytic queries; here it only added its compile time (15-100 ms
            # seen) to statements whose estimated cost crossed jit_above_cost, such as the outbox measure
            "server_settings": server_settings | {"jit": "off"},
            "timeout": timeouts.connect_s,
            # the driver prepares a statement once per connection only when its text is at most this long
            # (15 KiB by default): a list page with several related objects' JSON built in SQL
            # (resources/related.py) is 5-13 KiB before its filters, and re-preparing it costs a parse
            # and a plan per request
            "max_cacheable_statement_size": 64 * 1024,
            # no command_timeout: the driver arms a timer per statement for it (9 us of CPU each, measured);
            # a server that does not answer at all is left to the request deadline (faults.Guard)
        },
    )
    event.listen(engine.sync_engine, "connect", _install_codecs)
    return engine


class EnginePool:
    """The engine's pool seen as the driver's pool: ``acquire()`` checks a connection out with the pool's
    own checkout and yields its driver connection, ``take()`` holds one through an ``AsyncConnection``, and
    the one-statement helpers (``fetch``, ``fetchrow``, ``fetchval``, ``execute``) check out, run and check
    in, as reads do."""

    def __init__(self, engine: AsyncEngine, size: int, connect_s: float = 10.0) -> None:
        self.engine = engine
        self._dialect = engine.sync_engine.dialect
        self._dbapi_error: type[Exception] = self._dialect.loaded_dbapi.Error
        self.size = size
        self.waiting = 0
        """Checkouts waiting for a connection now (the metrics sample it)."""
        self._held: dict[int, AsyncConnection] = {}
        self._connect_s = connect_s
        self._reconnecting = 0  # checkouts that take the greenlet path after a discard (see _discarded)
        self._pool = cast(QueuePool, engine.sync_engine.pool)  # create_engine makes an AsyncAdaptedQueuePool

    def in_use(self) -> int:
        return self.engine.pool.checkedout()  # type: ignore[attr-defined, no-any-return]

    async def _connect(self) -> AsyncConnection:
        conn = self.engine.connect()
        self.waiting += 1
        try:
            await conn.start()
        finally:
            self.waiting -= 1
        return conn

    async def _live(self, conn: AsyncConnection) -> asyncpg.Connection:
        """The driver connection of a held connection (``take``), replacing one the server closed while it
        sat in the pool (a restart, a terminated backend)."""
        driver = await driver_connection(conn)
        for _ in range(self.size):  # after a restart every pooled connection is closed
            if not driver.is_closed():
                break
            await conn.invalidate()  # back to the pool without its connection; the next use reconnects
            self._discarded()
            driver = await driver_connection(conn)
        return driver

    async def _checkout(self) -> PoolProxiedConnection:
        # The pool's own checkout rather than an ``AsyncConnection`` around it: the same pool and connection
        # without the Connection object and its greenlet switches (24 us of CPU per checkout against 108,
        # measured; every request checks out at least once). With a connection idle in the pool the checkout
        # does no I/O, so it runs here directly: the greenlet that ``AsyncEngine.raw_connection`` spawns for
        # the I/O case costs another 25 us (bench/README.md). A checkout that must connect (the record it
        # drew lost its connection) needs that greenlet: the pool puts the record back and we take the
        # greenlet path.
        if self._reconnecting:
            self._reconnecting -= 1
        elif self._pool.checkedin():
            try:
                return self._pool.connect()
            except MissingGreenlet:  # a record without its connection that we did not know of
                pass
        self.waiting += 1
        try:
            return await self.engine.raw_connection()
        except self._dbapi_error as exc:
            # as ``engine.connect()`` raises it: SQLAlchemy's OperationalError (and kin) around the driver's
            raise DBAPIError.instance(None, None, exc, self._dbapi_error, dialect=self._dialect) from exc
        finally:
            self.waiting -= 1

    async def _discard(self, raw: PoolProxiedConnection) -> None:
        """Out of the pool without its connection (the pool opens a new one in its place); closing a
        driver connection is I/O, which SQLAlchemy's adapter does inside a greenlet."""
        await greenlet_spawn(raw.invalidate)
        await greenlet_spawn(raw.close)
        self._discarded()

    def _discarded(self) -> None:
        # The record went back to the pool without a connection, and its next checkout must connect, which
        # only the greenlet path can do. The queue is FIFO: within ``size`` checkouts every record queued
        # now has been drawn once.
        self._reconnecting = self.size

    async def _live_checkout(self) -> PoolProxiedConnection:
        raw = await self._checkout()
        # Replace connections the server closed while they sat in the pool (a restart, a terminated
        # backend), so that no request draws a dead one. The driver notices a closed socket by itself: no
        # round trip (a pre-ping would cost one per checkout), and no pool event (3-4 us per checkout).
        for _ in range(self.size):  # after a restart every pooled connection is closed
            driver = raw.driver_connection
            if driver is not None and not driver.is_closed():
                break
            await self._discard(raw)
            raw = await self._checkout()
        return raw

    def acquire(self) -> _Checkout:
        """``async with pool.acquire() as conn``: a driver connection checked out for the block."""
        return _Checkout(self)

    async def take(self) -> asyncpg.Connection:
        """A connection held until ``release`` (a LISTEN connection lives as long as its dispatcher)."""
        conn = await self._connect()
        driver = await self._live(conn)
        self._held[id(driver)] = conn
        return driver

    async def connect_apart(self) -> asyncpg.Connection:
        """A driver connection of its own, outside the pool, for a LISTEN that must not hold one of the
        requests' connections (close it with ``close()``)."""
        dsn, kwargs = asyncpg_dsn(self.engine.url.render_as_string(hide_password=False))
        settings = {"application_name": "crm-api listener"}
        return await asyncpg.connect(dsn, server_settings=settings, timeout=self._connect_s, **kwargs)

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


class _Checkout:
    """One checkout of ``EnginePool.acquire``: a class rather than an ``asynccontextmanager`` generator,
    which costs a generator and its frames per request for nothing."""

    __slots__ = ("_pool", "_raw")

    def __init__(self, pool: EnginePool) -> None:
        self._pool = pool
        self._raw: PoolProxiedConnection | None = None

    async def __aenter__(self) -> asyncpg.Connection:
        self._raw = await self._pool._live_checkout()
        return self._raw.driver_connection

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        raw = self._raw
        assert raw is not None
        try:
            if exc is not None:
                await self._failed(raw, exc)
        finally:
            if raw.is_valid:
                raw.close()  # the checkin: no reset query (pool_reset_on_return=None), nothing awaited

    async def _failed(self, raw: PoolProxiedConnection, exc: BaseException) -> None:
        # Closed, or still in a transaction after the failure (its ROLLBACK failed or was cancelled: a
        # request past its deadline on a server that does not answer): never hand it to the next request.
        # Closing the socket makes the server roll back whatever is left. A statement cancelled outside a
        # transaction keeps its connection: the driver is sending the server a cancel request, which closing
        # would abort, letting the statement run on and commit. The driver reports a connection lost
        # mid-operation in several ways: "connection is closed", or a protocol state error when the server's
        # goodbye raced a new statement.
        driver: asyncpg.Connection = raw.driver_connection
        lost = driver.is_closed() or isinstance(exc, asyncpg.InternalClientError)
        if lost or driver.is_in_transaction():
            driver.terminate()
            await self._pool._discard(raw)
        if lost and isinstance(exc, Exception) and not isinstance(exc, _SAYS_WHAT_HAPPENED):
            raise ConnectionLost("the database connection was lost") from exc


async def driver_connection(conn: AsyncConnection) -> asyncpg.Connection:
    """The asyncpg connection under a checked-out ``AsyncConnection``: compiled statements run on it."""
    raw = await conn.get_raw_connection()
    return raw.driver_connection


async def create_pool(url: str, size: int, timeouts: Timeouts = Timeouts()) -> EnginePool:
    engine = create_engine(url, size, timeouts)
    pool = EnginePool(engine, size, timeouts.connect_s)
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
