"""The dispatcher: claims due deliveries, sends them signed, records each attempt, schedules retries.

- Claims with ``FOR UPDATE SKIP LOCKED`` and a lease, so any number of dispatchers run side by side and a
  killed one's work returns when its lease lapses (at-least-once; ``webhook-id`` lets receivers dedupe).
- Wakes on ``LISTEN crm_webhook_deliveries`` (a trigger notifies at commit), polls as a fallback.
- Caps requests in flight per endpoint, and leaves endpoints at their cap out of the claim, so a slow
  endpoint never holds the slots a healthy one needs.
- ``per_object`` endpoints get an object's next event only after the earlier one is settled.
- Outcomes are written in batches: one statement records many attempts, their deliveries and endpoints.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import email.utils
import logging
import random
import time
import typing
import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    Integer,
    Interval,
    Table,
    Text,
    Update,
    and_,
    any_,
    case,
    cast,
    column,
    false,
    func,
    null,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID, insert
from sqlalchemy.sql.dml import ReturningUpdate
from sqlalchemy.sql.selectable import Alias

from .. import jsonutil, sql
from ..config import Settings
from ..db import EnginePool
from ..models.webhooks import DISABLED_FAILING, DISABLED_GONE
from ..tickets import breach
from . import netguard, signing
from .transport import connecting_to, make_transport

log = logging.getLogger("crm_api.dispatcher")

CHANNEL = "crm_webhook_deliveries"
# Seconds to wait after the 1st, 2nd, ... failed attempt; after the last, the delivery is failed (~3 days).
LADDER = (5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)
RESPONSE_KEEP = 4096
# connect 5 s; each read or write 15 s (and asyncio.timeout caps the whole attempt at 15 s)
_TIMEOUTS = {"timeout": {"connect": 5.0, "read": 15.0, "write": 15.0, "pool": 15.0}}

_DELIVERIES = sql.table("webhook_deliveries")
_ENDPOINTS = sql.table("webhook_endpoints")
_ATTEMPTS = sql.table("webhook_attempts")
_EVENTS = sql.table("events")

# Constants written into the statements' text rather than sent as parameters: the partial indexes the claim
# walks hold ``status = 'pending'`` rows, and a cached generic plan can use them only when the query's own
# text implies that predicate.
_PENDING = sql.const("pending")
_ENABLED = sql.const("enabled")
_DISABLED = sql.const("disabled")
_SUCCEEDED = sql.const("succeeded")
_INFINITY = sql.const("infinity", DateTime(timezone=True))
# an endpoint failing this long is disabled
_FAILING_TOO_LONG = cast(sql.const("5 days"), Interval)
# ``n * interval '1 second'``: make_interval(secs => n) as Core can say it (no named-argument calls)
_SECOND = cast(sql.const("1 second"), Interval)


def _target(table: Table, name: str) -> Alias:
    """``UPDATE table AS name``: ``Table.alias`` is typed as a named FROM clause, which ``update`` refuses."""
    return typing.cast(Alias, table.alias(name))


def _claim() -> ReturningUpdate[Any]:
    """Walks the queues, not the whole backlog: a loose index scan over ix_webhook_deliveries_queue finds each
    endpoint with pending deliveries (one probe per endpoint), then takes each one's oldest due deliveries up
    to the room this dispatcher has for it. A big backlog for an endpoint at its cap is never scanned, so it
    costs a healthy endpoint nothing; the oldest due deliveries across endpoints go first. Deliveries of a
    disabled endpoint are parked at next_attempt_at = 'infinity' and cost one probe.

    Parameters: ``limit`` (deliveries to claim), ``busy_ids``/``busy_counts`` (requests in flight per
    endpoint), ``per_endpoint`` (the cap), ``lease_seconds``."""
    d = _DELIVERIES.alias("d")
    ep = _ENDPOINTS.alias("ep")
    # the first endpoint with pending deliveries, then each next one: one index probe per endpoint
    first = (
        select(d.c.workspace_id, d.c.endpoint_id)
        .where(d.c.status == _PENDING)
        .order_by(d.c.endpoint_id)
        .limit(sql.const(1))
    )
    queues = first.cte("queues", recursive=True)
    q = queues.alias("q")
    nxt = (
        select(d.c.workspace_id, d.c.endpoint_id)
        .where(d.c.status == _PENDING, d.c.endpoint_id > q.c.endpoint_id)
        .order_by(d.c.endpoint_id)
        .limit(sql.const(1))
        .lateral("nxt")
    )
    q = queues.union_all(select(nxt.c.workspace_id, nxt.c.endpoint_id).select_from(q.join(nxt, true())))

    busy = (
        func.unnest(sql.param("busy_ids", ARRAY(UUID)), sql.param("busy_counts", ARRAY(Integer)))
        .table_valued(column("endpoint_id"), column("n", Integer))
        .render_derived(name="busy")
    )
    free = sql.param("per_endpoint", Integer) - func.coalesce(busy.c.n, sql.const(0))
    room = (
        select(q.c.workspace_id, q.c.endpoint_id, ep.c.ordering, free.label("n"))
        .select_from(
            q.join(ep, and_(ep.c.workspace_id == q.c.workspace_id, ep.c.id == q.c.endpoint_id)).outerjoin(
                busy, busy.c.endpoint_id == q.c.endpoint_id
            )
        )
        .where(ep.c.status == _ENABLED, free > sql.const(0))
        .cte("room")
    )

    p = _DELIVERIES.alias("p")
    earlier_pending = (
        select(sql.const(1))
        .where(
            p.c.endpoint_id == d.c.endpoint_id,
            p.c.object_id == d.c.object_id,
            p.c.status == _PENDING,
            p.c.event_sequence < d.c.event_sequence,
        )
        .exists()
    )
    per_room = (
        select(d.c.workspace_id, d.c.id, d.c.next_attempt_at)
        .where(
            d.c.endpoint_id == room.c.endpoint_id,
            d.c.status == _PENDING,
            d.c.next_attempt_at <= func.now(),
            or_(d.c.leased_until.is_(None), d.c.leased_until < func.now()),
            or_(room.c.ordering == sql.const("none"), ~earlier_pending),
        )
        .order_by(d.c.next_attempt_at)
        .limit(room.c.n)
        .with_for_update(of=d, skip_locked=True)
        .lateral("d")
    )
    due = (
        select(per_room.c.workspace_id, per_room.c.id)
        .select_from(room.join(per_room, true()))
        .order_by(per_room.c.next_attempt_at)
        .limit(sql.param("limit", Integer))
        .cte("due")
    )

    w = _target(_DELIVERIES, "w")
    e = _EVENTS.alias("e")
    return (
        update(w)
        .values(
            leased_until=func.now() + sql.param("lease_seconds", Float) * _SECOND,
            attempts=w.c.attempts + sql.const(1),
        )
        .where(
            w.c.workspace_id == due.c.workspace_id,
            w.c.id == due.c.id,
            e.c.workspace_id == w.c.workspace_id,
            e.c.id == w.c.event_id,
            ep.c.workspace_id == w.c.workspace_id,
            ep.c.id == w.c.endpoint_id,
        )
        .returning(
            w.c.workspace_id,
            w.c.id,
            w.c.endpoint_id,
            w.c.attempts,
            e.c.id.label("event_id"),
            e.c.type,
            e.c.created_at,
            e.c.sequence,
            cast(e.c.data, Text).label("data"),  # spliced into the body as stored (see body_of)
            ep.c.url,
            ep.c.secret,
            ep.c.previous_secret,
            ep.c.previous_secret_expires_at,
        )
    )


_CLAIM = sql.Query(_claim)


def _record() -> ReturningUpdate[Any]:
    """Records a batch of outcomes in one statement: the attempts, their deliveries, and the endpoints whose
    health changed (failing since, disabled after 5 days failing or on 410 Gone). Returns those endpoints.

    Parameter: ``outcomes``, a JSON array of ``Outcome`` rows."""
    given = (
        func.jsonb_to_recordset(sql.param("outcomes", JSONB))
        .table_valued(
            column("workspace_id", UUID),
            column("id", UUID),
            column("endpoint_id", UUID),
            column("attempted_at", DateTime(timezone=True)),
            column("status_code", Integer),
            column("latency_ms", Integer),
            column("error", Text),
            column("response_body", Text),
            column("outcome", Text),
            column("next_attempt_at", DateTime(timezone=True)),
        )
        .render_derived(name="r", with_types=True)
    )
    r = select(given).cte("r")  # parsed once, read by the three statements below

    a = _ATTEMPTS
    attempts = (
        insert(a)
        .from_select(
            [
                "workspace_id",
                "id",
                "delivery_id",
                "attempted_at",
                "status_code",
                "latency_ms",
                "error",
                "response_body",
            ],
            select(
                r.c.workspace_id,
                func.gen_random_uuid(),
                r.c.id,
                r.c.attempted_at,
                r.c.status_code,
                r.c.latency_ms,
                r.c.error,
                r.c.response_body,
            ),
        )
        .cte("a")
    )

    w = _target(_DELIVERIES, "w")
    deliveries = (
        update(w)
        .values(
            status=case((r.c.outcome == sql.const("retry"), _PENDING), else_=r.c.outcome),
            next_attempt_at=func.coalesce(r.c.next_attempt_at, w.c.next_attempt_at),
            leased_until=null(),
            last_status_code=r.c.status_code,
            last_error=r.c.error,
            delivered_at=case((r.c.outcome == _SUCCEEDED, r.c.attempted_at), else_=w.c.delivered_at),
        )
        .where(w.c.workspace_id == r.c.workspace_id, w.c.id == r.c.id)
        .cte("d")
    )

    s = (
        select(
            r.c.workspace_id,
            r.c.endpoint_id,
            func.bool_or(r.c.outcome == _SUCCEEDED, type_=Boolean).label("ok"),
            func.coalesce(func.bool_or(r.c.status_code == sql.const(410), type_=Boolean), false()).label(
                "gone"
            ),
            func.min(r.c.attempted_at).label("first_failure"),
            # the cutoff is a column here so that no clock function sits inside CASE below (Citus
            # refuses that)
            (func.now() - _FAILING_TOO_LONG).label("failing_too_long"),
        )
        .group_by(r.c.workspace_id, r.c.endpoint_id)
        .cte("s")
    )

    e = _target(_ENDPOINTS, "e")
    failed_too_long = and_(~s.c.ok, e.c.failing_since < s.c.failing_too_long)
    return (
        update(e)
        .values(
            failing_since=case((s.c.ok, null()), else_=func.coalesce(e.c.failing_since, s.c.first_failure)),
            status=case((or_(s.c.gone, failed_too_long), _DISABLED), else_=e.c.status),
            disabled_reason=case(
                (s.c.gone, sql.const(DISABLED_GONE)),
                (failed_too_long, sql.const(DISABLED_FAILING)),
                else_=e.c.disabled_reason,
            ),
        )
        .where(
            e.c.workspace_id == s.c.workspace_id,
            e.c.id == s.c.endpoint_id,
            or_(
                s.c.gone,
                and_(s.c.ok, e.c.failing_since.is_not(None)),
                and_(~s.c.ok, e.c.failing_since.is_(None)),
                failed_too_long,
            ),
        )
        .returning(e.c.workspace_id, e.c.id, e.c.status)
        .add_cte(attempts, deliveries)
    )


_RECORD = sql.Query(_record)


def _park() -> Update:
    """Parks the pending deliveries of disabled endpoints (``ws``, ``endpoint_ids``) out of the claim."""
    d = _DELIVERIES
    return (
        update(d)
        .values(next_attempt_at=_INFINITY)
        .where(
            d.c.workspace_id == sql.param("ws"),
            d.c.endpoint_id == any_(sql.param("endpoint_ids", ARRAY(UUID))),
            d.c.status == _PENDING,
        )
    )


def _unpark() -> Update:
    """Lets a re-enabled endpoint's (``ws``, ``endpoint_id``) parked backlog flow again."""
    d = _DELIVERIES
    return (
        update(d)
        .values(next_attempt_at=func.now())
        .where(
            d.c.workspace_id == sql.param("ws"),
            d.c.endpoint_id == sql.param("endpoint_id"),
            d.c.status == _PENDING,
            d.c.next_attempt_at == _INFINITY,
        )
    )


