"""Which disabled endpoints still collect deliveries: those disabled for failing (so nothing is lost while a
receiver is down for days), not those that unsubscribed (410) or were disabled on request."""

from __future__ import annotations

import asyncpg
import httpx

from crm_api.models.webhooks import DISABLED_FAILING, DISABLED_GONE


async def test_fanout_skips_unsubscribed_but_keeps_failing_endpoints(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    ws = api.workspace_id  # type: ignore[attr-defined]
    ids = []
    for _ in range(3):
        r = await api.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/h", "event_types": ["*"]})
        ids.append(r.json()["id"])
    failing, gone, requested = ids
    disable = (
        "UPDATE webhook_endpoints SET status = 'disabled', disabled_reason = $3 "
        "WHERE workspace_id = $1 AND id = $2"
    )
    await pool.execute(disable, ws, failing, DISABLED_FAILING)
    await pool.execute(disable, ws, gone, DISABLED_GONE)
    assert (await api.patch(f"/v1/webhooks/{requested}", json={"status": "disabled"})).status_code == 200
    assert (await api.post("/v1/contacts", json={"first_name": "x"})).status_code == 201
    rows = await pool.fetch(
        "SELECT endpoint_id::text AS e FROM webhook_deliveries "
        "WHERE workspace_id = $1 AND status = 'pending'",
        ws,
    )
    assert [r["e"] for r in rows] == [failing]
    # re-enabled, the failing endpoint's backlog is there to flow
    enabled = await api.patch(f"/v1/webhooks/{failing}", json={"status": "enabled"})
    assert enabled.json()["status"] == "enabled" and enabled.json()["disabled_reason"] is None
