"""The bulk job loop each ``crm-api worker`` process runs: claim a queued import (or one whose worker's
lease lapsed), run it, renewing the lease meanwhile, and look again; any number of processes may run it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable
from typing import Any

from .. import db
from ..config import Settings
from . import exports
from . import repository as repo
from .imports import CHUNK, ImportRun
from .lease import claim_and_run

log = logging.getLogger("crm_api.bulk")


async def run_import_once(pool: Any, lease: float, stop: asyncio.Event, chunk: int = CHUNK) -> bool:
    """Claim one import and run it to its end; False when none was waiting."""

    def run(job: dict[str, Any], token: uuid.UUID) -> Awaitable[str]:
        log.info("import %s claimed (%s rows done)", job["id"], job["rows_done"])
        return ImportRun(pool, job, token, lease, chunk).run()

    outcome = await claim_and_run(pool, repo.IMPORTS, lease, stop, run)
    if outcome is not None:
        log.info("import %s", outcome)
    return outcome is not None


async def run_once(pool: Any, settings: Settings, stop: asyncio.Event | None = None) -> bool:
    """One job of either kind, if one waits."""
    lease = settings.bulk_lease_seconds
    stop = stop or asyncio.Event()
    if await run_import_once(pool, lease, stop, settings.bulk_import_chunk_rows):
        return True
    return await exports.run_once(pool, lease, stop)


async def run_forever(pool: Any, settings: Settings, stop: asyncio.Event) -> None:
    """Until ``stop``: jobs back to back while there are any, then a look every ``bulk_poll_seconds``. A
    stop cancels the job in hand mid-chunk: the next worker resumes after its last committed chunk."""
    every = settings.bulk_poll_seconds
    if every <= 0:
        return
    while not stop.is_set():
        busy = False
        try:
            busy = await run_once(pool, settings, stop)
        except db.ERRORS as exc:
            log.warning("bulk job failed, retrying: %s", exc)
        except Exception:
            # a bug in one job must not stop the loop for every other job; the job is retried when its
            # lease lapses
            log.exception("bulk job failed")
        if not busy:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)
