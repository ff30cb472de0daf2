"""``GET /v1/schemas/{object_type}``: the object as the API returns it, its custom fields typed by the
workspace's live definitions; real objects validate against it, and wrong values do not."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from jsonschema import Draft202012Validator

DEFINITIONS = [
    {"name": "plan", "label": "Plan", "type": "enum", "required": True,
     "options": [{"value": "free", "label": "Free"}, {"value": "pro", "label": "Pro"}]},
    {"name": "seats", "label": "Seats", "type": "number", "description": "Paid seats"},
    {"name": "renews_on", "label": "Renews on", "type": "date"},
    {"name": "crm_id", "label": "Old CRM id", "type": "text", "unique": True},
    {"name": "channels", "label": "Channels", "type": "multi_enum",
     "options": [{"value": "mail", "label": "Mail"}, {"value": "sms", "label": "SMS"}]},
]  # fmt: skip


async def _ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


async def test_a_contact_schema_types_the_workspaces_custom_fields(
    api: httpx.AsyncClient, make_client: Any
) -> None:
    for definition in DEFINITIONS:
        await _ok(await api.post("/v1/custom-fields", json={"object_type": "contact", **definition}), 201)
    archived = await _ok(
        await api.post("/v1/custom-fields", json={"object_type": "contact", "name": "old", "label": "Old",
                                                   "type": "text"}),
        201,
    )  # fmt: skip
    await _ok(await api.delete(f"/v1/custom-fields/{archived['id']}"))

    schema = await _ok(await api.get("/v1/schemas/contact"))
    Draft202012Validator.check_schema(schema)
    assert schema["title"] == "Contact" and schema["$schema"].endswith("2020-12/schema")
    fields = schema["properties"]["custom_fields"]
    assert list(fields["properties"]) == ["plan", "seats", "renews_on", "crm_id", "channels"]  # no "old"
    assert fields["required"] == ["plan"]
    assert fields["properties"]["plan"] == {
        "oneOf": [{"const": "free", "title": "Free"}, {"const": "pro", "title": "Pro"}],
        "title": "Plan",
    }
    assert fields["properties"]["seats"] == {"type": "number", "title": "Seats", "description": "Paid seats"}
    assert fields["properties"]["crm_id"]["x-unique"] is True
    assert fields["properties"]["channels"]["items"]["oneOf"][1] == {"const": "sms", "title": "SMS"}
    assert "company" not in schema["properties"]  # include= adds it; the object as stored has no such field

    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    body = {"email": "ann@x.com", "custom_fields": {"plan": "pro", "seats": 3, "renews_on": "2027-01-31",
                                                     "crm_id": "A-1", "channels": ["sms"]}}  # fmt: skip
    contact = await _ok(await api.post("/v1/contacts", json=body), 201)
    fetched = await _ok(await api.get(f"/v1/contacts/{contact['id']}"))
    assert not list(validator.iter_errors(fetched))
    wrong = {**fetched, "custom_fields": {**fetched["custom_fields"], "plan": "gold"}}
    assert list(validator.iter_errors(wrong))

    # another workspace has its own definitions (none here): free-form custom fields
    other = await make_client()
    theirs = await _ok(await other.get("/v1/schemas/contact"))
    assert "properties" not in theirs["properties"]["custom_fields"]


async def test_every_object_type_has_a_schema_its_objects_validate_against(api: httpx.AsyncClient) -> None:
    activity = await _ok(await api.post("/v1/activities", json={"type": "note", "subject": "Hi"}), 201)
    schema = await _ok(await api.get("/v1/schemas/activity"))
    assert not list(Draft202012Validator(schema).iter_errors(activity))
    for object_type in ("company", "deal", "ticket", "sla_policy", "custom_field"):
        Draft202012Validator.check_schema(await _ok(await api.get(f"/v1/schemas/{object_type}")))


async def test_unknown_types_and_missing_scopes_are_refused(make_client: Any) -> None:
    api = await make_client()
    for unknown in ("widget", "pipeline_stage", "event"):
        r = await api.get(f"/v1/schemas/{unknown}")
        assert r.status_code == 404 and r.json()["code"] == "not_found"
    r = await api.get(f"/v1/schemas/{uuid.uuid4()}")  # not a type's name at all
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "/path/object_type"
    reader = await make_client(scopes=["contacts:read"])
    r = await reader.get("/v1/schemas/contact")
    assert r.status_code == 403 and "custom_fields:read" in r.json()["detail"]


async def test_each_object_type_with_custom_fields_validates_its_real_objects(api: httpx.AsyncClient) -> None:
    """Company, deal and ticket (contact: above): the workspace's definition of each appears in its schema,
    and an object as its GET answers validates (and fails once a value breaks the definition)."""
    bodies = {
        "company": ("companies", {"name": "Acme"}),
        "deal": ("deals", {"name": "Big"}),
        "ticket": ("tickets", {"subject": "Help"}),
    }
    policy = await _ok(
        await api.post(
            "/v1/sla-policies", json={"name": "Std", "targets": {"normal": {"first_response_minutes": 60}}}
        ),
        201,
    )
    for object_type, (resource, body) in bodies.items():
        definition = {"object_type": object_type, "name": "tier", "label": "Tier", "type": "enum",
                      "options": [{"value": "a", "label": "A"}, {"value": "b", "label": "B"}]}  # fmt: skip
        field = await _ok(await api.post("/v1/custom-fields", json=definition), 201)
        schema = await _ok(await api.get(f"/v1/schemas/{object_type}"))
        assert list(schema["properties"]["custom_fields"]["properties"]) == ["tier"], object_type
        made = await _ok(
            await api.post(f"/v1/{resource}", json={**body, "custom_fields": {"tier": "b"}}), 201
        )
        fetched = await _ok(await api.get(f"/v1/{resource}/{made['id']}"))
        validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
        assert not list(validator.iter_errors(fetched)), object_type
        assert list(validator.iter_errors({**fetched, "custom_fields": {"tier": "c"}})), object_type
    others = {
        "sla_policy": f"/v1/sla-policies/{policy['id']}",
        "custom_field": f"/v1/custom-fields/{field['id']}",
    }
    for object_type, path in others.items():
        schema = await _ok(await api.get(f"/v1/schemas/{object_type}"))
        validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
        assert not list(validator.iter_errors(await _ok(await api.get(path)))), object_type
