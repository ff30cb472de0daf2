"""Round trips each writer costs, counted on the connection: the write pipeline must not add any to the hot
paths (a plain create or update is its rules' reads plus one statement, with no BEGIN/COMMIT), and every
other writer keeps the statements it had when it was routed through it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest

from crm_api.auth import Principal
from crm_api.contacts.spec import CONTACTS
from crm_api.deals.spec import DEALS
from crm_api.merge import service as merge
from crm_api.orders import service as orders
from crm_api.orders.schemas import OrderIn
from crm_api.pipelines import service as pipelines
from crm_api.resources import batch, service
from crm_api.resources.custom_fields.cache import CACHE
from crm_api.tickets import service as tickets


@pytest.fixture(autouse=True)
def _uncached(request: pytest.FixtureRequest) -> Iterator[None]:
    """The counts below are those of a process without the definitions cache (a worker, or before its
    LISTEN is up); test_cached_definitions counts with it."""
    if request.node.name == "test_cached_definitions":
        yield
        return
    with CACHE.suspended():
        yield


@dataclass
class _Ctx:
    """What a writer needs to know about the caller (the routes pass the resource Context)."""

    principal: Principal
    request_id: str | None = None

    @property
    def workspace_id(self) -> uuid.UUID:
        return self.principal.workspace_id


def _ctx(api: httpx.AsyncClient) -> Any:
    ws: uuid.UUID = api.workspace_id  # type: ignore[attr-defined]
    return _Ctx(Principal(ws, uuid.uuid4(), frozenset({"*"})))


# asyncpg's own queries the first time a connection meets a type: not the writer's, and not every time
# (its jit queries are laid out over several lines: compared with whitespace collapsed)
_INTROSPECTION = ("SELECT current_setting('jit')", "WITH RECURSIVE typeinfo_tree", "SELECT set_config('jit'")


@asynccontextmanager
async def _counted(
    pool: asyncpg.Pool, transaction: bool
) -> AsyncIterator[tuple[asyncpg.Connection, list[str]]]:
    """A connection that records every statement sent on it; inside a transaction opened beforehand (as
    ``deps.LockingConn`` does) when asked, so only the writer's own statements count."""
    queries: list[str] = []
    async with pool.acquire() as conn:
        tx = conn.transaction() if transaction else None
        if tx is not None:
            await tx.start()

        def log(record: Any) -> None:
            if not " ".join(record.query.split()).startswith(_INTROSPECTION):
                queries.append(record.query)

        conn.add_query_logger(log)
        try:
            yield conn, queries
        finally:
            await asyncio.sleep(0)  # loggers are called soon after, not during, the statement
            conn.remove_query_logger(log)
            if tx is not None:
                await tx.commit()


async def _count(
    pool: asyncpg.Pool, transaction: bool, op: Callable[[asyncpg.Connection], Awaitable[Any]]
) -> tuple[int, Any]:
    async with _counted(pool, transaction) as (conn, queries):
        result = await op(conn)
        await asyncio.sleep(0)
        count = len(queries)
    return count, result


async def _stage(api: httpx.AsyncClient, kind: str, name: str | None = None) -> tuple[str, str]:
    p = next(p for p in (await api.get("/v1/pipelines")).json()["data"] if p["is_default"])
    stage = next(s for s in p["stages"] if s["kind"] == kind and (name is None or s["name"] == name))
    return p["id"], stage["id"]


