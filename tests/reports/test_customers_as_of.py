"""GET /v1/reports/customers at a past ``as_of`` counts contacts as they stood then, like the pipeline's
``as_of`` counts deals: a contact archived after ``as_of`` was live then and counts, one archived before
does not (unless ``include_archived=true``); a won deal likewise; a merged contact's purchases moved to its
survivor, who counts them whenever the merge was. Asked once with no purchase after ``as_of`` (the kept
purchases would answer, but for the archival since) and once with one (the purchases read)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import asyncpg
import httpx
from report_data import archive, at, deal, pipeline

from crm_api.reports import customers

JUNE = {"as_of": "2026-06-01T00:00:00Z", "churn_days": "100"}


async def _order(api: httpx.AsyncClient, email: str, placed: str, total: str) -> str:
    body = {
        "customer": {"email": email},
        "status": "paid",
        "currency": "USD",
        "totals": {"total": total},
        "placed_at": placed,
        "updated_at": placed,
    }
    made = await api.put(f"/v1/orders/shop/{uuid.uuid4().hex}", json=body)
    assert made.status_code == 201, made.text
    found = (await api.get("/v1/contacts", params={"email": email})).json()["data"]
    return str(found[0]["id"])


async def _won(api: httpx.AsyncClient, pool: asyncpg.Pool, email: str, amount: str, closed: str) -> str:
    """A contact with a won deal no order stands behind, closed at ``closed``: the deal's id."""
    contact = (await api.post("/v1/contacts", json={"email": email})).json()
    pipe = next(p for p in (await api.get("/v1/pipelines")).json()["data"] if p["is_default"])
    won = next(s["id"] for s in pipe["stages"] if s["kind"] == "won")
    body = {"name": email, "contact_id": contact["id"], "stage_id": won, "amount": amount, "currency": "USD"}
    made = await api.post("/v1/deals", json=body)
    assert made.status_code == 201, made.text
    await pool.execute(
        "UPDATE deals SET closed_at = $3 WHERE workspace_id = $1 AND id = $2",
        api.workspace_id,  # type: ignore[attr-defined]
        uuid.UUID(made.json()["id"]),
        at(closed),
    )
    return str(made.json()["id"])


async def _archived_at(api: httpx.AsyncClient, pool: asyncpg.Pool, contact: str, moment: str) -> None:
    await pool.execute(
        "UPDATE contacts SET archived_at = $3 "
        "WHERE workspace_id = $1 AND id = $2 AND archived_at IS NOT NULL",
        api.workspace_id,  # type: ignore[attr-defined]
        uuid.UUID(contact),
        at(moment),
    )


def _numbers(body: dict[str, Any]) -> tuple[Any, ...]:
    return (
        body["customers"],
        body["lifetime_value"],
        body["repeat_rate"],
        body["churned"],
        body["churn_rate"],
    )


async def _asked(api: httpx.AsyncClient, **query: str) -> dict[str, Any]:
    answer = await api.get("/v1/reports/customers", params=query)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def _late(pool: asyncpg.Pool, ws: uuid.UUID, then: bool) -> bool:
    june = at(JUNE["as_of"])
    values = {
        "ws": ws,
        "as_of": june,
        "currency": "USD",
        "churn_before": june - dt.timedelta(days=100),
        "tz": "UTC",
        **customers.cohort_window(june, "UTC"),
    }
    late: bool = (await customers._kept(then).fetch(pool, **values))[0]["late"]
    return late


async def _check(api: httpx.AsyncClient) -> None:
    # amy (archived now) and dan (his won deal archived now) were live on 1 June; ben (archived 1 March)
    # and deb's deal (archived 1 March) were not; sam holds mia's order and max's, both merged into him
    june = await _asked(api, **JUNE)
    assert _numbers(june) == (
        3,  # amy 100.00, dan 1000.00, sam 40.00
        {"customers": 3, "mean": "380.00", "median": "100.00", "p90": "820.00"},
        0.3333,  # sam: two purchases
        2,  # amy and dan: nothing since 21 February
        0.6667,
    )
    cohorts = {c["month"]: (c["size"], c["active"]) for c in june["cohorts"]}
    assert cohorts["2026-01-01"] == (1, [1, 0, 1, 0, 0, 0])  # sam: max's order in January, mia's in March
    assert cohorts["2026-02-01"] == (2, [2, 0, 0, 0, 0])  # amy and dan
    assert sum(size for size, _ in cohorts.values()) == 3

    everyone = await _asked(api, **JUNE, include_archived="true")
    assert everyone["customers"] == 5  # ben and deb too
    assert everyone["lifetime_value"] == {
        "customers": 5,
        "mean": "336.00",
        "median": "100.00",
        "p90": "800.00",
    }

    # 15 February: ben not archived yet, deb's deal not closed yet, sam only max's order (max merged
    # on 25 January: his order is sam's)
    february = await _asked(api, as_of="2026-02-15T00:00:00Z")
    assert _numbers(february) == (
        4,
        {"customers": 4, "mean": "288.75", "median": "70.00", "p90": "730.00"},
        0.0,
        0,
        0.0,
    )
    # 25 February: deb's deal won on the 20th, archived on 1 March: counts
    late_february = await _asked(api, as_of="2026-02-25T00:00:00Z")
    assert late_february["customers"] == 5
    assert late_february["lifetime_value"]["mean"] == "331.00"  # (100 + 40 + 1000 + 500 + 15) / 5


