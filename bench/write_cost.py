"""PostgreSQL's own cost of one contact write, at the database alone: CPU of the backend and WAL records per
transaction, for the app's write (contacts with all its indexes and triggers, plus its event, as the API's
create and PATCH write them), the bare statement (a copy of ``contacts`` with every index and no trigger)
and the floor app's whole write (bench/floor.py's statements on its own tables), in one run, alternated.

    python bench/write_cost.py DB [DB2 ...] [--rounds 5] [--writes 500]

Each DB is a database migrated and seeded by ``bench/seed.py --direct`` (100,000 contacts); the first gets
the bare copy and the floor's tables (seeded with as many rows). With several databases (old and new
schemas), the app's writes run on each in turn. One connection per database, one write per transaction,
committed; the CPU is the backend process's time on a CPU (``/proc/PID/schedstat``, nanoseconds: psutil's
user + system time counts 10 ms ticks), the WAL records those of the write's
own transaction (``pg_walinspect``) over the round's last 50 writes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from collections import defaultdict

import asyncpg

PG = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432")

_CONTACT = """
INSERT INTO {table} (workspace_id, id, created_at, updated_at, version, email, first_name, lifecycle_stage,
                     tags, custom_fields, external_ids, marketing_consent, search_text)
VALUES ($1, $2::uuid, now(), now(), 1, 'wc-' || $2::text || '@example.com', 'Load', 'lead', '{{}}', '{{}}',
        '{{}}', false, 'load wc')
"""
_EVENT = """
INSERT INTO events (workspace_id, id, type, object_type, object_id, actor, data, created_at)
VALUES ($1, gen_random_uuid(), $3, 'contact', $2::uuid, 'system:bench',
        jsonb_build_object('object', jsonb_build_object('id', $2::text, 'lifecycle_stage', 'lead'),
                           'previous', $4::jsonb), now())
"""
# a PATCH of lifecycle_stage: the contact's stage and its event (whose trigger writes the lifecycle entry)
_STAGE = """
UPDATE contacts SET lifecycle_stage = $3, updated_at = now(), version = version + 1
WHERE workspace_id = $1 AND id = $2
"""
_STAGE_EVENT = """
INSERT INTO events (workspace_id, id, type, object_type, object_id, actor, data, created_at)
VALUES ($1, gen_random_uuid(), 'contact.updated', 'contact', $2::uuid, 'system:bench',
        jsonb_build_object('object', jsonb_build_object('id', $2::text, 'lifecycle_stage', $3::text),
                           'previous', jsonb_build_object('lifecycle_stage', $4::text)), now())
"""
# as the API's write statement sets every column (custom fields and archiving with their own values)
_UPDATE = """
UPDATE {table} SET title = $3, updated_at = now(), version = version + 1, custom_fields = custom_fields,
       archived_at = archived_at, lifecycle_stage = lifecycle_stage, source = source
WHERE workspace_id = $1 AND id = $2
"""

_FLOOR_SCHEMA = """
CREATE TABLE IF NOT EXISTS floor_contacts (
    workspace_id uuid NOT NULL, id uuid NOT NULL, email text, first_name text, last_name text,
    title text, lifecycle_stage text, created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL,
    version int NOT NULL DEFAULT 1, PRIMARY KEY (workspace_id, id));
CREATE INDEX IF NOT EXISTS floor_contacts_created ON floor_contacts (workspace_id, created_at, id);
CREATE INDEX IF NOT EXISTS floor_contacts_stage
    ON floor_contacts (workspace_id, lifecycle_stage, created_at, id);
CREATE TABLE IF NOT EXISTS floor_events (
    workspace_id uuid NOT NULL, id uuid NOT NULL, sequence bigserial, type text NOT NULL, object_id uuid,
    data jsonb NOT NULL, created_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (workspace_id, id));
CREATE TABLE IF NOT EXISTS floor_idempotency (
    workspace_id uuid NOT NULL, key text NOT NULL, request_hash text NOT NULL, status int NOT NULL,
    body text NOT NULL, created_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (workspace_id, key));
