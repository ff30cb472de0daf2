"""Helpers for the ticket tests: policies and tickets made over the API, events read back."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx

WEEKDAYS = {d: [{"start": "09:00", "end": "17:00"}] for d in ("mon", "tue", "wed", "thu", "fri")}


async def make_policy(api: httpx.AsyncClient, **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "Standard",
        "targets": {
            "normal": {"first_response_minutes": 60, "resolution_minutes": 480},
            "urgent": {"first_response_minutes": 15, "resolution_minutes": 120},
        },
        **over,
    }
    r = await api.post("/v1/sla-policies", json=body)
    assert r.status_code == 201, r.text
    result: dict[str, Any] = r.json()
    return result


async def make_ticket(api: httpx.AsyncClient, **over: Any) -> dict[str, Any]:
    r = await api.post("/v1/tickets", json={"subject": "Printer on fire", **over})
    assert r.status_code == 201, r.text
    result: dict[str, Any] = r.json()
    return result


async def events_of(pool: asyncpg.Pool, api: httpx.AsyncClient, type_: str) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT type, object_id, data FROM events WHERE workspace_id = $1 AND type = $2 ORDER BY sequence",
        api.workspace_id,  # type: ignore[attr-defined]
        type_,
    )
    return [dict(r) for r in rows]
