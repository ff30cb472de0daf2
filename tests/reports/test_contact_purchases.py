"""The customers report's purchases kept per contact (``contact_purchases``, migration 0037) through the write
paths that make or unmake a purchase: orders pushed paid, pending then paid, refunded, in two currencies;
deals won through create and PATCH, reopened, archived and restored; contacts merged (their orders and
deals move) and erased. After each step the kept rows equal the purchases recomputed from orders and deals,
and the report from the kept rows equals the report from the purchases themselves (one transaction, one
now()); a purchase after ``as_of`` sends the report to the purchases."""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo
from typing import Any

import asyncpg
import httpx

from crm_api.reports import customers

# the purchases from orders and deals, computed apart from the triggers' function
_RECOMPUTED = """
SELECT p.contact_id, count(*)::integer AS purchases, (count(*) FILTER (WHERE p.deal))::integer AS deals,
       min(p.at) AS first_at, max(p.at) AS last_at,
       sum(p.amount) FILTER (WHERE p.currency = 'USD') AS usd,
       sum(p.amount) FILTER (WHERE p.currency = 'EUR') AS eur,
       array_agg(DISTINCT p.at ORDER BY p.at) AS times
FROM (
    SELECT o.contact_id, coalesce(o.placed_at, o.created_at) AS at, o.currency, o.total AS amount,
           false AS deal
    FROM orders AS o WHERE o.workspace_id = $1 AND o.status IN ('paid', 'fulfilled')
    UNION ALL
    SELECT d.contact_id, d.closed_at, d.currency, d.amount, true FROM deals AS d
    WHERE d.workspace_id = $1 AND d.status = 'won' AND d.closed_at IS NOT NULL AND d.archived_at IS NULL
      AND d.contact_id IS NOT NULL
      AND d.id NOT IN (SELECT b.deal_id FROM orders AS b WHERE b.workspace_id = $1)
) AS p
GROUP BY p.contact_id
"""

_KEPT = """
SELECT contact_id, purchases, deal_purchases, first_at, last_at, (value ->> 'USD')::numeric AS usd,
       (value ->> 'EUR')::numeric AS eur, purchase_times
FROM contact_purchases WHERE workspace_id = $1
"""

# each customer's value per currency as rows (migration 0043), beside the jsonb's
_VALUES = """
SELECT v.contact_id, v.currency, v.value FROM contact_purchase_values AS v WHERE v.workspace_id = $1
EXCEPT ALL
SELECT k.contact_id, e.key, e.value::text::numeric FROM contact_purchases AS k, jsonb_each(k.value) AS e
WHERE k.workspace_id = $1
"""


async def _agree(pool: asyncpg.Pool, ws: uuid.UUID) -> dict[str, Any]:
    """Kept rows equal the recomputation; the report from them equals the report from the purchases, in
    USD and EUR, churn cut now and a month ago. Returns the kept rows by contact."""
    kept = {r["contact_id"]: tuple(r) for r in await pool.fetch(_KEPT, ws)}
    assert kept == {r["contact_id"]: tuple(r) for r in await pool.fetch(_RECOMPUTED, ws)}
    # the value rows are the jsonb's, none more, none less
    assert await pool.fetch(_VALUES, ws) == []
    counted = await pool.fetchval("SELECT count(*) FROM contact_purchase_values WHERE workspace_id = $1", ws)
    assert counted == sum((usd is not None) + (eur is not None) for *_, usd, eur, _ in kept.values())
    now = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
        for currency in ("USD", "EUR"):
            for churn in (dt.timedelta(0), dt.timedelta(days=30)):
                values = {
                    "ws": ws,
                    "as_of": now,
                    "currency": currency,
                    "churn_before": now - churn,
                    "tz": "America/New_York",
                    **customers.cohort_window(now, "America/New_York"),
                }
                fast = dict((await customers._kept().fetch(conn, **values))[0])
                assert fast.pop("late") is False
                slow = dict((await customers._report(False).fetch(conn, **values))[0])
                assert fast == slow, (currency, churn)
    return kept


