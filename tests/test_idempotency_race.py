"""Racing retries of one Idempotency-Key never write twice."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx


async def test_concurrent_retries_write_once(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    body = {"email": "race@example.com", "first_name": "Race"}
    headers = {"Idempotency-Key": "race-1"}
    responses = await asyncio.gather(
        *(api.post("/v1/contacts", json=body, headers=headers) for _ in range(12))
    )
    statuses = sorted(r.status_code for r in responses)
    assert set(statuses) <= {201, 409}, statuses
    created = [r for r in responses if r.status_code == 201]
    assert created, statuses
    # every 201 is the same object: the first, or a replay of it
    assert len({r.json()["id"] for r in created}) == 1
    assert sum(1 for r in created if r.headers.get("idempotent-replayed") != "true") == 1
    ws = api.workspace_id  # type: ignore[attr-defined]
    assert await pool.fetchval("SELECT count(*) FROM contacts WHERE workspace_id = $1", ws) == 1
    assert await pool.fetchval("SELECT count(*) FROM events WHERE workspace_id = $1", ws) == 1
    # after the race, a retry replays
    again = await api.post("/v1/contacts", json=body, headers=headers)
    assert again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == created[0].json()
