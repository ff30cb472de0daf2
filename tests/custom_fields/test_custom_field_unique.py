"""Unique custom fields: one live holder per value, across every write path and under races."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import httpx


async def define(api: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    r = await api.post("/v1/custom-fields", json={"object_type": "contact", "label": "L", **body})
    assert r.status_code == 201, r.text
    return dict(r.json())


async def test_unique_value_is_one_live_holder(api: httpx.AsyncClient) -> None:
    await define(api, name="erp_no", type="text", unique=True)
    ann = (await api.post("/v1/contacts", json={"custom_fields": {"erp_no": "A-1"}})).json()
    r = await api.post("/v1/contacts", json={"custom_fields": {"erp_no": "A-1"}})
    assert r.status_code == 409, r.text
    assert r.json()["errors"][0]["path"] == "/custom_fields/erp_no"
    bob = (await api.post("/v1/contacts", json={"custom_fields": {"erp_no": "B-1"}})).json()
    r = await api.patch(f"/v1/contacts/{bob['id']}", json={"custom_fields": {"erp_no": "A-1"}})
    assert r.status_code == 409
    # an archived holder frees the value; restoring it while taken is refused
    await api.delete(f"/v1/contacts/{ann['id']}")
    r = await api.patch(f"/v1/contacts/{bob['id']}", json={"custom_fields": {"erp_no": "A-1"}})
    assert r.status_code == 200, r.text
    assert (await api.post(f"/v1/contacts/{ann['id']}/restore")).status_code == 409
    # an unchanged value does not clash with itself
    assert (await api.patch(f"/v1/contacts/{bob['id']}", json={"first_name": "Bob"})).status_code == 200


async def test_batch_duplicates_fail_per_item(api: httpx.AsyncClient) -> None:
    await define(api, name="erp_no", type="number", unique=True)
    items = [
        {"custom_fields": {"erp_no": 1}},
        {"custom_fields": {"erp_no": 1.0}},
        {"custom_fields": {"erp_no": 2}},
    ]
    r = await api.post("/v1/contacts/batch", json={"items": items})
    assert [x["status"] for x in r.json()["results"]] == [201, 409, 201]


async def test_unique_definition_over_duplicate_data_is_refused(api: httpx.AsyncClient) -> None:
    await define(api, name="plan", type="text")
    for _ in range(2):
        await api.post("/v1/contacts", json={"custom_fields": {"plan": "pro"}})
    r = await api.post(
        "/v1/custom-fields", json={"object_type": "contact", "name": "plan2", "label": "L", "type": "text"}
    )
    assert r.status_code == 201
    r = await api.post(
        "/v1/custom-fields",
        json={"object_type": "contact", "name": "plan", "label": "L", "type": "text", "unique": True},
    )
    assert r.status_code == 409  # the live "plan" holds the name
    assert r.json()["errors"][0]["path"] == "/name"


async def test_concurrent_creates_leave_one_holder(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    await define(api, name="erp_no", type="text", unique=True)
    for round_ in range(5):
        body = {"custom_fields": {"erp_no": f"race-{round_}"}}
        results = await asyncio.gather(*(api.post("/v1/contacts", json=body) for _ in range(2)))
        assert sorted(r.status_code for r in results) == [201, 409], [r.text for r in results]
        loser = next(r for r in results if r.status_code == 409)
        assert loser.json()["errors"][0]["path"] == "/custom_fields/erp_no"
    count = await pool.fetchval(
        "SELECT count(*) FROM contacts WHERE workspace_id = $1 AND custom_fields ? 'erp_no'",
        api.workspace_id,  # type: ignore[attr-defined]
    )
    assert count == 5


async def test_trigger_holds_without_the_application_check(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    """The database refuses a duplicate even from a writer that skipped the check (the race's backstop)."""
    await define(api, name="erp_no", type="text", unique=True)
    ann = (await api.post("/v1/contacts", json={"custom_fields": {"erp_no": "X"}})).json()
    bob = (await api.post("/v1/contacts", json={"custom_fields": {"erp_no": "Y"}})).json()
    async with pool.acquire() as conn:
        try:
            await conn.execute(
                'UPDATE contacts SET custom_fields = \'{"erp_no": "X"}\' WHERE workspace_id = $1 AND id = $2',
                api.workspace_id,  # type: ignore[attr-defined]
                uuid.UUID(bob["id"]),
            )
        except asyncpg.UniqueViolationError as exc:
            assert exc.constraint_name == "custom_fields.erp_no"
        else:
            raise AssertionError("the duplicate was written")
    assert ann["custom_fields"] == {"erp_no": "X"}
