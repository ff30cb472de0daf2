from __future__ import annotations

import asyncpg
import httpx

from crm_api.maintenance import purge_idempotency_keys


async def test_expired_idempotency_keys_are_purged_and_fresh_ones_kept(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    ws = api.workspace_id  # type: ignore[attr-defined]
    for key in ("old-1", "old-2", "fresh"):
        r = await api.post("/v1/contacts", json={"first_name": key}, headers={"Idempotency-Key": key})
        assert r.status_code == 201
    await pool.execute(
        "UPDATE idempotency_keys SET created_at = now() - interval '49 hours' "
        "WHERE workspace_id = $1 AND key <> $2",
        ws,
        "fresh",
    )
    deleted = await purge_idempotency_keys(pool, ttl_hours=48, batch=1)
    assert deleted >= 2
    left = await pool.fetch("SELECT key FROM idempotency_keys WHERE workspace_id = $1", ws)
    assert [r["key"] for r in left] == ["fresh"]
