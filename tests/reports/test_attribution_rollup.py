"""The attribution roll-up (migration 0036) against the computation it replaces, after every kind of write
that changes what the report counts: creates (one, batch, upserts, PUT by external id), source and
lifecycle edits, creation times moved, deals won, unwon, re-priced, archived and restored, orders paid and
refunded, merges, erasure, archive and restore of contacts; before and after folds, in time zones whose
midnights are not on the hour, with and without the archived."""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
from clients import MakeClient
from report_data import at

from crm_api.reports import acquisition, rollup

# (from, to, tz): a year, odd offsets (Nepal +5:45, India +5:30), one day, a period with no whole hour
PERIODS = [
    ("2026-01-01", "2026-12-31", "UTC"),
    ("2026-01-01", "2026-12-31", "Asia/Kathmandu"),
    ("2026-03-01", "2026-03-31", "Asia/Kolkata"),
    ("2026-03-05", "2026-03-05", "America/New_York"),
    ("2026-03-05", "2026-03-05", "Asia/Kathmandu"),
    ("2025-12-31", "2026-01-01", "Pacific/Chatham"),
]

# creation times near the edges of those periods: 18:15 UTC is midnight in Kathmandu, 18:30 in Kolkata
MOMENTS = [
    "2026-03-04T18:10:00Z",
    "2026-03-04T18:20:00Z",
    "2026-03-04T18:40:00Z",
    "2026-03-05T05:00:00Z",
    "2026-03-05T12:30:00Z",
    "2026-03-06T04:59:59Z",
    "2026-03-06T05:00:00Z",
    "2025-12-31T18:15:00Z",
    "2026-01-01T00:00:00Z",
    "2026-12-31T18:14:59Z",
    "2026-12-31T23:59:59Z",
    "2025-12-31T10:00:00Z",
]


def _bounds(start: str, end: str, tz: str) -> dict[str, Any]:
    zone = zoneinfo.ZoneInfo(tz)
    first, last = dt.date.fromisoformat(start), dt.date.fromisoformat(end) + dt.timedelta(days=1)
    return {
        "lower": dt.datetime.combine(first, dt.time(), zone).astimezone(dt.UTC),
        "upper": dt.datetime.combine(last, dt.time(), zone).astimezone(dt.UTC),
    }


def _normal(counts: list[dict[str, Any]], won: list[dict[str, Any]]) -> tuple[Any, Any]:
    rows = sorted(
        ((r["grp"] or "", r["contacts"], r["leads"], r["customers"]) for r in counts if r["contacts"]),
        key=str,
    )
    amounts = {(r["grp"], r["currency"]): Decimal(r["amount"]) for r in won if r["amount"] is not None}
    return rows, amounts


async def _same(pool: asyncpg.Pool, ws: uuid.UUID) -> list[Any]:
    """Every period, with and without the archived: the roll-up answers what the tables say."""
    answers = []
    for start, end, tz in PERIODS:
        for archived in (False, True):
            period = _bounds(start, end, tz)
            fast = _normal(*await rollup.attribution(pool, ws, archived, period))
            slow = _normal(*await acquisition.attribution_from_tables(pool, ws, archived, period))
            assert fast == slow, (start, end, tz, archived)
            answers.append(fast)
    return answers


async def _created(pool: asyncpg.Pool, ws: uuid.UUID, ids: list[str]) -> None:
    for cid, moment in zip(ids, MOMENTS * 3, strict=False):
        await pool.execute(
            "UPDATE contacts SET created_at = $3 WHERE workspace_id = $1 AND id = $2",
            ws,
            uuid.UUID(cid),
            at(moment),
        )


async def _stages(api: httpx.AsyncClient) -> dict[str, str]:
    pipe = next(p for p in (await api.get("/v1/pipelines")).json()["data"] if p["is_default"])
    return {s["kind"]: s["id"] for s in reversed(pipe["stages"])}  # the first stage of each kind


async def _deal(api: httpx.AsyncClient, cid: str, stage: str, amount: str, currency: str) -> str:
    body = {"name": "d", "contact_id": cid, "stage_id": stage, "amount": amount, "currency": currency}
    made = await api.post("/v1/deals", json=body)
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


async def _ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code in (200, 201), response.text
    body: dict[str, Any] = response.json()
    return body


