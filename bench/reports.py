"""The reports at size: seed deals with their stage history in SQL, then time each report's default query
(and its variants) from one client, one request at a time.

    python bench/reports.py seed --db postgresql://postgres@127.0.0.1:5432/crm_bench --deals 200000 \\
        [--tickets 100000] [--orders 500000]
    python bench/reports.py check --db postgresql://postgres@127.0.0.1:5432/crm_bench
    python bench/reports.py measure --port 8077 --key KEY [--runs 20]

The seed puts every sales deal in the workspace's default pipeline (stages 0-3 open, 4 won, 5 lost),
spread over the last 700 days, 20 owners, 5 sources, three deals in four in USD and one in EUR, each with a
primary contact; open deals mostly expect to close in 2026; each deal's history walks the open stages up to
where it is (a lost deal: its first stage, then lost). Then 100,000 tickets (response and resolution times,
SLA targets, some breached); then `--orders` shop orders (500,000 by default; 0 for none), each with its own
deal in a second pipeline, "Shop", as a pushed order has: placed over the last 700 days by repeat buyers
(about half buy once, the rest 2-10 times), one buyer in six in EUR, 2% refunded, 1% cancelled, 2% pending;
then the contacts' totals (lifetime value, order count), contacts' sources and lifecycle histories (a third
became leads, a ninth customers). Every row goes in through statements that fire the database's triggers
(purchases, attribution and lead roll-ups, the stage history's settling). No events are written: the
reports do not read them.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import statistics
import time
import uuid
from typing import Any

from httpclient import Connection

_DEALS = """
WITH s AS (
    SELECT array_agg(st.id ORDER BY st.position) AS ids, array_agg(st.kind ORDER BY st.position) AS kinds
    FROM pipeline_stages st WHERE st.workspace_id = $1 AND st.pipeline_id = $2
), c AS (
    SELECT array_agg(id ORDER BY created_at, id) AS ids FROM contacts WHERE workspace_id = $1
)
INSERT INTO deals (workspace_id, id, created_at, updated_at, version, name, amount, currency, pipeline_id,
                   stage_id, status, expected_close_date, owner_id, source, lost_reason, closed_at, tags,
                   custom_fields, external_ids, contact_id, contact_ids, search_text)
SELECT $1, gen_random_uuid(), x.created, x.created, 1, 'deal ' || i, (100 + i % 9900)::numeric(20, 2),
       CASE WHEN i % 4 = 0 THEN 'EUR' ELSE 'USD' END, $2, s.ids[1 + x.st], s.kinds[1 + x.st],
       CASE WHEN s.kinds[1 + x.st] = 'open' AND i % 10 <> 0 THEN date '2026-01-01' + (i * 7) % 365 END,
       md5('owner' || i % 20)::uuid, (ARRAY['web', 'referral', 'ads', 'event', 'partner'])[1 + i % 5],
       CASE WHEN s.kinds[1 + x.st] = 'lost' THEN (ARRAY['price', 'timing', 'competitor'])[1 + i % 3] END,
       CASE WHEN s.kinds[1 + x.st] <> 'open' THEN x.created + make_interval(days => 12 + i % 90) END,
       '{}', '{}', '{}', x.contact, ARRAY[x.contact], ''
FROM generate_series($3::int, $4::int) AS i, s, c,
     LATERAL (SELECT (i * 13) % 6 AS st,
                     now() - make_interval(days => 103 + i % 700, secs => i % 86400) AS created,
                     c.ids[1 + (i * 7) % cardinality(c.ids)] AS contact) AS x
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
WHERE d.workspace_id = $1 AND d.pipeline_id = $2
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

# The shop's orders, each with its own deal in a pipeline of its own ("Shop": placed, paid, refunded), as
# a pushed order makes them. First the orders' facts, in a temporary table: the buyers are contacts taken
# in a hashed order, each buying 1 + floor(9 r^3) times (r uniform in [0, 1): about half once, the rest 2
# to 10 times) until there are $2 orders; placed over the last 700 days; one customer in six pays in EUR;
# of every hundred orders two are refunded (a while after), one cancelled and two still pending (placed in
# the last three days); the paid ones of the last fortnight not yet fulfilled.
_SHOP_PIPELINE = """
WITH p AS (
    INSERT INTO pipelines (workspace_id, id, name, is_default, created_at, updated_at, version)
    VALUES ($1, gen_random_uuid(), 'Shop', false, now() - interval '800 days', now() - interval '800 days', 1)
    RETURNING workspace_id, id
)
INSERT INTO pipeline_stages (workspace_id, id, pipeline_id, name, position, probability, kind)
SELECT p.workspace_id, gen_random_uuid(), p.id, s.name, s.position, s.probability, s.kind
FROM p, (VALUES ('Placed', 0, 0.5, 'open'), ('Paid', 1, 1.0, 'won'), ('Refunded', 2, 0.0, 'lost'))
        AS s(name, position, probability, kind)
RETURNING pipeline_id
"""

