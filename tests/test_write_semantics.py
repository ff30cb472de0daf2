"""What writes accept, as the contract says: money only as decimal strings, an upsert batch that names an
object twice applies both items in order, and every PATCH field takes null exactly when the spec says so."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

SPEC = json.loads((Path(__file__).parents[1] / "openapi" / "openapi.json").read_text())


def _email() -> str:
    return f"{uuid.uuid4().hex[:12]}@example.com"


async def _made(api: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = await api.post(path, json=body)
    assert r.status_code == 201, (path, r.text)
    made: dict[str, Any] = r.json()
    return made


def _order(**totals: Any) -> dict[str, Any]:
    return {
        "customer": {"email": _email()},
        "status": "paid",
        "currency": "EUR",
        "totals": {"total": "10.00", **totals},
        "updated_at": "2026-11-25T10:00:00Z",
        "line_items": [{"name": "Thing", "quantity": 1, "unit_price": "10.00"}],
    }


def _order_item(**item: Any) -> dict[str, Any]:
    order = _order()
    order["line_items"][0].update(item)
    return order


# (method, url, body, the field the 422 names); {id} is a deal or company made for the test
MONEY_AS_NUMBERS: list[tuple[str, str, dict[str, Any], str]] = [
    ("POST", "/v1/deals", {"name": "D", "amount": 12.5, "currency": "EUR"}, "/amount"),
    ("POST", "/v1/deals", {"name": "D", "amount": 12, "currency": "EUR"}, "/amount"),
    ("PATCH", "/v1/deals/{deal}", {"amount": 1e3}, "/amount"),
    ("PUT", "/v1/deals/by-external-id/crm/{uuid}", {"name": "D", "amount": 3.3}, "/amount"),
    ("POST", "/v1/companies", {"name": "Acme", "annual_revenue": 1000000}, "/annual_revenue"),
    ("PATCH", "/v1/companies/{company}", {"annual_revenue": 99.99}, "/annual_revenue"),
    (
        "PUT",
        "/v1/companies/by-domain/{uuid}.example",
        {"name": "A", "annual_revenue": 5.5},
        "/annual_revenue",
    ),
    ("PUT", "/v1/orders/shop/{uuid}", _order(total=10), "/totals/total"),
    ("PUT", "/v1/orders/shop/{uuid}", _order(subtotal=10.0), "/totals/subtotal"),
    ("PUT", "/v1/orders/shop/{uuid}", _order(discount=0), "/totals/discount"),
    ("PUT", "/v1/orders/shop/{uuid}", _order(tax=1.9), "/totals/tax"),
    ("PUT", "/v1/orders/shop/{uuid}", _order(shipping=4.95), "/totals/shipping"),
    ("PUT", "/v1/orders/shop/{uuid}", _order_item(unit_price=10), "/line_items/0/unit_price"),
    ("PUT", "/v1/orders/shop/{uuid}", _order_item(discount=0.5), "/line_items/0/discount"),
    ("PUT", "/v1/orders/shop/{uuid}", _order_item(tax=0.19), "/line_items/0/tax"),
]


@pytest.mark.parametrize(
    ("method", "url", "body", "field"), MONEY_AS_NUMBERS, ids=[c[3] for c in MONEY_AS_NUMBERS]
)
async def test_money_as_a_json_number_is_a_422_naming_the_field(
    api: httpx.AsyncClient, method: str, url: str, body: dict[str, Any], field: str
) -> None:
    ids = {"uuid": uuid.uuid4().hex}
    if "{deal}" in url:
        ids["deal"] = (await _made(api, "/v1/deals", {"name": "D"}))["id"]
    if "{company}" in url:
        ids["company"] = (await _made(api, "/v1/companies", {"name": "C"}))["id"]
    r = await api.request(method, url.format(**ids), json=body)
    assert r.status_code == 422, r.text
    problem = r.json()
    assert [e["path"] for e in problem["errors"]] == [field]
    assert "decimal string" in problem["errors"][0]["message"]


async def test_money_in_batches_and_the_strings_that_are_accepted(api: httpx.AsyncClient) -> None:
    r = await api.post(
        "/v1/deals/batch",
        json={
            "items": [
                {"name": "A", "amount": 1.5, "currency": "EUR"},
                {"name": "B", "amount": "1.5", "currency": "EUR"},
            ]
        },
    )
    results = r.json()["results"]
    assert [x["status"] for x in results] == [422, 201]
    assert results[0]["error"]["errors"][0]["path"] == "/items/0/amount"
    assert results[1]["object"]["amount"] == "1.50"
    orders = await api.post(
        "/v1/orders/batch",
        json={"items": [{"source": "shop", "external_id": uuid.uuid4().hex, "order": _order(total=10)}]},
    )
    assert orders.json()["results"][0]["status"] == 422
    assert orders.json()["results"][0]["error"]["errors"][0]["path"] == "/items/0/order/totals/total"
    company = await _made(api, "/v1/companies", {"name": "Acme", "annual_revenue": "1000000"})
    assert company["annual_revenue"] == "1000000.00"


# --- a batch upsert naming an object twice --------------------------------------------------------------


async def _events(api: httpx.AsyncClient, object_id: str, at_least: int) -> list[dict[str, Any]]:
    for _ in range(200):
        r = await api.get("/v1/events", params={"object_id": object_id, "sort": "sequence"})
        data: list[dict[str, Any]] = r.json()["data"]
        if len(data) >= at_least:
            return data
        await asyncio.sleep(0.05)
    raise AssertionError(f"fewer than {at_least} events for {object_id}")


async def test_an_upsert_batch_naming_a_key_twice_updates_what_the_first_item_wrote(
    api: httpx.AsyncClient,
) -> None:
    email = _email()
    items = [
        {"email": email, "first_name": "A", "title": "CEO"},
        {"email": _email()},
        {"email": email.upper(), "first_name": "B"},
        {"email": email, "first_name": "B"},  # changes nothing
    ]
    r = await api.post("/v1/contacts/batch", json={"items": items, "mode": "upsert"})
    assert r.status_code == 200
    results = r.json()["results"]
    assert [x["status"] for x in results] == [201, 201, 200, 200]
    first, _, second, third = (x["object"] for x in results)
    assert first["id"] == second["id"] == third["id"]
    assert (first["version"], first["first_name"]) == (1, "A")
    assert (second["version"], second["first_name"], second["title"]) == (2, "B", "CEO")
    assert third == second
    events = await _events(api, first["id"], 2)
    assert [e["type"] for e in events] == ["contact.created", "contact.updated"]
    assert events[1]["data"]["previous"] == {"first_name": "A"}


async def test_an_upsert_batch_reaching_one_object_by_two_keys_applies_both(api: httpx.AsyncClient) -> None:
    """By external id, then by domain: the same stored company, updated twice in order."""
    stored = await _made(
        api, "/v1/companies", {"name": "Acme", "domain": "acme.example", "external_ids": {"erp": "7"}}
    )
    items = [
        {"name": "Acme One", "external_ids": {"erp": "7"}},
        {"name": "Acme Two", "domain": "acme.example"},
        {"name": "Other", "external_ids": {"erp": "8"}},
        {"name": "Other Two", "external_ids": {"erp": "8"}},
    ]
    r = await api.post("/v1/companies/batch", json={"items": items, "mode": "upsert"})
    results = r.json()["results"]
    assert [x["status"] for x in results] == [200, 200, 201, 200]
    one, two, other, other_two = (x["object"] for x in results)
    assert one["id"] == two["id"] == stored["id"]
    assert [(one["version"], one["name"]), (two["version"], two["name"])] == [
        (2, "Acme One"),
        (3, "Acme Two"),
    ]
    assert other_two["id"] == other["id"] and other_two["name"] == "Other Two" and other_two["version"] == 2


async def test_a_create_batch_naming_a_key_twice_is_still_a_conflict(api: httpx.AsyncClient) -> None:
    email = _email()
    r = await api.post("/v1/contacts/batch", json={"items": [{"email": email}, {"email": email}]})
    assert [x["status"] for x in r.json()["results"]] == [201, 409]


# --- PATCH and null, as the spec says -------------------------------------------------------------------

Make = Callable[[httpx.AsyncClient], Awaitable[str]]
_TARGETS = {"normal": {"first_response_minutes": 60, "resolution_minutes": 480}}


async def _stage_url(api: httpx.AsyncClient) -> str:
    pipeline = await _made(api, "/v1/pipelines", {"name": "P", "stages": [{"name": "A"}, {"name": "B"}]})
    return f"/v1/pipelines/{pipeline['id']}/stages/{pipeline['stages'][0]['id']}"


def _maker(path: str, body: Callable[[], dict[str, Any]]) -> Make:
    async def make(api: httpx.AsyncClient) -> str:
        return f"{path}/{(await _made(api, path, body()))['id']}"

    return make


MAKERS: dict[str, Make] = {
    "/v1/contacts/{id}": _maker("/v1/contacts", lambda: {"email": _email()}),
    "/v1/companies/{id}": _maker("/v1/companies", lambda: {"name": "Acme"}),
    "/v1/deals/{id}": _maker("/v1/deals", lambda: {"name": "D"}),
    "/v1/activities/{id}": _maker("/v1/activities", lambda: {"type": "task", "subject": "Call"}),
    "/v1/tickets/{id}": _maker("/v1/tickets", lambda: {"subject": "S"}),
    "/v1/sla-policies/{id}": _maker("/v1/sla-policies", lambda: {"name": "P", "targets": _TARGETS}),
    # a text field: options apply to enum fields only, which refuse to lose them
    "/v1/custom-fields/{id}": _maker(
        "/v1/custom-fields",
        lambda: {"object_type": "contact", "label": "L", "name": f"f{uuid.uuid4().hex[:8]}", "type": "text"},
    ),
    "/v1/webhooks/{id}": _maker(
        "/v1/webhooks", lambda: {"url": "http://127.0.0.1:9/h", "event_types": ["*"]}
    ),
    "/v1/members/{id}": _maker("/v1/members", lambda: {"email": _email(), "name": "M"}),
    "/v1/teams/{id}": _maker("/v1/teams", lambda: {"name": "T"}),
    # static: a dynamic segment's filter may not be cleared (a null filter is a static segment's)
    "/v1/segments/{id}": _maker(
        "/v1/segments", lambda: {"name": "S", "object_type": "contact", "kind": "static"}
    ),
    "/v1/scoring-rules/{id}": _maker(
        "/v1/scoring-rules",
        lambda: {"name": "R", "activity": {"type": "call", "within_days": 7, "points": 1}},
    ),
    "/v1/automations/{id}": _maker(
        "/v1/automations",
        lambda: {
            "name": "A",
            "trigger": {"type": "event", "event_type": "contact.created"},
            "actions": [{"type": "add_tags", "tags": ["x"]}],
        },
    ),
    "/v1/pipelines/{id}": _maker("/v1/pipelines", lambda: {"name": "P", "stages": [{"name": "A"}]}),
    "/v1/pipelines/{id}/stages/{stage_id}": _stage_url,
}


def _nullable(schema: dict[str, Any]) -> bool:
    options = schema.get("anyOf", [schema])
    return any(o.get("type") == "null" for o in options)


def _patch_fields() -> list[tuple[str, str, bool]]:
    fields = []
    for path, operations in SPEC["paths"].items():
        if "patch" in operations:
            ref = operations["patch"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            properties = SPEC["components"]["schemas"][ref.rsplit("/", 1)[1]]["properties"]
            fields += [(path, name, _nullable(schema)) for name, schema in properties.items()]
    return fields


async def test_every_patch_field_takes_null_exactly_when_the_spec_says_so(api: httpx.AsyncClient) -> None:
    fields = _patch_fields()
    assert set(MAKERS) == {path for path, _, _ in fields}
    assert sum(not nullable for _, _, nullable in fields) >= 19  # name, status, kind, ... say so now
    wrong = []
    for path, name, nullable in fields:
        url = await MAKERS[path](api)
        r = await api.patch(url, json={name: None})
        if nullable and r.status_code != 200:
            wrong.append(
                f"{path} {name}: the spec allows null, the server answers {r.status_code} {r.text[:200]}"
            )
        if not nullable and (r.status_code != 422 or r.json()["errors"][0]["path"] != f"/{name}"):
            wrong.append(f"{path} {name}: the spec refuses null, the server answers {r.status_code}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize(
    "path",
    [
        "/v1/companies/by-external-id/shop/{uuid}",
        "/v1/companies/by-domain/{uuid}.example.com",
        "/v1/deals/by-external-id/shop/{uuid}",
    ],
)
async def test_an_upsert_that_creates_reads_null_as_the_default(api: httpx.AsyncClient, path: str) -> None:
    """An upsert's body is a PATCH's, where null clears a field to its default: when the upsert creates,
    null is that default too, not a 422 from the create schema (found by schemathesis)."""
    url = path.format(uuid=uuid.uuid4().hex)
    r = await api.put(url, json={"name": "N", "tags": None, "custom_fields": None, "owner_id": None})
    assert r.status_code == 201, r.text
    assert r.json()["tags"] == [] and r.json()["custom_fields"] == {}
    # a field that cannot be empty is still refused by name
    r = await api.put(path.format(uuid=uuid.uuid4().hex), json={"name": None})
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "/name", r.text
