"""What the sales cycle reads from each stage change, kept at write time by triggers (migration 0027):
when the deal left the stage (``left_at``) and whether it later advanced (``advanced``). Written through
every path that moves a deal (create, PATCH, batch create and upsert, PUT by external id, a move to another
pipeline and back, stages reordered, a stage removed with its deals moved), each step checked against known
answers and against the same facts computed from the whole history."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx
from report_data import pipeline, stage_ids

STAGES = [
    {"name": "Lead", "probability": 0.1},
    {"name": "Demo", "probability": 0.5},
    {"name": "Proposal", "probability": 0.8},
    {"name": "Won", "kind": "won"},
    {"name": "Lost", "kind": "lost"},
]

# The facts from the whole history, written independently of the triggers: per change, the next change of
# the deal, and whether a later change in the same pipeline entered a won stage or an open one further on.
_REFERENCE = """
SELECT h.id,
       (SELECT min(n.changed_at) FROM deal_stage_changes AS n
        WHERE n.workspace_id = h.workspace_id AND n.deal_id = h.deal_id
          AND (n.changed_at, n.id) > (h.changed_at, h.id)) AS left_at,
       coalesce((SELECT bool_or(ns.kind = 'won' OR (ns.kind = 'open' AND ns.position > s.position))
                 FROM deal_stage_changes AS n
                 JOIN pipeline_stages AS ns ON ns.workspace_id = n.workspace_id AND ns.id = n.to_stage_id
                 WHERE n.workspace_id = h.workspace_id AND n.deal_id = h.deal_id
                   AND ns.pipeline_id = h.pipeline_id AND s.position IS NOT NULL
                   AND (n.changed_at, n.id) > (h.changed_at, h.id)), false) AS advanced
FROM deal_stage_changes AS h
LEFT JOIN pipeline_stages AS s
    ON s.workspace_id = h.workspace_id AND s.pipeline_id = h.pipeline_id AND s.id = h.to_stage_id
WHERE h.workspace_id = $1
"""


async def _stays(pool: asyncpg.Pool, ws: uuid.UUID, deal_id: str) -> list[tuple[str, bool, bool]]:
    """The deal's changes in order: (stage entered, left yet, advanced)."""
    rows = await pool.fetch(
        "SELECT to_stage_id, left_at, advanced FROM deal_stage_changes WHERE workspace_id = $1 "
        "AND deal_id = $2 ORDER BY changed_at, id",
        ws,
        uuid.UUID(deal_id),
    )
    return [(str(r["to_stage_id"]), r["left_at"] is not None, r["advanced"]) for r in rows]


async def _settled(pool: asyncpg.Pool, ws: uuid.UUID) -> None:
    """Every change of the workspace holds what its whole history says."""
    kept = {
        r["id"]: (r["left_at"], r["advanced"])
        for r in await pool.fetch(
            "SELECT id, left_at, advanced FROM deal_stage_changes WHERE workspace_id = $1", ws
        )
    }
    expected = {r["id"]: (r["left_at"], r["advanced"]) for r in await pool.fetch(_REFERENCE, ws)}
    assert kept == expected
    assert kept  # the test wrote history


async def _patch(api: httpx.AsyncClient, deal_id: str, **body: Any) -> None:
    r = await api.patch(f"/v1/deals/{deal_id}", json=body)
    assert r.status_code == 200, r.text


