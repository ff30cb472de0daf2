"""Idempotency-Key records: a live one replays or refuses another body; an expired one is taken over."""

from __future__ import annotations

import asyncpg
import httpx


async def test_live_record_replays_and_refuses_another_body(api: httpx.AsyncClient) -> None:
    headers = {"Idempotency-Key": "live-1"}
    first = await api.post("/v1/contacts", json={"email": "live@example.com"}, headers=headers)
    assert first.status_code == 201 and "idempotent-replayed" not in first.headers
    again = await api.post("/v1/contacts", json={"email": "live@example.com"}, headers=headers)
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"]
    other = await api.post("/v1/contacts", json={"email": "other@example.com"}, headers=headers)
    assert other.status_code == 422
    assert other.json()["code"] == "idempotency_key_reused"


async def test_expired_record_is_taken_over_by_the_next_request(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    ws = api.workspace_id  # type: ignore[attr-defined]
    headers = {"Idempotency-Key": "old-1"}
    first = await api.post("/v1/contacts", json={"email": "old@example.com"}, headers=headers)
    assert first.status_code == 201
    # older than the 48 hour default: the key is free again
    await pool.execute(
        "UPDATE idempotency_keys SET created_at = now() - interval '49 hours' WHERE workspace_id = $1", ws
    )
    second = await api.post("/v1/contacts", json={"email": "new@example.com"}, headers=headers)
    assert second.status_code == 201 and "idempotent-replayed" not in second.headers
    assert second.json()["id"] != first.json()["id"]
    record = await pool.fetchrow(
        "SELECT body, created_at > now() - interval '1 minute' AS fresh FROM idempotency_keys "
        "WHERE workspace_id = $1 AND key = 'old-1'",
        ws,
    )
    assert record["fresh"] and second.json()["id"] in record["body"]
    replay = await api.post("/v1/contacts", json={"email": "new@example.com"}, headers=headers)
    assert replay.headers["idempotent-replayed"] == "true" and replay.json() == second.json()
