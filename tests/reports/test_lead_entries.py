"""Lead conversion from the facts kept on each entry into lead (migration 0036) against the computation it
replaces, through lifecycle edits (leads again, customers before and after), history times rewritten,
source edits, archive and restore, merges and erasure; several periods, intervals and time zones."""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo
from typing import Any

import asyncpg
import httpx
from clients import MakeClient
from report_data import at

from crm_api.reports import acquisition, rollup

# (from, to, interval, tz)
PERIODS = [
    ("2026-01-01", "2026-12-31", "month", "UTC"),
    ("2026-01-01", "2026-12-31", "week", "Asia/Kathmandu"),
    ("2026-02-01", "2026-03-31", "day", "America/New_York"),
    ("2026-02-10", "2026-02-20", "day", "Asia/Kolkata"),
    ("2026-02-10", "2026-02-20", "day", "Asia/Kathmandu"),
    ("2025-01-01", "2026-12-31", "quarter", "UTC"),
]


def _params(start: str, end: str, unit: str, tz: str) -> dict[str, Any]:
    zone = zoneinfo.ZoneInfo(tz)
    first, last = dt.date.fromisoformat(start), dt.date.fromisoformat(end) + dt.timedelta(days=1)
    return {
        "lower": dt.datetime.combine(first, dt.time(), zone).astimezone(dt.UTC),
        "upper": dt.datetime.combine(last, dt.time(), zone).astimezone(dt.UTC),
        "first_day": first,
        "unit": unit,
        "tz": tz,
    }


async def _same(pool: asyncpg.Pool, ws: uuid.UUID) -> list[Any]:
    answers = []
    for start, end, unit, tz in PERIODS:
        for by_source in (False, True):
            for archived in (False, True):
                period = _params(start, end, unit, tz)
                kept = await acquisition.lead_conversion(pool, ws, by_source, archived, period)
                slow = await acquisition.lead_conversion_from_history(pool, ws, by_source, archived, period)
                key = str
                assert sorted(kept, key=key) == sorted(slow, key=key), (
                    start,
                    end,
                    unit,
                    tz,
                    by_source,
                    archived,
                )
                answers.append(sorted(kept, key=key))
    return answers


async def _ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code in (200, 201), response.text
    body: dict[str, Any] = response.json()
    return body


async def _walk(api: httpx.AsyncClient, pool: asyncpg.Pool, cid: str, steps: list[tuple[str, str]]) -> None:
    """The contact enters each stage in turn, then every entry of its history is moved to its moment (the
    first entries keep theirs when there are more entries than moments)."""
    for stage, _ in steps:
        await _ok(await api.patch(f"/v1/contacts/{cid}", json={"lifecycle_stage": stage}))
    rows = await pool.fetch(
        "SELECT id FROM contact_lifecycle_changes WHERE workspace_id = $1 AND contact_id = $2 "
        "ORDER BY changed_at, id",
        api.workspace_id,  # type: ignore[attr-defined]
        uuid.UUID(cid),
    )
    for row, (_, moment) in zip(rows[-len(steps) :], steps, strict=True):
        await pool.execute(
            "UPDATE contact_lifecycle_changes SET changed_at = $3 WHERE workspace_id = $1 AND id = $2",
            api.workspace_id,  # type: ignore[attr-defined]
            row["id"],
            at(moment),
        )


