"""Tickets over HTTP: SLA due times, the status machine, pauses, filters, events, errors."""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg
import httpx
from ticket_helpers import WEEKDAYS, events_of, make_policy, make_ticket

from crm_api.tickets import sla


def ts(value: str | None) -> dt.datetime:
    assert value is not None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


async def test_default_policy_sets_due_times_and_reprioritising_recomputes(api: httpx.AsyncClient) -> None:
    policy = await make_policy(api, is_default=True)
    ticket = await make_ticket(api)
    assert ticket["sla_policy_id"] == policy["id"] and ticket["status"] == "new"
    created = ts(ticket["created_at"])
    assert ts(ticket["first_response_due_at"]) == created + dt.timedelta(minutes=60)
    assert ts(ticket["resolution_due_at"]) == created + dt.timedelta(minutes=480)
    r = await api.patch(f"/v1/tickets/{ticket['id']}", json={"priority": "urgent"})
    assert r.status_code == 200, r.text
    assert ts(r.json()["first_response_due_at"]) == created + dt.timedelta(minutes=15)
    assert ts(r.json()["resolution_due_at"]) == created + dt.timedelta(minutes=120)
    r = await api.patch(f"/v1/tickets/{ticket['id']}", json={"sla_policy_id": None})
    assert r.json()["resolution_due_at"] is None and r.json()["first_response_due_at"] is None


async def test_no_policy_no_due_times(api: httpx.AsyncClient) -> None:
    ticket = await make_ticket(api, priority="high")
    assert ticket["sla_policy_id"] is None and ticket["resolution_due_at"] is None


async def test_ticket_takes_its_requesters_company(api: httpx.AsyncClient) -> None:
    acme = (await api.post("/v1/companies", json={"name": "Acme"})).json()
    other = (await api.post("/v1/companies", json={"name": "Other"})).json()
    ann = (await api.post("/v1/contacts", json={"email": "ann@acme.com", "company_id": acme["id"]})).json()
    assert (await make_ticket(api, requester_id=ann["id"]))["company_id"] == acme["id"]
    stated = await make_ticket(api, requester_id=ann["id"], company_id=other["id"])
    assert stated["company_id"] == other["id"]
    r = await api.patch(f"/v1/tickets/{(await make_ticket(api))['id']}", json={"requester_id": ann["id"]})
    assert r.json()["company_id"] == acme["id"]


async def test_business_hours_policy_due_time_is_in_office_hours(api: httpx.AsyncClient) -> None:
    policy = await make_policy(api, hours="business", time_zone="Asia/Tokyo", schedule=WEEKDAYS)
    ticket = await make_ticket(api, sla_policy_id=policy["id"])
    schedule = sla.Schedule.from_json("Asia/Tokyo", WEEKDAYS)
    created = ts(ticket["created_at"])
    assert ts(ticket["first_response_due_at"]) == sla.add_minutes(created, 60, schedule)
    due = ts(ticket["resolution_due_at"]).astimezone(schedule.zone)
    assert due.weekday() < 5 and dt.time(9) < due.time() <= dt.time(17)


