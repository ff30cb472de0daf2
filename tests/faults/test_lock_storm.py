"""A lock storm, against a real ``crm-api serve``: while another session holds ``contacts`` locked, requests
on contacts give up at the lock timeout with a 503 ``timeout`` (their writes rolled back), and an unrelated
route keeps answering, where before one held lock exhausted the pool for everyone.

Bounded: the lock is held 6 s; 8 clients storm contacts, 2 read companies, all on 127.0.0.1."""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from faultkit import Cluster, Connection, Dropped, Serve, new_key

HOLD = 6.0
LOCK_TIMEOUT = 1.0
POOL_TIMEOUT = 3.0
SETTINGS = {
    "CRM_POOL_SIZE": "4",
    "CRM_LOCK_TIMEOUT_MS": str(int(LOCK_TIMEOUT * 1000)),
    "CRM_STATEMENT_TIMEOUT_MS": "5000",
    "CRM_POOL_TIMEOUT_S": str(POOL_TIMEOUT),
    "CRM_REQUEST_TIMEOUT_S": "10",
}


@dataclass
class Answer:
    route: str
    started: float
    elapsed: float
    status: int  # 0: dropped
    code: str = ""
    retry_after: str | None = None
    email: str = ""


@pytest.fixture(scope="module")
def serve(crm_url: str, workdir: Path) -> Iterator[Serve]:
    server = Serve(crm_url, workdir / "lock-storm.log", SETTINGS)
    yield server
    server.stop()


async def _client(port: int, key: str, route: str, stop: asyncio.Event, out: list[Answer], run: str) -> None:
    conn = Connection(port, key)
    i = 0
    while not stop.is_set():
        i += 1
        email = ""
        started = time.monotonic()
        try:
            if route == "companies":
                r = await conn.request("GET", "/v1/companies?limit=5")
            elif i % 2:
                email = f"s{id(conn)}-{i}@{run}.example"
                r = await conn.request("POST", "/v1/contacts", {"email": email})
            else:
                r = await conn.request("GET", "/v1/contacts?limit=5")
        except Dropped:
            out.append(Answer(route, started, time.monotonic() - started, 0))
            continue
        answer = Answer(route, started, r.elapsed, r.status, email=email)
        if r.headers.get("content-type") == "application/problem+json":
            answer.code = r.json()["code"]
            answer.retry_after = r.headers.get("retry-after")
        out.append(answer)
    await conn.close()


async def test_a_held_lock_times_out_its_waiters_and_other_routes_keep_serving(
    serve: Serve, crm_url: str, cluster: Cluster
) -> None:
    run = uuid.uuid4().hex[:10]
    key = await new_key(crm_url)
    holder = await cluster.connect("crm")
    answers: list[Answer] = []
    stop = asyncio.Event()
    try:
        tx = holder.transaction()
        await tx.start()
        await holder.execute("LOCK TABLE contacts IN ACCESS EXCLUSIVE MODE")
        locked = time.monotonic()
        routes = ["contacts"] * 8 + ["companies"] * 2
        clients = [asyncio.create_task(_client(serve.port, key, r, stop, answers, run)) for r in routes]
        await asyncio.sleep(HOLD)
        released = time.monotonic()
        await tx.rollback()
        await asyncio.sleep(2.0)
        stop.set()
        await asyncio.gather(*clients)
    finally:
        await holder.close()

    held = [a for a in answers if a.started >= locked and a.started + a.elapsed <= released]
    storm = [a for a in held if a.route == "contacts"]
    others = [a for a in held if a.route == "companies"]
    after = [a for a in answers if a.started >= released + LOCK_TIMEOUT and a.route == "contacts"]
    served = [a.elapsed for a in others if a.status == 200]
    outcomes = dict(Counter((a.status, a.code) for a in storm))
    print(
        f"\nlock storm: {len(storm)} contacts requests while locked {outcomes}, longest "
        f"{max(a.elapsed for a in storm):.2f} s; companies {dict(Counter(a.status for a in others))}, "
        f"median {statistics.median(served):.3f} s, longest {max(a.elapsed for a in others):.2f} s; "
        f"after release {dict(Counter(a.status for a in after))}"
    )
    assert not [a for a in answers if a.status == 0], "a connection was dropped"
    assert storm, "no request reached the locked table"
    for a in storm:
        assert a.status == 503 and a.code == "timeout", a
        assert a.retry_after is not None and int(a.retry_after) > 0
        assert a.elapsed < LOCK_TIMEOUT + POOL_TIMEOUT + 2  # nothing waits for the lock itself
    assert {a.status for a in others} <= {200, 503}
    assert len(served) >= 3 and len(served) >= 0.8 * len(others), Counter(a.status for a in others)
    assert after and all(a.status in (200, 201) for a in after), Counter(a.status for a in after)

    # the writes that timed out were rolled back
    refused = {a.email for a in storm if a.email}
    conn = await cluster.connect("crm")
    try:
        stored = {
            r["email"]
            for r in await conn.fetch("SELECT email FROM contacts WHERE email = ANY($1)", list(refused))
        }
    finally:
        await conn.close()
    assert not stored, f"writes answered 503 were stored: {sorted(stored)[:5]}"


@pytest.fixture(scope="module")
def small_pool(crm_url: str, workdir: Path) -> Iterator[Serve]:
    settings = {"CRM_POOL_SIZE": "2", "CRM_LOCK_TIMEOUT_MS": "4000", "CRM_POOL_TIMEOUT_S": "1"}
    server = Serve(crm_url, workdir / "small-pool.log", settings)
    yield server
    server.stop()


async def test_a_request_that_finds_no_free_connection_is_a_503_after_the_pool_timeout(
    small_pool: Serve, crm_url: str, cluster: Cluster
) -> None:
    key = await new_key(crm_url)
    holder = await cluster.connect("crm")
    try:
        tx = holder.transaction()
        await tx.start()
        await holder.execute("LOCK TABLE contacts IN ACCESS EXCLUSIVE MODE")
        waiters = [Connection(small_pool.port, key) for _ in range(2)]  # both pooled connections wait
        stuck = [asyncio.create_task(w.request("GET", "/v1/contacts")) for w in waiters]
        await asyncio.sleep(0.5)
        bystander = Connection(small_pool.port, key)
        r = await bystander.request("GET", "/v1/companies")
        await tx.rollback()
        done = await asyncio.gather(*stuck)
    finally:
        await holder.close()
    assert r.status == 503 and r.json()["code"] == "timeout", r.body
    assert int(r.headers["retry-after"]) > 0
    assert 0.9 < r.elapsed < 3, r.elapsed  # the pool timeout (1 s), not the lock's holder (4 s)
    assert [d.status for d in done] == [200, 200]  # the waiters got the lock once it was released
    assert (await bystander.request("GET", "/v1/companies")).status == 200
    for c in [*waiters, bystander]:
        await c.close()
