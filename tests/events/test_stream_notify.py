"""The events trigger notifies ``crm_events`` for streamed workspaces only (those a hub has a fresh row for
in ``event_stream_workspaces``): writes nobody streams pay no NOTIFY."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import httpx

from crm_api.db import asyncpg_dsn


async def test_only_streamed_workspaces_are_notified(
    database_url: str, pool: asyncpg.Pool, make_client: Any
) -> None:
    streamed, quiet = await make_client(), await make_client()
    await pool.execute(
        "INSERT INTO event_stream_workspaces (workspace_id, hub_id) VALUES ($1, $2)",
        streamed.workspace_id,
        uuid.uuid4(),
    )
    heard: asyncio.Queue[str] = asyncio.Queue()
    dsn, kwargs = asyncpg_dsn(database_url)
    listener = await asyncpg.connect(dsn, **kwargs)
    try:
        await listener.add_listener("crm_events", lambda *args: heard.put_nowait(args[-1]))

        async def write(client: httpx.AsyncClient) -> None:
            r = await client.post("/v1/contacts", json={"email": f"{uuid.uuid4().hex[:8]}@x.com"})
            assert r.status_code == 201

        await write(streamed)
        await write(quiet)
        await write(streamed)
        # notifications come in commit order: once the second one for the streamed workspace is here, one
        # for the quiet workspace would have come before it (others' streams may notify too: skipped)
        mine, quiet_id = str(streamed.workspace_id), str(quiet.workspace_id)  # type: ignore[attr-defined]
        got: list[str] = []
        while got.count(mine) < 2:
            got.append(await asyncio.wait_for(heard.get(), 10))
    finally:
        await listener.close()
    assert not [payload for payload in got if quiet_id in payload.split(",")]
