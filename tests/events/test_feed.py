"""``GET /v1/events``: order, filters, paging, workspace scope, and the horizon (``events/horizon.py``).

The feed shows only events whose transaction is older than every running transaction that may still
commit an event, and a writer in flight holds it back for a moment, so expectations are polled with a
deadline.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import httpx

from crm_api.auth import Context, Principal
from crm_api.contacts.spec import CONTACTS
from crm_api.db import asyncpg_dsn
from crm_api.resources import service

MakeClient = Callable[..., Awaitable[httpx.AsyncClient]]


async def _poll(check: Callable[[], Awaitable[Any]], within: float = 20.0) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = await check()
        if value:
            return value
        assert time.monotonic() < deadline, f"not met within {within} s: {value!r}"
        await asyncio.sleep(0.05)


async def _feed(api: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    r = await api.get("/v1/events", params=params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def _settled(api: httpx.AsyncClient, n: int, **params: Any) -> list[dict[str, Any]]:
    async def check() -> list[dict[str, Any]] | None:
        data: list[dict[str, Any]] = (await _feed(api, limit=200, **params))["data"]
        return data if len(data) >= n else None

    result: list[dict[str, Any]] = await _poll(check)
    return result


async def _contact(api: httpx.AsyncClient) -> dict[str, Any]:
    r = await api.post("/v1/contacts", json={"email": f"{uuid.uuid4().hex[:10]}@example.com"})
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_feed_order_filters_and_paging(api: httpx.AsyncClient, make_client: MakeClient) -> None:
    first = await _contact(api)
    second = await _contact(api)
    company = (await api.post("/v1/companies", json={"name": "Acme"})).json()
    r = await api.patch(f"/v1/contacts/{first['id']}", json={"first_name": "Ann"})
    assert r.status_code == 200, r.text

    newest_first = await _settled(api, 4)
    assert len(newest_first) == 4
    assert [e["type"] for e in newest_first] == [
        "contact.updated",
        "company.created",
        "contact.created",
        "contact.created",
    ]
    sequences = [e["sequence"] for e in newest_first]
    assert sequences == sorted(sequences, reverse=True)
    assert [e["object_id"] for e in newest_first] == [first["id"], company["id"], second["id"], first["id"]]
    updated = newest_first[0]
    assert updated["object"] == "event" and updated["object_type"] == "contact"
    assert updated["data"]["object"]["first_name"] == "Ann"
    assert updated["data"]["previous"] == {"first_name": None}

    oldest_first = (await _feed(api, sort="sequence"))["data"]
    assert oldest_first == list(reversed(newest_first))

    created = (await _feed(api, type="contact.created"))["data"]
    assert [e["object_id"] for e in created] == [second["id"], first["id"]]
    contacts = (await _feed(api, type="contact.*"))["data"]
    assert [e["type"] for e in contacts] == ["contact.updated", "contact.created", "contact.created"]
    assert len((await _feed(api, type="*"))["data"]) == 4
    assert (await _feed(api, type="deal.won"))["data"] == []
    by_object = (await _feed(api, object_id=first["id"]))["data"]
    assert [e["type"] for e in by_object] == ["contact.updated", "contact.created"]
    after = (await _feed(api, after=oldest_first[1]["sequence"], sort="sequence"))["data"]
    assert after == oldest_first[2:]

    # cursor paging, both directions, visits every event once
    for sort, expected in (("-sequence", newest_first), ("sequence", oldest_first)):
        seen: list[dict[str, Any]] = []
        params: dict[str, Any] = {"limit": 3, "sort": sort}
        while True:
            page = await _feed(api, **params)
            seen += page["data"]
            if not page["has_more"]:
                assert page["next_cursor"] is None
                break
            params["cursor"] = page["next_cursor"]
        assert seen == expected

    one = await api.get(f"/v1/events/{updated['id']}")
    assert one.status_code == 200 and one.json() == updated
    assert (await api.get(f"/v1/events/{uuid.uuid4()}")).status_code == 404
    for bad in ({"type": "Contact Created"}, {"after": -1}, {"limit": 0}, {"sort": "created_at"}):
        assert (await api.get("/v1/events", params=bad)).status_code == 422, bad
    assert (await api.get("/v1/events", params={"cursor": "nonsense"})).status_code in (400, 422)

    # another workspace sees nothing of it
    stranger = await make_client()
    assert (await stranger.get(f"/v1/events/{updated['id']}")).status_code == 404
    assert (await _feed(stranger))["data"] == []
    assert (await _feed(stranger, object_id=first["id"]))["data"] == []


async def test_a_late_committing_writer_is_never_skipped(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    """A writer holds an event in an open transaction (its sequence drawn); a later write commits an event
    with a higher sequence. A reader following the feed sees neither until the first writer commits, then
    both, in sequence order: its cursor never passed the late one."""
    await _contact(api)
    seen = await _settled(api, 1, sort="sequence")
    cursor = seen[-1]["sequence"]
    ctx = Context(Principal(api.workspace_id, uuid.uuid4(), frozenset({"*"})), None)  # type: ignore[attr-defined]
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        try:
            late = await service.create(
                conn, CONTACTS, ctx, {"email": f"{uuid.uuid4().hex[:10]}@late.example"}
            )
            later = await _contact(api)
            # committed, and readable by id; the feed waits for the writer still in flight
            assert (await api.get("/v1/contacts/" + later["id"])).status_code == 200
            for _ in range(6):
                assert (await _feed(api, sort="sequence", after=cursor))["data"] == []
                await asyncio.sleep(0.05)
        finally:
            await tx.commit()
    got = await _settled(api, 2, sort="sequence", after=cursor)
    assert [(e["type"], e["object_id"]) for e in got] == [
        ("contact.created", str(late["id"])),
        ("contact.created", later["id"]),
    ]
    assert got[0]["sequence"] < got[1]["sequence"]


async def test_a_writer_that_took_its_transaction_id_early_does_not_pass_an_open_one(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    """The first writer takes its transaction id early (a row lock, a write elsewhere), a second writer
    (a later id) draws a sequence and stays open, then the first draws a higher sequence and commits. Its
    event must wait for the second's: a reader that showed it would pass the second's lower sequence."""
    await _contact(api)
    cursor = (await _settled(api, 1, sort="sequence"))[-1]["sequence"]
    ctx = Context(Principal(api.workspace_id, uuid.uuid4(), frozenset({"*"})), None)  # type: ignore[attr-defined]
    async with pool.acquire() as early, pool.acquire() as open_:
        first, second = early.transaction(), open_.transaction()
        await first.start()
        await second.start()
        try:
            await early.execute("SELECT pg_current_xact_id()")  # its id, before the other's
            held = await service.create(
                open_, CONTACTS, ctx, {"email": f"{uuid.uuid4().hex[:10]}@held.example"}
            )
            done = await service.create(
                early, CONTACTS, ctx, {"email": f"{uuid.uuid4().hex[:10]}@done.example"}
            )
            await first.commit()
            for _ in range(6):
                assert (await _feed(api, sort="sequence", after=cursor))["data"] == []
                await asyncio.sleep(0.05)
        finally:
            if early.is_in_transaction():
                await first.rollback()
            await second.commit()
    got = await _settled(api, 2, sort="sequence", after=cursor)
    assert [e["object_id"] for e in got] == [str(held["id"]), str(done["id"])]


def _other_database(url: str) -> tuple[str, dict[str, Any]]:
    dsn, kwargs = asyncpg_dsn(url)
    head, _, query = dsn.partition("?")
    return head.rsplit("/", 1)[0] + "/postgres" + (f"?{query}" if query else ""), kwargs


async def test_transactions_that_write_no_events_do_not_hold_the_feed(
    api: httpx.AsyncClient, pool: asyncpg.Pool, database_url: str
) -> None:
    """Sessions left in a transaction with a transaction id (another database on the server, and this
    database reading events and writing elsewhere) do not stop new events from showing."""
    dsn, kwargs = _other_database(database_url)
    elsewhere = await asyncpg.connect(dsn, **kwargs)
    try:
        async with pool.acquire() as here:
            held = [elsewhere.transaction(), here.transaction()]
            for tx in held:
                await tx.start()
            try:
                for conn in (elsewhere, here):
                    await conn.execute("SELECT pg_current_xact_id()")  # a transaction id: in every snapshot
                await here.fetchval("SELECT count(*) FROM events")  # a report over events: a read lock only
                contact = await _contact(api)
                got = await _settled(api, 1, object_id=contact["id"])
                assert [e["type"] for e in got] == ["contact.created"]
                running = await pool.fetchval("SELECT count(*) FROM pg_snapshot_xip(pg_current_snapshot())")
                assert running >= 2  # both still open while the event showed
            finally:
                for tx in held:
                    await tx.rollback()
    finally:
        await elsewhere.close()


async def _feed_all(api: httpx.AsyncClient, object_id: str) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = (await _feed(api, object_id=object_id))["data"]
    return data
