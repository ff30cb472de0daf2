"""The dispatcher: claims due deliveries, sends them signed, records each attempt, schedules retries.

- Claims with ``FOR UPDATE SKIP LOCKED`` and a lease, so any number of dispatchers run side by side and a
  killed one's work returns when its lease lapses (at-least-once; ``webhook-id`` lets receivers dedupe).
- Wakes on ``LISTEN crm_webhook_deliveries`` (a trigger notifies at commit), polls as a fallback.
- Caps requests in flight per endpoint, and leaves endpoints at their cap out of the claim, so a slow
  endpoint never holds the slots a healthy one needs.
- ``per_object`` endpoints get an object's next event only after the earlier one is settled. The
  dispatcher sending an object's delivery leases the ones queued behind it meanwhile and sends each as
  soon as the one before succeeded (``_object_run``): a chain of events waits neither for outcomes to be
  written nor for a claim. When a run ends, the claim is woken as soon as its last outcome is written.
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
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx

from .. import db, jsonutil, masterkey, metrics, vault
from ..config import Settings
from ..db import EnginePool
from ..tickets import breach
from . import netguard, signing
from .outbox import CLAIM, LEASE_RUN, PARK, RECORD, RELEASE
from .transport import connecting_to, make_transport

log = logging.getLogger("crm_api.dispatcher")

CHANNEL = "crm_webhook_deliveries"
# Seconds to wait after the 1st, 2nd, ... failed attempt; after the last, the delivery is failed (~3 days).
LADDER = (5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)
RESPONSE_KEEP = 4096
# per_object: how many deliveries queued behind the one being sent are leased at a time
_RUN = 16
# connect 5 s; each read or write 15 s (and asyncio.timeout caps the whole attempt at 15 s)
_TIMEOUTS = {"timeout": {"connect": 5.0, "read": 15.0, "write": 15.0, "pool": 15.0}}


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
    # the last of a per_object run that settled: once written, the object's next delivery can be claimed
    wakes: bool = False


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
        self,
        pool: EnginePool,
        settings: Settings,
        transport: httpx.AsyncBaseTransport | None = None,
        keyring: masterkey.Keyring | None = None,
    ) -> None:
        self.pool = pool
        self.settings = settings
        self.keyring = keyring or masterkey.load(settings)  # opens the signing secrets
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
        self._stop = asyncio.Event()  # run()'s, once it runs
        self.sent = 0

    def _notified(self, *_: object) -> None:
        self.wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        await vault.prepare(self.pool, self.keyring)  # a key that opens nothing stops here, not per attempt
        self._stop = stop
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
                except db.ERRORS as exc:
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
        started = time.perf_counter()
        rows = await CLAIM.fetch(
            self.pool,
            limit=min(room, self.settings.dispatcher_batch),
            busy_ids=list(busy),
            busy_counts=list(busy.values()),
            per_endpoint=self.settings.dispatcher_per_endpoint,
            lease_seconds=self.settings.dispatcher_lease_seconds,
        )
        metrics.CLAIM_SECONDS.observe(time.perf_counter() - started)
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
        if job["ordering"] == "per_object":
            await self._object_run(job)
        else:
            self._keep(await self._try(job))

    async def _try(self, job: dict[str, Any]) -> Outcome:
        try:
            return await self._send(job)
        except Exception as exc:  # never lose the outcome of an attempt to a bug in one send
            log.exception("attempt crashed")
            return self._outcome(job, None, 0, f"internal: {type(exc).__name__}", None, None)
        finally:
            self.inflight[job["endpoint_id"]] -= 1

    def _keep(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)
        self.outcomes_ready.set()

    async def _object_run(self, job: dict[str, Any]) -> None:
        """Sends an object's deliveries at a per_object endpoint in event order, one at a time: while one
        is sent, up to ``_RUN`` queued behind it are leased, and each goes out as soon as the one before it
        succeeded. A failure to retry later (the rest must wait for it), a 410, a stop, or a lease past half
        its time ends the run, and what was leased but not sent is released."""
        run: list[dict[str, Any]] = []
        deadline = 0.0  # after it, a leased delivery of the run is no longer sent (its lease may run out)
        ahead: asyncio.Task[tuple[float, list[dict[str, Any]]]] | None = None
        while True:
            if not run:
                ahead = asyncio.create_task(self._lease_run(job))
            outcome = await self._try(job)
            self._keep(outcome)
            if ahead is not None:
                (deadline, run), ahead = await ahead, None
            if outcome.outcome == "retry" or outcome.status_code == 410 or self._stop.is_set():
                await self._release(run)
                return
            if not run or time.monotonic() > deadline:
                await self._release(run)
                outcome.wakes = True  # the object's next delivery (if any) is claimable once this is written
                return
            job = run.pop(0)
            self.inflight[job["endpoint_id"]] += 1

    async def _lease_run(self, job: dict[str, Any]) -> tuple[float, list[dict[str, Any]]]:
        """The deliveries queued behind ``job`` now leased, in event order, and the time until which they
        may be sent: half their lease, so an attempt begun by then ends (15 s at most) well within it."""
        deadline = time.monotonic() + self.settings.dispatcher_lease_seconds / 2
        try:
            rows = await LEASE_RUN.fetch(
                self.pool,
                ws=job["workspace_id"],
                endpoint_id=job["endpoint_id"],
                object_id=job["object_id"],
                after_sequence=job["sequence"],
                run=_RUN,
                lease_seconds=self.settings.dispatcher_lease_seconds,
            )
        except (asyncpg.PostgresError, OSError) as exc:  # the claim finds them later
            log.warning("leasing deliveries queued behind one failed: %s", exc)
            return deadline, []
        return deadline, sorted((dict(r) for r in rows), key=lambda r: int(r["sequence"]))

    async def _release(self, run: list[dict[str, Any]]) -> None:
        if not run:
            return
        try:
            await RELEASE.execute(
                self.pool,
                ws_ids=[r["workspace_id"] for r in run],
                ids=[r["id"] for r in run],
                leases=[r["leased_until"] for r in run],
            )
        except (asyncpg.PostgresError, OSError) as exc:  # their leases run out instead
            log.warning("releasing %d leased deliveries failed: %s", len(run), exc)

    async def _send(self, job: dict[str, Any]) -> Outcome:
        body = body_of(job)
        secrets = [self.keyring.open_stored(job["secret"])]
        expires = job["previous_secret_expires_at"]
        if job["previous_secret"] and expires and expires > dt.datetime.now(dt.UTC):
            secrets.append(self.keyring.open_stored(job["previous_secret"]))
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
            except db.ERRORS as exc:
                # keep them and retry; if this process dies first, the leases lapse and they are re-sent
                log.warning("recording %d outcomes failed, retrying: %s", len(batch), exc)
                self.outcomes = batch + self.outcomes
                await asyncio.sleep(1.0)
                continue
            if any(o.wakes for o in batch):
                self.wake.set()

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
        changed = await RECORD.fetch(self.pool, outcomes=jsonutil.dumps_str(rows))
        for outcome, n in Counter(o.outcome for o in batch).items():
            metrics.DELIVERIES.labels(outcome).inc(n)
        for row in changed:
            if row["status"] == "disabled":
                await PARK.execute(self.pool, ws=row["workspace_id"], endpoint_ids=[row["id"]])