"""
_FLOOR_CREATE = """
WITH c AS (
    INSERT INTO floor_contacts (workspace_id, id, email, first_name, last_name, lifecycle_stage, created_at,
                                updated_at)
    VALUES ($1, $2::uuid, 'wc-' || $2::text || '@example.com', 'Load', NULL, 'lead', now(), now())
    RETURNING id, email, first_name, last_name, title, lifecycle_stage, created_at, updated_at, version
), e AS (
    INSERT INTO floor_events (workspace_id, id, type, object_id, data)
    SELECT $1, gen_random_uuid(), 'contact.created', c.id, to_jsonb(c) FROM c
), i AS (
    INSERT INTO floor_idempotency (workspace_id, key, request_hash, status, body)
    SELECT $1, $2::uuid::text, md5($2::uuid::text), 201, to_jsonb(c)::text FROM c
)
SELECT id FROM c
"""
_FLOOR_UPDATE = """
WITH c AS (
    UPDATE floor_contacts SET title = $3, version = version + 1, updated_at = now()
    WHERE workspace_id = $1 AND id = $2
    RETURNING id, email, first_name, last_name, title, lifecycle_stage, created_at, updated_at, version
), e AS (
    INSERT INTO floor_events (workspace_id, id, type, object_id, data)
    SELECT $1, gen_random_uuid(), 'contact.updated', c.id, to_jsonb(c) FROM c
)
SELECT id FROM c
"""


async def prepare(conn: asyncpg.Connection) -> None:
    """The bare copy of contacts (every index, no trigger, no foreign key) and the floor's tables, seeded."""
    if await conn.fetchval("SELECT to_regclass('bench_bare_contacts') IS NULL"):
        await conn.execute("CREATE TABLE bench_bare_contacts (LIKE contacts INCLUDING ALL)")
        await conn.execute("INSERT INTO bench_bare_contacts SELECT * FROM contacts")
    if await conn.fetchval("SELECT to_regclass('floor_contacts') IS NULL"):
        await conn.execute(_FLOOR_SCHEMA)
        ws = await conn.fetchval("SELECT id FROM workspaces ORDER BY created_at LIMIT 1")
        await conn.execute(
            "INSERT INTO floor_contacts (workspace_id, id, email, first_name, last_name, lifecycle_stage, "
            "created_at, updated_at) SELECT $1, gen_random_uuid(), 'seed-' || g || '@example.com', "
            "'First' || g, 'Last' || (g % 997), "
            "(ARRAY['subscriber','lead','customer','opportunity'])[g % 4 + 1], "
            "now() - g * interval '1 second', now() FROM generate_series(1, 100000) AS g",
            ws,
        )
    await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
    await conn.execute("ANALYZE")