_ORDER_TABLE = """
CREATE TEMPORARY TABLE seed_orders (
    i integer PRIMARY KEY, contact_id uuid NOT NULL, deal_id uuid NOT NULL, external_id text NOT NULL,
    status text NOT NULL, currency text NOT NULL, total numeric(20, 2) NOT NULL,
    placed_at timestamptz NOT NULL, closed_at timestamptz
)
"""
_ORDER_FACTS = """
INSERT INTO seed_orders
WITH b AS (
    SELECT id, row_number() OVER (ORDER BY md5('buyer' || id)) AS k,
           1 + floor(10 * power(('x' || substr(md5(id::text), 1, 8))::bit(32)::bigint / 4294967296.0, 3))::int
               AS n,
           ('x' || substr(md5(id::text), 9, 8))::bit(32)::bigint % 6 = 0 AS eur
    FROM contacts WHERE workspace_id = $1 AND archived_at IS NULL
), cum AS (
    SELECT id, n, eur, sum(n) OVER (ORDER BY k) - n AS before FROM b
), o AS (
    SELECT cum.id AS contact_id, cum.eur, (cum.before + j)::int AS i
    FROM cum, generate_series(1, cum.n) AS j
    WHERE cum.before < $2 AND cum.before + j <= $2
), f AS (
    SELECT o.*, CASE WHEN i % 100 < 2 THEN 'refunded' WHEN i % 100 = 2 THEN 'cancelled'
                     WHEN i % 100 < 5 THEN 'pending' ELSE 'paid' END AS state,
           ('x' || substr(md5('placed' || i), 1, 8))::bit(32)::bigint / 4294967296.0 AS r
    FROM o
), t AS (
    SELECT f.*, CASE WHEN state = 'pending' THEN now() - make_interval(secs => r * 3 * 86400)
                     ELSE now() - make_interval(secs => r * 700 * 86400) END AS placed_at
    FROM f
)
SELECT i, contact_id, gen_random_uuid() AS deal_id, (5000000000 + i)::text AS external_id,
       CASE WHEN state = 'paid' AND placed_at < now() - interval '14 days' THEN 'fulfilled' ELSE state END
           AS status,
       CASE WHEN eur THEN 'EUR' ELSE 'USD' END AS currency,
       (15 + (i * 37) % 48500 / 100.0)::numeric(20, 2) AS total, placed_at,
       CASE state WHEN 'refunded' THEN least(now(), placed_at + make_interval(days => 3 + i % 30))
                  WHEN 'cancelled' THEN placed_at + interval '2 hours'
                  WHEN 'paid' THEN placed_at END AS closed_at
FROM t
"""

# Each order's deal, as the order's push writes it: named after the order, its total, its customer the
# primary contact, in the stage of its status' kind (won when paid or fulfilled, lost with the status as
# the reason when refunded or cancelled, else open), keyed by the order's external id.
_ORDER_DEALS = """
WITH s AS (
    SELECT array_agg(st.id ORDER BY st.position) AS ids
    FROM pipeline_stages st WHERE st.workspace_id = $1 AND st.pipeline_id = $2
)
INSERT INTO deals (workspace_id, id, created_at, updated_at, version, name, amount, currency, pipeline_id,
                   stage_id, status, source, lost_reason, closed_at, tags, custom_fields, external_ids,
                   contact_id, contact_ids, search_text)
SELECT $1, o.deal_id, o.placed_at, coalesce(o.closed_at, o.placed_at), 1, 'Order #' || (100000 + o.i),
       o.total, o.currency, $2, s.ids[1 + k.position], k.kind, 'shop',
       CASE WHEN k.kind = 'lost' THEN o.status END, o.closed_at, '{}', '{}',
       jsonb_build_object('shop', o.external_id), o.contact_id, ARRAY[o.contact_id],
       'order #' || (100000 + o.i)
FROM seed_orders AS o, s,
     LATERAL (SELECT CASE WHEN o.status IN ('paid', 'fulfilled') THEN 1
                          WHEN o.status = 'pending' THEN 0 ELSE 2 END AS position) AS p,
     LATERAL (SELECT p.position, (ARRAY['open', 'won', 'lost'])[1 + p.position] AS kind) AS k
WHERE o.i BETWEEN $3 AND $4
"""

