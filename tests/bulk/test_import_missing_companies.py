"""A contact's company by domain: a domain no live company has makes the company
(``create_missing_companies``, on by default), once per domain whatever the number of rows and chunks
naming it, through the write path (its ``company.created`` event), and not at all in a dry run or with
the option off."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx
from jobs import drain


async def _import(api: httpx.AsyncClient, pool: asyncpg.Pool, chunk: int, **body: Any) -> dict[str, Any]:
    r = await api.post("/v1/imports", json={"object_type": "contacts", "format": "csv", **body})
    assert r.status_code == 202, r.text
    await drain(pool, chunk)
    job = (await api.get(f"/v1/imports/{r.json()['id']}")).json()
    assert job["status"] == "succeeded", job
    return job  # type: ignore[no-any-return]


async def _companies(api: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    data = (await api.get("/v1/companies", params={"limit": 100})).json()["data"]
    return {c["domain"]: c for c in data}


async def _count(pool: asyncpg.Pool, api: httpx.AsyncClient, type_: str) -> int:
    ws = api.workspace_id  # type: ignore[attr-defined]
    query = "SELECT count(*) FROM events WHERE workspace_id = $1 AND type = $2"
    n: int = await pool.fetchval(query, ws, type_)
    return n


async def test_missing_companies_are_made_once_each_and_the_contacts_point_at_them(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    old = (await api.post("/v1/companies", json={"name": "Old Co", "domain": "old.example"})).json()
    csv = (
        "email,company.domain\n"
        "a@x.com,new.example\n"  # 1: made here
        "b@x.com,OLD.example\n"  # 2: the live one (domains compare lower-cased)
        "c@x.com,new.example\n"  # 3: the same new company again, in the next chunk
        "d@x.com,not a domain\n"  # 4: no company can be made of it
        "e@x.com,second.example\n"  # 5: made in a later chunk
        "f@x.com,\n"  # 6: no company
    )
    job = await _import(api, pool, 2, upsert_key="email", file=csv)
    assert job["create_missing_companies"] is True
    assert (job["created"], job["failed"]) == (5, 1)
    errors = (await api.get(f"/v1/imports/{job['id']}/errors")).json()["data"]
    assert [(e["row"], e["column"], e["code"]) for e in errors] == [(4, "company.domain", "invalid")]

    companies = await _companies(api)
    assert set(companies) == {"old.example", "new.example", "second.example"}
    assert companies["new.example"]["name"] == "new.example"
    assert companies["old.example"]["id"] == old["id"]
    contacts = (await api.get("/v1/contacts", params={"limit": 100})).json()["data"]
    company_of = {c["email"]: c["company_id"] for c in contacts}
    assert company_of == {
        "a@x.com": companies["new.example"]["id"],
        "b@x.com": old["id"],
        "c@x.com": companies["new.example"]["id"],
        "e@x.com": companies["second.example"]["id"],
        "f@x.com": None,
    }
    assert await _count(pool, api, "company.created") == 3  # Old Co and the two made by the import


async def test_a_dry_run_or_the_option_off_makes_no_company(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    csv = "email,company.domain\na@x.com,new.example\n"
    dry = await _import(api, pool, 2000, upsert_key="email", dry_run=True, file=csv)
    assert (dry["created"], dry["failed"]) == (1, 0)  # judged good: the company would be made
    off = await _import(api, pool, 2000, upsert_key="email", create_missing_companies=False, file=csv)
    assert (off["created"], off["failed"]) == (0, 1)
    errors = (await api.get(f"/v1/imports/{off['id']}/errors")).json()["data"]
    assert [(e["row"], e["code"]) for e in errors] == [(1, "not_found")]
    assert await _companies(api) == {}
    assert await _count(pool, api, "company.created") == 0
    assert (await api.get("/v1/contacts")).json()["data"] == []
