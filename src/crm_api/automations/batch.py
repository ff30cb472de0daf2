"""The set-based path for one automation's runs in a batch: the records locked in one statement, each
action one ``writes.apply`` for all the runs (the write path's batch form: one statement for the rows,
their events and deliveries) or one membership change of the segment (``segments.repository.change``),
the run rows in one statement. A run's events still carry its own actor and ``request_id``
(``writes.apply``'s ``actor_of``, ``change``'s ``causes``), so loops and depths are judged as for a single
run. A team assignment is not grouped: its turn or count depends on the runs before it.

It is all or nothing, in a savepoint: when any run would fail (a refused action, a record gone, a race
lost), the savepoint is rolled back and the caller runs them one by one (``runner.run_one``), each failure
recorded on its own run. Exactly once holds as on the one-by-one path: the run rows and the cursor commit
with the actions, and the run's unique key (automation, event) backs it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg

from ..activities.spec import ACTIVITIES
from ..auth import Context
from ..ids import uuid7
from ..resources import repository as resources
from ..resources import writes
from ..resources.spec import ResourceSpec
from ..segments import repository as segments
from ..segments.spec import SEGMENTS
from . import repository as repo
from .actions import activity_for, changes_of, update_for
from .actor import context
from .spec import BY_OBJECT, SEGMENT_ACTIONS, segment_problem

Planned = tuple[dict[str, Any], dict[str, Any], int]
"""(automation, event, depth)"""
_RECORD = ("set_fields", "add_tags", "remove_tags", "assign_owner")
_ACTIVITY = ("create_task", "create_note")


TRANSIENT = (
    asyncpg.InterfaceError,
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.QueryCanceledError,
    asyncpg.LockNotAvailableError,
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
    asyncpg.CannotConnectNowError,
)
"""What fails the batch, to be retried whole from the same cursor (the database or the network, a
timeout). Anything else fails the one run, which is recorded: a bug or a refused value must not hold the
workspace's log back forever."""


class _Fallback(Exception):
    """A run of the group would not succeed: the group is run one by one instead."""


def groupable(automation: dict[str, Any]) -> bool:
    """Whether the automation's actions have a batch form: each acts on its run's record alone (a team's
    turn or least-open count depends on the runs before it)."""
    return all(
        a["type"] in (*_ACTIVITY, *SEGMENT_ACTIONS) or (a["type"] in _RECORD and not a.get("team_id"))
        for a in automation["actions"]
    )


async def _segment(
    conn: asyncpg.Connection,
    spec: ResourceSpec,
    action: dict[str, Any],
    rows: list[dict[str, Any]],
    ctxs: list[Context],
) -> list[dict[str, Any]]:
    """A segment action for every run: one membership change, each run's event with its own
    ``request_id`` (the actor, the automation, is theirs in common)."""
    ws, sid = ctxs[0].workspace_id, uuid.UUID(action["segment_id"])
    segment = await resources.fetch_one(conn, SEGMENTS, ws, sid)
    if segment is None or segment_problem(spec, segment) is not None:
        raise _Fallback
    await segments.lock_segment(conn, ws, sid)
    adding = action["type"] == "add_to_segment"
    change = {row["id"]: "added" if adding else "removed" for row in rows}
    causes = {row["id"]: ctx.request_id or "" for row, ctx in zip(rows, ctxs, strict=True)}
    added, removed = await segments.change(
        conn, ctxs[0], segment, change if adding else {}, {} if adding else change, causes
    )
    changed = set(added) | set(removed)
    key = "members_added" if adding else "members_removed"
    return [
        {
            "type": action["type"],
            "object_type": "segment",
            "object_id": sid,
            "changes": {key: [row["id"]]} if row["id"] in changed else {},
        }
        for row in rows
    ]


async def _perform(
    conn: asyncpg.Connection,
    ws: uuid.UUID,
    automation: dict[str, Any],
    runs: Sequence[Planned],
    ctxs: list[Context],
    now: dt.datetime,
) -> list[list[dict[str, Any]]]:
    """Each action for every run at once; what each run did, or ``_Fallback``."""
    spec = BY_OBJECT[runs[0][1]["object_type"]]
    ids = [event["object_id"] for _, event, _ in runs]
    found = {r["id"]: dict(r) for r in await repo.locked(spec).fetch(conn, ws=ws, ids=ids)}
    rows = [found.get(oid) for oid in ids]
    if any(row is None or row["archived_at"] is not None for row in rows):
        raise _Fallback
    current: list[dict[str, Any]] = [row for row in rows if row is not None]
    done: list[list[dict[str, Any]]] = [[] for _ in runs]
    for i, action in enumerate(automation["actions"]):
        if action["type"] in SEGMENT_ACTIONS:
            for n, did in enumerate(await _segment(conn, spec, action, current, ctxs)):
                done[n].append(did)
            continue
        if action["type"] in _ACTIVITY:
            made = await writes.apply(
                conn,
                ACTIVITIES,
                ctxs[0],
                [(None, activity_for(spec, i, action, row, now)) for row in current],
                "created",
                at=now,
                actor_of=ctxs.__getitem__,
            )
            if made.failures or any(made.lost(n) for n in range(len(runs))):
                raise _Fallback
            for n in range(len(runs)):
                new = made.rows[n]
                done[n].append(
                    {
                        "type": action["type"],
                        "object_type": "activity",
                        "object_id": new["id"],
                        "changes": changes_of(ACTIVITIES, None, new),
                    }
                )
            continue
        result = await writes.apply(
            conn,
            spec,
            ctxs[0],
            [(row, update_for(spec, i, action, row)) for row in current],
            "updated",
            at=now,
            actor_of=ctxs.__getitem__,
        )
        if result.failures or any(result.lost(n) for n in range(len(runs))):
            raise _Fallback
        for n, row in enumerate(current):
            new = result.rows[n]
            done[n].append(
                {
                    "type": action["type"],
                    "object_type": spec.object,
                    "object_id": row["id"],
                    "changes": changes_of(spec, row, new),
                }
            )
            current[n] = new
    return done


async def run_group(
    conn: asyncpg.Connection, ws: uuid.UUID, automation: dict[str, Any], runs: Sequence[Planned]
) -> bool:
    """The runs of ``automation`` (each on a different record, none past the depth limit), set-based, in
    the caller's transaction. False: nothing of them was kept, and the caller runs them one by one."""
    now = dt.datetime.now(dt.UTC)
    run_ids = [uuid7() for _ in runs]
    ctxs = [
        context(ws, automation["id"], rid, depth) for rid, (_, _, depth) in zip(run_ids, runs, strict=True)
    ]
    try:
        async with conn.transaction():  # a savepoint: a group that falls back leaves nothing
            done = await _perform(conn, ws, automation, runs, ctxs, now)
            rows = [
                {
                    "workspace_id": ws,
                    "id": rid,
                    "automation_id": automation["id"],
                    "event_id": event["id"],
                    "event_type": event["type"],
                    "object_type": event["object_type"],
                    "object_id": event["object_id"],
                    "depth": depth,
                    "status": "succeeded",
                    "actions": actions,
                    "error": None,
                    "created_at": now,
                }
                for rid, (_, event, depth), actions in zip(run_ids, runs, done, strict=True)
            ]
            await repo.INSERT_RUNS.execute(conn, runs=rows)
    except TRANSIENT:
        raise
    except Exception:  # _Fallback, a refusal, a bug: the one-by-one path records each run's outcome
        return False
    return True
