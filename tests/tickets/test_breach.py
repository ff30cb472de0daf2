"""The SLA breach job: one ``ticket.sla_breached`` per ticket and target, however many runners race."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import asyncpg
import httpx
from prometheus_client import REGISTRY
from ticket_helpers import events_of, make_policy, make_ticket

from crm_api.config import Settings
from crm_api.tickets import breach
from crm_api.webhooks.dispatcher import Dispatcher


def ts(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


async def _drain(pool: asyncpg.Pool, now: dt.datetime, batch: int = 500) -> None:
    while await breach.run_once(pool, batch=batch, now=now):
        pass


async def test_each_target_breaches_once(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    await make_policy(api, is_default=True)
    ticket = await make_ticket(api)
    created = ts(ticket["created_at"])
    await _drain(pool, created + dt.timedelta(minutes=59))
    assert await events_of(pool, api, "ticket.sla_breached") == []
    await _drain(pool, created + dt.timedelta(hours=2))
    await _drain(pool, created + dt.timedelta(hours=3))  # a second run finds nothing new
    events = await events_of(pool, api, "ticket.sla_breached")
    assert [e["data"]["target"] for e in events] == ["first_response"]
    data = events[0]["data"]
    assert data["previous"] == {"first_response_breached_at": None}
    assert ts(data["due_at"]) == ts(ticket["first_response_due_at"])
    got = (await api.get(f"/v1/tickets/{ticket['id']}")).json()
    assert got["first_response_breached_at"] is not None and got["resolution_breached_at"] is None
    assert got["version"] == 2 and data["object"]["version"] == 2
    await _drain(pool, created + dt.timedelta(hours=9))
    await _drain(pool, created + dt.timedelta(hours=10))
    targets = [e["data"]["target"] for e in await events_of(pool, api, "ticket.sla_breached")]
    assert targets == ["first_response", "resolution"]
    # a breach bumps the version, so a client holding the old one gets 412
    stale = await api.patch(f"/v1/tickets/{ticket['id']}", json={"subject": "x"}, headers={"If-Match": '"2"'})
    assert stale.status_code == 412


def _breaches_counted(target: str) -> float:
    return REGISTRY.get_sample_value("crm_sla_breaches_emitted_total", {"target": target}) or 0.0


async def test_breaches_emitted_are_counted_by_target(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    await make_policy(api, is_default=True)
    ticket = await make_ticket(api)
    before = {t: _breaches_counted(t) for t in ("first_response", "resolution")}
    emitted = 0  # a run takes every workspace's overdue tickets, this test's two breaches among them
    while n := await breach.run_once(pool, now=ts(ticket["created_at"]) + dt.timedelta(hours=10)):
        emitted += n
    counted = {t: _breaches_counted(t) - before[t] for t in before}
    assert counted["first_response"] >= 1 and counted["resolution"] >= 1
    assert sum(counted.values()) == emitted


async def test_met_paused_and_solved_tickets_do_not_breach(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    await make_policy(api, is_default=True)
    answered = await make_ticket(api, subject="answered")
    await api.post(f"/v1/tickets/{answered['id']}/comments", json={"body": "hello"})
    await make_ticket(api, subject="waiting", status="pending")
    solved = await make_ticket(api, subject="solved", status="solved")
    archived = await make_ticket(api, subject="archived")
    await api.delete(f"/v1/tickets/{archived['id']}")
    await _drain(pool, ts(solved["created_at"]) + dt.timedelta(days=3))
    events = await events_of(pool, api, "ticket.sla_breached")
    seen = {(e["data"]["object"]["subject"], e["data"]["target"]) for e in events}
    # only the pending ticket's first response is late: its resolution clock stands still
    assert seen == {("answered", "resolution"), ("waiting", "first_response")}


async def test_two_runners_racing_emit_each_breach_once(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    await make_policy(api, is_default=True)
    tickets = await asyncio.gather(*(make_ticket(api, subject=f"t{n}") for n in range(24)))
    late = max(ts(t["created_at"]) for t in tickets) + dt.timedelta(days=1)
    # small batches, so the runners take many turns and meet on the same rows
    await asyncio.gather(*(_drain(pool, late, batch=5) for _ in range(3)))
    events = await events_of(pool, api, "ticket.sla_breached")
    pairs = [(e["object_id"], e["data"]["target"]) for e in events]
    assert len(pairs) == len(set(pairs)) == 2 * len(tickets)
    rows = await pool.fetch(
        "SELECT version FROM tickets WHERE workspace_id = $1",
        api.workspace_id,  # type: ignore[attr-defined]
    )
    assert {r["version"] for r in rows} == {2}  # both targets in one write per ticket


async def test_breach_fans_out_to_webhooks_in_the_same_write(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    endpoint = await api.post(
        "/v1/webhooks", json={"url": "http://127.0.0.1:9/hook", "event_types": ["ticket.sla_breached"]}
    )
    assert endpoint.status_code == 201, endpoint.text
    try:
        await make_policy(api, is_default=True)
        ticket = await make_ticket(api)
        await _drain(pool, ts(ticket["created_at"]) + dt.timedelta(hours=2))
        rows = await pool.fetch(
            "SELECT d.event_type, e.data->>'target' AS target FROM webhook_deliveries AS d "
            "JOIN events AS e ON e.workspace_id = d.workspace_id AND e.id = d.event_id "
            "WHERE d.workspace_id = $1 AND d.endpoint_id = $2",
            api.workspace_id,  # type: ignore[attr-defined]
            endpoint.json()["id"],
        )
        assert [(r["event_type"], r["target"]) for r in rows] == [("ticket.sla_breached", "first_response")]
    finally:
        await pool.execute(
            "UPDATE webhook_endpoints SET status = 'disabled' WHERE id = $1", endpoint.json()["id"]
        )


async def test_the_dispatcher_process_runs_the_job(
    api: httpx.AsyncClient, pool: asyncpg.Pool, settings: Settings
) -> None:
    await make_policy(api, is_default=True)
    ticket = await make_ticket(api)
    await pool.execute(
        "UPDATE tickets SET first_response_due_at = now() - interval '1 minute' WHERE workspace_id = $1",
        api.workspace_id,  # type: ignore[attr-defined]
    )
    fast = settings.model_copy(update={"sla_check_seconds": 0.05, "dispatcher_poll_seconds": 0.1})
    stop = asyncio.Event()
    task = asyncio.create_task(Dispatcher(pool, fast).run(stop))
    found: list[dict[str, Any]] = []
    try:
        for _ in range(200):
            found = await events_of(pool, api, "ticket.sla_breached")
            if found:
                break
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    assert [(str(e["object_id"]), e["data"]["target"]) for e in found] == [(ticket["id"], "first_response")]


async def test_the_claim_walks_the_unbreached_indexes_in_a_generic_plan(pool: asyncpg.Pool) -> None:
    """The statuses are written into the claim as constants: a prepared statement's generic plan knows no
    parameter values, and only a predicate it can read in the text lets it use the partial indexes, so the
    scan reads overdue tickets and nothing else (sent as parameters, both branches would lose them)."""
    claim = breach._CLAIM.compiled
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        try:
            # seq scans off: on the test database's few rows a full scan would be as cheap as any index;
            # the full due-time indexes out of the way (rolled back below): on so few rows a planner may
            # prefer them (PostgreSQL 18 does), and the question is whether the partial ones are usable
            await conn.execute("SET LOCAL enable_seqscan = off")
            await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
            await conn.execute("DROP INDEX ix_tickets_first_response_due, ix_tickets_resolution_due")
            await conn.execute(f"PREPARE breach_claim AS {claim.text}")
            try:
                rows = await conn.fetch("EXPLAIN EXECUTE breach_claim(now(), 500)")
            finally:
                await conn.execute("DEALLOCATE breach_claim")
        finally:
            await tx.rollback()
    plan = "\n".join(r[0] for r in rows)
    assert "ix_tickets_first_response_unbreached" in plan, plan
    assert "ix_tickets_resolution_unbreached" in plan, plan
    assert "LockRows" in plan, plan
