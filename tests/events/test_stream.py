"""``GET /v1/events/stream`` against real ``crm-api serve`` processes: events arrive as they commit, a
reconnect with ``Last-Event-ID`` resumes without loss or repeat (across a restart too), filters, heartbeats,
the cap per key. Every read is bounded: a frame that does not come within ``READ_S`` fails the test."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest
from live_server import Server, serve

from crm_api.auth import Context, Principal
from crm_api.contacts.spec import CONTACTS
from crm_api.db import asyncpg_dsn
from crm_api.resources import service

READ_S = 15.0
FAST = {"CRM_STREAM_HEARTBEAT_S": "1", "CRM_STREAMS_PER_KEY": "2"}


@dataclass
class Frame:
    id: int | None
    event: str | None
    data: dict[str, Any] | None
    comment: str | None


class Parser:
    """SSE lines into frames (a comment is a frame of its own)."""

    def __init__(self) -> None:
        self.fields: dict[str, str] = {}
        self.comment: str | None = None

    def line(self, line: str) -> Frame | None:
        if line == "":
            if not self.fields and self.comment is None:
                return None
            fields, comment = self.fields, self.comment
            self.fields, self.comment = {}, None
            data = json.loads(fields["data"]) if "data" in fields else None
            ident = int(fields["id"]) if "id" in fields else None
            return Frame(ident, fields.get("event"), data, comment)
        if line.startswith(":"):
            self.comment = line[1:].strip()
        else:
            name, _, value = line.partition(":")
            self.fields[name] = value.removeprefix(" ")
        return None


class Reader:
    """Frames of an open stream, one at a time."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.lines = response.iter_lines()

    def next(self) -> Frame:
        parser = Parser()
        for line in self.lines:
            frame = parser.line(line)
            if frame is not None:
                return frame
        raise AssertionError("the stream ended")

    def events(self, count: int) -> list[Frame]:
        """The next ``count`` events, skipping comments."""
        found: list[Frame] = []
        while len(found) < count:
            frame = self.next()
            if frame.event is not None:
                found.append(frame)
        return found


@contextmanager
def stream(server: Server, key: str | None = None, **kwargs: Any) -> Iterator[Reader]:
    headers = {"Authorization": f"Bearer {key or server.key}", **kwargs.pop("headers", {})}
    timeout = httpx.Timeout(READ_S)
    with (
        httpx.Client(base_url=server.url, timeout=timeout) as client,
        client.stream("GET", "/v1/events/stream", headers=headers, **kwargs) as response,
    ):
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        reader = Reader(response)
        first = reader.next()  # sent once the stream listens: what commits from now on is sent
        assert first.comment == "connected"
        yield reader


def _api(server: Server) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.key}"}, timeout=30)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(database_url: str) -> Iterator[Server]:
    with serve(database_url, settings=FAST) as running:
        yield running


def test_a_change_arrives_as_an_event_and_a_reconnect_resumes_after_the_last_id(server: Server) -> None:
    with _api(server) as api, stream(server) as live:
        contact = api.post("/v1/contacts", json={"email": "live@example.com"}).json()
        (created,) = live.events(1)
        assert created.event == "contact.created" and created.data is not None
        assert created.data["object_id"] == contact["id"] and created.data["sequence"] == created.id
        assert created.data["data"]["object"]["email"] == "live@example.com"
        # the same event as the feed lists it
        listed = api.get("/v1/events", params={"object_id": contact["id"]}).json()["data"]
        assert listed == [created.data]
    with _api(server) as api:  # disconnected: these happen while nobody listens
        api.patch(f"/v1/contacts/{contact['id']}", json={"first_name": "Ann"})
        api.delete(f"/v1/contacts/{contact['id']}")
        with stream(server, headers={"Last-Event-ID": str(created.id)}) as live:
            api.post(f"/v1/contacts/{contact['id']}/restore")
            resumed = live.events(3)
    assert [f.event for f in resumed] == ["contact.updated", "contact.archived", "contact.restored"]
    ids = [f.id for f in resumed]
    assert ids == sorted(ids) and created.id is not None and ids[0] is not None and ids[0] > created.id


