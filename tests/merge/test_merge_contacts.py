"""Contact merges: every table that references a contact follows the survivor; rules; dry runs; events."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx


async def _post(api: httpx.AsyncClient, url: str, body: dict[str, Any]) -> dict[str, Any]:
    r = await api.post(url, json=body)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


async def _world(api: httpx.AsyncClient) -> dict[str, Any]:
    """A survivor, two duplicates, and one of every object that can point at a contact."""
    keep = await _post(api, "/v1/contacts", {"first_name": "Ada", "external_ids": {"shop": "s-1"}})
    dup1 = await _post(
        api,
        "/v1/contacts",
        {
            "email": "ada@x.com",
            "last_name": "Lovelace",
            "phone": "+44 20 7946 0000",
            "tags": ["vip"],
            "external_ids": {"shop": "s-2", "erp": "e-2"},
            "custom_fields": {"tier": "gold"},
        },
    )
    dup2 = await _post(api, "/v1/contacts", {"last_name": "Byron", "title": "Countess", "tags": ["x"]})
    other = await _post(api, "/v1/contacts", {"first_name": "Other"})
    deal = await _post(
        api,
        "/v1/deals",
        {
            "name": "D",
            "contact_id": dup1["id"],
            "contact_ids": [keep["id"], dup1["id"], dup2["id"], other["id"]],
        },
    )
    act = await _post(
        api, "/v1/activities", {"type": "note", "body": "hi", "contact_ids": [dup2["id"], other["id"]]}
    )
    ticket = await _post(api, "/v1/tickets", {"subject": "Help", "requester_id": dup1["id"]})
    r = await api.post(
        f"/v1/tickets/{ticket['id']}/comments",
        json={"body": "please", "author_type": "requester", "author_id": dup1["id"]},
    )
    assert r.status_code == 201, r.text
    return {
        "keep": keep,
        "dup1": dup1,
        "dup2": dup2,
        "other": other,
        "deal": deal,
        "act": act,
        "ticket": ticket,
        "comment": r.json(),
    }


async def _merge(api: httpx.AsyncClient, survivor: str, body: dict[str, Any]) -> httpx.Response:
    return await api.post(f"/v1/contacts/{survivor}/merge", json=body)


async def test_merge_moves_every_reference_fills_fields_and_archives(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    w = await _world(api)
    keep, dup1, dup2 = w["keep"]["id"], w["dup1"]["id"], w["dup2"]["id"]
    r = await _merge(api, keep, {"from": [dup1, dup2]})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["dry_run"] is False and out["merged"] == [dup1, dup2]
    s = out["survivor"]
    assert s["first_name"] == "Ada" and s["last_name"] == "Lovelace" and s["email"] == "ada@x.com"
    assert s["title"] == "Countess" and s["phone"] == "+44 20 7946 0000"
    assert s["tags"] == ["vip", "x"] and s["custom_fields"] == {"tier": "gold"}
    assert s["external_ids"] == {"shop": "s-1", "erp": "e-2"}
    assert out["filled"] == {"email": dup1, "last_name": dup1, "phone": dup1, "title": dup2}
    assert out["dropped_external_ids"] == [{"record": dup1, "source": "shop", "external_id": "s-2"}]
    assert out["moved"] == {
        "deals": 1,
        "activities": 1,
        "tickets": 1,
        "ticket_comments": 1,
        "orders": 0,
        "external_ids": 1,
    }
    assert s["version"] == 2

    deal = (await api.get(f"/v1/deals/{w['deal']['id']}")).json()
    assert deal["contact_id"] == keep
    assert deal["contact_ids"] == [keep, w["other"]["id"]]  # duplicates removed, order kept
    act = (await api.get(f"/v1/activities/{w['act']['id']}")).json()
    assert act["contact_ids"] == [keep, w["other"]["id"]]
    ticket = (await api.get(f"/v1/tickets/{w['ticket']['id']}")).json()
    assert ticket["requester_id"] == keep
    comments = (await api.get(f"/v1/tickets/{w['ticket']['id']}/comments")).json()["data"]
    assert [c["author_id"] for c in comments if c["author_type"] == "requester"] == [keep]

    # external ids: the registry follows the json, so upserts by the moved id land on the survivor
    r = await api.put("/v1/contacts/by-external-id/erp/e-2", json={"title": "Countess of L"})
    assert r.status_code == 200 and r.json()["id"] == keep
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT source, external_id, object_id FROM external_ids WHERE workspace_id = $1 ORDER BY 1, 2",
            api.workspace_id,  # type: ignore[attr-defined]
        )
    assert [(x["source"], x["external_id"], str(x["object_id"])) for x in rows] == [
        ("erp", "e-2", keep),
        ("shop", "s-1", keep),
    ]

    # the merged ones: archived, pointing at the survivor, their email free for the survivor
    async with pool.acquire() as conn:
        gone = await conn.fetch(
            "SELECT id, archived_at, merged_into, external_ids, version FROM contacts WHERE id = ANY($1)",
            [uuid.UUID(dup1), uuid.UUID(dup2)],
        )
    assert all(g["archived_at"] and str(g["merged_into"]) == keep and g["version"] == 2 for g in gone)


async def test_merge_events(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    w = await _world(api)
    keep, dup1, dup2 = w["keep"]["id"], w["dup1"]["id"], w["dup2"]["id"]
    assert (await _merge(api, keep, {"from": [dup1, dup2]})).status_code == 200
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT type, object_id, data FROM events WHERE workspace_id = $1 AND type NOT LIKE '%.created' "
            "AND type <> 'ticket.comment_created' ORDER BY sequence",
            api.workspace_id,  # type: ignore[attr-defined]
        )
    seen = {(r["type"], str(r["object_id"])) for r in rows}
    assert {
        ("contact.archived", dup1),
        ("contact.archived", dup2),
        ("contact.updated", keep),
        ("contact.merged", keep),
        ("deal.updated", w["deal"]["id"]),
        ("activity.updated", w["act"]["id"]),
        ("ticket.updated", w["ticket"]["id"]),
    } == seen
    merged = next(r for r in rows if r["type"] == "contact.merged")
    import json

    data = json.loads(merged["data"]) if isinstance(merged["data"], str) else merged["data"]
    assert data["survivor"] == keep and data["merged"] == [dup1, dup2]
    archived = next(r for r in rows if r["type"] == "contact.archived")
    data = json.loads(archived["data"]) if isinstance(archived["data"], str) else archived["data"]
    assert data["object"]["merged_into"] == keep


async def test_prefer_takes_the_named_records_values(api: httpx.AsyncClient) -> None:
    w = await _world(api)
    keep, dup1 = w["keep"]["id"], w["dup1"]["id"]
    r = await _merge(
        api, keep, {"from": [dup1], "prefer": {"first_name": dup1, "external_ids": dup1, "email": keep}}
    )
    assert r.status_code == 200, r.text
    s = r.json()["survivor"]
    assert s["first_name"] is None  # dup1 has none, and prefer says take dup1's
    assert s["email"] is None  # the survivor's (empty) email is preferred over filling
    assert s["external_ids"] == {"shop": "s-2", "erp": "e-2"}


async def test_dry_run_writes_nothing(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    w = await _world(api)
    keep, dup1, dup2 = w["keep"]["id"], w["dup1"]["id"], w["dup2"]["id"]
    async with pool.acquire() as conn:
        before = await conn.fetchval("SELECT count(*) FROM events WHERE workspace_id = $1", api.workspace_id)  # type: ignore[attr-defined]
    r = await _merge(api, keep, {"from": [dup1, dup2], "dry_run": True})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["dry_run"] is True and out["survivor"]["email"] == "ada@x.com"
    assert out["moved"] == {
        "deals": 1,
        "activities": 1,
        "tickets": 1,
        "ticket_comments": 1,
        "orders": 0,
        "external_ids": 1,
    }
    async with pool.acquire() as conn:
        after = await conn.fetchval("SELECT count(*) FROM events WHERE workspace_id = $1", api.workspace_id)  # type: ignore[attr-defined]
    assert after == before
    assert (await api.get(f"/v1/contacts/{keep}")).json()["version"] == 1
    assert (await api.get(f"/v1/contacts/{dup1}")).json()["archived_at"] is None
    assert (await api.get(f"/v1/deals/{w['deal']['id']}")).json()["contact_id"] == dup1


async def test_get_on_a_merged_id_answers_301_and_writes_409(api: httpx.AsyncClient) -> None:
    w = await _world(api)
    keep, dup1 = w["keep"]["id"], w["dup1"]["id"]
    assert (await _merge(api, keep, {"from": [dup1]})).status_code == 200
    r = await api.get(f"/v1/contacts/{dup1}")
    assert r.status_code == 301
    assert r.headers["location"] == f"/v1/contacts/{keep}"
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["merged_into"] == keep and r.json()["code"] == "merged"
    for call in (
        api.patch(f"/v1/contacts/{dup1}", json={"title": "x"}),
        api.delete(f"/v1/contacts/{dup1}"),
        api.post(f"/v1/contacts/{dup1}/restore"),
    ):
        r = await call
        assert r.status_code == 409 and r.json()["code"] == "merged" and r.json()["merged_into"] == keep
    # a chain: merged again, the old id's 301 points one hop on, and clients follow hops
    third = await _post(api, "/v1/contacts", {"first_name": "Third"})
    assert (await _merge(api, third["id"], {"from": [keep]})).status_code == 200
    assert (await api.get(f"/v1/contacts/{keep}")).headers["location"] == f"/v1/contacts/{third['id']}"
    assert (await api.get(f"/v1/contacts/{dup1}", follow_redirects=True)).json()["id"] == third["id"]


async def test_rules_are_problems(api: httpx.AsyncClient, make_client: Any) -> None:
    w = await _world(api)
    keep, dup1, dup2 = w["keep"]["id"], w["dup1"]["id"], w["dup2"]["id"]

    async def problem(survivor: str, body: dict[str, Any], status: int, path: str | None = None) -> None:
        r = await _merge(api, survivor, body)
        assert r.status_code == status, r.text
        assert r.headers["content-type"] == "application/problem+json"
        if path:
            assert path in [e["path"] for e in r.json()["errors"]], r.json()

    await problem(keep, {"from": [keep]}, 409, "/from/0")
    await problem(keep, {"from": [dup1, keep]}, 409, "/from/1")
    await problem(keep, {"from": [str(uuid.uuid4())]}, 404, "/from/0")
    await problem(str(uuid.uuid4()), {"from": [dup1]}, 404)
    await problem(keep, {"from": []}, 422, "/from")
    await problem(keep, {}, 422, "/from")
    await problem(keep, {"from": [dup1], "prefer": {"nope": dup1}}, 422, "/prefer/nope")
    await problem(keep, {"from": [dup1], "prefer": {"email": dup2}}, 422, "/prefer/email")
    await problem(keep, {"from": [dup1], "prefer": {"merged_into": dup1}}, 422, "/prefer/merged_into")
    await problem(keep, {"from": ["not-a-uuid"]}, 422, "/from/0")
    # cross-workspace: another workspace's contact is unknown here, both ways
    elsewhere = await make_client()
    stranger = await _post(elsewhere, "/v1/contacts", {"first_name": "S"})
    await problem(keep, {"from": [stranger["id"]]}, 404, "/from/0")
    await problem(stranger["id"], {"from": [dup1]}, 404)
    # already merged: as a source or as the survivor
    assert (await _merge(api, keep, {"from": [dup1]})).status_code == 200
    await problem(keep, {"from": [dup1]}, 422, "/from/0")
    await problem(dup1, {"from": [dup2]}, 422, "/id")
    # an archived survivor must be restored first
    assert (await api.delete(f"/v1/contacts/{dup2}")).status_code == 200
    await problem(dup2, {"from": [keep]}, 422, "/id")
    # an archived source is fine
    assert (await _merge(api, keep, {"from": [dup2]})).status_code == 200


async def test_opposite_concurrent_merges_leave_one_survivor(api: httpx.AsyncClient) -> None:
    import asyncio

    for _ in range(5):
        a = await _post(api, "/v1/contacts", {"first_name": "A"})
        b = await _post(api, "/v1/contacts", {"first_name": "B"})
        one, two = await asyncio.gather(
            _merge(api, a["id"], {"from": [b["id"]]}), _merge(api, b["id"], {"from": [a["id"]]})
        )
        assert sorted([one.status_code, two.status_code]) == [200, 422], (one.text, two.text)


async def test_merged_event_reaches_subscribed_webhooks(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    r = await api.post(
        "/v1/webhooks", json={"url": "http://127.0.0.1:9/h", "event_types": ["contact.merged"]}
    )
    assert r.status_code == 201, r.text
    a = await _post(api, "/v1/contacts", {"first_name": "A"})
    b = await _post(api, "/v1/contacts", {"first_name": "B"})
    assert (await _merge(api, a["id"], {"from": [b["id"]]})).status_code == 200
    async with pool.acquire() as conn:
        types = await conn.fetch(
            "SELECT event_type, object_id FROM webhook_deliveries WHERE workspace_id = $1",
            api.workspace_id,  # type: ignore[attr-defined]
        )
    assert [(t["event_type"], str(t["object_id"])) for t in types] == [("contact.merged", a["id"])]


async def test_idempotent_replay_of_a_merge(api: httpx.AsyncClient) -> None:
    a = await _post(api, "/v1/contacts", {"first_name": "A"})
    b = await _post(api, "/v1/contacts", {"last_name": "B"})
    headers = {"Idempotency-Key": str(uuid.uuid4())}
    first = await api.post(f"/v1/contacts/{a['id']}/merge", json={"from": [b["id"]]}, headers=headers)
    again = await api.post(f"/v1/contacts/{a['id']}/merge", json={"from": [b["id"]]}, headers=headers)
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()


async def test_the_survivor_takes_a_unique_custom_field_value_from_a_merged_record(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    """The survivor's rules run once the merged records are archived, in a dry run too (in a savepoint it
    rolls back): a unique value moving to the survivor is not held by a live record any more."""
    r = await api.post(
        "/v1/custom-fields",
        json={"object_type": "contact", "name": "erp_no", "label": "ERP", "type": "text", "unique": True},
    )
    assert r.status_code == 201, r.text
    keep = await _post(api, "/v1/contacts", {"first_name": "Keep"})
    dup = await _post(api, "/v1/contacts", {"email": "d@x.com", "custom_fields": {"erp_no": "A-1"}})
    events = "SELECT count(*) FROM events WHERE workspace_id = $1"
    before = await pool.fetchval(events, api.workspace_id)  # type: ignore[attr-defined]

    dry = await _merge(api, keep["id"], {"from": [dup["id"]], "dry_run": True})
    assert dry.status_code == 200, dry.text
    assert dry.json()["survivor"]["custom_fields"] == {"erp_no": "A-1"}
    assert await pool.fetchval(events, api.workspace_id) == before  # type: ignore[attr-defined]
    assert (await api.get(f"/v1/contacts/{dup['id']}")).json()["archived_at"] is None

    r = await _merge(api, keep["id"], {"from": [dup["id"]]})
    assert r.status_code == 200, r.text
    assert r.json()["survivor"]["custom_fields"] == {"erp_no": "A-1"}
    assert r.json()["survivor"]["email"] == "d@x.com"
    # the value is the survivor's now: another record cannot take it
    taken = await api.post("/v1/contacts", json={"custom_fields": {"erp_no": "A-1"}})
    assert taken.status_code == 409 and taken.json()["errors"][0]["path"] == "/custom_fields/erp_no"