async def test_kept_lead_facts_answer_what_the_history_says(
    make_client: MakeClient, pool: asyncpg.Pool
) -> None:
    api = await make_client()
    ws = api.workspace_id  # type: ignore[attr-defined]
    other = await make_client()
    await _ok(await other.post("/v1/contacts", json={"source": "ads", "lifecycle_stage": "lead"}))

    ids = []
    for source in ("ads", "ads", "web", None, "web", "fair", "fair", "ads"):
        ids.append((await _ok(await api.post("/v1/contacts", json={"source": source})))["id"])
    # a lead that converts; one that leaves lead and comes back (twice in a period); a customer first
    await _walk(api, pool, ids[0], [("lead", "2026-01-05T00:00:00Z"), ("customer", "2026-01-15T00:00:00Z")])
    await _walk(
        api,
        pool,
        ids[1],
        [
            ("lead", "2026-02-01T03:00:00Z"),
            ("subscriber", "2026-02-03T00:00:00Z"),
            ("lead", "2026-02-14T18:20:00Z"),
            ("customer", "2026-03-01T00:00:00Z"),
        ],
    )
    await _walk(api, pool, ids[2], [("customer", "2026-01-03T00:00:00Z"), ("lead", "2026-01-10T00:00:00Z")])
    await _walk(api, pool, ids[3], [("lead", "2025-12-31T23:00:00Z"), ("customer", "2026-02-12T12:00:00Z")])
    await _walk(
        api,
        pool,
        ids[4],
        [
            ("lead", "2026-02-10T18:45:00Z"),
            ("customer", "2026-02-10T18:50:00Z"),
            ("lead", "2026-05-01T00:00:00Z"),
        ],
    )
    await _walk(api, pool, ids[5], [("lead", "2026-03-03T00:00:00Z")])
    await _walk(api, pool, ids[6], [("lead", "2026-03-04T00:00:00Z"), ("customer", "2026-06-04T00:00:00Z")])
    await _walk(api, pool, ids[7], [("lead", "2026-04-04T00:00:00Z"), ("customer", "2026-04-05T00:00:00Z")])
    first = await _same(pool, ws)

    await rollup.fold(pool, wait=True)
    assert await _same(pool, ws) == first
    # a conversion moved earlier than its lead (no longer a conversion), a lead entry moved out of the period
    await _walk(api, pool, ids[0], [("customer", "2026-01-01T00:00:00Z")])
    await pool.execute(
        "UPDATE contact_lifecycle_changes SET changed_at = $3 WHERE workspace_id = $1 AND contact_id = $2 "
        "AND to_stage = 'lead'",
        ws,
        uuid.UUID(ids[5]),
        at("2024-06-01T00:00:00Z"),
    )
    await _ok(await api.patch(f"/v1/contacts/{ids[1]}", json={"source": "web"}))
    await _ok(await api.patch(f"/v1/contacts/{ids[2]}", json={"source": None}))
    await _same(pool, ws)
    await _ok(await api.delete(f"/v1/contacts/{ids[3]}"))
    await _ok(await api.delete(f"/v1/contacts/{ids[4]}"))
    await _ok(await api.post(f"/v1/contacts/{ids[4]}/restore"))
    await _same(pool, ws)
    await rollup.fold(pool, wait=True)
    await _same(pool, ws)
    await _ok(await api.post(f"/v1/contacts/{ids[6]}/merge", json={"from": [ids[7]]}))
    await _ok(await api.post(f"/v1/contacts/{ids[0]}/erase"))
    last = await _same(pool, ws)
    assert last != first
    await rollup.fold(pool, wait=True)
    assert await _same(pool, ws) == last
    assert await pool.fetchval("SELECT count(*) FROM lead_pending") == 0


async def test_the_kept_facts_of_one_contact(make_client: MakeClient, pool: asyncpg.Pool) -> None:
    """Known answers on the rows: each entry into lead knows the previous one and the next conversion."""
    api = await make_client()
    cid = (await _ok(await api.post("/v1/contacts", json={"source": "ads"})))["id"]
    steps = [
        ("lead", "2026-01-01T00:00:00Z"),
        ("customer", "2026-01-02T00:00:00Z"),
        ("lead", "2026-01-03T00:00:00Z"),
        ("customer", "2026-01-04T00:00:00Z"),
        ("lead", "2026-01-05T00:00:00Z"),
    ]
    await _walk(api, pool, cid, steps)
    await _ok(await api.patch(f"/v1/contacts/{cid}", json={"source": "web"}))
    rows = await pool.fetch(
        "SELECT changed_at, prior_lead_at, converted_at, source, archived FROM contact_lifecycle_changes "
        "WHERE workspace_id = $1 AND contact_id = $2 AND to_stage = 'lead' ORDER BY changed_at",
        api.workspace_id,  # type: ignore[attr-defined]
        uuid.UUID(cid),
    )
    day = [at(m) for _, m in steps]
    assert [tuple(r) for r in rows] == [
        (day[0], None, day[1], "web", False),
        (day[2], day[0], day[3], "web", False),
        (day[4], day[2], None, "web", False),
    ]
    await _ok(await api.delete(f"/v1/contacts/{cid}"))
    archived = await pool.fetch(
        "SELECT DISTINCT archived FROM contact_lifecycle_changes WHERE workspace_id = $1 AND contact_id = $2 "
        "AND to_stage = 'lead'",
        api.workspace_id,  # type: ignore[attr-defined]
        uuid.UUID(cid),
    )
    assert [r["archived"] for r in archived] == [True]
