"""What the foreign keys of ``segment_members`` and ``segment_changes`` guarded, kept without them (migration
0042): the code paths that merge, erase and archive leave no membership behind, an archived segment gains
nothing, a deleted segment takes its rows along; and the light ``segment.member_*`` events."""

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
    for _ in range(20):
        if not await worker.build_once(pool) and not await worker.follow_once(pool):
            return
    raise AssertionError("the segment jobs did not settle")


async def _rows(pool: asyncpg.Pool, sid: str) -> set[str]:
    rows = await pool.fetch("SELECT object_id FROM segment_members WHERE segment_id = $1", uuid.UUID(sid))
    return {str(r["object_id"]) for r in rows}


async def _workspace(pool: asyncpg.Pool, sid: str) -> uuid.UUID:
    ws: uuid.UUID = await pool.fetchval("SELECT workspace_id FROM segments WHERE id = $1", uuid.UUID(sid))
    return ws


async def _orphans(pool: asyncpg.Pool, ws: uuid.UUID) -> list[Any]:
    """Every membership the foreign keys and the workers' rules forbid, in the workspace: member or
    history rows of no segment; members of a live segment that are not live objects (archived, merged,
    erased: they left); counts that are not the members' number."""
    return [
        *await pool.fetch(
            """SELECT 'member of no segment' AS what, m.segment_id, m.object_id FROM segment_members m
               WHERE m.workspace_id = $1 AND NOT EXISTS (SELECT 1 FROM segments s
                 WHERE s.workspace_id = m.workspace_id AND s.id = m.segment_id)
               UNION ALL
               SELECT 'history of no segment', c.segment_id, c.object_id FROM segment_changes c
               WHERE c.workspace_id = $1 AND NOT EXISTS (SELECT 1 FROM segments s
                 WHERE s.workspace_id = c.workspace_id AND s.id = c.segment_id)
               UNION ALL
               SELECT 'member not live', m.segment_id, m.object_id FROM segment_members m
               JOIN segments s ON s.workspace_id = m.workspace_id AND s.id = m.segment_id
               WHERE m.workspace_id = $1 AND s.archived_at IS NULL AND s.object_type = 'contact'
                 AND NOT EXISTS (SELECT 1 FROM contacts c WHERE c.workspace_id = m.workspace_id
                   AND c.id = m.object_id AND c.archived_at IS NULL AND c.merged_into IS NULL)""",
            ws,
        ),
        *await pool.fetch(
            """SELECT 'count', s.id, s.member_count FROM segments s
               WHERE s.workspace_id = $1 AND s.member_count <> (SELECT count(*) FROM segment_members m
                 WHERE m.workspace_id = s.workspace_id AND m.segment_id = s.id)""",
            ws,
        ),
    ]


