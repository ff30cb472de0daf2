"""The automation resource: its fields and filters, and the checks a save runs on the trigger and on each
action against the object the trigger's events are about (422 naming ``/trigger/...`` or
``/actions/<i>/...``)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg
from pydantic import TypeAdapter
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert

from .. import models, sql
from ..errors import CRMError, FieldError, Unprocessable
from ..events.emit import Actor
from ..events.types import BY_TYPE
from ..members.ownership import OWNED
from ..resources import owners
from ..resources import repository as resources
from ..resources.exprs import Params
from ..resources.filters import Compiler
from ..resources.service import validate
from ..resources.spec import Pair, QueryParam, ResourceSpec, fields_of, register
from ..segments.spec import SEGMENTS
from .schemas import TRIGGER_OBJECTS, AutomationAction, AutomationCreate, AutomationUpdate, Trigger
from .schemas import Automation as AutomationRead

BY_OBJECT: dict[str, ResourceSpec] = {s.object: s for s in OWNED if s.object in TRIGGER_OBJECTS}
"""The resource each trigger object is, by its events' ``object_type``."""
LINKS = {"contact": "contact_ids", "company": "company_ids", "deal": "deal_ids", "ticket": "ticket_ids"}
"""The activity column a task or note made for a record links it with."""
SEGMENT_ACTIONS = ("add_to_segment", "remove_from_segment")
SEGMENT_OBJECTS = ("contact", "company", "deal")
"""The records segments hold."""
_ACTION = TypeAdapter(AutomationAction)
_TRIGGER = TypeAdapter(Trigger)


def _normalise(payload: dict[str, Any]) -> dict[str, Any]:
    out = dict(payload)
    if out.get("actions"):
        # stored whole, defaults included, so the runner reads every option as the API shows it
        out["actions"] = [_ACTION.validate_python(a).model_dump(mode="json") for a in out["actions"]]
    if out.get("trigger"):
        out["trigger"] = _TRIGGER.validate_python(out["trigger"]).model_dump(mode="json")
    return out


def _text(row: dict[str, Any]) -> str:
    return str(row.get("name") or "").lower()


def target(trigger: dict[str, Any]) -> ResourceSpec | None:
    """The resource whose records the trigger's runs act on (a segment trigger's object type is its
    segment's, stored on save)."""
    if trigger.get("type") in ("schedule", "segment"):
        return BY_OBJECT.get(str(trigger.get("object_type")))
    event = BY_TYPE.get(str(trigger.get("event_type")))
    return BY_OBJECT.get(event.object_type) if event is not None else None


def segment_problem(spec: ResourceSpec, segment: dict[str, Any] | None) -> str | None:
    """Why a segment action cannot change the segment's membership for ``spec``'s records, if it cannot."""
    if segment is None:
        return "no segment of the workspace has this id"
    if segment["archived_at"] is not None:
        return "the segment is archived"
    if segment["kind"] != "static":
        return "a dynamic segment's members follow its filter: only a static segment takes members"
    if segment["object_type"] != spec.object:
        return f"a segment of {segment['object_type']} records, not of {spec.object} records"
    return None


def _trigger_problems(ws: uuid.UUID, trigger: dict[str, Any]) -> list[FieldError]:
    spec = target(trigger)
    if spec is None and trigger.get("type") == "segment":
        return []  # its segment was refused already
    if spec is None:
        objects = ", ".join(TRIGGER_OBJECTS)
        return [FieldError("/trigger/event_type", f"not an event type of a {objects} (GET /v1/event-types)")]
    if trigger.get("filter") is not None:
        try:
            Compiler(spec, Params(ws=ws)).compile(trigger["filter"], "/trigger/filter")
        except Unprocessable as exc:
            return exc.errors
    return []


def _action_problems(spec: ResourceSpec, i: int, action: dict[str, Any]) -> list[FieldError]:
    kind, at = action["type"], f"/actions/{i}"
    if kind == "set_fields":
        try:
            validate(spec.update_schema, action["fields"], f"{at}/fields")
        except Unprocessable as exc:
            return exc.errors
    elif kind in ("add_tags", "remove_tags") and "tags" not in spec.field_names:
        return [FieldError(f"{at}/type", f"a {spec.object} has no tags")]
    elif kind == "assign_owner" and not spec.member_columns:
        return [FieldError(f"{at}/type", f"a {spec.object} has no owner")]
    elif kind == "assign_owner" and (action["member_id"] is None) == (action["team_id"] is None):
        return [FieldError(f"{at}/member_id", "give member_id or team_id, one of them")]
    elif kind in ("create_task", "create_note") and spec.object not in LINKS:
        return [FieldError(f"{at}/type", f"an activity cannot be linked to a {spec.object}")]
    elif kind in SEGMENT_ACTIONS and spec.object not in SEGMENT_OBJECTS:
        return [FieldError(f"{at}/type", f"segments do not hold {spec.object} records")]
    return []