class Target:
    def __init__(self, conn: asyncpg.Connection, ws: uuid.UUID, ids: dict[str, list[uuid.UUID]]) -> None:
        self.conn, self.ws, self.ids = conn, ws, ids
        self.pid = conn.get_server_pid()

    def cpu(self) -> float:
        """The backend's time on a CPU so far, in seconds."""
        with open(f"/proc/{self.pid}/schedstat") as f:
            return int(f.read().split()[0]) / 1e9

    def statements(self, kind: str, n: int) -> list[tuple[str, tuple[object, ...]]]:
        """The write's statements, run in one transaction."""
        ws = self.ws
        if kind == "app create":
            cid = uuid.uuid4()
            event = (_EVENT, (ws, cid, "contact.created", "{}"))
            return [(_CONTACT.format(table="contacts"), (ws, cid)), event]
        if kind == "bare create":
            return [(_CONTACT.format(table="bench_bare_contacts"), (ws, uuid.uuid4()))]
        if kind == "floor create":
            lookup = "SELECT status, body FROM floor_idempotency WHERE workspace_id = $1 AND key = $2"
            return [(lookup, (ws, str(uuid.uuid4()))), (_FLOOR_CREATE, (ws, uuid.uuid4()))]
        tables = {"app update": "contacts", "app stage": "contacts", "bare update": "bench_bare_contacts"}
        table = tables.get(kind, "floor_contacts")
        cid = self.ids[table][n % len(self.ids[table])]
        if kind == "app stage":
            stages = ("lead", "marketing_qualified", "customer")
            # each seeded contact in turn moves on one stage (its previous one: the seed's, then the last)
            stage, before = stages[(n // len(self.ids[table])) % 3], "subscriber"
            return [(_STAGE, (ws, cid, stage)), (_STAGE_EVENT, (ws, cid, stage, before))]
        if kind == "app update":
            event = (_EVENT, (ws, cid, "contact.updated", '{"title": null}'))
            return [(_UPDATE.format(table=table), (ws, cid, f"T{n}")), event]
        if kind == "bare update":
            return [(_UPDATE.format(table=table), (ws, cid, f"T{n}"))]
        if kind == "floor update":
            return [(_FLOOR_UPDATE, (ws, cid, f"T{n}"))]
        raise ValueError(kind)

    async def write(self, kind: str, n: int, xids: list[int] | None = None) -> None:
        """One write; with ``xids``, in a transaction block whose id is appended there (for the WAL count)."""
        c = self.conn
        statements = self.statements(kind, n)
        if len(statements) == 1 and xids is None:
            await c.execute(statements[0][0], *statements[0][1])
            return
        async with c.transaction():
            for query, params in statements:
                await c.execute(query, *params)
            if xids is not None:
                xids.append(await c.fetchval("SELECT pg_current_xact_id()::text::bigint"))

    async def wal_records(self, kind: str, n0: int, count: int) -> float:
        """WAL records per write of ``count`` writes, their own transactions' records only."""
        c = self.conn
        start = await c.fetchval("SELECT pg_current_wal_insert_lsn()")
        xids: list[int] = []
        for i in range(count):
            await self.write(kind, n0 + i, xids)
        end = await c.fetchval("SELECT pg_current_wal_flush_lsn()")  # our commits are flushed
        # an xid is 32 bits in the WAL record, the epoch aside
        wanted = [x % 2**32 for x in xids]
        n = await c.fetchval(
            "SELECT count(*) FROM pg_get_wal_records_info($1, $2)"
            " WHERE xid::text::bigint = ANY($3::bigint[])",
            start,
            end,
            wanted,
        )
        return int(n) / count


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dbs", nargs="+")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--writes", type=int, default=500)
    args = parser.parse_args()
    targets: dict[str, Target] = {}
    for i, db in enumerate(args.dbs):
        conn = await asyncpg.connect(f"{PG}/{db}")
        if i == 0:
            await prepare(conn)
        ws = await conn.fetchval("SELECT id FROM workspaces ORDER BY created_at LIMIT 1")
        ids = {}
        tables = ["contacts"] + (["bench_bare_contacts", "floor_contacts"] if i == 0 else [])
        for table in tables:
            ids[table] = [
                r["id"]
                for r in await conn.fetch(
                    f"SELECT id FROM {table} WHERE email LIKE 'seed-%' ORDER BY random() LIMIT 20000"
                )
            ]
        targets[db] = Target(conn, ws, ids)
    first = args.dbs[0]
    runs = [(kind, first) for kind in ("bare create", "floor create", "bare update", "floor update")]
    runs += [(kind, db) for db in args.dbs for kind in ("app create", "app update", "app stage")]
    cpu: dict[tuple[str, str], list[float]] = defaultdict(list)
    wal: dict[tuple[str, str], list[float]] = defaultdict(list)
    counter = 0
    for r in range(args.rounds):
        order = runs if r % 2 == 0 else list(reversed(runs))
        for kind, db in order:
            t = targets[db]
            for i in range(20):  # warm: plans, caches
                await t.write(kind, counter + i)
            counter += 20
            before = t.cpu()
            began = time.perf_counter()
            for i in range(args.writes):
                await t.write(kind, counter + i)
            took = time.perf_counter() - began
            used = t.cpu() - before
            counter += args.writes
            cpu[(kind, db)].append(used / args.writes * 1e6)
            wal[(kind, db)].append(await t.wal_records(kind, counter, 50))
            counter += 50
            print(f"round {r + 1} {kind} {db}: {used / args.writes * 1e6:.0f} us, {args.writes / took:.0f}/s")
    load = os.getloadavg()
    print(f"\nload average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; medians of {args.rounds} rounds")
    print("| write | database | backend CPU us/write | WAL records/write |")
    print("|---|---|---:|---:|")
    for kind, db in runs:
        print(
            f"| {kind} | {db} | {statistics.median(cpu[(kind, db)]):,.0f} | "
            f"{statistics.median(wal[(kind, db)]):.1f} |"
        )


if __name__ == "__main__":
    asyncio.run(main())