# Their stage history: created in its stage when placed (a paid one straight in Paid, a cancelled one in
# Placed); a refunded or cancelled one moved to Refunded when it was.
_ORDER_HISTORY = """
WITH s AS (
    SELECT array_agg(st.id ORDER BY st.position) AS ids
    FROM pipeline_stages st WHERE st.workspace_id = $1 AND st.pipeline_id = $2
)
INSERT INTO deal_stage_changes (workspace_id, id, deal_id, pipeline_id, from_stage_id, to_stage_id,
                                changed_at, actor)
SELECT $1, gen_random_uuid(), o.deal_id, $2, m.from_stage, m.to_stage, m.at, 'system:seed'
FROM seed_orders AS o, s,
     LATERAL (SELECT CASE o.status WHEN 'pending' THEN 1 WHEN 'cancelled' THEN 1 ELSE 2 END AS first) AS f,
     LATERAL (SELECT NULL::uuid, s.ids[f.first], o.placed_at
              UNION ALL
              SELECT s.ids[f.first], s.ids[3], o.closed_at WHERE o.status IN ('refunded', 'cancelled'))
         AS m(from_stage, to_stage, at)
WHERE o.i BETWEEN $3 AND $4
"""

_ORDER_ROWS = """
WITH o AS (
    INSERT INTO orders (workspace_id, source, external_id, deal_id, contact_id, order_number, status,
                        currency, subtotal, discount, tax, shipping, total, placed_at, shop_updated_at,
                        body_hash, created_at, updated_at)
    SELECT $1, 'shop', o.external_id, o.deal_id, o.contact_id, '#' || (100000 + o.i), o.status, o.currency,
           round(o.total / 1.2, 2), 0, o.total - round(o.total / 1.2, 2), 0, o.total, o.placed_at,
           coalesce(o.closed_at, o.placed_at), md5(o.external_id), o.placed_at,
           coalesce(o.closed_at, o.placed_at)
    FROM seed_orders AS o
    WHERE o.i BETWEEN $2 AND $3
    RETURNING external_id, deal_id
)
INSERT INTO external_ids (workspace_id, object_type, source, external_id, object_id)
SELECT $1, 'deal', 'shop', o.external_id, o.deal_id FROM o
"""