async def test_the_roll_up_answers_what_the_tables_say_through_every_write(
    make_client: MakeClient, pool: asyncpg.Pool
) -> None:
    api = await make_client()
    ws = api.workspace_id  # type: ignore[attr-defined]
    other = await make_client()  # another workspace's writes must not leak in
    await _ok(await other.post("/v1/contacts", json={"source": "ads", "lifecycle_stage": "lead"}))

    ids = []
    for source, stage in [("ads", "lead"), ("ads", "subscriber"), ("web", "lead"), (None, "lead")]:
        ids.append(
            (await _ok(await api.post("/v1/contacts", json={"source": source, "lifecycle_stage": stage})))[
                "id"
            ]
        )
    items = [{"email": f"b{i}@x.com", "source": "fair", "lifecycle_stage": "lead"} for i in range(3)]
    batch = await _ok(await api.post("/v1/contacts/batch", json={"items": items}))
    ids += [r["object"]["id"] for r in batch["results"]]
    # an upsert that changes a source and one that creates
    items = [{"email": "b0@x.com", "source": "web"}, {"email": "b9@x.com", "source": "fair"}]
    upserted = await _ok(await api.post("/v1/contacts/batch", json={"items": items, "mode": "upsert"}))
    ids.append(upserted["results"][1]["object"]["id"])
    put = await _ok(await api.put("/v1/contacts/by-external-id/shop/77", json={"source": "ads"}))
    await _ok(await api.put("/v1/contacts/by-external-id/shop/77", json={"source": "referral"}))
    ids.append(put["id"])
    await _created(pool, ws, ids)
    await _same(pool, ws)

    stages = await _stages(api)
    won_usd = await _deal(api, ids[0], stages["won"], "100.00", "USD")
    await _deal(api, ids[1], stages["won"], "50.00", "EUR")
    await _deal(api, ids[2], stages["won"], "0.00", "USD")  # a won amount of nothing still names USD
    unwon = await _deal(api, ids[3], stages["open"], "70.00", "USD")
    await _ok(await api.patch(f"/v1/deals/{unwon}", json={"stage_id": stages["won"]}))
    await _same(pool, ws)
    await rollup.fold(pool, wait=True)
    first = await _same(pool, ws)
    await _ok(await api.patch(f"/v1/deals/{unwon}", json={"stage_id": stages["open"]}))  # unwon
    await _ok(await api.patch(f"/v1/deals/{won_usd}", json={"amount": "120.00"}))
    await _ok(await api.delete(f"/v1/deals/{won_usd}"))
    await _same(pool, ws)
    await _ok(await api.post(f"/v1/deals/{won_usd}/restore"))

    # orders: a paid order makes a buyer (of a new contact with a source, then of one that exists)
    order = {
        "status": "paid",
        "currency": "USD",
        "totals": {"total": "70.00"},
        "updated_at": "2026-01-05T00:00:00Z",
    }
    await _ok(
        await api.put(
            "/v1/orders/shop/1", json={**order, "customer": {"email": "o1@x.com", "source": "shop"}}
        )
    )
    await _ok(await api.put("/v1/orders/shop/2", json={**order, "customer": {"email": "b1@x.com"}}))
    buyer = (await api.get("/v1/contacts", params={"email": "o1@x.com"})).json()["data"][0]["id"]
    ids.append(buyer)
    await _created(pool, ws, ids)
    await _same(pool, ws)
    refunded = {**order, "status": "refunded", "updated_at": "2026-01-06T00:00:00Z"}
    await _ok(await api.put("/v1/orders/shop/2", json={**refunded, "customer": {"email": "b1@x.com"}}))

    # lifecycle and source edits
    await _ok(await api.patch(f"/v1/contacts/{ids[1]}", json={"lifecycle_stage": "lead"}))
    await _ok(await api.patch(f"/v1/contacts/{ids[1]}", json={"lifecycle_stage": "customer"}))
    await _ok(await api.patch(f"/v1/contacts/{ids[0]}", json={"source": "web"}))
    await _ok(await api.patch(f"/v1/contacts/{ids[3]}", json={"source": None}))
    await _same(pool, ws)
    await rollup.fold(pool, wait=True)

    # archive and restore; merge (the twin's won deal moves to the survivor); erasure
    await _ok(await api.delete(f"/v1/contacts/{ids[4]}"))
    await _ok(await api.delete(f"/v1/contacts/{ids[5]}"))
    await _ok(await api.post(f"/v1/contacts/{ids[5]}/restore"))
    await _deal(api, ids[6], stages["won"], "30.00", "GBP")
    await _ok(await api.post(f"/v1/contacts/{ids[7]}/merge", json={"from": [ids[6]]}))
    await _deal(api, ids[8], stages["won"], "10.00", "USD")
    await _ok(await api.post(f"/v1/contacts/{ids[8]}/erase"))
    await _same(pool, ws)
    await rollup.fold(pool, wait=True)
    last = await _same(pool, ws)
    assert last != first  # the writes changed the answers, and the roll-up followed them

    # folding changes no answer, and leaves one row per group
    assert await rollup.fold(pool, wait=True)
    assert await _same(pool, ws) == last
    unfolded = await pool.fetchval("SELECT count(*) FROM attribution_pending")
    assert unfolded == 0
    doubled = await pool.fetchval(
        "SELECT count(*) FROM (SELECT 1 FROM attribution_deltas "
        "GROUP BY workspace_id, hour, source, archived, currency HAVING count(*) > 1) AS g"
    )
    assert doubled == 0


