"""Deal lists, filters and search; every filter and sort backed by an index; the workspace wall."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx
from clients import MakeClient

from crm_api.deals.spec import DEALS


async def _setup(api: httpx.AsyncClient) -> dict[str, Any]:
    p = next(p for p in (await api.get("/v1/pipelines")).json()["data"] if p["is_default"])
    stage = {s["name"]: s["id"] for s in p["stages"]}
    acme = (await api.post("/v1/companies", json={"name": "Acme", "industry": "tools"})).json()
    ann = (await api.post("/v1/contacts", json={"first_name": "Ann"})).json()
    bob = (await api.post("/v1/contacts", json={"first_name": "Bob"})).json()
    owner = (await api.post("/v1/members", json={"email": "o@example.com", "name": "O"})).json()["id"]
    bodies = {
        "alpha": {"amount": "100", "currency": "EUR", "expected_close_date": "2026-12-01",
                  "contact_id": ann["id"], "company_id": acme["id"], "tags": ["hot"], "owner_id": owner,
                  "source": "web"},
        "beta": {"amount": "5000", "currency": "EUR", "expected_close_date": "2027-02-01",
                 "contact_id": bob["id"], "contact_ids": [ann["id"]], "stage_id": stage["Won"]},
        "gamma": {"stage_id": stage["Proposal"], "custom_fields": {"tier": "gold"}},
    }  # fmt: skip
    ids = {}
    for name, body in bodies.items():
        r = await api.post("/v1/deals", json={"name": name, **body})
        assert r.status_code == 201, r.text
        ids[name] = r.json()["id"]
    return {"p": p, "stage": stage, "acme": acme, "ann": ann, "bob": bob, "owner": owner, "ids": ids}


async def _names(api: httpx.AsyncClient, **params: str) -> list[str]:
    r = await api.get("/v1/deals", params={"sort": "name", **params})
    assert r.status_code == 200, r.text
    return [d["name"] for d in r.json()["data"]]


async def _found(api: httpx.AsyncClient, flt: Any) -> list[str]:
    r = await api.post("/v1/deals/search", json={"filter": flt, "sort": ["name"]})
    assert r.status_code == 200, r.text
    return [d["name"] for d in r.json()["data"]]


async def test_query_parameter_filters(api: httpx.AsyncClient) -> None:
    s = await _setup(api)
    assert await _names(api) == ["alpha", "beta", "gamma"]
    assert await _names(api, pipeline_id=s["p"]["id"]) == ["alpha", "beta", "gamma"]
    assert await _names(api, stage_id=s["stage"]["Proposal"]) == ["gamma"]
    assert await _names(api, status="won") == ["beta"]
    assert await _names(api, status="open") == ["alpha", "gamma"]
    assert await _names(api, owner_id=s["owner"]) == ["alpha"]
    assert await _names(api, contact_id=s["ann"]["id"]) == ["alpha", "beta"]  # primary or associated
    assert await _names(api, contact_id=s["bob"]["id"]) == ["beta"]
    assert await _names(api, company_id=s["acme"]["id"]) == ["alpha"]
    assert await _names(api, amount_gte="100.00") == ["alpha", "beta"]
    assert await _names(api, amount_gte="101", amount_lte="5000") == ["beta"]
    assert await _names(api, expected_close_after="2026-12-01") == ["beta"]
    assert await _names(api, expected_close_before="2027-01-01") == ["alpha"]
    assert await _names(api, tag="hot") == ["alpha"]
    assert await _names(api, source="web") == ["alpha"]
    assert await _names(api, closed_after="2020-01-01T00:00:00Z") == ["beta"]
    assert await _names(api, q="amm") == ["gamma"]
    assert await _names(api, sort="-name") == ["gamma", "beta", "alpha"]
    for params, path in [
        ({"expected_close_after": "next week"}, "/expected_close_after"),
        ({"amount_gte": "lots"}, "/amount_gte"),
        ({"contact_id": "nope"}, "/contact_id"),
        ({"stage": "x"}, "/stage"),
        ({"sort": "amount"}, "/sort"),
    ]:
        r = await api.get("/v1/deals", params=params)
        assert r.status_code == 422, (params, r.text)
        assert r.json()["errors"][0]["path"] == path


async def test_contact_ids_always_hold_the_primary_contact(api: httpx.AsyncClient) -> None:
    s = await _setup(api)
    beta = (await api.get(f"/v1/deals/{s['ids']['beta']}")).json()
    assert beta["contact_ids"] == [s["bob"]["id"], s["ann"]["id"]]
    r = await api.patch(f"/v1/deals/{beta['id']}", json={"contact_ids": []})
    assert r.json()["contact_ids"] == [s["bob"]["id"]]
    r = await api.patch(
        f"/v1/deals/{beta['id']}",
        json={"contact_ids": [s["ann"]["id"], "01a20d7c-a713-740d-9cf9-412be9a77d65"]},
    )
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "/contact_ids/1"


async def test_search_with_the_filter_grammar(api: httpx.AsyncClient) -> None:
    s = await _setup(api)
    assert await _found(api, {"field": "amount", "op": "gt", "value": "100"}) == ["beta"]
    assert await _found(
        api, {"field": "expected_close_date", "op": "between", "value": ["2026-11-01", "2027-01-01"]}
    ) == ["alpha"]
    assert await _found(api, {"field": "contact_ids", "op": "contains", "value": s["ann"]["id"]}) == [
        "alpha",
        "beta",
    ]
    assert await _found(api, {"field": "contact_ids", "op": "in", "value": [s["bob"]["id"]]}) == ["beta"]
    assert await _found(api, {"field": "contact_id", "op": "eq", "value": s["ann"]["id"]}) == ["alpha"]
    assert await _found(api, {"field": "company.industry", "op": "eq", "value": "tools"}) == ["alpha"]
    assert await _found(api, {"field": "contact.first_name", "op": "eq", "value": "Bob"}) == ["beta"]
    assert await _found(api, {"field": "custom_fields.tier", "op": "eq", "value": "gold"}) == ["gamma"]
    either = {
        "or": [
            {"field": "status", "op": "eq", "value": "won"},
            {"field": "tags", "op": "contains", "value": "hot"},
        ]
    }
    assert await _found(api, either) == ["alpha", "beta"]
    assert await _found(api, {"field": "closed_at", "op": "is_null", "value": True}) == ["alpha", "gamma"]
    bad = await api.post(
        "/v1/deals/search", json={"filter": {"field": "expected_close_date", "op": "gt", "value": "soon"}}
    )
    assert bad.status_code == 422 and bad.json()["errors"][0]["path"] == "/filter/value"
    bad = await api.post(
        "/v1/deals/search", json={"filter": {"field": "lost_reason", "op": "eq", "value": "x"}}
    )
    assert bad.status_code == 422 and bad.json()["errors"][0]["path"] == "/filter/field"


async def test_every_filter_and_sort_is_backed_by_an_index(pool: asyncpg.Pool) -> None:
    rows = await pool.fetch(
        "SELECT i.relname AS name, am.amname AS method, "
        "array_agg(a.attname ORDER BY k.n) AS columns "
        "FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid "
        "JOIN pg_am am ON am.oid = i.relam "
        "CROSS JOIN LATERAL unnest(x.indkey) WITH ORDINALITY AS k(attnum, n) "
        "JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum "
        "WHERE t.relname = 'deals' GROUP BY i.relname, am.amname"
    )
    btree = [list(r["columns"]) for r in rows if r["method"] == "btree"]
    gin = {r["columns"][0] for r in rows if r["method"] == "gin"}

    def indexed(column: str) -> bool:
        return column in gin or any(cols[:2] == ["workspace_id", column] for cols in btree)

    searchable = [f.name for f in DEALS.fields if f.filterable and f.type != "jsonb"]
    params = [qp.column for qp in DEALS.query_params]
    missing = [c for c in {*searchable, *params, *DEALS.sorts, "search_text"} if not indexed(c)]
    assert not missing, f"no index for {missing}"
    # equality filters carry the default sort, so a filtered page is an index range
    for qp in DEALS.query_params:
        if (qp.op == "eq" and qp.type == "uuid") or qp.column == "status":
            assert ["workspace_id", qp.column, "created_at", "id"] in btree, qp.name
    for sort in DEALS.sorts:
        assert any(cols[:3] == ["workspace_id", sort, "id"] for cols in btree), sort


async def test_other_workspaces_get_404_on_every_deal_and_pipeline_route(make_client: MakeClient) -> None:
    a = await make_client()
    b = await make_client()
    pa = next(p for p in (await a.get("/v1/pipelines")).json()["data"] if p["is_default"])
    stage = pa["stages"][0]["id"]
    contact = (await a.post("/v1/contacts", json={"first_name": "A"})).json()
    deal = (await a.post("/v1/deals", json={"name": "A's", "contact_id": contact["id"]})).json()
    d, p = f"/v1/deals/{deal['id']}", f"/v1/pipelines/{pa['id']}"
    calls = [
        b.get(d),
        b.patch(d, json={"name": "x"}),
        b.delete(d),
        b.post(f"{d}/restore"),
        b.get(f"{d}/stage-history"),
        b.get(p),
        b.patch(p, json={"name": "x"}),
        b.delete(p),
        b.post(f"{p}/restore"),
        b.post(f"{p}/stages", json={"name": "x"}),
        b.patch(f"{p}/stages/{stage}", json={"name": "x"}),
        b.delete(f"{p}/stages/{stage}"),
        b.put(f"{p}/stages/order", json={"stage_ids": [stage]}),
    ]
    for call in calls:
        r = await call
        assert r.status_code == 404, (r.request.method, r.request.url, r.status_code, r.text)
    for body, path in [
        ({"name": "x", "pipeline_id": pa["id"]}, "/pipeline_id"),
        ({"name": "x", "stage_id": stage}, "/stage_id"),
        ({"name": "x", "contact_id": contact["id"]}, "/contact_id"),
        ({"name": "x", "contact_ids": [contact["id"]]}, "/contact_ids/0"),
    ]:
        r = await b.post("/v1/deals", json=body)
        assert r.status_code == 422 and r.json()["errors"][0]["path"] == path, (body, r.text)
    assert (await b.get("/v1/deals")).json()["data"] == []
    assert (await b.get("/v1/deals", params={"contact_id": contact["id"]})).json()["data"] == []
    assert pa["id"] not in [x["id"] for x in (await b.get("/v1/pipelines")).json()["data"]]
    unchanged = (await a.get(d)).json()
    assert unchanged["version"] == 1 and unchanged["archived_at"] is None
    assert (await a.get(p)).json()["version"] == 1


async def test_scopes_guard_the_new_routes(make_client: MakeClient) -> None:
    reader = await make_client(scopes=["deals:read", "pipelines:read"])
    assert (await reader.get("/v1/deals")).status_code == 200
    assert (await reader.get("/v1/pipelines")).status_code == 200
    assert (await reader.post("/v1/deals", json={"name": "x"})).status_code == 403
    assert (
        await reader.post("/v1/pipelines", json={"name": "x", "stages": [{"name": "a"}]})
    ).status_code == 403
    contacts_only = await make_client(scopes=["contacts:read"])
    assert (await contacts_only.get("/v1/deals")).status_code == 403
