"""GET /v1/reports/pipeline: per stage now, and as the pipeline stood at a past moment, on deals built with
known answers; CSV; another workspace's deals never counted."""

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
    {"name": "Won", "kind": "won"},
    {"name": "Lost", "kind": "lost"},
]
O1, O2 = str(uuid.uuid4()), str(uuid.uuid4())
T0, T1, T2, T3, T4 = (
    "2026-01-10T12:00:00Z",
    "2026-02-10T12:00:00Z",
    "2026-03-10T12:00:00Z",
    "2026-04-10T12:00:00Z",
    "2026-05-10T12:00:00Z",
)


async def _build(api: httpx.AsyncClient, pool: asyncpg.Pool) -> dict[str, Any]:
    pipe = await pipeline(api, "Reported", STAGES)
    await deal(api, pool, pipe, [("Lead", T0)], "100.00", "USD", owner_id=O1)
    await deal(api, pool, pipe, [("Lead", T0), ("Demo", T2)], "200.00", "USD", owner_id=O2)
    await deal(api, pool, pipe, [("Demo", T1)], "50.00", "EUR", owner_id=O1)
    await deal(api, pool, pipe, [("Lead", T0), ("Demo", T1), ("Won", T3)], "1000.00", "USD")
    await deal(api, pool, pipe, [("Lead", T4)])  # no amount; created after the as_of below
    gone = await deal(api, pool, pipe, [("Demo", T0)], "999.00", "USD")
    await archive(api, pool, gone, T1)
    return pipe


def _stages(body: dict[str, Any]) -> dict[str, tuple[int, dict[str, str], dict[str, str]]]:
    return {s["name"]: (s["deal_count"], s["amount"], s["weighted_amount"]) for s in body["stages"]}


async def test_pipeline_now_per_stage_per_currency(make_client: MakeClient, pool: asyncpg.Pool) -> None:
    api = await make_client()
    pipe = await _build(api, pool)
    other = await make_client()  # another workspace with deals in its default pipeline
    assert (
        await other.post("/v1/deals", json={"name": "x", "amount": "5.00", "currency": "USD"})
    ).status_code == 201

    answer = await api.get("/v1/reports/pipeline", params={"pipeline_id": pipe["id"]})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["object"] == "pipeline_report" and body["as_of"] is None and body["note"] is None
    assert [s["name"] for s in body["stages"]] == ["Lead", "Demo", "Won", "Lost"]
    assert [s["kind"] for s in body["stages"]] == ["open", "open", "won", "lost"]
    assert [s["probability"] for s in body["stages"]] == [0.1, 0.5, 1.0, 0.0]
    assert _stages(body) == {
        "Lead": (2, {"USD": "100.00"}, {"USD": "10.00"}),
        "Demo": (2, {"EUR": "50.00", "USD": "200.00"}, {"EUR": "25.00", "USD": "100.00"}),
        "Won": (1, {"USD": "1000.00"}, {"USD": "1000.00"}),
        "Lost": (0, {}, {}),
    }
    assert body["totals"] == {
        "deal_count": 5,
        "amount": {"EUR": "50.00", "USD": "1300.00"},
        "weighted_amount": {"EUR": "25.00", "USD": "1110.00"},
    }

    archived = (
        await api.get("/v1/reports/pipeline", params={"pipeline_id": pipe["id"], "include_archived": "true"})
    ).json()
    assert _stages(archived)["Demo"] == (
        3,
        {"EUR": "50.00", "USD": "1199.00"},
        {"EUR": "25.00", "USD": "599.50"},
    )

    mine = (await api.get("/v1/reports/pipeline", params={"pipeline_id": pipe["id"], "owner_id": O1})).json()
    assert _stages(mine) == {
        "Lead": (1, {"USD": "100.00"}, {"USD": "10.00"}),
        "Demo": (1, {"EUR": "50.00"}, {"EUR": "25.00"}),
        "Won": (0, {}, {}),
        "Lost": (0, {}, {}),
    }
    assert mine["owner_id"] == O1

    # the default pipeline when none is named: the other workspace's deal is not in it
    default = (await api.get("/v1/reports/pipeline")).json()
    assert default["pipeline_name"] == "Sales" and default["totals"]["deal_count"] == 0
    # and the other workspace cannot read this one's pipeline
    refused = await other.get("/v1/reports/pipeline", params={"pipeline_id": pipe["id"]})
    assert refused.status_code == 422 and refused.json()["errors"][0]["path"] == "/pipeline_id"
    theirs = (await other.get("/v1/reports/pipeline")).json()
    assert theirs["totals"] == {
        "deal_count": 1,
        "amount": {"USD": "5.00"},
        "weighted_amount": {"USD": "0.50"},  # "Lead in" has 0.1
    }


