"""The reports at size: seed deals with their stage history in SQL, then time each report's default query
(and its variants) from one client, one request at a time.

    python bench/reports.py seed --db postgresql://postgres@127.0.0.1:5432/crm_bench --deals 200000 \\
        [--tickets 100000]
    python bench/reports.py measure --port 8077 --key KEY [--runs 20]

The seed puts every deal in the workspace's default pipeline (stages 0-3 open, 4 won, 5 lost), spread
over the last 700 days, 20 owners, 5 sources, three deals in four in USD and one in EUR; open deals mostly
expect to close in 2026; each deal's history walks the open stages up to where it is (a lost deal: its
first stage, then lost). Then 100,000 tickets (response and resolution times, SLA targets, some
breached), one paid order per won deal (its deal's primary contact the order's), contacts' sources and
lifecycle histories (a third became leads, a ninth customers). No events are written: the reports do not
read them.
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


_TICKETS = """
INSERT INTO tickets (workspace_id, id, created_at, updated_at, version, subject, status, priority, channel,
                     assignee_id, tags, custom_fields, external_ids, first_responded_at, solved_at,
                     first_response_due_at, resolution_due_at, first_response_breached_at,
                     resolution_breached_at, sla_paused_seconds, search_text)
SELECT $1, gen_random_uuid(), x.created, x.created, 1, 'ticket ' || i,
       CASE WHEN i % 10 < 7 THEN 'solved' ELSE 'open' END,
       (ARRAY['low', 'normal', 'high', 'urgent'])[1 + i % 4], (ARRAY['email', 'chat', 'web'])[1 + i % 3],
       md5('agent' || i % 15)::uuid, '{}', '{}', '{}',
       CASE WHEN i % 10 <> 9 THEN x.created + make_interval(mins => 5 + i % 600) END,
       CASE WHEN i % 10 < 7 THEN x.created + make_interval(mins => 60 + i % 5000) END,
       CASE WHEN i % 5 <> 0 THEN x.created + interval '4 hours' END,
       CASE WHEN i % 5 <> 0 THEN x.created + interval '3 days' END,
       CASE WHEN i % 5 <> 0 AND i % 10 <> 9 AND 5 + i % 600 > 240 THEN x.created + interval '4 hours' END,
       CASE WHEN i % 5 <> 0 AND i % 10 < 7 AND 60 + i % 5000 > 4320 THEN x.created + interval '3 days' END,
       0, ''
FROM generate_series($2::int, $3::int) AS i,
     LATERAL (SELECT now() - make_interval(days => i % 700, secs => i % 86400) AS created) AS x
"""

# One paid order per won deal, each for a contact of its own; the deal's primary contact is the order's.
_ORDERS = """
WITH d AS (
    SELECT id, currency, amount, closed_at, row_number() OVER (ORDER BY id) AS n
    FROM deals WHERE workspace_id = $1 AND status = 'won'
), c AS (
    SELECT id, row_number() OVER (ORDER BY created_at, id) AS n FROM contacts WHERE workspace_id = $1
), o AS (
    INSERT INTO orders (workspace_id, source, external_id, deal_id, contact_id, status, currency, total,
                        placed_at, shop_updated_at, body_hash, created_at, updated_at)
    SELECT $1, 'shop', d.id::text, d.id, c.id, CASE WHEN d.n % 4 = 0 THEN 'fulfilled' ELSE 'paid' END,
           d.currency, d.amount, d.closed_at, d.closed_at, 'seed', d.closed_at, d.closed_at
    FROM d JOIN c ON c.n = d.n * 7
    RETURNING deal_id, contact_id
)
UPDATE deals SET contact_id = o.contact_id FROM o WHERE deals.workspace_id = $1 AND deals.id = o.deal_id
"""

# Contacts' acquisition source, and lifecycle histories: every third contact became a lead a day after it
# was created, every ninth a customer twenty days later.
_SOURCES = """
UPDATE contacts
SET source = (ARRAY['ads', 'web', 'referral', 'event', 'partner'])[1 + abs(hashtext(id::text)) % 5]
WHERE workspace_id = $1 AND abs(hashtext(id::text)) % 6 <> 0
"""
_LIFECYCLE = """
INSERT INTO contact_lifecycle_changes (workspace_id, id, contact_id, from_stage, to_stage, changed_at, actor)
SELECT c.workspace_id, gen_random_uuid(), c.id, s.from_stage, s.to_stage, c.created_at + s.after,
       'system:seed'
