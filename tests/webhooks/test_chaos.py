"""No loss: dispatcher processes are SIGKILLed at random while writes go on and the receiver fails about a
third of requests; every event still reaches every endpoint (duplicates allowed, told apart by webhook-id)."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import uuid
from collections import Counter

import asyncpg
import httpx
from receiver import Receiver, Reply, Request, wait_for
from standardwebhooks import Webhook


async def _worker(database_url: str) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_")}
    env.update(
        CRM_DATABASE_URL=database_url,
        CRM_SECRET_KEY=os.environ["CRM_SECRET_KEY"],  # the run's: it opens the secrets the app sealed
        CRM_WEBHOOK_ALLOW_CIDRS="127.0.0.0/8",
        CRM_WEBHOOK_RETRY_SCALE="0.001",  # 5 ms, 300 ms, 1.8 s, ...
        CRM_DISPATCHER_LEASE_SECONDS="2",  # a killed worker's claims return after 2 s
        CRM_DISPATCHER_POLL_SECONDS="0.2",
    )
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "crm_api", "worker", env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip


async def test_no_event_is_lost_when_workers_die_and_the_receiver_fails(
    api: httpx.AsyncClient, pool: asyncpg.Pool, receiver: Receiver, database_url: str
) -> None:
    rng = random.Random(20261124)
    failures: Counter[str] = Counter()

    def flaky(request: Request, _: int) -> Reply:
        # a third of requests fail; one event fails at most three times, so the test stays bounded in time
        key = request.path + request.headers["webhook-id"]
        if failures[key] < 3 and rng.random() < 1 / 3:
            failures[key] += 1
            return Reply(500)
        return Reply(200)

    secrets = {}
    for path in ("/a", "/b"):
        receiver.on(path, flaky)
        r = await api.post("/v1/webhooks", json={"url": receiver.url(path), "event_types": ["*"]})
        assert r.status_code == 201
        secrets[path] = r.json()["secret"]

    workers = [await _worker(database_url), await _worker(database_url)]
    kills = 0
    try:
        ids: list[str] = []
        for i in range(150):
            if i % 3 == 2 and ids:
                r = await api.patch(f"/v1/contacts/{rng.choice(ids)}", json={"title": f"t{i}"})
            else:
                r = await api.post("/v1/contacts", json={"first_name": f"c{i}"})
                ids.append(r.json()["id"])
            assert r.status_code in (200, 201)
            if i % 15 == 14:  # every so often, kill a worker mid-flight and start another
                victim = workers.pop(rng.randrange(len(workers)))
                victim.send_signal(signal.SIGKILL)
                await victim.wait()
                kills += 1
                workers.append(await _worker(database_url))
            await asyncio.sleep(rng.uniform(0, 0.02))

        ws = api.workspace_id  # type: ignore[attr-defined]
        events = {str(r["id"]) for r in await pool.fetch("SELECT id FROM events WHERE workspace_id = $1", ws)}
        assert len(events) == 150

        def missing() -> dict[str, int]:
            return {
                p: len(events - {q.headers["webhook-id"] for q in receiver.accepted(p)}) for p in ("/a", "/b")
            }

        await wait_for(lambda: not any(missing().values()), within=90)
    finally:
        for w in workers:
            if w.returncode is None:
                w.send_signal(signal.SIGKILL)
                await w.wait()

    assert kills == 10
    assert sum(failures.values()) > 0  # the receiver did fail requests
    for path, secret in secrets.items():
        hook = Webhook(secret)
        for request in receiver.accepted(path):
            hook.verify(request.body, request.headers)  # every accepted delivery is signed correctly


async def test_sigterm_lets_attempts_in_flight_finish_and_record(
    api: httpx.AsyncClient, pool: asyncpg.Pool, receiver: Receiver, database_url: str
) -> None:
    # The receiver holds each request for a second, so SIGTERM lands while all three are in flight.
    receiver.on("/slow", lambda request, _: Reply(200, delay=1.0))
    r = await api.post("/v1/webhooks", json={"url": receiver.url("/slow"), "event_types": ["contact.*"]})
    endpoint = r.json()["id"]
    for i in range(3):
        assert (await api.post("/v1/contacts", json={"first_name": f"g{i}"})).status_code == 201
    worker = await _worker(database_url)
    try:
        await wait_for(lambda: len(receiver.at("/slow")) == 3, within=30)
        assert all(q.status is None for q in receiver.at("/slow"))  # still being answered
        worker.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(worker.wait(), 30) == 0
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()
    rows = await pool.fetch(
        "SELECT status, attempts FROM webhook_deliveries WHERE workspace_id = $1 AND endpoint_id = $2",
        api.workspace_id,  # type: ignore[attr-defined]
        uuid.UUID(endpoint),
    )
    # each attempt finished and its outcome was written before the process left: nothing to redo
    assert sorted((r["status"], r["attempts"]) for r in rows) == [("succeeded", 1)] * 3
