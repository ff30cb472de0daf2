"""A dynamic segment's build walks the object ids a chunk at a time (a chunk size of 3 here, so a dozen
contacts take several transactions): exact membership at the end, a resume from the kept position, writes
and an edit during the walk, and a build that keeps failing turning ``failed``."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from crm_api.db import create_pool
from crm_api.segments import repository, worker

LEAD = {"field": "lifecycle_stage", "op": "eq", "value": "lead"}


async def _ok(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


async def _contacts(api: httpx.AsyncClient, stages: list[str]) -> list[dict[str, Any]]:
    items = [{"first_name": f"c{i}", "lifecycle_stage": s} for i, s in enumerate(stages)]
    batch = await _ok(await api.post("/v1/contacts/batch", json={"items": items}))
    return [r["object"] for r in batch["results"]]


async def _segment(api: httpx.AsyncClient, flt: Any) -> dict[str, Any]:
    body = {"name": "s", "object_type": "contact", "kind": "dynamic", "filter": flt}
    return await _ok(await api.post("/v1/segments", json=body), 201)


async def _members(api: httpx.AsyncClient, sid: str) -> set[str]:
    page = await _ok(await api.get(f"/v1/segments/{sid}/members", params={"limit": 200}))
    return {m["object_id"] for m in page["data"]}


async def _history(api: httpx.AsyncClient, sid: str) -> list[tuple[str, str]]:
    page = await _ok(await api.get(f"/v1/segments/{sid}/history", params={"limit": 200}))
    return [(h["object_id"], h["change"]) for h in reversed(page["data"])]


async def _position(pool: asyncpg.Pool, sid: str) -> Any:
    return await pool.fetchrow(
        "SELECT version, after, failures, error FROM segment_builds WHERE segment_id = $1", uuid.UUID(sid)
    )


async def _settle(pool: asyncpg.Pool, chunk: int = 3) -> int:
    """Build chunks and follow until nothing is left; the chunks built."""
    chunks = 0
    for _ in range(50):
        built = await worker.build_once(pool, chunk)
        chunks += built
        if not built and not await worker.follow_once(pool):
            return chunks
    raise AssertionError("the segment jobs did not settle")


async def test_chunked_build_is_exact(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    stages = ["lead", "customer", "lead"] * 4  # 12 contacts, 8 leads
    made = await _contacts(api, stages)
    leads = {c["id"] for c in made if c["lifecycle_stage"] == "lead"}
    seg = await _segment(api, LEAD)
    # 12 ids in chunks of 3: four full chunks and a last one finding none left
    assert await _settle(pool) == 5
    got = await _ok(await api.get(f"/v1/segments/{seg['id']}"))
    assert got["status"] == "ready" and got["member_count"] == 8
    assert await _members(api, seg["id"]) == leads
    history = await _history(api, seg["id"])
    assert sorted(history) == sorted((i, "added") for i in leads)  # one entry each, no duplicates
    assert await _position(pool, seg["id"]) is None  # the finished build leaves no position behind


async def test_resume_after_interruption(
    api: httpx.AsyncClient, pool: asyncpg.Pool, database_url: str
) -> None:
    made = await _contacts(api, ["lead"] * 10)
    ids = sorted(uuid.UUID(c["id"]) for c in made)
    seg = await _segment(api, LEAD)
    assert await worker.build_once(pool, 3) == 1
    assert await worker.build_once(pool, 3) == 1
    # the worker stops here (killed): what it did is committed, and its position with it
    pos = await _position(pool, seg["id"])
    assert pos["after"] == ids[5] and pos["version"] == seg["version"]
    got = await _ok(await api.get(f"/v1/segments/{seg['id']}"))
    assert got["status"] == "building" and got["member_count"] == 6
    # another worker (a fresh pool) carries on from the position: nothing evaluated twice
    other = await create_pool(database_url, 2)
    try:
        assert await _settle(other) == 2  # ids 7-9, then the last one
    finally:
        await other.close()
    assert await _members(api, seg["id"]) == {str(i) for i in ids}
    history = await _history(api, seg["id"])
    assert len(history) == 10 and len(set(history)) == 10


async def test_writes_and_edit_during_build(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    made = await _contacts(api, ["lead", "customer"] * 6)
    by_id = {uuid.UUID(c["id"]): c for c in made}
    ids = sorted(by_id)
    seg = await _segment(api, LEAD)
    await worker.build_once(pool, 3)
    await worker.build_once(pool, 3)
    after = (await _position(pool, seg["id"]))["after"]
    behind = [i for i in ids if i <= after]
    ahead = [i for i in ids if i > after]
    lead_behind = next(i for i in behind if by_id[i]["lifecycle_stage"] == "lead")
    customer_behind = next(i for i in behind if by_id[i]["lifecycle_stage"] == "customer")
    lead_ahead = next(i for i in ahead if by_id[i]["lifecycle_stage"] == "lead")
    # changes behind the position (already walked) and ahead of it, and a new contact, mid-build
    await _ok(await api.patch(f"/v1/contacts/{lead_behind}", json={"lifecycle_stage": "customer"}))
    await _ok(await api.patch(f"/v1/contacts/{customer_behind}", json={"lifecycle_stage": "lead"}))
    await _ok(await api.delete(f"/v1/contacts/{lead_ahead}"))
    new = await _ok(await api.post("/v1/contacts", json={"first_name": "N", "lifecycle_stage": "lead"}), 201)
    await _settle(pool)
    expected = {str(i) for i, c in by_id.items() if c["lifecycle_stage"] == "lead"}
    expected = (expected - {str(lead_behind), str(lead_ahead)}) | {str(customer_behind), new["id"]}
    assert await _members(api, seg["id"]) == expected
    got = await _ok(await api.get(f"/v1/segments/{seg['id']}"))
    assert got["status"] == "ready" and got["member_count"] == len(expected)

    # an edit mid-build starts the walk over for the new filter
    customer = {"field": "lifecycle_stage", "op": "eq", "value": "customer"}
    seg = await _ok(await api.patch(f"/v1/segments/{seg['id']}", json={"filter": LEAD | {"value": "x"}}))
    await worker.build_once(pool, 3)
    await worker.build_once(pool, 3)
    seg = await _ok(await api.patch(f"/v1/segments/{seg['id']}", json={"filter": customer}))
    assert seg["status"] == "building"
    await worker.build_once(pool, 3)
    pos = await _position(pool, seg["id"])
    assert pos["version"] == seg["version"] and pos["after"] == ids[2]  # from the start again
    await _settle(pool)
    mine = [*ids, uuid.UUID(new["id"])]
    rows = await pool.fetch(
        "SELECT id FROM contacts WHERE id = ANY($1) AND lifecycle_stage = 'customer' AND archived_at IS NULL",
        mine,
    )
    assert await _members(api, seg["id"]) == {str(r["id"]) for r in rows}


async def test_failing_build_is_marked_failed(
    api: httpx.AsyncClient, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _contacts(api, ["lead"] * 4)
    seg = await _segment(api, LEAD)
    real = repository.evaluate

    async def cancelled(*args: Any, **kwargs: Any) -> list[Any]:
        raise asyncpg.QueryCanceledError("canceling statement due to statement timeout")

    # the one way to make a chunk fail on demand: its evaluation answers what a timeout answers
    monkeypatch.setattr(repository, "evaluate", cancelled)
    for _ in range(3):
        assert await worker.build_once(pool, 3, attempts=3) == 0
    got = await _ok(await api.get(f"/v1/segments/{seg['id']}"))
    assert got["status"] == "failed" and got["member_count"] == 0
    pos = await _position(pool, seg["id"])
    assert pos["failures"] == 3 and "statement timeout" in pos["error"]
    assert await worker.build_once(pool, 3, attempts=3) == 0  # no longer retried
    listed = await _ok(await api.get("/v1/segments", params={"status": "failed"}))
    assert [s["id"] for s in listed["data"]] == [seg["id"]]
    # an edit of the filter builds it again, from the start, the failures forgotten
    monkeypatch.setattr(repository, "evaluate", real)
    seg = await _ok(
        await api.patch(f"/v1/segments/{seg['id']}", json={"filter": LEAD | {"op": "neq", "value": "x"}})
    )
    assert seg["status"] == "building"
    await _settle(pool)
    got = await _ok(await api.get(f"/v1/segments/{seg['id']}"))
    assert got["status"] == "ready" and got["member_count"] == 4