async def test_every_write_path_keeps_the_stays(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    ws = api.workspace_id  # type: ignore[attr-defined]
    p = await pipeline(api, "Stays", STAGES)
    q = await pipeline(api, "Elsewhere", [{"name": "X", "probability": 0.5}, {"name": "Y", "kind": "won"}])
    s, x = stage_ids(p), stage_ids(q)

    # create, then PATCH forward and back: Lead advanced (Proposal is further), Proposal did not
    made = await api.post("/v1/deals", json={"name": "a", "pipeline_id": p["id"], "stage_id": s["Lead"]})
    assert made.status_code == 201, made.text
    a = made.json()["id"]
    assert await _stays(pool, ws, a) == [(s["Lead"], False, False)]
    await _patch(api, a, stage_id=s["Proposal"])
    await _patch(api, a, stage_id=s["Demo"])
    assert await _stays(pool, ws, a) == [
        (s["Lead"], True, True),
        (s["Proposal"], True, False),
        (s["Demo"], False, False),
    ]
    await _settled(pool, ws)

    # batch create, batch upsert to won, PUT by external id to lost: a loss is not an advance
    items = [
        {"name": "b", "pipeline_id": p["id"], "stage_id": s["Demo"], "external_ids": {"crm": "b"}},
        {"name": "c", "pipeline_id": p["id"], "stage_id": s["Lead"], "external_ids": {"crm": "c"}},
    ]
    r = await api.post("/v1/deals/batch", json={"items": items})
    assert [i["status"] for i in r.json()["results"]] == [201, 201], r.text
    b, c = (i["object"]["id"] for i in r.json()["results"])
    upsert = [{"name": "b", "stage_id": s["Won"], "external_ids": {"crm": "b"}}]
    r = await api.post("/v1/deals/batch", json={"items": upsert, "mode": "upsert"})
    assert [i["status"] for i in r.json()["results"]] == [200], r.text
    put = await api.put("/v1/deals/by-external-id/crm/c", json={"name": "c", "stage_id": s["Lost"]})
    assert put.status_code == 200, put.text
    assert await _stays(pool, ws, b) == [(s["Demo"], True, True), (s["Won"], False, False)]
    assert await _stays(pool, ws, c) == [(s["Lead"], True, False), (s["Lost"], False, False)]
    await _settled(pool, ws)

    # to another pipeline and back, won: leaving for X ends the stay in Demo; the win advances every stay
    # of this pipeline, not the one in the other
    await _patch(api, a, pipeline_id=q["id"], stage_id=x["X"])
    assert (await _stays(pool, ws, a))[2:] == [(s["Demo"], True, False), (x["X"], False, False)]
    await _patch(api, a, pipeline_id=p["id"], stage_id=s["Won"])
    assert await _stays(pool, ws, a) == [
        (s["Lead"], True, True),
        (s["Proposal"], True, True),
        (s["Demo"], True, True),
        (x["X"], True, False),
        (s["Won"], False, False),
    ]
    await _settled(pool, ws)

    # stages reordered: d went Lead -> Demo, an advance; with Demo before Lead it is not one any more
    made = await api.post("/v1/deals", json={"name": "d", "pipeline_id": p["id"], "stage_id": s["Lead"]})
    d = made.json()["id"]
    await _patch(api, d, stage_id=s["Demo"])
    assert await _stays(pool, ws, d) == [(s["Lead"], True, True), (s["Demo"], False, False)]
    order = [s["Demo"], s["Lead"], s["Proposal"], s["Won"], s["Lost"]]
    r = await api.put(f"/v1/pipelines/{p['id']}/stages/order", json={"stage_ids": order})
    assert r.status_code == 200, r.text
    assert await _stays(pool, ws, d) == [(s["Lead"], True, False), (s["Demo"], False, False)]
    await _settled(pool, ws)

    # a renamed stage settles nothing new (and changes nothing)
    r = await api.patch(f"/v1/pipelines/{p['id']}/stages/{s['Demo']}", json={"name": "Demo call"})
    assert r.status_code == 200, r.text
    await _settled(pool, ws)

    # Demo removed, its deals moved to Proposal (further than Lead now): d's Demo stay ends; its stay in
    # Lead advanced again, through Proposal
    r = await api.delete(
        f"/v1/pipelines/{p['id']}/stages/{s['Demo']}", params={"move_to_stage_id": s["Proposal"]}
    )
    assert r.status_code == 200, r.text
    assert await _stays(pool, ws, d) == [
        (s["Lead"], True, True),
        (s["Demo"], True, False),
        (s["Proposal"], False, False),
    ]
    await _settled(pool, ws)

    # archiving and restoring writes no stage change and keeps the stays
    assert (await api.delete(f"/v1/deals/{d}")).status_code == 200
    assert (await api.post(f"/v1/deals/{d}/restore")).status_code == 200
    assert len(await _stays(pool, ws, d)) == 3
    await _settled(pool, ws)
