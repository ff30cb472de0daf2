"""PostgreSQL stopped and started under load, against a real ``crm-api serve``: while it is down every answer
is a 503 with ``Retry-After`` (no connection dropped, no 500), no write is half done, every acknowledged write
is there, writes retried with their Idempotency-Key land exactly once, and the API recovers by itself.

Bounded: 8 clients on 127.0.0.1, about 3 s of load before the stop, 3 s down, then until 40 successes (at
most 30 s)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from faultkit import Cluster, Connection, Dropped, Serve, new_key

CLIENTS = 8
SETTINGS = {
    "CRM_POOL_SIZE": "4",
    "CRM_STATEMENT_TIMEOUT_MS": "3000",
    "CRM_LOCK_TIMEOUT_MS": "1000",
    "CRM_POOL_TIMEOUT_S": "2",
    "CRM_CONNECT_TIMEOUT_S": "2",
    "CRM_REQUEST_TIMEOUT_S": "8",
}


@dataclass
class Sample:
    op: str
    started: float
    ended: float
    status: int  # 0: the connection was dropped without an answer
    code: str = ""
    retry_after: str | None = None
    problem: bool = False


@pytest.fixture(scope="module")
def serve(crm_url: str, workdir: Path) -> Iterator[Serve]:
    server = Serve(crm_url, workdir / "outage.log", SETTINGS)
    yield server
    server.stop()


class Load:
    def __init__(self, port: int, key: str, run: str) -> None:
        self.port, self.key, self.run = port, key, run
        self.samples: list[Sample] = []
        self.acknowledged: dict[str, str] = {}  # email -> id, every 201
        self.unkeyed_unknown: list[str] = []  # emails of plain writes answered 503: outcome unknown
        self.keyed_pending: dict[str, dict[str, Any]] = {}  # Idempotency-Key -> body, answered 503
        self.stop = asyncio.Event()

    def successes_since(self, t: float) -> int:
        return sum(1 for s in self.samples if s.started >= t and 200 <= s.status < 300)

    async def client(self, n: int) -> None:
        conn = Connection(self.port, self.key)
        i = 0
        while not self.stop.is_set():
            i += 1
            email = f"c{n}-{i}@{self.run}.example"
            body = {"email": email, "first_name": f"c{n}"}
            kind = i % 3
            started = time.monotonic()
            key = uuid.uuid4().hex
            try:
                if kind == 0:
                    r = await conn.request("POST", "/v1/contacts", body)
                elif kind == 1:
                    r = await conn.request("POST", "/v1/contacts", body, {"Idempotency-Key": key})
                else:
                    r = await conn.request("GET", "/v1/contacts?limit=5")
            except Dropped:
                self.samples.append(
                    Sample(("create", "create+key", "list")[kind], started, time.monotonic(), 0)
                )
                await asyncio.sleep(0.05)
                continue
            sample = Sample(("create", "create+key", "list")[kind], started, time.monotonic(), r.status)
            if r.headers.get("content-type") == "application/problem+json":
                sample.problem = True
                sample.code = r.json()["code"]
                sample.retry_after = r.headers.get("retry-after")
            self.samples.append(sample)
            if r.status == 201:
                self.acknowledged[email] = r.json()["id"]
            elif r.status == 503 and kind == 0:
                self.unkeyed_unknown.append(email)
            elif r.status == 503 and kind == 1:
                self.keyed_pending[key] = body
            if r.status == 503:
                await asyncio.sleep(0.05)  # a client in a hurry: much less than Retry-After
        await conn.close()


async def _rows(cluster: Cluster, run: str) -> tuple[dict[str, str], Counter[str]]:
    """Contacts of this run (email -> id) and the created events per contact id."""
    conn = await cluster.connect("crm")
    try:
        contacts = await conn.fetch(
            "SELECT email, id::text FROM contacts WHERE email LIKE $1", f"%@{run}.example"
        )
        events = await conn.fetch(
            "SELECT object_id::text FROM events"
            " WHERE type = 'contact.created' AND object_id = ANY($1::uuid[])",
            [r["id"] for r in contacts],
        )
    finally:
        await conn.close()
    return {r["email"]: r["id"] for r in contacts}, Counter(r["object_id"] for r in events)


async def test_postgresql_stopped_and_started_under_load(
    serve: Serve, crm_url: str, cluster: Cluster
) -> None:
    run = uuid.uuid4().hex[:10]
    load = Load(serve.port, await new_key(crm_url), run)
    clients = [asyncio.create_task(load.client(n)) for n in range(CLIENTS)]
    try:
        began = time.monotonic()
        while load.successes_since(began) < 40 or time.monotonic() - began < 3:
            assert time.monotonic() - began < 60, "no load before the outage"
            await asyncio.sleep(0.1)
        stopping = time.monotonic()
        await asyncio.to_thread(cluster.stop, "fast")
        down = time.monotonic()
        await asyncio.sleep(3)
        starting = time.monotonic()
        await asyncio.to_thread(cluster.start)
        up = time.monotonic()
        while load.successes_since(up) < 40:
            assert time.monotonic() - up < 30, "the API did not recover"
            await asyncio.sleep(0.1)
    finally:
        load.stop.set()
        await asyncio.gather(*clients)

    samples = load.samples
    dropped = [s for s in samples if s.status == 0]
    statuses = Counter(s.status for s in samples)
    during = [s for s in samples if s.started >= down and s.ended <= starting]
    recovered = min(s.ended for s in samples if s.started >= up and 200 <= s.status < 300)
    print(
        f"\noutage: {len(samples)} requests, {len(during)} while down, statuses {dict(statuses)}, "
        f"503 codes {dict(Counter(s.code for s in samples if s.status == 503))}, dropped {len(dropped)}, "
        f"stop took {down - stopping:.2f} s, start took {up - starting:.2f} s, "
        f"first success {recovered - up:.2f} s after the start returned"
    )
    assert not dropped, f"{len(dropped)} requests got no answer (the connection was dropped)"
    assert set(statuses) <= {200, 201, 503}, statuses
    for s in samples:
        if s.status == 503:
            assert s.problem and s.code in ("database_unavailable", "timeout"), s
            assert s.retry_after is not None and int(s.retry_after) > 0, s
    assert len(during) >= CLIENTS, "too few requests while PostgreSQL was down"
    assert all(s.status == 503 for s in during), Counter(s.status for s in during)
    assert recovered - up < 10

    # the writes that were answered 503 with an Idempotency-Key: retried now, each lands once
    conn = Connection(serve.port, load.key)
    for key, body in load.keyed_pending.items():
        r = await conn.request("POST", "/v1/contacts", body, {"Idempotency-Key": key})
        assert r.status == 201, r.body
        load.acknowledged[body["email"]] = r.json()["id"]
    await conn.close()

    stored, created_events = await _rows(cluster, run)
    missing = {e for e, i in load.acknowledged.items() if stored.get(e) != i}
    assert not missing, f"acknowledged writes missing: {sorted(missing)[:5]}"
    half_done = [i for i in stored.values() if created_events[i] != 1]
    assert not half_done, f"contacts without exactly one contact.created event: {half_done[:5]}"
    unexplained = set(stored) - set(load.acknowledged) - set(load.unkeyed_unknown)
    assert not unexplained, f"contacts nobody wrote: {sorted(unexplained)[:5]}"
    landed = sum(1 for e in load.unkeyed_unknown if e in stored)
    print(
        f"writes: {len(load.acknowledged)} acknowledged (all present, {len(load.keyed_pending)} of them "
        f"retried with their key), {len(load.unkeyed_unknown)} plain writes answered 503 of which {landed} "
        f"had landed"
    )
