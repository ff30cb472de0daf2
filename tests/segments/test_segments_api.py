"""/v1/segments: the resource contract, filter validation, static members, an object's segments,
the history; the events of every membership change."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx


async def _ok(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_create_validates_the_filter_against_the_object_types_grammar(api: httpx.AsyncClient) -> None:
    good = {"field": "company.industry", "op": "eq", "value": "retail"}
    body = {"name": "Retail", "object_type": "contact", "kind": "dynamic", "filter": good}
    seg = await _ok(await api.post("/v1/segments", json=body), 201)
    assert seg["object"] == "segment" and seg["status"] == "building" and seg["member_count"] == 0
    assert seg["filter"] == good
    for flt, path in (
        ({"field": "nope", "op": "eq", "value": 1}, "/filter/field"),
        ({"and": [{"field": "created_at", "op": "gt", "value": "-3x"}]}, "/filter/and/0/value"),
        ({"field": "company.stage_id", "op": "eq", "value": "x"}, "/filter/field"),
    ):
        r = await api.post("/v1/segments", json={**body, "filter": flt})
        assert r.status_code == 422, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert [e["path"] for e in r.json()["errors"]] == [path], r.text
    # a deal's grammar is not a contact's
    r = await api.post(
        "/v1/segments",
        json={"name": "Big", "object_type": "company", "kind": "dynamic",
              "filter": {"field": "amount", "op": "gt", "value": 5}},
    )  # fmt: skip
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "/filter/field"
    missing = await api.post("/v1/segments", json={"name": "X", "object_type": "deal", "kind": "dynamic"})
    assert missing.status_code == 422 and missing.json()["errors"][0]["path"] == "/filter"
    static = {"name": "S", "object_type": "deal", "kind": "static", "filter": good}
    r = await api.post("/v1/segments", json=static)
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "/filter"
    # a PATCH is judged the same way, and kind and object_type are fixed
    r = await api.patch(f"/v1/segments/{seg['id']}", json={"filter": {"field": "x", "op": "eq", "value": 1}})
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "/filter/field"
    r = await api.patch(f"/v1/segments/{seg['id']}", json={"kind": "static"})
    assert r.status_code == 422


async def test_the_shared_resource_contract(api: httpx.AsyncClient) -> None:
    body = {"name": "VIPs", "object_type": "contact", "kind": "static"}
    created = await api.post("/v1/segments", json=body, headers={"Idempotency-Key": "seg-1"})
    seg = await _ok(created, 201)
    again = await api.post("/v1/segments", json=body, headers={"Idempotency-Key": "seg-1"})
    assert again.status_code == 201 and again.json()["id"] == seg["id"]
    etag = created.headers["etag"]
    stale = await api.patch(f"/v1/segments/{seg['id']}", json={"name": "V"}, headers={"If-Match": '"999"'})
    assert stale.status_code == 412
    renamed = await _ok(
        await api.patch(f"/v1/segments/{seg['id']}", json={"name": "V"}, headers={"If-Match": etag})
    )
    assert renamed["name"] == "V" and renamed["status"] == "ready"
    await _ok(await api.delete(f"/v1/segments/{seg['id']}"))
    listed = await _ok(await api.get("/v1/segments"))
    assert listed["data"] == []
    await _ok(await api.post(f"/v1/segments/{seg['id']}/restore"))
    listed = await _ok(await api.get("/v1/segments", params={"kind": "static", "object_type": "contact"}))
    assert [s["id"] for s in listed["data"]] == [seg["id"]]


async def test_static_members_per_item_results_events_and_history(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    seg = await _ok(
        await api.post("/v1/segments", json={"name": "S", "object_type": "contact", "kind": "static"}), 201
    )
    ann = await _ok(await api.post("/v1/contacts", json={"first_name": "Ann"}), 201)
    bob = await _ok(await api.post("/v1/contacts", json={"first_name": "Bob"}), 201)
    company = await _ok(await api.post("/v1/companies", json={"name": "Acme"}), 201)
    unknown = str(uuid.uuid4())
    ids = [ann["id"], bob["id"], ann["id"], company["id"], unknown]
    added = await _ok(await api.post(f"/v1/segments/{seg['id']}/members", json={"ids": ids}))
    assert [r["status"] for r in added["results"]] == [200, 200, 204, 404, 404]
    assert added["results"][3]["error"]["status"] == 404
    again = await _ok(await api.post(f"/v1/segments/{seg['id']}/members", json={"ids": [ann["id"]]}))
    assert [r["status"] for r in again["results"]] == [204]
    assert (await _ok(await api.get(f"/v1/segments/{seg['id']}")))["member_count"] == 2
    page = await _ok(
        await api.get(f"/v1/segments/{seg['id']}/members", params={"limit": 1, "include": "object"})
    )
    first = min(ann["id"], bob["id"])
    assert [m["object_id"] for m in page["data"]] == [first] and page["has_more"]
    assert page["data"][0]["contact"]["id"] == first and page["data"][0]["reason"] == "added"
    rest = await _ok(
        await api.get(f"/v1/segments/{seg['id']}/members", params={"limit": 1, "cursor": page["next_cursor"]})
    )
    assert [m["object_id"] for m in rest["data"]] == [max(ann["id"], bob["id"])] and not rest["has_more"]
    of_ann = await _ok(await api.get(f"/v1/contacts/{ann['id']}/segments"))
    assert [s["id"] for s in of_ann["data"]] == [seg["id"]]
    removed = await api.request(
        "DELETE", f"/v1/segments/{seg['id']}/members", json={"ids": [ann["id"], unknown]}
    )
    assert [r["status"] for r in (await _ok(removed))["results"]] == [200, 204]
    assert (await _ok(await api.get(f"/v1/contacts/{ann['id']}/segments")))["data"] == []
    history = await _ok(await api.get(f"/v1/segments/{seg['id']}/history"))
    assert [(h["object_id"], h["change"], h["reason"]) for h in history["data"]] == [
        (ann["id"], "removed", "removed"),
        (bob["id"], "added", "added"),
        (ann["id"], "added", "added"),
    ]
    listed = await _ok(await api.get("/v1/events", params={"type": "segment.*"}))
    events = [e for e in listed["data"] if e["type"].startswith("segment.member_")]
    seen = [(e["type"], e["data"]["object_id"], e["data"]["reason"]) for e in events]
    assert sorted(seen) == sorted(
        [
            ("segment.member_added", ann["id"], "added"),
            ("segment.member_added", bob["id"], "added"),
            ("segment.member_removed", ann["id"], "removed"),
        ]
    )
    assert all(e["data"]["segment_id"] == seg["id"] and e["data"]["object_type"] == "contact" for e in events)
    assert {e["id"] for e in events} == {h["id"] for h in history["data"]}


async def test_members_of_a_dynamic_segment_are_not_written_by_clients(api: httpx.AsyncClient) -> None:
    body = {
        "name": "D",
        "object_type": "contact",
        "kind": "dynamic",
        "filter": {"field": "first_name", "op": "eq", "value": "A"},
    }
    seg = await _ok(await api.post("/v1/segments", json=body), 201)
    ann = await _ok(await api.post("/v1/contacts", json={"first_name": "Ann"}), 201)
    r = await api.post(f"/v1/segments/{seg['id']}/members", json={"ids": [ann["id"]]})
    assert r.status_code == 409
    r = await api.post(f"/v1/segments/{seg['id']}/members", json={"ids": []})
    assert r.status_code == 422
    r = await api.post(f"/v1/segments/{seg['id']}/members", json={"ids": [str(uuid.uuid4())] * 501})
    assert r.status_code == 422
    r = await api.get(f"/v1/segments/{seg['id']}/members", params={"cursor": "garbage"})
    assert r.status_code == 400 and r.json()["code"] == "invalid_cursor"


async def test_segment_id_on_lists_and_search(api: httpx.AsyncClient) -> None:
    body = {"name": "S", "object_type": "company", "kind": "static"}
    seg = await _ok(await api.post("/v1/segments", json=body), 201)
    acme = await _ok(await api.post("/v1/companies", json={"name": "Acme", "industry": "tools"}), 201)
    await _ok(await api.post("/v1/companies", json={"name": "Other", "industry": "tools"}), 201)
    food = await _ok(await api.post("/v1/companies", json={"name": "Food", "industry": "food"}), 201)
    await _ok(await api.post(f"/v1/segments/{seg['id']}/members", json={"ids": [acme["id"], food["id"]]}))
    listed = await _ok(await api.get("/v1/companies", params={"segment_id": seg["id"], "sort": "created_at"}))
    assert [c["id"] for c in listed["data"]] == [acme["id"], food["id"]]
    flt = {"field": "industry", "op": "eq", "value": "tools"}
    found = await _ok(await api.post("/v1/companies/search", json={"filter": flt, "segment_id": seg["id"]}))
    assert [c["id"] for c in found["data"]] == [acme["id"]]
    assert (await _ok(await api.get("/v1/companies", params={"segment_id": str(uuid.uuid4())})))["data"] == []
    bad = await api.get("/v1/companies", params={"segment_id": "nope"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["path"] == "/segment_id"
    other = await api.post("/v1/activities/search", json={"segment_id": seg["id"]})
    assert other.status_code == 422 and other.json()["errors"][0]["path"] == "/segment_id"