async def test_hot_paths_keep_their_round_trips(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    ctx = _ctx(api)
    # a contact: definitions of its custom fields, then the one statement; no BEGIN/COMMIT
    n, contact = await _count(pool, False, lambda c: service.create(c, CONTACTS, ctx, {"email": "a@x.io"}))
    assert n == 2
    n, _ = await _count(pool, False, lambda c: service.get(c, CONTACTS, ctx, contact["id"]))
    assert n == 1
    n, _ = await _count(
        pool, False, lambda c: service.update(c, CONTACTS, ctx, contact["id"], {"first_name": "A"}, None)
    )
    assert n == 2  # the read, the write (custom fields untouched: no definitions to read)
    n, _ = await _count(pool, False, lambda c: service.archive(c, CONTACTS, ctx, contact["id"], None))
    assert n == 3  # archive reads once to answer an archived record without a write

    # a deal's write has upkeep (its contacts' lifetime value) only when a won deal with contacts appears,
    # changes or stops counting: then the two share a transaction; else it is one statement like any other
    _, won = await _stage(api, "won")
    payload = {"name": "D", "amount": "5", "currency": "EUR"}
    n, deal = await _count(pool, False, lambda c: service.create(c, DEALS, ctx, payload))
    assert n == 3  # definitions, stages, write
    n, _ = await _count(
        pool, False, lambda c: service.update(c, DEALS, ctx, deal["id"], {"stage_id": uuid.UUID(won)}, None)
    )
    assert n == 3  # read, stages, write (no contact: nothing to refresh)
    buyer = (await api.post("/v1/contacts", json={"email": "b@x.io"})).json()["id"]
    async with pool.acquire() as conn:
        linked = await service.create(conn, DEALS, ctx, {**payload, "contact_id": uuid.UUID(buyer)})
    async with _counted(pool, False) as (conn, queries):
        await service.update(conn, DEALS, ctx, linked["id"], {"stage_id": uuid.UUID(won)}, None)
        await asyncio.sleep(0)
    assert queries[2].strip() == "BEGIN;" and queries[-1].strip() == "COMMIT;", queries
    value = (await api.get(f"/v1/contacts/{buyer}")).json()["lifetime_value"]
    assert {k: float(v) for k, v in value.items()} == {"EUR": 5.0}


async def test_other_writers_keep_their_round_trips(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    ctx = _ctx(api)
    items = [{"email": f"b{i}@x.io"} for i in range(3)]
    n, results = await _count(pool, True, lambda c: batch.run(c, CONTACTS, ctx, items, "create"))
    assert [r["status"] for r in results] == [201] * 3
    assert n == 3  # natural-key lookup, definitions, the write

    ann = results[0]["object"]["id"]
    _, won = await _stage(api, "won")
    deals = [{"name": f"D{i}", "amount": "2", "currency": "EUR", "contact_id": str(ann)} for i in range(2)]
    n, results = await _count(pool, True, lambda c: batch.run(c, DEALS, ctx, deals, "create"))
    assert [r["status"] for r in results] == [201] * 2
    assert n == 4  # references, definitions, stages, the write

    # the stage removal: lock, read, deals in the stage, their rules, the deals' write, the pipeline's write
    pipeline_id, open_stage = await _stage(api, "open", "Negotiation")
    for d in results:
        await api.patch(f"/v1/deals/{d['object']['id']}", json={"stage_id": open_stage})
    n, _ = await _count(
        pool,
        True,
        lambda c: pipelines.remove_stage(
            c, ctx, uuid.UUID(pipeline_id), uuid.UUID(open_stage), uuid.UUID(won), None
        ),
    )
    # lock, read, deals, stages, the deals' write, their upkeep (the contact's lifetime value: aggregates,
    # write), the pipeline's write; no definitions: the moves leave custom fields alone
    assert n == 8

    # a ticket comment answering the ticket: lock, comment's write, ticket's write
    ticket = (await api.post("/v1/tickets", json={"subject": "Help"})).json()
    n, _ = await _count(
        pool, True, lambda c: tickets.create_comment(c, ctx, uuid.UUID(ticket["id"]), {"body": "On it"})
    )
    assert n == 3

    # a contact merge (custom fields on neither side, so no definitions to read): lock, archive, survivor,
    # orders relinked, deals (lock, write, their
    # upkeep: aggregates, write), activities, tickets, comments relinked, the final refresh (aggregates; its
    # write has nothing left to do), the survivor read again
    bob = (await api.post("/v1/contacts", json={"email": "bob@x.io"})).json()["id"]
    n, _ = await _count(pool, True, lambda c: merge.merge(c, CONTACTS, ctx, uuid.UUID(bob), [ann], {}, False))
    assert n == 13

    def order(number: str) -> OrderIn:
        return OrderIn.model_validate(
            {
                "customer": {"email": "o@x.io"},
                "order_number": number,
                "status": "paid",
                "currency": "EUR",
                "totals": {"subtotal": "1", "discount": "0", "tax": "0", "shipping": "0", "total": "1"},
                "placed_at": "2026-01-01T00:00:00Z",
                "updated_at": "2026-01-01T00:00:00Z",
                "line_items": [],
            }
        )

    await _count(pool, True, lambda c: orders.upsert(c, ctx, "shop", "1", order("#1")))
    # the second order of a known customer: locks, stored order; the contact's upsert (lock, lookup, read:
    # nothing to write, no custom fields to judge); the deal's (stages, lock, owners, references,
    # definitions, stages, write, and its upkeep: aggregates, write, in the request's transaction with no
    # savepoint of its own);
    # line items, the order, the order count (aggregates, write)
    n, _ = await _count(pool, True, lambda c: orders.upsert(c, ctx, "shop", "2", order("#2")))
    assert n == 18


async def test_cached_definitions(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    """With this process listening for definition changes (the app's lifespan), a create reads the
    definitions once per workspace and object type, until they change."""
    stop, listener = asyncio.Event(), None
    for _ in range(40):  # the app's listener connects in the background (at start-up, or after a loss)
        if CACHE.serving:
            break
        await asyncio.sleep(0.05)
    else:  # this run's app is not listening (another test ended its connection): listen here
        listener = asyncio.create_task(CACHE.run(pool, stop))  # type: ignore[arg-type]
        for _ in range(200):
            if CACHE.serving:
                break
            await asyncio.sleep(0.05)
    try:
        await _count_with_the_cache(api, pool)
    finally:
        stop.set()
        if listener is not None:
            await listener


async def _count_with_the_cache(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    assert CACHE.serving
    ctx = _ctx(api)
    n, _ = await _count(pool, False, lambda c: service.create(c, CONTACTS, ctx, {"email": "c1@x.io"}))
    assert n == 2  # the definitions (now cached), the write
    n, _ = await _count(pool, False, lambda c: service.create(c, CONTACTS, ctx, {"email": "c2@x.io"}))
    assert n == 1  # the write alone
    r = await api.post(
        "/v1/custom-fields", json={"object_type": "contact", "name": "x", "label": "X", "type": "text"}
    )
    assert r.status_code == 201, r.text
    n, _ = await _count(pool, False, lambda c: service.create(c, CONTACTS, ctx, {"email": "c3@x.io"}))
    assert n == 2  # the definitions changed (in this process: dropped at once), so read again
