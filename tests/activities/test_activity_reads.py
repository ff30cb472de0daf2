"""Activity lists and search: every filter, every sort (nullable ones paged through their nulls), and the
index behind each of them."""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import httpx

from crm_api.activities.spec import ACTIVITIES

MakeClient = Callable[..., Awaitable[httpx.AsyncClient]]


async def _subjects(api: httpx.AsyncClient, **params: Any) -> list[str]:
    r = await api.get("/v1/activities", params={"sort": "created_at", **params})
    assert r.status_code == 200, r.text
    return [a["subject"] for a in r.json()["data"]]


async def _all_pages(api: httpx.AsyncClient, **params: Any) -> list[str]:
    seen: list[str] = []
    cursor = None
    while True:
        page = (
            await api.get("/v1/activities", params={**params, **({"cursor": cursor} if cursor else {})})
        ).json()
        seen += [a["subject"] for a in page["data"]]
        if not page["has_more"]:
            return seen
        cursor = page["next_cursor"]


async def _setup(api: httpx.AsyncClient) -> dict[str, str]:
    ann = (await api.post("/v1/contacts", json={"first_name": "Ann"})).json()["id"]
    bob = (await api.post("/v1/contacts", json={"first_name": "Bob"})).json()["id"]
    acme = (await api.post("/v1/companies", json={"name": "Acme"})).json()["id"]
    owner = (await api.post("/v1/members", json={"email": "o@example.com", "name": "O"})).json()["id"]
    deal = (await api.post("/v1/deals", json={"name": "Big one", "contact_id": bob})).json()["id"]
    ticket = (await api.post("/v1/tickets", json={"subject": "Broken", "requester_id": ann})).json()["id"]
    items = [
        {"type": "note", "subject": "n1", "contact_ids": [ann], "occurred_at": "2026-11-01T00:00:00Z"},
        {"type": "call", "subject": "c1", "contact_ids": [ann, bob], "company_ids": [acme],
         "owner_id": owner, "direction": "outbound", "occurred_at": "2026-11-10T00:00:00Z"},
        {"type": "task", "subject": "t-open-late", "due_at": "2026-12-20T00:00:00Z", "deal_ids": [deal],
         "owner_id": owner},
        {"type": "task", "subject": "t-open-soon", "due_at": "2026-12-01T00:00:00Z", "ticket_ids": [ticket]},
        {"type": "task", "subject": "t-done", "due_at": "2026-11-15T00:00:00Z",
         "completed_at": "2026-11-14T00:00:00Z", "company_ids": [acme]},
        {"type": "task", "subject": "t-undated"},
    ]  # fmt: skip
    for item in items:
        r = await api.post("/v1/activities", json=item)
        assert r.status_code == 201, r.text
    return {"ann": ann, "bob": bob, "acme": acme, "owner": owner, "deal": deal, "ticket": ticket}


async def test_each_query_filter(api: httpx.AsyncClient) -> None:
    ids = await _setup(api)
    assert await _subjects(api, type="call") == ["c1"]
    assert await _subjects(api, contact_id=ids["ann"]) == ["n1", "c1"]
    assert await _subjects(api, contact_id=ids["bob"]) == ["c1"]
    assert await _subjects(api, company_id=ids["acme"]) == ["c1", "t-done"]
    assert await _subjects(api, deal_id=ids["deal"]) == ["t-open-late"]
    assert await _subjects(api, ticket_id=ids["ticket"]) == ["t-open-soon"]
    assert await _subjects(api, owner_id=ids["owner"]) == ["c1", "t-open-late"]
    assert await _subjects(api, due_before="2026-12-10T00:00:00Z") == ["t-open-soon", "t-done"]
    assert await _subjects(api, due_after="2026-12-10T00:00:00Z") == ["t-open-late"]
    assert await _subjects(api, open="true") == ["t-open-late", "t-open-soon", "t-undated"]
    assert await _subjects(api, open="false") == ["t-done"]
    assert await _subjects(api, open="true", sort="due_at") == ["t-open-soon", "t-open-late", "t-undated"]
    assert await _subjects(
        api, occurred_after="2026-11-05T00:00:00Z", occurred_before="2026-11-12T00:00:00Z"
    ) == ["c1"]
    assert await _subjects(api, occurred_before="2026-11-20T00:00:00Z") == ["n1", "c1", "t-done"]
    assert await _subjects(api, q="OPEN") == ["t-open-late", "t-open-soon"]
    everything = await _subjects(api)
    assert await _subjects(api, created_after="2000-01-01T00:00:00Z") == everything
    assert await _subjects(api, created_before="2000-01-01T00:00:00Z") == []
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat()
    assert await _subjects(api, updated_after=future) == []


async def test_updated_after_sees_archived_activities(api: httpx.AsyncClient) -> None:
    note = (await api.post("/v1/activities", json={"type": "note", "subject": "gone"})).json()
    await api.delete(f"/v1/activities/{note['id']}")
    assert await _subjects(api) == []
    assert await _subjects(api, updated_after="2000-01-01T00:00:00Z", sort="updated_at") == ["gone"]


