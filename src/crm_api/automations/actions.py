"""What an automation's actions do to a record, each through the one write path (``writes.apply``), so each
change is checked like a client's and emits its events; with ``dry_run`` nothing is written and the answer
says what would change."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg

from ..activities.spec import ACTIVITIES
from ..auth import Context
from ..errors import Conflict, field_error
from ..members.spec import TEAMS
from ..resources import owners, writes
from ..resources import repository as resources
from ..resources.service import validate
from ..resources.spec import ResourceSpec
from ..segments import repository as segments
from ..segments.spec import SEGMENTS
from . import repository as repo
from .actor import AutomationPrincipal
from .spec import LINKS, SEGMENT_ACTIONS, segment_problem

Row = dict[str, Any]
_SYSTEM = ("id", "object", "created_at", "updated_at", "version")


def changes_of(spec: ResourceSpec, old: Row | None, new: Row) -> dict[str, Any]:
    before = spec.to_api(old) if old is not None else {}
    after = spec.to_api(new)
    return {k: v for k, v in after.items() if k not in _SYSTEM and before.get(k) != v}


async def _member_in_turn(
    conn: asyncpg.Connection, spec: ResourceSpec, ctx: Context, i: int, action: dict[str, Any], dry_run: bool
) -> uuid.UUID:
    """The team's member an ``assign_owner`` to a team picks: its next active member in the team's order
    (``round_robin``), or the active member owning the fewest open records of the type, the first in the
    team's order on a tie (``least_open``)."""
    team = await resources.fetch_one(conn, TEAMS, ctx.workspace_id, uuid.UUID(action["team_id"]))
    ids = team["member_ids"] if team is not None and team["archived_at"] is None else []
    active = await owners.active_members(conn, ctx.workspace_id, ids)
    members = [m for m in ids if m in active]
    if not members:
        raise field_error(f"/actions/{i}/team_id", "the team has no active member")
    if action["strategy"] == "least_open":
        counts = await repo.open_counts(conn, spec, ctx.workspace_id, members)
        fewest: uuid.UUID = min(members, key=lambda m: counts.get(m, 0))  # the first of equals
        return fewest
    assert isinstance(ctx.principal, AutomationPrincipal) and ctx.principal.automation_id is not None
    automation = ctx.principal.automation_id
    member: uuid.UUID = members[
        await repo.turn(conn, ctx.workspace_id, automation, i, take=not dry_run) % len(members)
    ]
    return member


def update_for(spec: ResourceSpec, i: int, action: dict[str, Any], row: Row) -> dict[str, Any]:
    kind = action["type"]
    if kind == "set_fields":
        return validate(spec.update_schema, action["fields"], f"/actions/{i}/fields")
    if kind == "add_tags":
        return {"tags": list(dict.fromkeys([*(row["tags"] or []), *action["tags"]]))}
    if kind == "remove_tags":
        return {"tags": [t for t in row["tags"] or [] if t not in set(action["tags"])]}
    # assign_owner (a team's member is picked by the caller)
    member = action["member_id"]
    return {spec.member_columns[0]: uuid.UUID(member) if member else None}  # stored as JSON: a string


def activity_for(
    spec: ResourceSpec, i: int, action: dict[str, Any], row: Row, now: dt.datetime
) -> dict[str, Any]:
    body: dict[str, Any] = {LINKS[spec.object]: [row["id"]]}
    if action["type"] == "create_note":
        body.update(type="note", body=action["body"])
    else:
        owner = action["owner_id"]
        body.update(
            type="task",
            subject=action["subject"],
            due_at=now + dt.timedelta(days=action["due_in_days"]),
            owner_id=(row.get(spec.member_columns[0]) if owner == "record_owner" else owner),
        )
    return validate(ACTIVITIES.create_schema, body, f"/actions/{i}")


async def _segment(
    conn: asyncpg.Connection,
    spec: ResourceSpec,
    ctx: Context,
    i: int,
    action: dict[str, Any],
    row: Row,
    dry_run: bool,
) -> dict[str, Any]:
    """``add_to_segment`` / ``remove_from_segment``: the record in or out of a static segment through
    the segments' own write (its lock, history row, count and ``segment.member_*`` event)."""
    ws, sid = ctx.workspace_id, uuid.UUID(action["segment_id"])
    segment = await resources.fetch_one(conn, SEGMENTS, ws, sid)
    why = segment_problem(spec, segment)
    if why is not None or segment is None:  # checked on save, but the segment may have changed since
        raise field_error(f"/actions/{i}/segment_id", why or "no segment")
    adding = action["type"] == "add_to_segment"
    if dry_run:
        held = sid in {s["id"] for s in await segments.object_segments(conn, ws, spec.object, row["id"])}
        changed = held != adding
    else:
        await segments.lock_segment(conn, ws, sid)
        change = {row["id"]: "added" if adding else "removed"}
        added, removed = await segments.change(
            conn, ctx, segment, change if adding else {}, {} if adding else change
        )
        changed = bool(added or removed)
    key = "members_added" if adding else "members_removed"
    return {
        "type": action["type"],
        "object_type": "segment",
        "object_id": sid,
        "changes": {key: [row["id"]]} if changed else {},
    }


async def perform(
    conn: asyncpg.Connection,
    spec: ResourceSpec,
    ctx: Context,
    actions: Sequence[dict[str, Any]],
    row: Row,
    *,
    now: dt.datetime,
    dry_run: bool = False,
) -> list[dict[str, Any]]:
    """Run the actions in order on ``row`` (each sees the changes of those before it); raise the first
    refusal. Returns each action with the object it touched and the fields it changed."""
    done: list[dict[str, Any]] = []
    for i, action in enumerate(actions):
        if action["type"] in SEGMENT_ACTIONS:
            done.append(await _segment(conn, spec, ctx, i, action, row, dry_run))
            continue
        if action["type"] in ("create_task", "create_note"):
            fields = activity_for(spec, i, action, row, now)
            made = await writes.apply(conn, ACTIVITIES, ctx, [(None, fields)], "created", dry_run=dry_run)
            made.raise_first()
            new = made.rows[0]
            done.append(
                {
                    "type": action["type"],
                    "object_type": "activity",
                    "object_id": None if dry_run else new["id"],
                    "changes": changes_of(ACTIVITIES, None, new),
                }
            )
            continue
        fields = update_for(spec, i, action, row)
        if action["type"] == "assign_owner" and action["team_id"] is not None:
            fields = {spec.member_columns[0]: await _member_in_turn(conn, spec, ctx, i, action, dry_run)}
        result = await writes.apply(conn, spec, ctx, [(row, fields)], "updated", dry_run=dry_run)
        result.raise_first()
        if result.lost(0):
            raise Conflict(f"the {spec.object} changed while the automation ran")
        new = result.rows[0]
        changes = changes_of(spec, row, new)
        done.append(
            {"type": action["type"], "object_type": spec.object, "object_id": row["id"], "changes": changes}
        )
        row = new
    return done