def test_filters_by_type_and_object(server: Server) -> None:
    with _api(server) as api:
        one = api.post("/v1/contacts", json={"email": "one@example.com"}).json()
        two = api.post("/v1/contacts", json={"email": "two@example.com"}).json()
        with (
            stream(server, params={"type": "company.*"}) as companies,
            stream(server, params={"object_id": two["id"]}) as only_two,
        ):
            api.patch(f"/v1/contacts/{one['id']}", json={"first_name": "One"})
            api.post("/v1/companies", json={"name": "Acme"})
            api.patch(f"/v1/contacts/{two['id']}", json={"first_name": "Two"})
            (company,) = companies.events(1)
            (mine,) = only_two.events(1)
    assert company.event == "company.created"
    assert mine.event == "contact.updated" and mine.data is not None and mine.data["object_id"] == two["id"]


def test_an_idle_stream_gets_heartbeats(server: Server) -> None:
    with stream(server) as live:
        beats = [live.next() for _ in range(2)]
    assert [b.comment for b in beats] == ["keep-alive", "keep-alive"]
    assert all(b.event is None for b in beats)


def test_a_key_holds_a_bounded_number_of_streams_and_bad_input_is_a_problem(server: Server) -> None:
    with stream(server), stream(server), httpx.Client(base_url=server.url, timeout=READ_S) as client:
        auth = {"Authorization": f"Bearer {server.key}"}
        third = client.get("/v1/events/stream", headers=auth)
        assert third.status_code == 429 and third.json()["code"] == "rate_limited"
        assert "retry-after" in third.headers
    with httpx.Client(base_url=server.url, timeout=READ_S) as client:
        bad = client.get("/v1/events/stream", headers={**auth, "Last-Event-ID": "abc"})
        assert bad.status_code == 422 and bad.json()["errors"][0]["path"] == "/headers/Last-Event-ID"
        bad = client.get("/v1/events/stream", headers=auth, params={"type": "no good"})
        assert bad.status_code == 422 and bad.json()["errors"][0]["path"] == "/type"
        # the streams above were given back when they closed: a new one opens
        with stream(server), stream(server):
            pass


