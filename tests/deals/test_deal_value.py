"""A contact's lifetime value follows its won deals, whichever route changes them."""

from __future__ import annotations

import httpx


async def _stage(api: httpx.AsyncClient, pipeline_id: str, kind: str) -> str:
    stages = (await api.get(f"/v1/pipelines/{pipeline_id}")).json()["stages"]
    return str(next(s["id"] for s in stages if s["kind"] == kind))


async def _value(api: httpx.AsyncClient, contact_id: str) -> dict[str, str]:
    value: dict[str, str] = (await api.get(f"/v1/contacts/{contact_id}")).json()["lifetime_value"]
    return value


async def test_winning_losing_and_moving_a_deal_by_hand_keep_lifetime_value(api: httpx.AsyncClient) -> None:
    ann = (await api.post("/v1/contacts", json={"email": "ann@example.com"})).json()["id"]
    bob = (await api.post("/v1/contacts", json={"email": "bob@example.com"})).json()["id"]
    deal = (
        await api.post(
            "/v1/deals", json={"name": "D", "amount": "50.00", "currency": "EUR", "contact_id": ann}
        )
    ).json()
    won, lost = await _stage(api, deal["pipeline_id"], "won"), await _stage(api, deal["pipeline_id"], "lost")
    assert await _value(api, ann) == {}

    r = await api.patch(f"/v1/deals/{deal['id']}", json={"stage_id": won})
    assert r.status_code == 200 and r.json()["status"] == "won"
    assert await _value(api, ann) == {"EUR": "50.00"}

    # a second won deal in another currency, created won through the batch endpoint
    batch = await api.post(
        "/v1/deals/batch",
        json={
            "items": [{"name": "E", "amount": "7.5", "currency": "USD", "contact_id": ann, "stage_id": won}]
        },
    )
    assert batch.json()["results"][0]["status"] == 201
    assert await _value(api, ann) == {"EUR": "50.00", "USD": "7.50"}

    # the won deal moves to another contact: both are refreshed
    await api.patch(f"/v1/deals/{deal['id']}", json={"contact_id": bob})
    assert await _value(api, ann) == {"USD": "7.50"}
    assert await _value(api, bob) == {"EUR": "50.00"}

    await api.patch(f"/v1/deals/{deal['id']}", json={"stage_id": lost})
    assert await _value(api, bob) == {}
