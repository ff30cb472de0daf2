"""POST /v1/<resource>/aggregate: the search filter, groups by field and by time bucket in a time zone,
every metric on known data; non-numeric metrics, unknown fields and bad buckets refused by name."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx
from clients import MakeClient
from people import ensure_members
from report_data import at

O1, O2 = sorted([str(uuid.uuid4()), str(uuid.uuid4())])


async def _deals(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    rows = [
        ("a", "100.00", "USD", O1, "2026-01-10T12:00:00Z"),
        ("b", "300.00", "USD", O1, "2026-02-01T03:00:00Z"),  # 31 January in New York
        ("c", "50.00", "EUR", O2, "2026-02-15T12:00:00Z"),
        ("d", None, None, O2, "2026-03-01T12:00:00Z"),
    ]
    await ensure_members(pool, api, [O1, O2])
    for name, amount, currency, owner, created in rows:
        body: dict[str, Any] = {"name": name, "owner_id": owner}
        if amount:
            body |= {"amount": amount, "currency": currency}
        made = await api.post("/v1/deals", json=body)
        assert made.status_code == 201, made.text
        await pool.execute(
            "UPDATE deals SET created_at = $3 WHERE workspace_id = $1 AND id = $2",
            api.workspace_id,  # type: ignore[attr-defined]
            uuid.UUID(made.json()["id"]),
            at(created),
        )
    gone = (await api.post("/v1/deals", json={"name": "gone", "amount": "999.00", "currency": "USD"})).json()
    assert (await api.delete(f"/v1/deals/{gone['id']}")).status_code == 200


async def test_aggregate_groups_and_metrics(make_client: MakeClient, pool: asyncpg.Pool) -> None:
    api = await make_client()
    await _deals(api, pool)
    other = await make_client()
    await ensure_members(pool, other, [O1])
    assert (await other.post("/v1/deals", json={"name": "x", "owner_id": O1})).status_code == 201

    metrics = [
        {"op": "count"},
        {"op": "count", "field": "amount"},
        {"op": "sum", "field": "amount"},
        {"op": "avg", "field": "amount"},
        {"op": "min", "field": "amount"},
        {"op": "max", "field": "amount"},
        {"op": "median", "field": "amount"},
        {"op": "p90", "field": "amount"},
    ]
    # money is never added across currencies: ungrouped, each money metric is refused by name
    for i, metric in enumerate(metrics[2:], start=2):
        mixed = await api.post("/v1/deals/aggregate", json={"metrics": [{"op": "count"}, metric]})
        assert mixed.status_code == 422, mixed.text
        error = mixed.json()["errors"][0]
        assert error["path"] == "/metrics/1/field" and "currency" in error["message"], (i, error)
    counted = await api.post("/v1/deals/aggregate", json={"metrics": metrics[:2]})
    assert counted.json()["rows"] == [{"group": {}, "values": {"count": 4, "count_amount": 3}}]
    whole = await api.post("/v1/deals/aggregate", json={"group_by": ["currency"], "metrics": metrics})
    assert whole.status_code == 200, whole.text
    assert whole.json() == {
        "object": "aggregate",
        "rows": [
            {
                "group": {"currency": "EUR"},
                "values": {
                    "count": 1,
                    "count_amount": 1,
                    "sum_amount": "50.00",
                    "avg_amount": 50.0,
                    "min_amount": "50.00",
                    "max_amount": "50.00",
                    "median_amount": 50.0,
                    "p90_amount": 50.0,
                },
            },
            {
                "group": {"currency": "USD"},
                "values": {
                    "count": 2,
                    "count_amount": 2,
                    "sum_amount": "400.00",
                    "avg_amount": 200.0,
                    "min_amount": "100.00",
                    "max_amount": "300.00",
                    "median_amount": 200.0,
                    "p90_amount": 280.0,
                },
            },
            {
                "group": {"currency": None},
                "values": {
                    "count": 1,
                    "count_amount": 0,
                    "sum_amount": None,
                    "avg_amount": None,
                    "min_amount": None,
                    "max_amount": None,
                    "median_amount": None,
                    "p90_amount": None,
                },
            },
        ],
    }
    by_owner = await api.post(
        "/v1/deals/aggregate",
        json={
            "filter": {"field": "amount", "op": "is_null", "value": False},
            "group_by": ["owner_id", "currency"],
            "metrics": [{"op": "count"}, {"op": "sum", "field": "amount"}],
        },
    )
    assert [(r["group"], r["values"]) for r in by_owner.json()["rows"]] == [
        ({"owner_id": O1, "currency": "USD"}, {"count": 2, "sum_amount": "400.00"}),
        ({"owner_id": O2, "currency": "EUR"}, {"count": 1, "sum_amount": "50.00"}),
    ]
    monthly = {"field": "created_at", "interval": "month", "tz": "America/New_York"}
    months = await api.post("/v1/deals/aggregate", json={"group_by": [monthly], "metrics": [{"op": "count"}]})
    assert [(r["group"]["created_at"], r["values"]["count"]) for r in months.json()["rows"]] == [
        ("2026-01-01", 2),
        ("2026-02-01", 1),
        ("2026-03-01", 1),
    ]
    utc = await api.post(
        "/v1/deals/aggregate",
        json={
            "group_by": [{"field": "created_at", "interval": "month"}],
            "metrics": [{"op": "count"}],
            "include_archived": True,
        },
    )
    counts = [r["values"]["count"] for r in utc.json()["rows"]]
    assert counts[:3] == [1, 2, 1] and sum(counts) == 5

    bad = [
        ({"metrics": [{"op": "sum", "field": "name"}]}, "/metrics/0/field"),
        ({"metrics": [{"op": "avg"}]}, "/metrics/0/field"),
        ({"metrics": [{"op": "count", "field": "nope"}]}, "/metrics/0/field"),
        ({"metrics": [{"op": "count"}], "group_by": ["tags"]}, "/group_by/0"),
        ({"metrics": [{"op": "count"}], "group_by": ["custom_fields"]}, "/group_by/0"),
        (
            {"metrics": [{"op": "count"}], "group_by": [{"field": "name", "interval": "day"}]},
            "/group_by/0/field",
        ),
        (
            {
                "metrics": [{"op": "count"}],
                "group_by": [{"field": "closed_at", "interval": "day", "tz": "X/Y"}],
            },
            "/group_by/0/tz",
        ),
        (
            {"metrics": [{"op": "count"}], "filter": {"field": "nope", "op": "eq", "value": 1}},
            "/filter/field",
        ),
    ]
    for body, pointer in bad:
        answer = await api.post("/v1/deals/aggregate", json=body)
        assert answer.status_code == 422, (body, answer.text)
        assert answer.json()["errors"][0]["path"] == pointer, (body, answer.text)
    assert (await api.post("/v1/deals/aggregate", json={"metrics": []})).status_code == 422
    reader = await make_client(scopes=["contacts:read"])
    assert (await reader.post("/v1/deals/aggregate", json={"metrics": [{"op": "count"}]})).status_code == 403
    contacts = await reader.post("/v1/contacts/aggregate", json={"metrics": [{"op": "count"}]})
    assert contacts.json()["rows"] == [{"group": {}, "values": {"count": 0}}]


async def test_more_than_ten_thousand_groups_is_refused(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    ws = api.workspace_id  # type: ignore[attr-defined]
    made = (await api.post("/v1/deals", json={"name": "seed"})).json()
    # 10,001 deals with distinct names, copied from one in SQL (the API would take minutes)
    await pool.execute(
        "INSERT INTO deals (workspace_id, id, created_at, updated_at, version, name, pipeline_id, stage_id, "
        "status, tags, custom_fields, external_ids, contact_ids, search_text) "
        "SELECT workspace_id, gen_random_uuid(), created_at, updated_at, 1, 'n' || i, pipeline_id, stage_id, "
        "status, '{}', '{}', '{}', '{}', '' FROM deals, generate_series(1, 10000) AS i "
        "WHERE workspace_id = $1 AND id = $2",
        ws,
        uuid.UUID(made["id"]),
    )
    answer = await api.post("/v1/deals/aggregate", json={"group_by": ["name"], "metrics": [{"op": "count"}]})
    assert answer.status_code == 422 and answer.json()["errors"][0]["path"] == "/group_by"
    assert "more than 10000 groups by name;" in answer.json()["errors"][0]["message"]
    fine = await api.post("/v1/deals/aggregate", json={"group_by": ["status"], "metrics": [{"op": "count"}]})
    assert fine.json()["rows"] == [{"group": {"status": "open"}, "values": {"count": 10001}}]
