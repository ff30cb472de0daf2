"""The definitions cache across processes: two real ``crm-api serve`` processes on one database, one changing
the definitions and the other judging writes by them (resources/custom_fields/cache.py)."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import httpx
from live_server import Server, serve

from crm_api.db import asyncpg_dsn


async def _post(client: httpx.AsyncClient, body: dict[str, object]) -> httpx.Response:
    return await client.post("/v1/contacts", json=body)


async def _until_refused(
    client: httpx.AsyncClient, body: dict[str, object], seconds: float = 10.0
) -> httpx.Response:
    """Writes until one is refused (each accepted one is a contact more): the NOTIFY takes a moment."""
    deadline = time.monotonic() + seconds
    while True:
        r = await _post(client, body)
        if r.status_code != 201 or time.monotonic() > deadline:
            return r
        await asyncio.sleep(0.05)


async def _listener_pids(database_url: str) -> list[int]:
    dsn, kwargs = asyncpg_dsn(database_url)
    conn = await asyncpg.connect(dsn, **kwargs)
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND query ILIKE '%LISTEN%crm_custom_fields%'"
        )
        for r in rows:
            await conn.execute("SELECT pg_terminate_backend($1)", r["pid"])
        return [r["pid"] for r in rows]
    finally:
        await conn.close()


def test_another_process_follows_definition_changes(database_url: str) -> None:
    with serve(database_url) as a, serve(database_url) as b:
        asyncio.run(_follows(database_url, a, b))


async def _follows(database_url: str, a: Server, b: Server) -> None:
    headers = {"Authorization": f"Bearer {a.key}"}  # one workspace, served by both processes
    async with (
        httpx.AsyncClient(base_url=a.url, headers=headers) as on_a,
        httpx.AsyncClient(base_url=b.url, headers=headers) as on_b,
    ):
        # b judges a write, and so caches the workspace's (empty) contact definitions
        assert (await _post(on_b, {"first_name": "Ann"})).status_code == 201
        assert (await _post(on_b, {"first_name": "Ann"})).status_code == 201

        # a new required field, defined through a: b refuses a contact without it once the NOTIFY lands
        r = await on_a.post(
            "/v1/custom-fields",
            json={
                "object_type": "contact",
                "name": "plan",
                "label": "Plan",
                "type": "text",
                "required": True,
            },
        )
        assert r.status_code == 201, r.text
        refused = await _until_refused(on_b, {"first_name": "Bob"})
        assert refused.status_code == 422, refused.text
        assert [e["path"] for e in refused.json()["errors"]] == ["/custom_fields/plan"]

        # a field defined a moment ago is never refused as unknown, whatever b's cache holds: a refusal by
        # cached definitions is judged again against the table
        r = await on_a.post(
            "/v1/custom-fields",
            json={"object_type": "contact", "name": "tier", "label": "Tier", "type": "text"},
        )
        assert r.status_code == 201, r.text
        r = await _post(on_b, {"custom_fields": {"plan": "pro", "tier": "gold"}})
        assert r.status_code == 201, r.text
        assert r.json()["custom_fields"] == {"plan": "pro", "tier": "gold"}

        # b's LISTEN connection dies: its cache empties and stays off until a new one is up, so a change
        # made meanwhile (no NOTIFY can reach b) is still seen
        assert await _listener_pids(database_url), "no process listens on crm_custom_fields"
        r = await on_a.post(
            "/v1/custom-fields",
            json={
                "object_type": "contact",
                "name": "seats",
                "label": "Seats",
                "type": "number",
                "required": True,
            },
        )
        assert r.status_code == 201, r.text
        refused = await _until_refused(on_b, {"custom_fields": {"plan": "pro"}})
        assert refused.status_code == 422, refused.text
        assert [e["path"] for e in refused.json()["errors"]] == ["/custom_fields/seats"]
