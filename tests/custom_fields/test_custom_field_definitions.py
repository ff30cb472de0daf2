"""Custom field definitions and the validation every record write goes through."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

MakeClient = Any


async def define(api: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    body = {"object_type": "contact", "label": body.get("name", "x").title(), **body}
    r = await api.post("/v1/custom-fields", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def paths(r: httpx.Response) -> list[str]:
    return [e["path"] for e in r.json()["errors"]]


CASES = [
    # type, good value, stored form, bad value
    ("text", "hello", "hello", 5),
    ("number", 2.0, 2, "2"),
    ("number", 3.5, 3.5, True),
    ("decimal", "12.50", "12.5", "12,50"),
    ("decimal", 7, "7", "abc"),
    ("boolean", False, False, "false"),
    ("date", "2026-02-28", "2026-02-28", "2026-02-30"),
    ("datetime", "2026-01-31T10:00:00+01:00", "2026-01-31T09:00:00Z", "2026-01-31T10:00:00"),
    # parses, but has no UTC datetime (was an OverflowError, a 500)
    ("datetime", "2026-01-31T10:00:00+01:00", "2026-01-31T09:00:00Z", "0001-01-01T00:00:00+01:00"),
    ("enum", "gold", "gold", "platinum"),
    ("multi_enum", ["gold", "silver", "gold"], ["gold", "silver"], ["gold", "tin"]),
    ("url", "https://example.com/a?b=1", "https://example.com/a?b=1", "ftp://example.com"),
    ("email", " Ann@Example.COM ", "ann@example.com", "not-an-email"),
]


@pytest.mark.parametrize(("kind", "good", "stored", "bad"), CASES)
async def test_each_type(api: httpx.AsyncClient, kind: str, good: Any, stored: Any, bad: Any) -> None:
    options = [{"value": "gold", "label": "Gold"}, {"value": "silver", "label": "Silver"}]
    await define(api, name="f", type=kind, options=options if "enum" in kind else [])
    r = await api.post("/v1/contacts", json={"custom_fields": {"f": good}})
    assert r.status_code == 201, r.text
    assert r.json()["custom_fields"] == {"f": stored}
    r = await api.post("/v1/contacts", json={"custom_fields": {"f": bad}})
    assert r.status_code == 422, r.text
    assert paths(r) == ["/custom_fields/f"]
    assert r.json()["errors"][0]["message"].startswith(kind)


async def test_an_update_that_changes_a_value_only_in_type_is_judged(api: httpx.AsyncClient) -> None:
    """An update that leaves custom_fields alone skips the definitions; 1 -> true is not leaving it alone,
    though ``1 == True`` in Python."""
    await define(api, name="seats", type="number")
    ann = (await api.post("/v1/contacts", json={"custom_fields": {"seats": 1}})).json()
    r = await api.patch(
        f"/v1/contacts/{ann['id']}", json={"first_name": "A", "custom_fields": {"seats": True}}
    )
    assert r.status_code == 422, r.text
    assert paths(r) == ["/custom_fields/seats"]
    r = await api.patch(
        f"/v1/contacts/{ann['id']}", json={"first_name": "A", "custom_fields": {"seats": 1.0}}
    )
    assert r.status_code == 200, r.text
    assert r.json()["custom_fields"] == {"seats": 1} and r.json()["first_name"] == "A"


async def test_unknown_key_required_and_clearing(api: httpx.AsyncClient) -> None:
    await define(api, name="plan", type="enum", required=True, options=[{"value": "pro", "label": "Pro"}])
    r = await api.post("/v1/contacts", json={"custom_fields": {"plan": "pro", "shoe_size": 44}})
    assert r.status_code == 422
    assert paths(r) == ["/custom_fields/shoe_size"]
    r = await api.post("/v1/contacts", json={"first_name": "Ann"})
    assert r.status_code == 422
    assert paths(r) == ["/custom_fields/plan"]
    ann = (await api.post("/v1/contacts", json={"custom_fields": {"plan": "pro"}})).json()
    r = await api.patch(f"/v1/contacts/{ann['id']}", json={"custom_fields": {"plan": None}})
    assert r.status_code == 422
    assert paths(r) == ["/custom_fields/plan"]
    r = await api.patch(f"/v1/contacts/{ann['id']}", json={"first_name": "Ann"})
    assert r.status_code == 200
    assert r.json()["custom_fields"] == {"plan": "pro"}


async def test_definition_rules(api: httpx.AsyncClient) -> None:
    bad = [
        {"name": "Bad-Name", "type": "text"},
        {"name": "e", "type": "enum"},
        {"name": "t", "type": "text", "options": [{"value": "a", "label": "A"}]},
        {"name": "b", "type": "boolean", "unique": True},
        {"name": "m", "type": "multi_enum", "options": [{"value": "a", "label": "A"}] * 2},
        {"name": "o", "type": "color"},
        {"name": "o", "type": "text", "object_type": "planet"},
    ]
    for body in bad:
        r = await api.post("/v1/custom-fields", json={"object_type": "contact", "label": "L", **body})
        assert r.status_code == 422, (body, r.text)
    first = await define(api, name="plan", type="text")
    assert first["unique"] is False and first["object"] == "custom_field"
    r = await api.post(
        "/v1/custom-fields", json={"object_type": "contact", "name": "plan", "label": "P", "type": "text"}
    )
    assert r.status_code == 409
    assert paths(r) == ["/name"]
    # the same key on another object type is another field
    await define(api, name="plan", type="number", object_type="deal")
    r = await api.patch(f"/v1/custom-fields/{first['id']}", json={"type": "number"})
    assert r.status_code == 422  # type is fixed at creation
    listed = (await api.get("/v1/custom-fields", params={"object_type": "deal"})).json()["data"]
    assert [(d["name"], d["type"]) for d in listed] == [("plan", "number")]


async def test_enum_option_rename_keeps_data(api: httpx.AsyncClient) -> None:
    tier = await define(api, name="tier", type="enum", options=[{"value": "gold", "label": "Gold"}])
    ann = (await api.post("/v1/contacts", json={"custom_fields": {"tier": "gold"}})).json()
    r = await api.patch(
        f"/v1/custom-fields/{tier['id']}",
        json={"options": [{"value": "gold", "label": "Premium"}, {"value": "basic", "label": "Basic"}]},
    )
    assert r.status_code == 200, r.text
    assert r.json()["options"][0] == {"value": "gold", "label": "Premium"}
    got = (await api.get(f"/v1/contacts/{ann['id']}")).json()
    assert got["custom_fields"] == {"tier": "gold"}
    # a removed option stays readable where stored, but cannot be written again
    await api.patch(f"/v1/custom-fields/{tier['id']}", json={"options": [{"value": "basic", "label": "B"}]})
    r = await api.patch(
        f"/v1/contacts/{ann['id']}", json={"first_name": "Ann", "custom_fields": {"tier": "gold"}}
    )
    assert r.status_code == 200
    r = await api.post("/v1/contacts", json={"custom_fields": {"tier": "gold"}})
    assert r.status_code == 422


async def test_archived_definition_keeps_data_readable(api: httpx.AsyncClient) -> None:
    score = await define(api, name="score", type="number")
    ann = (await api.post("/v1/contacts", json={"custom_fields": {"score": 5}})).json()
    assert (await api.delete(f"/v1/custom-fields/{score['id']}")).status_code == 200
    got = (await api.get(f"/v1/contacts/{ann['id']}")).json()
    assert got["custom_fields"] == {"score": 5}
    r = await api.patch(f"/v1/contacts/{ann['id']}", json={"first_name": "Ann"})
    assert r.status_code == 200 and r.json()["custom_fields"] == {"score": 5}
    r = await api.patch(f"/v1/contacts/{ann['id']}", json={"custom_fields": {"score": 6}})
    assert r.status_code == 422
    assert "archived" in r.json()["errors"][0]["message"]
    # restoring makes it writable again
    assert (await api.post(f"/v1/custom-fields/{score['id']}/restore")).status_code == 200
    r = await api.patch(f"/v1/contacts/{ann['id']}", json={"custom_fields": {"score": 6}})
    assert r.status_code == 200


async def test_definitions_are_per_workspace(make_client: MakeClient) -> None:
    one, two = await make_client(), await make_client()
    await define(one, name="plan", type="number")
    await define(two, name="plan", type="text")
    assert (await one.post("/v1/contacts", json={"custom_fields": {"plan": "pro"}})).status_code == 422
    assert (await two.post("/v1/contacts", json={"custom_fields": {"plan": "pro"}})).status_code == 201
    assert len((await one.get("/v1/custom-fields")).json()["data"]) == 1
    theirs = (await two.get("/v1/custom-fields")).json()["data"][0]["id"]
    assert (await one.get(f"/v1/custom-fields/{theirs}")).status_code == 404
    reader = await make_client(scopes=["contacts:read"])
    assert (await reader.get("/v1/custom-fields")).status_code == 403


async def test_batch_reports_a_bad_custom_field_per_item(api: httpx.AsyncClient) -> None:
    await define(api, name="seats", type="number", object_type="company")
    items = [
        {"name": "A", "custom_fields": {"seats": 3}},
        {"name": "B", "custom_fields": {"seats": "three"}},
        {"name": "C", "custom_fields": {"seats": 4}},
    ]
    r = await api.post("/v1/companies/batch", json={"items": items})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["status"] for x in results] == [201, 422, 201]
    assert results[1]["error"]["errors"][0]["path"] == "/items/1/custom_fields/seats"


async def test_other_object_types(api: httpx.AsyncClient) -> None:
    await define(api, name="severity", type="number", object_type="ticket")
    r = await api.post("/v1/tickets", json={"subject": "Broken", "custom_fields": {"severity": "high"}})
    assert r.status_code == 422, r.text
    assert paths(r) == ["/custom_fields/severity"]


async def test_object_types_without_definitions_stay_free_form(api: httpx.AsyncClient) -> None:
    """Strictness starts with an object type's first definition (integrations that predate them go on)."""
    await define(api, name="plan", type="text", object_type="company")
    r = await api.post("/v1/contacts", json={"custom_fields": {"anything": {"goes": [1]}}})
    assert r.status_code == 201, r.text
    r = await api.post("/v1/companies", json={"name": "A", "custom_fields": {"anything": 1}})
    assert r.status_code == 422