async def _order(api: httpx.AsyncClient, ref: str, email: str, total: str, status: str, **more: Any) -> None:
    body = {
        "customer": {"email": email},
        "status": status,
        "currency": more.get("currency", "USD"),
        "totals": {"total": total},
        "updated_at": dt.datetime.now(dt.UTC).isoformat(),
    }
    if "placed_at" in more:
        body["placed_at"] = more["placed_at"]
    made = await api.put(f"/v1/orders/shop/{ref}", json=body)
    assert made.status_code in (200, 201), made.text


async def _contact(api: httpx.AsyncClient, email: str) -> str:
    found = (await api.get("/v1/contacts", params={"email": email})).json()["data"]
    if found:
        return str(found[0]["id"])
    made = await api.post("/v1/contacts", json={"email": email})
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


async def test_every_write_path_keeps_the_purchases(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    ws = api.workspace_id  # type: ignore[attr-defined]

    # orders: paid in two currencies, pending then paid, paid then refunded
    await _order(api, "a1", "alice@example.com", "100.00", "paid")
    await _order(api, "a2", "alice@example.com", "50.00", "paid", currency="EUR")
    await _order(api, "b1", "bob@example.com", "30.00", "pending")
    await _order(api, "c1", "carol@example.com", "70.00", "paid")
    alice, bob, carol = [await _contact(api, f"{n}@example.com") for n in ("alice", "bob", "carol")]
    kept = await _agree(pool, ws)
    assert kept[uuid.UUID(alice)][1:3] == (2, 0) and uuid.UUID(bob) not in kept
    await _order(api, "b1", "bob@example.com", "30.00", "paid")
    await _order(api, "c1", "carol@example.com", "70.00", "refunded")
    kept = await _agree(pool, ws)
    assert uuid.UUID(bob) in kept and uuid.UUID(carol) not in kept

    # deals: won at creation, won by PATCH, reopened, archived and restored
    pipe = next(p for p in (await api.get("/v1/pipelines")).json()["data"] if p["is_default"])
    won = next(s["id"] for s in pipe["stages"] if s["kind"] == "won")
    first = next(s["id"] for s in pipe["stages"] if s["kind"] == "open")
    dave = await _contact(api, "dave@example.com")
    deal = {"name": "big", "contact_id": dave, "stage_id": won, "amount": "1000.00", "currency": "USD"}
    assert (await api.post("/v1/deals", json=deal)).status_code == 201
    deal = {"name": "other", "contact_id": carol, "stage_id": first, "amount": "5.00", "currency": "EUR"}
    made = await api.post("/v1/deals", json=deal)
    other = made.json()["id"]
    assert uuid.UUID(carol) not in await _agree(pool, ws)
    assert (await api.patch(f"/v1/deals/{other}", json={"stage_id": won})).status_code == 200
    assert (await _agree(pool, ws))[uuid.UUID(carol)][1:3] == (1, 1)
    assert (await api.patch(f"/v1/deals/{other}", json={"stage_id": first})).status_code == 200
    assert uuid.UUID(carol) not in await _agree(pool, ws)
    assert (await api.patch(f"/v1/deals/{other}", json={"stage_id": won})).status_code == 200
    assert (await api.delete(f"/v1/deals/{other}")).status_code == 200
    assert uuid.UUID(carol) not in await _agree(pool, ws)
    assert (await api.post(f"/v1/deals/{other}/restore")).status_code == 200
    assert uuid.UUID(carol) in await _agree(pool, ws)

    # bob merged into alice: his order moves to her; dave erased (archived: left out when read)
    merged = await api.post(f"/v1/contacts/{alice}/merge", json={"from": [bob]})
    assert merged.status_code == 200, merged.text
    kept = await _agree(pool, ws)
    assert kept[uuid.UUID(alice)][1] == 3 and uuid.UUID(bob) not in kept
    assert (await api.post(f"/v1/contacts/{dave}/erase")).status_code == 200
    await _agree(pool, ws)

    # a purchase moved after as_of (an UPDATE in SQL fires the triggers too): the kept rows cannot answer,
    # the report reads the purchases
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
    await pool.execute(
        "UPDATE orders SET placed_at = $2 WHERE workspace_id = $1 AND external_id = 'a1'", ws, later
    )
    assert (
        await pool.fetchval("SELECT max(last_at) FROM contact_purchases WHERE workspace_id = $1", ws)
    ) == later
    values = {
        "ws": ws,
        "as_of": dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1),
        "currency": "USD",
        "churn_before": dt.datetime.now(dt.UTC),
        "tz": "UTC",
        **customers.cohort_window(dt.datetime.now(dt.UTC), "UTC"),
    }
    assert (await customers._kept().fetch(pool, **values))[0]["late"] is True
    summary, _ = await customers.customers(pool, ws, False, values)
    slow = dict((await customers._report(False).fetch(pool, **values))[0])
    slow.pop("cohorts"), slow.pop("months"), slow.pop("active")
    assert summary == slow


