"""GDPR erase, checked table by table for everything that references a contact."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from typing import Any

import asyncpg
import httpx
import jsonschema
from clients import MakeClient

from crm_api.webhooks.dispatcher import body_of

EMAIL = "ann.erase@example.com"


async def _ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code in (200, 201), response.text
    body: dict[str, Any] = response.json()
    return body


async def _story(api: httpx.AsyncClient) -> dict[str, Any]:
    """Ann, with an endpoint listening, a deal, activities of her own and shared, a ticket and comments."""
    hook = await _ok(
        await api.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/hook", "event_types": ["*"]})
    )
    company = await _ok(await api.post("/v1/companies", json={"name": "Acme", "domain": "acme.example"}))
    ann = await _ok(
        await api.post(
            "/v1/contacts",
            json={"email": EMAIL, "first_name": "Annabel", "last_name": "Lee", "phone": "+44 20 7946 0001",
                  "title": "CTO", "company_id": company["id"], "tags": ["vip"],
                  "custom_fields": {"shoe": "42"}, "external_ids": {"shopify": "ann-8812"},
                  "marketing_consent": True, "marketing_consent_source": "newsletter form"},
        )
    )  # fmt: skip
    bob = await _ok(await api.post("/v1/contacts", json={"email": "bob@example.com", "first_name": "Bob"}))
    await _ok(await api.patch(f"/v1/contacts/{ann['id']}", json={"title": "CEO", "last_name": "Poe"}))
    deal = await _ok(
        await api.post(
            "/v1/deals",
            json={"name": "Renewal", "amount": "1250.00", "currency": "EUR", "contact_id": ann["id"],
                  "contact_ids": [ann["id"], bob["id"]]},
        )
    )  # fmt: skip
    own = await _ok(
        await api.post(
            "/v1/activities",
            json={"type": "call", "subject": "Call Annabel", "body": "Her home number",
                  "contact_ids": [ann["id"]], "deal_ids": [deal["id"]]},
        )
    )  # fmt: skip
    await _ok(await api.patch(f"/v1/activities/{own['id']}", json={"body": "Her new home number"}))
    shared = await _ok(
        await api.post(
            "/v1/activities",
            json={"type": "meeting", "subject": "Kick-off", "body": "Ann and Bob",
                  "contact_ids": [ann["id"], bob["id"]]},
        )
    )  # fmt: skip
    bobs = await _ok(
        await api.post(
            "/v1/activities", json={"type": "note", "body": "Bob only", "contact_ids": [bob["id"]]}
        )
    )
    ticket = await _ok(await api.post("/v1/tickets", json={"subject": "Login", "requester_id": ann["id"]}))
    path = f"/v1/tickets/{ticket['id']}/comments"
    mine = await _ok(await api.post(path, json={"body": "I am Annabel, call me", "author_type": "requester"}))
    agent = await _ok(await api.post(path, json={"body": "Looking into it"}))
    return {"hook": hook, "company": company, "ann": ann, "bob": bob, "deal": deal, "own": own,
            "shared": shared, "bobs": bobs, "ticket": ticket, "mine": mine, "agent": agent}  # fmt: skip


def _has_personal(text: str) -> list[str]:
    """The personal values of Ann's found in the text (as whole words: ids are hex and might hold "ceo")."""
    found = []
    for p in (EMAIL, "Annabel", "Poe", "7946", "CTO", "CEO", "ann-8812", "newsletter form", "shoe"):
        if re.search(rf"(?<![0-9a-z]){re.escape(p.lower())}(?![0-9a-z])", text.lower()):
            found.append(p)
    return found


