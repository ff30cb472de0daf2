"""Fixtures for the webhook tests: a real receiver on 127.0.0.1 and in-process dispatchers.

Dispatchers claim due deliveries of every workspace, so each receiver's endpoints are disabled when its
test ends: nothing a test leaves pending is sent on while a later test runs.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from receiver import Receiver, StartDispatcher

from crm_api.config import Settings
from crm_api.webhooks.dispatcher import Dispatcher


@pytest.fixture
async def receiver(pool: asyncpg.Pool) -> AsyncIterator[Receiver]:
    r = await Receiver().start()
    yield r
    r.release()
    await pool.execute(
        "UPDATE webhook_endpoints SET status = 'disabled' WHERE url LIKE $1", f"http://127.0.0.1:{r.port}/%"
    )
    await r.close()


@pytest.fixture
async def start_dispatcher(
    pool: asyncpg.Pool, settings: Settings, receiver: Receiver
) -> AsyncIterator[StartDispatcher]:
    """``await start_dispatcher(scale=0.001)``: a dispatcher running as a task until the test ends."""
    running: list[tuple[asyncio.Event, asyncio.Task[None]]] = []

    async def start(scale: float = 0.001, **overrides: Any) -> Dispatcher:
        fast = settings.model_copy(
            update={
                "webhook_retry_scale": scale,
                "dispatcher_poll_seconds": 0.2,
                "dispatcher_lease_seconds": 5,
                **overrides,
            }
        )
        dispatcher = Dispatcher(pool, fast)
        stop = asyncio.Event()
        running.append((stop, asyncio.create_task(dispatcher.run(stop))))
        return dispatcher

    yield start
    receiver.release()  # hanging requests answer now, so the dispatchers drain at once
    for stop, _ in running:
        stop.set()
    for _, task in running:
        await asyncio.wait_for(task, 30)
