"""A merge moves order deals to the survivor, and their lifetime value and order count move with them."""

from __future__ import annotations

import asyncpg
import httpx


def _order(email: str, total: str) -> dict[str, object]:
    return {
        "customer": {"email": email, "first_name": "Ada"},
        "order_number": "#1",
        "status": "paid",
        "currency": "EUR",
        "totals": {"total": total},
        "placed_at": "2026-11-25T10:00:00Z",
        "updated_at": "2026-11-25T10:00:00Z",
        "line_items": [{"sku": "A", "name": "A", "quantity": 1, "unit_price": total}],
    }


async def test_merge_moves_lifetime_value_and_order_count(api: httpx.AsyncClient) -> None:
    first = await api.put("/v1/orders/shop/1", json=_order("ada@example.com", "100.00"))
    second = await api.put("/v1/orders/shop/2", json=_order("ada.l@example.com", "20.50"))
    assert first.status_code == 201 and second.status_code == 201, (first.text, second.text)
    survivor, other = first.json()["contact_id"], second.json()["contact_id"]
    assert survivor != other

    merged = await api.post(f"/v1/contacts/{survivor}/merge", json={"from": [other]})
    assert merged.status_code == 200, merged.text
    body = merged.json()["survivor"]
    assert (body["lifetime_value"], body["order_count"]) == ({"EUR": "120.50"}, 2)
    kept = (await api.get(f"/v1/contacts/{survivor}")).json()
    assert (kept["lifetime_value"], kept["order_count"]) == ({"EUR": "120.50"}, 2)
    gone = await api.get(f"/v1/contacts/{other}", follow_redirects=False)
    assert gone.status_code == 301
    # the merged record keeps nothing of the orders (its deal now belongs to the survivor)
    rows = await api.post("/v1/contacts/search", json={"include_archived": True, "filter": {
        "field": "id", "op": "eq", "value": other}})  # fmt: skip
    assert [(c["lifetime_value"], c["order_count"]) for c in rows.json()["data"]] == [({}, 0)]


async def test_the_moved_aggregates_are_one_new_version_each(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    """The moved won deals refresh their contacts as any deal write does (its upkeep), after the orders
    moved, so each contact's lifetime value and order count change together, in one version and event."""
    first = await api.put("/v1/orders/shop/1", json=_order("ada@example.com", "100.00"))
    second = await api.put("/v1/orders/shop/2", json=_order("ada.l@example.com", "20.50"))
    survivor, other = first.json()["contact_id"], second.json()["contact_id"]
    merged = await api.post(f"/v1/contacts/{survivor}/merge", json={"from": [other]})
    assert merged.status_code == 200, merged.text
    rows = await pool.fetch(
        "SELECT object_id::text AS id, data->'previous' AS previous FROM events "
        "WHERE workspace_id = $1 AND type = 'contact.updated' AND data->'previous' ? 'order_count' "
        "ORDER BY sequence",
        api.workspace_id,  # type: ignore[attr-defined]
    )
    after_merge = {(r["id"], tuple(sorted(r["previous"]))) for r in rows[-2:]}
    assert after_merge == {
        (survivor, ("lifetime_value", "order_count")),
        (other, ("lifetime_value", "order_count")),
    }
