"""Deals moved off a removed stage go through the deal rules in full, upkeep included: a contact's lifetime
value follows its deals when their stage's removal wins or loses them."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx


async def _default(api: httpx.AsyncClient) -> dict[str, Any]:
    data = (await api.get("/v1/pipelines")).json()["data"]
    return next(p for p in data if p["is_default"])


def _stage(pipeline: dict[str, Any], name: str) -> str:
    return str(next(s["id"] for s in pipeline["stages"] if s["name"] == name))


async def _contact(api: httpx.AsyncClient, contact_id: str) -> dict[str, Any]:
    body: dict[str, Any] = (await api.get(f"/v1/contacts/{contact_id}")).json()
    return body


async def test_moving_deals_off_a_removed_won_stage_refreshes_lifetime_value(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    p = await _default(api)
    url = f"/v1/pipelines/{p['id']}"
    added = await api.post(f"{url}/stages", json={"name": "Won online", "kind": "won"})
    assert added.status_code == 200, added.text
    p = added.json()
    ann = (await api.post("/v1/contacts", json={"email": "ann@example.com"})).json()["id"]
    deal = await api.post(
        "/v1/deals",
        json={
            "name": "Big",
            "amount": "120.00",
            "currency": "EUR",
            "contact_id": ann,
            "stage_id": _stage(p, "Won online"),
        },
    )
    assert deal.status_code == 201 and deal.json()["status"] == "won"
    before = await _contact(api, ann)
    assert before["lifetime_value"] == {"EUR": "120.00"}

    # the removed won stage's deals go to a lost stage: no longer won, so no longer counted
    r = await api.delete(
        f"{url}/stages/{_stage(p, 'Won online')}", params={"move_to_stage_id": _stage(p, "Lost")}
    )
    assert r.status_code == 200, r.text
    moved = (await api.get(f"/v1/deals/{deal.json()['id']}")).json()
    assert moved["status"] == "lost" and moved["stage_id"] == _stage(p, "Lost")
    after = await _contact(api, ann)
    assert after["lifetime_value"] == {}
    assert after["version"] == before["version"] + 1

    # the contact's change is recorded like any other: one contact.updated with the previous value
    events = await pool.fetch(
        "SELECT type, data FROM events WHERE workspace_id = $1 AND object_id = $2 ORDER BY sequence",
        api.workspace_id,  # type: ignore[attr-defined]
        uuid.UUID(ann),
    )
    last = events[-1]
    assert last["type"] == "contact.updated"
    assert last["data"]["previous"] == {"lifetime_value": {"EUR": "120.00"}}
    assert last["data"]["object"]["lifetime_value"] == {}


async def test_moving_deals_off_a_removed_open_stage_into_a_won_one_counts_them(
    api: httpx.AsyncClient,
) -> None:
    p = await _default(api)
    url = f"/v1/pipelines/{p['id']}"
    bob = (await api.post("/v1/contacts", json={"email": "bob@example.com"})).json()["id"]
    for amount in ("10.00", "5.50"):
        r = await api.post(
            "/v1/deals",
            json={
                "name": "Open",
                "amount": amount,
                "currency": "USD",
                "contact_id": bob,
                "stage_id": _stage(p, "Negotiation"),
            },
        )
        assert r.status_code == 201 and r.json()["status"] == "open"
    assert (await _contact(api, bob))["lifetime_value"] == {}

    r = await api.delete(
        f"{url}/stages/{_stage(p, 'Negotiation')}", params={"move_to_stage_id": _stage(p, "Won")}
    )
    assert r.status_code == 200, r.text
    assert (await _contact(api, bob))["lifetime_value"] == {"USD": "15.50"}
