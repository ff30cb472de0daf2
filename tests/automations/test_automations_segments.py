"""Automations and segments: the ``add_to_segment`` / ``remove_from_segment`` actions through the segments'
own write, and the segment trigger (``segment.member_added``), with the loop and depth rules; run by the
workers' loops in-process here (tests/automations/test_automations_workers.py runs real processes)."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx
from clients import MakeClient

from crm_api.automations import runner
from crm_api.segments import worker as segments_worker


async def drain(pool: asyncpg.Pool) -> None:
    """The workers' segment jobs and automation runs, until both have nothing left."""
    for _ in range(50):
        moved = await segments_worker.build_once(pool) + await segments_worker.follow_once(pool)
        while n := await runner.run_once(pool):
            moved += n
        if not moved:
            return
    raise AssertionError("the workers' jobs did not settle")


async def _made(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


async def _segment(api: httpx.AsyncClient, object_type: str = "contact", **more: Any) -> dict[str, Any]:
    body = {"name": f"s-{uuid.uuid4().hex[:6]}", "object_type": object_type, "kind": "static", **more}
    return await _made(await api.post("/v1/segments", json=body))


async def _automation(api: httpx.AsyncClient, trigger: dict[str, Any], *actions: Any) -> dict[str, Any]:
    body = {"name": "rule", "trigger": trigger, "actions": list(actions)}
    return await _made(await api.post("/v1/automations", json=body))


def _field(r: httpx.Response, path: str) -> None:
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert path in [e["path"] for e in r.json()["errors"]], r.text


async def _members(api: httpx.AsyncClient, sid: str) -> set[str]:
    r = await api.get(f"/v1/segments/{sid}/members", params={"limit": 200})
    assert r.status_code == 200, r.text
    return {m["object_id"] for m in r.json()["data"]}


async def _runs(api: httpx.AsyncClient, aid: str) -> list[dict[str, Any]]:
    r = await api.get(f"/v1/automations/{aid}/runs", params={"limit": 200})
    assert r.status_code == 200, r.text
    runs: list[dict[str, Any]] = r.json()["data"]
    return runs


CREATED = {"type": "event", "event_type": "contact.created"}
CUSTOMERS = {"field": "lifecycle_stage", "op": "eq", "value": "customer"}


async def test_segment_actions_and_triggers_are_checked_on_save(
    api: httpx.AsyncClient, make_client: MakeClient
) -> None:
    static = await _segment(api)
    dynamic = await _segment(api, kind="dynamic", filter=CUSTOMERS)
    archived = await _segment(api)
    assert (await api.delete(f"/v1/segments/{archived['id']}")).status_code in (200, 204)
    companies = await _segment(api, "company")
    elsewhere = await _segment(await make_client())
    for segment in (dynamic, archived, companies, elsewhere):
        for kind in ("add_to_segment", "remove_from_segment"):
            body = {"name": "r", "trigger": CREATED, "actions": [{"type": kind, "segment_id": segment["id"]}]}
            _field(await api.post("/v1/automations", json=body), "/actions/0/segment_id")
    on_tickets = {"type": "event", "event_type": "ticket.created"}
    body = {
        "name": "r",
        "trigger": on_tickets,
        "actions": [{"type": "add_to_segment", "segment_id": static["id"]}],
    }
    _field(await api.post("/v1/automations", json=body), "/actions/0/type")
    tag = {"type": "add_tags", "tags": ["x"]}
    for segment_id in (archived["id"], elsewhere["id"], str(uuid.uuid4())):
        trigger = {"type": "segment", "segment_id": segment_id}
        _field(
            await api.post("/v1/automations", json={"name": "r", "trigger": trigger, "actions": [tag]}),
            "/trigger/segment_id",
        )
    assert (await api.get("/v1/automations")).json()["data"] == []
    # a dynamic segment may trigger; the trigger takes its object type, against which actions are checked
    made = await _automation(
        api, {"type": "segment", "segment_id": dynamic["id"], "object_type": "deal"}, tag
    )
    assert made["trigger"]["object_type"] == "contact"
    on_companies = {"type": "segment", "segment_id": companies["id"]}
    bad = {"type": "set_fields", "fields": {"lifecycle_stage": "lead"}}
    _field(
        await api.post("/v1/automations", json={"name": "r", "trigger": on_companies, "actions": [bad]}),
        "/actions/0/fields/lifecycle_stage",
    )


async def test_segment_actions_write_through_the_segments_own_path(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    vip = await _segment(api)
    adder = await _automation(api, CREATED, {"type": "add_to_segment", "segment_id": vip["id"]})
    bye = {"field": "tags", "op": "contains", "value": "bye"}
    remover = await _automation(
        api,
        {"type": "event", "event_type": "contact.updated", "filter": bye},
        {"type": "remove_from_segment", "segment_id": vip["id"]},
    )
    contact = await _made(await api.post("/v1/contacts", json={"email": "v@x.com"}))
    await drain(pool)
    assert await _members(api, vip["id"]) == {contact["id"]}
    [run] = await _runs(api, adder["id"])
    assert run["status"] == "succeeded", run
    assert run["actions"] == [
        {
            "type": "add_to_segment",
            "object_type": "segment",
            "object_id": vip["id"],
            "changes": {"members_added": [contact["id"]]},
        }
    ]
    await api.patch(f"/v1/contacts/{contact['id']}", json={"tags": ["bye"]})
    await drain(pool)
    assert await _members(api, vip["id"]) == set()
    assert (await api.get(f"/v1/segments/{vip['id']}")).json()["member_count"] == 0
    assert [r["actions"][0]["changes"] for r in await _runs(api, remover["id"])] == [
        {"members_removed": [contact["id"]]}
    ]
    events = await pool.fetch(
        "SELECT type, actor, data->>'reason' AS reason, data->>'object_id' AS oid FROM events "
        "WHERE workspace_id = $1 AND type LIKE 'segment.member_%' ORDER BY sequence",
        api.workspace_id,  # type: ignore[attr-defined]
    )
    assert [tuple(e) for e in events] == [
        ("segment.member_added", f"automation:{adder['id']}", "added", contact["id"]),
        ("segment.member_removed", f"automation:{remover['id']}", "removed", contact["id"]),
    ]
    history = (await api.get(f"/v1/segments/{vip['id']}/history")).json()["data"]
    assert [(h["change"], h["reason"]) for h in history] == [("removed", "removed"), ("added", "added")]


async def test_a_segment_trigger_runs_once_per_entry_for_static_and_dynamic_segments(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    static = await _segment(api)
    dynamic = await _segment(api, kind="dynamic", filter=CUSTOMERS)
    await drain(pool)  # the dynamic segment is built (empty)
    on_static = await _automation(
        api, {"type": "segment", "segment_id": static["id"]}, {"type": "add_tags", "tags": ["picked"]}
    )
    on_dynamic = await _automation(
        api,
        {
            "type": "segment",
            "segment_id": dynamic["id"],
            "filter": {"field": "email", "op": "neq", "value": "z@x.com"},
        },
        {"type": "create_note", "body": "A new customer"},
    )
    a = await _made(await api.post("/v1/contacts", json={"email": "a@x.com"}))
    b = await _made(await api.post("/v1/contacts", json={"email": "b@x.com", "lifecycle_stage": "customer"}))
    z = await _made(await api.post("/v1/contacts", json={"email": "z@x.com", "lifecycle_stage": "customer"}))
    r = await api.post(f"/v1/segments/{static['id']}/members", json={"ids": [a["id"]]})
    assert r.status_code == 200, r.text
    await drain(pool)
    await drain(pool)  # nothing more
    runs = await _runs(api, on_static["id"])
    assert [(r["event_type"], r["object_type"], r["object_id"], r["depth"]) for r in runs] == [
        ("segment.member_added", "contact", a["id"], 1)
    ]
    assert (await api.get(f"/v1/contacts/{a['id']}")).json()["tags"] == ["picked"]
    # the dynamic segment's entries came from the segments worker; z entered too but fails the filter
    assert {r["object_id"] for r in await _runs(api, on_dynamic["id"])} == {b["id"]}
    notes = (await api.get("/v1/activities")).json()["data"]
    assert [(n["body"], n["contact_ids"]) for n in notes] == [("A new customer", [b["id"]])]
    # leaving and entering again is a new entry: a new run
    r = await api.request("DELETE", f"/v1/segments/{static['id']}/members", json={"ids": [a["id"]]})
    assert r.status_code == 200, r.text
    await api.post(f"/v1/segments/{static['id']}/members", json={"ids": [a["id"]]})
    await drain(pool)
    assert len(await _runs(api, on_static["id"])) == 2
    assert z["id"] not in {r["object_id"] for r in await _runs(api, on_dynamic["id"])}


async def test_a_segment_trigger_is_not_retriggered_by_its_own_change_and_chains_stop_at_depth_3(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    loop_segment = await _segment(api)
    # out and in again: its own re-entry must not trigger it
    loop = await _automation(
        api,
        {"type": "segment", "segment_id": loop_segment["id"]},
        {"type": "remove_from_segment", "segment_id": loop_segment["id"]},
        {"type": "add_to_segment", "segment_id": loop_segment["id"]},
    )
    c = await _made(await api.post("/v1/contacts", json={"email": "l@x.com"}))
    await api.post(f"/v1/segments/{loop_segment['id']}/members", json={"ids": [c["id"]]})
    await drain(pool)
    [run] = await _runs(api, loop["id"])
    assert [a["changes"] for a in run["actions"]] == [
        {"members_removed": [c["id"]]},
        {"members_added": [c["id"]]},
    ]
    assert await _members(api, loop_segment["id"]) == {c["id"]}
    await api.patch(f"/v1/automations/{loop['id']}", json={"enabled": False})
    # contact.created -> s1 -> s2 -> s3 -> (a fourth, stopped)
    s1, s2, s3 = await _segment(api), await _segment(api), await _segment(api)
    first = await _automation(api, CREATED, {"type": "add_to_segment", "segment_id": s1["id"]})
    second = await _automation(
        api, {"type": "segment", "segment_id": s1["id"]}, {"type": "add_to_segment", "segment_id": s2["id"]}
    )
    third = await _automation(
        api, {"type": "segment", "segment_id": s2["id"]}, {"type": "add_to_segment", "segment_id": s3["id"]}
    )
    fourth = await _automation(
        api, {"type": "segment", "segment_id": s3["id"]}, {"type": "add_tags", "tags": ["too-deep"]}
    )
    d = await _made(await api.post("/v1/contacts", json={"email": "d@x.com"}))
    await drain(pool)
    for automation, depth in ((first, 1), (second, 2), (third, 3)):
        assert [(r["status"], r["depth"]) for r in await _runs(api, automation["id"])] == [
            ("succeeded", depth)
        ]
    stopped = await _runs(api, fourth["id"])
    assert [(r["status"], r["depth"], r["object_id"]) for r in stopped] == [("stopped", 4, d["id"])]
    assert (await api.get(f"/v1/contacts/{d['id']}")).json()["tags"] == []
    assert [d["id"] in await _members(api, s["id"]) for s in (s1, s2, s3)] == [True] * 3


async def test_the_test_route_shows_segment_actions_and_changes_nothing(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    join, leave, held = await _segment(api), await _segment(api), await _segment(api)
    c = await _made(await api.post("/v1/contacts", json={"email": "t@x.com"}))
    for segment in (leave, held):
        await api.post(f"/v1/segments/{segment['id']}/members", json={"ids": [c["id"]]})
    rule = await _automation(
        api,
        {"type": "segment", "segment_id": held["id"]},
        {"type": "add_to_segment", "segment_id": join["id"]},
        {"type": "remove_from_segment", "segment_id": leave["id"]},
        {"type": "add_to_segment", "segment_id": held["id"]},  # a member already: no change
    )
    ws = api.workspace_id  # type: ignore[attr-defined]
    before = await pool.fetchval("SELECT count(*) FROM events WHERE workspace_id = $1", ws)
    r = await api.post(f"/v1/automations/{rule['id']}/test", json={"object_id": c["id"]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["matches"] is True
    assert [(a["type"], a["object_id"], a["changes"]) for a in body["actions"]] == [
        ("add_to_segment", join["id"], {"members_added": [c["id"]]}),
        ("remove_from_segment", leave["id"], {"members_removed": [c["id"]]}),
        ("add_to_segment", held["id"], {}),
    ]
    assert await pool.fetchval("SELECT count(*) FROM events WHERE workspace_id = $1", ws) == before
    assert [await _members(api, s["id"]) for s in (join, leave, held)] == [set(), {c["id"]}, {c["id"]}]
    # a segment that stopped taking members since the save: the test names the action
    assert (await api.delete(f"/v1/segments/{join['id']}")).status_code in (200, 204)
    _field(
        await api.post(f"/v1/automations/{rule['id']}/test", json={"object_id": c["id"]}),
        "/actions/0/segment_id",
    )


async def test_a_chain_through_dynamic_segments_stops_at_depth_3(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    """Two automations that move a contact between two dynamic segments, back and forth: the segments
    worker's entries carry the depth of the run whose change caused them, so the ping-pong stops."""
    vip = await _segment(api, kind="dynamic", filter={"field": "tags", "op": "contains", "value": "vip"})
    plain = await _segment(api, kind="dynamic", filter={"field": "tags", "op": "contains", "value": "plain"})
    await drain(pool)
    to_plain = await _automation(
        api,
        {"type": "segment", "segment_id": vip["id"]},
        {"type": "set_fields", "fields": {"tags": ["plain"]}},
    )
    to_vip = await _automation(
        api,
        {"type": "segment", "segment_id": plain["id"]},
        {"type": "set_fields", "fields": {"tags": ["vip"]}},
    )
    c = await _made(await api.post("/v1/contacts", json={"email": "p@x.com", "tags": ["vip"]}))
    await drain(pool)  # raises if the ping-pong never settles
    assert [(r["status"], r["depth"]) for r in await _runs(api, to_plain["id"])] == [
        ("succeeded", 3),
        ("succeeded", 1),
    ]
    assert [(r["status"], r["depth"]) for r in await _runs(api, to_vip["id"])] == [
        ("stopped", 4),
        ("succeeded", 2),
    ]
    assert (await api.get(f"/v1/contacts/{c['id']}")).json()["tags"] == ["plain"]
    entries = await pool.fetch(
        "SELECT actor, request_id FROM events WHERE workspace_id = $1 AND type = 'segment.member_added' "
        "ORDER BY sequence",
        api.workspace_id,  # type: ignore[attr-defined]
    )
    assert [e["actor"] for e in entries] == ["system:segments"] * 4
    assert [e["request_id"] is None or e["request_id"][-2:] for e in entries] == [True, ":1", ":2", ":3"]


async def test_an_entry_an_automations_own_change_caused_does_not_trigger_it(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    """The run acts on an object that left the segment meanwhile and puts it back in: that entry, made by
    the segments worker because of the run, is the automation's own change."""
    hot = await _segment(api, kind="dynamic", filter={"field": "tags", "op": "contains", "value": "hot"})
    await drain(pool)
    rule = await _automation(
        api, {"type": "segment", "segment_id": hot["id"]}, {"type": "add_tags", "tags": ["hot", "seen"]}
    )
    c = await _made(await api.post("/v1/contacts", json={"email": "h@x.com", "tags": ["hot"]}))
    assert await segments_worker.follow_once(pool)  # it enters
    await api.patch(f"/v1/contacts/{c['id']}", json={"tags": []})  # and leaves before the run
    await drain(pool)
    assert [r["depth"] for r in await _runs(api, rule["id"])] == [1]
    assert await _members(api, hot["id"]) == {c["id"]}  # back in, by the run's change
    entries = await pool.fetchval(
        "SELECT count(*) FROM events WHERE workspace_id = $1 AND type = 'segment.member_added'",
        api.workspace_id,  # type: ignore[attr-defined]
    )
    assert entries == 2
