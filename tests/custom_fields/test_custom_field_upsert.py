"""PUT /v1/<resource>/by-custom-field/{name}/{value}: a unique custom field as the upsert key."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx


async def define(api: httpx.AsyncClient, **body: Any) -> None:
    r = await api.post("/v1/custom-fields", json={"label": "L", **body})
    assert r.status_code == 201, r.text


async def test_upsert_creates_then_updates(api: httpx.AsyncClient) -> None:
    await define(api, object_type="company", name="erp_no", type="number", unique=True)
    await define(api, object_type="company", name="tier", type="text")
    r = await api.put(
        "/v1/companies/by-custom-field/erp_no/42", json={"name": "Acme", "custom_fields": {"tier": "a"}}
    )
    assert r.status_code == 201, r.text
    first = r.json()
    assert first["custom_fields"] == {"erp_no": 42, "tier": "a"}
    r = await api.put("/v1/companies/by-custom-field/erp_no/42", json={"name": "Acme Ltd"})
    assert r.status_code == 200, r.text
    assert r.json()["id"] == first["id"]
    assert r.json()["name"] == "Acme Ltd"
    assert r.json()["custom_fields"] == {"erp_no": 42, "tier": "a"}


async def test_upsert_refusals(api: httpx.AsyncClient) -> None:
    await define(api, object_type="contact", name="erp_no", type="number", unique=True)
    await define(api, object_type="contact", name="plain", type="text")
    r = await api.put("/v1/contacts/by-custom-field/plain/x", json={})
    assert r.status_code == 422
    assert r.json()["errors"][0]["path"] == "/path/name"
    r = await api.put("/v1/contacts/by-custom-field/erp_no/abc", json={})
    assert r.status_code == 422
    assert r.json()["errors"][0]["path"] == "/path/value"
    r = await api.put("/v1/contacts/by-custom-field/erp_no/1", json={"custom_fields": {"erp_no": 2}})
    assert r.status_code == 422
    assert r.json()["errors"][0]["path"] == "/custom_fields/erp_no"


async def test_concurrent_upserts_make_one_object(api: httpx.AsyncClient) -> None:
    await define(api, object_type="deal", name="order_ref", type="text", unique=True)
    pipelines = (await api.get("/v1/pipelines")).json()["data"]
    body: dict[str, Any] = {"name": "Order"}
    if pipelines:
        body["pipeline_id"] = pipelines[0]["id"]
    results = await asyncio.gather(
        *(api.put("/v1/deals/by-custom-field/order_ref/SO-1", json=body) for _ in range(6))
    )
    codes = sorted(r.status_code for r in results)
    assert codes == [200] * 5 + [201], [r.text for r in results]
    assert len({r.json()["id"] for r in results}) == 1
