"""Forecast, win rate and sales cycle on deals built with known answers: buckets in a time zone where a
deal closed on the 1st of the month in UTC but on the 31st locally, two currencies, another workspace's
deals never counted, CSV, and the parameters' errors."""

from __future__ import annotations

import csv
import io
import uuid
from typing import Any

import asyncpg
import httpx
from clients import MakeClient
from report_data import archive, deal, pipeline

STAGES = [
    {"name": "Lead", "probability": 0.1},
    {"name": "Demo", "probability": 0.5},
    {"name": "Proposal", "probability": 0.8},
    {"name": "Won", "kind": "won"},
    {"name": "Lost", "kind": "lost"},
]
O1, O2 = sorted([str(uuid.uuid4()), str(uuid.uuid4())])
NY = "America/New_York"
Q1 = {"from": "2026-01-01", "to": "2026-03-31"}


async def _closing(api: httpx.AsyncClient, pool: asyncpg.Pool) -> dict[str, Any]:
    """Won, lost and open deals for the forecast and the win rate."""
    pipe = await pipeline(api, "Closing", STAGES)
    # won on 1 February 03:00 UTC: 31 January in New York
    await deal(
        api,
        pool,
        pipe,
        [("Lead", "2026-01-05T10:00:00Z"), ("Won", "2026-02-01T03:00:00Z")],
        "1000.00",
        "USD",
        owner_id=O1,
        source="web",
    )
    await deal(
        api,
        pool,
        pipe,
        [("Lead", "2026-01-05T10:00:00Z"), ("Won", "2026-02-15T12:00:00Z")],
        "300.00",
        "EUR",
        owner_id=O2,
        source="referral",
    )
    await deal(
        api,
        pool,
        pipe,
        [("Lead", "2026-01-02T10:00:00Z"), ("Lost", "2026-01-10T10:00:00Z")],
        "50.00",
        "USD",
        owner_id=O1,
        source="web",
        lost_reason="price",
    )
    await deal(
        api,
        pool,
        pipe,
        [("Lead", "2026-01-02T10:00:00Z"), ("Lost", "2026-02-10T10:00:00Z")],
        owner_id=O1,
        lost_reason="price",
    )
    await deal(
        api, pool, pipe, [("Lead", "2026-01-02T10:00:00Z"), ("Lost", "2026-03-10T10:00:00Z")], owner_id=O2
    )
    # lost on 1 April 02:00 UTC: 31 March in New York
    await deal(
        api,
        pool,
        pipe,
        [("Lead", "2026-01-02T10:00:00Z"), ("Lost", "2026-04-01T02:00:00Z")],
        owner_id=O2,
        lost_reason="timing",
    )
    gone = await deal(
        api,
        pool,
        pipe,
        [("Lead", "2026-01-02T10:00:00Z"), ("Won", "2026-01-20T10:00:00Z")],
        "7777.00",
        "USD",
        owner_id=O1,
    )
    await archive(api, pool, gone, "2026-03-01T00:00:00Z")
    # open deals
    await deal(
        api,
        pool,
        pipe,
        [("Lead", "2026-01-02T10:00:00Z")],
        "100.00",
        "USD",
        owner_id=O1,
        expected_close_date="2026-01-20",
    )
    await deal(
        api,
        pool,
        pipe,
        [("Demo", "2026-01-02T10:00:00Z")],
        "200.00",
        "USD",
        owner_id=O2,
        expected_close_date="2026-02-05",
    )
    await deal(
        api,
        pool,
        pipe,
        [("Demo", "2026-01-02T10:00:00Z")],
        "80.00",
        "EUR",
        owner_id=O1,
        expected_close_date="2026-02-28",
    )
    await deal(api, pool, pipe, [("Lead", "2026-01-02T10:00:00Z")], "500.00", "USD", owner_id=O1)
    await deal(api, pool, pipe, [("Demo", "2026-01-02T10:00:00Z")], expected_close_date="2026-01-31")
    await deal(
        api,
        pool,
        pipe,
        [("Proposal", "2026-01-02T10:00:00Z")],
        "10.00",
        "USD",
        expected_close_date="2026-04-01",
    )  # after the period
    return pipe


async def _noise(make_client: MakeClient) -> None:
    """Another workspace's deals in the same period: none may show."""
    other = await make_client()
    for body in (
        {"name": "o", "amount": "5.00", "currency": "USD", "expected_close_date": "2026-02-02"},
        {"name": "p", "amount": "6.00", "currency": "USD"},
    ):
        assert (await other.post("/v1/deals", json=body)).status_code == 201


def _period(body: dict[str, Any], start: str, owner: str | None = None) -> dict[str, Any]:
    found = [p for p in body["periods"] if p["period_start"] == start and p.get("owner_id") == owner]
    assert len(found) == 1, (start, owner, body["periods"])
    row = dict(found[0])
    row.pop("period_start")
    row.pop("owner_id", None)
    return row


