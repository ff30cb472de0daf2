"""``per_object`` ordering without waiting: an object's events follow one another as soon as each is settled,
never after the poll (every dispatcher here polls once an hour, or so rarely that a poll would show), in
event order, each sent once, with an attempt count that says what was sent."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any

import asyncpg
import httpx
from receiver import Receiver, Reply, Request, StartDispatcher, wait_for

NEVER = 3600.0  # a poll interval no test lives to see


async def _ordered_endpoint(api: httpx.AsyncClient, url: str) -> str:
    body = {"url": url, "event_types": ["contact.*"], "ordering": "per_object"}
    r = await api.post("/v1/webhooks", json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def _events_of_one_contact(api: httpx.AsyncClient, updates: int, pause: float = 0.0) -> str:
    r = await api.post("/v1/contacts", json={"first_name": "v"})
    assert r.status_code == 201, r.text
    contact = str(r.json()["id"])
    for n in range(updates):
        r = await api.patch(f"/v1/contacts/{contact}", json={"first_name": f"v{n}"})
        assert r.status_code == 200, r.text
        await asyncio.sleep(pause)
    return contact


def _in_order_once(requests: list[Request], events: int) -> None:
    sequences = [r.json()["sequence"] for r in requests]
    assert len(sequences) == events and len(set(sequences)) == events, Counter(sequences)
    assert sequences == sorted(sequences)


async def _attempts(pool: asyncpg.Pool, endpoint: str) -> list[int]:
    rows = await pool.fetch(
        "SELECT attempts FROM webhook_deliveries WHERE endpoint_id = $1 ORDER BY event_sequence",
        uuid.UUID(endpoint),
    )
    return [r["attempts"] for r in rows]


async def test_an_objects_queued_events_follow_each_other_without_the_poll(
    api: httpx.AsyncClient, pool: asyncpg.Pool, receiver: Receiver, start_dispatcher: StartDispatcher
) -> None:
    endpoint = await _ordered_endpoint(api, receiver.url())
    await _events_of_one_contact(api, 40)
    await start_dispatcher(dispatcher_poll_seconds=NEVER)
    await wait_for(lambda: len(receiver.accepted()) >= 41, within=30)
    _in_order_once(receiver.at(), 41)
    await wait_for(lambda: _pending_count(pool, endpoint, 0), within=10)
    assert await _attempts(pool, endpoint) == [1] * 41


async def _pending_count(pool: asyncpg.Pool, endpoint: str, n: int) -> bool:
    count = await pool.fetchval(
        "SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $1 AND status = 'pending'",
        uuid.UUID(endpoint),
    )
    return bool(count == n)


async def test_events_arriving_while_the_one_before_is_in_flight_follow_without_the_poll(
    api: httpx.AsyncClient, pool: asyncpg.Pool, receiver: Receiver, start_dispatcher: StartDispatcher
) -> None:
    # each answer takes 0.2 s and the events come 0.05 s apart: each next one is queued (and its claim
    # finds the object busy) while the one before is in flight, and must go out once that one is written
    receiver.on("/hook", lambda _r, _i: Reply(200, delay=0.2))
    endpoint = await _ordered_endpoint(api, receiver.url())
    await start_dispatcher(dispatcher_poll_seconds=NEVER)
    await _events_of_one_contact(api, 8, pause=0.05)
    await wait_for(lambda: len(receiver.accepted()) >= 9, within=30)
    _in_order_once(receiver.at(), 9)
    await wait_for(lambda: _pending_count(pool, endpoint, 0), within=10)


async def test_a_failure_holds_the_events_behind_it_and_gives_back_their_leases(
    api: httpx.AsyncClient, pool: asyncpg.Pool, receiver: Receiver, start_dispatcher: StartDispatcher
) -> None:
    # the 4th request fails once: the events behind it, already leased to follow at once, must wait for
    # its retry, and their leases go back uncounted (each ends with exactly the attempts it was sent)
    receiver.on("/hook", lambda _r, i: Reply(500) if i == 3 else Reply(200))
    endpoint = await _ordered_endpoint(api, receiver.url())
    await _events_of_one_contact(api, 9)
    await start_dispatcher(scale=0.001, dispatcher_poll_seconds=0.2)
    await wait_for(lambda: len(receiver.accepted()) >= 10, within=30)
    sent = receiver.at()
    assert [r.status for r in sent].count(500) == 1 and sent[3].status == 500
    _in_order_once(receiver.accepted(), 10)
    assert sent[3].json()["id"] == sent[4].json()["id"]  # the failed one again, before anything after it
    await wait_for(lambda: _pending_count(pool, endpoint, 0), within=10)
    assert await _attempts(pool, endpoint) == [1, 1, 1, 2, 1, 1, 1, 1, 1, 1]


async def test_a_run_stops_before_its_leases_could_run_out_under_two_dispatchers(
    api: httpx.AsyncClient, pool: asyncpg.Pool, receiver: Receiver, start_dispatcher: StartDispatcher
) -> None:
    """Leases of 4 s, answers of 0.3 s, 20 events: the deliveries leased behind the first cannot all go out
    within half a lease, so the run stops and hands them back; the other dispatcher, polling often, would
    take any whose lease ran out while still queued in the first one's run and send it a second time."""
    receiver.on("/hook", lambda _r, _i: Reply(200, delay=0.3))
    endpoint = await _ordered_endpoint(api, receiver.url())
    await _events_of_one_contact(api, 19)
    fast: dict[str, Any] = {"dispatcher_lease_seconds": 4, "dispatcher_poll_seconds": 0.1}
    await start_dispatcher(**fast)
    await start_dispatcher(**fast)
    await wait_for(lambda: len(receiver.accepted()) >= 20, within=40)
    await wait_for(lambda: _pending_count(pool, endpoint, 0), within=10)
    _in_order_once(receiver.at(), 20)
    assert await _attempts(pool, endpoint) == [1] * 20
