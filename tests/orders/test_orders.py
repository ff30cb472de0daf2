"""Orders from ecommerce platforms: the lifecycle (pending, paid, refunded) replayed with retries and
out-of-order versions, 50 parallel pushes of one order, batches with a bad item, validation, and the
line-items route."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import httpx

from crm_api.orders.schemas import MAX_LINE_ITEMS

URL = "/v1/orders/shopify/1001"


def _order(status: str, clock: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "customer": {"email": "Ada@Example.com", "first_name": "Ada", "last_name": "Lovelace"},
        "company": {"name": "Analytical Engines", "domain": "https://www.engines.example/"},
        "order_number": "#1001",
        "status": status,
        "currency": "EUR",
        "totals": {"subtotal": "100.00", "discount": "0", "tax": "19.00", "shipping": "1.00", "total": "120"},
        "placed_at": "2026-11-25T10:00:00Z",
        "updated_at": clock,
        "line_items": [
            {"sku": "ENG-1", "name": "Engine", "quantity": 1, "unit_price": "80.00", "tax": "15.20"},
            {"sku": "CARD", "name": "Punch cards", "quantity": 4, "unit_price": "5", "discount": "0"},
        ],
    }
    body.update(extra)
    return body


async def _events(api: httpx.AsyncClient, object_id: str, at_least: int) -> list[str]:
    """The event feed shows an event once every older event writer has ended: poll for a while."""
    types: list[str] = []
    for _ in range(300):
        r = await api.get("/v1/events", params={"object_id": object_id, "limit": 200})
        assert r.status_code == 200, r.text
        types = [e["type"] for e in sorted(r.json()["data"], key=lambda e: e["sequence"])]
        if len(types) >= at_least:
            return types
        await asyncio.sleep(0.1)
    return types


async def _state(api: httpx.AsyncClient, order: dict[str, Any]) -> dict[str, Any]:
    contact = (await api.get(f"/v1/contacts/{order['contact_id']}")).json()
    deal = (await api.get(f"/v1/deals/{order['deal_id']}")).json()
    items = (await api.get(f"/v1/deals/{order['deal_id']}/line-items")).json()["data"]
    return {"contact": contact, "deal": deal, "items": items}


async def _stages(api: httpx.AsyncClient) -> dict[str, str]:
    data = (await api.get("/v1/pipelines")).json()["data"]
    p = next(p for p in data if p["is_default"])
    first_open = next(s["id"] for s in p["stages"] if s["kind"] == "open")
    won = next(s["id"] for s in p["stages"] if s["kind"] == "won")
    lost = next(s["id"] for s in p["stages"] if s["kind"] == "lost")
    return {"open": first_open, "won": won, "lost": lost}


async def test_order_lifecycle_with_retries_and_out_of_order_versions(api: httpx.AsyncClient) -> None:
    stages = await _stages(api)
    pending = _order("pending", "2026-11-25T10:00:00Z")
    paid = _order("paid", "2026-11-25T11:00:00Z")
    refunded = _order("refunded", "2026-11-25T12:00:00Z")

    r = await api.put(URL, json=pending)
    assert r.status_code == 201, r.text
    first = r.json()
    assert first["object"] == "order" and first["status"] == "pending" and first["company_id"]
    assert [i["sku"] for i in first["line_items"]] == ["ENG-1", "CARD"]
    s = await _state(api, first)
    assert s["contact"]["email"] == "ada@example.com" and s["contact"]["company_id"] == first["company_id"]
    assert s["contact"]["order_count"] == 1 and s["contact"]["lifetime_value"] == {}
    assert s["deal"]["stage_id"] == stages["open"] and s["deal"]["status"] == "open"
    assert s["deal"]["amount"] == "120.00" and s["deal"]["currency"] == "EUR"
    assert s["deal"]["external_ids"] == {"shopify": "1001"} and s["deal"]["contact_id"] == first["contact_id"]
    assert [(i["position"], i["quantity"], i["unit_price"]) for i in s["items"]] == [
        (0, 1, "80.00"),
        (1, 4, "5.00"),
    ]
    company = (await api.get(f"/v1/companies/{first['company_id']}")).json()
    assert company["domain"] == "engines.example" and company["name"] == "Analytical Engines"

    # the whole lifecycle twice, each step retried, with stale versions pushed in between
    for _ in range(2):
        for body in (pending, paid, pending, paid, refunded, paid, refunded, pending):
            r = await api.put(URL, json=body)
            assert r.status_code == 200, r.text
            assert r.json()["deal_id"] == first["deal_id"]

    s = await _state(api, first)
    assert s["deal"]["stage_id"] == stages["lost"] and s["deal"]["status"] == "lost"
    assert s["deal"]["lost_reason"] == "refunded"
    assert s["contact"]["lifetime_value"] == {} and s["contact"]["order_count"] == 1
    assert r.json()["status"] == "refunded" and r.json()["updated_at"] == "2026-11-25T12:00:00Z"

    deal_events = await _events(api, first["deal_id"], 7)
    # only the first pending, the first paid and the first refunded changed anything
    assert deal_events == [
        "deal.created",
        "deal.updated",
        "deal.stage_changed",
        "deal.won",
        "deal.updated",
        "deal.stage_changed",
        "deal.lost",
    ]
    contact_events = await _events(api, first["contact_id"], 4)
    # created (linked to the company), lifetime value/order count after pending, paid and refunded
    assert contact_events == ["contact.created", "contact.updated", "contact.updated", "contact.updated"]
    company_events = await _events(api, first["company_id"], 1)
    assert company_events == ["company.created"]

    # the aggregates are the CRM's to keep: clients cannot write them
    r = await api.patch(f"/v1/contacts/{first['contact_id']}", json={"order_count": 7})
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "/order_count"


async def test_lifetime_value_follows_paid_and_refunded_orders(api: httpx.AsyncClient) -> None:
    r = await api.put(URL, json=_order("paid", "2026-11-25T11:00:00Z"))
    assert r.status_code == 201, r.text
    order = r.json()
    usd = _order("fulfilled", "2026-11-25T11:00:00Z", currency="USD")
    usd["totals"]["total"] = "10.5"
    assert (await api.put("/v1/orders/shopify/1002", json=usd)).status_code == 201
    s = await _state(api, order)
    assert s["contact"]["lifetime_value"] == {"EUR": "120.00", "USD": "10.50"}
    assert s["contact"]["order_count"] == 2
    assert s["deal"]["status"] == "won" and s["deal"]["lost_reason"] is None

    # a newer version with other line items replaces them; a refund lowers the lifetime value
    newer = _order("refunded", "2026-11-25T13:00:00Z")
    newer["line_items"] = [{"name": "Gift", "quantity": 2, "unit_price": "1"}]
    r = await api.put(URL, json=newer)
    assert r.status_code == 200 and [i["name"] for i in r.json()["line_items"]] == ["Gift"]
    s = await _state(api, order)
    assert s["contact"]["lifetime_value"] == {"USD": "10.50"} and s["contact"]["order_count"] == 2
    assert [i["name"] for i in s["items"]] == ["Gift"]

    # the same clock again with the same content is a replay; a newer clock with the same content too
    before = s["contact"]["version"]
    newer["updated_at"] = "2026-11-25T14:00:00Z"
    assert (await api.put(URL, json=newer)).status_code == 200
    assert (await api.get(f"/v1/contacts/{order['contact_id']}")).json()["version"] == before


async def test_the_customer_changes_between_versions(api: httpx.AsyncClient) -> None:
    r = await api.put(URL, json=_order("paid", "2026-11-25T11:00:00Z"))
    old = r.json()
    moved = _order("paid", "2026-11-25T12:00:00Z", company=None)
    moved["customer"] = {"email": "grace@example.com"}
    r = await api.put(URL, json=moved)
    assert r.status_code == 200, r.text
    new = r.json()
    assert new["contact_id"] != old["contact_id"] and new["deal_id"] == old["deal_id"]
    before = (await api.get(f"/v1/contacts/{old['contact_id']}")).json()
    after = (await api.get(f"/v1/contacts/{new['contact_id']}")).json()
    assert (before["order_count"], before["lifetime_value"]) == (0, {})
    assert (after["order_count"], after["lifetime_value"]) == (1, {"EUR": "120.00"})


async def test_fifty_parallel_pushes_leave_one_deal(api: httpx.AsyncClient) -> None:
    body = _order("paid", "2026-11-25T11:00:00Z")
    responses = await asyncio.gather(*(api.put("/v1/orders/shopify/race", json=body) for _ in range(50)))
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] * 49 + [201], [r.text for r in responses if r.status_code >= 300]
    assert len({r.json()["deal_id"] for r in responses}) == 1
    deals = (await api.get("/v1/deals", params={"source": "shopify"})).json()["data"]
    assert len(deals) == 1
    contacts = (await api.get("/v1/contacts", params={"email": "ada@example.com"})).json()["data"]
    assert len(contacts) == 1 and contacts[0]["order_count"] == 1
    assert contacts[0]["lifetime_value"] == {"EUR": "120.00"}


async def test_parallel_pushes_of_every_version_end_at_the_newest(api: httpx.AsyncClient) -> None:
    versions = [
        _order("pending", "2026-11-25T10:00:00Z"),
        _order("paid", "2026-11-25T11:00:00Z"),
        _order("refunded", "2026-11-25T12:00:00Z"),
    ]
    url = "/v1/orders/shopify/shuffle"
    responses = await asyncio.gather(*(api.put(url, json=versions[n % 3]) for n in range(30)))
    assert sorted(r.status_code for r in responses) == [200] * 29 + [201]
    final = (await api.put(url, json=versions[1])).json()
    assert final["status"] == "refunded"
    deal = (await api.get(f"/v1/deals/{final['deal_id']}")).json()
    assert (deal["status"], deal["lost_reason"]) == ("lost", "refunded")
    contact = (await api.get(f"/v1/contacts/{final['contact_id']}")).json()
    assert (contact["order_count"], contact["lifetime_value"]) == (1, {})


async def test_idempotency_key_replays_the_first_answer(api: httpx.AsyncClient) -> None:
    headers = {"Idempotency-Key": "order-1001-v1"}
    body = _order("paid", "2026-11-25T11:00:00Z")
    first = await api.put(URL, json=body, headers=headers)
    again = await api.put(URL, json=body, headers=headers)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.headers["idempotent-replayed"] == "true" and again.json() == first.json()
    other = await api.put(URL, json=_order("refunded", "2026-11-25T12:00:00Z"), headers=headers)
    assert other.status_code == 422


async def test_batch_with_a_bad_item(api: httpx.AsyncClient) -> None:
    def item(external_id: str, order: dict[str, Any], source: str = "shopify") -> dict[str, Any]:
        return {"source": source, "external_id": external_id, "order": order}

    good = item("b1", _order("paid", "2026-11-25T11:00:00Z"))
    bad = item("b2", _order("paid", "2026-11-25T11:00:00Z"))
    bad["order"]["line_items"][0]["quantity"] = -1
    bad_domain = item("b3", _order("paid", "2026-11-25T11:00:00Z", company={"domain": "not a domain"}))
    other = item("b1", _order("pending", "2026-11-25T11:00:00Z"), source="woo")
    r = await api.post("/v1/orders/batch", json={"items": [good, bad, bad_domain, other, good]})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["status"] for x in results] == [201, 422, 422, 201, 200]
    assert [x.get("object") is None for x in results] == [False, True, True, False, False]
    assert results[1]["error"]["errors"][0]["path"] == "/items/1/order/line_items/0/quantity"
    assert results[2]["error"]["errors"][0]["path"] == "/items/2/order/company/domain"
    assert results[0]["object"]["deal_id"] == results[4]["object"]["deal_id"]
    assert results[0]["object"]["deal_id"] != results[3]["object"]["deal_id"]
    contact = (await api.get(f"/v1/contacts/{results[0]['object']['contact_id']}")).json()
    assert contact["order_count"] == 2 and contact["lifetime_value"] == {"EUR": "120.00"}
    r = await api.post("/v1/orders/batch", json={"items": [{}] * 501})
    assert r.status_code == 422
    r = await api.post("/v1/orders/batch", json={"items": [{"source": "x"}]})
    assert r.status_code == 200 and r.json()["results"][0]["status"] == 422


async def test_validation_names_the_field(api: httpx.AsyncClient) -> None:
    cases: list[tuple[dict[str, Any], str]] = []
    body = _order("paid", "2026-11-25T11:00:00Z")
    cases.append((body | {"customer": {"email": "not-an-email"}}, "/customer/email"))
    cases.append((body | {"status": "shipped"}, "/status"))
    cases.append((body | {"currency": "EURO"}, "/currency"))
    cases.append((body | {"order_number": "a\x00b"}, "/order_number"))
    neg = copy.deepcopy(body)
    neg["line_items"][1]["quantity"] = -3
    cases.append((neg, "/line_items/1/quantity"))
    many = body | {"line_items": [{"name": "x", "quantity": 1, "unit_price": "1"}] * (MAX_LINE_ITEMS + 1)}
    cases.append((many, "/line_items"))
    cases.append((body | {"company": {"domain": "nope"}}, "/company/domain"))
    cases.append((body | {"totals": {"total": "-1"}}, "/totals/total"))
    for payload, path in cases:
        r = await api.put(URL, json=payload)
        assert r.status_code == 422, (path, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert path in [e["path"] for e in r.json()["errors"]], (path, r.json())
    assert (await api.get("/v1/deals", params={"source": "shopify"})).json()["data"] == []


async def test_line_items_are_paged_and_scoped_to_the_workspace(
    api: httpx.AsyncClient, make_client: Any
) -> None:
    body = _order("paid", "2026-11-25T11:00:00Z")
    body["line_items"] = [{"name": f"item {n}", "quantity": n, "unit_price": "1"} for n in range(5)]
    order = (await api.put(URL, json=body)).json()
    url = f"/v1/deals/{order['deal_id']}/line-items"
    page = (await api.get(url, params={"limit": 3})).json()
    assert [i["quantity"] for i in page["data"]] == [0, 1, 2] and page["has_more"]
    rest = (await api.get(url, params={"limit": 3, "cursor": page["next_cursor"]})).json()
    assert [i["quantity"] for i in rest["data"]] == [3, 4] and not rest["has_more"]
    other = await make_client()
    r = await other.get(url)
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem+json")
    # the order route needs the orders scope
    reader = await make_client(scopes=["deals:read"])
    assert (await reader.put(URL, json=body)).status_code == 403
