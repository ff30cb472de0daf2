"""The reports at size: seed deals with their stage history in SQL, then time each report's default query
(and its variants) from one client, one request at a time.

    python bench/reports.py seed --db postgresql://postgres@127.0.0.1:5432/crm_bench --deals 200000
    python bench/reports.py measure --port 8077 --key KEY [--runs 20]

The seed puts every deal in the workspace's default pipeline (stages 0-3 open, 4 won, 5 lost), spread
over the last 700 days, 20 owners, 5 sources, three deals in four in USD and one in EUR; open deals mostly
expect to close in 2026; each deal's history walks the open stages up to where it is (a lost deal: its
first stage, then lost). No events are written: the reports do not read them.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import statistics
import time
import uuid

from httpclient import Connection

_DEALS = """
WITH s AS (
    SELECT array_agg(st.id ORDER BY st.position) AS ids, array_agg(st.kind ORDER BY st.position) AS kinds
    FROM pipeline_stages st WHERE st.workspace_id = $1 AND st.pipeline_id = $2
)
INSERT INTO deals (workspace_id, id, created_at, updated_at, version, name, amount, currency, pipeline_id,
                   stage_id, status, expected_close_date, owner_id, source, lost_reason, closed_at, tags,
                   custom_fields, external_ids, contact_ids, search_text)
SELECT $1, gen_random_uuid(), x.created, x.created, 1, 'deal ' || i, (100 + i % 9900)::numeric(20, 2),
       CASE WHEN i % 4 = 0 THEN 'EUR' ELSE 'USD' END, $2, s.ids[1 + x.st], s.kinds[1 + x.st],
       CASE WHEN s.kinds[1 + x.st] = 'open' AND i % 10 <> 0 THEN date '2026-01-01' + (i * 7) % 365 END,
       md5('owner' || i % 20)::uuid, (ARRAY['web', 'referral', 'ads', 'event', 'partner'])[1 + i % 5],
       CASE WHEN s.kinds[1 + x.st] = 'lost' THEN (ARRAY['price', 'timing', 'competitor'])[1 + i % 3] END,
       CASE WHEN s.kinds[1 + x.st] <> 'open' THEN x.created + make_interval(days => 12 + i % 90) END,
       '{}', '{}', '{}', '{}', ''
FROM generate_series($3::int, $4::int) AS i, s,
     LATERAL (SELECT (i * 13) % 6 AS st,
                     now() - make_interval(days => 103 + i % 700, secs => i % 86400) AS created) AS x
"""

_HISTORY = """
WITH s AS (
    SELECT array_agg(st.id ORDER BY st.position) AS ids
    FROM pipeline_stages st WHERE st.workspace_id = $1 AND st.pipeline_id = $2
)
INSERT INTO deal_stage_changes (workspace_id, id, deal_id, pipeline_id, from_stage_id, to_stage_id,
                                changed_at, actor)
SELECT d.workspace_id, gen_random_uuid(), d.id, d.pipeline_id, p.path[k], p.path[k + 1],
       CASE WHEN k = cardinality(p.path) - 1 AND d.closed_at IS NOT NULL THEN d.closed_at
            ELSE d.created_at + make_interval(days => k * 3) END,
       'system:seed'
FROM deals d, s,
     LATERAL (SELECT CASE WHEN d.stage_id = s.ids[5] THEN s.ids[1:5]
                          WHEN d.stage_id = s.ids[6] THEN ARRAY[s.ids[1], s.ids[6]]
                          ELSE s.ids[1:array_position(s.ids, d.stage_id)] END AS path) AS p,
     generate_series(0, cardinality(p.path) - 1) AS k
WHERE d.workspace_id = $1
"""


async def seed(url: str, workspace: str, count: int) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        ws = await conn.fetchval("SELECT id FROM workspaces WHERE name = $1", workspace)
        assert ws is not None, f"no workspace {workspace!r}: create a key for it first"
        pipeline = await conn.fetchval("SELECT id FROM pipelines WHERE workspace_id = $1 AND is_default", ws)
        began = time.perf_counter()
        for start in range(0, count, 50_000):
            await conn.execute(_DEALS, ws, pipeline, start, min(start + 50_000, count) - 1)
        deals = time.perf_counter() - began
        await conn.execute(_HISTORY, ws, pipeline)
        history = time.perf_counter() - began - deals
        # index-only scans need the visibility map, as autovacuum keeps it on a live table
        await conn.execute("VACUUM ANALYZE deals")
        await conn.execute("VACUUM ANALYZE deal_stage_changes")
        rows = await conn.fetchval("SELECT count(*) FROM deal_stage_changes WHERE workspace_id = $1", ws)
        print(f"seeded {count} deals in {deals:.1f} s, {rows} stage changes in {history:.1f} s")
    finally:
        await conn.close()


QUERIES = {
    "pipeline (default)": "/v1/reports/pipeline",
    "pipeline, one owner": f"/v1/reports/pipeline?owner_id={uuid.UUID(hashlib.md5(b'owner0').hexdigest())}",
    "pipeline as_of 2026-06-30": "/v1/reports/pipeline?as_of=2026-06-30T00:00:00Z",
    "forecast (default: this year by month)": "/v1/reports/forecast",
    "forecast by owner, New York": "/v1/reports/forecast?group_by=owner&tz=America/New_York",
    "win-rate (default: this year)": "/v1/reports/win-rate",
    "win-rate by owner": "/v1/reports/win-rate?group_by=owner",
    "sales-cycle (default: this year)": "/v1/reports/sales-cycle",
    "sales-cycle, one quarter": "/v1/reports/sales-cycle?from=2026-07-01&to=2026-09-30",
    "pipeline as CSV": "/v1/reports/pipeline",
}


async def measure(host: str, port: int, key: str, runs: int) -> dict[str, dict[str, float]]:
    conn = Connection(host, port, key)
    results: dict[str, dict[str, float]] = {}
    for name, path in QUERIES.items():
        headers = {"Accept": "text/csv"} if "CSV" in name else None
        times = []
        for i in range(runs + 2):
            began = time.perf_counter()
            status, body = await conn.request("GET", path, headers=headers)
            took = (time.perf_counter() - began) * 1000
            assert status == 200, body[:300]
            if i >= 2:  # the first two prepare the statements
                times.append(took)
        times.sort()
        results[name] = {"p50_ms": round(statistics.median(times), 1), "max_ms": round(times[-1], 1)}
        print(f"{name:45s} p50 {results[name]['p50_ms']:8.1f} ms   max {results[name]['max_ms']:8.1f} ms")
    await conn.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=("seed", "measure"))
    parser.add_argument("--db", default="")
    parser.add_argument("--workspace", default="bench")
    parser.add_argument("--deals", type=int, default=200_000)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8077)
    parser.add_argument("--key", default="")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    if args.what == "seed":
        asyncio.run(seed(args.db, args.workspace, args.deals))
    else:
        results = asyncio.run(measure(args.host, args.port, args.key, args.runs))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
