"""Field history from the event log: old and new values per field, newest first, paged, filtered."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from clients import MakeClient


async def _ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code in (200, 201), response.text
    body: dict[str, Any] = response.json()
    return body


async def _all(api: httpx.AsyncClient, path: str, **params: Any) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    cursor = None
    for _ in range(100):  # bounded: a cursor that does not advance must fail, not hang
        page = await _ok(await api.get(path, params={**params, **({"cursor": cursor} if cursor else {})}))
        entries += page["data"]
        if not page["has_more"]:
            assert page["next_cursor"] is None
            return entries
        cursor = page["next_cursor"]
    raise AssertionError("still paging after 100 pages")


async def test_contact_history_lists_every_change_newest_first(api: httpx.AsyncClient) -> None:
    c = await _ok(await api.post("/v1/contacts", json={"email": "h@example.com", "first_name": "Hal"}))
    path = f"/v1/contacts/{c['id']}"
    await _ok(
        await api.patch(path, json={"first_name": "Hale", "title": "CFO"}, headers={"X-Request-ID": "r-2"})
    )
    await _ok(await api.patch(path, json={"title": None}))
    await _ok(await api.delete(path))
    entries = await _all(api, f"{path}/history")
    got = [(e["event_type"], e["field"], e["old_value"], e["new_value"]) for e in entries]
    archived = entries[0]["new_value"]
    assert got == [
        ("contact.archived", "archived_at", None, archived),
        ("contact.updated", "title", "CFO", None),
        ("contact.updated", "first_name", "Hal", "Hale"),
        ("contact.updated", "title", None, "CFO"),
        ("contact.created", "email", None, "h@example.com"),
        ("contact.created", "first_name", None, "Hal"),
        ("contact.created", "marketing_consent", None, False),
        ("contact.created", "order_count", None, 0),
        ("contact.created", "score", None, 0),
    ]
    second = entries[2]
    assert second["request_id"] == "r-2" and second["actor"].startswith("api_key:")
    assert second["object"] == "field_change" and second["at"] and uuid.UUID(second["event_id"])
    sequences = [e["sequence"] for e in entries]
    assert sequences == sorted(sequences, reverse=True)


async def test_field_filter_and_paging(api: httpx.AsyncClient) -> None:
    c = await _ok(await api.post("/v1/contacts", json={"email": "p@example.com", "title": "t0"}))
    path = f"/v1/contacts/{c['id']}"
    for i in range(1, 6):
        await _ok(await api.patch(path, json={"title": f"t{i}", "phone": f"+1 555 000{i}"}))
    whole = (await _ok(await api.get(f"{path}/history", params={"limit": 200})))["data"]
    paged = await _all(api, f"{path}/history", limit=3)  # pages cut between fields of one event too
    assert [(e["event_id"], e["field"]) for e in paged] == [(e["event_id"], e["field"]) for e in whole]
    assert len(whole) == 5 * 2 + 5  # created: email, title, marketing_consent, order_count, score
    titles = await _all(api, f"{path}/history", field="title", limit=2)
    assert [(e["old_value"], e["new_value"]) for e in titles] == [
        ("t4", "t5"), ("t3", "t4"), ("t2", "t3"), ("t1", "t2"), ("t0", "t1"), (None, "t0"),
    ]  # fmt: skip
    assert await _all(api, f"{path}/history", field="last_name") == []


async def test_deal_history_shows_a_stage_move_once(api: httpx.AsyncClient) -> None:
    deal = await _ok(await api.post("/v1/deals", json={"name": "D", "amount": "10.00", "currency": "EUR"}))
    pipeline = await _ok(await api.get(f"/v1/pipelines/{deal['pipeline_id']}"))
    won = next(s for s in pipeline["stages"] if s["kind"] == "won")
    await _ok(await api.patch(f"/v1/deals/{deal['id']}", json={"stage_id": won["id"], "amount": "12.50"}))
    entries = await _all(api, f"/v1/deals/{deal['id']}/history")
    latest = [e for e in entries if e["event_type"] != "deal.created"]
    by_field = {e["field"]: e for e in latest}
    assert len(latest) == len(by_field)  # deal.won and deal.stage_changed do not repeat it
    assert by_field["stage_id"]["old_value"] == deal["stage_id"]
    assert by_field["stage_id"]["new_value"] == won["id"]
    assert by_field["amount"]["old_value"] == "10.00" and by_field["amount"]["new_value"] == "12.50"
    assert {e["event_type"] for e in latest} == {"deal.updated"}


async def test_every_resource_has_history(api: httpx.AsyncClient) -> None:
    company = await _ok(await api.post("/v1/companies", json={"name": "Acme"}))
    await _ok(await api.patch(f"/v1/companies/{company['id']}", json={"industry": "Tools"}))
    contact = await _ok(await api.post("/v1/contacts", json={"email": "t@example.com"}))
    ticket = await _ok(
        await api.post("/v1/tickets", json={"subject": "Login", "requester_id": contact["id"]})
    )
    await _ok(await api.patch(f"/v1/tickets/{ticket['id']}", json={"status": "open"}))
    activity = await _ok(await api.post("/v1/activities", json={"type": "task", "subject": "Call"}))
    await _ok(await api.patch(f"/v1/activities/{activity['id']}", json={"subject": "Call back"}))
    for path, field, old, new in (
        (f"/v1/companies/{company['id']}", "industry", None, "Tools"),
        (f"/v1/tickets/{ticket['id']}", "status", "new", "open"),
        (f"/v1/activities/{activity['id']}", "subject", "Call", "Call back"),
    ):
        entries = await _all(api, f"{path}/history", field=field)
        assert (entries[0]["old_value"], entries[0]["new_value"]) == (old, new), path
        assert entries[0]["event_type"].endswith(".updated")


async def test_history_after_erase_holds_no_personal_values(api: httpx.AsyncClient) -> None:
    c = await _ok(await api.post("/v1/contacts", json={"email": "gone@example.com", "first_name": "Gus"}))
    await _ok(await api.patch(f"/v1/contacts/{c['id']}", json={"first_name": "Gustav"}))
    await _ok(await api.post(f"/v1/contacts/{c['id']}/erase"))
    entries = await _all(api, f"/v1/contacts/{c['id']}/history")
    assert "gone@example.com" not in str(entries) and "Gus" not in str(entries)
    names = [e for e in entries if e["field"] == "first_name"]
    assert [(e["old_value"], e["new_value"]) for e in names] == [
        (None, None)
    ]  # the update; the create was null
    # contact.erased carries no fields, so it adds no entry
    assert {e["event_type"] for e in entries} == {"contact.updated", "contact.created"}


async def test_problems(api: httpx.AsyncClient, make_client: MakeClient) -> None:
    c = await _ok(await api.post("/v1/contacts", json={"email": "x@example.com"}))
    path = f"/v1/contacts/{c['id']}/history"
    other = await make_client()
    r = await other.get(path)
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    assert (await api.get(f"/v1/contacts/{uuid.uuid4()}/history")).status_code == 404
    assert (await api.get(f"/v1/deals/{c['id']}/history")).status_code == 404  # a contact is not a deal
    for params, where in (
        ({"field": "nope"}, "/query/field"),
        ({"limit": "0"}, "/query/limit"),
        ({"limit": "201"}, "/query/limit"),
    ):
        r = await api.get(path, params=params)
        assert r.status_code == 422, params
        assert r.json()["errors"][0]["path"] == where
    r = await api.get(path, params={"cursor": "garbage"})
    assert r.status_code == 400 and r.json()["code"] == "invalid_cursor"
    assert (await api.get("/v1/contacts/not-a-uuid/history")).status_code == 422
    reader = await make_client(scopes=["companies:read"])
    assert (await reader.get(path)).status_code == 403
