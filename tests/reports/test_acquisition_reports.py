"""Lead conversion (from the lifecycle history the events trigger keeps) and attribution (contacts by
acquisition source), on contacts with known histories; contacts' ``source`` through the API and orders."""

from __future__ import annotations

import csv
import io
import uuid
from typing import Any

import asyncpg
import httpx
from clients import MakeClient
from report_data import at

Q1 = {"from": "2026-01-01", "to": "2026-03-31"}


async def _contact(
    api: httpx.AsyncClient, pool: asyncpg.Pool, stages: list[tuple[str, str]], **fields: Any
) -> str:
    """A contact that entered each lifecycle stage at its moment, through the API (so the trigger records
    each), the moments then rewritten."""
    made = await api.post("/v1/contacts", json={"lifecycle_stage": stages[0][0], **fields})
    assert made.status_code == 201, made.text
    cid = made.json()["id"]
    for stage, _ in stages[1:]:
        assert (await api.patch(f"/v1/contacts/{cid}", json={"lifecycle_stage": stage})).status_code == 200
    ws = api.workspace_id  # type: ignore[attr-defined]
    rows = await pool.fetch(
        "SELECT id, from_stage, to_stage FROM contact_lifecycle_changes WHERE workspace_id = $1 "
        "AND contact_id = $2 ORDER BY changed_at, id",
        ws,
        uuid.UUID(cid),
    )
    assert [r["to_stage"] for r in rows] == [s for s, _ in stages]
    assert [r["from_stage"] for r in rows] == [None, *(s for s, _ in stages[:-1])]
    for row, (_, moment) in zip(rows, stages, strict=True):
        await pool.execute(
            "UPDATE contact_lifecycle_changes SET changed_at = $3 WHERE workspace_id = $1 AND id = $2",
            ws,
            row["id"],
            at(moment),
        )
    return str(cid)


def _period(body: dict[str, Any], start: str, source: str | None = None) -> dict[str, Any]:
    found = [p for p in body["periods"] if p["period_start"] == start and p.get("source") == source]
    assert len(found) == 1, (start, source, body["periods"])
    return {k: v for k, v in found[0].items() if k not in ("period_start", "source")}


async def test_lead_conversion_from_the_lifecycle_history(
    make_client: MakeClient, pool: asyncpg.Pool
) -> None:
    api = await make_client()
    await _contact(
        api, pool, [("lead", "2026-01-05T00:00:00Z"), ("customer", "2026-01-15T00:00:00Z")], source="ads"
    )
    await _contact(
        api, pool, [("lead", "2026-01-20T00:00:00Z"), ("customer", "2026-03-01T00:00:00Z")], source="ads"
    )
    # 1 February 03:00 UTC: 31 January in New York
    await _contact(api, pool, [("lead", "2026-02-01T03:00:00Z")], source="web")
    await _contact(
        api,
        pool,
        [
            ("subscriber", "2026-01-02T00:00:00Z"),
            ("lead", "2026-02-10T00:00:00Z"),
            ("customer", "2026-02-12T12:00:00Z"),
        ],
    )
    # a customer before it was a lead: not a conversion
    await _contact(
        api, pool, [("customer", "2026-01-03T00:00:00Z"), ("lead", "2026-01-10T00:00:00Z")], source="web"
    )
    gone = await _contact(api, pool, [("lead", "2026-01-07T00:00:00Z")])
    assert (await api.delete(f"/v1/contacts/{gone}")).status_code == 200
    other = await make_client()
    assert (await other.post("/v1/contacts", json={"lifecycle_stage": "lead"})).status_code == 201

    answer = await api.get("/v1/reports/lead-conversion", params=Q1)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [p["period_start"] for p in body["periods"]] == ["2026-01-01", "2026-02-01", "2026-03-01"]
    assert _period(body, "2026-01-01") == {
        "leads": 3,
        "converted": 2,
        "conversion_rate": 0.6667,
        "median_days_to_customer": 25.0,
    }
    assert _period(body, "2026-02-01") == {
        "leads": 2,
        "converted": 1,
        "conversion_rate": 0.5,
        "median_days_to_customer": 2.5,
    }
    assert _period(body, "2026-03-01") == {
        "leads": 0,
        "converted": 0,
        "conversion_rate": None,
        "median_days_to_customer": None,
    }
    ny = (await api.get("/v1/reports/lead-conversion", params={**Q1, "tz": "America/New_York"})).json()
    assert (_period(ny, "2026-01-01")["leads"], _period(ny, "2026-01-01")["conversion_rate"]) == (4, 0.5)
    by_source = (await api.get("/v1/reports/lead-conversion", params={**Q1, "group_by": "source"})).json()
    assert len(by_source["periods"]) == 3 * 3
    assert _period(by_source, "2026-01-01", "ads") == {
        "leads": 2,
        "converted": 2,
        "conversion_rate": 1.0,
        "median_days_to_customer": 25.0,
    }
    assert _period(by_source, "2026-01-01", "web")["converted"] == 0
    assert _period(by_source, "2026-02-01", None)["median_days_to_customer"] == 2.5
    archived = (
        await api.get("/v1/reports/lead-conversion", params={**Q1, "include_archived": "true"})
    ).json()
    assert _period(archived, "2026-01-01")["leads"] == 4
    sheet = await api.get("/v1/reports/lead-conversion", params=Q1, headers={"Accept": "text/csv"})
    rows = list(csv.reader(io.StringIO(sheet.text)))
    assert rows[0] == ["period_start", "leads", "converted", "conversion_rate", "median_days_to_customer"]
    assert rows[1] == ["2026-01-01", "3", "2", "0.6667", "25.0"]


