"""The event catalogue (``events/types.py``) against what the code really writes, and what is derived from it:
``GET /v1/event-types``, the OpenAPI ``webhooks`` section and the history's derived events.

Beside these, every test run checks at its end that the events table holds no uncatalogued type
(``tests/conftest.py``), so a writer added anywhere and tested anywhere is held to the list.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import httpx
import jsonschema

from crm_api.app import create_app
from crm_api.automations import runner as automations
from crm_api.events.router import EventTypeList
from crm_api.events.types import BY_TYPE, CATALOGUE, DERIVED, RECORD_ACTIONS
from crm_api.registry import RESOURCES
from crm_api.resources.spec import REGISTRY
from crm_api.scoring import worker as scoring
from crm_api.tickets import breach

MakeClient = Callable[..., Awaitable[httpx.AsyncClient]]


async def _ok(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, (response.request.method, response.request.url, response.text)
    body: dict[str, Any] = response.json()
    return body


async def _record_cycle(
    api: httpx.AsyncClient, url: str, body: dict[str, Any], change: dict[str, Any]
) -> str:
    """created, updated, archived, restored; returns the id."""
    oid = (await _ok(await api.post(url, json=body), 201))["id"]
    await _ok(await api.patch(f"{url}/{oid}", json=change))
    await _ok(await api.delete(f"{url}/{oid}"))
    await _ok(await api.post(f"{url}/{oid}/restore"))
    return str(oid)


async def _every_writer(api: httpx.AsyncClient, pool: asyncpg.Pool) -> str:
    """Each kind of write the API has, once; returns the id of the contact erased."""
    contact = await _record_cycle(api, "/v1/contacts", {"first_name": "Ada"}, {"title": "CTO"})
    twin = await _ok(await api.post("/v1/contacts", json={"first_name": "Ada L."}), 201)
    await _ok(await api.post(f"/v1/contacts/{contact}/merge", json={"from": [twin["id"]]}))
    gone = await _ok(await api.post("/v1/contacts", json={"email": "gone@example.com"}), 201)
    await _ok(await api.post(f"/v1/contacts/{gone['id']}/erase"))

    company = await _record_cycle(api, "/v1/companies", {"name": "Acme"}, {"industry": "Anvils"})
    other = await _ok(await api.post("/v1/companies", json={"name": "Acme Inc"}), 201)
    await _ok(await api.post(f"/v1/companies/{company}/merge", json={"from": [other["id"]]}))

    pipeline = await _ok(
        await api.post("/v1/pipelines", json={"name": "Renewals", "stages": [{"name": "A"}]}), 201
    )
    await _ok(await api.patch(f"/v1/pipelines/{pipeline['id']}", json={"name": "Renewals 2"}))
    await _ok(await api.delete(f"/v1/pipelines/{pipeline['id']}"))
    await _ok(await api.post(f"/v1/pipelines/{pipeline['id']}/restore"))

    default = (await _ok(await api.get("/v1/pipelines")))["data"]
    stages = {s["name"]: s["id"] for p in default if p["is_default"] for s in p["stages"]}
    deal = await _record_cycle(
        api,
        "/v1/deals",
        {"name": "Big one", "stage_id": stages["Lead in"]},
        {"amount": "10.00", "currency": "EUR"},
    )
    await _ok(await api.patch(f"/v1/deals/{deal}", json={"stage_id": stages["Qualified"]}))
    await _ok(await api.patch(f"/v1/deals/{deal}", json={"stage_id": stages["Won"]}))
    lost = await _ok(await api.post("/v1/deals", json={"name": "Small", "stage_id": stages["Lead in"]}), 201)
    await _ok(await api.patch(f"/v1/deals/{lost['id']}", json={"stage_id": stages["Lost"]}))

    task = await _record_cycle(
        api, "/v1/activities", {"type": "task", "subject": "Call"}, {"priority": "high"}
    )
    await _ok(await api.patch(f"/v1/activities/{task}", json={"completed_at": "2025-01-02T03:04:05Z"}))

    targets = {"normal": {"first_response_minutes": 60, "resolution_minutes": 480}}
    await _record_cycle(api, "/v1/sla-policies", {"name": "Spare", "targets": targets}, {"name": "Spare 2"})
    await _ok(
        await api.post("/v1/sla-policies", json={"name": "Std", "targets": targets, "is_default": True}), 201
    )
    ticket = await _record_cycle(api, "/v1/tickets", {"subject": "Printer"}, {"status": "open"})
    await _ok(await api.post(f"/v1/tickets/{ticket}/comments", json={"body": "On it"}), 201)
    created = dt.datetime.fromisoformat((await _ok(await api.get(f"/v1/tickets/{ticket}")))["created_at"])
    while await breach.run_once(pool, now=created + dt.timedelta(days=30)):
        pass

    field = {"object_type": "contact", "name": "plan", "label": "Plan", "type": "text"}
    await _record_cycle(api, "/v1/custom-fields", field, {"label": "Plan name"})

    member = await _record_cycle(
        api, "/v1/members", {"email": "m@example.com", "name": "M"}, {"role": "admin"}
    )
    await _record_cycle(api, "/v1/teams", {"name": "Sales", "member_ids": [member]}, {"name": "Sales EU"})
    static = {"name": "VIP", "object_type": "contact", "kind": "static"}
    segment = await _record_cycle(api, "/v1/segments", static, {"name": "VIPs"})
    await _ok(await api.post(f"/v1/segments/{segment}/members", json={"ids": [contact]}))
    await _ok(await api.request("DELETE", f"/v1/segments/{segment}/members", json={"ids": [contact]}))
    rule = {"name": "R", "points": 5, "condition": {"field": "id", "op": "eq", "value": contact}}
    await _record_cycle(api, "/v1/scoring-rules", rule, {"name": "R2"})
    while await scoring.walk_once(pool) or await scoring.follow_once(pool):  # contact.score_changed
        pass

    # an automation whose run fails: the member it assigns is archived before the contact comes
    leaving = await _ok(await api.post("/v1/members", json={"email": "l@example.com", "name": "L"}), 201)
    assign = [{"type": "assign_owner", "member_id": leaving["id"]}]
    trigger = {"type": "event", "event_type": "contact.created"}
    await _record_cycle(
        api, "/v1/automations", {"name": "A", "trigger": trigger, "actions": assign}, {"name": "B"}
    )
    await _ok(await api.delete(f"/v1/members/{leaving['id']}"))
    await _ok(await api.post("/v1/contacts", json={"first_name": "Late"}), 201)
    while await automations.run_once(pool):
        pass

    hook = await _ok(
        await api.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/h", "event_types": ["*"]}), 201
    )
    await _ok(await api.post(f"/v1/webhooks/{hook['id']}/test"), 202)
    return str(gone["id"])


async def test_every_writer_emits_catalogued_types_only_and_every_type_is_emitted(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    erased = await _every_writer(api, pool)
    rows = await pool.fetch(
        "SELECT type, object_type, object_id, created_at, data FROM events WHERE workspace_id = $1",
        api.workspace_id,  # type: ignore[attr-defined]
    )
    emitted = {r["type"] for r in rows}
    assert emitted - set(BY_TYPE) == set(), "emitted but not in events/types.py"
    assert set(BY_TYPE) - emitted == set(), "catalogued but not emitted by any writer above"
    listed = (await _ok(await api.get("/v1/event-types")))["data"]
    schemas = {e["type"]: e["schema"] for e in listed}
    changes: dict[tuple[Any, Any], set[str]] = defaultdict(set)
    for row in rows:
        entry = BY_TYPE[row["type"]]
        assert row["object_type"] == entry.object_type, row["type"]
        # the schema served for the type describes the object the events really carry (the erased
        # contact's older events too: the erase leaves them the values it leaves the row)
        problem = jsonschema.exceptions.best_match(
            jsonschema.Draft202012Validator(schemas[row["type"]]).iter_errors(row["data"]["object"])
        )
        assert problem is None, (row["type"], row["data"]["object"], problem)
        assert set(row["data"]) == {"object", "previous", *entry.data}, row["type"]
        assert set(row["data"]["previous"]) >= set(entry.previous), row["type"]
        changes[(row["object_id"], row["created_at"])].add(entry.action)
    # among them the erased contact's own, scrubbed
    gone = next(r for r in rows if str(r["object_id"]) == erased and r["type"] == "contact.created")
    assert gone["data"]["object"]["email"] is None and gone["data"]["object"]["tags"] == []
    # a derived event always rides with the created/updated event of the same change
    for row in rows:
        if row["type"] in DERIVED:
            assert changes[(row["object_id"], row["created_at"])] & {"created", "updated"}, row["type"]


async def test_event_types_lists_the_catalogue_with_schemas_and_samples(make_client: MakeClient) -> None:
    reader = await make_client(scopes=["events:read"])
    r = await reader.get("/v1/event-types")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    EventTypeList.model_validate(body)
    assert body["has_more"] is False and body["next_cursor"] is None
    assert [e["type"] for e in body["data"]] == [e.type for e in CATALOGUE]
    spec = create_app(url="postgresql://unused").openapi()
    components = spec["components"]["schemas"]
    for entry in body["data"]:
        catalogued = BY_TYPE[entry["type"]]
        assert entry["object"] == "event_type"
        assert entry["object_type"] == catalogued.object_type
        assert entry["description"] == catalogued.description
        jsonschema.Draft202012Validator.check_schema(entry["schema"])
        sample = entry["sample"]
        assert sample["type"] == entry["type"]
        jsonschema.validate(sample["data"]["object"], entry["schema"])
        # and the whole sample is a body the OpenAPI webhook of that type declares
        declared = spec["webhooks"][entry["type"]]["post"]["requestBody"]["content"]["application/json"]
        jsonschema.validate(sample, {**declared["schema"], "components": {"schemas": components}})
    deal = next(e for e in body["data"] if e["type"] == "deal.stage_changed")
    assert set(deal["sample"]["data"]["previous"]) == {"stage_id"}
    assert {"survivor", "merged"} <= set(
        next(e for e in body["data"] if e["type"] == "contact.merged")["sample"]["data"]
    )
    pipeline = next(e for e in body["data"] if e["type"] == "pipeline.created")["schema"]
    assert (
        pipeline["properties"]["stages"]["items"] == {"$ref": "#/$defs/Stage"}
        and "Stage" in pipeline["$defs"]
    )
    assert (await reader.get("/v1/event-types")).content == r.content
    other = await make_client(scopes=["contacts:read"])
    denied = await other.get("/v1/event-types")
    assert denied.status_code == 403 and denied.headers["content-type"] == "application/problem+json"


def test_openapi_webhooks_are_the_catalogue() -> None:
    spec = create_app(url="postgresql://unused").openapi()
    assert list(spec["webhooks"]) == [e.type for e in CATALOGUE]
    for event in CATALOGUE:
        post = spec["webhooks"][event.type]["post"]
        body = post["requestBody"]["content"]["application/json"]["schema"]
        data = body["properties"]["data"]["properties"]
        assert data["object"] == {"$ref": f"#/components/schemas/{event.schema}"}
        assert set(data) == {"object", "previous", *event.data}
        assert post["description"] == event.description


def test_every_served_resource_has_its_record_events() -> None:
    """A resource added to the registry without its events in the catalogue fails here."""
    specs = [r.spec for r in RESOURCES if r.spec is not None]
    assert {s.name for s in specs} == set(REGISTRY), "registered specs and served resources differ"
    for spec in specs:
        for action in RECORD_ACTIONS:
            entry = BY_TYPE.get(f"{spec.object}.{action}")
            assert entry is not None, f"{spec.object}.{action} is not catalogued"
            assert entry.object_type == spec.object and entry.schema == spec.read_schema.__name__
    for event in CATALOGUE:
        if event.derived:
            assert any(s.object == event.prefix and s.derived_events for s in specs), event.type


def test_catalogue_entries_are_unique_and_well_formed() -> None:
    assert len(BY_TYPE) == len(CATALOGUE)
    for event in CATALOGUE:
        prefix, _, action = event.type.partition(".")
        assert prefix and action and action != "*" and event.description, event.type
        assert event.note == "" or event.note[0].islower(), event.type
