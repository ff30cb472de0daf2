"""A record archived at a past ``as_of`` and restored since was not live then: the pipeline's and the
customers' ``as_of`` leave it out, from the span each restore keeps (``archive_spans``, migration 0044),
though the restore cleared ``archived_at``. Before the archival, and now, it counts."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx
from report_data import archive, at, deal, pipeline

STAGES = [{"name": "Lead", "probability": 0.5}, {"name": "Won", "kind": "won"}]
BEFORE = "2026-02-01T00:00:00Z"  # before the archivals
DURING = "2026-04-01T00:00:00Z"  # archived then
ARCHIVED = "2026-03-01T00:00:00Z"


async def _restore(api: httpx.AsyncClient, kind: str, oid: str) -> dict[str, Any]:
    r = await api.post(f"/v1/{kind}/{oid}/restore")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert body["archived_at"] is None
    return body


async def _spans(pool: asyncpg.Pool, ws: uuid.UUID) -> list[tuple[Any, ...]]:
    rows = await pool.fetch(
        "SELECT object_type, object_id, archived_at FROM archive_spans WHERE workspace_id = $1 "
        "ORDER BY object_type, archived_at",
        ws,
    )
    return [tuple(r) for r in rows]


async def test_a_restore_keeps_the_span_and_the_pipeline_as_of_leaves_the_deal_out(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    ws = api.workspace_id  # type: ignore[attr-defined]
    pipe = await pipeline(api, "Restored", STAGES)
    kept = await deal(api, pool, pipe, [("Lead", "2026-01-10T00:00:00Z")], "100.00", "USD")
    back = await deal(api, pool, pipe, [("Lead", "2026-01-10T00:00:00Z")], "40.00", "USD")
    await archive(api, pool, back, ARCHIVED)
    # an archival and restore with nothing else changed moves no span but the restore's own
    assert await _spans(pool, ws) == []
    restored = await _restore(api, "deals", back)
    assert restored["id"] == back
    assert await _spans(pool, ws) == [("deal", uuid.UUID(back), at(ARCHIVED))]
    # restored when the restore says, by the clock archived_at and the events are written with
    restored_at = await pool.fetchval("SELECT restored_at FROM archive_spans WHERE workspace_id = $1", ws)
    assert restored_at == at(restored["updated_at"])
    # the restore's event names the archival it ended, as the migration's backfill reads it
    previous = await pool.fetchval(
        "SELECT data -> 'previous' ->> 'archived_at' FROM events "
        "WHERE workspace_id = $1 AND type = 'deal.restored' AND object_id = $2",
        ws,
        uuid.UUID(back),
    )
    assert at(previous) == at(ARCHIVED)
    # restoring a live deal keeps nothing more
    await _restore(api, "deals", back)
    assert len(await _spans(pool, ws)) == 1

    async def lead(as_of: str | None) -> tuple[int, dict[str, str]]:
        query = {"pipeline_id": pipe["id"], **({"as_of": as_of} if as_of else {})}
        body = (await api.get("/v1/reports/pipeline", params=query)).json()
        stage = next(s for s in body["stages"] if s["name"] == "Lead")
        return stage["deal_count"], stage["amount"]

    assert await lead(BEFORE) == (2, {"USD": "140.00"})
    assert await lead(DURING) == (1, {"USD": "100.00"})  # it was archived on 1 April
    assert await lead(None) == (2, {"USD": "140.00"})
    # include_archived counts it whenever
    asked = {"pipeline_id": pipe["id"], "as_of": DURING, "include_archived": "true"}
    every = await api.get("/v1/reports/pipeline", params=asked)
    assert every.json()["totals"]["deal_count"] == 2
    assert kept != back


async def test_customers_as_of_leaves_out_a_contact_and_a_won_deal_archived_then(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    ws = api.workspace_id  # type: ignore[attr-defined]
    pipe = await pipeline(api, "Restored buyers", STAGES)
    people = {}
    for name in ("amy", "ben", "cat"):
        made = await api.post("/v1/contacts", json={"email": f"{name}@example.com"})
        assert made.status_code == 201, made.text
        people[name] = made.json()["id"]
    won = [("Lead", "2026-01-05T00:00:00Z"), ("Won", "2026-01-20T00:00:00Z")]
    for name, amount in (("amy", "100.00"), ("ben", "40.00"), ("cat", "10.00")):
        await deal(api, pool, pipe, won, amount, "USD", contact_id=people[name])
    ben_deal = (await api.get("/v1/deals", params={"contact_id": people["ben"]})).json()["data"][0]["id"]
    # amy archived on 1 March and restored; ben's won deal archived on 1 March and restored
    assert (await api.delete(f"/v1/contacts/{people['amy']}")).status_code == 200
    await pool.execute(
        "UPDATE contacts SET archived_at = $3 WHERE workspace_id = $1 AND id = $2",
        ws,
        uuid.UUID(people["amy"]),
        at(ARCHIVED),
    )
    await _restore(api, "contacts", people["amy"])
    await archive(api, pool, ben_deal, ARCHIVED)
    await _restore(api, "deals", ben_deal)
    assert [s[:2] for s in await _spans(pool, ws)] == [
        ("contact", uuid.UUID(people["amy"])),
        ("deal", uuid.UUID(ben_deal)),
    ]

    async def customers(as_of: str | None, **more: str) -> tuple[int, str]:
        query = {**({"as_of": as_of} if as_of else {}), **more}
        r = await api.get("/v1/reports/customers", params=query)
        assert r.status_code == 200, r.text
        return r.json()["customers"], r.json()["lifetime_value"]["mean"]

    assert await customers(BEFORE) == (3, "50.00")
    assert await customers(DURING) == (1, "10.00")  # cat alone: amy archived, ben's only purchase too
    assert await customers(DURING, include_archived="true") == (3, "50.00")
    assert await customers(None) == (3, "50.00")