async def test_a_contact_counts_once_whatever_its_writes(make_client: MakeClient, pool: asyncpg.Pool) -> None:
    """Known answers: a lead that became a customer through two won deals and an order is one contact, one
    lead, one customer; its amounts are per currency; archived, it leaves unless asked for."""
    api = await make_client()
    ws = api.workspace_id  # type: ignore[attr-defined]
    cid = (await _ok(await api.post("/v1/contacts", json={"source": "ads", "lifecycle_stage": "lead"})))["id"]
    stages = await _stages(api)
    await _deal(api, cid, stages["won"], "10.00", "USD")
    await _deal(api, cid, stages["won"], "5.50", "USD")
    await _deal(api, cid, stages["won"], "7.00", "EUR")
    await _ok(await api.patch(f"/v1/contacts/{cid}", json={"lifecycle_stage": "customer"}))
    year = {"from": "2026-01-01", "to": "2026-12-31"}
    body = (await api.get("/v1/reports/attribution", params=year)).json()
    assert body["sources"] == [
        {
            "source": "ads",
            "contacts": 1,
            "leads": 1,
            "customers": 1,
            "won_amount": {"EUR": "7.00", "USD": "15.50"},
        }
    ]
    await _ok(await api.delete(f"/v1/contacts/{cid}"))
    assert (await api.get("/v1/reports/attribution", params=year)).json()["sources"] == []
    kept = (await api.get("/v1/reports/attribution", params={**year, "include_archived": "true"})).json()
    assert kept["sources"][0]["contacts"] == 1
    await _same(pool, ws)


async def test_stage_moves_without_a_history_entry(make_client: MakeClient, pool: asyncpg.Pool) -> None:
    """A stage written to the table alone (no event, so no entry in the history): the contact's own trigger
    must refresh when the move can change ``ever_lead`` (into lead for a contact never a lead; out of lead for
    one whose history has no entry into lead), and may skip the moves that cannot (migration 0041)."""
    api = await make_client()
    ws = api.workspace_id  # type: ignore[attr-defined]
    fresh = (await _ok(await api.post("/v1/contacts", json={"lifecycle_stage": "subscriber"})))["id"]
    other = (await _ok(await api.post("/v1/contacts", json={"lifecycle_stage": "subscriber"})))["id"]
    known = (await _ok(await api.post("/v1/contacts", json={"lifecycle_stage": "lead"})))["id"]
    first = await _same(pool, ws)

    async def move(cid: str, stage: str) -> list[Any]:
        await pool.execute(
            "UPDATE contacts SET lifecycle_stage = $3 WHERE workspace_id = $1 AND id = $2",
            ws,
            uuid.UUID(cid),
            stage,
        )
        return await _same(pool, ws)

    into = await move(fresh, "lead")  # a lead now, never one before: counted as a lead
    assert into != first
    assert await move(fresh, "customer") == first  # out again, with no entry into lead: not a lead any more
    assert await move(other, "marketing_qualified") == first  # neither stage is lead
    assert await move(known, "customer") == first  # its history has its entry into lead
    assert await move(known, "lead") == first  # known as a lead
    await rollup.fold(pool, wait=True)
    assert await _same(pool, ws) == first