async def test_bad_query_parameters_are_422s_naming_them(api: httpx.AsyncClient) -> None:
    for params, path in (
        ({"open": "maybe"}, "/open"),
        ({"contact_id": "not-a-uuid"}, "/contact_id"),
        ({"due_before": "tomorrow"}, "/due_before"),
        ({"stage_id": "x"}, "/stage_id"),
        ({"sort": "subject"}, "/sort"),
    ):
        r = await api.get("/v1/activities", params=params)
        assert r.status_code == 422, (params, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["errors"][0]["path"] == path


async def test_nullable_sorts_page_through_the_nulls(api: httpx.AsyncClient) -> None:
    await _setup(api)
    # ascending: dated rows first, then the undated in id order; descending: the reverse
    due = ["t-done", "t-open-soon", "t-open-late", "n1", "c1", "t-undated"]
    occurred = ["n1", "c1", "t-done", "t-open-late", "t-open-soon", "t-undated"]
    for limit in (1, 2, 4, 50):
        assert await _all_pages(api, sort="due_at", limit=limit) == due
        assert await _all_pages(api, sort="-due_at", limit=limit) == due[::-1]
        assert await _all_pages(api, sort="occurred_at", limit=limit) == occurred
        assert await _all_pages(api, sort="-occurred_at", limit=limit) == occurred[::-1]
    assert await _all_pages(api, sort="-due_at", limit=2, type="task") == [
        "t-undated",
        "t-open-late",
        "t-open-soon",
        "t-done",
    ]


async def test_search_by_links_and_dates(api: httpx.AsyncClient) -> None:
    ids = await _setup(api)

    async def search(flt: Any, sort: str = "created_at") -> list[str]:
        r = await api.post("/v1/activities/search", json={"filter": flt, "sort": [sort]})
        assert r.status_code == 200, r.text
        return [a["subject"] for a in r.json()["data"]]

    assert await search({"field": "contact_ids", "op": "contains", "value": ids["bob"]}) == ["c1"]
    any_of = {"field": "company_ids", "op": "in", "value": [ids["acme"], ids["deal"]]}
    assert await search(any_of) == ["c1", "t-done"]
    unlinked = {
        "and": [
            {"field": "contact_ids", "op": "is_null", "value": True},
            {"field": "type", "op": "eq", "value": "task"},
        ]
    }
    assert await search(unlinked, "due_at") == ["t-done", "t-open-soon", "t-open-late", "t-undated"]
    assert await search({"field": "completed_at", "op": "is_null", "value": False}) == ["t-done"]
    between = {
        "field": "occurred_at",
        "op": "between",
        "value": ["2026-11-01T00:00:00Z", "2026-11-10T00:00:00Z"],
    }
    assert await search(between, "-occurred_at") == ["c1", "n1"]
    for flt, path in (
        ({"field": "contact_ids", "op": "contains", "value": "x"}, "/filter/value"),
        ({"field": "contact_ids", "op": "gt", "value": ids["bob"]}, "/filter/op"),
        ({"field": "body", "op": "eq", "value": "x"}, "/filter/field"),
    ):
        r = await api.post("/v1/activities/search", json={"filter": flt})
        assert r.status_code == 422 and r.json()["errors"][0]["path"] == path, r.text


async def test_every_filter_and_sort_has_an_index(pool: asyncpg.Pool) -> None:
    rows = await pool.fetch(
        """SELECT am.amname AS method, pg_get_expr(i.indpred, i.indrelid) AS predicate,
                  array(SELECT a.attname FROM unnest(i.indkey) WITH ORDINALITY AS k(num, pos)
                        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.num
                        ORDER BY k.pos)::text[] AS columns
           FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam
           WHERE i.indrelid = 'activities'::regclass"""
    )
    btree = [tuple(r["columns"]) for r in rows if r["method"] == "btree" and r["predicate"] is None]
    gin = {r["columns"][0] for r in rows if r["method"] == "gin"}

    def indexed(column: str) -> bool:
        return column in gin or any(cols[:2] == ("workspace_id", column) for cols in btree)

    columns = {f.name for f in ACTIVITIES.fields if f.filterable}
    columns |= {qp.column for qp in ACTIVITIES.query_params if qp.op != "flag"}
    columns |= set(ACTIVITIES.sorts) | {"id"}
    assert {c for c in columns if not indexed(c)} == set()
    # open=true is served by the partial index whose predicate it repeats word for word
    open_param = next(qp for qp in ACTIVITIES.query_params if qp.name == "open")
    predicates = {r["predicate"] for r in rows if r["predicate"]}
    assert "((type = 'task'::text) AND (completed_at IS NULL))" in predicates
    assert open_param.when[0] == "type = 'task' AND completed_at IS NULL"
    # the timeline reads activities by (workspace_id, occurred_at, id) and through each link array
    assert ("workspace_id", "occurred_at", "id") in btree
    assert {"contact_ids", "company_ids", "deal_ids", "ticket_ids"} <= gin


async def test_a_tampered_cursor_is_a_400_not_a_crash(api: httpx.AsyncClient) -> None:
    await _setup(api)
    for sort, value in (("due_at", "abc"), ("occurred_at", 5), ("created_at", None), ("due_at", ["t", "x"])):
        raw = json.dumps([sort, value, str(uuid.uuid4())]).encode()
        cursor = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        r = await api.get("/v1/activities", params={"sort": sort, "cursor": cursor})
        assert r.status_code == 400, (sort, value, r.text)
        assert r.json()["code"] == "invalid_cursor"


async def test_scopes_are_per_resource(make_client: MakeClient) -> None:
    reader = await make_client(scopes=["activities:read"])
    contacts_only = await make_client(scopes=["contacts:read", "contacts:write"])
    assert (await reader.get("/v1/activities")).status_code == 200
    assert (await reader.post("/v1/activities", json={"type": "note"})).status_code == 403
    assert (await contacts_only.get("/v1/activities")).status_code == 403
    assert (await contacts_only.post("/v1/activities/search", json={})).status_code == 403