async def test_customers_as_of_counts_contacts_as_they_stood(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    ws = api.workspace_id  # type: ignore[attr-defined]
    amy = await _order(api, "amy@example.com", "2026-02-01T10:00:00Z", "100.00")
    ben = await _order(api, "ben@example.com", "2026-02-01T10:00:00Z", "40.00")
    dan_deal = await _won(api, pool, "dan@example.com", "1000.00", "2026-02-10T10:00:00Z")
    deb = await _won(api, pool, "deb@example.com", "500.00", "2026-02-20T10:00:00Z")
    sam = (await api.post("/v1/contacts", json={"email": "sam@example.com"})).json()["id"]
    mia = await _order(api, "mia@example.com", "2026-03-01T10:00:00Z", "25.00")
    max_ = await _order(api, "max@example.com", "2026-01-20T10:00:00Z", "15.00")

    for contact in (amy, ben):
        assert (await api.delete(f"/v1/contacts/{contact}")).status_code == 200
    await _archived_at(api, pool, ben, "2026-03-01T00:00:00Z")
    assert (await api.delete(f"/v1/deals/{dan_deal}")).status_code == 200
    await archive(api, pool, deb, "2026-03-01T00:00:00Z")
    merged = await api.post(f"/v1/contacts/{sam}/merge", json={"from": [mia, max_]})
    assert merged.status_code == 200, merged.text
    await _archived_at(api, pool, max_, "2026-01-25T00:00:00Z")
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM contacts WHERE workspace_id = $1 AND merged_into = $2", ws, uuid.UUID(sam)
        )
        == 2
    )

    # no purchase after 1 June: the kept purchases would answer, but contacts and deals were archived
    # since, so they do not (for the default as_of, now, the statement is the one without that check)
    assert await _late(pool, ws, then=False) is False
    assert await _late(pool, ws, then=True) is True
    await _check(api)

    # a purchase after 1 June: the purchases themselves are read, with the same answers
    await _order(api, "zoe@example.com", "2026-07-01T10:00:00Z", "70.00")
    assert await _late(pool, ws, then=False) is True
    await _check(api)

    # now: the archived contacts and deals are left out
    now = await _asked(api)
    assert now["customers"] == 2  # sam and zoe
    assert now["lifetime_value"] == {"customers": 2, "mean": "55.00", "median": "55.00", "p90": "67.00"}


STAGES = [
    {"name": "Lead", "probability": 0.1},
    {"name": "Won", "kind": "won"},
    {"name": "Lost", "kind": "lost"},
]


