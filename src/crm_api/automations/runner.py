"""The automation loop each ``crm-api worker`` process runs: follow a workspace's event log past its
durable cursor and run the automations its events trigger.

A batch is one transaction: the cursor row is locked (``SKIP LOCKED``: one worker per workspace at a time),
up to ``BATCH`` settled events after it are read (the feed's own bound, so an event committing late is not
passed), each run writes its actions and its run row inside a savepoint, and the cursor moves past the
batch before the commit. A worker killed mid-batch leaves nothing of it: the next one runs the batch again
from the same cursor, so no action is lost and none is done twice; the run's unique key
(automation, event) guards the same promise at the row level.

Runs follow the rules of issue 17: a change an automation made does not trigger that automation again; a
run's depth is one more than the depth of the run whose change triggered it (``actor.depth_of``), and past
``actor.MAX_DEPTH`` the run is recorded as ``stopped`` without acting.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import uuid
from collections import defaultdict
from typing import Any

import asyncpg

from .. import db
from ..errors import CRMError, NotFound
from ..events import feed
from ..events.emit import emit
from ..ids import uuid7
from ..resources import repository as resources
from . import actions
from . import repository as repo
from .actor import MAX_DEPTH, context, depth_of, run_of
from .batch import TRANSIENT, Planned, groupable, run_group
from .spec import AUTOMATIONS, BY_OBJECT, target

log = logging.getLogger("crm_api.automations")
BATCH = 50


def _api(run: dict[str, Any]) -> dict[str, Any]:
    return {"object": "automation_run", **{k: run[k] for k in repo.RUN_COLUMNS}}


async def _failed(conn: asyncpg.Connection, automation: dict[str, Any], run: dict[str, Any]) -> None:
    ctx = context(run["workspace_id"], automation["id"], run["id"], run["depth"])
    row = await resources.fetch_one(conn, AUTOMATIONS, run["workspace_id"], automation["id"])
    obj = AUTOMATIONS.to_api(row) if row is not None else {"id": automation["id"]}
    event = emit(ctx, "automation.run_failed", "automation", automation["id"], obj, {}, run["created_at"])
    event["data"]["run"] = _api(run)
    await repo.RUN_FAILED.fetchval(conn, **run, events=[event], ws=run["workspace_id"])


async def run_one(
    conn: asyncpg.Connection,
    ws: uuid.UUID,
    automation: dict[str, Any],
    event: dict[str, Any],
    depth: int,
    now: dt.datetime | None = None,
) -> str:
    """One run of ``automation`` for ``event`` (or a scheduled match) in the caller's transaction; its
    status."""
    now = now or dt.datetime.now(dt.UTC)
    run: dict[str, Any] = {
        "workspace_id": ws,
        "id": uuid7(),
        "automation_id": automation["id"],
        "event_id": event["id"],
        "event_type": event["type"],
        "object_type": event["object_type"],
        "object_id": event["object_id"],
        "depth": depth,
        "status": "succeeded",
        "actions": [],
        "error": None,
        "created_at": now,
    }
    if depth > MAX_DEPTH:
        run.update(status="stopped", error=f"not run: a chain of automations stops at depth {MAX_DEPTH}")
        await repo.INSERT_RUN.execute(conn, **run)
        return "stopped"
    spec = BY_OBJECT[event["object_type"]]
    ctx = context(ws, automation["id"], run["id"], depth)
    try:
        async with conn.transaction():  # a savepoint: a failed run leaves nothing of its actions
            row = await resources.fetch_one(conn, spec, ws, event["object_id"], for_update=True)
            if row is None or row["archived_at"] is not None:
                raise NotFound(f"the {spec.object} {event['object_id']} is gone or archived")
            run["actions"] = await actions.perform(conn, spec, ctx, automation["actions"], row, now=now)
            await repo.INSERT_RUN.execute(conn, **run)
        return "succeeded"
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name == "uq_automation_runs_event":
            return "repeated"  # this run committed before; its actions stand
        error: BaseException = exc
    except TRANSIENT:
        raise
    except CRMError as exc:
        error = exc
    except Exception as exc:
        log.exception("automation %s failed on event %s", automation["id"], event["id"])
        error = exc
    if isinstance(error, CRMError):
        detail = error.detail or error.title
    elif isinstance(error, asyncpg.IntegrityConstraintViolationError | asyncpg.DataError):
        detail = f"the database refused a write: {error}"
    else:
        detail = "an internal error stopped the run (the worker logged it)"
    if isinstance(error, CRMError) and error.errors:
        detail += ": " + "; ".join(f"{e.path} {e.message}" for e in error.errors)
    run.update(status="failed", error=detail, actions=[])
    await _failed(conn, automation, run)
    return "failed"


def _subject(event: dict[str, Any]) -> dict[str, Any]:
    """A ``segment.member_added`` event as its run sees it: about the object that entered the segment."""
    data = event["data"]
    return {**event, "object_type": data["object_type"], "object_id": uuid.UUID(str(data["object_id"]))}


async def _made_by(conn: asyncpg.Connection, ws: uuid.UUID, events: list[Any]) -> dict[uuid.UUID, uuid.UUID]:
    """The automation of each run that caused a segment entry the segments worker made (its event names
    the run in its ``request_id``, not the automation as its actor): run id -> automation id."""
    runs = {
        run
        for e in events
        if e["type"] == "segment.member_added"
        and not e["actor"].startswith("automation:")
        and (run := run_of(e["request_id"])) is not None
    }
    if not runs:
        return {}
    return {
        r["id"]: r["automation_id"] for r in await repo.RUN_AUTOMATIONS.fetch(conn, ws=ws, ids=list(runs))
    }


def _runs(
    events: list[Any], automations: list[Any], made_by: dict[uuid.UUID, uuid.UUID] | None = None
) -> list[Planned]:
    """(automation, event, depth) for each automation an event triggers, in event order; an automation's
    own changes do not trigger it, nor the segment entries they caused (``made_by``)."""
    made_by = made_by or {}
    by_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
    by_segment: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for a in automations:
        if a["trigger"]["type"] == "event":
            by_type[a["trigger"]["event_type"]].append(dict(a))
        elif a["trigger"]["type"] == "segment":
            by_segment[str(a["trigger"]["segment_id"])].append(dict(a))
    planned = []
    for e in events:
        event = dict(e)
        triggered = by_type.get(event["type"], [])
        if event["type"] == "segment.member_added" and str(event["object_id"]) in by_segment:
            triggered = by_segment[str(event["object_id"])]
            event = _subject(event)
        by = made_by.get(run_of(event["request_id"]) or uuid.UUID(int=0))
        for a in triggered:
            own = event["actor"] == f"automation:{a['id']}" or by == a["id"]
            if own or event["created_at"] < a["created_at"]:
                continue
            planned.append((a, event, depth_of(event["request_id"]) + 1))
    return planned


async def _filtered(
    conn: asyncpg.Connection, ws: uuid.UUID, planned: list[Planned]
) -> set[tuple[uuid.UUID, uuid.UUID]]:
    """(automation, event) pairs whose trigger filter holds: one statement per filtered automation."""
    objects: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
    filters: dict[uuid.UUID, dict[str, Any]] = {}
    for a, event, _ in planned:
        if a["trigger"].get("filter") is not None:
            objects[a["id"]].append(event["object_id"])
            filters[a["id"]] = a
    matched: dict[uuid.UUID, set[uuid.UUID]] = {}
    for aid, ids in objects.items():
        trigger = filters[aid]["trigger"]
        spec = target(trigger)
        assert spec is not None  # checked on save
        matched[aid] = await repo.matching(conn, spec, ws, trigger["filter"], ids)
    return {
        (a["id"], event["id"])
        for a, event, _ in planned
        if a["trigger"].get("filter") is None or event["object_id"] in matched.get(a["id"], set())
    }


async def run_once(pool: Any) -> int:
    """One batch of one workspace, if one is behind; the number of events passed."""
    async with pool.acquire() as conn, conn.transaction():
        claimed = await repo.CLAIM.fetchrow(conn)
        if claimed is None:
            return 0
        ws, cursor = claimed["workspace_id"], claimed["sequence"]
        events = (await feed.after(conn, ws, cursor, None, {}, BATCH))[:BATCH]
        if not events:
            return 0
        made_by = await _made_by(conn, ws, events)
        planned = _runs(events, await repo.ENABLED.fetch(conn, ws=ws), made_by)
        wanted = await _filtered(conn, ws, planned)
        await _run_all(conn, ws, [p for p in planned if (p[0]["id"], p[1]["id"]) in wanted])
        await repo.MOVE.execute(conn, ws=ws, sequence=events[-1]["sequence"])
        return len(events)


async def _run_all(conn: asyncpg.Connection, ws: uuid.UUID, planned: list[Planned]) -> None:
    """The batch's runs. When no record has two runs in it, the order between runs does not matter, and
    each automation's runs go set-based (``batch.run_group``: a few statements for all of them); else, and
    for a group that falls back, one by one in event order, each seeing the changes of those before."""
    objects = [event["object_id"] for _, event, _ in planned]
    if len(set(objects)) < len(objects):
        for automation, event, depth in planned:
            await run_one(conn, ws, automation, event, depth)
        return
    groups: dict[uuid.UUID, list[Planned]] = defaultdict(list)
    for run in planned:
        automation, _, depth = run
        if depth <= MAX_DEPTH and groupable(automation):
            groups[automation["id"]].append(run)
        else:
            await run_one(conn, ws, *run)
    for runs in groups.values():
        if len(runs) > 1 and await run_group(conn, ws, runs[0][0], runs):
            continue
        for run in runs:
            await run_one(conn, ws, *run)


async def run_forever(pool: Any, every: float, stop: asyncio.Event, clock_offset_s: float = 0.0) -> None:
    """Until ``stop``: batches back to back while any workspace is behind, then a look every ``every``
    seconds. A stop between batches loses nothing; a kill mid-batch rolls it back."""
    if every <= 0:
        return
    while not stop.is_set():
        passed = 0
        try:
            passed = await run_once(pool)
            now = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=clock_offset_s)
            passed += await run_schedules_once(pool, now)
        except db.ERRORS as exc:
            log.warning("automation batch failed, retrying: %s", exc)
        except Exception:
            # a bug must not stop the loop; the batch is retried from the same cursor
            log.exception("automation batch failed")
        if not passed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)


def _match_key(automation: uuid.UUID, record: uuid.UUID, version: int) -> uuid.UUID:
    """A scheduled match's stand-in for an event id: the run's unique key, once per record version."""
    return uuid.uuid5(automation, f"{record}:{version}")


async def run_schedules_once(pool: Any, now: dt.datetime) -> int:
    """One due schedule check, if one is due at ``now`` (the clock is the caller's: tests move it): runs
    for the matching records not run for since they last changed; the number of runs."""
    async with pool.acquire() as conn, conn.transaction():
        due = await repo.DUE_SCHEDULE.fetchrow(conn, now=now)
        if due is None:
            return 0
        automation, ws, trigger = dict(due), due["workspace_id"], due["trigger"]
        interval = dt.timedelta(minutes=trigger["interval_minutes"])
        await repo.NEXT_CHECK.execute(conn, ws=ws, automation=automation["id"], next_at=now + interval)
        spec = target(trigger)
        assert spec is not None  # checked on save
        before = now - dt.timedelta(days=trigger["not_updated_for_days"])
        records = await repo.stale(conn, spec, ws, automation["id"], trigger, before)
        for record in records:
            match = {
                "id": _match_key(automation["id"], record["id"], record["version"]),
                "type": "schedule",
                "object_type": spec.object,
                "object_id": record["id"],
            }
            await run_one(conn, ws, automation, match, 1, now=now)
        return max(len(records), 1)
