"""A worker SIGKILLed mid-import: the job passes to another worker when the lease lapses and resumes after
the last committed chunk, so every row is written exactly once, with exactly one event."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import time
from pathlib import Path

import asyncpg
import httpx

ROWS = 6000
CHUNK = 500  # twelve chunks
KILLS = 3
STALL = 240.0
"""Seconds the import may go without progress before the test gives up. Not one budget for the whole
run: on a loaded machine a worker process takes 20-30 s to start, and the run starts eight of them."""


async def _worker(database_url: str, log: Path) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_")}
    env.update(
        CRM_DATABASE_URL=database_url,
        CRM_SECRET_KEY=os.environ["CRM_SECRET_KEY"],
        CRM_BULK_LEASE_SECONDS="2",  # a killed worker's import is taken over after 2 s
        CRM_BULK_POLL_SECONDS="0.2",
        CRM_BULK_IMPORT_CHUNK_ROWS=str(CHUNK),
        CRM_SLA_CHECK_SECONDS="0",
    )
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "crm_api", "worker", env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=log.open("ab"),
    )  # fmt: skip


async def test_an_import_survives_its_workers_being_killed_mid_chunk(
    api: httpx.AsyncClient, pool: asyncpg.Pool, database_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "workers.log"  # what the workers said, for a failure's diagnosis
    rng = random.Random(18)
    ws = api.workspace_id  # type: ignore[attr-defined]
    csv = "email,first_name\n" + "".join(f"k{i}@x.com,K{i}\n" for i in range(ROWS))
    body = {"object_type": "contacts", "format": "csv", "upsert_key": "email", "file": csv}
    r = await api.post("/v1/imports", json=body)
    job_id = r.json()["id"]

    async def progress() -> tuple[str, int]:
        query = "SELECT status, rows_done FROM imports WHERE workspace_id = $1 AND id = $2"
        row = await pool.fetchrow(query, ws, r.json()["id"])
        return row["status"], row["rows_done"]

    workers = [await _worker(database_url, log) for _ in range(2)]
    kills: list[int] = []
    try:
        deadline = time.monotonic() + STALL  # moved on whenever the import advances
        while len(kills) < KILLS:
            assert time.monotonic() < deadline, "the import made no progress:\n" + log.read_text()[-3000:]
            status, done = await progress()
            assert status in ("queued", "running"), "the import ended before every kill"
            if done > (kills[-1] if kills else 0):
                deadline = time.monotonic() + STALL
                # somewhere inside the next chunk's transaction, most likely: a chunk takes longer than this
                await asyncio.sleep(rng.uniform(0.0, 0.15))
                for w in workers:
                    w.send_signal(signal.SIGKILL)
                for w in workers:
                    await w.wait()
                kills.append((await progress())[1])
                workers = [await _worker(database_url, log) for _ in range(2)]
                deadline = time.monotonic() + STALL
            await asyncio.sleep(0.02)
        last = -1
        while (now := await progress())[0] != "succeeded":
            if now[1] != last:
                last, deadline = now[1], time.monotonic() + STALL
            assert time.monotonic() < deadline, (
                f"the import did not finish: {now}\n" + log.read_text()[-3000:]
            )
            await asyncio.sleep(0.2)
    finally:
        for w in workers:
            if w.returncode is None:
                w.send_signal(signal.SIGKILL)
                await w.wait()

    assert all(0 < k < ROWS for k in kills), kills
    job = (await api.get(f"/v1/imports/{job_id}")).json()
    assert (job["rows_done"], job["created"], job["updated"], job["failed"]) == (ROWS, ROWS, 0, 0)
    query = "SELECT email, count(*) AS n FROM contacts WHERE workspace_id = $1 GROUP BY email"
    emails = await pool.fetch(query, ws)
    assert len(emails) == ROWS and all(e["n"] == 1 for e in emails)
    created = await pool.fetchval(
        "SELECT count(DISTINCT object_id) FROM events WHERE workspace_id = $1 AND type = 'contact.created'",
        ws,
    )
    events = await pool.fetchval("SELECT count(*) FROM events WHERE workspace_id = $1", ws)
    assert created == events == ROWS
    # the run's database is shared by every test: tests that read the planner's choices over contacts
    # should not see this test's thousands of rows
    await pool.execute("DELETE FROM workspaces WHERE id = $1", ws)
