from __future__ import annotations

import asyncpg
import httpx

from crm_api.maintenance import purge_events, purge_idempotency_keys


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


async def test_events_past_retention_are_purged_unless_a_delivery_still_needs_them(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    ws = api.workspace_id  # type: ignore[attr-defined]
    hook = await api.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/h", "event_types": ["contact.*"]})
    assert hook.status_code == 201
    for name in ("old", "old-pending", "new"):
        assert (await api.post("/v1/contacts", json={"first_name": name})).status_code == 201
    events = {
        r["name"]: r["id"]
        for r in await pool.fetch(
            "SELECT data->'object'->>'first_name' AS name, id FROM events WHERE workspace_id = $1", ws
        )
    }
    await pool.execute(
        "UPDATE events SET created_at = now() - interval '31 days' "
        "WHERE workspace_id = $1 AND id = ANY($2::uuid[])",
        ws,
        [events["old"], events["old-pending"]],
    )
    # the old event's delivery is settled; the other one is still pending
    await pool.execute(
        "UPDATE webhook_deliveries SET status = 'succeeded' WHERE workspace_id = $1 AND event_id = $2",
        ws,
        events["old"],
    )
    deleted = await purge_events(pool, retention_days=30, batch=1)
    assert deleted >= 1
    left = {r["id"] for r in await pool.fetch("SELECT id FROM events WHERE workspace_id = $1", ws)}
    assert left == {events["old-pending"], events["new"]}
