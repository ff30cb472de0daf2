"""Merged records are left out of the reports and the aggregates unless ``include_archived=true``: a
contact merged into another leaves attribution, lead conversion, the customers report and the contacts'
aggregate (what the merge moved to the survivor, its order and the order's won deal, counts once, for the
survivor); a merged company leaves the companies' aggregate."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx
from report_data import at

Q1 = {"from": "2026-01-01", "to": "2026-03-31"}


async def _contact(api: httpx.AsyncClient, pool: asyncpg.Pool, email: str, source: str, day: str) -> str:
    """A lead of ``source`` created, and made a lead, on ``day``."""
    made = await api.post("/v1/contacts", json={"email": email, "lifecycle_stage": "lead", "source": source})
    assert made.status_code == 201, made.text
    cid = uuid.UUID(made.json()["id"])
    ws = api.workspace_id  # type: ignore[attr-defined]
    moment = at(f"{day}T00:00:00Z")
    await pool.execute(
        "UPDATE contacts SET created_at = $3 WHERE workspace_id = $1 AND id = $2", ws, cid, moment
    )
    await pool.execute(
        "UPDATE contact_lifecycle_changes SET changed_at = $3 WHERE workspace_id = $1 AND contact_id = $2",
        ws,
        cid,
        moment,
    )
    return str(cid)


async def _count(api: httpx.AsyncClient, resource: str, archived: bool) -> list[Any]:
    answer = await api.post(
        f"/v1/{resource}/aggregate",
        json={
            "metrics": [{"op": "count"}],
            "group_by": ["name" if resource == "companies" else "source"],
            "include_archived": archived,
        },
    )
    assert answer.status_code == 200, answer.text
    return [(next(iter(r["group"].values())), r["values"]["count"]) for r in answer.json()["rows"]]


async def test_merged_records_are_left_out(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    kept = await _contact(api, pool, "s@example.com", "web", "2026-01-10")
    gone = await _contact(api, pool, "l@example.com", "ads", "2026-01-12")
    order = {
        "customer": {"email": "l@example.com"},
        "status": "paid",
        "currency": "USD",
        "totals": {"total": "40.00"},
        "placed_at": "2026-02-01T10:00:00Z",
        "updated_at": "2026-02-01T10:00:00Z",
    }
    assert (await api.put("/v1/orders/shop/m-1", json=order)).status_code == 201
    before = (await api.get("/v1/reports/attribution", params=Q1)).json()["sources"]
    assert [(s["source"], s["contacts"], s["customers"]) for s in before] == [("ads", 1, 1), ("web", 1, 0)]

    merged = await api.post(f"/v1/contacts/{kept}/merge", json={"from": [gone]})
    assert merged.status_code == 200, merged.text

    attribution = (await api.get("/v1/reports/attribution", params=Q1)).json()["sources"]
    assert attribution == [
        {"source": "web", "contacts": 1, "leads": 1, "customers": 1, "won_amount": {"USD": "40.00"}}
    ]
    lead = {"leads": 1, "converted": 0, "conversion_rate": 0.0, "median_days_to_customer": None}
    leads = (await api.get("/v1/reports/lead-conversion", params={**Q1, "group_by": "source"})).json()
    assert [p for p in leads["periods"] if p["leads"]] == [
        {"period_start": "2026-01-01", "source": "web", **lead}
    ]
    customers = (await api.get("/v1/reports/customers", params={"as_of": "2026-06-01T00:00:00Z"})).json()
    assert customers["customers"] == 1
    assert customers["lifetime_value"] == {"customers": 1, "mean": "40.00", "median": "40.00", "p90": "40.00"}
    assert await _count(api, "contacts", False) == [("web", 1)]

    everything = {**Q1, "include_archived": "true"}
    attribution = (await api.get("/v1/reports/attribution", params=everything)).json()["sources"]
    assert attribution == [
        {"source": "ads", "contacts": 1, "leads": 1, "customers": 0, "won_amount": {}},
        {"source": "web", "contacts": 1, "leads": 1, "customers": 1, "won_amount": {"USD": "40.00"}},
    ]
    leads = (await api.get("/v1/reports/lead-conversion", params={**everything, "group_by": "source"})).json()
    assert [p for p in leads["periods"] if p["leads"]] == [
        {"period_start": "2026-01-01", "source": "ads", **lead},
        {"period_start": "2026-01-01", "source": "web", **lead},
    ]
    customers = (
        await api.get(
            "/v1/reports/customers", params={"as_of": "2026-06-01T00:00:00Z", "include_archived": "true"}
        )
    ).json()
    assert customers["customers"] == 1  # the merged contact's order is the survivor's now
    assert await _count(api, "contacts", True) == [("ads", 1), ("web", 1)]

    first = (await api.post("/v1/companies", json={"name": "Acme"})).json()
    second = (await api.post("/v1/companies", json={"name": "Acme Inc"})).json()
    assert (
        await api.post(f"/v1/companies/{first['id']}/merge", json={"from": [second["id"]]})
    ).status_code == 200
    assert await _count(api, "companies", False) == [("Acme", 1)]
    assert await _count(api, "companies", True) == [("Acme", 1), ("Acme Inc", 1)]