FROM contacts c, LATERAL (VALUES (NULL, 'lead', interval '1 day'),
                                 ('lead', 'customer', interval '20 days')) AS s(from_stage, to_stage, after)
WHERE c.workspace_id = $1 AND abs(hashtext(c.id::text)) % 3 = 0
  AND (s.to_stage = 'lead' OR abs(hashtext(c.id::text)) % 9 = 0)
"""


async def seed(url: str, workspace: str, count: int, tickets: int) -> None:
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
        rows = await conn.fetchval("SELECT count(*) FROM deal_stage_changes WHERE workspace_id = $1", ws)
        print(f"seeded {count} deals in {deals:.1f} s, {rows} stage changes in {history:.1f} s")
        began = time.perf_counter()
        for start in range(0, tickets, 50_000):
            await conn.execute(_TICKETS, ws, start, min(start + 50_000, tickets) - 1)
        await conn.execute(_ORDERS, ws)
        await conn.execute(_SOURCES, ws)
        await conn.execute(_LIFECYCLE, ws)
        counts = [
            await conn.fetchval(f"SELECT count(*) FROM {t} WHERE workspace_id = $1", ws)
            for t in ("tickets", "orders", "contact_lifecycle_changes")
        ]
        print(
            f"seeded {counts[0]} tickets, {counts[1]} orders, {counts[2]} lifecycle changes and the "
            f"contacts' sources in {time.perf_counter() - began:.1f} s"
        )
        # index-only scans need the visibility map, as autovacuum keeps it on a live table
        for table in (
            "deals",
            "deal_stage_changes",
            "tickets",
            "orders",
            "contacts",
            "contact_lifecycle_changes",
        ):
            await conn.execute(f"VACUUM ANALYZE {table}")
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
    "service (default: this year)": "/v1/reports/service",
    "service by priority": "/v1/reports/service?group_by=priority",
    "customers (default: now, USD)": "/v1/reports/customers",
    "lead-conversion (default: this year by month)": "/v1/reports/lead-conversion",
    "lead-conversion by source": "/v1/reports/lead-conversion?group_by=source",
    "attribution (default: this year)": "/v1/reports/attribution",
}

AGGREGATES = {
    "deals aggregate by owner and currency": (
        "/v1/deals/aggregate",
        {
            "group_by": ["owner_id", "currency"],
            "metrics": [{"op": "count"}, {"op": "sum", "field": "amount"}],
        },
    ),
    "contacts aggregate by month created": (
        "/v1/contacts/aggregate",
        {"group_by": [{"field": "created_at", "interval": "month"}], "metrics": [{"op": "count"}]},
    ),
    "deals aggregate, filtered, median": (
        "/v1/deals/aggregate",
        {
            "filter": {"field": "status", "op": "eq", "value": "won"},
            "group_by": ["source"],
            "metrics": [{"op": "median", "field": "amount"}],
        },
    ),
}


async def measure(host: str, port: int, key: str, runs: int, only: str = "") -> dict[str, dict[str, float]]:
    conn = Connection(host, port, key)
    results: dict[str, dict[str, float]] = {}
    calls = [(name, "GET", path, None) for name, path in QUERIES.items()]
    calls += [(name, "POST", path, body) for name, (path, body) in AGGREGATES.items()]
    for name, method, path, payload in calls:
        if only and only not in name:
            continue
        headers = {"Accept": "text/csv"} if "CSV" in name else None
        times = []
        for i in range(runs + 2):
            began = time.perf_counter()
            status, body = await conn.request(method, path, payload, headers=headers)
            took = (time.perf_counter() - began) * 1000
            if status != 200:  # say so and go on: one report past the statement timeout stops nothing else
                print(f"{name:45s} {status}: {body[:160]!r}")
                break
            if i >= 2:  # the first two prepare the statements
                times.append(took)
        if not times:
            continue
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
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18915)
    parser.add_argument("--key", default="")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--json", default="")
    parser.add_argument("--only", default="", help="only the queries whose name holds this")
    args = parser.parse_args()
    if args.what == "seed":
        asyncio.run(seed(args.db, args.workspace, args.deals, args.tickets))
    else:
        results = asyncio.run(measure(args.host, args.port, args.key, args.runs, args.only))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
