"""Scores kept current by real ``crm-api worker`` processes, for writes made through a live ``crm-api
serve``: exact scores through creates, updates, activities and a rule change, with a worker SIGKILLed
mid-stream; every change reaches a real webhook receiver as ``contact.score_changed``, signed (verified
with ``standardwebhooks``), once per event id."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from standardwebhooks import Webhook

sys.path.insert(0, str(Path(__file__).parent.parent / "webhooks"))
from live_server import _new_key, serve
from receiver import Receiver, wait_for

CONTACTS = 60


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


async def test_workers_keep_scores_exact_and_push_every_change(database_url: str, pool: asyncpg.Pool) -> None:
    receiver = await Receiver().start()
    key = await _new_key(database_url)
    workers = [await _worker(database_url) for _ in range(2)]
    try:
        with serve(database_url, key=key, CRM_WEBHOOK_ALLOW_CIDRS="127.0.0.0/8") as server:
            async with httpx.AsyncClient(
                base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30
            ) as api:
                await _run(api, receiver, workers, database_url)
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
    api: httpx.AsyncClient, receiver: Receiver, workers: list[asyncio.subprocess.Process], database_url: str
) -> None:
    hook = await api.post(
        "/v1/webhooks", json={"url": receiver.url("/score"), "event_types": ["contact.score_changed"]}
    )
    assert hook.status_code == 201, hook.text
    secret = hook.json()["secret"]
    lead = {"field": "lifecycle_stage", "op": "eq", "value": "lead"}
    rule = (
        await api.post("/v1/scoring-rules", json={"name": "lead", "points": 10, "condition": lead})
    ).json()
    calls = {"type": "call", "within_days": 30, "points": 2, "max_points": 4}
    assert (await api.post("/v1/scoring-rules", json={"name": "calls", "activity": calls})).status_code == 201

    expected: dict[str, int] = {}
    for i in range(CONTACTS):
        stage = "lead" if i % 3 else "customer"
        r = await api.post("/v1/contacts", json={"first_name": f"c{i}", "lifecycle_stage": stage})
        assert r.status_code == 201, r.text
        expected[r.json()["id"]] = 10 if stage == "lead" else 0
        if i == CONTACTS // 2:  # a worker dies mid-stream; another takes its place
            workers[0].send_signal(signal.SIGKILL)
            await workers[0].wait()
            workers[0] = await _worker(database_url)
    ids = list(expected)
    for oid in ids[:6]:  # updates move scores both ways
        stage = "customer" if expected[oid] else "lead"
        assert (await api.patch(f"/v1/contacts/{oid}", json={"lifecycle_stage": stage})).status_code == 200
        expected[oid] = 10 - expected[oid]
    for _ in range(3):  # three calls with the first ten contacts: 2 points each, capped at 4
        r = await api.post("/v1/activities", json={"type": "call", "contact_ids": ids[:10]})
        assert r.status_code == 201, r.text
    for oid in ids[:10]:
        expected[oid] += 4

    async def exact() -> bool:
        for oid, want in expected.items():
            got = (await api.get(f"/v1/contacts/{oid}/score")).json()
            if got["score"] != want or sum(c["points"] for c in got["contributions"]) != want:
                return False
        return True

    await wait_for(exact, within=60, interval=0.5)
    # a rule change rescores the workspace in the background, and the rule says when it is done
    assert (await api.patch(f"/v1/scoring-rules/{rule['id']}", json={"points": 7})).status_code == 200
    for oid in ids:
        if (await api.get(f"/v1/contacts/{oid}")).json()["lifecycle_stage"] == "lead":
            expected[oid] -= 3

    async def ready() -> bool:
        return bool((await api.get(f"/v1/scoring-rules/{rule['id']}")).json()["status"] == "ready")

    await wait_for(ready, within=60, interval=0.3)
    assert await exact()

    def delivered() -> dict[str, Any]:
        seen = {}
        for request in receiver.requests:
            payload = Webhook(secret).verify(request.body, request.headers)
            seen[request.headers["webhook-id"]] = payload
        return seen

    events: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"type": "contact.score_changed", "limit": 200}
        if cursor:
            params["cursor"] = cursor
        page = (await api.get("/v1/events", params=params)).json()
        events.extend(page["data"])
        if not page["has_more"]:
            break
        cursor = page["next_cursor"]
    await wait_for(lambda: len(delivered()) >= len(events), within=60, interval=0.3)
    got = delivered()
    assert set(got) == {e["id"] for e in events}
    # replayed per contact in order, the events lead from 0 to the final score without a gap
    last: dict[str, int] = {}
    for p in sorted(got.values(), key=lambda p: int(p["sequence"])):
        oid = p["data"]["object"]["id"]
        assert p["data"]["previous"]["score"] == last.get(oid, 0), p
        last[oid] = p["data"]["score"]
    assert {oid: s for oid, s in last.items() if s} == {oid: s for oid, s in expected.items() if s}
