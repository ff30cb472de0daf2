"""One automation's runs in a batch go set-based (``automations/batch.py``): each run still has its own
outcome, its own events (actor and ``request_id``), and a run that would fail falls the group back to one by
one, so the others succeed and the failed one changes nothing."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx

from crm_api.automations import runner


async def drain(pool: asyncpg.Pool) -> None:
    while await runner.run_once(pool):
        pass


async def _made(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


RULE = {
    "name": "follow up",
    "trigger": {"type": "event", "event_type": "contact.updated"},
    "actions": [
        {"type": "add_tags", "tags": ["x"]},
        {"type": "create_task", "subject": "Follow", "owner_id": "record_owner"},
    ],
}


async def _events_by_run(pool: asyncpg.Pool, ws: Any) -> dict[str, list[tuple[str, str]]]:
    rows = await pool.fetch(
        "SELECT request_id, type, actor FROM events WHERE workspace_id = $1 AND actor LIKE 'automation:%' "
        "ORDER BY sequence",
        ws,
    )
    out: dict[str, list[tuple[str, str]]] = {}
    for r in rows:
        out.setdefault(r["request_id"], []).append((r["type"], r["actor"]))
    return out


async def test_a_batch_of_runs_keeps_each_runs_outcome_and_events(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    ws = api.workspace_id  # type: ignore[attr-defined]
    contacts = [await _made(await api.post("/v1/contacts", json={"email": f"b{i}@x.com"})) for i in range(6)]
    rule = await _made(await api.post("/v1/automations", json=RULE))
    for c in contacts:
        await api.patch(f"/v1/contacts/{c['id']}", json={"first_name": "B"})
    await drain(pool)
    runs = (await api.get(f"/v1/automations/{rule['id']}/runs")).json()["data"]
    assert sorted(r["object_id"] for r in runs) == sorted(c["id"] for c in contacts)
    assert {r["status"] for r in runs} == {"succeeded"}
    assert len({r["created_at"] for r in runs}) == 1  # one group, written together
    by_run = await _events_by_run(pool, ws)
    actor = f"automation:{rule['id']}"
    for run in runs:
        assert by_run[f"automation-run:{run['id']}:1"] == [
            ("contact.updated", actor),
            ("activity.created", actor),
        ]
        task = run["actions"][1]
        assert task["object_type"] == "activity" and task["changes"]["contact_ids"] == [run["object_id"]]
    assert len(by_run) == len(runs)
    tagged = await pool.fetchval("SELECT count(*) FROM contacts WHERE workspace_id = $1 AND tags = '{x}'", ws)
    assert tagged == 6


async def test_a_run_that_would_fail_falls_its_group_back_and_fails_alone(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    ws = api.workspace_id  # type: ignore[attr-defined]
    on = await _made(await api.post("/v1/members", json={"email": "on@x.com", "name": "On"}))
    off = await _made(await api.post("/v1/members", json={"email": "off@x.com", "name": "Off"}))
    a = await _made(await api.post("/v1/contacts", json={"email": "a@x.com", "owner_id": on["id"]}))
    b = await _made(await api.post("/v1/contacts", json={"email": "b@x.com", "owner_id": off["id"]}))
    c = await _made(await api.post("/v1/contacts", json={"email": "c@x.com"}))
    await api.patch(f"/v1/members/{off['id']}", json={"active": False})  # b's task would name them
    rule = await _made(await api.post("/v1/automations", json=RULE))
    for contact in (a, b, c):
        await api.patch(f"/v1/contacts/{contact['id']}", json={"first_name": "N"})
    await drain(pool)
    runs = {r["object_id"]: r for r in (await api.get(f"/v1/automations/{rule['id']}/runs")).json()["data"]}
    assert {k: r["status"] for k, r in runs.items()} == {
        a["id"]: "succeeded",
        b["id"]: "failed",
        c["id"]: "succeeded",
    }
    assert "owner_id" in runs[b["id"]]["error"] and runs[b["id"]]["actions"] == []
    tags = {
        str(r["id"]): r["tags"]
        for r in await pool.fetch("SELECT id, tags FROM contacts WHERE workspace_id = $1", ws)
    }
    assert (tags[a["id"]], tags[b["id"]], tags[c["id"]]) == (["x"], [], ["x"])
    tasks = await pool.fetch(
        "SELECT owner_id, contact_ids FROM activities WHERE workspace_id = $1 ORDER BY created_at", ws
    )
    assert sorted((str(t["contact_ids"][0]), t["owner_id"]) for t in tasks) == sorted(
        [(a["id"], uuid.UUID(on["id"])), (c["id"], None)]
    )
    by_run = await _events_by_run(pool, ws)
    assert len(by_run[f"automation-run:{runs[a['id']]['id']}:1"]) == 2
    assert f"automation-run:{runs[b['id']]['id']}:1" in by_run  # its automation.run_failed event only
    assert [t for t, _ in by_run[f"automation-run:{runs[b['id']]['id']}:1"]] == ["automation.run_failed"]


async def test_a_batch_of_segment_actions_is_one_membership_change_with_each_runs_event(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    ws = api.workspace_id  # type: ignore[attr-defined]
    segment = await _made(
        await api.post("/v1/segments", json={"name": "S", "object_type": "contact", "kind": "static"})
    )
    contacts = [await _made(await api.post("/v1/contacts", json={"email": f"s{i}@x.com"})) for i in range(4)]
    r = await api.post(f"/v1/segments/{segment['id']}/members", json={"ids": [contacts[0]["id"]]})
    assert r.status_code == 200, r.text
    rule = await _made(
        await api.post(
            "/v1/automations",
            json={
                "name": "join",
                "trigger": {"type": "event", "event_type": "contact.updated"},
                "actions": [{"type": "add_to_segment", "segment_id": segment["id"]}],
            },
        )
    )
    for c in contacts:
        await api.patch(f"/v1/contacts/{c['id']}", json={"first_name": "S"})
    await drain(pool)
    runs = {r["object_id"]: r for r in (await api.get(f"/v1/automations/{rule['id']}/runs")).json()["data"]}
    assert len({r["created_at"] for r in runs.values()}) == 1  # one group
    assert [runs[c["id"]]["actions"][0]["changes"] for c in contacts] == [{}] + [
        {"members_added": [c["id"]]} for c in contacts[1:]
    ]
    assert (await api.get(f"/v1/segments/{segment['id']}")).json()["member_count"] == 4
    by_run = await _events_by_run(pool, ws)
    assert f"automation-run:{runs[contacts[0]['id']]['id']}:1" not in by_run  # already a member: no event
    for c in contacts[1:]:
        assert by_run[f"automation-run:{runs[c['id']]['id']}:1"] == [
            ("segment.member_added", f"automation:{rule['id']}")
        ]
