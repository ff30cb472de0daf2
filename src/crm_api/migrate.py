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
from sqlalchemy.ext.asyncio import create_async_engine

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


async def _upgrade(url: str) -> Upgrade:
    if url.startswith("postgresql://"):
        url = url.replace("postgresql://", "postgresql+asyncpg://", 1)
    engine = create_async_engine(url, poolclass=pool.NullPool)
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