async def test_merge_erase_and_archives_leave_no_orphans(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    made = {}
    for name in ("Ann", "Ann2", "Bob", "Cy"):
        body = {"first_name": "Ann" if name == "Ann2" else name, "email": f"{name.lower()}@x.com"}
        made[name] = (await _ok(await api.post("/v1/contacts", json=body), 201))["id"]
    dynamic = await _ok(
        await api.post(
            "/v1/segments",
            json={
                "name": "named",
                "object_type": "contact",
                "kind": "dynamic",
                "filter": {"field": "first_name", "op": "in", "value": ["Ann", "Bob", "Cy", "Di"]},
            },
        ),
        201,
    )
    static = await _ok(
        await api.post("/v1/segments", json={"name": "picked", "object_type": "contact", "kind": "static"}),
        201,
    )
    await _ok(await api.post(f"/v1/segments/{static['id']}/members", json={"ids": list(made.values())}))
    await _settle(pool)
    ws = await _workspace(pool, static["id"])
    assert await _rows(pool, dynamic["id"]) == set(made.values())
    assert await _orphans(pool, ws) == []

    # a merge, an erasure and an archive: each contact leaves both segments, and nothing stays behind
    await _ok(await api.post(f"/v1/contacts/{made['Ann']}/merge", json={"from": [made["Ann2"]]}))
    erased = await api.post(f"/v1/contacts/{made['Bob']}/erase")
    assert erased.status_code in (200, 202), erased.text
    await _ok(await api.delete(f"/v1/contacts/{made['Cy']}"))
    await _settle(pool)
    for sid in (dynamic["id"], static["id"]):
        assert await _rows(pool, sid) == {made["Ann"]}
    assert await _orphans(pool, ws) == []

    # an archived segment gains nothing while archived (no worker step, no client writes to it) ...
    await _ok(await api.delete(f"/v1/segments/{dynamic['id']}"))
    await _ok(await api.delete(f"/v1/segments/{static['id']}"))
    di = (await _ok(await api.post("/v1/contacts", json={"first_name": "Di"}), 201))["id"]
    added = await api.post(f"/v1/segments/{static['id']}/members", json={"ids": [di]})
    assert added.status_code == 409, added.text
    await _settle(pool)
    assert await _rows(pool, dynamic["id"]) == {made["Ann"]}
    assert await _rows(pool, static["id"]) == {made["Ann"]}
    assert (await _ok(await api.get(f"/v1/contacts/{di}/segments")))["data"] == []
    assert await _orphans(pool, ws) == []
    # ... and a restored dynamic one builds again, exactly
    await _ok(await api.post(f"/v1/segments/{dynamic['id']}/restore"))
    await _settle(pool)
    assert await _rows(pool, dynamic["id"]) == {made["Ann"], di}
    assert await _orphans(pool, ws) == []


async def test_a_deleted_segment_takes_its_members_and_history(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    """The API never deletes a segment, but a workspace's delete does (through ``segments``' key to it):
    its members and history go with it, as the dropped keys' cascade did."""
    ann = await _ok(await api.post("/v1/contacts", json={"first_name": "Ann"}), 201)
    kept, gone = [
        await _ok(
            await api.post("/v1/segments", json={"name": n, "object_type": "contact", "kind": "static"}), 201
        )
        for n in ("kept", "gone")
    ]
    ws = await _workspace(pool, kept["id"])
    for seg in (kept, gone):
        await _ok(await api.post(f"/v1/segments/{seg['id']}/members", json={"ids": [ann["id"]]}))
    await pool.execute("DELETE FROM segments WHERE id = $1", uuid.UUID(gone["id"]))
    for table in ("segment_members", "segment_changes"):
        left = await pool.fetch(
            f"SELECT segment_id FROM {table} WHERE segment_id = ANY($1::uuid[])",
            [uuid.UUID(kept["id"]), uuid.UUID(gone["id"])],
        )
        assert [str(r["segment_id"]) for r in left] == [kept["id"]], table
    assert await _orphans(pool, ws) == []


async def test_member_events_are_light(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    """``data.object`` is the segment's reference (id, object, name), not its whole object; who and why are
    beside it, for entries the worker writes and for a client's alike."""
    ann = await _ok(await api.post("/v1/contacts", json={"first_name": "Ann"}), 201)
    dynamic = await _ok(
        await api.post(
            "/v1/segments",
            json={
                "name": "Anns",
                "object_type": "contact",
                "kind": "dynamic",
                "filter": {"field": "first_name", "op": "eq", "value": "Ann"},
            },
        ),
        201,
    )
    static = await _ok(
        await api.post("/v1/segments", json={"name": "Picked", "object_type": "contact", "kind": "static"}),
        201,
    )
    await _ok(await api.post(f"/v1/segments/{static['id']}/members", json={"ids": [ann["id"]]}))
    await _settle(pool)
    await _ok(await api.patch(f"/v1/contacts/{ann['id']}", json={"first_name": "Anne"}))
    await _settle(pool)
    listed = await _ok(await api.get("/v1/events", params={"type": "segment.*", "limit": 50}))
    got = sorted(
        (e["type"], e["data"]["segment_id"], e["data"]["reason"], e["data"])
        for e in listed["data"]
        if e["type"].startswith("segment.member_")
    )
    expected = [
        (kind, seg["id"], reason, {
            "object": {"id": seg["id"], "object": "segment", "name": seg["name"]},
            "previous": {},
            "segment_id": seg["id"],
            "object_type": "contact",
            "object_id": ann["id"],
            "reason": reason,
        })
        for kind, seg, reason in (
            ("segment.member_added", dynamic, "matched"),
            ("segment.member_added", static, "added"),
            ("segment.member_removed", dynamic, "unmatched"),
        )
    ]  # fmt: skip
    assert got == sorted(expected)


async def test_the_follow_step_sees_an_edited_filter(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    """The follow step keeps its segments' compiled filters between steps: an edit must replace them."""
    flt = {"field": "first_name", "op": "eq", "value": "Ann"}
    body = {"name": "s", "object_type": "contact", "kind": "dynamic", "filter": flt}
    seg = await _ok(await api.post("/v1/segments", json=body), 201)
    await _settle(pool)
    ann = (await _ok(await api.post("/v1/contacts", json={"first_name": "Ann"}), 201))["id"]
    await _settle(pool)
    assert await _rows(pool, seg["id"]) == {ann}
    edited = {"filter": {"field": "first_name", "op": "eq", "value": "Bob"}}
    await _ok(await api.patch(f"/v1/segments/{seg['id']}", json=edited))
    await _settle(pool)
    assert await _rows(pool, seg["id"]) == set()
    ann2 = (await _ok(await api.post("/v1/contacts", json={"first_name": "Ann"}), 201))["id"]
    bob = (await _ok(await api.post("/v1/contacts", json={"first_name": "Bob"}), 201))["id"]
    await _settle(pool)
    assert ann2 not in await _rows(pool, seg["id"])
    assert await _rows(pool, seg["id"]) == {bob}
