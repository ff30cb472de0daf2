"""POST /v1/<resource>/aggregate beyond the deals' basics: the filter's relation hops (one hop, as /search
allows), every time bucket of a timestamp in a time zone and of a date field, and the 422s naming the
field at fault (a metric on a non-numeric field, an unknown field in a metric, a group or the filter)."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx
from report_data import at

COUNT_SUM = [{"op": "count"}, {"op": "sum", "field": "amount"}]


async def _post(api: httpx.AsyncClient, resource: str, body: dict[str, Any]) -> list[tuple[Any, Any]]:
    answer = await api.post(f"/v1/{resource}/aggregate", json=body)
    assert answer.status_code == 200, answer.text
    return [(r["group"], r["values"]) for r in answer.json()["rows"]]


async def test_filters_follow_one_relation_hop(api: httpx.AsyncClient) -> None:
    acme = (await api.post("/v1/companies", json={"name": "Acme", "domain": "acme.example"})).json()
    globex = (await api.post("/v1/companies", json={"name": "Globex", "domain": "globex.example"})).json()
    ann = (
        await api.post("/v1/contacts", json={"email": "ann@acme.example", "company_id": acme["id"]})
    ).json()
    bob = (
        await api.post("/v1/contacts", json={"email": "bob@globex.example", "company_id": globex["id"]})
    ).json()
    for name, company, contact, amount, currency in (
        ("a1", acme, ann, "100.00", "USD"),
        ("a2", acme, None, "50.00", "EUR"),
        ("a3", acme, ann, "25.50", "USD"),
        ("g1", globex, bob, "999.00", "USD"),
    ):
        body: dict[str, Any] = {
            "name": name,
            "company_id": company["id"],
            "amount": amount,
            "currency": currency,
        }
        if contact:
            body["contact_id"] = contact["id"]
        assert (await api.post("/v1/deals", json=body)).status_code == 201
    for requester in (ann, ann, bob):
        made = await api.post("/v1/tickets", json={"subject": "s", "requester_id": requester["id"]})
        assert made.status_code == 201, made.text

    by_company = {"field": "company.name", "op": "eq", "value": "Acme"}
    assert await _post(
        api, "deals", {"filter": by_company, "group_by": ["currency"], "metrics": COUNT_SUM}
    ) == [
        ({"currency": "EUR"}, {"count": 1, "sum_amount": "50.00"}),
        ({"currency": "USD"}, {"count": 2, "sum_amount": "125.50"}),
    ]
    by_contact = {"field": "contact.email", "op": "eq", "value": "ann@acme.example"}
    assert await _post(
        api, "deals", {"filter": by_contact, "group_by": ["currency"], "metrics": COUNT_SUM}
    ) == [({"currency": "USD"}, {"count": 2, "sum_amount": "125.50"})]
    by_domain = {"field": "company.domain", "op": "eq", "value": "globex.example"}
    assert await _post(api, "contacts", {"filter": by_domain, "metrics": [{"op": "count"}]}) == [
        ({}, {"count": 1})
    ]
    by_requester = {"field": "requester.email", "op": "eq", "value": "ann@acme.example"}
    assert await _post(api, "tickets", {"filter": by_requester, "metrics": [{"op": "count"}]}) == [
        ({}, {"count": 2})
    ]
    for resource, field in (
        ("deals", "company.nope"),
        ("deals", "company.company.name"),
        ("contacts", "deal.name"),
    ):
        answer = await api.post(
            f"/v1/{resource}/aggregate",
            json={"filter": {"field": field, "op": "eq", "value": "x"}, "metrics": [{"op": "count"}]},
        )
        assert answer.status_code == 422, (field, answer.text)
        assert answer.json()["errors"][0]["path"] == "/filter/field", (field, answer.text)


async def test_time_buckets_of_every_interval(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    ws = api.workspace_id  # type: ignore[attr-defined]
    for created, expected in (
        ("2026-01-05T12:00:00Z", "2026-01-31"),  # a Monday
        ("2026-01-11T12:00:00Z", "2026-02-01"),  # a Sunday
        ("2026-04-01T03:00:00Z", None),  # 31 March in New York
        ("2027-01-01T04:00:00Z", "2027-01-01"),  # 31 December 2026 in New York
    ):
        body = {"name": "d", "amount": "10.00", "currency": "USD", "expected_close_date": expected}
        made = (await api.post("/v1/deals", json=body)).json()
        await pool.execute(
            "UPDATE deals SET created_at = $3 WHERE workspace_id = $1 AND id = $2",
            ws,
            uuid.UUID(made["id"]),
            at(created),
        )

    async def buckets(
        interval: str, tz: str | None = None, field: str = "created_at"
    ) -> list[tuple[str, int]]:
        group: dict[str, Any] = {"field": field, "interval": interval}
        if tz:
            group["tz"] = tz
        rows = await _post(api, "deals", {"group_by": [group], "metrics": [{"op": "count"}]})
        return [(g[field], v["count"]) for g, v in rows]

    ny = "America/New_York"
    assert await buckets("day") == [
        ("2026-01-05", 1),
        ("2026-01-11", 1),
        ("2026-04-01", 1),
        ("2027-01-01", 1),
    ]
    assert await buckets("day", ny) == [
        ("2026-01-05", 1),
        ("2026-01-11", 1),
        ("2026-03-31", 1),
        ("2026-12-31", 1),
    ]
    assert await buckets("week") == [("2026-01-05", 2), ("2026-03-30", 1), ("2026-12-28", 1)]
    assert await buckets("quarter") == [("2026-01-01", 2), ("2026-04-01", 1), ("2027-01-01", 1)]
    assert await buckets("quarter", ny) == [("2026-01-01", 3), ("2026-10-01", 1)]
    assert await buckets("year") == [("2026-01-01", 3), ("2027-01-01", 1)]
    assert await buckets("year", ny) == [("2026-01-01", 4)]
    # a date field has no time zone; deals without one are the null group, last
    assert await buckets("month", field="expected_close_date") == [
        ("2026-01-01", 1),
        ("2026-02-01", 1),
        ("2027-01-01", 1),
        (None, 1),
    ]


async def test_refusals_name_the_field(api: httpx.AsyncClient) -> None:
    cases = [
        ({"metrics": [{"op": "sum", "field": "name"}]}, "/metrics/0/field", "name"),
        ({"metrics": [{"op": "count"}, {"op": "p90", "field": "email"}]}, "/metrics/1/field", "email"),
        ({"metrics": [{"op": "median", "field": "nope"}]}, "/metrics/0/field", "nope"),
        ({"metrics": [{"op": "count"}], "group_by": ["status", "nope"]}, "/group_by/1", "nope"),
        (
            {"metrics": [{"op": "count"}], "filter": {"field": "nope", "op": "eq", "value": 1}},
            "/filter/field",
            "nope",
        ),
    ]
    for body, pointer, name in cases:
        resource = "contacts" if "email" in str(body) else "deals"
        answer = await api.post(f"/v1/{resource}/aggregate", json=body)
        assert answer.status_code == 422, (body, answer.text)
        error = answer.json()["errors"][0]
        assert error["path"] == pointer and f"'{name}'" in error["message"], (body, error)


async def test_metrics_rounded_and_money_kept_exact(api: httpx.AsyncClient) -> None:
    for amount in ("10.00", "10.00", "20.01"):
        body = {"name": "r", "amount": amount, "currency": "USD"}
        assert (await api.post("/v1/deals", json=body)).status_code == 201
    metrics = [{"op": op, "field": "amount"} for op in ("sum", "avg", "min", "max", "median", "p90")]
    assert await _post(api, "deals", {"group_by": ["currency"], "metrics": metrics}) == [
        (
            {"currency": "USD"},
            {
                "sum_amount": "40.01",  # a decimal string, as the amounts are
                "avg_amount": 13.3367,  # 13.336666...: 4 places, half up
                "min_amount": "10.00",
                "max_amount": "20.01",
                "median_amount": 10.0,
                "p90_amount": 18.008,  # percentile_cont: 10.00 + 0.8 * 10.01
            },
        )
    ]
