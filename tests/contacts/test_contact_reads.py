"""Lists, keyset pages, sorts, query filters, q=, incremental sync."""

from __future__ import annotations

import asyncio

import httpx


async def _seed(api: httpx.AsyncClient, n: int, **extra: object) -> list[dict[str, object]]:
    items = [{"email": f"p{i}@x.com", "first_name": f"P{i}", **extra} for i in range(n)]
    r = await api.post("/v1/contacts/batch", json={"items": items})
    return [x["object"] for x in r.json()["results"]]


async def test_keyset_pages_walk_every_row_once_even_while_rows_are_inserted(api: httpx.AsyncClient) -> None:
    created = await _seed(api, 7)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 2, "sort": "created_at"}
        if cursor:
            params["cursor"] = cursor
        page = (await api.get("/v1/contacts", params=params)).json()
        assert page["object"] == "list"
        seen += [c["id"] for c in page["data"]]
        if pages == 0:
            await api.post("/v1/contacts", json={"first_name": "late"})  # lands after the cursor
        pages += 1
        if not page["has_more"]:
            assert page["next_cursor"] is None
            break
        cursor = page["next_cursor"]
    assert seen[:7] == [c["id"] for c in created]
    assert len(seen) == len(set(seen)) == 8


async def test_default_sort_is_newest_first_and_limit_bounds(api: httpx.AsyncClient) -> None:
    created = await _seed(api, 3)
    page = (await api.get("/v1/contacts")).json()
    assert [c["id"] for c in page["data"]] == [c["id"] for c in reversed(created)]
    for bad in ("0", "201", "x"):
        r = await api.get("/v1/contacts", params={"limit": bad})
        assert r.status_code == 422
        assert r.json()["errors"][0]["path"] == "/limit"


async def test_bad_and_foreign_cursors_are_400(api: httpx.AsyncClient) -> None:
    await _seed(api, 3)
    r = await api.get("/v1/contacts", params={"cursor": "not-a-cursor"})
    assert r.status_code == 400 and r.json()["code"] == "invalid_cursor"
    cursor = (await api.get("/v1/contacts", params={"limit": 1})).json()["next_cursor"]
    other = await api.get("/v1/contacts", params={"limit": 1, "cursor": cursor, "sort": "updated_at"})
    assert other.status_code == 400 and other.json()["code"] == "invalid_cursor"


async def test_unknown_query_parameters_and_sorts_are_named(api: httpx.AsyncClient) -> None:
    r = await api.get("/v1/contacts", params={"emial": "a@x.com"})
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "/emial"
    r = await api.get("/v1/contacts", params={"sort": "password"})
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "/sort"


async def test_query_filters(api: httpx.AsyncClient) -> None:
    company = (await api.post("/v1/companies", json={"name": "Acme"})).json()
    a = (
        await api.post(
            "/v1/contacts", json={"email": "Ann@X.com", "lifecycle_stage": "lead", "tags": ["vip"]}
        )
    ).json()
    b = (
        await api.post(
            "/v1/contacts",
            json={"email": "bob@x.com", "lifecycle_stage": "customer", "company_id": company["id"]},
        )
    ).json()

    async def ids(**params: str) -> list[str]:
        r = await api.get("/v1/contacts", params=params)
        assert r.status_code == 200, r.text
        return [c["id"] for c in r.json()["data"]]

    assert await ids(email=" ANN@x.com") == [a["id"]]
    assert await ids(lifecycle_stage="customer") == [b["id"]]
    assert await ids(tag="vip") == [a["id"]]
    assert await ids(company_id=company["id"]) == [b["id"]]
    assert await ids(created_after=a["created_at"]) == [b["id"]]
    assert await ids(created_before=b["created_at"]) == [a["id"]]
    assert await ids(q="bob") == [b["id"]]
    assert await ids(q="x.com", sort="created_at") == [a["id"], b["id"]]
    bad = await api.get("/v1/contacts", params={"company_id": "nope"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["path"] == "/company_id"


async def test_updated_after_returns_changes_in_order_including_archived(api: httpx.AsyncClient) -> None:
    a, b, c = await _seed(api, 3)
    mark = (await api.get(f"/v1/contacts/{c['id']}")).json()["updated_at"]
    await asyncio.sleep(0.01)
    await api.patch(f"/v1/contacts/{a['id']}", json={"title": "changed"})
    await api.delete(f"/v1/contacts/{b['id']}")
    page = (await api.get("/v1/contacts", params={"updated_after": mark, "sort": "updated_at"})).json()
    assert [x["id"] for x in page["data"]] == [a["id"], b["id"]]
    assert page["data"][1]["archived_at"] is not None