# The contacts' totals, as a push refreshes them: the won, live deals they are the primary contact of,
# summed per currency, and their orders counted.
_CONTACT_TOTALS = """
UPDATE contacts AS c
SET lifetime_value = coalesce(v.ltv, '{}'), order_count = coalesce(n.orders, 0)
FROM (SELECT DISTINCT contact_id FROM deals WHERE workspace_id = $1 AND contact_id IS NOT NULL) AS a
LEFT JOIN LATERAL (
    SELECT jsonb_object_agg(w.currency, w.total::text) AS ltv
    FROM (SELECT d.currency, sum(d.amount) AS total FROM deals AS d
          WHERE d.workspace_id = $1 AND d.contact_id = a.contact_id AND d.status = 'won'
            AND d.archived_at IS NULL AND d.amount IS NOT NULL AND d.currency IS NOT NULL
          GROUP BY d.currency) AS w
) AS v ON true
LEFT JOIN LATERAL (
    SELECT count(*) AS orders FROM orders AS o WHERE o.workspace_id = $1 AND o.contact_id = a.contact_id
) AS n ON true
WHERE c.workspace_id = $1 AND c.id = a.contact_id
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


# The kept tables' row triggers (one call per row) run their function once per 50,000 rows instead: for a
# bulk statement of a seed the same work, set-based (each function recomputes what it keeps for the rows
# it is given). In one transaction, so the trigger is never left disabled.
_ROW_TRIGGERS = {
    "deal_stage_changes": ("deal_stage_changes_settle",),
    "contacts": ("attribution_update", "lead_entries_update"),
}
_SETTLE = {
    "deal_stage_changes": ("SELECT settle_deal_stage_changes($1, $2::uuid[])",),
    "contacts": (
        "SELECT refresh_contact_attribution($1, $2::uuid[])",
        "SELECT settle_lead_entries($1, $2::uuid[])",
    ),
}


async def batched(conn: Any, ws: Any, table: str, statement: str, args: tuple[Any, ...], ids: str) -> None:
    """``statement`` with ``table``'s row triggers off, then their functions over the ids ``ids`` (a query
    of $1, the workspace) selects, 50,000 at a time."""
    async with conn.transaction():
        for trigger in _ROW_TRIGGERS[table]:
            await conn.execute(f"ALTER TABLE {table} DISABLE TRIGGER {trigger}")
        await conn.execute(statement, *args)
        for trigger in _ROW_TRIGGERS[table]:
            await conn.execute(f"ALTER TABLE {table} ENABLE TRIGGER {trigger}")
        await conn.execute(f"ANALYZE {table}")
        every = [r[0] for r in await conn.fetch(ids, ws)]
        for start in range(0, len(every), 50_000):
            for settle in _SETTLE[table]:
                await conn.execute(settle, ws, every[start : start + 50_000])


async def seed_orders(conn: Any, ws: uuid.UUID, count: int) -> None:
    """The shop's orders and their deals, 50,000 at a time: each statement fires the database's own
    triggers (purchases, attribution, the stage history's settling) over its rows."""
    began = time.perf_counter()
    shop = await conn.fetchval(_SHOP_PIPELINE, ws)
    await conn.execute(_ORDER_TABLE)
    await conn.execute(_ORDER_FACTS, ws, count)
    facts = time.perf_counter() - began
    for start in range(1, count + 1, 50_000):
        end = min(start + 50_000, count + 1) - 1
        await conn.execute(_ORDER_DEALS, ws, shop, start, end)
        await batched(
            conn,
            ws,
            "deal_stage_changes",
            _ORDER_HISTORY,
            (ws, shop, start, end),
            f"SELECT deal_id FROM seed_orders WHERE i BETWEEN {start} AND {end} AND $1::uuid IS NOT NULL",
        )
        await conn.execute(_ORDER_ROWS, ws, start, end)
        for table in ("deals", "orders", "contact_purchases", "contact_attribution"):
            await conn.execute(f"ANALYZE {table}")
        print(f"  orders {end}: {time.perf_counter() - began:.1f} s", flush=True)
    await conn.execute(_CONTACT_TOTALS, ws)
    buyers = await conn.fetchval("SELECT count(DISTINCT contact_id) FROM seed_orders")
    await conn.execute("DROP TABLE seed_orders")
    print(
        f"seeded {count} orders of {buyers} customers, their deals and history in the Shop pipeline in "
        f"{time.perf_counter() - began:.1f} s (facts {facts:.1f} s)"
    )


async def seed(url: str, workspace: str, count: int, tickets: int, orders: int) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        ws = await conn.fetchval("SELECT id FROM workspaces WHERE name = $1", workspace)
        assert ws is not None, f"no workspace {workspace!r}: create a key for it first"
        pipeline = await conn.fetchval("SELECT id FROM pipelines WHERE workspace_id = $1 AND is_default", ws)
        # the triggers' statements are planned from the statistics: stale ones (a table grown since its
        # last ANALYZE) choose scans that read every won deal per contact
        await conn.execute("ANALYZE")
        began = time.perf_counter()
        for start in range(0, count, 50_000):
            await conn.execute(_DEALS, ws, pipeline, start, min(start + 50_000, count) - 1)
            await conn.execute("ANALYZE deals")
            print(f"  deals {start + 50_000}: {time.perf_counter() - began:.1f} s", flush=True)
        deals = time.perf_counter() - began
        await batched(
            conn,
            ws,
            "deal_stage_changes",
            _HISTORY,
            (ws, pipeline),
            f"SELECT id FROM deals WHERE workspace_id = $1 AND pipeline_id = '{pipeline}' ORDER BY id",
        )
        history = time.perf_counter() - began - deals
        rows = await conn.fetchval("SELECT count(*) FROM deal_stage_changes WHERE workspace_id = $1", ws)
        print(f"seeded {count} deals in {deals:.1f} s, {rows} stage changes in {history:.1f} s")
        began = time.perf_counter()
        for start in range(0, tickets, 50_000):
            await conn.execute(_TICKETS, ws, start, min(start + 50_000, tickets) - 1)
        if orders:
            await seed_orders(conn, ws, orders)
        await batched(
            conn,
            ws,
            "contacts",
            _SOURCES,
            (ws,),
            "SELECT id FROM contacts WHERE workspace_id = $1 AND abs(hashtext(id::text)) % 6 <> 0",
        )
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
            # the kept tables the triggers wrote while seeding: their statistics date from before the
            # orders (a plan for a dozen rows) and their visibility maps are empty
            "contact_purchases",
            "contact_purchase_values",
            "contact_attribution",
        ):
            await conn.execute(f"VACUUM ANALYZE {table}")
    finally:
        await conn.close()