async def test_forecast_per_month_in_a_time_zone(make_client: MakeClient, pool: asyncpg.Pool) -> None:
    api = await make_client()
    pipe = await _closing(api, pool)
    await _noise(make_client)
    answer = await api.get("/v1/reports/forecast", params={**Q1, "tz": NY, "pipeline_id": pipe["id"]})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["from"], body["to"], body["interval"], body["tz"]) == (
        "2026-01-01",
        "2026-03-31",
        "month",
        NY,
    )
    assert [p["period_start"] for p in body["periods"]] == ["2026-01-01", "2026-02-01", "2026-03-01"]
    assert _period(body, "2026-01-01") == {
        "won_count": 1,
        "won": {"USD": "1000.00"},  # closed 1 February in UTC, 31 January in New York
        "weighted": {"USD": "10.00"},
        "best_case": {"USD": "100.00"},
        "deal_count": 2,  # one without an amount
    }
    assert _period(body, "2026-02-01") == {
        "won_count": 1,
        "won": {"EUR": "300.00"},
        "weighted": {"EUR": "40.00", "USD": "100.00"},
        "best_case": {"EUR": "80.00", "USD": "200.00"},
        "deal_count": 2,
    }
    assert _period(body, "2026-03-01") == {
        "won_count": 0,
        "won": {},
        "weighted": {},
        "best_case": {},
        "deal_count": 0,
    }
    assert body["unscheduled"] == {
        "deal_count": 1,
        "best_case": {"USD": "500.00"},
        "weighted": {"USD": "50.00"},
    }

    utc = (await api.get("/v1/reports/forecast", params=Q1)).json()  # every pipeline: the same deals
    assert _period(utc, "2026-01-01")["won"] == {}
    assert _period(utc, "2026-02-01")["won"] == {"EUR": "300.00", "USD": "1000.00"}
    assert _period(utc, "2026-02-01")["won_count"] == 2

    quarters = (await api.get("/v1/reports/forecast", params={**Q1, "interval": "quarter", "tz": NY})).json()
    assert _period(quarters, "2026-01-01") == {
        "won_count": 2,
        "won": {"EUR": "300.00", "USD": "1000.00"},
        "weighted": {"EUR": "40.00", "USD": "110.00"},
        "best_case": {"EUR": "80.00", "USD": "300.00"},
        "deal_count": 4,
    }
    weeks = (
        await api.get(
            "/v1/reports/forecast",
            params={"from": "2026-01-28", "to": "2026-02-03", "interval": "week", "tz": NY},
        )
    ).json()
    # weeks begin on Monday: 26 January and 2 February
    assert [p["period_start"] for p in weeks["periods"]] == ["2026-01-26", "2026-02-02"]
    assert _period(weeks, "2026-01-26")["won"] == {"USD": "1000.00"}
    assert _period(weeks, "2026-01-26")["deal_count"] == 1  # expected 31 January

    owners = (await api.get("/v1/reports/forecast", params={**Q1, "tz": NY, "group_by": "owner"})).json()
    assert len(owners["periods"]) == 3 * 3  # two owners and the deals without one
    assert _period(owners, "2026-01-01", O1) == {
        "won_count": 1,
        "won": {"USD": "1000.00"},
        "weighted": {"USD": "10.00"},
        "best_case": {"USD": "100.00"},
        "deal_count": 1,
    }
    assert _period(owners, "2026-01-01", None)["deal_count"] == 1
    assert _period(owners, "2026-02-01", O2)["best_case"] == {"USD": "200.00"}

    sheet = await api.get("/v1/reports/forecast", params={**Q1, "tz": NY}, headers={"Accept": "text/csv"})
    rows = list(csv.DictReader(io.StringIO(sheet.text)))
    assert [r["period_start"] for r in rows] == ["2026-01-01", "2026-02-01", "2026-03-01"]
    assert rows[1]["weighted.EUR"] == "40.00" and rows[1]["won.EUR"] == "300.00" and rows[0]["won.EUR"] == ""