async def test_customers_as_of_counts_deals_won_then_and_reopened_or_lost_since(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    """A deal won on 5 February and reopened on 1 July, and one won on 10 February and lost on 1 July,
    were purchases on 1 June (their stage history says so), though neither is won today."""
    ws = api.workspace_id  # type: ignore[attr-defined]
    pipe = await pipeline(api, "Won, then not", STAGES)

    async def customer(email: str) -> str:
        made = await api.post("/v1/contacts", json={"email": email})
        assert made.status_code == 201, made.text
        return str(made.json()["id"])

    ria, rex = await customer("ria@example.com"), await customer("rex@example.com")
    won_then = [("Lead", "2026-01-05T10:00:00Z"), ("Won", "2026-02-05T10:00:00Z")]
    await deal(
        api, pool, pipe, [*won_then, ("Lead", "2026-07-01T10:00:00Z")], "300.00", "USD", contact_id=ria
    )
    lost = [
        ("Lead", "2026-01-05T10:00:00Z"),
        ("Won", "2026-02-10T10:00:00Z"),
        ("Lost", "2026-07-01T10:00:00Z"),
    ]
    await deal(api, pool, pipe, lost, "100.00", "USD", contact_id=rex)
    await _order(api, "ola@example.com", "2026-03-01T10:00:00Z", "50.00")

    # no kept purchase after 1 June, yet the kept rows cannot answer: two won stays were left since
    assert await _late(pool, ws, then=False) is False
    assert await _late(pool, ws, then=True) is True
    june = await _asked(api, **JUNE)
    assert _numbers(june) == (
        3,
        {"customers": 3, "mean": "150.00", "median": "100.00", "p90": "260.00"},
        0.0,
        2,  # ria and rex: last bought in February, more than 100 days before 1 June
        0.6667,
    )
    cohorts = {c["month"]: (c["size"], c["active"]) for c in june["cohorts"]}
    assert cohorts["2026-02-01"] == (2, [2, 0, 0, 0, 0])
    assert cohorts["2026-03-01"] == (1, [1, 0, 0, 0])
    # before rex's deal was won, only ria's was
    february = await _asked(api, as_of="2026-02-07T00:00:00Z")
    assert february["customers"] == 1 and february["lifetime_value"]["mean"] == "300.00"
    # today neither deal is won: ola alone
    now = await _asked(api)
    assert now["customers"] == 1 and now["lifetime_value"]["mean"] == "50.00"


async def _push(api: httpx.AsyncClient, ref: str, status: str, total: str, email: str) -> None:
    body = {
        "customer": {"email": email},
        "status": status,
        "currency": "USD",
        "totals": {"total": total},
        "placed_at": "2026-02-01T10:00:00Z",
        "updated_at": dt.datetime.now(dt.UTC).isoformat(),
    }
    made = await api.put(f"/v1/orders/shop/{ref}", json=body)
    assert made.status_code in (200, 201), made.text


async def test_customers_as_of_counts_an_order_paid_then_and_refunded_since(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    """Orders keep no status history, but an order's deal moves to the lost stage when it is refunded, and
    the deal's stage history says when: paid on 1 February (won), refunded on 1 July (lost). On 1 June it
    was a purchase; today it is not."""
    ws = api.workspace_id  # type: ignore[attr-defined]
    await _push(api, "r1", "paid", "80.00", "ola@example.com")
    await _push(api, "r1", "refunded", "80.00", "ola@example.com")
    await _order(api, "una@example.com", "2026-03-01T10:00:00Z", "20.00")
    deal_id = await pool.fetchval(
        "SELECT deal_id FROM orders WHERE workspace_id = $1 AND external_id = 'r1'", ws
    )
    moves = await pool.fetch(
        "SELECT pipeline_id, to_stage_id FROM deal_stage_changes WHERE workspace_id = $1 AND deal_id = $2 "
        "ORDER BY changed_at",
        ws,
        deal_id,
    )
    assert len(moves) == 2  # into won, then into lost
    # the moves as they would have been made on 1 February and 1 July
    await pool.execute("DELETE FROM deal_stage_changes WHERE workspace_id = $1 AND deal_id = $2", ws, deal_id)
    previous = None
    for move, moment in zip(moves, ("2026-02-01T10:00:00Z", "2026-07-01T10:00:00Z"), strict=True):
        await pool.execute(
            "INSERT INTO deal_stage_changes (workspace_id, id, deal_id, pipeline_id, from_stage_id, "
            "to_stage_id, changed_at, actor) VALUES ($1, $2, $3, $4, $5, $6, $7, 'test')",
            ws,
            uuid.uuid4(),
            deal_id,
            move["pipeline_id"],
            previous,
            move["to_stage_id"],
            at(moment),
        )
        previous = move["to_stage_id"]

    assert await _late(pool, ws, then=True) is True
    june = await _asked(api, **JUNE)
    assert june["customers"] == 2
    assert june["lifetime_value"] == {"customers": 2, "mean": "50.00", "median": "50.00", "p90": "74.00"}
    assert {c["month"]: c["size"] for c in june["cohorts"] if c["size"]} == {"2026-02-01": 1, "2026-03-01": 1}
    # on 15 January, before either order, no one had bought
    assert (await _asked(api, as_of="2026-01-15T00:00:00Z"))["customers"] == 0
    # today the refund stands: una alone
    now = await _asked(api)
    assert now["customers"] == 1 and now["lifetime_value"]["mean"] == "20.00"
