"""The pipeline at a past moment from the stays covering it, and the sales cycle's counts.

The sales cycle counts a deal once per stage from the previous entries kept at write time (migration
0037), not with ``count(DISTINCT deal_id)``. Deals that come back to a stage (inside the period, and across
its start), advance from one entry and not another, move to another pipeline and back, through every write
path, with stages reordered and removed and deals archived: after each step the report's per-stage rows
equal a slow recomputation with distinct counts over the whole history, for every period cut at the
history's own moments; and the kept columns equal what the whole history says. The pipeline as it stood
at each of those moments (from ``left_at``, migration 0037's index) equals today's deals rolled back by
each one's first move since, computed apart."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import asyncpg
import httpx
from report_data import deal, pipeline, stage_ids

from crm_api.reports import sales

STAGES = [
    {"name": "Lead", "probability": 0.1},
    {"name": "Demo", "probability": 0.5},
    {"name": "Proposal", "probability": 0.8},
    {"name": "Won", "kind": "won"},
    {"name": "Lost", "kind": "lost"},
]

# independent of the kept columns: each deal counted once with DISTINCT, per stage of the pipeline (a
# removed stage is no row of the report), stays measured for open stages (the report shows no time spent
# in a closed one)
_SLOW = """
SELECT h.to_stage_id AS stage_id,
       count(DISTINCT h.deal_id) AS entered,
       count(DISTINCT h.deal_id) FILTER (WHERE h.advanced) AS advanced,
       avg(coalesce(h.left_at, now()) - h.changed_at) FILTER (WHERE s.kind = 'open') AS mean,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY coalesce(h.left_at, now()) - h.changed_at)
           FILTER (WHERE s.kind = 'open') AS median
FROM deal_stage_changes AS h
JOIN pipeline_stages AS s
    ON s.workspace_id = h.workspace_id AND s.pipeline_id = h.pipeline_id AND s.id = h.to_stage_id
WHERE h.workspace_id = $1 AND h.pipeline_id = $2 AND h.changed_at >= $3 AND h.changed_at < $4
  AND ($5 OR NOT EXISTS (SELECT FROM deals AS d WHERE d.workspace_id = h.workspace_id
                         AND d.id = h.deal_id AND d.archived_at IS NOT NULL))
GROUP BY h.to_stage_id
"""

# the previous entries from the whole history, by subqueries (not windows)
_PREVIOUS = """
SELECT h.id,
       (SELECT max(p.changed_at) FROM deal_stage_changes AS p
        WHERE p.workspace_id = h.workspace_id AND p.deal_id = h.deal_id AND p.pipeline_id = h.pipeline_id
          AND p.to_stage_id = h.to_stage_id AND (p.changed_at, p.id) < (h.changed_at, h.id)) AS entered,
       (SELECT max(p.changed_at) FROM deal_stage_changes AS p
        WHERE p.workspace_id = h.workspace_id AND p.deal_id = h.deal_id AND p.pipeline_id = h.pipeline_id
          AND p.to_stage_id = h.to_stage_id AND p.advanced
          AND (p.changed_at, p.id) < (h.changed_at, h.id)) AS advanced,
       h.from_stage_id IS NOT NULL AND NOT EXISTS (
           SELECT FROM deal_stage_changes AS p WHERE p.workspace_id = h.workspace_id AND p.deal_id = h.deal_id
           AND (p.changed_at, p.id) < (h.changed_at, h.id)) AS opens
FROM deal_stage_changes AS h
WHERE h.workspace_id = $1
"""


# the pipeline at a moment, independent of left_at: today's deals rolled back by each one's first move since
_THEN_SLOW = """
SELECT CASE WHEN f.deal_id IS NULL THEN d.stage_id ELSE f.from_stage_id END AS stage_id, d.currency,
       count(*) AS deals, sum(d.amount) AS amount
FROM deals AS d
LEFT JOIN (SELECT DISTINCT ON (h.deal_id) h.deal_id, h.from_stage_id FROM deal_stage_changes AS h
           WHERE h.workspace_id = $1 AND h.changed_at > $3 ORDER BY h.deal_id, h.changed_at, h.id) AS f
    ON f.deal_id = d.id
WHERE d.workspace_id = $1 AND d.created_at <= $3
  AND ($4 OR d.archived_at IS NULL OR d.archived_at > $3)
  AND ((f.deal_id IS NULL AND d.pipeline_id = $2)
       OR f.from_stage_id IN (SELECT id FROM pipeline_stages WHERE workspace_id = $1 AND pipeline_id = $2))