PARK = sql.Query(_park)
UNPARK = sql.Query(_unpark)


@dataclass(slots=True)
class Outcome:
    workspace_id: uuid.UUID
    id: uuid.UUID
    endpoint_id: uuid.UUID
    attempted_at: dt.datetime
    status_code: int | None
    latency_ms: int
    error: str | None
    response_body: str | None
    outcome: str  # succeeded | retry | failed
    next_attempt_at: dt.datetime | None


def body_of(job: dict[str, Any]) -> bytes:
    """The exact bytes sent and signed. ``data`` is spliced in as stored, never re-encoded."""
    head = jsonutil.dumps(
        {
            "id": job["event_id"],
            "type": job["type"],
            "created_at": job["created_at"],
            "sequence": job["sequence"],
            "workspace_id": job["workspace_id"],
        }
    )
    data: str = job["data"]
    return head[:-1] + b',"data":' + data.encode() + b"}"


def retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())


def next_attempt(
    attempts: int, retry_after: float | None, now: dt.datetime, scale: float = 1.0
) -> dt.datetime | None:
    """When to try again after ``attempts`` failed tries, or None when the ladder is exhausted."""
    if attempts > len(LADDER):
        return None
    delay = LADDER[attempts - 1] * scale * random.uniform(0.8, 1.2)
    if retry_after is not None:
        delay = max(delay, min(retry_after, float(LADDER[-1])))
    return now + dt.timedelta(seconds=delay)


