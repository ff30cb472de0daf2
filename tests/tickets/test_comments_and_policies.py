"""Ticket comments (first response), SLA policies (validation, one default), tenancy on every new route."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import httpx
from ticket_helpers import WEEKDAYS, events_of, make_policy, make_ticket


async def test_first_public_agent_comment_sets_first_responded_at_once(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    contact = (await api.post("/v1/contacts", json={"email": "c@x.com"})).json()
    ticket = await make_ticket(api, requester_id=contact["id"])
    url = f"/v1/tickets/{ticket['id']}/comments"
    # neither an internal note nor the requester's own message is a response
    r = await api.post(url, json={"body": "note to self", "public": False})
    assert r.status_code == 201 and r.json()["api_key_id"] is not None
    r = await api.post(url, json={"body": "any news?", "author_type": "requester"})
    assert r.status_code == 201 and r.json()["author_id"] == contact["id"]
    assert (await api.get(f"/v1/tickets/{ticket['id']}")).json()["first_responded_at"] is None
    first = await api.post(url, json={"body": "On it", "author_id": "01a2129e-3853-703c-b7cc-0e63451cccda"})
    assert first.status_code == 201
    got = (await api.get(f"/v1/tickets/{ticket['id']}")).json()
    assert got["first_responded_at"] == first.json()["created_at"] and got["version"] == 2
    await api.post(url, json={"body": "Fixed"})
    again = (await api.get(f"/v1/tickets/{ticket['id']}")).json()
    assert again["first_responded_at"] == got["first_responded_at"] and again["version"] == 2
    updates = await events_of(pool, api, "ticket.updated")
    assert [list(e["data"]["previous"]) for e in updates] == [["first_responded_at"]]
    created = await events_of(pool, api, "ticket.comment_created")
    assert [e["data"]["object"]["body"] for e in created] == ["note to self", "any news?", "On it", "Fixed"]
    page = (await api.get(f"{url}?sort=created_at&public=true&limit=2")).json()
    assert [c["body"] for c in page["data"]] == ["any news?", "On it"] and page["has_more"]
    rest = (await api.get(f"{url}?sort=created_at&public=true&cursor={page['next_cursor']}")).json()
    assert [c["body"] for c in rest["data"]] == ["Fixed"]
    assert [c["body"] for c in (await api.get(f"{url}?author_type=requester")).json()["data"]] == [
        "any news?"
    ]


async def test_racing_first_replies_stamp_the_ticket_once(
    make_client: Any, pool: asyncpg.Pool, api: httpx.AsyncClient
) -> None:
    ticket = await make_ticket(api)
    url = f"/v1/tickets/{ticket['id']}/comments"
    replies = await asyncio.gather(*(api.post(url, json={"body": f"reply {n}"}) for n in range(5)))
    assert [r.status_code for r in replies] == [201] * 5
    assert len(await events_of(pool, api, "ticket.updated")) == 1
    got = (await api.get(f"/v1/tickets/{ticket['id']}")).json()
    assert got["first_responded_at"] == min(r.json()["created_at"] for r in replies)


async def test_comment_rules_and_idempotency(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    ticket = await make_ticket(api)
    url = f"/v1/tickets/{ticket['id']}/comments"
    r = await api.post(url, json={"body": "hello", "author_type": "requester"})
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "/author_type"
    assert (await api.post(url, json={"body": ""})).json()["errors"][0]["path"] == "/body"
    assert (await api.post(url, json={"body": "x", "visibility": "all"})).status_code == 422
    headers = {"Idempotency-Key": "comment-1"}
    first = await api.post(url, json={"body": "once"}, headers=headers)
    replay = await api.post(url, json={"body": "once"}, headers=headers)
    assert replay.headers.get("idempotent-replayed") == "true" and replay.json() == first.json()
    assert (await api.post(url, json={"body": "twice"}, headers=headers)).status_code == 422
    assert len(await events_of(pool, api, "ticket.comment_created")) == 1
    tid = ticket["id"]
    for status in ("solved", "closed"):
        await api.patch(f"/v1/tickets/{tid}", json={"status": status})
    r = await api.post(url, json={"body": "too late"})
    assert r.status_code == 409 and r.headers["content-type"] == "application/problem+json"
    missing = "/v1/tickets/01a2129e-3853-703c-b7cc-0e63451cccda/comments"
    assert (await api.post(missing, json={"body": "x"})).status_code == 404
    assert (await api.get(missing)).status_code == 404


async def test_policy_validation_problems(api: httpx.AsyncClient) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"time_zone": "Mars/Olympus"}, "/time_zone"),
        ({"hours": "business"}, "/schedule"),
        ({"hours": "sometimes"}, "/hours"),
        ({"schedule": {"funday": []}}, "/schedule/funday"),
        ({"schedule": {"mon": [{"start": "17:00", "end": "09:00"}]}}, "/schedule/mon/0"),
        ({"schedule": {"mon": [{"start": "9am", "end": "17:00"}]}}, "/schedule/mon/0/start"),
        (
            {"schedule": {"mon": [{"start": "09:00", "end": "13:00"}, {"start": "12:00", "end": "17:00"}]}},
            "/schedule/mon",
        ),
        ({"targets": {"critical": {"resolution_minutes": 5}}}, "/targets/critical"),
        ({"targets": {"low": {"resolution_minutes": 0}}}, "/targets/low/resolution_minutes"),
        ({"targets": {"low": {"resolution_hours": 5}}}, "/targets/low/resolution_hours"),
        (
            {
                "hours": "business",
                "schedule": {"sat": [{"start": "10:00", "end": "11:00"}]},
                "targets": {"low": {"first_response_minutes": 30, "resolution_minutes": 60 * 52 + 1}},
            },
            "/targets/low/resolution_minutes",
        ),
    ]
    for over, path in cases:
        r = await api.post("/v1/sla-policies", json={"name": "P", **over})
        assert r.status_code == 422, (over, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["errors"][0]["path"] == path, (over, r.json())
    calendar = await make_policy(api)
    r = await api.patch(f"/v1/sla-policies/{calendar['id']}", json={"hours": "business"})
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "/schedule"
    r = await api.patch(
        f"/v1/sla-policies/{calendar['id']}", json={"hours": "business", "schedule": WEEKDAYS}
    )
    assert r.status_code == 200 and r.json()["hours"] == "business"
    assert r.headers["etag"] == '"2"'
    assert (
        await api.patch(f"/v1/sla-policies/{calendar['id']}", json={"time_zone": None})
    ).status_code == 422


async def test_one_default_policy_per_workspace(api: httpx.AsyncClient) -> None:
    first = await make_policy(api, is_default=True)
    r = await api.post("/v1/sla-policies", json={"name": "Second", "is_default": True})
    assert r.status_code == 409 and r.json()["errors"][0]["path"] == "/is_default"
    second = await make_policy(api, name="Second")
    r = await api.patch(f"/v1/sla-policies/{second['id']}", json={"is_default": True})
    assert r.status_code == 409
    assert (await api.patch(f"/v1/sla-policies/{first['id']}", json={"is_default": False})).status_code == 200
    assert (await api.patch(f"/v1/sla-policies/{second['id']}", json={"is_default": True})).status_code == 200
    listed = (await api.get("/v1/sla-policies?is_default=true")).json()["data"]
    assert [p["id"] for p in listed] == [second["id"]]
    created = await api.post("/v1/sla-policies", headers={"Idempotency-Key": "k"}, json={"name": "Third"})
    assert created.headers["location"] == f"/v1/sla-policies/{created.json()['id']}"


async def test_other_workspaces_get_404_on_every_new_route(api: httpx.AsyncClient, make_client: Any) -> None:
    policy = await make_policy(api)
    ticket = await make_ticket(api, sla_policy_id=policy["id"])
    other = await make_client()
    t, p = f"/v1/tickets/{ticket['id']}", f"/v1/sla-policies/{policy['id']}"
    calls = [
        other.get(t),
        other.patch(t, json={"status": "open"}),
        other.delete(t),
        other.post(f"{t}/restore"),
        other.get(f"{t}/comments"),
        other.post(f"{t}/comments", json={"body": "hi"}),
        other.get(p),
        other.patch(p, json={"name": "x"}),
        other.delete(p),
        other.post(f"{p}/restore"),
    ]
    for response in await asyncio.gather(*calls):
        assert response.status_code == 404, (response.request.url, response.text)
        assert response.json()["code"] == "not_found"
    r = await other.post("/v1/tickets", json={"subject": "x", "sla_policy_id": policy["id"]})
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "/sla_policy_id"
    assert (await other.get("/v1/tickets")).json()["data"] == []
    assert (await other.get("/v1/sla-policies")).json()["data"] == []
    assert (await api.get(t)).json()["version"] == 1


async def test_scopes(make_client: Any, api: httpx.AsyncClient) -> None:
    ticket = await make_ticket(api)
    reader = await make_client(scopes=["tickets:read"])
    assert (await reader.get("/v1/tickets")).status_code == 200
    assert (await reader.post("/v1/tickets", json={"subject": "x"})).status_code == 403
    assert (await reader.get("/v1/sla-policies")).status_code == 403
    assert (await reader.post(f"/v1/tickets/{ticket['id']}/comments", json={"body": "x"})).status_code == 403
