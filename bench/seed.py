"""Seed contacts through the batch endpoint: 500 per request, a few requests in flight.

python bench/seed.py --url http://127.0.0.1:8000 --key KEY --count 100000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid

from httpclient import Connection

STAGES = ("subscriber", "lead", "customer", "opportunity")


def items(start: int, n: int, run: str) -> list[dict[str, object]]:
    return [
        {
            "email": f"seed-{run}-{i}@example.com",
            "first_name": f"First{i}",
            "last_name": f"Last{i % 997}",
            "lifecycle_stage": STAGES[i % len(STAGES)],
            "tags": ["vip"] if i % 10 == 0 else [],
            "custom_fields": {"plan": "pro" if i % 3 else "free", "seats": i % 50},
        }
        for i in range(start, start + n)
    ]


async def seed(host: str, port: int, key: str, count: int, parallel: int) -> float:
    run = uuid.uuid4().hex[:6]
    batches = [(s, min(500, count - s)) for s in range(0, count, 500)]
    queue: asyncio.Queue[tuple[int, int]] = asyncio.Queue()
    for b in batches:
        queue.put_nowait(b)

    async def worker() -> None:
        conn = Connection(host, port, key)
        while not queue.empty():
            start, n = queue.get_nowait()
            status, body = await conn.request("POST", "/v1/contacts/batch", {"items": items(start, n, run)})
            assert status == 200, body[:300]
            bad = [r for r in json.loads(body)["results"] if r["status"] != 201]
            assert not bad, bad[:2]
        await conn.close()

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(parallel)))
    return time.perf_counter() - began


_DIRECT = """
WITH c AS (
    INSERT INTO contacts (workspace_id, id, created_at, updated_at, version, email, first_name, last_name,
                          lifecycle_stage, tags, custom_fields, external_ids, marketing_consent, search_text)
    SELECT $1, gen_random_uuid(), now() - make_interval(secs => $3 - i),
           now() - make_interval(secs => $3 - i), 1,
           'seed-' || $4 || '-' || i || '@example.com', 'First' || i, 'Last' || (i % 997),
           (ARRAY['subscriber', 'lead', 'customer', 'opportunity'])[1 + i % 4],
           CASE WHEN i % 10 = 0 THEN ARRAY['vip'] ELSE ARRAY[]::text[] END,
           jsonb_build_object('plan', CASE WHEN i % 3 = 0 THEN 'free' ELSE 'pro' END, 'seats', i % 50),
           '{}', false,
           lower('first' || i || ' last' || (i % 997) || ' seed-' || $4 || '-' || i || '@example.com')
    FROM generate_series($2::int, $3::int) AS i
    RETURNING workspace_id, id, created_at, email
)
INSERT INTO events (workspace_id, id, type, object_type, object_id, actor, data, created_at)
SELECT workspace_id, gen_random_uuid(), 'contact.created', 'contact', id, 'system:seed',
       jsonb_build_object('object', jsonb_build_object('id', id, 'email', email), 'previous', '{}'::jsonb),
       created_at
FROM c
"""


async def seed_direct(url: str, workspace: str, count: int) -> float:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        ws = await conn.fetchval("SELECT id FROM workspaces WHERE name = $1", workspace)
        assert ws is not None, f"no workspace {workspace!r}: create a key for it first"
        run = uuid.uuid4().hex[:6]
        began = time.perf_counter()
        for start in range(0, count, 50_000):
            await conn.execute(_DIRECT, ws, start, min(start + 50_000, count) - 1, run)
        await conn.execute("ANALYZE contacts")
        return time.perf_counter() - began
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--key", default="")
    parser.add_argument(
        "--direct", default="", help="a postgresql:// URL: insert with SQL, bypassing the API"
    )
    parser.add_argument("--workspace", default="bench")
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--parallel", type=int, default=4)
    args = parser.parse_args()
    if args.direct:
        took = asyncio.run(seed_direct(args.direct, args.workspace, args.count))
    else:
        took = asyncio.run(seed(args.host, args.port, args.key, args.count, args.parallel))
    print(f"seeded {args.count} contacts in {took:.1f} s ({args.count / took:,.0f} rows/s)")


if __name__ == "__main__":
    main()