async def test_the_cohorts_read_placed_and_unplaced_orders_and_won_deals(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    """The kept path's cohorts read the period's orders as two ranges (placed in it; no placed_at, created
    in it) and the cohort customers' won deals one customer at a time: the same answer as the purchases
    themselves, and the months each cohort customer bought in, counted."""
    ws = api.workspace_id  # type: ignore[attr-defined]
    now = dt.datetime.now(dt.UTC)

    def ago(days: int) -> str:
        return (now - dt.timedelta(days=days)).isoformat()

    # erin's first purchase is before the cohorts' start (330 days back): in no cohort
    await _order(api, "e1", "erin@example.com", "10.00", "paid", placed_at=ago(400))
    await _order(api, "e2", "erin@example.com", "20.00", "fulfilled", placed_at=ago(100))
    # fay: placed 200 and 40 days ago, one with no placed_at (now), one refunded
    await _order(api, "f1", "fay@example.com", "15.00", "paid", placed_at=ago(200))
    await _order(api, "f2", "fay@example.com", "25.00", "paid", placed_at=ago(40))
    await _order(api, "f3", "fay@example.com", "35.00", "paid")
    await _order(api, "f4", "fay@example.com", "45.00", "refunded", placed_at=ago(150))
    # gus: an order placed 60 days ago (its deal stands behind it) and a won deal no order stands behind
    await _order(api, "g1", "gus@example.com", "5.00", "paid", placed_at=ago(60))
    gus = await _contact(api, "gus@example.com")
    pipe = next(p for p in (await api.get("/v1/pipelines")).json()["data"] if p["is_default"])
    won = next(s["id"] for s in pipe["stages"] if s["kind"] == "won")
    deal = {"name": "gus", "contact_id": gus, "stage_id": won, "amount": "500.00", "currency": "USD"}
    assert (await api.post("/v1/deals", json=deal)).status_code == 201
    await _agree(pool, ws)

    zone = zoneinfo.ZoneInfo("America/New_York")

    def month(at: dt.datetime) -> dt.date:
        return at.astimezone(zone).date().replace(day=1)

    days = {"fay": (200, 40, 0), "gus": (60, 0)}
    expected: dict[tuple[dt.date, dt.date], int] = {}
    for bought in days.values():
        first = month(now - dt.timedelta(days=max(bought)))
        for m in {month(now - dt.timedelta(days=d)) for d in bought}:
            expected[(first, m)] = expected.get((first, m), 0) + 1
    values = {
        "ws": ws,
        "as_of": now + dt.timedelta(minutes=1),
        "currency": "USD",
        "churn_before": now,
        "tz": "America/New_York",
        **customers.cohort_window(now, "America/New_York"),
    }
    row = (await customers._kept().fetch(pool, **values))[0]
    assert row["late"] is False and row["customers"] == 3
    assert dict(zip(zip(row["cohorts"], row["months"], strict=True), row["active"], strict=True)) == expected