GROUP BY 1, 2
"""


def _key(row: Any) -> tuple[str, str]:
    return (str(row["stage_id"]), str(row["currency"]))


async def _then_agree(pool: asyncpg.Pool, ws: uuid.UUID, pipeline_id: str) -> int:
    """The pipeline as it stood at every moment of the history (and just before and after each), archived
    deals in and out: the report's rows equal the slow ones. Returns how many moments had deals."""
    moments = sorted(
        {
            r["changed_at"]
            for r in await pool.fetch("SELECT changed_at FROM deal_stage_changes WHERE workspace_id = $1", ws)
        }
    )
    tick = dt.timedelta(microseconds=1)
    pid = uuid.UUID(pipeline_id)
    with_rows = 0
    async with pool.acquire() as conn, conn.transaction():
        for include_archived in (False, True):
            fast_stmt = sales._pipeline_then(False, include_archived)
            for as_of in sorted({m + d for m in moments for d in (-tick, dt.timedelta(0), tick)}):
                values = {"ws": ws, "pipeline_id": pid, "as_of": as_of}
                fast = sorted(map(dict, await fast_stmt.fetch(conn, **values)), key=_key)
                slow = sorted(
                    map(dict, await conn.fetch(_THEN_SLOW, ws, pid, as_of, include_archived)), key=_key
                )
                assert fast == slow, (as_of, include_archived)
                with_rows += bool(fast)
    return with_rows


async def _agree(pool: asyncpg.Pool, ws: uuid.UUID, pipeline_id: str) -> int:
    """For every period cut at the history's moments (and around them), archived deals in and out, the
    report's rows equal the slow ones (in one transaction: one now()). Returns how many periods had rows."""
    kept = {
        r["id"]: (r["prev_entered_at"], r["prev_advanced_at"], r["opens_history"])
        for r in await pool.fetch(
            "SELECT id, prev_entered_at, prev_advanced_at, opens_history FROM deal_stage_changes "
            "WHERE workspace_id = $1",
            ws,
        )
    }
    expected = await pool.fetch(_PREVIOUS, ws)
    assert kept == {r["id"]: (r["entered"], r["advanced"], r["opens"]) for r in expected}
    moments = sorted(
        {
            r["changed_at"]
            for r in await pool.fetch("SELECT changed_at FROM deal_stage_changes WHERE workspace_id = $1", ws)
        }
    )
    # a deal's first entry in the period depends on where the period starts (at a moment, or just after
    # it); where it ends only cuts entries off the end
    tick, day = dt.timedelta(microseconds=1), dt.timedelta(days=1)
    lowers = sorted({moments[0] - day, *moments, *(m + tick for m in moments)})
    uppers = sorted({moments[-1] + day, *(m + tick for m in moments[::4])})
    pid = uuid.UUID(pipeline_id)
    with_rows = 0
    async with pool.acquire() as conn, conn.transaction():
        for include_archived in (False, True):
            fast_stmt = sales._cycle_stages(include_archived)
            for lower in lowers:
                for upper in (u for u in uppers if u > lower):
                    values = {"ws": ws, "pipeline_id": pid, "lower": lower, "upper": upper}
                    fast = sorted(map(dict, await fast_stmt.fetch(conn, **values)), key=str)
                    slow = await conn.fetch(_SLOW, ws, pid, lower, upper, include_archived)
                    assert fast == sorted(map(dict, slow), key=str), (lower, upper, include_archived)
                    with_rows += bool(fast)
    return with_rows


async def _patch(api: httpx.AsyncClient, deal_id: str, **body: Any) -> None:
    r = await api.patch(f"/v1/deals/{deal_id}", json=body)
    assert r.status_code == 200, r.text


