"""Companies follow the same contract: domain normalisation and uniqueness, upsert by domain, sort by name."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx


async def test_domain_is_normalised_and_unique_among_live_companies(api: httpx.AsyncClient) -> None:
    r = await api.post("/v1/companies", json={"name": "Acme", "domain": "https://WWW.Acme.COM/about"})
    assert r.status_code == 201 and r.json()["domain"] == "acme.com"
    dup = await api.post("/v1/companies", json={"name": "Acme 2", "domain": "acme.com"})
    assert dup.status_code == 409 and dup.json()["errors"][0]["path"] == "/domain"
    bad = await api.post("/v1/companies", json={"name": "Bad", "domain": "not a domain"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["path"] == "/domain"


async def test_name_is_required_and_cannot_be_cleared(api: httpx.AsyncClient) -> None:
    missing = await api.post("/v1/companies", json={"domain": "x.com"})
    assert missing.status_code == 422 and missing.json()["errors"][0]["path"] == "/name"
    c = (await api.post("/v1/companies", json={"name": "N"})).json()
    cleared = await api.patch(f"/v1/companies/{c['id']}", json={"name": None})
    assert cleared.status_code == 422 and cleared.json()["errors"][0]["path"] == "/name"


async def test_money_is_a_decimal_string(api: httpx.AsyncClient) -> None:
    r = await api.post("/v1/companies", json={"name": "M", "annual_revenue": "1250.5", "currency": "EUR"})
    assert r.status_code == 201 and r.json()["annual_revenue"] == "1250.50"
    bad = await api.post("/v1/companies", json={"name": "M", "annual_revenue": "12.345"})
    assert bad.status_code == 422


async def test_upsert_by_domain_concurrently_ends_as_one(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    responses = await asyncio.gather(
        *(api.put("/v1/companies/by-domain/Race.io", json={"name": f"Race {i}"}) for i in range(15))
    )
    assert sorted(r.status_code for r in responses) == [200] * 14 + [201]
    count = await pool.fetchval(
        "SELECT count(*) FROM companies WHERE workspace_id = $1",
        api.workspace_id,  # type: ignore[attr-defined]
    )
    assert count == 1
    missing_name = await api.put("/v1/companies/by-domain/new.io", json={"industry": "x"})
    assert missing_name.status_code == 422


async def test_sort_by_name_and_filters(api: httpx.AsyncClient) -> None:
    for name, industry in (("b", "tools"), ("a", "food"), ("c", "tools")):
        await api.post("/v1/companies", json={"name": name, "industry": industry})
    names = [c["name"] for c in (await api.get("/v1/companies", params={"sort": "name"})).json()["data"]]
    assert names == ["a", "b", "c"]
    desc = (await api.get("/v1/companies", params={"sort": "-name", "limit": 1})).json()
    assert desc["data"][0]["name"] == "c" and desc["has_more"]
    second = (
        await api.get("/v1/companies", params={"sort": "-name", "limit": 1, "cursor": desc["next_cursor"]})
    ).json()
    assert second["data"][0]["name"] == "b"
    tools = (await api.get("/v1/companies", params={"industry": "tools", "sort": "name"})).json()["data"]
    assert [c["name"] for c in tools] == ["b", "c"]


async def test_company_contacts_route(api: httpx.AsyncClient) -> None:
    missing = await api.get("/v1/companies/01a20d7c-a713-740d-9cf9-412be9a77d65/contacts")
    assert missing.status_code == 404