# What the triggers keep, against the same functions run afresh over every row, in a transaction rolled
# back: the rows of each kept table that differ (0 everywhere when the seed kept them).
_KEPT = {
    "contact_purchases": (
        "SELECT settle_contact_purchases($1, ARRAY(SELECT id FROM contacts WHERE workspace_id = $1))",
        "SELECT contact_id, purchases, deal_purchases, first_at, last_at, value, purchase_times "
        "FROM contact_purchases",
    ),
    "contact_purchase_values": (
        "SELECT settle_contact_purchases($1, ARRAY(SELECT id FROM contacts WHERE workspace_id = $1))",
        "SELECT contact_id, currency, value FROM contact_purchase_values",
    ),
    "contact_attribution": (
        "SELECT refresh_contact_attribution($1, ARRAY(SELECT id FROM contacts WHERE workspace_id = $1))",
        "SELECT contact_id, created_at, source, archived, ever_lead, buyer, won FROM contact_attribution",
    ),
    "deal_stage_changes": (
        "SELECT settle_deal_stage_changes($1, ARRAY(SELECT id FROM deals WHERE workspace_id = $1))",
        "SELECT id, left_at, advanced, prev_entered_at, prev_advanced_at, opens_history "
        "FROM deal_stage_changes",
    ),
    "contact_lifecycle_changes": (
        "SELECT settle_lead_entries($1, ARRAY(SELECT id FROM contacts WHERE workspace_id = $1))",
        "SELECT id, prior_lead_at, converted_at, source, archived FROM contact_lifecycle_changes",
    ),
}


async def check(url: str, workspace: str) -> int:
    import asyncpg

    conn = await asyncpg.connect(url)
    differ = 0
    try:
        ws = await conn.fetchval("SELECT id FROM workspaces WHERE name = $1", workspace)
        for table, (settle, rows) in _KEPT.items():
            tr = conn.transaction()
            await tr.start()
            try:
                await conn.execute(f"CREATE TEMPORARY TABLE kept_before AS {rows}")
                await conn.execute(settle, ws)
                n = await conn.fetchval(
                    f"SELECT count(*) FROM ((TABLE kept_before EXCEPT ALL {rows}) "
                    f"UNION ALL ({rows} EXCEPT ALL TABLE kept_before)) AS x"
                )
                total = await conn.fetchval("SELECT count(*) FROM kept_before")
            finally:
                await tr.rollback()
            print(f"{table:28s} {total:9d} rows kept, {n} differ from a recomputation")
            differ += n
        # the contacts' totals as a push refreshes them
        n = await conn.fetchval(
            "SELECT count(*) FROM contacts AS c LEFT JOIN (SELECT contact_id, count(*) AS n FROM orders "
            "WHERE workspace_id = $1 GROUP BY 1) AS o ON o.contact_id = c.id "
            "WHERE c.workspace_id = $1 AND c.order_count <> coalesce(o.n, 0)",
            ws,
        )
        print(f"{'contacts.order_count':28s} {n} differ from the orders")
        differ += n
    finally:
        await conn.close()
    return differ


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
    "customers as_of 2026-06-30": "/v1/reports/customers?as_of=2026-06-30T00:00:00Z",
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
            "group_by": ["source", "currency"],
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
    parser.add_argument("what", choices=("seed", "check", "measure"))
    parser.add_argument("--db", default="")
    parser.add_argument("--workspace", default="bench")
    parser.add_argument("--deals", type=int, default=200_000)
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--orders", type=int, default=500_000)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18915)
    parser.add_argument("--key", default="")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--json", default="")
    parser.add_argument("--only", default="", help="only the queries whose name holds this")
    args = parser.parse_args()
    if args.what == "seed":
        asyncio.run(seed(args.db, args.workspace, args.deals, args.tickets, args.orders))
    elif args.what == "check":
        raise SystemExit(1 if asyncio.run(check(args.db, args.workspace)) else 0)
    else:
        results = asyncio.run(measure(args.host, args.port, args.key, args.runs, args.only))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
