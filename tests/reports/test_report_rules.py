"""Rules of issue 15 the per-report tests leave out, each on data with known answers: the sales cycle's
deals still in a stage (counted until now), its days in a time zone and its archived deals; the forecast's
day and year buckets, ``unscheduled`` once whatever the grouping, and the archived; lead conversion in
every interval; the win rate per pipeline; attribution with the archived."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import asyncpg
import httpx
from people import ensure_members
from report_data import archive, at, deal, pipeline

STAGES = [
    {"name": "Lead", "probability": 0.1},
    {"name": "Demo", "probability": 0.5},
    {"name": "Won", "kind": "won"},
    {"name": "Lost", "kind": "lost"},
]
NY = "America/New_York"


def _iso(moment: dt.datetime) -> str:
    return moment.isoformat()


def _stages(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        s["name"]: {k: v for k, v in s.items() if k not in ("stage_id", "name", "kind")}
        for s in body["stages"]
    }


async def test_sales_cycle_counts_a_stay_until_now(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    pipe = await pipeline(api, "Still there", STAGES)
    now = dt.datetime.now(dt.UTC)
    ago = lambda days: _iso(now - dt.timedelta(days=days))  # noqa: E731
    # X: two days in Lead, in Demo for three days now; Y: in Lead for four days now
    await deal(api, pool, pipe, [("Lead", ago(5)), ("Demo", ago(3))])
    await deal(api, pool, pipe, [("Lead", ago(4))])
    period = {
        "pipeline_id": pipe["id"],
        "from": (now - dt.timedelta(days=10)).date().isoformat(),
        "to": now.date().isoformat(),
    }
    body = (await api.get("/v1/reports/sales-cycle", params=period)).json()
    assert _stages(body) == {
        "Lead": {
            "entered": 2,
            "advanced": 1,
            "conversion": 0.5,
            "median_days_in_stage": 3.0,
            "mean_days_in_stage": 3.0,
        },
        "Demo": {
            "entered": 1,
            "advanced": 0,
            "conversion": 0.0,
            "median_days_in_stage": 3.0,
            "mean_days_in_stage": 3.0,
        },
        "Won": {
            "entered": 0,
            "advanced": None,
            "conversion": None,
            "median_days_in_stage": None,
            "mean_days_in_stage": None,
        },
        "Lost": {
            "entered": 0,
            "advanced": None,
            "conversion": None,
            "median_days_in_stage": None,
            "mean_days_in_stage": None,
        },
    }
    assert body["days_to_won"] == {"deal_count": 0, "mean": None, "median": None, "p90": None}


async def test_sales_cycle_in_a_time_zone_and_with_the_archived(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    pipe = await pipeline(api, "Cycle zones", STAGES)
    # won on 1 February 03:00 UTC, 31 January in New York: 11 days after its creation
    await deal(api, pool, pipe, [("Lead", "2026-01-21T03:00:00Z"), ("Won", "2026-02-01T03:00:00Z")])
    # entered Lead on 1 January 03:00 UTC, 31 December in New York; lost 4 days later
    await deal(api, pool, pipe, [("Lead", "2026-01-01T03:00:00Z"), ("Lost", "2026-01-05T03:00:00Z")])
    # archived: won after 2 days
    gone = await deal(api, pool, pipe, [("Lead", "2026-01-10T00:00:00Z"), ("Won", "2026-01-12T00:00:00Z")])
    await archive(api, pool, gone, "2026-03-01T00:00:00Z")
    jan = {"pipeline_id": pipe["id"], "from": "2026-01-01", "to": "2026-01-31"}

    utc = (await api.get("/v1/reports/sales-cycle", params=jan)).json()
    assert utc["days_to_won"] == {"deal_count": 0, "mean": None, "median": None, "p90": None}
    assert {k: v["entered"] for k, v in _stages(utc).items()} == {"Lead": 2, "Demo": 0, "Won": 0, "Lost": 1}
    assert _stages(utc)["Lead"]["advanced"] == 1 and _stages(utc)["Lead"]["median_days_in_stage"] == 7.5

    ny = (await api.get("/v1/reports/sales-cycle", params={**jan, "tz": NY})).json()
    assert ny["tz"] == NY
    assert ny["days_to_won"] == {"deal_count": 1, "mean": 11.0, "median": 11.0, "p90": 11.0}
    assert {k: v["entered"] for k, v in _stages(ny).items()} == {"Lead": 1, "Demo": 0, "Won": 1, "Lost": 1}
    assert _stages(ny)["Lead"] | {} == {
        "entered": 1,
        "advanced": 1,
        "conversion": 1.0,
        "median_days_in_stage": 11.0,
        "mean_days_in_stage": 11.0,
    }

    every = (await api.get("/v1/reports/sales-cycle", params={**jan, "include_archived": "true"})).json()
    assert every["days_to_won"] == {"deal_count": 1, "mean": 2.0, "median": 2.0, "p90": 2.0}
    assert _stages(every)["Lead"] == {
        "entered": 3,
        "advanced": 2,
        "conversion": 0.6667,
        "median_days_in_stage": 4.0,
        "mean_days_in_stage": 5.67,
    }


async def test_forecast_days_years_unscheduled_once_and_archived(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    pipe = await pipeline(api, "Forecast rules", STAGES)
    a, b = sorted([str(uuid.uuid4()), str(uuid.uuid4())])
    await ensure_members(pool, api, [a, b])
    start = [("Lead", "2026-01-02T00:00:00Z")]
    await deal(api, pool, pipe, start, "100.00", "USD", owner_id=a, expected_close_date="2026-01-31")
    await deal(api, pool, pipe, start, "200.00", "USD", owner_id=a)
    await deal(api, pool, pipe, [("Demo", "2026-01-02T00:00:00Z")], "50.00", "EUR", owner_id=b)
    await deal(api, pool, pipe, [*start, ("Won", "2026-02-01T03:00:00Z")], "10.00", "USD", owner_id=b)
    gone = await deal(api, pool, pipe, start, "1000.00", "USD", expected_close_date="2026-01-31")
    await archive(api, pool, gone, "2026-01-03T00:00:00Z")
    gone_later = await deal(api, pool, pipe, start, "7.00", "USD")
    await archive(api, pool, gone_later, "2026-01-03T00:00:00Z")
    only = {"pipeline_id": pipe["id"]}

    days = {**only, "from": "2026-01-30", "to": "2026-02-01", "interval": "day", "tz": NY}
    body = (await api.get("/v1/reports/forecast", params=days)).json()
    assert body["periods"] == [
        {
            "period_start": "2026-01-30",
            "won_count": 0,
            "won": {},
            "weighted": {},
            "best_case": {},
            "deal_count": 0,
        },
        {
            "period_start": "2026-01-31",
            "won_count": 1,
            "won": {"USD": "10.00"},
            "weighted": {"USD": "10.00"},
            "best_case": {"USD": "100.00"},
            "deal_count": 1,
        },
        {
            "period_start": "2026-02-01",
            "won_count": 0,
            "won": {},
            "weighted": {},
            "best_case": {},
            "deal_count": 0,
        },
    ]
    unscheduled = {
        "deal_count": 2,
        "best_case": {"EUR": "50.00", "USD": "200.00"},
        "weighted": {"EUR": "25.00", "USD": "20.00"},
    }
    assert body["unscheduled"] == unscheduled

    years = {**only, "from": "2025-06-01", "to": "2026-12-31", "interval": "year"}
    body = (await api.get("/v1/reports/forecast", params=years)).json()
    assert [p["period_start"] for p in body["periods"]] == ["2025-01-01", "2026-01-01"]
    assert body["periods"][1] == {
        "period_start": "2026-01-01",
        "won_count": 1,
        "won": {"USD": "10.00"},
        "weighted": {"USD": "10.00"},
        "best_case": {"USD": "100.00"},
        "deal_count": 1,
    }
    # grouped by owner, the open deals without a date are still counted once, not once per owner
    owners = (await api.get("/v1/reports/forecast", params={**years, "group_by": "owner"})).json()
    assert owners["unscheduled"] == unscheduled
    assert [
        (p["period_start"], p["owner_id"], p["deal_count"], p["won_count"]) for p in owners["periods"]
    ] == [
        ("2025-01-01", a, 0, 0),
        ("2025-01-01", b, 0, 0),
        ("2026-01-01", a, 1, 0),
        ("2026-01-01", b, 0, 1),
    ]
    every = (await api.get("/v1/reports/forecast", params={**years, "include_archived": "true"})).json()
    assert every["periods"][1]["best_case"] == {"USD": "1100.00"} and every["periods"][1]["deal_count"] == 2
    assert every["unscheduled"]["deal_count"] == 3 and every["unscheduled"]["best_case"]["USD"] == "207.00"


async def test_forecast_weeks_cut_to_the_period_at_half_hour_midnights(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    """Weeks from a Wednesday to a Tuesday in Asia/Kolkata (+05:30): the first and last weeks are cut to
    the period, and each boundary is a local midnight, 18:30 UTC the day before. A deal a second before a
    boundary is in the bucket before it; one on it, in the bucket after."""
    pipe = await pipeline(api, "Forecast weeks", STAGES)
    start = [("Lead", "2026-03-01T00:00:00Z")]
    won = {
        "2026-03-03T18:29:59Z": "1000.00",  # 3 March, 23:59:59 local: before the period
        "2026-03-03T18:30:00Z": "1.00",  # 4 March, 00:00 local: the first (cut) week
        "2026-03-08T18:29:59Z": "2.00",  # Sunday 8 March, last second of that week
        "2026-03-08T18:30:00Z": "4.00",  # Monday 9 March, 00:00 local
        "2026-03-17T18:29:59Z": "8.00",  # 17 March, the period's last second
        "2026-03-17T18:30:00Z": "2000.00",  # 18 March: after the period
    }
    for moment, amount in won.items():
        await deal(api, pool, pipe, [*start, ("Won", moment)], amount, "USD")
    expected = {"2026-03-03": "3000.00", "2026-03-04": "10.00", "2026-03-09": "20.00"}
    expected |= {"2026-03-17": "40.00", "2026-03-18": "4000.00"}
    for day, amount in expected.items():
        await deal(api, pool, pipe, start, amount, "USD", expected_close_date=day)
    asked = {"pipeline_id": pipe["id"], "from": "2026-03-04", "to": "2026-03-17", "interval": "week"}
    body = (await api.get("/v1/reports/forecast", params={**asked, "tz": "Asia/Kolkata"})).json()
    assert [
        (p["period_start"], p["won_count"], p["won"], p["deal_count"], p["best_case"], p["weighted"])
        for p in body["periods"]
    ] == [
        ("2026-03-02", 2, {"USD": "3.00"}, 1, {"USD": "10.00"}, {"USD": "1.00"}),
        ("2026-03-09", 1, {"USD": "4.00"}, 1, {"USD": "20.00"}, {"USD": "2.00"}),
        ("2026-03-16", 1, {"USD": "8.00"}, 1, {"USD": "40.00"}, {"USD": "4.00"}),
    ]
    # in UTC the boundaries are 5.5 hours later: the two of 3 March are before the period, both of 8 March
    # in the first week, both of 17 March in the last
    utc = (await api.get("/v1/reports/forecast", params=asked)).json()
    assert [(p["period_start"], p["won_count"], p["won"]) for p in utc["periods"]] == [
        ("2026-03-02", 2, {"USD": "6.00"}),
        ("2026-03-09", 0, {}),
        ("2026-03-16", 2, {"USD": "2008.00"}),
    ]


async def _lead(api: httpx.AsyncClient, pool: asyncpg.Pool, became: str, customer: str | None = None) -> None:
    made = (await api.post("/v1/contacts", json={"lifecycle_stage": "lead"})).json()
    if customer is not None:
        patched = await api.patch(f"/v1/contacts/{made['id']}", json={"lifecycle_stage": "customer"})
        assert patched.status_code == 200
    ws = api.workspace_id  # type: ignore[attr-defined]
    for stage, moment in (("lead", became), ("customer", customer)):
        await pool.execute(
            "UPDATE contact_lifecycle_changes SET changed_at = $4 WHERE workspace_id = $1 "
            "AND contact_id = $2 AND to_stage = $3",
            ws,
            uuid.UUID(made["id"]),
            stage,
            at(moment or became),
        )


async def test_lead_conversion_in_every_interval(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    await _lead(api, pool, "2026-01-05T10:00:00Z")  # a Monday
    await _lead(api, pool, "2026-01-06T10:00:00Z", "2026-01-09T10:00:00Z")
    await _lead(api, pool, "2026-01-12T10:00:00Z")
    await _lead(api, pool, "2026-04-02T10:00:00Z", "2026-04-04T22:00:00Z")

    def rows(body: dict[str, Any]) -> list[tuple[Any, ...]]:
        return [
            (
                p["period_start"],
                p["leads"],
                p["converted"],
                p["conversion_rate"],
                p["median_days_to_customer"],
            )
            for p in body["periods"]
        ]

    async def ask(**query: str) -> list[tuple[Any, ...]]:
        answer = await api.get("/v1/reports/lead-conversion", params=query)
        assert answer.status_code == 200, answer.text
        assert answer.json()["interval"] == query["interval"]
        return rows(answer.json())

    assert await ask(**{"from": "2026-01-05", "to": "2026-01-07", "interval": "day"}) == [
        ("2026-01-05", 1, 0, 0.0, None),
        ("2026-01-06", 1, 1, 1.0, 3.0),
        ("2026-01-07", 0, 0, None, None),
    ]
    assert await ask(**{"from": "2026-01-01", "to": "2026-01-18", "interval": "week"}) == [
        ("2025-12-29", 0, 0, None, None),
        ("2026-01-05", 2, 1, 0.5, 3.0),
        ("2026-01-12", 1, 0, 0.0, None),
    ]
    assert await ask(**{"from": "2026-01-01", "to": "2026-06-30", "interval": "quarter"}) == [
        ("2026-01-01", 3, 1, 0.3333, 3.0),
        ("2026-04-01", 1, 1, 1.0, 2.5),
    ]
    assert await ask(**{"from": "2026-01-01", "to": "2026-12-31", "interval": "year"}) == [
        ("2026-01-01", 4, 2, 0.5, 2.75),
    ]


async def test_win_rate_per_pipeline(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    first = await pipeline(api, "First", STAGES)
    second = await pipeline(api, "Second", STAGES)
    lead = ("Lead", "2026-01-02T00:00:00Z")
    await deal(api, pool, first, [lead, ("Won", "2026-01-10T00:00:00Z")], "100.00", "USD")
    await deal(api, pool, first, [lead, ("Won", "2026-01-11T00:00:00Z")], "30.00", "EUR")
    await deal(api, pool, first, [lead, ("Lost", "2026-01-12T00:00:00Z")], lost_reason="price")
    await deal(api, pool, second, [lead, ("Lost", "2026-01-12T00:00:00Z")], lost_reason="timing")
    await deal(api, pool, second, [lead, ("Lost", "2026-01-13T00:00:00Z")])
    await deal(api, pool, second, [lead, ("Won", "2026-03-13T00:00:00Z")], "5.00", "USD")  # after the period
    body = (
        await api.get(
            "/v1/reports/win-rate", params={"from": "2026-01-01", "to": "2026-01-31", "group_by": "pipeline"}
        )
    ).json()
    assert body["group_by"] == "pipeline"
    assert sorted(body["groups"], key=lambda g: g["group"] != first["id"]) == [
        {
            "group": first["id"],
            "won": 2,
            "lost": 1,
            "win_rate": 0.6667,
            "won_amount": {"EUR": "30.00", "USD": "100.00"},
            "lost_reasons": {"price": 1},
        },
        {
            "group": second["id"],
            "won": 0,
            "lost": 2,
            "win_rate": 0.0,
            "won_amount": {},
            "lost_reasons": {"timing": 1, "unspecified": 1},
        },
    ]


async def test_attribution_with_the_archived(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    pipe = next(p for p in (await api.get("/v1/pipelines")).json()["data"] if p["is_default"])
    won = next(s["id"] for s in pipe["stages"] if s["kind"] == "won")
    ids = []
    for lifecycle in ("lead", "subscriber", "lead"):
        made = (await api.post("/v1/contacts", json={"source": "ads", "lifecycle_stage": lifecycle})).json()
        ids.append(made["id"])
        body = {"name": "d", "contact_id": made["id"], "stage_id": won, "amount": "10.00", "currency": "USD"}
        assert (await api.post("/v1/deals", json=body)).status_code == 201
    assert (await api.delete(f"/v1/contacts/{ids[2]}")).status_code == 200
    await pool.execute(
        "UPDATE contacts SET created_at = $2 WHERE workspace_id = $1",
        api.workspace_id,  # type: ignore[attr-defined]
        at("2026-01-05T00:00:00Z"),
    )
    q1 = {"from": "2026-01-01", "to": "2026-03-31"}
    live = (await api.get("/v1/reports/attribution", params=q1)).json()["sources"]
    assert live == [
        {"source": "ads", "contacts": 2, "leads": 1, "customers": 2, "won_amount": {"USD": "20.00"}}
    ]
    every = (await api.get("/v1/reports/attribution", params={**q1, "include_archived": "true"})).json()
    assert every["sources"] == [
        {"source": "ads", "contacts": 3, "leads": 2, "customers": 3, "won_amount": {"USD": "30.00"}}
    ]
