"""Holding a job: it runs while its lease is renewed beside it, and stops when the worker is told to."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from .. import db


async def renewing(
    run: Awaitable[str], renew: Callable[[], Awaitable[Any]], every: float, stop: asyncio.Event
) -> str:
    """Run the job while renewing its lease every ``every`` seconds (a long first read of a large file
    writes no progress for a while). A stop cancels it: the chunk in flight rolls back, and the next
    worker to claim the job resumes after the last committed one."""
    task = asyncio.ensure_future(run)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        while True:
            done, _ = await asyncio.wait({task, stopping}, timeout=every, return_when=asyncio.FIRST_COMPLETED)
            if task in done:
                return task.result()
            if stopping in done:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                return "stopped"
            with contextlib.suppress(*db.ERRORS):
                await renew()
    finally:
        stopping.cancel()


async def claim_and_run(
    pool: Any,
    jobs: Any,
    lease: float,
    stop: asyncio.Event,
    make_run: Callable[[dict[str, Any], uuid.UUID], Awaitable[str]],
) -> str | None:
    """Claim the oldest waiting job of one kind (``repository.JobSql``) and run it under its renewed
    lease; None when none was waiting, else how the run ended."""
    token = uuid.uuid4()
    claimed = await jobs.claim.fetchrow(pool, token=token, lease=lease, now=dt.datetime.now(dt.UTC))
    if claimed is None:
        return None
    job = dict(claimed)

    async def renew() -> Any:
        return await jobs.renew.fetchval(pool, ws=job["workspace_id"], id=job["id"], token=token, lease=lease)

    return await renewing(make_run(job, token), renew, lease / 3, stop)
