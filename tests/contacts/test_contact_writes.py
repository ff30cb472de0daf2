"""Contact writes against a real PostgreSQL: versions, If-Match, archive, upserts, batches, events."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import httpx


async def _events(pool: asyncpg.Pool, client: httpx.AsyncClient) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT type, object_id, data FROM events WHERE workspace_id = $1 ORDER BY sequence",
        client.workspace_id,  # type: ignore[attr-defined]
    )
    return [dict(r) for r in rows]


async def test_patch_keeps_absent_fields_clears_nulls_and_bumps_version(api: httpx.AsyncClient) -> None:
    c = (await api.post("/v1/contacts", json={"email": "a@x.com", "first_name": "A", "tags": ["x"]})).json()
    r = await api.patch(f"/v1/contacts/{c['id']}", json={"last_name": "Lee", "tags": None})
    assert r.status_code == 200
    body = r.json()
    assert (body["first_name"], body["last_name"], body["tags"], body["version"]) == ("A", "Lee", [], 2)
    assert r.headers["etag"] == '"2"'
    same = await api.patch(f"/v1/contacts/{c['id']}", json={"last_name": "Lee"})
    assert same.json()["version"] == 2  # no change, no new version


async def test_if_match_stale_version_is_412_and_changes_nothing(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    c = (await api.post("/v1/contacts", json={"first_name": "A"})).json()
    ok = await api.patch(f"/v1/contacts/{c['id']}", json={"title": "CEO"}, headers={"If-Match": '"1"'})
    assert ok.status_code == 200
    stale = await api.patch(f"/v1/contacts/{c['id']}", json={"title": "CTO"}, headers={"If-Match": '"1"'})
    assert stale.status_code == 412
    assert stale.headers["content-type"] == "application/problem+json"
    assert stale.json()["code"] == "precondition_failed"
    assert (await api.get(f"/v1/contacts/{c['id']}")).json()["title"] == "CEO"
    assert [e["type"] for e in await _events(pool, api)] == ["contact.created", "contact.updated"]


async def test_concurrent_patches_with_one_if_match_exactly_one_wins(api: httpx.AsyncClient) -> None:
    c = (await api.post("/v1/contacts", json={"first_name": "A"})).json()
    responses = await asyncio.gather(
        *(
            api.patch(f"/v1/contacts/{c['id']}", json={"title": f"T{i}"}, headers={"If-Match": '"1"'})
            for i in range(10)
        )
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [412] * 9
    final = (await api.get(f"/v1/contacts/{c['id']}")).json()
    winner = next(r for r in responses if r.status_code == 200).json()
    assert final["title"] == winner["title"] and final["version"] == 2


async def test_concurrent_patches_without_if_match_all_apply(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    c = (await api.post("/v1/contacts", json={"first_name": "A"})).json()
    responses = await asyncio.gather(
        *(api.patch(f"/v1/contacts/{c['id']}", json={"custom_fields": {"n": i}}) for i in range(6))
    )
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    final = (await api.get(f"/v1/contacts/{c['id']}")).json()
    assert final["version"] == 7  # every write is its own version: no lost update
    assert len([e for e in await _events(pool, api) if e["type"] == "contact.updated"]) == 6


async def test_archive_restore_and_email_uniqueness_among_live_records(api: httpx.AsyncClient) -> None:
    first = (await api.post("/v1/contacts", json={"email": "Same@X.com"})).json()
    dup = await api.post("/v1/contacts", json={"email": "same@x.com "})
    assert dup.status_code == 409
    assert dup.json()["errors"][0]["path"] == "/email"
    archived = await api.delete(f"/v1/contacts/{first['id']}")
    assert archived.status_code == 200 and archived.json()["archived_at"] is not None
    assert (await api.get("/v1/contacts")).json()["data"] == []
    listed = (await api.get("/v1/contacts", params={"include_archived": "true"})).json()["data"]
    assert [c["id"] for c in listed] == [first["id"]]
    second = await api.post("/v1/contacts", json={"email": "same@x.com"})
    assert second.status_code == 201  # the archived one released the email
    blocked = await api.post(f"/v1/contacts/{first['id']}/restore")
    assert blocked.status_code == 409
    await api.delete(f"/v1/contacts/{second.json()['id']}")
    restored = await api.post(f"/v1/contacts/{first['id']}/restore")
    assert restored.status_code == 200 and restored.json()["archived_at"] is None


async def test_upsert_by_email_creates_then_updates(api: httpx.AsyncClient) -> None:
    r1 = await api.put("/v1/contacts/by-email/Up@X.com", json={"first_name": "Up"})
    assert r1.status_code == 201 and r1.json()["email"] == "up@x.com"
    r2 = await api.put("/v1/contacts/by-email/up@x.com", json={"last_name": "Date"})
    assert r2.status_code == 200
    assert r2.json()["id"] == r1.json()["id"]
    assert (r2.json()["first_name"], r2.json()["last_name"]) == ("Up", "Date")
    bad = await api.put("/v1/contacts/by-email/not-an-email", json={})
    assert bad.status_code == 422


async def test_concurrent_upserts_of_one_email_end_as_one_contact(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    responses = await asyncio.gather(
        *(api.put("/v1/contacts/by-email/race@x.com", json={"title": f"T{i}"}) for i in range(20))
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 19 + [201], statuses
    assert len({r.json()["id"] for r in responses}) == 1
    count = await pool.fetchval(
        "SELECT count(*) FROM contacts WHERE workspace_id = $1",
        api.workspace_id,  # type: ignore[attr-defined]
    )
    assert count == 1


async def test_upsert_by_external_id_and_uniqueness(api: httpx.AsyncClient) -> None:
    r1 = await api.put("/v1/contacts/by-external-id/shopify/8812", json={"first_name": "S"})
    assert r1.status_code == 201
    assert r1.json()["external_ids"] == {"shopify": "8812"}
    r2 = await api.put("/v1/contacts/by-external-id/shopify/8812", json={"external_ids": {"erp": "E1"}})
    assert r2.status_code == 200
    assert r2.json()["external_ids"] == {"shopify": "8812", "erp": "E1"}
    taken = await api.post("/v1/contacts", json={"external_ids": {"erp": "E1"}})
    assert taken.status_code == 409
    assert taken.json()["errors"][0]["path"].startswith("/external_ids")


async def test_batch_gives_one_result_per_item_and_bad_items_fail_alone(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    await api.post("/v1/contacts", json={"email": "taken@x.com"})
    items = [
        {"email": "b1@x.com"},
        {"email": "not-an-email"},
        {"email": "taken@x.com"},
        {"email": "b1@x.com"},
        {"email": "b2@x.com", "unknown": 1},
        {"first_name": "NoEmail"},
    ]
    r = await api.post("/v1/contacts/batch", json={"items": items})
    assert r.status_code == 200
    results = r.json()["results"]
    assert [x["status"] for x in results] == [201, 422, 409, 409, 422, 201]
    assert results[1]["error"]["errors"][0]["path"] == "/items/1/email"
    assert results[4]["error"]["errors"][0]["path"] == "/items/4/unknown"
    events = await _events(pool, api)
    assert [e["type"] for e in events] == ["contact.created"] * 3


async def test_batch_upsert_updates_existing_and_creates_new(api: httpx.AsyncClient) -> None:
    existing = (await api.post("/v1/contacts", json={"email": "e@x.com", "first_name": "Old"})).json()
    items = [{"email": "E@x.com", "first_name": "New"}, {"email": "n@x.com"}, {"first_name": "nokey"}]
    r = await api.post("/v1/contacts/batch", json={"items": items, "mode": "upsert"})
    results = r.json()["results"]
    assert [x["status"] for x in results] == [200, 201, 422]
    assert results[0]["object"]["id"] == existing["id"] and results[0]["object"]["first_name"] == "New"
    assert results[0]["object"]["version"] == 2


async def test_batch_over_500_items_is_refused(api: httpx.AsyncClient) -> None:
    r = await api.post("/v1/contacts/batch", json={"items": [{"first_name": "x"}] * 501})
    assert r.status_code == 422
    assert r.json()["errors"][0]["path"] == "/items"


async def test_concurrent_batch_upserts_leave_one_record_per_key(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    def batch(offset: int) -> dict[str, Any]:
        return {"mode": "upsert", "items": [{"email": f"k{(i + offset) % 30}@x.com"} for i in range(30)]}

    responses = await asyncio.gather(*(api.post("/v1/contacts/batch", json=batch(n)) for n in range(8)))
    assert all(r.status_code == 200 for r in responses)
    emails = await pool.fetch(
        "SELECT email FROM contacts WHERE workspace_id = $1",
        api.workspace_id,  # type: ignore[attr-defined]
    )
    assert sorted(r["email"] for r in emails) == sorted(f"k{i}@x.com" for i in range(30))


async def test_every_write_records_one_event_with_the_object_and_previous_values(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    created = (await api.post("/v1/contacts", json={"email": "ev@x.com", "title": "A"})).json()
    updated = (await api.patch(f"/v1/contacts/{created['id']}", json={"title": "B"})).json()
    archived = (await api.delete(f"/v1/contacts/{created['id']}")).json()
    restored = (await api.post(f"/v1/contacts/{created['id']}/restore")).json()
    events = await _events(pool, api)
    assert [e["type"] for e in events] == [
        "contact.created",
        "contact.updated",
        "contact.archived",
        "contact.restored",
    ]
    assert events[0]["data"] == {"object": created, "previous": {}}
    assert events[1]["data"] == {"object": updated, "previous": {"title": "A"}}
    assert events[2]["data"]["object"] == archived
    assert events[2]["data"]["previous"] == {"archived_at": None}
    assert events[3]["data"]["object"] == restored
    failed = await api.post("/v1/contacts", json={"email": "ev@x.com"})
    assert failed.status_code == 409
    assert len(await _events(pool, api)) == 4  # nothing half-written


async def test_company_reference_must_exist(api: httpx.AsyncClient) -> None:
    r = await api.post("/v1/contacts", json={"company_id": "01a20d7c-a713-740d-9cf9-412be9a77d65"})
    assert r.status_code == 422
    assert r.json()["errors"][0]["path"] == "/company_id"
    company = (await api.post("/v1/companies", json={"name": "Acme", "domain": "acme.com"})).json()
    ok = await api.post("/v1/contacts", json={"company_id": company["id"]})
    assert ok.status_code == 201
    people = await api.get(f"/v1/companies/{company['id']}/contacts")
    assert [p["id"] for p in people.json()["data"]] == [ok.json()["id"]]
