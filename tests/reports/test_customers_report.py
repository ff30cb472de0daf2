"""GET /v1/reports/customers on purchases with known answers: paid orders and won deals without an order,
lifetime value in one currency, repeat and churn, monthly cohorts in a time zone; refunded, pending, later
and archived purchases, and another workspace's, left out."""

from __future__ import annotations

import csv
import io
import uuid
from typing import Any

import asyncpg
import httpx
from clients import MakeClient
from report_data import at

AS_OF = {"as_of": "2026-06-15T00:00:00Z", "churn_days": "90"}


async def _order(
    api: httpx.AsyncClient, email: str, placed: str, total: str, status: str = "paid", currency: str = "USD"
) -> dict[str, Any]:
    body = {
        "customer": {"email": email},
        "status": status,
        "currency": currency,
        "totals": {"total": total},
        "placed_at": placed,
        "updated_at": placed,
    }
    made = await api.put(f"/v1/orders/shop/{uuid.uuid4().hex}", json=body)
    assert made.status_code == 201, made.text
    result: dict[str, Any] = made.json()
    return result


async def _shop(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    await _order(api, "alice@example.com", "2026-01-10T10:00:00Z", "100.00")
    await _order(api, "alice@example.com", "2026-03-05T10:00:00Z", "50.00")
    await _order(api, "alice@example.com", "2026-05-20T10:00:00Z", "30.00", "fulfilled")
    # 1 February 03:00 UTC: 31 January in New York
    await _order(api, "bob@example.com", "2026-02-01T03:00:00Z", "200.00")
    await _order(api, "carol@example.com", "2026-03-10T10:00:00Z", "80.00", currency="EUR")
    await _order(api, "carol@example.com", "2026-04-01T10:00:00Z", "999.00", "pending")
    await _order(api, "erin@example.com", "2026-02-10T10:00:00Z", "70.00", "refunded")
    await _order(api, "frank@example.com", "2026-07-01T10:00:00Z", "70.00")  # after as_of
    await _order(api, "gina@example.com", "2026-02-10T10:00:00Z", "70.00")
    gina = (await api.get("/v1/contacts", params={"email": "gina@example.com"})).json()["data"][0]
    assert (await api.delete(f"/v1/contacts/{gina['id']}")).status_code == 200
    # archived before every as_of asked below (one archived after as_of counts: test_customers_as_of.py)
    await pool.execute(
        "UPDATE contacts SET archived_at = $3 WHERE workspace_id = $1 AND id = $2",
        api.workspace_id,  # type: ignore[attr-defined]
        uuid.UUID(gina["id"]),
        at("2026-02-12T00:00:00Z"),
    )
    # dave: a won deal no order stands behind, closed on 1 April
    dave = (await api.post("/v1/contacts", json={"email": "dave@example.com"})).json()
    pipe = next(p for p in (await api.get("/v1/pipelines")).json()["data"] if p["is_default"])
    won = next(s["id"] for s in pipe["stages"] if s["kind"] == "won")
    deal = await api.post(
        "/v1/deals",
        json={
            "name": "big",
            "contact_id": dave["id"],
            "stage_id": won,
            "amount": "1000.00",
            "currency": "USD",
        },
    )
    assert deal.status_code == 201, deal.text
    await pool.execute(
        "UPDATE deals SET closed_at = $3 WHERE workspace_id = $1 AND id = $2",
        api.workspace_id,  # type: ignore[attr-defined]
        uuid.UUID(deal.json()["id"]),
        at("2026-04-01T10:00:00Z"),
    )


def _cohorts(body: dict[str, Any]) -> dict[str, tuple[int, list[int]]]:
    return {c["month"]: (c["size"], c["active"]) for c in body["cohorts"]}


async def test_customers_value_repeat_churn_and_cohorts(make_client: MakeClient, pool: asyncpg.Pool) -> None:
    api = await make_client()
    await _shop(api, pool)
    other = await make_client()
    await _order(other, "zed@example.com", "2026-02-02T10:00:00Z", "5000.00")

    answer = await api.get("/v1/reports/customers", params=AS_OF)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["as_of"], body["currency"], body["churn_days"], body["tz"]) == (
        "2026-06-15T00:00:00Z",
        "USD",
        90,
        "UTC",
    )
    assert body["customers"] == 4  # alice, bob, carol (EUR), dave
    # USD: alice 180.00, bob 200.00, dave 1000.00
    assert body["lifetime_value"] == {"customers": 3, "mean": "460.00", "median": "200.00", "p90": "840.00"}
    assert body["repeat_rate"] == 0.25
    assert (body["churned"], body["churn_rate"]) == (2, 0.5)  # bob and carol: nothing since 17 March
    cohorts = _cohorts(body)
    assert len(cohorts) == 12 and min(cohorts) == "2025-07-01" and max(cohorts) == "2026-06-01"
    assert cohorts["2025-07-01"] == (0, [0] * 12)
    assert cohorts["2026-01-01"] == (1, [1, 0, 1, 0, 1, 0])
    assert cohorts["2026-02-01"] == (1, [1, 0, 0, 0, 0])
    assert cohorts["2026-03-01"] == (1, [1, 0, 0, 0])
    assert cohorts["2026-04-01"] == (1, [1, 0, 0])
    assert cohorts["2026-06-01"] == (0, [0])

    ny = (await api.get("/v1/reports/customers", params={**AS_OF, "tz": "America/New_York"})).json()
    assert _cohorts(ny)["2026-01-01"] == (2, [2, 0, 1, 0, 1, 0])
    assert _cohorts(ny)["2026-02-01"] == (0, [0, 0, 0, 0, 0])

    euros = (await api.get("/v1/reports/customers", params={**AS_OF, "currency": "EUR"})).json()
    assert euros["lifetime_value"] == {"customers": 1, "mean": "80.00", "median": "80.00", "p90": "80.00"}
    earlier = (await api.get("/v1/reports/customers", params={"as_of": "2026-02-15T00:00:00Z"})).json()
    assert earlier["customers"] == 2 and earlier["lifetime_value"]["mean"] == "150.00"
    assert earlier["churned"] == 0  # 180 days by default
    archived = (await api.get("/v1/reports/customers", params={**AS_OF, "include_archived": "true"})).json()
    assert archived["customers"] == 5

    sheet = await api.get("/v1/reports/customers", params=AS_OF, headers={"Accept": "text/csv"})
    rows = list(csv.reader(io.StringIO(sheet.text)))
    assert rows[0] == ["month", "size", *(f"active.{i}" for i in range(12))]
    assert rows[7] == ["2026-01-01", "1", "1", "0", "1", "0", "1", "0", "", "", "", "", "", ""]

    for query, pointer in (
        ({"currency": "usd"}, "/currency"),
        ({"churn_days": "0"}, "/churn_days"),
        ({"churn_days": "many"}, "/churn_days"),
        ({"as_of": "soon"}, "/as_of"),
        ({"tz": "Nowhere/Else"}, "/tz"),
    ):
        bad = await api.get("/v1/reports/customers", params=query)
        assert bad.status_code == 422 and bad.json()["errors"][0]["path"] == pointer, (query, bad.text)
