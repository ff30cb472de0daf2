"""Alembic environment: async (asyncpg), one metadata from ``crm_api.models``.

``crm_api.migrate`` hands over its own connection (it holds the migration lock on it); the ``alembic``
command opens one from the URL.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from crm_api.db import database_url
from crm_api.models import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    # crm_api.migrate passes the URL it resolved (embedded or configured); the CLI falls back to settings.
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    return str(url) if url else database_url()


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    engine = create_async_engine(_url(), poolclass=pool.NullPool)
    async with engine.connect() as conn:
        await conn.run_sync(_run)
    await engine.dispose()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
    else:
        asyncio.run(_run_async())


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
