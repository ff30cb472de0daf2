"""Dynamic segments kept current by real ``crm-api worker`` processes, for writes made through a live
``crm-api serve``: exact membership through creates, updates, a relation change, archive and restore and
time passing, with a worker SIGKILLed mid-stream; every entry and exit reaches a real webhook receiver,
signed (verified with ``standardwebhooks``), once per event id."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from standardwebhooks import Webhook

sys.path.insert(0, str(Path(__file__).parent.parent / "webhooks"))
from live_server import _new_key, serve
from receiver import Receiver, wait_for

CONTACTS = 120


async def _worker(database_url: str) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_")}
    env.update(
        CRM_DATABASE_URL=database_url,
        CRM_SECRET_KEY=os.environ["CRM_SECRET_KEY"],
        CRM_WEBHOOK_ALLOW_CIDRS="127.0.0.0/8",
        CRM_DISPATCHER_POLL_SECONDS="0.2",
        CRM_SEGMENT_POLL_SECONDS="0.1",
        CRM_SEGMENT_RELATIVE_SECONDS="1",
    )
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "crm_api", "worker", env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip


async def _members(api: httpx.AsyncClient, sid: str) -> set[str]:
    found: set[str] = set()
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 200, **({"cursor": cursor} if cursor else {})}
        page = (await api.get(f"/v1/segments/{sid}/members", params=params)).json()
        found.update(m["object_id"] for m in page["data"])
        if not page["has_more"]:
            return found
        cursor = page["next_cursor"]


async def test_workers_keep_segments_exact_and_push_every_change(
    database_url: str, pool: asyncpg.Pool
) -> None:
    receiver = await Receiver().start()
    key = await _new_key(database_url)
    workers = [await _worker(database_url) for _ in range(2)]
    try:
        with serve(database_url, key=key, CRM_WEBHOOK_ALLOW_CIDRS="127.0.0.0/8") as server:
            async with httpx.AsyncClient(
                base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30
            ) as api:
                await _run(api, pool, receiver, workers, database_url)
    finally:
        for w in workers:
            if w.returncode is None:
                w.send_signal(signal.SIGKILL)
                await w.wait()
        await pool.execute(
            "UPDATE webhook_endpoints SET status = 'disabled' WHERE url LIKE $1", f"{receiver.url('')}%"
        )
        await receiver.close()


async def _run(
    api: httpx.AsyncClient,
    pool: asyncpg.Pool,
    receiver: Receiver,
    workers: list[asyncio.subprocess.Process],
    database_url: str,
) -> None:
    hook = await api.post("/v1/webhooks", json={"url": receiver.url("/seg"), "event_types": ["segment.*"]})
    assert hook.status_code == 201, hook.text
    secret = hook.json()["secret"]
    acme = (await api.post("/v1/companies", json={"name": "Acme", "industry": "tools"})).json()
    leads = {"field": "lifecycle_stage", "op": "eq", "value": "lead"}
    body = {"name": "Leads", "object_type": "contact", "kind": "dynamic", "filter": leads}
    seg = (await api.post("/v1/segments", json=body)).json()
    retail = {"field": "company.industry", "op": "eq", "value": "retail"}
    body = {"name": "Retail", "object_type": "contact", "kind": "dynamic", "filter": retail}
    by_company = (await api.post("/v1/segments", json=body)).json()
    recent = {"field": "created_at", "op": "gt", "value": "-30d"}
    body = {"name": "Recent", "object_type": "contact", "kind": "dynamic", "filter": recent}
    fresh = (await api.post("/v1/segments", json=body)).json()

    expected: set[str] = set()
    ids: list[str] = []
    for i in range(CONTACTS):
        stage = "lead" if i % 3 else "customer"
        r = await api.post(
            "/v1/contacts", json={"first_name": f"c{i}", "lifecycle_stage": stage, "company_id": acme["id"]}
        )
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
        if stage == "lead":
            expected.add(ids[-1])
        if i == CONTACTS // 2:  # a worker dies mid-stream; another takes its place
            workers[0].send_signal(signal.SIGKILL)
            await workers[0].wait()
            workers[0] = await _worker(database_url)
    for oid in ids[:10]:  # updates move contacts in and out
        stage = "customer" if oid in expected else "lead"
        assert (await api.patch(f"/v1/contacts/{oid}", json={"lifecycle_stage": stage})).status_code == 200
        expected.symmetric_difference_update({oid})
    archived = next(iter(sorted(expected)))
    assert (await api.delete(f"/v1/contacts/{archived}")).status_code == 200
    expected.discard(archived)

    async def exact(sid: str, want: set[str]) -> bool:
        return await _members(api, sid) == want

    await wait_for(lambda: exact(seg["id"], expected), within=60, interval=0.3)
    await wait_for(lambda: exact(fresh["id"], set(ids) - {archived}), within=60, interval=0.3)
    assert await _members(api, by_company["id"]) == set()
    assert (await api.post(f"/v1/contacts/{archived}/restore")).status_code == 200
    expected.add(archived)
    await wait_for(lambda: exact(seg["id"], expected), within=60, interval=0.3)
    # a relation change: the company's contacts enter
    assert (await api.patch(f"/v1/companies/{acme['id']}", json={"industry": "retail"})).status_code == 200
    await wait_for(lambda: exact(by_company["id"], set(ids)), within=60, interval=0.3)
    # time passing: two contacts age past 30 days with no write, and leave on the next relative pass
    aged = ids[-2:]
    await pool.execute(
        "UPDATE contacts SET created_at = now() - interval '31 days' WHERE id = ANY($1::uuid[])",
        [uuid.UUID(i) for i in aged],
    )
    await wait_for(lambda: exact(fresh["id"], set(ids) - set(aged)), within=60, interval=0.3)
    segment = (await api.get(f"/v1/segments/{seg['id']}")).json()
    assert segment["member_count"] == len(expected) and segment["status"] == "ready"

    # every change of the three segments reached the receiver, signed, once per event id
    history: list[tuple[str, str, str, str]] = []
    for s in (seg, by_company, fresh):
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 200, **({"cursor": cursor} if cursor else {})}
            page = (await api.get(f"/v1/segments/{s['id']}/history", params=params)).json()
            history.extend((h["id"], s["id"], h["object_id"], h["reason"]) for h in page["data"])
            if not page["has_more"]:
                break
            cursor = page["next_cursor"]

    def delivered() -> dict[str, Any]:
        seen = {}
        for request in receiver.requests:
            payload = Webhook(secret).verify(request.body, request.headers)
            if payload["type"].startswith("segment.member_"):  # segment.created rides along too
                seen[request.headers["webhook-id"]] = payload
        return seen

    await wait_for(lambda: len(delivered()) >= len(history), within=60, interval=0.3)
    got = {
        event_id: (p["data"]["segment_id"], p["data"]["object_id"], p["data"]["reason"])
        for event_id, p in delivered().items()
    }
    assert got == {h[0]: h[1:] for h in history}
    reasons = {h[3] for h in history}
    assert {"matched", "unmatched", "archived"} <= reasons