async def test_status_machine_stamps_and_events(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    ticket = await make_ticket(api)
    url = f"/v1/tickets/{ticket['id']}"
    for status in ("open", "pending", "on_hold", "solved"):
        r = await api.patch(url, json={"status": status})
        assert r.status_code == 200 and r.json()["status"] == status, r.text
    assert r.json()["solved_at"] is not None
    r = await api.patch(url, json={"status": "open"})
    assert r.json()["solved_at"] is None
    bad = await api.patch(url, json={"status": "closed"})
    assert bad.status_code == 409 and bad.headers["content-type"] == "application/problem+json"
    assert bad.json()["code"] == "invalid_transition" and bad.json()["errors"][0]["path"] == "/status"
    assert (await api.patch(url, json={"status": "new"})).status_code == 409
    await api.patch(url, json={"status": "solved"})
    r = await api.patch(url, json={"status": "closed"})
    assert r.status_code == 200 and r.json()["closed_at"] is not None
    version = r.json()["version"]
    refused = await api.patch(url, json={"status": "open"})
    assert refused.status_code == 409
    assert (await api.get(url)).json()["version"] == version  # nothing written
    changes = await events_of(pool, api, "ticket.status_changed")
    assert [(e["data"]["previous"]["status"], e["data"]["object"]["status"]) for e in changes] == [
        ("new", "open"),
        ("open", "pending"),
        ("pending", "on_hold"),
        ("on_hold", "solved"),
        ("solved", "open"),
        ("open", "solved"),
        ("solved", "closed"),
    ]
    assert len(await events_of(pool, api, "ticket.updated")) == 7


async def test_pause_and_resume_moves_resolution_by_the_paused_time(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    policy = await make_policy(api, hours="business", time_zone="Europe/Berlin", schedule=WEEKDAYS)
    ticket = await make_ticket(api, sla_policy_id=policy["id"], status="open")
    url = f"/v1/tickets/{ticket['id']}"
    paused = (await api.patch(url, json={"status": "pending"})).json()
    assert paused["sla_paused_at"] is not None
    assert paused["resolution_due_at"] == ticket["resolution_due_at"]
    # The pause began last Friday 16:00 Berlin time (as if the ticket had waited since), so it spans an
    # evening, a weekend and whatever part of this week has passed.
    schedule = sla.Schedule.from_json("Europe/Berlin", WEEKDAYS)
    today = dt.datetime.now(schedule.zone)
    friday = (today - dt.timedelta(days=(today.weekday() - 4) % 7 or 7)).replace(
        hour=16, minute=0, second=0, microsecond=0
    )
    await pool.execute(
        "UPDATE tickets SET sla_paused_at = $3 WHERE workspace_id = $1 AND id = $2",
        api.workspace_id,  # type: ignore[attr-defined]
        paused["id"],
        friday,
    )
    before = dt.datetime.now(dt.UTC)
    resumed = (await api.patch(url, json={"status": "open"})).json()
    after = dt.datetime.now(dt.UTC)
    stood = resumed["sla_paused_seconds"]
    assert resumed["sla_paused_at"] is None
    # the paused time is counted in business hours only: between the bounds seen around the request
    low = int(sla.between(friday, before, schedule).total_seconds())
    high = int(sla.between(friday, after, schedule).total_seconds())
    assert low <= stood <= high and stood >= 3600  # at least Friday 16:00-17:00
    expected = sla.add(ts(ticket["resolution_due_at"]), dt.timedelta(seconds=stood), schedule)
    assert ts(resumed["resolution_due_at"]) == expected
    assert ts(resumed["first_response_due_at"]) == ts(ticket["first_response_due_at"])


async def test_list_filters_and_search(api: httpx.AsyncClient, make_client: Any) -> None:
    contact = (await api.post("/v1/contacts", json={"email": "req@x.com"})).json()
    a = await make_ticket(
        api, subject="Login broken", priority="urgent", requester_id=contact["id"], tags=["vip"]
    )
    b = await make_ticket(api, subject="Invoice question", channel="email")
    await api.patch(f"/v1/tickets/{b['id']}", json={"status": "open"})

    async def ids(query: str) -> list[str]:
        r = await api.get(f"/v1/tickets?{query}")
        assert r.status_code == 200, r.text
        return [t["id"] for t in r.json()["data"]]

    assert await ids("priority=urgent") == [a["id"]]
    assert await ids("status=open") == [b["id"]]
    assert await ids("channel=email") == [b["id"]]
    assert await ids(f"requester_id={contact['id']}") == [a["id"]]
    assert await ids("tag=vip") == [a["id"]]
    assert await ids("q=invoice") == [b["id"]]
    assert (await api.get("/v1/tickets?severity=high")).status_code == 422
    flt = {"field": "requester.email", "op": "eq", "value": "req@x.com"}
    r = await api.post("/v1/tickets/search", json={"filter": flt})
    assert [t["id"] for t in r.json()["data"]] == [a["id"]]
    r = await api.post(
        "/v1/tickets/search", json={"filter": {"field": "sla_paused_seconds", "op": "gt", "value": 1}}
    )
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "/filter/field"


async def test_problems_name_the_field(api: httpx.AsyncClient, make_client: Any) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"subject": "x", "priority": "critical"}, "/priority"),
        ({"subject": "x", "status": "done"}, "/status"),
        ({"subject": "x", "channel": "fax"}, "/channel"),
        ({"subject": ""}, "/subject"),
        ({"subject": "x", "first_responded_at": "2026-01-01T00:00:00Z"}, "/first_responded_at"),
        ({"subject": "x", "requester_id": "01a2129e-3853-703c-b7cc-0e63451cccda"}, "/requester_id"),
        ({"subject": "x", "sla_policy_id": "01a2129e-3853-703c-b7cc-0e63451cccda"}, "/sla_policy_id"),
    ]
    for body, path in cases:
        r = await api.post("/v1/tickets", json=body)
        assert r.status_code == 422, (body, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["errors"][0]["path"] == path, (body, r.json())
    # a requester from another workspace is as unknown as a made-up one
    other = await make_client()
    stranger = (await other.post("/v1/contacts", json={"email": "s@x.com"})).json()
    r = await api.post("/v1/tickets", json={"subject": "x", "requester_id": stranger["id"]})
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "/requester_id"
    assert (await api.get("/v1/tickets")).json()["data"] == []


async def test_batch_applies_the_rules_per_item(api: httpx.AsyncClient) -> None:
    policy = await make_policy(api, is_default=True)
    items = [
        {"subject": "one", "external_ids": {"zendesk": "1"}},
        {"subject": "two", "priority": "nope"},
        {"subject": "three", "status": "closed", "external_ids": {"zendesk": "3"}},
    ]
    r = await api.post("/v1/tickets/batch", json={"items": items})
    results = r.json()["results"]
    assert [x["status"] for x in results] == [201, 422, 201]
    assert results[0]["object"]["sla_policy_id"] == policy["id"]
    assert results[0]["object"]["resolution_due_at"] is not None
    assert results[2]["object"]["closed_at"] is not None and results[2]["object"]["solved_at"] is not None
    # upsert: the closed ticket cannot be reopened, the other one moves on, neighbours unaffected
    items = [
        {"subject": "one", "status": "open", "external_ids": {"zendesk": "1"}},
        {"subject": "three", "status": "open", "external_ids": {"zendesk": "3"}},
    ]
    results = (await api.post("/v1/tickets/batch", json={"items": items, "mode": "upsert"})).json()["results"]
    assert [x["status"] for x in results] == [200, 409]
    assert results[1]["error"]["errors"][0]["path"] == "/items/1/status"
    r = await api.put("/v1/tickets/by-external-id/zendesk/9", json={"subject": "nine", "priority": "urgent"})
    assert r.status_code == 201 and r.json()["first_response_due_at"] is not None


async def test_index_behind_every_filter(pool: asyncpg.Pool) -> None:
    """Every /search field, query parameter and sort of the new tables leads an index."""
    from crm_api.tickets.policies import SLA_POLICIES
    from crm_api.tickets.spec import COMMENTS, TICKETS

    rows = await pool.fetch(
        "SELECT tablename, indexdef FROM pg_indexes WHERE tablename = ANY($1::text[])",
        ["tickets", "sla_policies", "ticket_comments"],
    )
    for spec in (TICKETS, SLA_POLICIES, COMMENTS):
        defs = [r["indexdef"] for r in rows if r["tablename"] == spec.table]
        columns = {f.name for f in spec.fields if f.filterable} | {q.column for q in spec.query_params}
        columns |= set(spec.sorts)
        if spec is COMMENTS:  # only ever listed per ticket, and small: the ticket's index is what counts
            columns = {"ticket_id"}
        for column in columns:
            leading = (f"(workspace_id, {column}", f"({column})", f"gin ({column})")
            assert any(any(lead in d for lead in leading) for d in defs), (spec.table, column)
