"""Members and teams: the shared resource contract, and owners that must be active members on every
write path."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx
from clients import MakeClient


async def _member(api: httpx.AsyncClient, email: str, **more: Any) -> dict[str, Any]:
    r = await api.post("/v1/members", json={"email": email, "name": email.split("@")[0], **more})
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def _field(r: httpx.Response, path: str) -> None:
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert path in [e["path"] for e in r.json()["errors"]], r.text


async def test_member_email_is_unique_case_insensitively_and_the_contract_holds(
    api: httpx.AsyncClient,
) -> None:
    ann = await _member(api, "Ann@Example.com", role="admin")
    assert (ann["email"], ann["role"], ann["active"], ann["object"]) == (
        "ann@example.com",
        "admin",
        True,
        "member",
    )
    r = await api.post("/v1/members", json={"email": "ANN@example.COM", "name": "Other"})
    assert r.status_code == 409, r.text
    _field(
        await api.post("/v1/members", json={"email": "x@example.com", "name": "X", "role": "owner"}), "/role"
    )
    # If-Match and the archive/restore cycle of every resource
    r = await api.patch(f"/v1/members/{ann['id']}", json={"active": False}, headers={"If-Match": '"1"'})
    assert r.status_code == 200 and r.json()["active"] is False and r.headers["ETag"] == '"2"', r.text
    assert (
        await api.patch(f"/v1/members/{ann['id']}", json={"name": "A"}, headers={"If-Match": '"1"'})
    ).status_code == 412
    listed = (await api.get("/v1/members", params={"active": "false"})).json()["data"]
    assert [m["id"] for m in listed] == [ann["id"]]
    assert (await api.get("/v1/members", params={"active": "true"})).json()["data"] == []
    # the email frees up when its member is archived
    assert (await api.delete(f"/v1/members/{ann['id']}")).status_code == 200
    await _member(api, "ann@example.com")


async def test_teams_name_live_members(api: httpx.AsyncClient) -> None:
    a, b = await _member(api, "a@example.com"), await _member(api, "b@example.com")
    r = await api.post("/v1/teams", json={"name": "Sales", "member_ids": [a["id"], b["id"], a["id"]]})
    assert r.status_code == 201, r.text
    team = r.json()
    assert team["member_ids"] == [a["id"], b["id"]]
    _field(
        await api.post("/v1/teams", json={"name": "X", "member_ids": [str(uuid.uuid4())]}), "/member_ids/0"
    )
    found = (await api.get("/v1/teams", params={"member_id": b["id"], "include": "members"})).json()["data"]
    assert [t["id"] for t in found] == [team["id"]]
    assert [m["email"] for m in found[0]["members"]["data"]] == ["a@example.com", "b@example.com"]


async def test_owner_must_be_an_active_member_on_create_update_and_upsert(api: httpx.AsyncClient) -> None:
    owner = await _member(api, "o@example.com")
    idle = await _member(api, "idle@example.com", active=False)
    stranger = str(uuid.uuid4())
    for path, column, body in (
        ("/v1/contacts", "owner_id", {"first_name": "C"}),
        ("/v1/companies", "owner_id", {"name": "Co"}),
        ("/v1/deals", "owner_id", {"name": "D"}),
        ("/v1/activities", "owner_id", {"type": "task", "subject": "S"}),
        ("/v1/tickets", "assignee_id", {"subject": "T"}),
    ):
        _field(await api.post(path, json={**body, column: stranger}), f"/{column}")
        _field(await api.post(path, json={**body, column: idle["id"]}), f"/{column}")
        r = await api.post(path, json={**body, column: owner["id"]})
        assert r.status_code == 201, r.text
        oid = r.json()["id"]
        _field(await api.patch(f"{path}/{oid}", json={column: stranger}), f"/{column}")
        assert (await api.get(f"{path}/{oid}")).json()["version"] == 1  # the refusal changed nothing
    r = await api.put("/v1/contacts/by-email/new@example.com", json={"owner_id": stranger})
    _field(r, "/owner_id")
    assert (await api.get("/v1/contacts", params={"email": "new@example.com"})).json()["data"] == []


async def test_a_deactivated_owner_keeps_records_that_stay_writable(api: httpx.AsyncClient) -> None:
    owner = await _member(api, "o@example.com")
    contact = (await api.post("/v1/contacts", json={"first_name": "C", "owner_id": owner["id"]})).json()
    assert (await api.patch(f"/v1/members/{owner['id']}", json={"active": False})).status_code == 200
    r = await api.patch(f"/v1/contacts/{contact['id']}", json={"first_name": "D"})
    assert r.status_code == 200 and r.json()["owner_id"] == owner["id"], r.text
    # giving it to them again is judged, and refused
    other = await _member(api, "x@example.com")
    assert (
        await api.patch(f"/v1/contacts/{contact['id']}", json={"owner_id": other["id"]})
    ).status_code == 200
    _field(await api.patch(f"/v1/contacts/{contact['id']}", json={"owner_id": owner["id"]}), "/owner_id")


async def test_a_batch_refuses_the_item_with_a_bad_owner_alone(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    owner = await _member(api, "o@example.com")
    items = [
        {"email": "a@example.com", "owner_id": owner["id"]},
        {"email": "b@example.com", "owner_id": str(uuid.uuid4())},
        {"email": "c@example.com"},
    ]
    r = await api.post("/v1/contacts/batch", json={"items": items})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["status"] for x in results] == [201, 422, 201]
    assert [e["path"] for e in results[1]["error"]["errors"]] == ["/items/1/owner_id"]
    stored = await pool.fetch(
        "SELECT email FROM contacts WHERE workspace_id = $1 ORDER BY email",
        api.workspace_id,  # type: ignore[attr-defined]
    )
    assert [s["email"] for s in stored] == ["a@example.com", "c@example.com"]


async def test_me_resolves_to_the_keys_member_and_is_the_actor(
    api: httpx.AsyncClient, make_client: MakeClient, pool: asyncpg.Pool
) -> None:
    ws = api.workspace_id  # type: ignore[attr-defined]
    member = await _member(api, "me@example.com")
    r = await api.post("/v1/api-keys", json={"name": "as me", "scopes": ["*"], "member_id": member["id"]})
    assert r.status_code == 201 and r.json()["member_id"] == member["id"], r.text
    mine = httpx.AsyncClient(
        transport=api._transport,
        base_url="http://test",
        headers={"Authorization": f"Bearer {r.json()['key']}"},
    )
    async with mine:
        r = await mine.post("/v1/deals", json={"name": "Mine", "owner_id": "me"})
        assert r.status_code == 201 and r.json()["owner_id"] == member["id"], r.text
        actor = await pool.fetchval(
            "SELECT actor FROM events WHERE workspace_id = $1 AND object_id = $2",
            ws,
            uuid.UUID(r.json()["id"]),
        )
        assert actor == f"member:{member['id']}"
        r = await mine.post("/v1/tickets", json={"subject": "T", "assignee_id": "me"})
        assert r.status_code == 201 and r.json()["assignee_id"] == member["id"], r.text
    # a key acting for nobody: "me" names nobody
    _field(await api.post("/v1/contacts", json={"first_name": "C", "owner_id": "me"}), "/owner_id")
    _field(await api.post("/v1/contacts", json={"first_name": "C", "owner_id": "you"}), "/owner_id")
    # a key can only act for an active member of its own workspace
    other = await make_client()
    stranger = await _member(other, "s@example.com")
    r = await api.post("/v1/api-keys", json={"name": "x", "scopes": ["*"], "member_id": stranger["id"]})
    _field(r, "/member_id")


async def test_ownership_counts_and_reassign_moves_everything_with_events(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    ws = api.workspace_id  # type: ignore[attr-defined]
    old, new = await _member(api, "old@example.com"), await _member(api, "new@example.com")
    for n in range(3):
        await api.post("/v1/contacts", json={"first_name": f"C{n}", "owner_id": old["id"]})
    await api.post("/v1/deals", json={"name": "D", "owner_id": old["id"]})
    await api.post("/v1/tickets", json={"subject": "T", "assignee_id": old["id"]})
    gone = (await api.post("/v1/companies", json={"name": "Gone", "owner_id": old["id"]})).json()
    await api.delete(f"/v1/companies/{gone['id']}")
    r = await api.get(f"/v1/members/{old['id']}/ownership")
    assert r.status_code == 200, r.text
    assert r.json()["counts"] == {"contacts": 3, "companies": 0, "deals": 1, "activities": 0, "tickets": 1}
    assert r.json()["total"] == 5
    # deactivating a member who owns records is allowed
    assert (await api.patch(f"/v1/members/{old['id']}", json={"active": False})).status_code == 200

    idle = await _member(api, "idle@example.com", active=False)
    _field(
        await api.post(f"/v1/members/{old['id']}/reassign", json={"to_member_id": idle["id"]}),
        "/to_member_id",
    )
    _field(
        await api.post(f"/v1/members/{old['id']}/reassign", json={"to_member_id": old["id"]}), "/to_member_id"
    )
    r = await api.post(f"/v1/members/{uuid.uuid4()}/reassign", json={"to_member_id": new["id"]})
    assert r.status_code == 404, r.text

    r = await api.post(f"/v1/members/{old['id']}/reassign", json={"to_member_id": new["id"]})
    assert r.status_code == 200, r.text
    assert r.json()["moved"] == {"contacts": 3, "companies": 0, "deals": 1, "activities": 0, "tickets": 1}
    assert (await api.get(f"/v1/members/{old['id']}/ownership")).json()["total"] == 0
    assert (await api.get(f"/v1/members/{new['id']}/ownership")).json()["total"] == 5
    moved = await pool.fetch(
        "SELECT type, data->'previous' AS previous FROM events"
        " WHERE workspace_id = $1 AND type LIKE '%.updated' AND object_type IN ('contact', 'deal', 'ticket')",
        ws,
    )
    assert len(moved) == 5
    assert all(m["previous"] in ({"owner_id": old["id"]}, {"assignee_id": old["id"]}) for m in moved)


async def test_reassign_walks_more_than_one_chunk(api: httpx.AsyncClient) -> None:
    old, new = await _member(api, "old@example.com"), await _member(api, "new@example.com")
    for start, count in ((0, 500), (500, 30)):
        items = [{"first_name": f"C{n}", "owner_id": old["id"]} for n in range(start, start + count)]
        r = await api.post("/v1/contacts/batch", json={"items": items})
        assert {x["status"] for x in r.json()["results"]} == {201}, r.text
    r = await api.post(f"/v1/members/{old['id']}/reassign", json={"to_member_id": new["id"]})
    assert r.status_code == 200 and r.json()["moved"]["contacts"] == 530, r.text
    assert (await api.get(f"/v1/members/{new['id']}/ownership")).json()["counts"]["contacts"] == 530
    assert (await api.get(f"/v1/members/{old['id']}/ownership")).json()["total"] == 0
