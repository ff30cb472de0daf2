"""Lead scores, exact on data with known answers, through every write path: the workers' jobs run in this
process here (``test_scoring_workers.py`` runs them in ``crm-api worker``)."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from crm_api.scoring import worker
from crm_api.segments import worker as segments


async def _ok(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


async def _settle(pool: asyncpg.Pool) -> None:
    """Run the jobs until nothing is left to do (what the workers do on their own)."""
    for _ in range(50):
        if not await worker.walk_once(pool) and not await worker.follow_once(pool):
            return
    raise AssertionError("the scoring jobs did not settle")


async def _rule(api: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    return await _ok(await api.post("/v1/scoring-rules", json={"name": "r", **body}), 201)


async def _score(api: httpx.AsyncClient, cid: str) -> tuple[int, dict[str, int]]:
    body = await _ok(await api.get(f"/v1/contacts/{cid}/score"))
    contributions = {c["name"]: c["points"] for c in body["contributions"]}
    assert body["score"] == sum(contributions.values())
    return body["score"], contributions


async def _contact(api: httpx.AsyncClient, **body: Any) -> str:
    return str((await _ok(await api.post("/v1/contacts", json=body), 201))["id"])


async def test_a_rule_needs_exactly_one_kind_and_a_filter_that_compiles(api: httpx.AsyncClient) -> None:
    lead = {"field": "lifecycle_stage", "op": "eq", "value": "lead"}
    email = {"type": "email", "within_days": 30, "points": 2}
    cases = [
        ({"points": 5}, "/condition"),
        ({"points": 5, "condition": lead, "activity": email}, "/activity"),
        ({"condition": lead}, "/points"),
        ({"points": 1, "activity": email}, "/points"),
        ({"points": 1, "condition": {"field": "nope", "op": "eq", "value": 1}}, "/condition"),
        ({"activity": {**email, "filter": {"field": "nope", "op": "eq", "value": 1}}}, "/activity/filter"),
        ({"activity": {**email, "within_days": 0}}, "/activity/within_days"),
    ]
    for body, field in cases:
        r = await api.post("/v1/scoring-rules", json={"name": "r", **body})
        assert r.status_code == 422, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert any(e["path"].startswith(field) for e in r.json()["errors"]), (body, r.json())
    assert (await _ok(await api.get("/v1/scoring-rules")))["data"] == []  # nothing was written
    rule = await _rule(api, points=5, condition=lead)
    # a PATCH that leaves the rule with both kinds is refused, one that swaps them is taken
    r = await api.patch(f"/v1/scoring-rules/{rule['id']}", json={"activity": email, "condition": lead})
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "/activity", r.text
    r = await api.patch(f"/v1/scoring-rules/{rule['id']}", json={"condition": None})
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "/condition", r.text
    swapped = await _ok(await api.patch(f"/v1/scoring-rules/{rule['id']}", json={"activity": email}))
    assert swapped["activity"]["max_points"] is None and swapped["status"] == "building"
    assert swapped["condition"] is None and swapped["points"] is None
    # back to a condition: its points are needed with it
    r = await api.patch(f"/v1/scoring-rules/{rule['id']}", json={"condition": lead})
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "/points", r.text
    back = await _ok(
        await api.patch(f"/v1/scoring-rules/{rule['id']}", json={"condition": lead, "points": 2})
    )
    assert back["activity"] is None and back["points"] == 2


async def test_conditions_activities_and_relations_score_exactly(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    acme = await _ok(await api.post("/v1/companies", json={"name": "Acme", "industry": "tools"}), 201)
    ann = await _contact(api, first_name="Ann", lifecycle_stage="lead", company_id=acme["id"])
    bob = await _contact(api, first_name="Bob", lifecycle_stage="customer")
    lead = await _rule(
        api, name="lead", points=10, condition={"field": "lifecycle_stage", "op": "eq", "value": "lead"}
    )
    retail = await _rule(
        api, name="retail", points=5, condition={"field": "company.industry", "op": "eq", "value": "retail"}
    )
    await _rule(
        api, name="rival", points=-20, condition={"field": "tags", "op": "contains", "value": "rival"}
    )
    emails = await _rule(
        api, name="emails", activity={"type": "email", "within_days": 30, "points": 3, "max_points": 7}
    )
    assert lead["status"] == "building" and retail["status"] == "building"
    await _settle(pool)
    assert (await _ok(await api.get(f"/v1/scoring-rules/{emails['id']}")))["status"] == "ready"
    assert await _score(api, ann) == (10, {"lead": 10})
    assert await _score(api, bob) == (0, {})

    # activities linked: 3 points each, capped at 7; a call does not count
    made = []
    for kind in ("email", "email", "email", "call"):
        body = {"type": kind, "subject": "hi", "contact_ids": [ann, bob] if kind == "email" else [ann]}
        made.append((await _ok(await api.post("/v1/activities", json=body), 201))["id"])
    await _settle(pool)
    assert await _score(api, ann) == (17, {"lead": 10, "emails": 7})
    assert await _score(api, bob) == (7, {"emails": 7})
    # unlinked from Bob, archived: Bob keeps one email
    await _ok(await api.patch(f"/v1/activities/{made[0]}", json={"contact_ids": [ann]}))
    await _ok(await api.delete(f"/v1/activities/{made[1]}"))
    await _settle(pool)
    assert await _score(api, bob) == (3, {"emails": 3})
    assert await _score(api, ann) == (16, {"lead": 10, "emails": 6})

    # a relation change: the company's contacts are rescored
    await _ok(await api.patch(f"/v1/companies/{acme['id']}", json={"industry": "retail"}))
    await _settle(pool)
    assert await _score(api, ann) == (21, {"lead": 10, "retail": 5, "emails": 6})

    # PATCH, upsert by email, batch: every write path
    await _ok(await api.patch(f"/v1/contacts/{bob}", json={"tags": ["rival"]}))
    up = await api.put("/v1/contacts/by-email/cy@x.com", json={"first_name": "Cy", "lifecycle_stage": "lead"})
    assert up.status_code in (200, 201), up.text
    batch = await _ok(
        await api.post(
            "/v1/contacts/batch", json={"items": [{"first_name": "Di", "lifecycle_stage": "lead"}]}
        )
    )
    await _settle(pool)
    assert await _score(api, bob) == (-17, {"emails": 3, "rival": -20})
    assert (await _score(api, up.json()["id"]))[0] == 10
    di = batch["results"][0]["object"]["id"] if "results" in batch else batch["data"][0]["id"]
    assert (await _score(api, di))[0] == 10

    # the score is a field like any other: sort, min_score, the filter grammar, segments
    page = await _ok(await api.get("/v1/contacts", params={"sort": "-score", "limit": 10}))
    assert [c["score"] for c in page["data"]] == [21, 10, 10, -17]
    page = await _ok(await api.get("/v1/contacts", params={"min_score": 11}))
    assert [c["id"] for c in page["data"]] == [ann]
    found = await _ok(
        await api.post("/v1/contacts/search", json={"filter": {"field": "score", "op": "lt", "value": 0}})
    )
    assert [c["id"] for c in found["data"]] == [bob]

    # every change has its contact.score_changed event, with the old and new score
    events = await _ok(await api.get("/v1/events", params={"type": "contact.score_changed", "limit": 200}))
    ann_events = [e for e in events["data"] if e["object_id"] == ann]
    scores = sorted((e["data"]["previous"]["score"], e["data"]["score"]) for e in ann_events)
    assert scores == sorted([(0, 10), (10, 17), (17, 16), (16, 21)])
    assert all(e["data"]["object"]["score"] == e["data"]["score"] for e in events["data"])


async def test_time_passing_decays_activity_points_and_relative_conditions(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    ann = await _contact(api, first_name="Ann")
    await _rule(api, name="fresh", points=4, condition={"field": "created_at", "op": "gt", "value": "-30d"})
    await _rule(api, name="calls", activity={"type": "call", "within_days": 30, "points": 2})
    old = await _ok(await api.post("/v1/activities", json={"type": "call", "contact_ids": [ann]}), 201)
    await _ok(await api.post("/v1/activities", json={"type": "call", "contact_ids": [ann]}), 201)
    await _settle(pool)
    assert await _score(api, ann) == (8, {"fresh": 4, "calls": 4})
    async with pool.acquire() as conn:  # a call and the contact age 31 days, with no write and no event
        await conn.execute(
            "UPDATE activities SET occurred_at = now() - interval '31 days' WHERE id = $1",
            uuid.UUID(old["id"]),
        )
        await conn.execute(
            "UPDATE contacts SET created_at = now() - interval '31 days' WHERE id = $1", uuid.UUID(ann)
        )
    await _settle(pool)
    assert (await _score(api, ann))[0] == 8  # only the time pass sees it
    assert await worker.time_once(pool) >= 1
    await _settle(pool)
    assert await _score(api, ann) == (2, {"calls": 2})


async def test_activity_points_alone_decay_on_the_time_pass(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    ann = await _contact(api, first_name="Ann")
    bob = await _contact(api, first_name="Bob")
    await _rule(api, name="meetings", activity={"type": "meeting", "within_days": 7, "points": 5})
    first = await _ok(
        await api.post("/v1/activities", json={"type": "meeting", "contact_ids": [ann, bob]}), 201
    )
    await _ok(await api.post("/v1/activities", json={"type": "meeting", "contact_ids": [ann]}), 201)
    await _settle(pool)
    assert (await _score(api, ann), await _score(api, bob)) == ((10, {"meetings": 10}), (5, {"meetings": 5}))
    await pool.execute(
        "UPDATE activities SET occurred_at = now() - interval '8 days' WHERE id = $1", uuid.UUID(first["id"])
    )
    assert await worker.time_once(pool) >= 1
    assert (await _score(api, ann), await _score(api, bob)) == ((5, {"meetings": 5}), (0, {}))


async def test_rule_changes_rescore_the_workspace_in_resumable_chunks(
    api: httpx.AsyncClient, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [
        await _contact(api, first_name=f"c{i}", lifecycle_stage="lead" if i % 2 else "customer")
        for i in range(7)
    ]
    rule = await _rule(api, points=3, condition={"field": "lifecycle_stage", "op": "eq", "value": "lead"})
    await _settle(pool)
    monkeypatch.setattr(worker, "CHUNK", 3)
    edited = await _ok(await api.patch(f"/v1/scoring-rules/{rule['id']}", json={"points": 5}))
    assert edited["status"] == "building"
    async with pool.acquire() as conn:
        ws = await conn.fetchval(
            "SELECT workspace_id FROM scoring_rules WHERE id = $1", uuid.UUID(rule["id"])
        )
    steps = 0
    while (await _ok(await api.get(f"/v1/scoring-rules/{rule['id']}")))["status"] == "building":
        assert await worker.walk_workspace(pool, ws) > 0
        steps += 1
        assert steps <= 4
        if steps == 1:  # mid-walk: the position is committed, the first three contacts are rescored
            row = await pool.fetchrow(
                "SELECT walk_after, walk_versions FROM scoring_cursors WHERE workspace_id = $1", ws
            )
            assert row["walk_after"] == sorted(uuid.UUID(i) for i in ids)[2]
    assert steps == 3  # 7 contacts in chunks of 3
    for i, cid in enumerate(ids):
        assert (await _score(api, cid))[0] == (5 if i % 2 else 0)
    # archived: its points go; restored: they come back
    await _ok(await api.delete(f"/v1/scoring-rules/{rule['id']}"))
    await _settle(pool)
    assert (await _ok(await api.get(f"/v1/scoring-rules/{rule['id']}")))["status"] == "ready"
    assert [await _score(api, cid) for cid in ids] == [(0, {})] * len(ids)
    await _ok(await api.post(f"/v1/scoring-rules/{rule['id']}/restore"))
    await _settle(pool)
    assert (await _score(api, ids[1]))[0] == 5


async def test_merge_erase_and_archive(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    ann = await _contact(api, first_name="Ann", email="ann@x.com", lifecycle_stage="lead")
    ann2 = await _contact(api, first_name="Ann", email="ann2@x.com")
    bob = await _contact(api, first_name="Bob", lifecycle_stage="lead")
    await _rule(
        api, name="lead", points=10, condition={"field": "lifecycle_stage", "op": "eq", "value": "lead"}
    )
    await _rule(api, name="notes", activity={"type": "note", "within_days": 7, "points": 1})
    await _ok(await api.post("/v1/activities", json={"type": "note", "contact_ids": [ann2]}), 201)
    await _ok(await api.post("/v1/activities", json={"type": "note", "contact_ids": [ann, bob]}), 201)
    await _settle(pool)
    assert await _score(api, ann2) == (1, {"notes": 1})
    assert await _score(api, ann) == (11, {"lead": 10, "notes": 1})
    # the merged contact's contributions go, the survivor takes its activities' points
    await _ok(await api.post(f"/v1/contacts/{ann}/merge", json={"from": [ann2]}))
    await _settle(pool)
    assert await _score(api, ann) == (12, {"lead": 10, "notes": 2})
    assert (
        await pool.fetchval("SELECT count(*) FROM score_contributions WHERE contact_id = $1", uuid.UUID(ann2))
        == 0
    )
    erased = await api.post(f"/v1/contacts/{bob}/erase")
    assert erased.status_code in (200, 202), erased.text
    await _settle(pool)
    assert (
        await pool.fetchval("SELECT count(*) FROM score_contributions WHERE contact_id = $1", uuid.UUID(bob))
        == 0
    )
    # archive and restore
    await _ok(await api.delete(f"/v1/contacts/{ann}"))
    await _settle(pool)
    assert await pool.fetchval("SELECT score FROM contacts WHERE id = $1", uuid.UUID(ann)) == 0
    await _ok(await api.post(f"/v1/contacts/{ann}/restore"))
    await _settle(pool)
    assert await _score(api, ann) == (12, {"lead": 10, "notes": 2})


async def test_orders_move_scores_and_segments_use_them(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    await _rule(api, name="buyer", points=25, condition={"field": "order_count", "op": "gte", "value": 1})
    await _rule(
        api, name="ltv", points=5, condition={"field": "lifecycle_stage", "op": "eq", "value": "lead"}
    )
    await _settle(pool)
    order = {
        "customer": {"email": "ada@example.com", "first_name": "Ada"},
        "status": "paid",
        "currency": "EUR",
        "totals": {"total": "120"},
        "updated_at": "2026-11-30T10:00:00Z",
    }
    placed = await api.put("/v1/orders/shop/1", json=order)
    assert placed.status_code == 201, placed.text
    ada = placed.json()["contact_id"]
    seg = await _ok(
        await api.post(
            "/v1/segments",
            json={"name": "hot", "object_type": "contact", "kind": "dynamic",
                  "filter": {"field": "score", "op": "gte", "value": 20}},
        ),
        201,
    )  # fmt: skip
    await _settle(pool)
    assert await _score(api, ada) == (25, {"buyer": 25})
    while await segments.build_once(pool) or await segments.follow_once(pool):
        pass
    members = await _ok(await api.get(f"/v1/segments/{seg['id']}/members"))
    assert [m["object_id"] for m in members["data"]] == [ada]
    # the score drops under the segment's bar: the segments follow the score's own event
    await _ok(await api.patch(f"/v1/scoring-rules/{(await _rule_named(api, 'buyer'))}", json={"points": 10}))
    await _settle(pool)
    while await segments.build_once(pool) or await segments.follow_once(pool):
        pass
    assert (await _ok(await api.get(f"/v1/segments/{seg['id']}/members")))["data"] == []


async def _rule_named(api: httpx.AsyncClient, name: str) -> str:
    rules = await _ok(await api.get("/v1/scoring-rules", params={"name": name}))
    return str(rules["data"][0]["id"])
