"""No loss under fire: dispatcher processes holding deliveries in flight are SIGKILLed while 2,000 writes go
on, the receiver answers slowly and fails a quarter of requests (any request, as often as chance has it);
every event still reaches every endpoint, each repeat carries the webhook-id of the first (so a receiver
can drop it), and a ``per_object`` endpoint still sees each object's events first in their order.

The figures (kills, failures, duplicates, attempts) are printed (``pytest -s``)."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import time
import uuid
from collections import Counter, defaultdict
from typing import Any

import asyncpg
import httpx
import psutil
from receiver import Receiver, Reply, Request, wait_for
from standardwebhooks import Webhook

WRITES = 2000
KILLS = 20
WORKERS = 3
FAIL = 0.25  # the chance that the receiver answers 500, for every request


async def _worker(database_url: str) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_")}
    env.update(
        CRM_DATABASE_URL=database_url,
        CRM_SECRET_KEY=os.environ["CRM_SECRET_KEY"],  # the run's: it opens the secrets the app sealed
        CRM_WEBHOOK_ALLOW_CIDRS="127.0.0.0/8",
        CRM_WEBHOOK_RETRY_SCALE="0.0002",  # 1 ms, 60 ms, 0.36 s, 1.4 s, 3.6 s, 7.2 s, ...
        CRM_DISPATCHER_LEASE_SECONDS="2",  # a killed worker's claims return after 2 s
        CRM_DISPATCHER_POLL_SECONDS="0.2",
    )
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "crm_api", "worker", env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip


def _in_flight(workers: list[asyncio.subprocess.Process], receiver: Receiver) -> dict[int, list[Request]]:
    """Per worker pid, the requests it has open at the receiver that will not be answered for 0.1 s more:
    deliveries it holds a claim on, mid-request (matched by the connection's local port)."""
    soon = time.monotonic() + 0.1
    open_requests = {r.peer_port: r for r in receiver.requests if r.status is None and r.answer_at > soon}
    held: dict[int, list[Request]] = {}
    for w in workers:
        if w.returncode is not None:
            continue
        try:
            connections = psutil.Process(w.pid).net_connections(kind="tcp")
        except psutil.NoSuchProcess:
            continue
        ports = {c.laddr.port for c in connections if c.raddr and c.raddr.port == receiver.port}
        requests = [open_requests[p] for p in ports if p in open_requests]
        if requests:
            held[w.pid] = requests
    return held


async def test_no_event_is_lost_when_workers_holding_deliveries_die_and_the_receiver_fails(
    api: httpx.AsyncClient, pool: asyncpg.Pool, receiver: Receiver, database_url: str
) -> None:
    rng = random.Random(20261124)

    def flaky(_request: Request, _: int) -> Reply:
        # slow enough that kills land mid-request; a quarter fail, however often the same event was tried
        return Reply(500 if rng.random() < FAIL else 200, delay=rng.uniform(0.05, 0.25))

    secrets, endpoints = {}, {}
    for path, ordering in (("/a", "none"), ("/b", "per_object")):
        receiver.on(path, flaky)
        body = {"url": receiver.url(path), "event_types": ["*"], "ordering": ordering}
        r = await api.post("/v1/webhooks", json=body)
        assert r.status_code == 201
        secrets[path], endpoints[path] = r.json()["secret"], uuid.UUID(r.json()["id"])

    workers = [await _worker(database_url) for _ in range(WORKERS)]
    written = 0
    kills: list[tuple[float, list[Request]]] = []  # when, and what the victim had in flight

    async def write() -> None:
        nonlocal written
        ids: list[str] = []
        for i in range(WRITES):
            if i % 3 == 2:
                r = await api.patch(f"/v1/contacts/{rng.choice(ids)}", json={"title": f"t{i}"})
            else:
                r = await api.post("/v1/contacts", json={"first_name": f"c{i}"})
                ids.append(r.json()["id"])
            assert r.status_code in (200, 201), r.text
            written += 1

    async def kill() -> None:
        while len(kills) < KILLS:
            await wait_for(lambda: written >= (len(kills) + 1) * WRITES // (KILLS + 1), within=120)
            held = await wait_for(lambda: _in_flight(workers, receiver), within=30, interval=0.01)
            pid = rng.choice(sorted(held))  # any of them: always the same one would hit the same deliveries
            requests = held[pid]
            victim = next(w for w in workers if w.pid == pid)
            victim.send_signal(signal.SIGKILL)
            kills.append((time.monotonic(), requests))
            await victim.wait()
            workers.remove(victim)
            workers.append(await _worker(database_url))

    began = time.monotonic()
    try:
        await asyncio.gather(write(), kill())
        wrote = time.monotonic() - began
        ws = api.workspace_id  # type: ignore[attr-defined]
        events = {str(r["id"]) for r in await pool.fetch("SELECT id FROM events WHERE workspace_id = $1", ws)}
        assert len(events) == WRITES

        async def settled() -> bool:
            n = await pool.fetchval(
                "SELECT count(*) FROM webhook_deliveries WHERE workspace_id = $1 AND status = 'pending'", ws
            )
            return bool(n == 0)

        await wait_for(settled, within=150, interval=0.5)
        # A kill counts as a try (a claim counts one, so a worker dying on a delivery again and again
        # cannot retry it for ever): a delivery held by several killed workers, and failed besides, can
        # use up its ladder and end failed, to be requeued with recover. Nothing is lost that way either.
        exhausted: Counter[str] = Counter()
        recovered: set[tuple[uuid.UUID, str]] = set()
        for _ in range(10):
            failed = await pool.fetch(
                "SELECT endpoint_id, event_id::text AS event, attempts FROM webhook_deliveries"
                " WHERE workspace_id = $1 AND status = 'failed'",
                ws,
            )
            if not failed:
                break
            assert all(r["attempts"] >= 10 for r in failed)  # failed only once every try was used
            recovered.update((r["endpoint_id"], r["event"]) for r in failed)
            for path, endpoint in endpoints.items():
                n = sum(r["endpoint_id"] == endpoint for r in failed)
                exhausted[path] += n
                if n:
                    since = {"since": "2000-01-01T00:00:00Z"}
                    r = await api.post(f"/v1/webhooks/{endpoint}/recover", json=since)
                    assert r.status_code == 202 and r.json()["requeued"] == n, r.text
            await wait_for(settled, within=60, interval=0.5)
        else:
            raise AssertionError("deliveries kept failing after recovery")
    finally:
        for w in workers:
            if w.returncode is None:
                w.send_signal(signal.SIGKILL)
                await w.wait()
    took = time.monotonic() - began

    # every kill hit a worker mid-request, and each delivery it cut was tried again by another (after the
    # kill, once the lease ran out), unless another had already delivered it (a worker stalled past its
    # lease before it sent: the delivery was taken and delivered meanwhile, and this attempt was a repeat)
    assert len(kills) == KILLS
    tried_again = 0
    for at, requests in kills:
        for killed in requests:
            others = [
                r
                for r in receiver.at(killed.path)
                if r.headers["webhook-id"] == killed.headers["webhook-id"] and r.peer_port != killed.peer_port
            ]
            if any(r.received_at > at for r in others):
                tried_again += 1
            else:
                assert any(r.status == 200 for r in others), (
                    f"{killed.path} {killed.headers['webhook-id']} was cut by a kill and never delivered"
                )

    # nothing lost: each event reached each endpoint
    attempts = await pool.fetchval("SELECT sum(attempts) FROM webhook_deliveries WHERE workspace_id = $1", ws)
    duplicates = 0
    for path in endpoints:
        accepted: dict[str, list[Request]] = defaultdict(list)
        for request in receiver.accepted(path):
            accepted[request.headers["webhook-id"]].append(request)
        missing = events - set(accepted)
        assert not missing, f"{len(missing)} events never reached {path}"
        hook = Webhook(secrets[path])
        for repeats in accepted.values():
            for request in repeats:
                hook.verify(request.body, request.headers)
            # a repeat is the same event under the same webhook-id: a receiver keeping ids drops it
            assert len({r.body for r in repeats}) == 1
            duplicates += len(repeats) - 1

    # per_object: the first time each event of an object was accepted, in the object's event order (but for
    # a delivery that used up its tries: failed, it let the next ones go, and recover sent it again later)
    firsts: dict[str, dict[str, Any]] = {}
    for request in receiver.accepted("/b"):
        if (endpoints["/b"], request.headers["webhook-id"]) not in recovered:
            firsts.setdefault(request.headers["webhook-id"], request.json())
    by_object: dict[str, list[int]] = defaultdict(list)
    for payload in firsts.values():
        by_object[payload["data"]["object"]["id"]].append(payload["sequence"])
    disordered = {o: seqs for o, seqs in by_object.items() if seqs != sorted(seqs)}
    assert not disordered, disordered

    statuses = Counter(r.status for r in receiver.requests)
    print(
        f"\nchaos: {WRITES} writes, {len(events) * 2} deliveries, {len(kills)} kills (each mid-request, "
        f"{sum(len(r) for _, r in kills)} requests cut, {tried_again} of them tried again after the kill), "
        f"{len(receiver.requests)} requests "
        f"({statuses[200]} answered 200, {statuses[500]} answered 500), {attempts} attempts recorded, "
        f"{duplicates} duplicates accepted (same webhook-id), deliveries whose kills and failures used up "
        f"their tries and were recovered: {dict(exhausted)}; "
        f"writes and kills {wrote:.0f} s, all settled at {took:.0f} s"
    )
    assert statuses[500] > 0


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