async def test_win_rate_overall_and_by_group(make_client: MakeClient, pool: asyncpg.Pool) -> None:
    api = await make_client()
    pipe = await _closing(api, pool)
    await _noise(make_client)
    utc = (await api.get("/v1/reports/win-rate", params=Q1)).json()
    assert utc["object"] == "win_rate_report" and utc["group_by"] is None
    assert utc["groups"] == [
        {
            "won": 2,
            "lost": 3,
            "win_rate": 0.4,
            "won_amount": {"EUR": "300.00", "USD": "1000.00"},
            "lost_reasons": {"price": 2, "unspecified": 1},
        }
    ]
    # in New York the loss of 1 April 02:00 UTC falls on 31 March
    ny = (await api.get("/v1/reports/win-rate", params={**Q1, "tz": NY})).json()
    assert ny["groups"][0]["lost"] == 4 and ny["groups"][0]["win_rate"] == 0.3333
    assert ny["groups"][0]["lost_reasons"] == {"price": 2, "timing": 1, "unspecified": 1}

    by_owner = (await api.get("/v1/reports/win-rate", params={**Q1, "tz": NY, "group_by": "owner"})).json()
    assert by_owner["groups"] == [
        {
            "group": O1,
            "won": 1,
            "lost": 2,
            "win_rate": 0.3333,
            "won_amount": {"USD": "1000.00"},
            "lost_reasons": {"price": 2},
        },
        {
            "group": O2,
            "won": 1,
            "lost": 2,
            "win_rate": 0.3333,
            "won_amount": {"EUR": "300.00"},
            "lost_reasons": {"timing": 1, "unspecified": 1},
        },
    ]
    by_source = (await api.get("/v1/reports/win-rate", params={**Q1, "group_by": "source"})).json()
    assert [(g["group"], g["won"], g["lost"]) for g in by_source["groups"]] == [
        ("referral", 1, 0),
        ("web", 1, 1),
        (None, 0, 2),
    ]
    by_pipeline = (await api.get("/v1/reports/win-rate", params={**Q1, "group_by": "pipeline"})).json()
    assert [g["group"] for g in by_pipeline["groups"]] == [pipe["id"]]
    archived = (await api.get("/v1/reports/win-rate", params={**Q1, "include_archived": "true"})).json()
    assert archived["groups"][0]["won_amount"] == {"EUR": "300.00", "USD": "8777.00"}
    nothing = (
        await api.get("/v1/reports/win-rate", params={"from": "2025-01-01", "to": "2025-12-31"})
    ).json()
    assert nothing["groups"] == [
        {"won": 0, "lost": 0, "win_rate": None, "won_amount": {}, "lost_reasons": {}}
    ]

    sheet = await api.get(
        "/v1/reports/win-rate", params={**Q1, "group_by": "owner", "tz": NY}, headers={"Accept": "text/csv"}
    )
    rows = list(csv.reader(io.StringIO(sheet.text)))
    assert rows[0] == [
        "group",
        "won",
        "lost",
        "win_rate",
        "won_amount.EUR",
        "won_amount.USD",
        "lost_reasons.price",
        "lost_reasons.timing",
        "lost_reasons.unspecified",
    ]
    assert rows[1] == [O1, "1", "2", "0.3333", "", "1000.00", "2", "", ""]


DAY = "2026-01-{:02d}T{:02d}:00:00Z"


def _day(day: int, hour: int = 0) -> str:
    return DAY.format(day, hour)


