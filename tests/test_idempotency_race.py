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


async def test_an_expired_key_runs_the_new_request_and_keeps_its_result(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    """Past the TTL a key is free again: the new request runs, and its result replaces the old record."""
    ws = api.workspace_id  # type: ignore[attr-defined]
    headers = {"Idempotency-Key": "expiring"}
    first = await api.post("/v1/contacts", json={"first_name": "First"}, headers=headers)
    assert first.status_code == 201
    await pool.execute(
        "UPDATE idempotency_keys SET created_at = now() - interval '49 hours' WHERE workspace_id = $1", ws
    )
    # a different body: within the TTL this would be a 422 mismatch
    second = await api.post("/v1/contacts", json={"first_name": "Second"}, headers=headers)
    assert second.status_code == 201 and "idempotent-replayed" not in second.headers
    assert second.json()["id"] != first.json()["id"]
    stored = await pool.fetchrow(
        "SELECT body, now() - created_at < interval '1 minute' AS fresh FROM idempotency_keys "
        "WHERE workspace_id = $1 AND key = 'expiring'",
        ws,
    )
    assert stored["fresh"] and second.json()["id"] in stored["body"]
    replay = await api.post("/v1/contacts", json={"first_name": "Second"}, headers=headers)
    assert replay.headers["idempotent-replayed"] == "true" and replay.json() == second.json()