async def _created(api: httpx.AsyncClient, pool: asyncpg.Pool, cid: str, moment: str) -> None:
    await pool.execute(
        "UPDATE contacts SET created_at = $3 WHERE workspace_id = $1 AND id = $2",
        api.workspace_id,  # type: ignore[attr-defined]
        uuid.UUID(cid),
        at(moment),
    )


async def _won(api: httpx.AsyncClient, cid: str, amount: str, currency: str) -> None:
    pipe = next(p for p in (await api.get("/v1/pipelines")).json()["data"] if p["is_default"])
    won = next(s["id"] for s in pipe["stages"] if s["kind"] == "won")
    body = {"name": "d", "contact_id": cid, "stage_id": won, "amount": amount, "currency": currency}
    assert (await api.post("/v1/deals", json=body)).status_code == 201


async def test_attribution_by_source(make_client: MakeClient, pool: asyncpg.Pool) -> None:
    api = await make_client()
    p1 = (
        await api.post(
            "/v1/contacts", json={"source": "ads", "source_detail": "utm:spring", "lifecycle_stage": "lead"}
        )
    ).json()
    p2 = (await api.post("/v1/contacts", json={"source": "ads", "lifecycle_stage": "lead"})).json()
    p3 = (await api.post("/v1/contacts", json={"source": "web", "lifecycle_stage": "lead"})).json()
    p4 = (await api.post("/v1/contacts", json={"lifecycle_stage": "subscriber"})).json()
    assert (await api.patch(f"/v1/contacts/{p4['id']}", json={"lifecycle_stage": "lead"})).status_code == 200
    # an order sets the source of the contact it creates; a later order does not re-attribute it
    order = {
        "status": "paid",
        "currency": "USD",
        "totals": {"total": "70.00"},
        "updated_at": "2026-01-05T00:00:00Z",
    }
    first = {**order, "customer": {"email": "p5@example.com", "source": "web", "source_detail": "utm:x"}}
    assert (await api.put("/v1/orders/shop/1", json=first)).status_code == 201
    later = {**order, "customer": {"email": "p5@example.com", "source": "ads"}}
    assert (await api.put("/v1/orders/shop/2", json=later)).status_code == 201
    p5 = (await api.get("/v1/contacts", params={"email": "p5@example.com"})).json()["data"][0]
    assert (p5["source"], p5["source_detail"]) == ("web", "utm:x")
    gone = (await api.post("/v1/contacts", json={"source": "ads"})).json()
    old = (await api.post("/v1/contacts", json={"source": "ads"})).json()
    await _won(api, p1["id"], "100.00", "USD")
    await _won(api, p2["id"], "50.00", "EUR")
    await _won(api, gone["id"], "999.00", "USD")
    assert (await api.delete(f"/v1/contacts/{gone['id']}")).status_code == 200
    for contact, moment in ((p1, "01"), (p2, "02"), (p3, "03"), (p4, "04"), (p5, "05"), (gone, "06")):
        await _created(api, pool, contact["id"], f"2026-01-{moment}T00:00:00Z")
    await _created(api, pool, old["id"], "2025-12-31T20:00:00Z")
    listed = (await api.get("/v1/contacts", params={"source": "web"})).json()["data"]
    assert {c["id"] for c in listed} == {p3["id"], p5["id"]}
    other = await make_client()
    assert (await other.post("/v1/contacts", json={"source": "ads"})).status_code == 201

    answer = await api.get("/v1/reports/attribution", params=Q1)
    assert answer.status_code == 200, answer.text
    assert answer.json()["sources"] == [
        {
            "source": "ads",
            "contacts": 2,
            "leads": 2,
            "customers": 2,
            "won_amount": {"EUR": "50.00", "USD": "100.00"},
        },
        # p5 bought two orders: 140.00 in won deals
        {"source": "web", "contacts": 2, "leads": 1, "customers": 1, "won_amount": {"USD": "140.00"}},
        {"source": None, "contacts": 1, "leads": 1, "customers": 0, "won_amount": {}},
    ]
    # the contact created on 31 December 20:00 UTC was created on 1 January in Tokyo
    wider = (await api.get("/v1/reports/attribution", params={**Q1, "tz": "Asia/Tokyo"})).json()
    assert wider["sources"][0]["contacts"] == 3
    sheet = await api.get("/v1/reports/attribution", params=Q1, headers={"Accept": "text/csv"})
    rows = list(csv.reader(io.StringIO(sheet.text)))
    assert rows[0] == ["source", "contacts", "leads", "customers", "won_amount.EUR", "won_amount.USD"]
    assert rows[3] == ["", "1", "1", "0", "", ""]