async def _segments(
    conn: asyncpg.Connection, ws: uuid.UUID, pairs: Sequence[Pair]
) -> dict[uuid.UUID, dict[str, Any]]:
    """The segments the automations' triggers and segment actions name, by id: one statement."""
    ids = {
        uuid.UUID(str(part["segment_id"]))
        for _, new in pairs
        for part in (new["trigger"], *new["actions"])
        if part.get("segment_id")
    }
    found = await resources.fetch_by_ids(conn, SEGMENTS, ws, list(ids)) if ids else []
    return {r["id"]: dict(r) for r in found}


def _segment_trigger(new: dict[str, Any], segments: dict[uuid.UUID, dict[str, Any]]) -> list[FieldError]:
    """A segment trigger names a live segment of the workspace; its object type is stored with it."""
    trigger = new["trigger"]
    segment = segments.get(uuid.UUID(str(trigger["segment_id"])))
    if segment is None or segment["archived_at"] is not None:
        new["trigger"] = {**trigger, "object_type": None}
        return [FieldError("/trigger/segment_id", "no live segment of the workspace has this id")]
    new["trigger"] = {**trigger, "object_type": segment["object_type"]}
    return []


def _members_named(actions: Sequence[dict[str, Any]]) -> list[tuple[str, uuid.UUID]]:
    named = []
    for i, action in enumerate(actions):
        for key in ("member_id", "owner_id"):
            value = action.get(key)
            if value not in (None, "record_owner"):
                named.append((f"/actions/{i}/{key}", uuid.UUID(str(value))))
    return named


async def _prepare(conn: asyncpg.Connection, ctx: Actor, pairs: Sequence[Pair]) -> dict[int, CRMError]:
    failures: dict[int, CRMError] = {}
    named: list[tuple[int, str, uuid.UUID]] = []
    segments = await _segments(conn, ctx.workspace_id, pairs)
    for n, (_, new) in enumerate(pairs):
        problems = _segment_trigger(new, segments) if new["trigger"]["type"] == "segment" else []
        problems += _trigger_problems(ctx.workspace_id, new["trigger"])
        spec = target(new["trigger"])
        if spec is not None:
            for i, action in enumerate(new["actions"]):
                refused = _action_problems(spec, i, action)
                if action["type"] in SEGMENT_ACTIONS and not refused:
                    why = segment_problem(spec, segments.get(uuid.UUID(action["segment_id"])))
                    if why is not None:
                        refused.append(FieldError(f"/actions/{i}/segment_id", why))
                problems += refused
        if problems:
            failures[n] = Unprocessable("The automation is not valid", problems)
        named += [(n, path, member) for path, member in _members_named(new["actions"])]
    teams = [
        (n, f"/actions/{i}/team_id", uuid.UUID(a["team_id"]))
        for n, (_, new) in enumerate(pairs)
        for i, a in enumerate(new["actions"])
        if a.get("team_id")
    ]
    live = await resources.existing_ids(conn, "teams", ctx.workspace_id, [t for _, _, t in teams])
    for n, path, team in teams:
        if team not in live and n not in failures:
            failures[n] = Unprocessable(
                f"{path}: no such team", [FieldError(path, "no live team has this id")]
            )
    found = await owners.active_members(conn, ctx.workspace_id, [m for _, _, m in named])
    for n, path, member in named:
        if member not in found and n not in failures:
            failures[n] = Unprocessable(
                f"{path}: not an active member",
                [FieldError(path, "no active member of the workspace has this id")],
            )
    return failures


def _start_cursor() -> Any:
    # an automation acts on events from its creation on: the workspace's cursor starts at the log's end
    c, e = sql.table("automation_cursors"), sql.table("events")
    last = select(func.coalesce(func.max(e.c.sequence), 0)).where(e.c.workspace_id == sql.param("ws"))
    return (
        insert(c)
        .from_select(["workspace_id", "sequence"], select(sql.param("ws"), last.scalar_subquery()))
        .on_conflict_do_nothing()
    )


_START_CURSOR = sql.Query(_start_cursor)


async def _after_write(conn: asyncpg.Connection, ctx: Actor, pairs: Sequence[Pair]) -> dict[int, CRMError]:
    if any(old is None for old, _ in pairs):
        await _START_CURSOR.execute(conn, ws=ctx.workspace_id)
    return {}


AUTOMATIONS = register(
    ResourceSpec(
        name="automations",
        object="automation",
        fields=fields_of(models.Automation),
        create_schema=AutomationCreate,
        update_schema=AutomationUpdate,
        read_schema=AutomationRead,
        normalise=_normalise,
        search_text=_text,
        prepare=_prepare,
        after_write=_after_write,
        searched="name",
        called=("an automation", "automations"),
        sorts=("created_at", "updated_at", "name"),
        query_params=(
            QueryParam("enabled", "enabled", "eq", "boolean"),
            QueryParam("updated_after", "updated_at", "gt", "timestamptz"),
            QueryParam("created_after", "created_at", "gt", "timestamptz"),
            QueryParam("created_before", "created_at", "lt", "timestamptz"),
        ),
        defaults={"enabled": True, "external_ids": {}},
        required=("name", "enabled", "trigger", "actions"),
    )
)
