"""Company merges: contacts, deals, activities and tickets follow the survivor."""

from __future__ import annotations

from typing import Any

import httpx


async def _post(api: httpx.AsyncClient, url: str, body: dict[str, Any]) -> dict[str, Any]:
    r = await api.post(url, json=body)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


async def test_company_merge_moves_every_reference(api: httpx.AsyncClient) -> None:
    keep = await _post(api, "/v1/companies", {"name": "Acme", "external_ids": {"erp": "1"}})
    dup = await _post(api, "/v1/companies", {"name": "ACME Inc", "domain": "acme.com", "industry": "tools"})
    other = await _post(api, "/v1/companies", {"name": "Other"})
    person = await _post(api, "/v1/contacts", {"first_name": "P", "company_id": dup["id"]})
    deal = await _post(api, "/v1/deals", {"name": "D", "company_id": dup["id"]})
    act = await _post(
        api,
        "/v1/activities",
        {"type": "note", "body": "b", "company_ids": [dup["id"], keep["id"], other["id"]]},
    )
    ticket = await _post(api, "/v1/tickets", {"subject": "T", "company_id": dup["id"]})

    dry = await api.post(f"/v1/companies/{keep['id']}/merge", json={"from": [dup["id"]], "dry_run": True})
    assert dry.status_code == 200, dry.text
    expected = {"contacts": 1, "deals": 1, "activities": 1, "tickets": 1, "orders": 0, "external_ids": 0}
    assert dry.json()["moved"] == expected
    assert (await api.get(f"/v1/contacts/{person['id']}")).json()["company_id"] == dup["id"]

    r = await api.post(f"/v1/companies/{keep['id']}/merge", json={"from": [dup["id"]]})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["moved"] == expected
    s = out["survivor"]
    assert s["name"] == "Acme" and s["domain"] == "acme.com" and s["industry"] == "tools"
    assert out["filled"] == {"domain": dup["id"], "industry": dup["id"]}
    assert (await api.get(f"/v1/contacts/{person['id']}")).json()["company_id"] == keep["id"]
    assert (await api.get(f"/v1/deals/{deal['id']}")).json()["company_id"] == keep["id"]
    got = (await api.get(f"/v1/activities/{act['id']}")).json()
    assert got["company_ids"] == [keep["id"], other["id"]]
    assert (await api.get(f"/v1/tickets/{ticket['id']}")).json()["company_id"] == keep["id"]
    # the domain now belongs to the survivor: the natural-key upsert finds it
    r = await api.put("/v1/companies/by-domain/acme.com", json={"employee_count": 5})
    assert r.status_code == 200 and r.json()["id"] == keep["id"]

    moved = await api.get(f"/v1/companies/{dup['id']}")
    assert moved.status_code == 301 and moved.headers["location"] == f"/v1/companies/{keep['id']}"
    assert moved.json()["merged_into"] == keep["id"]
    r = await api.patch(f"/v1/companies/{dup['id']}", json={"name": "x"})
    assert r.status_code == 409 and r.json()["merged_into"] == keep["id"]


async def test_company_merge_problems(api: httpx.AsyncClient, make_client: Any) -> None:
    a = await _post(api, "/v1/companies", {"name": "A"})
    r = await api.post(f"/v1/companies/{a['id']}/merge", json={"from": [a["id"]]})
    assert r.status_code == 409 and r.headers["content-type"] == "application/problem+json"
    foreign = await _post(await make_client(), "/v1/companies", {"name": "F"})
    r = await api.post(f"/v1/companies/{a['id']}/merge", json={"from": [foreign["id"]]})
    assert r.status_code == 404 and r.json()["errors"][0]["path"] == "/from/0"
    r = await api.post(f"/v1/companies/{a['id']}/merge", json={"from": [a["id"]], "extra": 1})
    assert r.status_code == 422


async def test_merge_needs_the_scopes_of_what_it_moves(make_client: Any) -> None:
    narrow = await make_client(scopes=["companies:read", "companies:write"])
    a = await _post(narrow, "/v1/companies", {"name": "A"})
    b = await _post(narrow, "/v1/companies", {"name": "B"})
    r = await narrow.post(f"/v1/companies/{a['id']}/merge", json={"from": [b["id"]]})
    assert r.status_code == 403 and "deals:write" in r.json()["detail"]
    r = await narrow.post("/v1/companies/duplicates", json={"ids": [a["id"]]})
    assert r.status_code == 200