async def test_erase_clears_every_table_that_references_the_contact(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    s = await _story(api)
    ws, ann_id = api.workspace_id, uuid.UUID(s["ann"]["id"])  # type: ignore[attr-defined]
    # a receiver that echoed what it was sent: its logged answer holds the personal data too
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO webhook_attempts (workspace_id, id, delivery_id, attempted_at, status_code, "
            "latency_ms, error, response_body) "
            "SELECT d.workspace_id, gen_random_uuid(), d.id, now(), 500, 3, "
            "'http_500', e.data::text FROM webhook_deliveries AS d JOIN events AS e "
            "ON e.workspace_id = d.workspace_id AND e.id = d.event_id WHERE d.workspace_id = $1",
            ws,
        )
    r = await api.post(f"/v1/contacts/{ann_id}/erase", headers={"X-Request-ID": "erase-1"})
    assert r.status_code == 200, r.text
    receipt = r.json()
    assert receipt["object"] == "erasure" and receipt["contact"] == {"id": str(ann_id), "object": "contact"}
    assert receipt["request_id"] == "erase-1" and receipt["erased_at"]
    counts = receipt["counts"]
    assert counts["contacts"] == 1 and counts["external_ids"] == 1
    assert counts["activities_scrubbed"] == 1 and counts["activities_unlinked"] == 1
    assert counts["ticket_comments"] == 1
    # ann's created and updated, the own call's created and updated, her comment
    assert counts["events"] == 5
    assert counts["webhook_attempts"] == 5

    # the contact row: personal fields gone, id kept, archived, stamped
    contact = await _ok(await api.get(f"/v1/contacts/{ann_id}"))
    for name in ("email", "first_name", "last_name", "phone", "title", "marketing_consent_at",
                 "marketing_consent_source"):  # fmt: skip
        assert contact[name] is None, name
    assert contact["tags"] == [] and contact["custom_fields"] == {} and contact["external_ids"] == {}
    assert contact["marketing_consent"] is False
    assert contact["archived_at"] is not None and contact["erased_at"] == receipt["erased_at"]
    assert contact["company_id"] == s["company"]["id"]  # links are not personal data
    assert contact["version"] == s["ann"]["version"] + 2

    async with pool.acquire() as conn:
        # every row of every table holding a contact's data, as text, carries nothing of Ann's
        tables = {
            "contacts": "SELECT c::text FROM contacts AS c WHERE workspace_id = $1",
            "external_ids": "SELECT x::text FROM external_ids AS x WHERE workspace_id = $1",
            "activities": "SELECT a::text FROM activities AS a WHERE workspace_id = $1 AND id <> $2",
            "ticket_comments": "SELECT t::text FROM ticket_comments AS t WHERE workspace_id = $1",
            "events": "SELECT data::text FROM events WHERE workspace_id = $1",
            "webhook_attempts":
                "SELECT coalesce(response_body, '') FROM webhook_attempts WHERE workspace_id = $1",
            "idempotency_keys": "SELECT body FROM idempotency_keys WHERE workspace_id = $1",
        }  # fmt: skip
        for table, sql in tables.items():
            args = [ws, uuid.UUID(s["shared"]["id"])] if "$2" in sql else [ws]
            for (text,) in await conn.fetch(sql, *args):
                assert not _has_personal(text), (table, text)
        assert await conn.fetchval(
            "SELECT count(*) FROM external_ids WHERE workspace_id = $1 AND object_id = $2", ws, ann_id
        ) == 0  # fmt: skip

    # activities: her own call lost its text, the shared meeting only her id, Bob's note nothing
    own = await _ok(await api.get(f"/v1/activities/{s['own']['id']}"))
    assert own["subject"] is None and own["body"] is None and own["contact_ids"] == [str(ann_id)]
    assert own["deal_ids"] == [s["deal"]["id"]]
    shared = await _ok(await api.get(f"/v1/activities/{s['shared']['id']}"))
    assert shared["contact_ids"] == [s["bob"]["id"]] and shared["body"] == "Ann and Bob"
    bobs = await _ok(await api.get(f"/v1/activities/{s['bobs']['id']}"))
    assert bobs == s["bobs"]

    # comments: hers emptied, the agent's untouched; the ticket keeps its requester
    comments = (await _ok(await api.get(f"/v1/tickets/{s['ticket']['id']}/comments")))["data"]
    by_id = {c["id"]: c for c in comments}
    assert by_id[s["mine"]["id"]]["body"] == "" and by_id[s["agent"]["id"]]["body"] == "Looking into it"
    ticket = await _ok(await api.get(f"/v1/tickets/{s['ticket']['id']}"))
    assert ticket["requester_id"] == str(ann_id)

    # deals: amounts and links intact
    deal = await _ok(await api.get(f"/v1/deals/{s['deal']['id']}"))
    assert deal == s["deal"] or (deal["amount"] == "1250.00" and deal["contact_id"] == str(ann_id))
    assert deal["amount"] == "1250.00" and deal["currency"] == "EUR"
    assert set(deal["contact_ids"]) == {str(ann_id), s["bob"]["id"]}

    # Bob is untouched
    assert await _ok(await api.get(f"/v1/contacts/{s['bob']['id']}")) == s["bob"]


async def _events(pool: asyncpg.Pool, workspace_id: Any, object_id: str) -> list[dict[str, Any]]:
    """The stored rows, oldest first (the feed would hold back rows of transactions still settling)."""
    rows = await pool.fetch(
        "SELECT type, actor, request_id, data FROM events WHERE workspace_id = $1 AND object_id = $2 "
        "ORDER BY sequence",
        workspace_id,
        uuid.UUID(object_id),
    )
    return [dict(r) for r in rows]


async def test_stored_events_keep_their_shape_with_personal_fields_null(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    s = await _story(api)
    ws, ann_id = api.workspace_id, s["ann"]["id"]  # type: ignore[attr-defined]
    await _ok(await api.post(f"/v1/contacts/{ann_id}/erase"))
    events = await _events(pool, ws, ann_id)
    assert [e["type"] for e in events] == ["contact.created", "contact.updated", "contact.erased"]
    created, updated, erased = events
    assert created["data"]["object"]["email"] is None and created["data"]["object"]["id"] == ann_id
    assert created["data"]["object"]["lifecycle_stage"] == s["ann"]["lifecycle_stage"]
    assert created["data"]["object"]["marketing_consent"] is True  # the fact, not its source
    assert created["data"]["previous"] == {}
    assert updated["data"]["previous"] == {"title": None, "last_name": None}
    assert updated["data"]["object"]["title"] is None
    # contact.erased carries only the id
    assert erased["data"] == {"object": {"id": ann_id, "object": "contact"}, "previous": {}}
    assert erased["request_id"] and erased["actor"].startswith("api_key:")
    # the same through the API, as an integrator reads one event
    comment_events = await _events(pool, ws, s["mine"]["id"])
    assert comment_events[0]["data"]["object"]["body"] == ""  # what the row holds: the schema's type
    assert comment_events[0]["data"]["object"]["author_id"] == ann_id
    own_events = await _events(pool, ws, s["own"]["id"])
    assert [e["data"]["previous"] for e in own_events] == [{}, {"body": None}]
    assert all(e["data"]["object"]["subject"] is None for e in own_events)
    shared_events = await _events(pool, ws, s["shared"]["id"])
    assert shared_events[0]["data"]["object"]["body"] == "Ann and Bob"  # shared: its text stays


async def test_erased_payloads_still_match_the_published_schemas(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    """Every stored event about what the erase touched (the contact, her own activity, her comment) still
    validates against the schema ``GET /v1/event-types`` serves for its type, in ``object`` and in each
    ``previous`` value: an emptied list or map stays a list or map, an emptied comment body a string."""
    s = await _story(api)
    ann_id = s["ann"]["id"]
    change = {"tags": ["vip", "gold"], "custom_fields": {"shoe": "43"}, "external_ids": {"crm": "a-1"}}
    await _ok(await api.patch(f"/v1/contacts/{ann_id}", json=change))
    await _ok(await api.post(f"/v1/contacts/{ann_id}/erase"))
    schemas = {e["type"]: e["schema"] for e in (await _ok(await api.get("/v1/event-types")))["data"]}
    ws = api.workspace_id  # type: ignore[attr-defined]
    seen = []
    for object_id in (ann_id, s["own"]["id"], s["mine"]["id"]):
        for event in await _events(pool, ws, object_id):
            schema = schemas[event["type"]]
            validator = jsonschema.Draft202012Validator(schema)
            assert not list(validator.iter_errors(event["data"]["object"])), (event["type"], event["data"])
            for name, value in event["data"]["previous"].items():
                field = {**schema["properties"][name], "$defs": schema.get("$defs", {})}
                assert jsonschema.Draft202012Validator(field).is_valid(value), (event["type"], name, value)
            seen.append((event["type"], sorted(event["data"]["previous"])))
    assert ("contact.updated", ["custom_fields", "external_ids", "tags"]) in seen
    assert {t for t, _ in seen} >= {"contact.created", "activity.updated", "ticket.comment_created"}
    updated = [e for e in await _events(pool, ws, ann_id) if e["type"] == "contact.updated"][-1]
    assert updated["data"]["object"]["tags"] == [] and updated["data"]["previous"]["tags"] == []
    assert updated["data"]["object"]["custom_fields"] == {} == updated["data"]["previous"]["external_ids"]


async def test_contact_erased_is_fanned_out_with_only_the_id(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    s = await _story(api)
    await _ok(await api.post(f"/v1/contacts/{s['ann']['id']}/erase"))
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT e.data FROM webhook_deliveries AS d JOIN events AS e ON e.workspace_id = d.workspace_id "
            "AND e.id = d.event_id WHERE d.workspace_id = $1 AND d.event_type = 'contact.erased'",
            api.workspace_id,  # type: ignore[attr-defined]
        )
    assert len(rows) == 1
    data = rows[0]["data"]
    data = json.loads(data) if isinstance(data, str) else data
    assert data == {"object": {"id": s["ann"]["id"], "object": "contact"}, "previous": {}}


async def test_erased_contact_is_not_findable_and_takes_no_writes(api: httpx.AsyncClient) -> None:
    s = await _story(api)
    ann_id = s["ann"]["id"]
    await _ok(await api.post(f"/v1/contacts/{ann_id}/erase"))
    for params in ({"email": EMAIL}, {"q": "annabel"}, {"include_archived": "true", "q": "annabel"}):
        page = await _ok(await api.get("/v1/contacts", params=params))
        assert page["data"] == [], params
    found = await _ok(
        await api.post(
            "/v1/contacts/search",
            json={"filter": {"field": "email", "op": "eq", "value": EMAIL}},
        )
    )
    assert found["data"] == []
    assert (await api.get("/v1/contacts/by-external-id/shopify/ann-8812")).status_code in (404, 405)
    # restore, update: 409 problem documents; the email is free for a new person
    for call in (
        api.post(f"/v1/contacts/{ann_id}/restore"),
        api.patch(f"/v1/contacts/{ann_id}", json={"first_name": "Back"}),
    ):
        r = await call
        assert r.status_code == 409, r.text
        assert r.headers["content-type"] == "application/problem+json" and r.json()["code"] == "conflict"
    again = await _ok(await api.put(f"/v1/contacts/by-email/{EMAIL}", json={"first_name": "New"}))
    assert again["id"] != ann_id
    timeline = (await _ok(await api.get(f"/v1/contacts/{ann_id}/timeline", params={"limit": 200})))["data"]
    assert not _has_personal(json.dumps(timeline)), json.dumps(timeline, indent=1)


async def test_erasing_twice_is_a_409_and_an_idempotent_retry_replays_the_receipt(
    api: httpx.AsyncClient,
) -> None:
    s = await _story(api)
    path = f"/v1/contacts/{s['ann']['id']}/erase"
    first = await api.post(path, headers={"Idempotency-Key": "erase-ann"})
    assert first.status_code == 200, first.text
    replay = await api.post(path, headers={"Idempotency-Key": "erase-ann"})
    assert replay.status_code == 200 and replay.headers["idempotent-replayed"] == "true"
    assert replay.json() == first.json()
    twice = await api.post(path)
    assert twice.status_code == 409
    assert twice.headers["content-type"] == "application/problem+json"
    assert "already erased" in twice.json()["detail"]


async def test_idempotency_records_lose_the_personal_values(api: httpx.AsyncClient) -> None:
    created = await api.post(
        "/v1/contacts",
        json={"email": "kept@example.com", "first_name": "Kept"},
        headers={"Idempotency-Key": "k1"},
    )
    assert created.status_code == 201
    receipt = await _ok(await api.post(f"/v1/contacts/{created.json()['id']}/erase"))
    assert receipt["counts"]["idempotency_keys"] == 1
    replay = await api.post(
        "/v1/contacts",
        json={"email": "kept@example.com", "first_name": "Kept"},
        headers={"Idempotency-Key": "k1"},
    )
    # still a replay (the create does not run twice), now without the personal values
    assert replay.status_code == 201 and replay.headers["idempotent-replayed"] == "true"
    assert replay.json()["id"] == created.json()["id"]
    assert replay.json()["email"] is None and replay.json()["first_name"] is None


async def test_problems(api: httpx.AsyncClient, make_client: MakeClient) -> None:
    s = await _story(api)
    ann_id = s["ann"]["id"]
    other = await make_client()
    r = await other.post(f"/v1/contacts/{ann_id}/erase")
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    assert (await api.post(f"/v1/contacts/{uuid.uuid4()}/erase")).status_code == 404
    bad = await api.post("/v1/contacts/not-a-uuid/erase")
    assert bad.status_code == 422 and bad.json()["code"] == "validation_error"
    reader = await make_client(scopes=["contacts:read"], workspace=None)
    assert (await reader.post(f"/v1/contacts/{ann_id}/erase")).status_code in (403, 404)
    nobody = httpx.AsyncClient(transport=api._transport, base_url="http://test")  # type: ignore[attr-defined]
    assert (await nobody.post(f"/v1/contacts/{ann_id}/erase")).status_code == 401
    await nobody.aclose()
    # nothing was erased by any of them
    assert (await _ok(await api.get(f"/v1/contacts/{ann_id}")))["email"] == EMAIL


async def test_pending_deliveries_send_the_scrubbed_payload(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    """Delivery bodies are not stored: the dispatcher builds them from ``events.data`` when it sends, so a
    delivery still pending (or retried later) about Ann sends the erased payload."""
    s = await _story(api)
    await _ok(await api.post(f"/v1/contacts/{s['ann']['id']}/erase"))
    jobs = await pool.fetch(
        "SELECT d.workspace_id, e.id AS event_id, e.type, e.created_at, e.sequence, e.data::text AS data "
        "FROM webhook_deliveries AS d JOIN events AS e "
        "ON e.workspace_id = d.workspace_id AND e.id = d.event_id "
        "WHERE d.workspace_id = $1 AND d.status = 'pending'",
        api.workspace_id,  # type: ignore[attr-defined]
    )
    bodies = [body_of(dict(j)).decode() for j in jobs]
    assert len(bodies) >= 10 and any('"type":"contact.created"' in b for b in bodies)
    for body in bodies:
        assert not _has_personal(body), body
        json.loads(body)  # still a valid document


async def test_writes_racing_the_erase_cannot_refill_the_contact(api: httpx.AsyncClient) -> None:
    c = await _ok(await api.post("/v1/contacts", json={"email": "race@example.com", "first_name": "R"}))
    path = f"/v1/contacts/{c['id']}"
    patches = [
        api.patch(path, json={"first_name": f"Racer{i}", "phone": f"+1 555 01{i:02}"}) for i in range(8)
    ]
    results = await asyncio.gather(api.post(f"{path}/erase"), *patches)
    assert results[0].status_code == 200, results[0].text
    # each patch either landed before the erase (and was erased) or met the erased contact (409)
    assert {r.status_code for r in results[1:]} <= {200, 409}
    final = await _ok(await api.get(path))
    assert final["erased_at"] and final["first_name"] is None and final["phone"] is None
