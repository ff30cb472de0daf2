"""Automations: the shared resource contract, checks on save naming the field, and runs made by the
workers' own loop (run in-process here; tests/automations/test_automations_workers.py runs real worker
processes): once per event, the loop and depth rules, failed runs, and the test route."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import asyncpg
import httpx

from crm_api.automations import runner


async def drain(pool: asyncpg.Pool) -> None:
    """What the workers do, until every workspace's cursor is at the end of its log."""
    while await runner.run_once(pool):
        pass


async def _member(api: httpx.AsyncClient, email: str) -> dict[str, Any]:
    r = await api.post("/v1/members", json={"email": email, "name": email.split("@")[0]})
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


async def _automation(api: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    r = await api.post("/v1/automations", json={"name": "rule", **body})
    assert r.status_code == 201, r.text
    made: dict[str, Any] = r.json()
    return made


def _field(r: httpx.Response, path: str) -> None:
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert path in [e["path"] for e in r.json()["errors"]], r.text


async def _runs(api: httpx.AsyncClient, automation_id: str) -> list[dict[str, Any]]:
    r = await api.get(f"/v1/automations/{automation_id}/runs")
    assert r.status_code == 200, r.text
    runs: list[dict[str, Any]] = r.json()["data"]
    return runs


LEADS = {"field": "lifecycle_stage", "op": "eq", "value": "lead"}


async def test_saving_checks_the_trigger_and_each_action(api: httpx.AsyncClient) -> None:
    on_contacts = {"type": "event", "event_type": "contact.created"}
    tag = {"type": "add_tags", "tags": ["x"]}
    _field(
        await api.post(
            "/v1/automations",
            json={"name": "r", "trigger": {**on_contacts, "event_type": "webhook.test"}, "actions": [tag]},
        ),
        "/trigger/event/event_type",  # the discriminated union names the trigger's type in the path
    )
    bad_filter = {**on_contacts, "filter": {"field": "nope", "op": "eq", "value": 1}}
    r = await api.post("/v1/automations", json={"name": "r", "trigger": bad_filter, "actions": [tag]})
    assert r.status_code == 422 and r.json()["errors"][0]["path"].startswith("/trigger/filter"), r.text
    bad_fields = {"type": "set_fields", "fields": {"lifecycle_stage": "royalty"}}
    r = await api.post(
        "/v1/automations", json={"name": "r", "trigger": on_contacts, "actions": [tag, bad_fields]}
    )
    _field(r, "/actions/1/fields/lifecycle_stage")
    nobody = {"type": "assign_owner", "member_id": str(uuid.uuid4())}
    _field(
        await api.post("/v1/automations", json={"name": "r", "trigger": on_contacts, "actions": [nobody]}),
        "/actions/0/member_id",
    )
    both = {"type": "assign_owner", "member_id": str(uuid.uuid4()), "team_id": str(uuid.uuid4())}
    _field(
        await api.post("/v1/automations", json={"name": "r", "trigger": on_contacts, "actions": [both]}),
        "/actions/0/member_id",
    )
    no_team = {"type": "assign_owner", "team_id": str(uuid.uuid4())}
    _field(
        await api.post("/v1/automations", json={"name": "r", "trigger": on_contacts, "actions": [no_team]}),
        "/actions/0/team_id",
    )
    on_activities = {"type": "event", "event_type": "activity.created"}
    note = {"type": "create_note", "body": "hi"}
    _field(
        await api.post("/v1/automations", json={"name": "r", "trigger": on_activities, "actions": [note]}),
        "/actions/0/type",
    )
    # nothing of the refused ones was written; the contract holds for a valid one
    assert (await api.get("/v1/automations")).json()["data"] == []
    made = await _automation(api, trigger=on_contacts, actions=[tag])
    assert made["object"] == "automation" and made["enabled"] is True and made["trigger"]["filter"] is None
    r = await api.patch(f"/v1/automations/{made['id']}", json={"enabled": False}, headers={"If-Match": '"1"'})
    assert r.status_code == 200 and r.json()["enabled"] is False, r.text
    assert [
        a["id"] for a in (await api.get("/v1/automations", params={"enabled": "false"})).json()["data"]
    ] == [made["id"]]


async def test_a_trigger_runs_its_actions_once_through_the_write_path(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    ann = await _member(api, "ann@example.com")
    rule = await _automation(
        api,
        trigger={"type": "event", "event_type": "contact.created", "filter": LEADS},
        actions=[
            {"type": "add_tags", "tags": ["new-lead"]},
            {"type": "assign_owner", "member_id": ann["id"]},
            {"type": "create_task", "subject": "Call them", "due_in_days": 2},
        ],
    )
    lead = (await api.post("/v1/contacts", json={"email": "l@x.com", "lifecycle_stage": "lead"})).json()
    other = (await api.post("/v1/contacts", json={"email": "c@x.com", "lifecycle_stage": "customer"})).json()
    await drain(pool)
    await drain(pool)  # nothing more: the cursor moved past every event
    got = (await api.get(f"/v1/contacts/{lead['id']}")).json()
    assert (got["tags"], got["owner_id"]) == (["new-lead"], ann["id"])
    assert (await api.get(f"/v1/contacts/{other['id']}")).json()["tags"] == []
    tasks = (await api.get("/v1/activities", params={"type": "task"})).json()["data"]
    assert [(t["subject"], t["owner_id"], t["contact_ids"]) for t in tasks] == [
        ("Call them", ann["id"], [lead["id"]])
    ]
    runs = await _runs(api, rule["id"])
    assert [(r["status"], r["object_id"], r["depth"]) for r in runs] == [("succeeded", lead["id"], 1)]
    assert [a["type"] for a in runs[0]["actions"]] == ["add_tags", "assign_owner", "create_task"]
    assert runs[0]["actions"][2]["object_id"] == tasks[0]["id"]
    # the writes went through the pipeline: their events name the automation
    ws = api.workspace_id  # type: ignore[attr-defined]
    actors = await pool.fetch(
        "SELECT type, actor FROM events WHERE workspace_id = $1 AND actor LIKE 'automation:%' "
        "ORDER BY sequence",
        ws,
    )
    assert [(e["type"], e["actor"]) for e in actors] == [
        ("contact.updated", f"automation:{rule['id']}"),
        ("contact.updated", f"automation:{rule['id']}"),
        ("activity.created", f"automation:{rule['id']}"),
    ]


async def test_an_automation_is_not_triggered_by_its_own_changes_and_chains_stop_at_depth_3(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    # each tags the contact on any update: a loop if its own change triggered it
    updated = {"type": "event", "event_type": "contact.updated"}
    loop = await _automation(api, trigger=updated, actions=[{"type": "add_tags", "tags": ["looped"]}])
    contact = (await api.post("/v1/contacts", json={"email": "a@x.com"})).json()
    await api.patch(f"/v1/contacts/{contact['id']}", json={"first_name": "A"})
    await drain(pool)
    assert len(await _runs(api, loop["id"])) == 1
    await api.patch(f"/v1/automations/{loop['id']}", json={"enabled": False})

    # a chain: one -> two -> three -> four, each triggered by the tag the one before adds
    def on(tag: str | None, adds: str) -> dict[str, Any]:
        filter = (
            {"field": "tags", "op": "contains", "value": tag}
            if tag
            else {"field": "email", "op": "eq", "value": "b@x.com"}
        )
        return {
            "trigger": {"type": "event", "event_type": "contact.updated", "filter": filter},
            "actions": [{"type": "add_tags", "tags": [adds]}],
        }

    chain = [
        await _automation(api, **on(None, "one")),
        await _automation(api, **on("one", "two")),
        await _automation(api, **on("two", "three")),
        await _automation(api, **on("three", "four")),
    ]
    b = (await api.post("/v1/contacts", json={"email": "b@x.com"})).json()
    await api.patch(f"/v1/contacts/{b['id']}", json={"first_name": "B"})
    await drain(pool)
    got = (await api.get(f"/v1/contacts/{b['id']}")).json()
    assert got["tags"] == ["one", "two", "three"]
    # one, two and three ran at depths 1, 2 and 3 (and were triggered again by the later links' changes)
    assert ("succeeded", 1) in [(r["status"], r["depth"]) for r in await _runs(api, chain[0]["id"])]
    assert ("succeeded", 2) in [(r["status"], r["depth"]) for r in await _runs(api, chain[1]["id"])]
    assert ("succeeded", 3) in [(r["status"], r["depth"]) for r in await _runs(api, chain[2]["id"])]
    fourth = await _runs(api, chain[3]["id"])
    assert [(r["status"], r["depth"]) for r in fourth] == [("stopped", 4)]
    assert "depth 3" in fourth[0]["error"] and fourth[0]["actions"] == []


async def test_a_refused_action_fails_the_run_whole_with_an_event(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    bob = await _member(api, "bob@example.com")
    rule = await _automation(
        api,
        trigger={"type": "event", "event_type": "contact.created"},
        actions=[{"type": "add_tags", "tags": ["seen"]}, {"type": "assign_owner", "member_id": bob["id"]}],
    )
    await api.patch(f"/v1/members/{bob['id']}", json={"active": False})  # now the second action is refused
    contact = (await api.post("/v1/contacts", json={"email": "f@x.com"})).json()
    await drain(pool)
    assert (await api.get(f"/v1/contacts/{contact['id']}")).json()["tags"] == []  # the first did not stick
    runs = await _runs(api, rule["id"])
    assert [r["status"] for r in runs] == ["failed"] and "owner_id" in runs[0]["error"], runs
    events = (await api.get("/v1/events", params={"type": "automation.run_failed"})).json()["data"]
    assert [(e["object_id"], e["data"]["run"]["id"]) for e in events] == [(rule["id"], runs[0]["id"])]


async def test_the_test_route_says_what_would_change_and_changes_nothing(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    rule = await _automation(
        api,
        trigger={"type": "event", "event_type": "contact.updated", "filter": LEADS},
        actions=[
            {"type": "set_fields", "fields": {"lifecycle_stage": "opportunity"}},
            {"type": "add_tags", "tags": ["hot"]},
            {"type": "create_note", "body": "Promoted"},
        ],
    )
    contact = (await api.post("/v1/contacts", json={"email": "t@x.com", "lifecycle_stage": "lead"})).json()
    before = await pool.fetchval("SELECT count(*) FROM events WHERE workspace_id = $1", api.workspace_id)  # type: ignore[attr-defined]
    r = await api.post(f"/v1/automations/{rule['id']}/test", json={"object_id": contact["id"]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["matches"] is True
    assert [(a["type"], a["changes"]) for a in body["actions"][:2]] == [
        ("set_fields", {"lifecycle_stage": "opportunity"}),
        ("add_tags", {"tags": ["hot"]}),
    ]
    assert body["actions"][2]["object_type"] == "activity" and body["actions"][2]["object_id"] is None
    assert body["actions"][2]["changes"]["body"] == "Promoted"
    got = (await api.get(f"/v1/contacts/{contact['id']}")).json()
    assert (got["lifecycle_stage"], got["tags"], got["version"]) == ("lead", [], 1)
    assert (await api.get("/v1/activities")).json()["data"] == []
    after = await pool.fetchval("SELECT count(*) FROM events WHERE workspace_id = $1", api.workspace_id)  # type: ignore[attr-defined]
    assert after == before
    _field(
        await api.post(f"/v1/automations/{rule['id']}/test", json={"object_id": str(uuid.uuid4())}),
        "/object_id",
    )


async def test_least_open_gives_a_new_deal_to_the_member_with_fewest_open_deals(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    busy, free = await _member(api, "busy@example.com"), await _member(api, "free@example.com")
    team = (await api.post("/v1/teams", json={"name": "AE", "member_ids": [busy["id"], free["id"]]})).json()
    for i in range(2):
        r = await api.post("/v1/deals", json={"name": f"Old {i}", "owner_id": busy["id"]})
        assert r.status_code == 201, r.text
    rule = await _automation(
        api,
        trigger={"type": "event", "event_type": "deal.created"},
        actions=[{"type": "assign_owner", "team_id": team["id"], "strategy": "least_open"}],
    )
    made = []
    for i in range(3):
        made.append((await api.post("/v1/deals", json={"name": f"New {i}"})).json()["id"])
        await drain(pool)  # one at a time: each pick sees the one before
    owners = [(await api.get(f"/v1/deals/{d}")).json()["owner_id"] for d in made]
    # free has 0 open deals against 2, then 1 against 2, then 2 against 2 (a tie: the team's first)
    assert owners == [free["id"], free["id"], busy["id"]]
    assert [r["status"] for r in await _runs(api, rule["id"])] == ["succeeded"] * 3


async def test_a_schedule_acts_once_per_record_per_match_on_an_injected_clock(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    rule = await _automation(
        api,
        trigger={
            "type": "schedule",
            "object_type": "contact",
            "filter": LEADS,
            "not_updated_for_days": 14,
            "interval_minutes": 60,
        },
        actions=[{"type": "add_tags", "tags": ["stale"]}],
    )
    leads = [
        (await api.post("/v1/contacts", json={"email": f"s{i}@x.com", "lifecycle_stage": "lead"})).json()
        for i in range(2)
    ]
    customer = (
        await api.post("/v1/contacts", json={"email": "c@x.com", "lifecycle_stage": "customer"})
    ).json()

    async def check(days: float) -> None:
        now = dt.datetime.now(dt.UTC) + dt.timedelta(days=days)
        while await runner.run_schedules_once(pool, now):
            pass

    async def tags(contact: dict[str, Any]) -> list[str]:
        got: list[str] = (await api.get(f"/v1/contacts/{contact['id']}")).json()["tags"]
        return got

    await check(0)  # nothing is 14 days old yet
    assert await _runs(api, rule["id"]) == []
    await check(15)  # now both leads are
    assert [await tags(c) for c in (*leads, customer)] == [["stale"], ["stale"], []]
    await check(15.1)  # within the interval: not checked
    await check(16)  # checked, and they still match: the same match, no second run
    runs = await _runs(api, rule["id"])
    assert sorted(r["object_id"] for r in runs) == sorted(c["id"] for c in leads)
    assert {(r["event_type"], r["status"]) for r in runs} == {("schedule", "succeeded")}
    r = await api.post(
        "/v1/automations",
        json={"name": "x", "trigger": {"type": "schedule", "object_type": "pipeline"}, "actions": []},
    )
    _field(r, "/trigger/schedule/object_type")