async def test_known_reentries_count_once(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    """Known answers: a deal back in Demo inside the quarter counts once there; one whose earlier Demo stay
    is before the quarter counts in it for its entry inside; advanced counts the deal once whichever of its
    entries advanced."""
    p = await pipeline(api, "Again", STAGES)
    await deal(
        api,
        pool,
        p,
        [
            ("Lead", "2026-01-05T10:00:00Z"),
            ("Demo", "2026-01-10T10:00:00Z"),  # advanced (Proposal next)
            ("Proposal", "2026-01-20T10:00:00Z"),
            ("Demo", "2026-02-01T10:00:00Z"),  # did not advance: lost after
            ("Lost", "2026-02-05T10:00:00Z"),
        ],
    )
    await deal(
        api,
        pool,
        p,
        [
            ("Lead", "2025-12-01T10:00:00Z"),
            ("Demo", "2025-12-10T10:00:00Z"),  # before the quarter
            ("Lead", "2025-12-20T10:00:00Z"),
            ("Demo", "2026-02-10T10:00:00Z"),  # in it, advanced
            ("Proposal", "2026-02-20T10:00:00Z"),
        ],
    )
    ws = api.workspace_id  # type: ignore[attr-defined]
    r = await api.get(
        "/v1/reports/sales-cycle", params={"pipeline_id": p["id"], "from": "2026-01-01", "to": "2026-03-31"}
    )
    assert r.status_code == 200, r.text
    by_name = {s["name"]: s for s in r.json()["stages"]}
    assert (by_name["Lead"]["entered"], by_name["Lead"]["advanced"]) == (1, 1)
    assert (by_name["Demo"]["entered"], by_name["Demo"]["advanced"]) == (2, 2)
    assert (by_name["Proposal"]["entered"], by_name["Proposal"]["advanced"]) == (2, 0)
    assert (by_name["Lost"]["entered"], by_name["Lost"]["advanced"]) == (1, None)
    assert await _agree(pool, ws, p["id"])


async def test_mixed_writes_keep_the_counts_exact(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    ws = api.workspace_id  # type: ignore[attr-defined]
    p = await pipeline(api, "Mixed", STAGES)
    q = await pipeline(api, "Other", [{"name": "X", "probability": 0.5}, {"name": "Y", "kind": "won"}])
    s, x = stage_ids(p), stage_ids(q)

    # create, then PATCH back and forth: Lead and Demo entered twice each
    body = {"name": "a", "pipeline_id": p["id"], "stage_id": s["Lead"], "amount": "100.50", "currency": "USD"}
    made = await api.post("/v1/deals", json=body)
    assert made.status_code == 201, made.text
    a = made.json()["id"]
    for stage in ("Demo", "Lead", "Proposal", "Demo"):
        await _patch(api, a, stage_id=s[stage])
    assert await _agree(pool, ws, p["id"])

    # batch create, batch upsert back to where it was, PUT by external id to lost
    items = [
        {"name": "b", "pipeline_id": p["id"], "stage_id": s["Demo"], "external_ids": {"crm": "b"}},
        {
            "name": "c",
            "pipeline_id": p["id"],
            "stage_id": s["Lead"],
            "external_ids": {"crm": "c"},
            "amount": "7.25",
            "currency": "EUR",
        },
    ]
    r = await api.post("/v1/deals/batch", json={"items": items})
    assert [i["status"] for i in r.json()["results"]] == [201, 201], r.text
    b = r.json()["results"][0]["object"]["id"]
    for stage in ("Proposal", "Demo", "Won"):
        upsert = [{"name": "b", "stage_id": s[stage], "external_ids": {"crm": "b"}}]
        r = await api.post("/v1/deals/batch", json={"items": upsert, "mode": "upsert"})
        assert [i["status"] for i in r.json()["results"]] == [200], r.text
    for stage in ("Demo", "Lead", "Lost"):
        put = await api.put("/v1/deals/by-external-id/crm/c", json={"name": "c", "stage_id": s[stage]})
        assert put.status_code == 200, put.text
    assert await _agree(pool, ws, p["id"])

    # to another pipeline and back into Demo again, then won
    await _patch(api, a, pipeline_id=q["id"], stage_id=x["X"])
    await _patch(api, a, pipeline_id=p["id"], stage_id=s["Demo"])
    await _patch(api, a, stage_id=s["Won"])
    assert await _agree(pool, ws, p["id"])
    assert await _agree(pool, ws, q["id"])
    assert await _then_agree(pool, ws, p["id"])
    assert await _then_agree(pool, ws, q["id"])

    # stages reordered (advanced changes, and with it the previous advanced entries), a stage removed with
    # its deals moved, a deal archived (left out unless asked) and another restored
    made = await api.post("/v1/deals", json={"name": "d", "pipeline_id": p["id"], "stage_id": s["Lead"]})
    d = made.json()["id"]
    for stage in ("Demo", "Lead", "Demo"):
        await _patch(api, d, stage_id=s[stage])
    order = [s["Demo"], s["Lead"], s["Proposal"], s["Won"], s["Lost"]]
    r = await api.put(f"/v1/pipelines/{p['id']}/stages/order", json={"stage_ids": order})
    assert r.status_code == 200, r.text
    assert await _agree(pool, ws, p["id"])
    r = await api.delete(
        f"/v1/pipelines/{p['id']}/stages/{s['Demo']}", params={"move_to_stage_id": s["Proposal"]}
    )
    assert r.status_code == 200, r.text
    assert (await api.delete(f"/v1/deals/{d}")).status_code == 200
    assert (await api.delete(f"/v1/deals/{b}")).status_code == 200
    assert (await api.post(f"/v1/deals/{b}/restore")).status_code == 200
    assert await _agree(pool, ws, p["id"])
    assert await _then_agree(pool, ws, p["id"])
    assert await _then_agree(pool, ws, q["id"])

    # a history that begins mid-way (older than the stage log kept, as a backfill leaves it): c's creation
    # is not recorded, so before its first recorded move it was where that move took it from
    first = await pool.fetchrow(
        "SELECT h.id, h.deal_id FROM deal_stage_changes AS h JOIN deals AS d "
        "ON d.workspace_id = h.workspace_id AND d.id = h.deal_id "
        "WHERE h.workspace_id = $1 AND d.name = 'c' ORDER BY h.changed_at, h.id LIMIT 1",
        ws,
    )
    await pool.execute("DELETE FROM deal_stage_changes WHERE workspace_id = $1 AND id = $2", ws, first["id"])
    await pool.execute("SELECT settle_deal_stage_changes($1, ARRAY[$2::uuid])", ws, first["deal_id"])
    opens = await pool.fetchval(
        "SELECT count(*) FROM deal_stage_changes WHERE workspace_id = $1 AND opens_history", ws
    )
    assert opens == 1
    assert await _agree(pool, ws, p["id"])
    assert await _then_agree(pool, ws, p["id"])
