"""``GET /v1/search`` at 1,000,000 contacts: ``seed`` writes contacts (names from small pools, so each name
is shared by hundreds, accents included), companies and their links with set-based SQL, their
``search_text`` as the API folds it; ``measure`` times typical queries from one client, one at a time.

    python bench/search.py seed --db postgresql://postgres@127.0.0.1:5432/crm_bench_search --count 1000000
    python bench/search.py measure --port 18916 --key KEY --runs 20
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import httpx

FIRST = ["Ann", "John", "José", "María", "Zoë", "Liam", "Noah", "Emma", "Olivia", "Ava", "Lucas", "Mia",
         "Sofía", "Léa", "Jürgen", "Björn", "Chloé", "Ethan", "Hugo", "Ines", "Kai", "Lena", "Marco", "Nina",
         "Omar", "Paula", "Quinn", "Rosa", "Sven", "Tomás", "Uma", "Victor", "Wanda", "Xavier", "Yara",
         "Zane", "Amélie", "Bruno", "Carla", "Dmitri"]  # fmt: skip
LAST = ["Smith", "García", "Müller", "Lee", "Nguyen", "Rossi", "Dubois", "Kowalski", "Johansson", "Silva",
        "Brown", "Martínez", "Schmidt", "Kim", "Tanaka", "Novak", "Fischer", "López", "Moreau", "Costa",
        "Wilson", "Hernández", "Weber", "Park", "Sato", "Horvat", "Wagner", "Pérez", "Laurent", "Santos",
        "Taylor", "González", "Becker", "Choi", "Suzuki", "Kovač", "Hoffmann", "Sánchez", "Girard",
        "Ferreira"]  # fmt: skip
WORDS = ["Acme", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay", "Stark", "Wayne", "Wonka", "Tyrell",
         "Cyberdyne", "Soylent", "Gringotts", "Monarch", "Oscorp", "Duff", "Nakatomi", "Aperture", "Massive",
         "Dynamic"]  # fmt: skip

_COMPANIES = """
INSERT INTO companies (workspace_id, id, created_at, updated_at, version, name, domain, tags, custom_fields,
                       external_ids, search_text)
SELECT $1, gen_random_uuid(), now(), now(), 1, w || ' ' || i, lower(w) || i || '.com', '{}', '{}', '{}',
       lower(w || ' ' || i || ' ' || w || i || '.com')
FROM generate_series(0, $2::int - 1) AS i, LATERAL (SELECT ($3::text[])[1 + i % cardinality($3)] AS w) AS x
"""

_CONTACTS = """
INSERT INTO contacts (workspace_id, id, created_at, updated_at, version, email, first_name, last_name, phone,
                      lifecycle_stage, company_id, tags, custom_fields, external_ids, marketing_consent,
                      search_text)
SELECT $1, gen_random_uuid(), now() - make_interval(secs => $3 - i),
       now() - make_interval(secs => $3 - i), 1, lower(fa) || '.' || lower(la) || i || '@example.com', f, l,
       '+1 555 ' || lpad((i % 10000000)::text, 7, '0'), 'lead',
       CASE WHEN i % 4 = 0 THEN ($8::uuid[])[1 + i % cardinality($8)] END, '{}', '{}', '{}', false,
       lower(fa || ' ' || la || ' ' || fa || '.' || la || i || '@example.com 1555'
             || lpad((i % 10000000)::text, 7, '0'))
FROM generate_series($2::int, $3::int) AS i
CROSS JOIN LATERAL (
    SELECT ($4::text[])[1 + i % cardinality($4)] AS f, ($5::text[])[1 + i % cardinality($5)] AS fa,
           ($6::text[])[1 + (i / 40) % cardinality($6)] AS l,
           ($7::text[])[1 + (i / 40) % cardinality($7)] AS la
) AS n
"""


async def seed(db: str, workspace: str, count: int, companies: int) -> None:
    import asyncpg

    from crm_api.textsearch import fold

    conn = await asyncpg.connect(db)
    try:
        ws = await conn.fetchval("SELECT id FROM workspaces WHERE name = $1", workspace)
        assert ws is not None, f"no workspace {workspace!r}: create a key for it first"
        began = time.perf_counter()
        await conn.execute(_COMPANIES, ws, companies, WORDS)
        folded = ([fold(n) for n in FIRST], [fold(n) for n in LAST])
        ids = [r["id"] for r in await conn.fetch("SELECT id FROM companies WHERE workspace_id = $1", ws)]
        for start in range(0, count, 50_000):
            end = min(start + 50_000, count) - 1
            await conn.execute(_CONTACTS, ws, start, end, FIRST, folded[0], LAST, folded[1], ids)
        await conn.execute("VACUUM ANALYZE companies")
        await conn.execute("VACUUM ANALYZE contacts")
        print(f"seeded {count} contacts, {companies} companies in {time.perf_counter() - began:.0f} s")
    finally:
        await conn.close()


QUERIES = {
    "name": "maria garcia",
    "name_reversed": "garcia maria",
    "name_typo": "jonh smith",
    "accents": "jurgen muller",
    "phone": "(555) 012-3456",
    "email_local": "emma.lee123",
    "company_domain": "initech17",
    "name_and_company": "ann acme",
    "no_match": "qqqqzzzz",
}


async def measure(port: int, key: str, runs: int) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=60) as c:
        print(f"{'query':<18} {'q':<16} {'hits':>4} {'p50 ms':>7} {'p95 ms':>7}")
        for name, q in QUERIES.items():
            times = []
            for i in range(runs + 2):
                began = time.perf_counter()
                r = await c.get("/v1/search", params={"q": q})
                took = (time.perf_counter() - began) * 1000
                r.raise_for_status()
                if i >= 2:  # two warm-ups
                    times.append(took)
            hits = len(r.json()["data"])
            p95 = statistics.quantiles(times, n=20)[-1]
            print(f"{name:<18} {q:<16} {hits:>4} {statistics.median(times):>7.1f} {p95:>7.1f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("seed")
    s.add_argument("--db", required=True)
    s.add_argument("--workspace", default="bench")
    s.add_argument("--count", type=int, default=1_000_000)
    s.add_argument("--companies", type=int, default=20_000)
    m = sub.add_parser("measure")
    m.add_argument("--port", type=int, default=18916)
    m.add_argument("--key", required=True)
    m.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    if args.cmd == "seed":
        asyncio.run(seed(args.db, args.workspace, args.count, args.companies))
    else:
        asyncio.run(measure(args.port, args.key, args.runs))


if __name__ == "__main__":
    main()