async def test_sales_cycle_days_to_won_and_per_stage(make_client: MakeClient, pool: asyncpg.Pool) -> None:
    api = await make_client()
    pipe = await pipeline(api, "Cycle", STAGES)
    # A: Lead -> Demo -> Proposal -> Won, 10 days
    await deal(
        api,
        pool,
        pipe,
        [("Lead", _day(1)), ("Demo", _day(3)), ("Proposal", _day(6)), ("Won", _day(11))],
        "100.00",
        "USD",
    )
    # B: Lead -> Demo -> Lost
    await deal(api, pool, pipe, [("Lead", _day(1)), ("Demo", _day(5)), ("Lost", _day(7))])
    # C: Lead -> Proposal -> back to Demo -> Won, 7 days
    await deal(
        api, pool, pipe, [("Lead", _day(2)), ("Proposal", _day(4)), ("Demo", _day(8)), ("Won", _day(9))]
    )
    # D: Lead for 1 day 8 hours -> Lost
    await deal(api, pool, pipe, [("Lead", _day(3)), ("Lost", _day(4, 8))])
    # E: entered Lead before the period; only its loss is in it
    await deal(api, pool, pipe, [("Lead", "2025-12-20T00:00:00Z"), ("Lost", _day(2))])
    # archived: not counted
    gone = await deal(api, pool, pipe, [("Lead", _day(1)), ("Won", _day(2))])
    await archive(api, pool, gone, _day(20))
    await _noise(make_client)

    answer = await api.get(
        "/v1/reports/sales-cycle",
        params={"pipeline_id": pipe["id"], "from": "2026-01-01", "to": "2026-01-31"},
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["days_to_won"] == {"deal_count": 2, "mean": 8.5, "median": 8.5, "p90": 9.7}
    stages = {
        s["name"]: {k: v for k, v in s.items() if k not in ("stage_id", "name")} for s in body["stages"]
    }
    assert stages == {
        # A 2 days, B 4, C 2, D 1.3333: median 2, mean 9.3333 / 4
        "Lead": {
            "kind": "open",
            "entered": 4,
            "advanced": 3,
            "conversion": 0.75,
            "median_days_in_stage": 2.0,
            "mean_days_in_stage": 2.33,
        },
        # A 3 days (then Proposal), B 2 (then lost), C 1 (then won)
        "Demo": {
            "kind": "open",
            "entered": 3,
            "advanced": 2,
            "conversion": 0.6667,
            "median_days_in_stage": 2.0,
            "mean_days_in_stage": 2.0,
        },
        # A 5 days, C 4 (back to Demo, but won later)
        "Proposal": {
            "kind": "open",
            "entered": 2,
            "advanced": 2,
            "conversion": 1.0,
            "median_days_in_stage": 4.5,
            "mean_days_in_stage": 4.5,
        },
        "Won": {
            "kind": "won",
            "entered": 2,
            "advanced": None,
            "conversion": None,
            "median_days_in_stage": None,
            "mean_days_in_stage": None,
        },
        "Lost": {
            "kind": "lost",
            "entered": 3,
            "advanced": None,
            "conversion": None,
            "median_days_in_stage": None,
            "mean_days_in_stage": None,
        },
    }
    # a period that starts after the entries into Lead: only later entries count
    later = (
        await api.get(
            "/v1/reports/sales-cycle",
            params={"pipeline_id": pipe["id"], "from": "2026-01-05", "to": "2026-01-31"},
        )
    ).json()
    counts = {s["name"]: s["entered"] for s in later["stages"]}
    assert counts == {"Lead": 0, "Demo": 2, "Proposal": 1, "Won": 2, "Lost": 1}
    assert later["days_to_won"]["deal_count"] == 2
    sheet = await api.get(
        "/v1/reports/sales-cycle",
        params={"pipeline_id": pipe["id"], "from": "2026-01-01", "to": "2026-01-31"},
        headers={"Accept": "text/csv"},
    )
    rows = list(csv.DictReader(io.StringIO(sheet.text)))
    assert [(r["name"], r["entered"], r["conversion"]) for r in rows][:2] == [
        ("Lead", "4", "0.75"),
        ("Demo", "3", "0.6667"),
    ]


async def test_periods_refuse_bad_parameters_naming_them(api: httpx.AsyncClient) -> None:
    cases = [
        ("forecast", {"from": "2026-13-01"}, "/from"),
        ("forecast", {"from": "2026-02-01", "to": "2026-01-01"}, "/from"),
        ("forecast", {"to": "99999-01-01"}, "/to"),
        ("forecast", {"from": "1000-01-01"}, "/from"),
        ("forecast", {"tz": "Mars/Olympus"}, "/tz"),
        ("forecast", {"tz": "../../etc/passwd"}, "/tz"),
        ("forecast", {"tz": "posixrules"}, "/tz"),  # a file ZoneInfo opens, not a zone PostgreSQL knows
        ("forecast", {"interval": "fortnight"}, "/interval"),
        ("forecast", {"from": "2020-01-01", "to": "2026-12-31", "interval": "day"}, "/interval"),
        ("forecast", {"group_by": "source"}, "/group_by"),
        ("forecast", {"pipeline_id": str(uuid.uuid4())}, "/pipeline_id"),
        ("win-rate", {"group_by": "stage"}, "/group_by"),
        ("win-rate", {"interval": "month"}, "/interval"),
        ("sales-cycle", {"pipeline_id": "x"}, "/pipeline_id"),
        ("sales-cycle", {"from": "2026-01-01T00:00:00Z"}, "/from"),
        # what the spec's types forbid, the server refuses: empty values, other date and UUID forms
        ("sales-cycle", {"from": ""}, "/from"),
        ("sales-cycle", {"from": "20260101"}, "/from"),
        ("sales-cycle", {"tz": ""}, "/tz"),
        ("forecast", {"pipeline_id": uuid.uuid4().hex}, "/pipeline_id"),
        ("win-rate", {"group_by": ""}, "/group_by"),
        ("win-rate", {"include_archived": "yes"}, "/include_archived"),
        ("customers", {"churn_days": "+5"}, "/churn_days"),
        ("customers", {"as_of": "0999-01-01T00:00:00Z"}, "/as_of"),
        ("pipeline", {"owner_id": ""}, "/owner_id"),
    ]
    for report, query, pointer in cases:
        answer = await api.get(f"/v1/reports/{report}", params=query)
        assert answer.status_code == 422, (report, query, answer.text)
        assert answer.json()["errors"][0]["path"] == pointer, (report, query, answer.text)
    weekly = await api.get(
        "/v1/reports/forecast", params={"from": "2020-01-01", "to": "2026-12-31", "interval": "week"}
    )
    assert weekly.status_code == 200 and len(weekly.json()["periods"]) == 366
