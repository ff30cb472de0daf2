"""Dynamic membership, exact on data with known answers, through every write path: the worker's jobs
run in this process here (``tests/segments/test_worker_processes.py`` runs them in ``crm-api worker``)."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx

from crm_api.segments import worker


async def _ok(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


async def _settle(pool: asyncpg.Pool) -> None:
    """Run the jobs until nothing is left to do (what the workers do on their own)."""
    for _ in range(20):
        if not await worker.build_once(pool) and not await worker.follow_once(pool):
            return
    raise AssertionError("the segment jobs did not settle")


async def _members(api: httpx.AsyncClient, sid: str) -> set[str]:
    page = await _ok(await api.get(f"/v1/segments/{sid}/members", params={"limit": 200}))
    return {m["object_id"] for m in page["data"]}


async def _segment(api: httpx.AsyncClient, object_type: str, flt: Any) -> dict[str, Any]:
    body = {"name": "s", "object_type": object_type, "kind": "dynamic", "filter": flt}
    return await _ok(await api.post("/v1/segments", json=body), 201)


async def _reasons(api: httpx.AsyncClient, sid: str) -> list[tuple[str, str, str]]:
    page = await _ok(await api.get(f"/v1/segments/{sid}/history", params={"limit": 200}))
    return [(h["object_id"], h["change"], h["reason"]) for h in reversed(page["data"])]


async def test_build_then_create_patch_batch_upsert_archive_restore(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    ann = await _ok(
        await api.post("/v1/contacts", json={"first_name": "Ann", "lifecycle_stage": "lead"}), 201
    )
    await _ok(await api.post("/v1/contacts", json={"first_name": "Bob", "lifecycle_stage": "customer"}), 201)
    seg = await _segment(api, "contact", {"field": "lifecycle_stage", "op": "eq", "value": "lead"})
    await _settle(pool)
    got = await _ok(await api.get(f"/v1/segments/{seg['id']}"))
    assert got["status"] == "ready" and got["member_count"] == 1
    assert await _members(api, seg["id"]) == {ann["id"]}
    cy = await _ok(await api.post("/v1/contacts", json={"first_name": "Cy", "lifecycle_stage": "lead"}), 201)
    await _ok(await api.patch(f"/v1/contacts/{ann['id']}", json={"lifecycle_stage": "customer"}))
    batch = await _ok(
        await api.post(
            "/v1/contacts/batch", json={"items": [{"first_name": "Di", "lifecycle_stage": "lead"}]}
        )
    )
    di = batch["results"][0]["object"]["id"]
    upsert = await api.put(
        "/v1/contacts/by-email/ed@x.com", json={"first_name": "Ed", "lifecycle_stage": "lead"}
    )
    ed = (await _ok(upsert, upsert.status_code))["id"]
    await _settle(pool)
    assert await _members(api, seg["id"]) == {cy["id"], di, ed}
    await _ok(await api.delete(f"/v1/contacts/{cy['id']}"))
    await _settle(pool)
    assert await _members(api, seg["id"]) == {di, ed}
    await _ok(await api.post(f"/v1/contacts/{cy['id']}/restore"))
    await _settle(pool)
    assert await _members(api, seg["id"]) == {cy["id"], di, ed}
    assert (await _ok(await api.get(f"/v1/segments/{seg['id']}")))["member_count"] == 3
    reasons = await _reasons(api, seg["id"])
    assert reasons[0] == (ann["id"], "added", "matched")
    assert (ann["id"], "removed", "unmatched") in reasons
    assert (cy["id"], "removed", "archived") in reasons
    assert reasons[-1] == (cy["id"], "added", "matched")
    # a PATCH of the filter rebuilds in the background
    edited = await _ok(
        await api.patch(
            f"/v1/segments/{seg['id']}", json={"filter": {"field": "first_name", "op": "eq", "value": "Ann"}}
        )
    )
    assert edited["status"] == "building"
    await _settle(pool)
    assert await _members(api, seg["id"]) == {ann["id"]}
    assert (await _ok(await api.get(f"/v1/segments/{seg['id']}")))["status"] == "ready"


async def test_a_company_change_reaches_its_contacts_and_deals(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    acme = await _ok(await api.post("/v1/companies", json={"name": "Acme", "industry": "tools"}), 201)
    ann = await _ok(await api.post("/v1/contacts", json={"first_name": "Ann", "company_id": acme["id"]}), 201)
    await _ok(await api.post("/v1/contacts", json={"first_name": "Bob"}), 201)
    seg = await _segment(api, "contact", {"field": "company.industry", "op": "eq", "value": "retail"})
    await _settle(pool)
    assert await _members(api, seg["id"]) == set()
    await _ok(await api.patch(f"/v1/companies/{acme['id']}", json={"industry": "retail"}))
    await _settle(pool)
    assert await _members(api, seg["id"]) == {ann["id"]}
    await _ok(await api.patch(f"/v1/companies/{acme['id']}", json={"industry": "food"}))
    await _settle(pool)
    assert await _members(api, seg["id"]) == set()


async def test_time_passing_takes_members_out(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    ann = await _ok(await api.post("/v1/contacts", json={"first_name": "Ann"}), 201)
    bob = await _ok(await api.post("/v1/contacts", json={"first_name": "Bob"}), 201)
    seg = await _segment(api, "contact", {"field": "created_at", "op": "gt", "value": "-30d"})
    await _settle(pool)
    assert await _members(api, seg["id"]) == {ann["id"], bob["id"]}
    async with pool.acquire() as conn:  # Ann ages 31 days, with no write and so no event
        await conn.execute(
            "UPDATE contacts SET created_at = now() - interval '31 days' WHERE id = $1", uuid.UUID(ann["id"])
        )
    await _settle(pool)
    assert await _members(api, seg["id"]) == {ann["id"], bob["id"]}  # only the relative pass sees it
    assert await worker.relative_once(pool) >= 1
    assert await _members(api, seg["id"]) == {bob["id"]}
    assert (await _reasons(api, seg["id"]))[-1] == (ann["id"], "removed", "unmatched")


async def test_merged_and_erased_contacts_leave_every_segment(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    ann = await _ok(await api.post("/v1/contacts", json={"first_name": "Ann", "email": "ann@x.com"}), 201)
    ann2 = await _ok(await api.post("/v1/contacts", json={"first_name": "Ann", "email": "ann2@x.com"}), 201)
    bob = await _ok(await api.post("/v1/contacts", json={"first_name": "Bob"}), 201)
    dynamic = await _segment(api, "contact", {"field": "first_name", "op": "in", "value": ["Ann", "Bob"]})
    static = await _ok(
        await api.post("/v1/segments", json={"name": "s", "object_type": "contact", "kind": "static"}), 201
    )
    await _ok(
        await api.post(
            f"/v1/segments/{static['id']}/members", json={"ids": [ann["id"], ann2["id"], bob["id"]]}
        )
    )
    await _settle(pool)
    assert await _members(api, dynamic["id"]) == {ann["id"], ann2["id"], bob["id"]}
    await _ok(await api.post(f"/v1/contacts/{ann['id']}/merge", json={"from": [ann2["id"]]}))
    erased = await api.post(f"/v1/contacts/{bob['id']}/erase")
    assert erased.status_code in (200, 202), erased.text
    await _settle(pool)
    assert await _members(api, dynamic["id"]) == {ann["id"]}
    assert await _members(api, static["id"]) == {ann["id"]}
    for sid in (dynamic["id"], static["id"]):
        reasons = await _reasons(api, sid)
        assert (ann2["id"], "removed", "merged") in reasons
        assert (bob["id"], "removed", "erased") in reasons
    assert (await _ok(await api.get(f"/v1/segments/{static['id']}")))["member_count"] == 1


async def test_a_contact_change_reaches_its_deals(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    ann = await _ok(
        await api.post("/v1/contacts", json={"first_name": "Ann", "lifecycle_stage": "lead"}), 201
    )
    deal = await _ok(await api.post("/v1/deals", json={"name": "D", "contact_id": ann["id"]}), 201)
    await _ok(await api.post("/v1/deals", json={"name": "Other"}), 201)
    seg = await _segment(api, "deal", {"field": "contact.lifecycle_stage", "op": "eq", "value": "customer"})
    await _settle(pool)
    assert await _members(api, seg["id"]) == set()
    await _ok(await api.patch(f"/v1/contacts/{ann['id']}", json={"lifecycle_stage": "customer"}))
    await _settle(pool)
    assert await _members(api, seg["id"]) == {deal["id"]}
    of_deal = await _ok(await api.get(f"/v1/deals/{deal['id']}/segments"))
    assert [s["id"] for s in of_deal["data"]] == [seg["id"]]


async def test_one_step_follows_many_segments_in_slices(
    api: httpx.AsyncClient, pool: asyncpg.Pool, monkeypatch: Any
) -> None:
    """A step evaluates every segment of the type in one statement and writes the changes of all of them
    in slices (two changes a statement here): each segment's members, count and history stay exact."""
    from crm_api.segments import repository

    monkeypatch.setattr(repository, "CHANGE_SLICE", 2)
    leads = await _segment(api, "contact", {"field": "lifecycle_stage", "op": "eq", "value": "lead"})
    named = await _segment(api, "contact", {"field": "first_name", "op": "in", "value": ["Ann", "Cy"]})
    both = await _segment(
        api,
        "contact",
        {
            "and": [
                {"field": "lifecycle_stage", "op": "eq", "value": "lead"},
                {"field": "first_name", "op": "eq", "value": "Ann"},
            ]
        },
    )
    await _settle(pool)
    made = {}
    for name, stage in (("Ann", "lead"), ("Bob", "lead"), ("Cy", "customer")):
        body = {"first_name": name, "lifecycle_stage": stage}
        made[name] = (await _ok(await api.post("/v1/contacts", json=body), 201))["id"]
    await _settle(pool)
    assert await _members(api, leads["id"]) == {made["Ann"], made["Bob"]}
    assert await _members(api, named["id"]) == {made["Ann"], made["Cy"]}
    assert await _members(api, both["id"]) == {made["Ann"]}
    await _ok(await api.patch(f"/v1/contacts/{made['Ann']}", json={"lifecycle_stage": "customer"}))
    await _ok(await api.patch(f"/v1/contacts/{made['Cy']}", json={"lifecycle_stage": "lead"}))
    await _settle(pool)
    expected = {
        leads["id"]: {made["Bob"], made["Cy"]},
        named["id"]: {made["Ann"], made["Cy"]},
        both["id"]: set(),
    }
    for sid, members in expected.items():
        assert await _members(api, sid) == members
        assert (await _ok(await api.get(f"/v1/segments/{sid}")))["member_count"] == len(members)
    history = await _reasons(api, leads["id"])
    # Ann and Bob may enter in one step, in either order
    assert sorted(history[:2]) == sorted(
        [(made["Ann"], "added", "matched"), (made["Bob"], "added", "matched")]
    )
    # one step's changes: its entries, then its exits
    assert history[2:] == [(made["Cy"], "added", "matched"), (made["Ann"], "removed", "unmatched")]
    assert await _reasons(api, both["id"]) == [
        (made["Ann"], "added", "matched"),
        (made["Ann"], "removed", "unmatched"),
    ]