async def test_pipeline_as_it_stood_at_a_past_moment(make_client: MakeClient, pool: asyncpg.Pool) -> None:
    api = await make_client()
    pipe = await _build(api, pool)

    answer = await api.get(
        "/v1/reports/pipeline", params={"pipeline_id": pipe["id"], "as_of": "2026-03-20T00:00:00Z"}
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["as_of"] == "2026-03-20T00:00:00Z" and "today's" in body["note"]
    # deal 2 had moved to Demo, deal 4 was in Demo (won later), deal 5 did not exist, the archived one was
    # archived already
    assert _stages(body) == {
        "Lead": (1, {"USD": "100.00"}, {"USD": "10.00"}),
        "Demo": (3, {"EUR": "50.00", "USD": "1200.00"}, {"EUR": "25.00", "USD": "600.00"}),
        "Won": (0, {}, {}),
        "Lost": (0, {}, {}),
    }
    # before the first move in Demo: everyone still in Lead but deal 3 (created in Demo on T1)
    early = (
        await api.get(
            "/v1/reports/pipeline", params={"pipeline_id": pipe["id"], "as_of": "2026-02-01T00:00:00+01:00"}
        )
    ).json()
    assert _stages(early)["Lead"] == (3, {"USD": "1300.00"}, {"USD": "130.00"})
    assert _stages(early)["Demo"] == (1, {"USD": "999.00"}, {"USD": "499.50"})  # archived on T1, live then
    # the moment of a move counts the move
    exact = (await api.get("/v1/reports/pipeline", params={"pipeline_id": pipe["id"], "as_of": T3})).json()
    assert _stages(exact)["Won"] == (1, {"USD": "1000.00"}, {"USD": "1000.00"})
    by_owner = (
        await api.get(
            "/v1/reports/pipeline",
            params={"pipeline_id": pipe["id"], "as_of": "2026-03-20T00:00:00Z", "owner_id": O2},
        )
    ).json()
    assert by_owner["totals"]["deal_count"] == 1 and _stages(by_owner)["Demo"][0] == 1


async def test_pipeline_as_csv(make_client: MakeClient, pool: asyncpg.Pool) -> None:
    api = await make_client()
    pipe = await _build(api, pool)
    answer = await api.get(
        "/v1/reports/pipeline", params={"pipeline_id": pipe["id"]}, headers={"Accept": "text/csv"}
    )
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(answer.text)))
    assert rows[0] == [
        "stage_id",
        "name",
        "kind",
        "probability",
        "deal_count",
        "amount.EUR",
        "amount.USD",
        "weighted_amount.EUR",
        "weighted_amount.USD",
    ]
    by_name = {r[1]: r for r in rows[1:]}
    assert by_name["Demo"][2:] == ["open", "0.5", "2", "50.00", "200.00", "25.00", "100.00"]
    assert by_name["Lost"][2:] == ["lost", "0.0", "0", "", "", "", ""]
    assert len(rows) == 5


async def test_pipeline_refuses_bad_parameters_naming_them(api: httpx.AsyncClient) -> None:
    cases = {
        "/pipeline_id": {"pipeline_id": "nope"},
        "/as_of": {"as_of": "yesterday"},
        "/owner_id": {"owner_id": "1"},
        "/include_archived": {"include_archived": "maybe"},
        "/pipline_id": {"pipline_id": str(uuid.uuid4())},
    }
    for pointer, query in cases.items():
        answer = await api.get("/v1/reports/pipeline", params=query)
        assert answer.status_code == 422, (pointer, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["errors"][0]["path"] == pointer
    unknown = await api.get("/v1/reports/pipeline", params={"pipeline_id": str(uuid.uuid4())})
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["path"] == "/pipeline_id"


async def test_reports_need_the_reports_scope(make_client: MakeClient) -> None:
    deals_only = await make_client(scopes=["deals:read"])
    assert (await deals_only.get("/v1/reports/pipeline")).status_code == 403
    reader = await make_client(scopes=["reports:read"])
    for path in (
        "pipeline",
        "forecast",
        "win-rate",
        "sales-cycle",
        "service",
        "customers",
        "lead-conversion",
        "attribution",
    ):
        assert (await reader.get(f"/v1/reports/{path}")).status_code == 200, path
