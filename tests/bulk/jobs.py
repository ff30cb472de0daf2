"""Running bulk jobs in a test as a worker runs them: the job loop's own round, in-process."""

from __future__ import annotations

import asyncio

import asyncpg

from crm_api.bulk import worker
from crm_api.config import Settings


async def drain(pool: asyncpg.Pool, chunk: int = 500) -> None:
    """Run every waiting job to its end, one after another, ``chunk`` rows a chunk."""
    settings = Settings(bulk_lease_seconds=30, bulk_import_chunk_rows=chunk)
    while await worker.run_once(pool, settings, asyncio.Event()):
        pass
