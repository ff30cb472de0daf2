"""``GET /v1/search`` at 1,000,000 contacts: ``seed`` writes contacts (names from small pools, so each name
is shared by hundreds, accents included), companies and their links with set-based SQL, their
``search_text`` as the API folds it; ``measure`` times typical queries from one client, one at a time.

    python bench/search.py seed --db postgresql://postgres@127.0.0.1:5432/crm_bench_search --count 1000000
    python bench/search.py measure --port 18916 --key KEY --runs 20
    python bench/search.py measure --port 18931 18932 --label old new --key KEY --rounds 2 --show
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
    "last_name_and_company": "lee acme",
    "no_match": "qqqqzzzz",
}


async def _time(c: httpx.AsyncClient, q: str, runs: int) -> tuple[list[float], list[dict[str, object]]]:
    times = []
    for i in range(runs + 2):
        began = time.perf_counter()
        r = await c.get("/v1/search", params={"q": q})
        took = (time.perf_counter() - began) * 1000
        r.raise_for_status()
        if i >= 2:  # two warm-ups
            times.append(took)
    return times, r.json()["data"]


async def measure(ports: list[int], labels: list[str], key: str, runs: int, rounds: int, show: bool) -> None:
    """Each query on each server in turn (old and new side by side, so the machine's load falls on both),
    ``rounds`` times; the p50 of each round."""
    headers = {"Authorization": f"Bearer {key}"}
    clients = [
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{p}", headers=headers, timeout=60) for p in ports
    ]
    try:
        print(f"{'query':<22} {'q':<16} " + " ".join(f"{label + ' p50 ms':>24}" for label in labels))
        for name, q in QUERIES.items():
            p50s: list[list[float]] = [[] for _ in clients]
            found: list[list[dict[str, object]]] = [[] for _ in clients]
            for _ in range(rounds):
                for i, c in enumerate(clients):
                    times, found[i] = await _time(c, q, runs)
                    p50s[i].append(statistics.median(times))
            cells = [" / ".join(f"{t:.1f}" for t in ts) + f" ({len(found[i])})" for i, ts in enumerate(p50s)]
            print(f"{name:<22} {q:<16} " + " ".join(f"{cell:>24}" for cell in cells))
            if show:
                for label, hits in zip(labels, found, strict=True):
                    print(
                        f"    {label}: "
                        + "; ".join(f"{h['title']} <{h['subtitle']}> {h['score']}" for h in hits)
                    )
    finally:
        for c in clients:
            await c.aclose()


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("seed")
    s.add_argument("--db", required=True)
    s.add_argument("--workspace", default="bench")
    s.add_argument("--count", type=int, default=1_000_000)
    s.add_argument("--companies", type=int, default=20_000)
    m = sub.add_parser("measure")
    m.add_argument("--port", type=int, nargs="+", default=[18916], help="one server, or several to compare")
    m.add_argument("--label", nargs="+", help="a name for each server (default: its port)")
    m.add_argument("--key", required=True)
    m.add_argument("--runs", type=int, default=20)
    m.add_argument("--rounds", type=int, default=1)
    m.add_argument("--show", action="store_true", help="print each server's hits")
    args = parser.parse_args()
    if args.cmd == "seed":
        asyncio.run(seed(args.db, args.workspace, args.count, args.companies))
    else:
        labels = args.label or [str(p) for p in args.port]
        asyncio.run(measure(args.port, labels, args.key, args.runs, args.rounds, args.show))


if __name__ == "__main__":
    main()
