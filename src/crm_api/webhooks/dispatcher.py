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
import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx

from .. import jsonutil
from ..config import Settings
from ..db import EnginePool
from ..models.webhooks import DISABLED_FAILING, DISABLED_GONE
from ..tickets import breach
from . import netguard, signing
from .transport import make_transport

log = logging.getLogger("crm_api.dispatcher")

CHANNEL = "crm_webhook_deliveries"
# Seconds to wait after the 1st, 2nd, ... failed attempt; after the last, the delivery is failed (~3 days).
LADDER = (5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)
RESPONSE_KEEP = 4096
# connect 5 s; each read or write 15 s (and asyncio.timeout caps the whole attempt at 15 s)
_TIMEOUTS = {"timeout": {"connect": 5.0, "read": 15.0, "write": 15.0, "pool": 15.0}}

# Walks the queues, not the whole backlog: a loose index scan over ix_webhook_deliveries_queue finds each
# endpoint with pending deliveries (one probe per endpoint), then takes each one's oldest due deliveries up to
# the room this dispatcher has for it. A big backlog for an endpoint at its cap is never scanned, so it costs
# a healthy endpoint nothing; the oldest due deliveries across endpoints go first. Deliveries of a disabled
# endpoint are parked at next_attempt_at = 'infinity' and cost one probe.
_CLAIM = """
WITH RECURSIVE queues AS (
    (SELECT d.workspace_id, d.endpoint_id FROM webhook_deliveries AS d
     WHERE d.status = 'pending' ORDER BY d.endpoint_id LIMIT 1)
    UNION ALL
    SELECT nxt.workspace_id, nxt.endpoint_id FROM queues AS q
    CROSS JOIN LATERAL (
        SELECT d.workspace_id, d.endpoint_id FROM webhook_deliveries AS d
        WHERE d.status = 'pending' AND d.endpoint_id > q.endpoint_id ORDER BY d.endpoint_id LIMIT 1
    ) AS nxt
), room AS (
    SELECT q.workspace_id, q.endpoint_id, ep.ordering, $4 - coalesce(busy.n, 0) AS n
    FROM queues AS q
    JOIN webhook_endpoints AS ep ON ep.workspace_id = q.workspace_id AND ep.id = q.endpoint_id
    LEFT JOIN unnest($2::uuid[], $3::int[]) AS busy(endpoint_id, n) ON busy.endpoint_id = q.endpoint_id
    WHERE ep.status = 'enabled' AND $4 - coalesce(busy.n, 0) > 0
), due AS (
    SELECT d.workspace_id, d.id
    FROM room CROSS JOIN LATERAL (
        SELECT d.workspace_id, d.id, d.next_attempt_at FROM webhook_deliveries AS d
        WHERE d.endpoint_id = room.endpoint_id AND d.status = 'pending' AND d.next_attempt_at <= now()
          AND (d.leased_until IS NULL OR d.leased_until < now())
          AND (room.ordering = 'none' OR NOT EXISTS (
                SELECT 1 FROM webhook_deliveries AS p
                WHERE p.endpoint_id = d.endpoint_id AND p.object_id = d.object_id
                  AND p.status = 'pending' AND p.event_sequence < d.event_sequence))
        ORDER BY d.next_attempt_at
        LIMIT room.n
        FOR UPDATE OF d SKIP LOCKED
    ) AS d
    ORDER BY d.next_attempt_at
    LIMIT $1
)
UPDATE webhook_deliveries AS w
SET leased_until = now() + make_interval(secs => $5), attempts = w.attempts + 1
FROM due, events AS e, webhook_endpoints AS ep
WHERE w.workspace_id = due.workspace_id AND w.id = due.id
  AND e.workspace_id = w.workspace_id AND e.id = w.event_id
  AND ep.workspace_id = w.workspace_id AND ep.id = w.endpoint_id
RETURNING w.workspace_id, w.id, w.endpoint_id, w.attempts, e.id AS event_id, e.type, e.created_at, e.sequence,
          e.data::text AS data, ep.url, ep.secret, ep.previous_secret,
          ep.previous_secret_expires_at
"""

_RECORD = f"""
WITH r AS (
    SELECT * FROM jsonb_to_recordset($1::jsonb) AS r(
        workspace_id uuid, id uuid, endpoint_id uuid, attempted_at timestamptz, status_code int,
        latency_ms int, error text, response_body text, outcome text, next_attempt_at timestamptz)
), a AS (
    INSERT INTO webhook_attempts
        (workspace_id, id, delivery_id, attempted_at, status_code, latency_ms, error, response_body)
    SELECT workspace_id, gen_random_uuid(), id, attempted_at, status_code, latency_ms, error, response_body
    FROM r
), d AS (
    UPDATE webhook_deliveries AS w
    SET status = CASE WHEN r.outcome = 'retry' THEN 'pending' ELSE r.outcome END,
        next_attempt_at = coalesce(r.next_attempt_at, w.next_attempt_at),
        leased_until = NULL, last_status_code = r.status_code, last_error = r.error,
        delivered_at = CASE WHEN r.outcome = 'succeeded' THEN r.attempted_at ELSE w.delivered_at END
    FROM r WHERE w.workspace_id = r.workspace_id AND w.id = r.id
), s AS (
    SELECT workspace_id, endpoint_id, bool_or(outcome = 'succeeded') AS ok,
           coalesce(bool_or(status_code = 410), false) AS gone, min(attempted_at) AS first_failure
    FROM r GROUP BY workspace_id, endpoint_id
)
UPDATE webhook_endpoints AS e
SET failing_since = CASE WHEN s.ok THEN NULL ELSE coalesce(e.failing_since, s.first_failure) END,
    status = CASE WHEN s.gone OR (NOT s.ok AND e.failing_since < now() - interval '5 days')
                  THEN 'disabled' ELSE e.status END,
    disabled_reason = CASE WHEN s.gone THEN '{DISABLED_GONE}'
                           WHEN NOT s.ok AND e.failing_since < now() - interval '5 days'
                           THEN '{DISABLED_FAILING}' ELSE e.disabled_reason END
FROM s
WHERE e.workspace_id = s.workspace_id AND e.id = s.endpoint_id
  AND (s.gone OR (s.ok AND e.failing_since IS NOT NULL) OR (NOT s.ok AND e.failing_since IS NULL)
       OR (NOT s.ok AND e.failing_since < now() - interval '5 days'))
RETURNING e.workspace_id, e.id, e.status
"""

PARK = """
UPDATE webhook_deliveries SET next_attempt_at = 'infinity'
WHERE workspace_id = $1 AND endpoint_id = ANY($2::uuid[]) AND status = 'pending'
"""
UNPARK = """
UPDATE webhook_deliveries SET next_attempt_at = now()
WHERE workspace_id = $1 AND endpoint_id = $2 AND status = 'pending' AND next_attempt_at = 'infinity'
"""


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
        rows = await self.pool.fetch(
            _CLAIM,
            min(room, self.settings.dispatcher_batch),
            list(busy),
            list(busy.values()),
            self.settings.dispatcher_per_endpoint,
            self.settings.dispatcher_lease_seconds,
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
            await netguard.check_url(job["url"], self.allow)
            request = httpx.Request("POST", job["url"], content=body, headers=headers, extensions=_TIMEOUTS)
            async with asyncio.timeout(15.0):
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
        changed = await self.pool.fetch(_RECORD, jsonutil.dumps_str(rows))
        for row in changed:
            if row["status"] == "disabled":
                await self.pool.execute(PARK, row["workspace_id"], [row["id"]])
