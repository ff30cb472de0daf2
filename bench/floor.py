"""The floor: a bare FastAPI app on raw asyncpg doing the per-request work crm-api does for the operations of
bench/load.py, on a minimal schema, so each crm-api figure can be read against what the stack itself costs
on the day's machine.

    FLOOR_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/crm_floor \
        python bench/floor.py serve --workers 2 --port 8078
    python bench/floor.py seed --url postgresql://postgres@127.0.0.1:5432/crm_floor --count 100000

Per request, as crm-api does: the bearer key looked up (cached per process for 5 s, as crm-api's key cache
does), every statement scoped by workspace; a create records its Idempotency-Key and its outbox event; an
update bumps the version and records its event. What it leaves out is the product: validation beyond
types, custom fields, 18 indexes, webhooks fan-out, search text, problem+json, the spec machinery.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import os
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import orjson
from fastapi import FastAPI, Request, Response

SCHEMA = """
CREATE TABLE IF NOT EXISTS floor_keys (key_hash text PRIMARY KEY, workspace_id uuid NOT NULL);
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
COLUMNS = "id, email, first_name, last_name, title, lifecycle_stage, created_at, updated_at, version"

_CREATE = f"""
WITH c AS (
    INSERT INTO floor_contacts (workspace_id, id, email, first_name, last_name, lifecycle_stage, created_at,
                                updated_at)
    VALUES ($1, $2, $3, $4, $5, $6, now(), now()) RETURNING {COLUMNS}
), e AS (
    INSERT INTO floor_events (workspace_id, id, type, object_id, data)
    SELECT $1, gen_random_uuid(), 'contact.created', c.id, to_jsonb(c) FROM c
), i AS (
    INSERT INTO floor_idempotency (workspace_id, key, request_hash, status, body)
    SELECT $1, $7, $8, 201, to_jsonb(c)::text FROM c
)
SELECT {COLUMNS} FROM c
"""
_UPDATE = f"""
WITH c AS (
    UPDATE floor_contacts SET title = $3, version = version + 1, updated_at = now()
    WHERE workspace_id = $1 AND id = $2 RETURNING {COLUMNS}
), e AS (
    INSERT INTO floor_events (workspace_id, id, type, object_id, data)
    SELECT $1, gen_random_uuid(), 'contact.updated', c.id, to_jsonb(c) FROM c
)
SELECT {COLUMNS} FROM c
"""


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data, default=str), status_code=status, media_type="application/json")


def _api(row: asyncpg.Record) -> dict[str, Any]:
    return {"object": "contact", **dict(row)}


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.pool = await asyncpg.create_pool(os.environ["FLOOR_DATABASE_URL"], min_size=1, max_size=10)
    app.state.keys = {}
    yield
    await app.state.pool.close()


app = FastAPI(lifespan=lifespan)


async def workspace(request: Request) -> uuid.UUID:
    token = request.headers.get("authorization", "").removeprefix("Bearer ")
    digest = hashlib.sha256(token.encode()).hexdigest()
    cached = request.app.state.keys.get(digest)
    if cached is not None and cached[1] > time.monotonic():
        return cached[0]  # type: ignore[no-any-return]
    ws = await request.app.state.pool.fetchval(
        "SELECT workspace_id FROM floor_keys WHERE key_hash = $1", digest
    )
    request.app.state.keys[digest] = (ws, time.monotonic() + 5.0)
    return ws  # type: ignore[no-any-return]


@app.post("/v1/contacts")
async def create(request: Request) -> Response:
    ws = await workspace(request)
    raw = await request.body()
    body = orjson.loads(raw)
    key = request.headers.get("idempotency-key", str(uuid.uuid4()))
    fingerprint = hashlib.sha256(raw).hexdigest()
    pool = request.app.state.pool
    async with pool.acquire() as conn:
        found = await conn.fetchrow(
            "SELECT status, body FROM floor_idempotency WHERE workspace_id = $1 AND key = $2", ws, key
        )
        if found is not None:
            return Response(found["body"], status_code=found["status"], media_type="application/json")
        row = await conn.fetchrow(
            _CREATE, ws, uuid.uuid4(), body.get("email"), body.get("first_name"), body.get("last_name"),
            body.get("lifecycle_stage"), key, fingerprint,
        )  # fmt: skip
    return _json(_api(row), 201)


