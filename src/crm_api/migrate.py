"""Run the alembic migrations from code (the CLI, the server's start, the test suite).

The migrations ship inside the package (``crm_api/migrations``) and alembic finds them itself: a
``package:directory`` script location is resolved through importlib.resources, so a wheel installed in
site-packages migrates exactly like the source tree. The repository's alembic.ini names the same location
for the ``alembic`` command (``revision``, ``check``).

Every upgrade runs under one PostgreSQL advisory lock: replicas starting together queue on it, the first
migrates, the others then find the schema at head and change nothing.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import func, pool, select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

SCRIPT_LOCATION = "crm_api:migrations"

# The two-integer key space of advisory locks is apart from the one-bigint space locks.py hashes keys into,
# so no natural key or Idempotency-Key can ever share this lock. 0x63726D is "crm".
MIGRATION_LOCK = (0x63726D, 1)


@dataclass(frozen=True, slots=True)
class Upgrade:
    before: str | None
    """The revision the database was at when this process got the lock (None: an empty database)."""
    head: str | None


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.set_main_option("path_separator", "os")
    config.attributes["url"] = url
    return config


def head() -> str | None:
    return ScriptDirectory.from_config(alembic_config("")).get_current_head()


def _upgrade_on(connection: Connection, config: Config) -> Upgrade:
    before = MigrationContext.configure(connection).get_current_revision()
    # end the transaction the read began: alembic's env.py opens and commits its own
    connection.commit()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
    return Upgrade(before, head())


def _engine(url: str) -> AsyncEngine:
    if url.startswith("postgresql://"):
        url = url.replace("postgresql://", "postgresql+asyncpg://", 1)
    return create_async_engine(url, poolclass=pool.NullPool)


async def _upgrade(url: str) -> Upgrade:
    engine = _engine(url)
    try:
        async with engine.connect() as conn:
            # A session lock, held across alembic's own transaction; the connection closes at the end of
            # this block (no pool), which releases it, and so does a process that dies holding it.
            await conn.execute(select(func.pg_advisory_lock(*MIGRATION_LOCK)))
            await conn.commit()
            return await conn.run_sync(_upgrade_on, alembic_config(url))
    finally:
        await engine.dispose()


def upgrade(url: str) -> Upgrade:
    """Bring the database at ``url`` to the newest migration, one process at a time."""
    return asyncio.run(_upgrade(url))


async def _current(url: str) -> str | None:
    engine = _engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())
    finally:
        await engine.dispose()


def behind(url: str) -> str | None:
    """Why this version cannot run on the database at ``url`` unmigrated, or None when it can: the schema
    is at this version's head, or at a revision it does not know (a newer version migrated it first, as
    during a rolling start; migrations keep the previous version working)."""
    current = asyncio.run(_current(url))
    newest = head()
    if current is None:
        return f"the database has no schema yet; run `crm-api migrate` (this version needs {newest})"
    known = {script.revision for script in ScriptDirectory.from_config(alembic_config(url)).walk_revisions()}
    if current != newest and current in known:
        return f"the database is at migration {current}, this version needs {newest}; run `crm-api migrate`"
    return None
