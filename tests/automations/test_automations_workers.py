"""Automations run by real ``crm-api worker`` processes: a trigger firing once per event with two workers
racing for it, and workers SIGKILLed while runs are in flight: every triggering event gets its run and
its action exactly once."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx

CONTACTS = 2000
KILLS = 3


async def _worker(database_url: str, log: Path, clock_offset_s: float = 0) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_")}
    env.update(
        CRM_DATABASE_URL=database_url,
        CRM_SECRET_KEY=os.environ["CRM_SECRET_KEY"],
        CRM_AUTOMATION_POLL_SECONDS="0.05",
        CRM_BULK_POLL_SECONDS="0",
        CRM_SLA_CHECK_SECONDS="0",
        CRM_AUTOMATION_CLOCK_OFFSET_S=str(clock_offset_s),
    )
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "crm_api", "worker", env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=log.open("ab"),
    )  # fmt: skip


async def _stop(workers: list[asyncio.subprocess.Process]) -> None:
    for w in workers:
        if w.returncode is None:
            w.send_signal(signal.SIGKILL)
            await w.wait()


async def _tag_rule(api: httpx.AsyncClient) -> dict[str, Any]:
    r = await api.post(
        "/v1/automations",
        json={
            "name": "tag new contacts",
            "trigger": {"type": "event", "event_type": "contact.created"},
            "actions": [
                {"type": "add_tags", "tags": ["welcomed"]},
                {"type": "create_note", "body": "Welcome"},
            ],
        },
    )
    assert r.status_code == 201, r.text
    rule: dict[str, Any] = r.json()
    return rule


async def _counts(pool: asyncpg.Pool, ws: Any) -> tuple[int, int, int]:
    row = await pool.fetchrow(
        """SELECT (SELECT count(*) FROM automation_runs WHERE workspace_id = $1) AS runs,
                  (SELECT count(*) FROM contacts
                   WHERE workspace_id = $1 AND 'welcomed' = ANY(tags)) AS tagged,
                  (SELECT count(*) FROM activities WHERE workspace_id = $1) AS notes""",
        ws,
    )
    return row["runs"], row["tagged"], row["notes"]


async def test_two_workers_run_a_trigger_once_per_event(
    api: httpx.AsyncClient, pool: asyncpg.Pool, database_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "workers.log"
    ws = api.workspace_id  # type: ignore[attr-defined]
    rule = await _tag_rule(api)
    workers = [await _worker(database_url, log) for _ in range(2)]
    try:
        made = [
            (await api.post("/v1/contacts", json={"email": f"w{i}@x.com"})).json()["id"] for i in range(5)
        ]
        deadline = time.monotonic() + 60
        while (await _counts(pool, ws))[0] < 5:
            assert time.monotonic() < deadline, "no runs:\n" + log.read_text()[-3000:]
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # time for a wrong second run to show
    finally:
        await _stop(workers)
    assert await _counts(pool, ws) == (5, 5, 5)
    runs = (await api.get(f"/v1/automations/{rule['id']}/runs", params={"limit": 50})).json()["data"]
    assert sorted(r["object_id"] for r in runs) == sorted(made)
    assert {r["status"] for r in runs} == {"succeeded"}
    updated = await pool.fetchval(
        "SELECT count(*) FROM events WHERE workspace_id = $1 AND type = 'contact.updated'", ws
    )
    assert updated == 5  # one tag write per contact, no repeat


async def test_runs_survive_workers_killed_mid_batch(
    api: httpx.AsyncClient, pool: asyncpg.Pool, database_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "workers.log"
    rng = random.Random(17)
    ws = api.workspace_id  # type: ignore[attr-defined]
    await _tag_rule(api)
    for start in range(0, CONTACTS, 100):  # written before any worker runs: the batches have work
        items = [{"email": f"k{i}@x.com"} for i in range(start, start + 100)]
        r = await api.post("/v1/contacts/batch", json={"items": items})
        assert r.status_code == 200, r.text
    workers = [await _worker(database_url, log) for _ in range(2)]
    kills: list[int] = []
    try:
        deadline = time.monotonic() + 180
        while len(kills) < KILLS:
            assert time.monotonic() < deadline, "no progress:\n" + log.read_text()[-3000:]
            runs = (await _counts(pool, ws))[0]
            assert runs < CONTACTS, "every run was done before every kill"
            if runs > (kills[-1] if kills else 0):
                await asyncio.sleep(rng.uniform(0.0, 0.1))  # inside a batch's transaction, most likely
                await _stop(workers)
                kills.append((await _counts(pool, ws))[0])
                workers = [await _worker(database_url, log) for _ in range(2)]
            await asyncio.sleep(0.02)
        while (await _counts(pool, ws))[0] < CONTACTS:
            assert time.monotonic() < deadline, f"runs did not finish: {await _counts(pool, ws)}"
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)
    finally:
        await _stop(workers)
    assert all(0 < k < CONTACTS for k in kills), kills
    assert await _counts(pool, ws) == (CONTACTS, CONTACTS, CONTACTS)
    per_contact = await pool.fetch(
        """SELECT object_id, count(*) AS n FROM events WHERE workspace_id = $1 AND type = 'contact.updated'
           GROUP BY object_id""",
        ws,
    )
    assert len(per_contact) == CONTACTS and all(r["n"] == 1 for r in per_contact)
    await pool.execute("DELETE FROM workspaces WHERE id = $1", ws)  # keep the shared tables small


async def test_round_robin_is_fair_across_worker_processes(
    api: httpx.AsyncClient, pool: asyncpg.Pool, database_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "workers.log"
    ws = api.workspace_id  # type: ignore[attr-defined]
    members = [
        (await api.post("/v1/members", json={"email": f"rep{i}@x.com", "name": f"Rep {i}"})).json()["id"]
        for i in range(3)
    ]
    team = (await api.post("/v1/teams", json={"name": "Sales", "member_ids": members})).json()
    r = await api.post(
        "/v1/automations",
        json={
            "name": "spread leads",
            "trigger": {"type": "event", "event_type": "contact.created"},
            "actions": [{"type": "assign_owner", "team_id": team["id"], "strategy": "round_robin"}],
        },
    )
    assert r.status_code == 201, r.text
    workers = [await _worker(database_url, log) for _ in range(2)]
    try:
        # leads arrive from concurrent clients while both workers run
        async def lead(i: int) -> None:
            created = await api.post("/v1/contacts", json={"email": f"lead{i}@x.com"})
            assert created.status_code == 201, created.text

        await asyncio.gather(*(lead(i) for i in range(30)))
        deadline = time.monotonic() + 60
        query = "SELECT count(*) FROM contacts WHERE workspace_id = $1 AND owner_id IS NOT NULL"
        while await pool.fetchval(query, ws) < 30:
            assert time.monotonic() < deadline, "leads not assigned:\n" + log.read_text()[-3000:]
            await asyncio.sleep(0.1)
    finally:
        await _stop(workers)
    owners = await pool.fetch(
        "SELECT owner_id, count(*) AS n FROM contacts WHERE workspace_id = $1 GROUP BY owner_id", ws
    )
    assert sorted((str(o["owner_id"]), o["n"]) for o in owners) == sorted((m, 10) for m in members)


async def test_a_schedule_runs_once_per_match_in_workers_whose_clock_is_days_ahead(
    api: httpx.AsyncClient, pool: asyncpg.Pool, database_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "workers.log"
    ws = api.workspace_id  # type: ignore[attr-defined]
    r = await api.post(
        "/v1/automations",
        json={
            "name": "stale leads",
            "trigger": {
                "type": "schedule",
                "object_type": "contact",
                "filter": {"field": "lifecycle_stage", "op": "eq", "value": "lead"},
                "not_updated_for_days": 14,
                "interval_minutes": 1,
            },
            "actions": [{"type": "create_task", "subject": "Revive", "due_in_days": 1}],
        },
    )
    assert r.status_code == 201, r.text
    for i in range(3):
        await api.post("/v1/contacts", json={"email": f"old{i}@x.com", "lifecycle_stage": "lead"})
    await api.post("/v1/contacts", json={"email": "cust@x.com", "lifecycle_stage": "customer"})
    # the injected clock: these workers live 15 days ahead, and each checks every minute of their time
    workers = [await _worker(database_url, log, clock_offset_s=o) for o in (15 * 86_400, 15 * 86_400 + 600)]
    try:
        deadline = time.monotonic() + 60
        query = "SELECT count(*) FROM automation_runs WHERE workspace_id = $1"
        while await pool.fetchval(query, ws) < 3:
            assert time.monotonic() < deadline, "no scheduled runs:\n" + log.read_text()[-3000:]
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.5)  # the second worker, 10 minutes further on, checks again
    finally:
        await _stop(workers)
    assert await pool.fetchval(query, ws) == 3  # once per record per match
    tasks = await pool.fetchval(
        "SELECT count(*) FROM activities WHERE workspace_id = $1 AND subject = 'Revive'", ws
    )
    assert tasks == 3


async def test_segment_triggers_run_once_per_entry_in_two_worker_processes(
    api: httpx.AsyncClient, pool: asyncpg.Pool, database_url: str, tmp_path: Path
) -> None:
    """A static segment's entries (a client's and an automation's) and a dynamic segment's (the workers'
    segments job) each trigger exactly one run, with two workers racing."""
    log = tmp_path / "workers.log"
    ws = api.workspace_id  # type: ignore[attr-defined]
    static = (
        await api.post("/v1/segments", json={"name": "S", "object_type": "contact", "kind": "static"})
    ).json()
    customers = {"field": "lifecycle_stage", "op": "eq", "value": "customer"}
    dynamic = (
        await api.post(
            "/v1/segments",
            json={"name": "D", "object_type": "contact", "kind": "dynamic", "filter": customers},
        )
    ).json()
    for body in (
        {
            "name": "customers join S",
            "trigger": {"type": "segment", "segment_id": dynamic["id"]},
            "actions": [{"type": "add_to_segment", "segment_id": static["id"]}],
        },
        {
            "name": "S members are tagged",
            "trigger": {"type": "segment", "segment_id": static["id"]},
            "actions": [{"type": "add_tags", "tags": ["in-s"]}],
        },
    ):
        r = await api.post("/v1/automations", json=body)
        assert r.status_code == 201, r.text
    leads = [{"email": f"lead{i}@x.com"} for i in range(20)]
    buyers = [{"email": f"buyer{i}@x.com", "lifecycle_stage": "customer"} for i in range(20)]
    r = await api.post("/v1/contacts/batch", json={"items": leads + buyers})
    assert r.status_code == 200, r.text
    lead_ids = [c["id"] for c in (await api.get("/v1/contacts", params={"limit": 100})).json()["data"]
                if c["email"].startswith("lead")]  # fmt: skip
    workers = [await _worker(database_url, log) for _ in range(2)]
    try:
        r = await api.post(f"/v1/segments/{static['id']}/members", json={"ids": lead_ids})
        assert r.status_code == 200, r.text
        deadline = time.monotonic() + 90
        query = "SELECT count(*) FROM contacts WHERE workspace_id = $1 AND 'in-s' = ANY(tags)"
        while await pool.fetchval(query, ws) < 40:
            assert time.monotonic() < deadline, "not all tagged:\n" + log.read_text()[-3000:]
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.5)  # time for a wrong second run to show
    finally:
        await _stop(workers)
    runs = await pool.fetch(
        """SELECT automation_id, object_id, count(*) AS n, min(status) AS status, max(depth) AS depth
           FROM automation_runs WHERE workspace_id = $1 GROUP BY automation_id, object_id""",
        ws,
    )
    # 20 customers entered D (one run each), and 40 contacts entered S (one run each)
    assert len(runs) == 60 and {(r["n"], r["status"]) for r in runs} == {(1, "succeeded")}
    assert sorted(r["depth"] for r in runs).count(2) == 20  # the customers' S entries came from a run
    entries = await pool.fetchval(
        "SELECT count(*) FROM events WHERE workspace_id = $1 AND type = 'segment.member_added'", ws
    )
    assert entries == 60
    tag_writes = await pool.fetchval(
        "SELECT count(*) FROM events WHERE workspace_id = $1 AND type = 'contact.updated'", ws
    )
    assert tag_writes == 40
