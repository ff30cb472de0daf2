"""Chunks written side by side (chunk n+1 beside chunk n, on two connections) give what chunks written one
after another give: a key repeated in the next chunk updates the row the chunk before made, an object one
chunk matches by email and the next by external id is updated by both in file order, and the counts,
errors and events are those of a serial run."""

from __future__ import annotations

import asyncio
import logging

import asyncpg
import httpx
import pytest

from crm_api.bulk import worker
from crm_api.config import Settings

ROWS = [
    "email,first_name,crm",
    "a@x.com,A,",  # chunk 1
    "b@x.com,B,",
    "c@x.com,C,",  # chunk 2: repeats a@x.com, so waits for chunk 1
    "a@x.com,A2,",
    "x@x.com,X1,",  # chunk 3: updates X by its email
    "d@x.com,D,",
    "e@x.com,X2,42",  # chunk 4: updates X again, matched by its external id (no key shared with chunk 3)
    "f@x.com,F,",
    "not-an-email,Z,",  # chunk 5: a bad row fails alone
    "g@x.com,G,",
]


_WAITING = """
SELECT count(*) >= 2 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'
"""


async def _until(pool: asyncpg.Pool, query: str, *args: object) -> None:
    for _ in range(1200):  # a minute at most
        if await pool.fetchval(query, *args):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never true: {query}")


async def _count(pool: asyncpg.Pool, ws: object, type_: str) -> int:
    n: int = await pool.fetchval(
        "SELECT count(*) FROM events WHERE workspace_id = $1 AND type = $2", ws, type_
    )
    return n


async def test_chunks_written_side_by_side_match_a_serial_run(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    r = await api.post(
        "/v1/contacts", json={"email": "x@x.com", "first_name": "X", "external_ids": {"crm": "42"}}
    )
    assert r.status_code == 201, r.text
    x = r.json()["id"]
    body = {
        "object_type": "contacts",
        "format": "csv",
        "upsert_key": "email",
        "mapping": {"email": "email", "first_name": "first_name", "crm": "external_ids.crm"},
        "file": "\n".join(ROWS) + "\n",
    }
    r = await api.post("/v1/imports", json=body)
    assert r.status_code == 202, r.text
    settings = Settings(bulk_lease_seconds=30, bulk_import_chunk_rows=2)
    while await worker.run_once(pool, settings, asyncio.Event()):
        pass
    job = (await api.get(f"/v1/imports/{r.json()['id']}")).json()
    assert job["status"] == "succeeded", job
    assert (job["rows_done"], job["created"], job["updated"], job["failed"]) == (10, 6, 3, 1)
    errors = (await api.get(f"/v1/imports/{job['id']}/errors")).json()["data"]
    assert [(e["row"], e["column"]) for e in errors] == [(9, "email")]

    contacts = (await api.get("/v1/contacts", params={"limit": 100})).json()["data"]
    names = {c["email"]: c["first_name"] for c in contacts}
    assert names == {
        "a@x.com": "A2",
        "b@x.com": "B",
        "c@x.com": "C",
        "d@x.com": "D",
        "e@x.com": "X2",
        "f@x.com": "F",
        "g@x.com": "G",
    }
    stored = (await api.get(f"/v1/contacts/{x}")).json()
    assert (stored["email"], stored["first_name"], stored["version"]) == ("e@x.com", "X2", 3)
    ws = api.workspace_id  # type: ignore[attr-defined]
    assert await _count(pool, ws, "contact.created") == 7  # X, and the six the file made
    assert await _count(pool, ws, "contact.updated") == 3


async def test_a_row_lost_to_the_chunk_beside_is_written_again_after_it(
    api: httpx.AsyncClient, pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    """Chunk 3 updates X by email while a transaction holds X's row; chunk 4, beside it, reads X as it was
    and updates it too, matched by external id: its update finds X changed once chunk 3 commits, so chunk
    4 rolls back and is written again, and X ends as a serial run leaves it (both updates, in order)."""
    r = await api.post(
        "/v1/contacts", json={"email": "x@x.com", "first_name": "X", "external_ids": {"crm": "42"}}
    )
    x = r.json()["id"]
    body = {
        "object_type": "contacts",
        "format": "csv",
        "upsert_key": "email",
        "mapping": {"email": "email", "first_name": "first_name", "crm": "external_ids.crm"},
        "file": "\n".join(ROWS) + "\n",
    }
    r = await api.post("/v1/imports", json=body)
    assert r.status_code == 202, r.text
    settings = Settings(bulk_lease_seconds=30, bulk_import_chunk_rows=2)
    caplog.set_level(logging.INFO, logger="crm_api.imports")
    async with pool.acquire() as holder:
        held = holder.transaction()
        await held.start()
        await holder.execute("SELECT 1 FROM contacts WHERE id = $1 FOR UPDATE", x)
        running = asyncio.create_task(worker.run_once(pool, settings, asyncio.Event()))
        # chunk 3 updates X and waits for it; chunk 4, beside it, reads X as it was and waits for it too
        await _until(pool, _WAITING)
        await held.rollback()
    assert await running
    again = [r.getMessage() for r in caplog.records if r.name == "crm_api.imports"]
    assert again == ["import chunk from row 7 written again"]  # chunk 4 met chunk 3, and stepped back
    job = (await api.get(f"/v1/imports/{r.json()['id']}")).json()
    assert (job["status"], job["rows_done"], job["created"], job["updated"], job["failed"]) == (
        "succeeded",
        10,
        6,
        3,
        1,
    )
    stored = (await api.get(f"/v1/contacts/{x}")).json()
    assert (stored["email"], stored["first_name"], stored["version"]) == ("e@x.com", "X2", 3)
    ws = api.workspace_id  # type: ignore[attr-defined]
    assert await _count(pool, ws, "contact.updated") == 3