class Dispatcher:
    def __init__(
        self, pool: EnginePool, settings: Settings, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.pool = pool
        self.settings = settings
        self.allow = netguard.parse_allow(settings.webhook_allow_cidrs)
        # httpx's transport, without the client around it: the client's cookie jar, auth and redirect
        # layers did nothing for us (redirects are never followed) and cost ~20% of a delivery's CPU.
        self.transport = transport or make_transport(settings.dispatcher_concurrency, 64)
        self._own_transport = transport is None
        self.wake = asyncio.Event()
        self.inflight: dict[uuid.UUID, int] = defaultdict(int)
        self.tasks: set[asyncio.Task[None]] = set()
        self.outcomes: list[Outcome] = []
        self.outcomes_ready = asyncio.Event()
        self.sent = 0

    def _notified(self, *_: object) -> None:
        self.wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        listener: asyncpg.Connection = await self.pool.take()
        await listener.add_listener(CHANNEL, self._notified)
        recorder = asyncio.create_task(self._record_loop(stop))
        # the SLA breach job rides along: every dispatcher process runs it, and its claim is safe to race
        sla_job = asyncio.create_task(breach.run_forever(self.pool, self.settings, stop))
        try:
            while not stop.is_set():
                # Cleared before the claim, never after: a slot freed or a NOTIFY received while the
                # claim runs must still wake the next wait (clearing later lost it until the poll).
                self.wake.clear()
                try:
                    claimed = await self.claim_and_start()
                except (asyncpg.PostgresError, OSError) as exc:
                    log.warning("claim failed, retrying: %s", exc)
                    claimed = 0
                    await asyncio.sleep(1.0)
                if claimed == 0 or len(self.tasks) >= self.settings.dispatcher_concurrency:
                    await self._wait(stop)
        finally:
            await self._drain()
            stop.set()
            await recorder
            await sla_job
            with contextlib.suppress(Exception):
                await listener.remove_listener(CHANNEL, self._notified)
            await self.pool.release(listener)
            if self._own_transport:
                await self.transport.aclose()

    async def _wait(self, stop: asyncio.Event) -> None:
        waits = [asyncio.ensure_future(self.wake.wait()), asyncio.ensure_future(stop.wait())]
        try:
            await asyncio.wait(
                waits, timeout=self.settings.dispatcher_poll_seconds, return_when="FIRST_COMPLETED"
            )
        finally:
            for w in waits:
                w.cancel()

    async def _drain(self) -> None:
        """Let attempts in flight finish (each ends within 15 s); any that do not are left to their lease."""
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=20.0)

    async def claim_and_start(self) -> int:
        room = self.settings.dispatcher_concurrency - len(self.tasks)
        if room <= 0:
            return 0
        busy = {eid: n for eid, n in self.inflight.items() if n > 0}
        rows = await _CLAIM.fetch(
            self.pool,
            limit=min(room, self.settings.dispatcher_batch),
            busy_ids=list(busy),
            busy_counts=list(busy.values()),
            per_endpoint=self.settings.dispatcher_per_endpoint,
            lease_seconds=self.settings.dispatcher_lease_seconds,
        )
        for row in rows:
            job = dict(row)
            self.inflight[job["endpoint_id"]] += 1
            task = asyncio.create_task(self._attempt(job))
            self.tasks.add(task)
            task.add_done_callback(self._finished)
        return len(rows)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        self.wake.set()  # a slot is free

    async def _attempt(self, job: dict[str, Any]) -> None:
        try:
            outcome = await self._send(job)
        except Exception as exc:  # never lose the outcome of an attempt to a bug in one send
            log.exception("attempt crashed")
            outcome = self._outcome(job, None, 0, f"internal: {type(exc).__name__}", None, None)
        finally:
            self.inflight[job["endpoint_id"]] -= 1
        self.outcomes.append(outcome)
        self.outcomes_ready.set()

    async def _send(self, job: dict[str, Any]) -> Outcome:
        body = body_of(job)
        secrets = [job["secret"]]
        expires = job["previous_secret_expires_at"]
        if job["previous_secret"] and expires and expires > dt.datetime.now(dt.UTC):
            secrets.append(job["previous_secret"])
        headers = signing.headers(secrets, str(job["event_id"]), int(time.time()), body)
        started = time.monotonic()
        try:
            # one lookup per attempt, every address checked, and the connection made to one of those
            target = await netguard.check_url(job["url"], self.allow)
            request = httpx.Request("POST", job["url"], content=body, headers=headers, extensions=_TIMEOUTS)
            async with asyncio.timeout(15.0):
                with connecting_to(target.host, target.addresses):
                    response = await self.transport.handle_async_request(request)
                try:
                    kept = b""
                    async for chunk in response.aiter_bytes():
                        kept += chunk
                        if len(kept) >= RESPONSE_KEEP:
                            break
                finally:
                    await response.aclose()
                text = kept[:RESPONSE_KEEP].decode("utf-8", "replace")
                retry_after = retry_after_seconds(response.headers.get("retry-after"))
                status = response.status_code
        except netguard.Refused as exc:
            return self._outcome(job, None, started, f"refused: {exc}", None, None)
        except (TimeoutError, httpx.TimeoutException):
            return self._outcome(job, None, started, "timeout", None, None)
        except httpx.HTTPError as exc:
            return self._outcome(job, None, started, f"connection: {type(exc).__name__}", None, None)
        self.sent += 1
        error = None if 200 <= status < 300 else f"http {status}"
        return self._outcome(job, status, started, error, text, retry_after)

    def _outcome(
        self,
        job: dict[str, Any],
        status: int | None,
        started: float,
        error: str | None,
        text: str | None,
        retry_after: float | None,
    ) -> Outcome:
        now = dt.datetime.now(dt.UTC)
        latency = int((time.monotonic() - started) * 1000) if started else 0
        if error is None:
            result, when = "succeeded", None
        elif status == 410:
            result, when = "failed", None  # the receiver unsubscribed; the endpoint is disabled too
        else:
            when = next_attempt(job["attempts"], retry_after, now, self.settings.webhook_retry_scale)
            result = "retry" if when is not None else "failed"
        return Outcome(
            job["workspace_id"],
            job["id"],
            job["endpoint_id"],
            now,
            status,
            latency,
            error,
            text,
            result,
            when,
        )

    async def _record_loop(self, stop: asyncio.Event) -> None:
        while True:
            if not self.outcomes:
                if stop.is_set() and not self.tasks:
                    return
                self.outcomes_ready.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.outcomes_ready.wait(), 0.5)
                continue
            batch, self.outcomes = self.outcomes, []
            try:
                await self.record(batch)
            except (asyncpg.PostgresError, OSError) as exc:
                # keep them and retry; if this process dies first, the leases lapse and they are re-sent
                log.warning("recording %d outcomes failed, retrying: %s", len(batch), exc)
                self.outcomes = batch + self.outcomes
                await asyncio.sleep(1.0)

    async def record(self, batch: list[Outcome]) -> None:
        rows = [
            {
                "workspace_id": o.workspace_id,
                "id": o.id,
                "endpoint_id": o.endpoint_id,
                "attempted_at": o.attempted_at,
                "status_code": o.status_code,
                "latency_ms": o.latency_ms,
                "error": o.error,
                "response_body": o.response_body,
                "outcome": o.outcome,
                "next_attempt_at": o.next_attempt_at,
            }
            for o in batch
        ]
        changed = await _RECORD.fetch(self.pool, outcomes=jsonutil.dumps_str(rows))
        for row in changed:
            if row["status"] == "disabled":
                await PARK.execute(self.pool, ws=row["workspace_id"], endpoint_ids=[row["id"]])