def test_a_key_without_events_read_is_refused(server: Server) -> None:
    with _api(server) as api:
        made = api.post("/v1/api-keys", json={"name": "no events", "scopes": ["contacts:read"]})
        key = made.json()["key"]
    with httpx.Client(base_url=server.url, timeout=READ_S) as client:
        r = client.get("/v1/events/stream", headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 403 and "events:read" in r.json()["detail"]


def test_a_reconnect_after_a_restart_resumes_without_loss(database_url: str) -> None:
    port = _free_port()
    with ExitStack() as open_stream:
        with serve(database_url, port=port, settings=FAST) as first, _api(first) as api:
            contact = api.post("/v1/contacts", json={"email": "restart@example.com"}).json()
            live = open_stream.enter_context(
                stream(first, params={"object_id": contact["id"]}, headers={"Last-Event-ID": "0"})
            )
            (created,) = live.events(1)
            key = first.key
        # the server stopped with the stream open: it ended the stream cleanly (a killed server would
        # have broken it mid-chunk), or the server could not have stopped
        with pytest.raises(AssertionError, match="the stream ended"):
            live.next()
    with serve(database_url, port=port, key=key, settings=FAST) as second, _api(second) as api:
        for name in ("A", "B", "C"):
            api.patch(f"/v1/contacts/{contact['id']}", json={"first_name": name})
        headers = {"Last-Event-ID": str(created.id)}
        with stream(second, params={"object_id": contact["id"]}, headers=headers) as resumed:
            after = resumed.events(3)
    assert [f.data["data"]["object"]["first_name"] for f in after if f.data] == ["A", "B", "C"]
    assert created.id not in [f.id for f in after]


class AsyncReader:
    """``Reader`` for an ``httpx.AsyncClient`` stream, each frame awaited ``READ_S`` at most."""

    def __init__(self, response: httpx.Response) -> None:
        self.lines = response.aiter_lines()

    async def next(self) -> Frame:
        parser = Parser()
        while True:
            line = await asyncio.wait_for(anext(self.lines), READ_S)
            frame = parser.line(line)
            if frame is not None:
                return frame

    async def events(self, count: int) -> list[Frame]:
        found: list[Frame] = []
        while len(found) < count:
            frame = await self.next()
            if frame.event is not None:
                found.append(frame)
        return found


async def test_an_event_committing_late_is_streamed_in_its_place(server: Server, pool: asyncpg.Pool) -> None:
    """The feed's settled-transactions guard, on the stream: a writer holds an event (its sequence drawn)
    in an open transaction while a later write commits. The stream sends neither until the first commits,
    then both in sequence order: it never passes the late one, so a reconnect cannot lose it."""
    auth = {"Authorization": f"Bearer {server.key}"}
    async with httpx.AsyncClient(base_url=server.url, headers=auth, timeout=READ_S) as api:
        first = (await api.post("/v1/contacts", json={"email": "before@late.example"})).json()
        (event,) = (await api.get("/v1/events", params={"object_id": first["id"]})).json()["data"]
        ws = await pool.fetchval("SELECT workspace_id FROM contacts WHERE id = $1", uuid.UUID(first["id"]))
        ctx = Context(Principal(ws, uuid.uuid4(), frozenset({"*"})), None)
        params, resume = {"type": "contact.created"}, {"Last-Event-ID": str(event["sequence"])}
        async with api.stream("GET", "/v1/events/stream", params=params, headers=resume) as response:
            live = AsyncReader(response)
            assert (await live.next()).comment == "connected"
            async with pool.acquire() as conn:
                tx = conn.transaction()
                await tx.start()
                try:
                    late = await service.create(conn, CONTACTS, ctx, {"email": "late@late.example"})
                    made = await api.post("/v1/contacts", json={"email": "later@late.example"})
                    assert made.status_code == 201
                    # committed, and notified: still held back while the late writer is open
                    held = [await live.next() for _ in range(2)]
                    assert [(f.event, f.comment) for f in held] == [(None, "keep-alive")] * 2
                finally:
                    await tx.commit()
            got = await live.events(2)
    assert [f.data and f.data["object_id"] for f in got] == [str(late["id"]), made.json()["id"]]
    assert got[0].id is not None and got[1].id is not None and event["sequence"] < got[0].id < got[1].id


async def _listeners(database_url: str) -> int:
    """Connections to the test database whose last statement was a LISTEN: the hubs' listeners."""
    dsn, kwargs = asyncpg_dsn(database_url)
    conn = await asyncpg.connect(dsn, **kwargs)
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND query ILIKE 'LISTEN %'"
        )
        return count
    finally:
        await conn.close()


def test_streams_share_one_listener_and_an_idle_one_is_woken_by_notify_alone(
    server: Server, database_url: str
) -> None:
    """No stream polls: once its first looks are over (15.5 s after it opens), an idle stream sends only
    heartbeats, and a write reaches it because the commit's NOTIFY wakes it, through the one LISTEN
    connection its process holds however many streams are open."""
    with _api(server) as api, stream(server, params={"type": "contact.created"}) as live:
        alone = asyncio.run(_listeners(database_url))
        with stream(server):
            assert alone >= 1 and asyncio.run(_listeners(database_url)) == alone
        beats = [live.next() for _ in range(17)]  # a heartbeat a second (FAST): past the looks
        assert all(b.event is None and b.comment == "keep-alive" for b in beats)
        made = api.post("/v1/contacts", json={"email": "woken@example.com"})
        assert made.status_code == 201
        (created,) = live.events(1)
    assert created.data is not None and created.data["object_id"] == made.json()["id"]
