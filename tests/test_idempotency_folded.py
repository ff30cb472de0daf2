"""A create, update, archive or restore with an Idempotency-Key runs without a transaction: the record goes
into the write's own statement (``idempotency``, folded writes). Round trips are counted on the app's own
connections; the race a twin could win between the lookup and the write is played out for real."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import asyncpg
import httpx
from starlette.requests import Request

from crm_api.db import asyncpg_dsn
from crm_api.idempotency import request_fingerprint

# asyncpg's own queries the first time a connection meets a type: not the request's
_INTROSPECTION = ("SELECT current_setting('jit')", "WITH RECURSIVE typeinfo_tree", "SELECT set_config('jit'")


@contextmanager
def _statements(app: Any) -> Iterator[list[str]]:
    """Every statement the app sends while inside, on whichever pooled connection."""
    pool = app.state.db.pool
    sent: list[str] = []
    plain = pool.acquire

    def log(record: Any) -> None:
        if not " ".join(record.query.split()).startswith(_INTROSPECTION):
            sent.append(" ".join(record.query.split()))

    @asynccontextmanager
    async def acquire() -> AsyncIterator[asyncpg.Connection]:
        async with plain() as conn:
            conn.add_query_logger(log)
            try:
                yield conn
            finally:
                await asyncio.sleep(0)  # loggers run soon after the statement, not during it
                conn.remove_query_logger(log)

    pool.acquire = acquire
    try:
        yield sent
    finally:
        pool.acquire = plain


async def test_a_create_with_a_key_is_at_most_three_round_trips(api: httpx.AsyncClient, app: Any) -> None:
    assert (
        await api.get("/v1/contacts?limit=1")
    ).status_code == 200  # the key is looked up once, then cached
    body = {"email": "folded@example.com", "first_name": "F"}
    with _statements(app) as sent:
        created = await api.post("/v1/contacts", json=body, headers={"Idempotency-Key": "fold-1"})
    assert created.status_code == 201, created.text
    assert len(sent) <= 3, sent
    assert not any(s in ("BEGIN", "COMMIT") or s.startswith("BEGIN ") for s in sent), sent
    with _statements(app) as sent:
        again = await api.post("/v1/contacts", json=body, headers={"Idempotency-Key": "fold-1"})
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert again.json() == created.json() and again.headers["etag"] == created.headers["etag"]
    assert len(sent) == 2, sent  # the lock with the lookup, then the unlock
    listed = (await api.get("/v1/contacts", params={"email": "folded@example.com"})).json()["data"]
    assert len(listed) == 1


async def test_an_update_records_its_response_in_its_own_statement(api: httpx.AsyncClient, app: Any) -> None:
    contact = (await api.post("/v1/contacts", json={"email": "u@example.com"})).json()
    url = f"/v1/contacts/{contact['id']}"
    with _statements(app) as sent:
        first = await api.patch(url, json={"title": "CEO"}, headers={"Idempotency-Key": "upd-1"})
    assert first.status_code == 200 and first.json()["version"] == 2
    assert not any(s.startswith(("BEGIN", "COMMIT")) for s in sent), sent
    assert len(sent) <= 5, sent  # lock and lookup, the read, its rules, the write with its record, unlock
    replay = await api.patch(url, json={"title": "CEO"}, headers={"Idempotency-Key": "upd-1"})
    assert replay.headers.get("idempotent-replayed") == "true" and replay.json() == first.json()
    reused = await api.patch(url, json={"title": "CTO"}, headers={"Idempotency-Key": "upd-1"})
    assert reused.status_code == 422 and reused.json()["code"] == "idempotency_key_reused"
    # an update that changes nothing writes no statement: its record is stored after it
    same = await api.patch(url, json={"title": "CEO"}, headers={"Idempotency-Key": "upd-2"})
    assert same.status_code == 200 and same.json()["version"] == 2
    assert (await api.patch(url, json={"title": "CEO"}, headers={"Idempotency-Key": "upd-2"})).headers.get(
        "idempotent-replayed"
    ) == "true"


async def test_a_failed_create_leaves_its_key_free(api: httpx.AsyncClient) -> None:
    await api.post("/v1/contacts", json={"email": "taken@example.com"})
    clash = await api.post(
        "/v1/contacts", json={"email": "taken@example.com"}, headers={"Idempotency-Key": "clash"}
    )
    assert clash.status_code == 409 and clash.json()["errors"][0]["path"] == "/email"
    other = await api.post(
        "/v1/contacts", json={"email": "free@example.com"}, headers={"Idempotency-Key": "clash"}
    )
    assert other.status_code == 201, other.text  # nothing was stored for the key, and its lock was released


async def test_a_twin_that_commits_first_is_replayed_not_duplicated(
    api: httpx.AsyncClient, app: Any, database_url: str
) -> None:
    """A twin takes the key between this request's lookup and its write: here another transaction stores
    the key's record and commits while this request's write waits on it. The request writes nothing and
    answers with the twin's response."""
    ws: uuid.UUID = api.workspace_id  # type: ignore[attr-defined]
    raw = b'{"email": "twin@example.com"}'
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/contacts",
        "query_string": b"",
        "headers": [],
        "scheme": "http",
        "server": ("test", 80),
    }
    fingerprint = request_fingerprint(Request(scope), raw)
    dsn, kwargs = asyncpg_dsn(database_url)
    twin = await asyncpg.connect(dsn, **kwargs)
    try:
        tx = twin.transaction()
        await tx.start()
        await twin.execute(
            "INSERT INTO idempotency_keys (workspace_id, key, request_hash, status, headers, body, "
            "created_at) VALUES ($1, 'twin', $2, 201, '{}'::jsonb, '{\"twin\": true}', now())",
            ws,
            fingerprint,
        )
        headers = {"Idempotency-Key": "twin", "Content-Type": "application/json"}
        request = asyncio.create_task(api.post("/v1/contacts", content=raw, headers=headers))
        await asyncio.sleep(0.5)  # the request reaches its write and waits on the twin's uncommitted key
        assert not request.done()
        await tx.commit()
        answer = await asyncio.wait_for(request, 10)
    finally:
        await twin.close()
    assert answer.status_code == 201 and answer.json() == {"twin": True}
    assert answer.headers["idempotent-replayed"] == "true"
    assert (await api.get("/v1/contacts", params={"email": "twin@example.com"})).json()["data"] == []