@app.get("/v1/contacts/{oid}")
async def get(request: Request, oid: uuid.UUID) -> Response:
    ws = await workspace(request)
    row = await request.app.state.pool.fetchrow(
        f"SELECT {COLUMNS} FROM floor_contacts WHERE workspace_id = $1 AND id = $2", ws, oid
    )
    return _json(_api(row)) if row else _json({"status": 404}, 404)


@app.get("/v1/contacts")
async def list_(
    request: Request, limit: int = 50, lifecycle_stage: str | None = None, cursor: str = ""
) -> Response:
    ws = await workspace(request)
    args: list[Any] = [ws]
    where = "workspace_id = $1"
    if lifecycle_stage:
        args.append(lifecycle_stage)
        where += f" AND lifecycle_stage = ${len(args)}"
    if cursor:
        at, _, cid = cursor.partition("_")
        args += [dt.datetime.fromtimestamp(int(at) / 1e6, dt.UTC), uuid.UUID(cid)]
        where += f" AND (created_at, id) < (${len(args) - 1}, ${len(args)})"
    rows = await request.app.state.pool.fetch(
        f"SELECT {COLUMNS} FROM floor_contacts WHERE {where} "
        f"ORDER BY created_at DESC, id DESC LIMIT {limit + 1}",
        *args,
    )
    more = len(rows) > limit
    rows = rows[:limit]
    last = rows[-1]["created_at"] if rows else None
    nxt = f"{int(last.timestamp() * 1e6)}_{rows[-1]['id']}" if more and last else None
    return _json({"object": "list", "data": [_api(r) for r in rows], "has_more": more, "next_cursor": nxt})


@app.patch("/v1/contacts/{oid}")
async def update(request: Request, oid: uuid.UUID) -> Response:
    ws = await workspace(request)
    body = orjson.loads(await request.body())
    row = await request.app.state.pool.fetchrow(_UPDATE, ws, oid, body.get("title"))
    return _json(_api(row)) if row else _json({"status": 404}, 404)


async def seed(url: str, count: int, key: str) -> None:
    conn = await asyncpg.connect(url)
    await conn.execute(SCHEMA)
    ws = uuid.uuid4()
    await conn.execute("INSERT INTO floor_keys VALUES ($1, $2)", hashlib.sha256(key.encode()).hexdigest(), ws)
    await conn.execute(
        "INSERT INTO floor_contacts (workspace_id, id, email, first_name, last_name, lifecycle_stage, "
        "created_at, updated_at) SELECT $1, gen_random_uuid(), 'seed-' || g || '@example.com', 'First' || g, "
        "'Last' || (g % 997), (ARRAY['subscriber','lead','customer','opportunity'])[g % 4 + 1], "
        "now() - g * interval '1 second', now() FROM generate_series(1, $2) AS g",
        ws,
        count,
    )
    await conn.execute("ANALYZE")
    await conn.close()


def serve(port: int, workers: int) -> int:
    """uvicorn's worker processes, each on a listening socket of its own as ``crm-api serve --workers N``
    runs them (crm_api/supervisor.py): the floor gets the same spread of connections over its workers."""
    import uvicorn

    from crm_api.supervisor import Supervisor

    config = uvicorn.Config("floor:app", host="127.0.0.1", port=port, workers=workers, access_log=False)
    if workers == 1:
        uvicorn.Server(config).run()
        return 0
    return Supervisor(config, workers).run()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["seed", "serve"])
    parser.add_argument("--url", default="")
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--key", default="floor-key")
    parser.add_argument("--port", type=int, default=8078)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if args.command == "serve":
        raise SystemExit(serve(args.port, args.workers))
    asyncio.run(seed(args.url, args.count, args.key))
