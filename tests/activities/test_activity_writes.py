"""Activity writes on a real PostgreSQL: per-type field rules on every write path, task completion and its
event, links checked per id and per workspace, problem+json for each broken rule."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import httpx
import pytest

MakeClient = Callable[..., Awaitable[httpx.AsyncClient]]
PROBLEM = "application/problem+json"
WRONG_TYPE = [
    ("note", "direction", "inbound"),
    ("meeting", "direction", "outbound"),
    ("task", "direction", "inbound"),
    ("email", "duration_seconds", 60),
    ("note", "duration_seconds", 60),
    ("call", "due_at", "2026-12-01T10:00:00Z"),
    ("meeting", "completed_at", "2026-12-01T10:00:00Z"),
    ("email", "priority", "high"),
]


async def _events(pool: asyncpg.Pool, client: httpx.AsyncClient, oid: str) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT type, data FROM events WHERE workspace_id = $1 AND object_id = $2 ORDER BY sequence",
        client.workspace_id,  # type: ignore[attr-defined]
        uuid.UUID(oid),
    )
    return [dict(r) for r in rows]


def _assert_problem(r: httpx.Response, status: int, path: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    body = r.json()
    assert body["request_id"] and body["code"]
    assert path in [e["path"] for e in body["errors"]], body


async def test_each_type_takes_its_own_fields(api: httpx.AsyncClient) -> None:
    call = await api.post(
        "/v1/activities",
        json={"type": "call", "subject": "Intro", "direction": "outbound", "duration_seconds": 300},
    )
    assert call.status_code == 201, call.text
    body = call.json()
    assert body["object"] == "activity" and body["direction"] == "outbound"
    assert body["duration_seconds"] == 300 and body["occurred_at"] is not None
    assert call.headers["location"] == f"/v1/activities/{body['id']}"
    email = await api.post("/v1/activities", json={"type": "email", "direction": "inbound"})
    meeting = await api.post("/v1/activities", json={"type": "meeting", "duration_seconds": 1800})
    task = await api.post(
        "/v1/activities", json={"type": "task", "due_at": "2026-12-01T10:00:00+01:00", "priority": "high"}
    )
    assert [r.status_code for r in (email, meeting, task)] == [201, 201, 201]
    assert task.json()["due_at"] == "2026-12-01T09:00:00Z"
    assert task.json()["occurred_at"] is None  # an open task has not happened yet


@pytest.mark.parametrize(("kind", "field", "value"), WRONG_TYPE)
async def test_a_field_on_the_wrong_type_is_a_422_naming_it(
    api: httpx.AsyncClient, pool: asyncpg.Pool, kind: str, field: str, value: Any
) -> None:
    r = await api.post("/v1/activities", json={"type": kind, field: value})
    _assert_problem(r, 422, f"/{field}")
    count = await pool.fetchval(
        "SELECT count(*) FROM activities WHERE workspace_id = $1",
        api.workspace_id,  # type: ignore[attr-defined]
    )
    assert count == 0


async def test_type_is_required_valid_and_never_cleared(api: httpx.AsyncClient) -> None:
    _assert_problem(await api.post("/v1/activities", json={"subject": "x"}), 422, "/type")
    _assert_problem(await api.post("/v1/activities", json={"type": "fax"}), 422, "/type")
    bad_direction = await api.post("/v1/activities", json={"type": "call", "direction": "sideways"})
    _assert_problem(bad_direction, 422, "/direction")
    negative = await api.post("/v1/activities", json={"type": "call", "duration_seconds": -1})
    _assert_problem(negative, 422, "/duration_seconds")
    unknown = await api.post("/v1/activities", json={"type": "note", "colour": "red"})
    _assert_problem(unknown, 422, "/colour")
    note = (await api.post("/v1/activities", json={"type": "note"})).json()
    _assert_problem(await api.patch(f"/v1/activities/{note['id']}", json={"type": None}), 422, "/type")


async def test_patch_checks_the_merged_row(api: httpx.AsyncClient) -> None:
    call = (await api.post("/v1/activities", json={"type": "call", "direction": "inbound"})).json()
    url = f"/v1/activities/{call['id']}"
    # a call's direction stays when only the type changes: the note would have one, so it is refused
    _assert_problem(await api.patch(url, json={"type": "note"}), 422, "/direction")
    _assert_problem(await api.patch(url, json={"due_at": "2026-12-01T00:00:00Z"}), 422, "/due_at")
    unchanged = (await api.get(url)).json()
    assert (unchanged["type"], unchanged["version"]) == ("call", 1)
    # clearing the field in the same request makes the change valid
    moved = await api.patch(url, json={"type": "email"})
    assert moved.status_code == 200 and moved.json()["direction"] == "inbound"
    note = await api.patch(url, json={"type": "note", "direction": None})
    assert note.status_code == 200, note.text
    assert (note.json()["type"], note.json()["direction"], note.json()["version"]) == ("note", None, 3)


async def test_completing_a_task_emits_completed_and_reopening_clears_it(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    task = (await api.post("/v1/activities", json={"type": "task", "subject": "Send quote"})).json()
    url = f"/v1/activities/{task['id']}"
    done = await api.patch(url, json={"completed_at": "2026-11-25T09:30:00Z"}, headers={"If-Match": '"1"'})
    assert done.status_code == 200, done.text
    assert done.json()["completed_at"] == "2026-11-25T09:30:00Z"
    assert done.json()["occurred_at"] == "2026-11-25T09:30:00Z"  # on the timeline when done
    events = await _events(pool, api, task["id"])
    assert [e["type"] for e in events] == ["activity.created", "activity.updated", "activity.completed"]
    assert events[2]["data"]["previous"] == {"completed_at": None, "occurred_at": None}
    # editing a done task does not complete it again
    await api.patch(url, json={"subject": "Send the quote"})
    reopened = await api.patch(url, json={"completed_at": None})
    assert reopened.json()["completed_at"] is None and reopened.json()["occurred_at"] is None
    again = await api.patch(url, json={"completed_at": "2026-11-26T08:00:00Z"})
    assert again.json()["occurred_at"] == "2026-11-26T08:00:00Z"
    types = [e["type"] for e in await _events(pool, api, task["id"])]
    assert types.count("activity.completed") == 2
    assert types.count("activity.updated") == 4


async def test_a_dated_task_keeps_its_date_and_a_task_created_done_is_completed(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    dated = await api.post(
        "/v1/activities",
        json={"type": "task", "occurred_at": "2026-11-20T00:00:00Z", "completed_at": "2026-11-21T00:00:00Z"},
    )
    assert dated.json()["occurred_at"] == "2026-11-20T00:00:00Z"
    types = [e["type"] for e in await _events(pool, api, dated.json()["id"])]
    assert types == ["activity.created", "activity.completed"]
    reopened = await api.patch(f"/v1/activities/{dated.json()['id']}", json={"completed_at": None})
    assert reopened.json()["occurred_at"] == "2026-11-20T00:00:00Z"


async def test_archive_and_restore_emit_their_events(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    note = (await api.post("/v1/activities", json={"type": "note", "body": "hello"})).json()
    archived = await api.delete(f"/v1/activities/{note['id']}")
    assert archived.status_code == 200 and archived.json()["archived_at"] is not None
    assert (await api.get("/v1/activities")).json()["data"] == []
    restored = await api.post(f"/v1/activities/{note['id']}/restore")
    assert restored.status_code == 200 and restored.json()["archived_at"] is None
    types = [e["type"] for e in await _events(pool, api, note["id"])]
    assert types == ["activity.created", "activity.archived", "activity.restored"]


async def test_links_are_checked_id_by_id(api: httpx.AsyncClient) -> None:
    ann = (await api.post("/v1/contacts", json={"first_name": "Ann"})).json()
    acme = (await api.post("/v1/companies", json={"name": "Acme"})).json()
    missing = str(uuid.uuid4())
    r = await api.post(
        "/v1/activities", json={"type": "note", "contact_ids": [ann["id"], missing, ann["id"]]}
    )
    # duplicates collapse first, so the missing id is at index 1
    _assert_problem(r, 422, "/contact_ids/1")
    r = await api.post("/v1/activities", json={"type": "note", "company_ids": [missing]})
    _assert_problem(r, 422, "/company_ids/0")
    _assert_problem(
        await api.post("/v1/activities", json={"type": "note", "contact_ids": ["nope"]}),
        422,
        "/contact_ids/0",
    )
    ok = await api.post(
        "/v1/activities",
        json={"type": "meeting", "contact_ids": [ann["id"], ann["id"]], "company_ids": [acme["id"]]},
    )
    assert ok.status_code == 201 and ok.json()["contact_ids"] == [ann["id"]]
    url = f"/v1/activities/{ok.json()['id']}"
    _assert_problem(await api.patch(url, json={"company_ids": [acme["id"], missing]}), 422, "/company_ids/1")
    await api.delete(f"/v1/contacts/{ann['id']}")
    _assert_problem(
        await api.post("/v1/activities", json={"type": "note", "contact_ids": [ann["id"]]}),
        422,
        "/contact_ids/0",
    )
    cleared = await api.patch(url, json={"contact_ids": None})
    assert cleared.status_code == 200 and cleared.json()["contact_ids"] == []


async def test_another_workspace_is_invisible(api: httpx.AsyncClient, make_client: MakeClient) -> None:
    other = await make_client()
    theirs = (await other.post("/v1/contacts", json={"first_name": "Zed"})).json()
    note = (await other.post("/v1/activities", json={"type": "note", "contact_ids": [theirs["id"]]})).json()
    url = f"/v1/activities/{note['id']}"
    for r in (
        await api.get(url),
        await api.patch(url, json={"subject": "x"}),
        await api.delete(url),
        await api.post(f"{url}/restore"),
    ):
        assert r.status_code == 404 and r.headers["content-type"] == PROBLEM
        assert r.json()["code"] == "not_found"
    linked = await api.post("/v1/activities", json={"type": "note", "contact_ids": [theirs["id"]]})
    _assert_problem(linked, 422, "/contact_ids/0")
    assert (await api.get("/v1/activities", params={"contact_id": theirs["id"]})).json()["data"] == []
    mine = (await other.get(url)).json()
    assert mine["version"] == 1 and mine["subject"] is None


async def test_batch_fails_bad_items_alone(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    ann = (await api.post("/v1/contacts", json={"first_name": "Ann"})).json()
    items = [
        {"type": "call", "direction": "inbound", "contact_ids": [ann["id"]]},
        {"type": "note", "direction": "inbound"},
        {"type": "task", "due_at": "2026-12-01T00:00:00Z"},
        {"type": "note", "contact_ids": [str(uuid.uuid4())]},
        {"subject": "no type"},
        {"type": "task", "completed_at": "2026-11-01T00:00:00Z", "external_ids": {"crm": "t-1"}},
    ]
    r = await api.post("/v1/activities/batch", json={"items": items})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["status"] for x in results] == [201, 422, 201, 422, 422, 201]
    assert results[1]["error"]["errors"][0]["path"] == "/items/1/direction"
    assert results[3]["error"]["errors"][0]["path"] == "/items/3/contact_ids/0"
    assert results[4]["error"]["errors"][0]["path"] == "/items/4/type"
    count = await pool.fetchval(
        "SELECT count(*) FROM activities WHERE workspace_id = $1",
        api.workspace_id,  # type: ignore[attr-defined]
    )
    assert count == 3
    done = results[5]["object"]["id"]
    assert [e["type"] for e in await _events(pool, api, done)] == ["activity.created", "activity.completed"]
    # an upsert that would give the done task a direction fails alone, and changes nothing
    upsert = {
        "mode": "upsert",
        "items": [
            {"type": "task", "external_ids": {"crm": "t-1"}, "direction": "inbound"},
            {"type": "task", "external_ids": {"crm": "t-2"}},
        ],
    }
    r = await api.post("/v1/activities/batch", json=upsert)
    assert [x["status"] for x in r.json()["results"]] == [422, 201]
    assert r.json()["results"][0]["error"]["errors"][0]["path"] == "/items/0/direction"


async def test_upsert_by_external_id_applies_the_type_rules(api: httpx.AsyncClient) -> None:
    url = "/v1/activities/by-external-id/gmail/msg-1"
    created = await api.put(url, json={"type": "email", "direction": "inbound", "subject": "Hi"})
    assert created.status_code == 201, created.text
    updated = await api.put(url, json={"subject": "Hi again"})
    assert updated.status_code == 200 and updated.json()["id"] == created.json()["id"]
    _assert_problem(await api.put(url, json={"priority": "low"}), 422, "/priority")
    _assert_problem(await api.put("/v1/activities/by-external-id/gmail/msg-2", json={}), 422, "/type")


async def test_idempotency_key_replays_a_create(api: httpx.AsyncClient) -> None:
    headers = {"Idempotency-Key": "act-1"}
    first = await api.post("/v1/activities", json={"type": "note"}, headers=headers)
    again = await api.post("/v1/activities", json={"type": "note"}, headers=headers)
    assert again.headers.get("idempotent-replayed") == "true"
    assert again.json()["id"] == first.json()["id"]
    other = await api.post("/v1/activities", json={"type": "call"}, headers=headers)
    assert other.status_code == 422


async def test_racing_completions_emit_completed_once(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    task = (await api.post("/v1/activities", json={"type": "task"})).json()
    url = f"/v1/activities/{task['id']}"
    responses = await asyncio.gather(
        *(api.patch(url, json={"completed_at": f"2026-11-25T10:00:0{i}Z"}) for i in range(8))
    )
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    types = [e["type"] for e in await _events(pool, api, task["id"])]
    assert types.count("activity.completed") == 1
    assert types.count("activity.updated") == 8  # every write applied, each its own version
