"""Every error is an ordinary response on a connection that stays usable, against a real ``crm-api serve``:
a bug (500), a full disk and other database faults (503), a statement past its timeout (503), a request
past its deadline (503, its write cancelled), a body that stops arriving (408). Each is followed by a
request on the same socket.

Faults are raised inside PostgreSQL by a trigger on ``companies`` that acts on chosen names only."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from faultkit import Cluster, Connection, Response, Serve, new_key

FAULTS = """
CREATE OR REPLACE FUNCTION fault_suite() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.name = 'fault:bug' THEN
    RAISE EXCEPTION 'fault suite: a bug';
  ELSIF NEW.name LIKE 'fault:sqlstate:%' THEN
    RAISE EXCEPTION 'fault suite: %', NEW.name USING ERRCODE = split_part(NEW.name, ':', 3);
  ELSIF NEW.name LIKE 'fault:slow%' THEN
    PERFORM pg_sleep(3);
  END IF;
  RETURN NEW;
END $$;
CREATE OR REPLACE TRIGGER fault_suite BEFORE INSERT ON companies FOR EACH ROW EXECUTE FUNCTION fault_suite();
"""


@pytest.fixture(scope="module")
def serve(cluster: Cluster, crm_url: str, workdir: Path) -> Iterator[Serve]:
    server = Serve(crm_url, workdir / "keep-alive.log", {"CRM_STATEMENT_TIMEOUT_MS": "1000"})
    asyncio.run(cluster.execute("crm", FAULTS))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def hasty(crm_url: str, workdir: Path, serve: Serve) -> Iterator[Serve]:
    """A server whose requests have one second (and statements ten)."""
    settings = {"CRM_STATEMENT_TIMEOUT_MS": "10000", "CRM_POOL_SIZE": "2"}
    server = Serve(crm_url, workdir / "deadline.log", settings, "--request-timeout", "1")
    yield server
    server.stop()


@pytest.fixture
async def conn(serve: Serve, crm_url: str) -> AsyncIterator[Connection]:
    c = Connection(serve.port, await new_key(crm_url))
    yield c
    await c.close()


def _problem(r: Response, status: int, code: str) -> dict[str, object]:
    assert r.status == status, r.body
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers.get("connection", "keep-alive") != "close"
    body: dict[str, object] = r.json()
    assert body["code"] == code, body
    assert body["request_id"] == r.headers["x-request-id"]
    return body


async def _still_serves(c: Connection) -> None:
    r = await c.request("GET", "/v1/companies?limit=1")
    assert r.status == 200, r.body
    assert c.opened == 1, "the server closed the connection after the error"


async def _companies_named(cluster: Cluster, name: str) -> int:
    conn = await cluster.connect("crm")
    try:
        return int(await conn.fetchval("SELECT count(*) FROM companies WHERE name = $1", name))
    finally:
        await conn.close()


async def test_a_bug_is_a_500_on_a_connection_that_keeps_serving(conn: Connection) -> None:
    _problem(await conn.request("POST", "/v1/companies", {"name": "fault:bug"}), 500, "internal_error")
    await _still_serves(conn)
    _problem(await conn.request("POST", "/v1/companies", {"name": "fault:bug"}), 500, "internal_error")
    await _still_serves(conn)


async def test_client_errors_keep_the_connection(conn: Connection) -> None:
    _problem(await conn.request("GET", "/v1/nowhere"), 404, "not_found")
    _problem(await conn.request("DELETE", "/v1/companies"), 405, "method_not_allowed")
    _problem(await conn.request("POST", "/v1/companies", {"name": 5}), 422, "validation_error")
    unauthorized = await conn.request("GET", "/v1/companies", headers={"Authorization": "Bearer nope"})
    _problem(unauthorized, 401, "unauthorized")
    await _still_serves(conn)


SQLSTATES = [
    ("53100", "database_unavailable"),  # disk full
    ("53300", "database_unavailable"),  # too many connections
    ("53200", "database_unavailable"),  # out of memory
    ("57P01", "database_unavailable"),  # admin shutdown
    ("57P03", "database_unavailable"),  # cannot connect now (starting up, shutting down)
    ("58030", "database_unavailable"),  # I/O error
    ("40P01", "timeout"),  # deadlock detected
    ("55P03", "timeout"),  # lock not available
]


@pytest.mark.parametrize(("sqlstate", "code"), SQLSTATES, ids=[s for s, _ in SQLSTATES])
async def test_a_database_that_cannot_serve_is_a_503_with_retry_after(
    conn: Connection, sqlstate: str, code: str
) -> None:
    r = await conn.request("POST", "/v1/companies", {"name": f"fault:sqlstate:{sqlstate}"})
    _problem(r, 503, code)
    assert int(r.headers["retry-after"]) > 0
    await _still_serves(conn)


async def test_a_statement_past_its_timeout_is_a_503_and_writes_nothing(
    conn: Connection, cluster: Cluster
) -> None:
    name = f"fault:slow:{uuid.uuid4().hex[:8]}"
    r = await conn.request("POST", "/v1/companies", {"name": name})
    _problem(r, 503, "timeout")
    assert int(r.headers["retry-after"]) > 0
    assert r.elapsed < 2.5  # the statement timeout (1 s) cut the 3 s trigger
    await _still_serves(conn)
    await asyncio.sleep(2.5)  # the trigger's sleep would have ended by now
    assert await _companies_named(cluster, name) == 0


@pytest.mark.parametrize("idempotent", [False, True], ids=["one statement", "in a transaction"])
async def test_a_request_past_its_deadline_is_a_503_and_its_write_is_cancelled(
    hasty: Serve, crm_url: str, cluster: Cluster, idempotent: bool
) -> None:
    conn = Connection(hasty.port, await new_key(crm_url))
    name = f"fault:slow:{uuid.uuid4().hex[:8]}"
    headers = {"Idempotency-Key": uuid.uuid4().hex} if idempotent else {}
    r = await conn.request("POST", "/v1/companies", {"name": name}, headers)
    _problem(r, 503, "timeout")
    assert r.elapsed < 2.5
    # the pool (2 connections) is whole: more requests than connections, each answered, on this connection
    for _ in range(4):
        await _still_serves(conn)
    await asyncio.sleep(2.5)
    assert await _companies_named(cluster, name) == 0
    await conn.close()


async def test_a_database_that_stops_answering_is_a_503_within_the_deadline(
    hasty: Serve, crm_url: str, cluster: Cluster
) -> None:
    """PostgreSQL frozen (SIGSTOP) while a write runs: the request is cancelled at its deadline (1 s), the
    cancel waits on a server that cannot answer until the grace (5 s) has passed, and the answer comes. A
    create with an Idempotency-Key is one statement, its record inside it (``idempotency``): a cancel that
    reaches the server too late lets both land together, and the retry with the key then replays it."""
    api_key = await new_key(crm_url)
    conn = Connection(hasty.port, api_key)
    await _still_serves(conn)  # the key is now cached: the write is the first to need the database
    key = {"Idempotency-Key": uuid.uuid4().hex}
    write = asyncio.create_task(conn.request("POST", "/v1/companies", {"name": "fault:slow:frozen"}, key))
    await asyncio.sleep(0.4)  # the insert sleeps in its trigger
    frozen = cluster.processes()
    for p in frozen:
        p.suspend()
    try:
        r = await asyncio.wait_for(write, 20)
    finally:
        for p in frozen:
            p.resume()
    _problem(r, 503, "timeout")
    print(f"\nfrozen database: a write in a transaction answered 503 after {r.elapsed:.2f} s")
    assert 1 + 5 - 0.5 < r.elapsed < 1 + 5 + 3  # the deadline, the grace, the sweeps
    await _still_serves(conn)
    await conn.close()
    await asyncio.sleep(3.5)  # the trigger's sleep has ended
    landed = await _companies_named(cluster, "fault:slow:frozen")
    assert landed in (0, 1)
    if landed:  # the write and its record landed together: the retry with the key gets the first answer
        conn = Connection(hasty.port, api_key)
        again = await conn.request("POST", "/v1/companies", {"name": "fault:slow:frozen"}, key)
        await conn.close()
        assert again.status == 201 and again.headers.get("idempotent-replayed") == "true", again
        assert await _companies_named(cluster, "fault:slow:frozen") == 1  # and it did not land twice


async def test_pooled_connections_the_server_ended_are_replaced_unseen(
    conn: Connection, serve: Serve, cluster: Cluster
) -> None:
    """Backends terminated while their connections sit in the pool (as a restart or an operator does):
    every later request is answered as if nothing happened."""
    for _ in range(5):
        await _still_serves(conn)
    admin = await cluster.connect("crm")
    try:
        ended = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = 'crm-api' AND datname = 'crm'"
        )
    finally:
        await admin.close()
    assert ended >= 1
    await asyncio.sleep(0.5)  # the server's goodbye reaches the pooled connections
    for _ in range(20):
        await _still_serves(conn)


async def test_a_body_that_stops_arriving_is_a_408(hasty: Serve) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", hasty.port)
    head = b"POST /v1/companies HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    writer.write(head + b"Content-Length: 100\r\nAuthorization: Bearer nope\r\n\r\n" + b'{"name": ')
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 5)  # read() returns at EOF: the server closed
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b"request_timeout" in answer
    writer.close()
