"""Pipeline rules: ordered stages (positions 0..n-1), at least one open stage, unique stage names, one
default pipeline per workspace, and stage removal that moves the stage's deals (one write through the deal
pipeline, ``resources.writes``: each move a stage change with its history, events and the deals' upkeep) or
refuses with a 409 while the stage holds deals.

Every write runs in the request's transaction (``deps.LockingConn``) with the pipeline row locked, so stage
edits of one pipeline queue rather than interleave.
"""

from __future__ import annotations

import copy
import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg

from ..auth import Context, SystemContext
from ..deals import repository as deal_repo
from ..deals.spec import DEALS
from ..errors import Conflict, FieldError, NotFound, PreconditionFailed, Unprocessable, field_error
from ..events.emit import emit
from ..ids import uuid7
from ..resources import service as resources
from ..resources import writes
from ..resources.spec import register_loader
from . import repository as repo
from .schemas import MAX_STAGES

DEFAULT_STAGES = (
    ("Lead in", "open", 0.1),
    ("Qualified", "open", 0.2),
    ("Proposal", "open", 0.4),
    ("Negotiation", "open", 0.7),
    ("Won", "won", 1.0),
    ("Lost", "lost", 0.0),
)


def to_api(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "object": "pipeline",
        "name": row["name"],
        "is_default": row["is_default"],
        "stages": row["stages"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "version": row["version"],
        "archived_at": row["archived_at"],
    }


async def _load_pipelines(
    conn: Any, workspace_id: uuid.UUID, ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, dict[str, Any]]:
    return {r["id"]: to_api(r) for r in await repo.fetch_many(conn, workspace_id, ids)}


async def _load_stages(
    conn: Any, workspace_id: uuid.UUID, ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, dict[str, Any]]:
    return {r["id"]: r for r in await repo.fetch_stages(conn, workspace_id, ids)}


# what a deal's include=pipeline and include=stage read (deals may not import this package)
register_loader("pipelines", _load_pipelines)
register_loader("pipeline_stages", _load_stages)


def _stage(name: str, kind: str, probability: float | None, position: int) -> dict[str, Any]:
    if probability is None:
        probability = 1.0 if kind == "won" else 0.0
    return {
        "id": uuid7(),
        "name": name,
        "position": position,
        "probability": round(probability, 3),
        "kind": kind,
    }


def _renumber(stages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for i, stage in enumerate(stages):
        stage["position"] = i
    return stages


def _check(stages: list[dict[str, Any]], path: str = "/stages") -> None:
    """Rules for the whole list, after any change."""
    if len(stages) > MAX_STAGES:
        raise field_error(path, f"at most {MAX_STAGES} stages")
    seen: dict[str, int] = {}
    for i, stage in enumerate(stages):
        key = stage["name"].casefold()
        if key in seen:
            raise field_error(f"{path}/{i}/name", f"another stage is already named '{stage['name']}'")
        seen[key] = i
    if not any(s["kind"] == "open" for s in stages):
        raise field_error(path, "a pipeline needs at least one open stage")


def _check_one(stages: list[dict[str, Any]]) -> None:
    """``_check`` for a request about one stage: a clash is reported on that request's ``/name``."""
    try:
        _check(stages)
    except Unprocessable as exc:
        exc.errors = [
            FieldError("/name" if e.path.endswith("/name") else e.path, e.message) for e in exc.errors
        ]
        raise


async def _save(
    conn: asyncpg.Connection,
    ctx: Any,
    old: dict[str, Any] | None,
    new: dict[str, Any],
    action: str,
    at: dt.datetime,
    record: bool = True,
) -> dict[str, Any]:
    if old is not None:
        if new == old:
            return old  # nothing changed: no new version, no event
        new["version"] = old["version"] + 1
        new["updated_at"] = at
    previous = (
        {k: old[k] for k in ("name", "is_default", "stages", "archived_at") if old[k] != new[k]}
        if old
        else {}
    )
    events = (
        [emit(ctx, f"pipeline.{action}", "pipeline", new["id"], to_api(new), previous, at)] if record else []
    )
    kept = {s["id"] for s in new["stages"]}
    removed = [s["id"] for s in old["stages"] if s["id"] not in kept] if old else []
    ok = await repo.write(
        conn, ctx.workspace_id, new, insert=old is None, removed_stage_ids=removed, events=events
    )
    if not ok:
        raise Conflict("The pipeline was changed concurrently; retry")
    return new


async def _locked(
    conn: asyncpg.Connection, ctx: Context, pipeline_id: uuid.UUID, if_match: int | None
) -> dict[str, Any]:
    row = await repo.fetch(conn, ctx.workspace_id, pipeline_id, lock=True)
    if row is None:
        raise NotFound(f"No pipeline with id {pipeline_id}")
    if if_match is not None and row["version"] != if_match:
        raise PreconditionFailed(f"The pipeline is at version {row['version']}, not {if_match}")
    return row


async def _take_default(conn: asyncpg.Connection, ctx: Context, at: dt.datetime) -> None:
    """The current default stops being one (its own version and event), before another takes over."""
    current = await repo.fetch_default(conn, ctx.workspace_id)
    if current is not None:
        await _save(conn, ctx, current, {**copy.deepcopy(current), "is_default": False}, "updated", at)


async def create(conn: asyncpg.Connection, ctx: Context, body: dict[str, Any]) -> dict[str, Any]:
    given = [s.get("position") is not None for s in body["stages"]]
    if any(given) and not all(given):
        i = given.index(False)
        raise field_error(f"/stages/{i}/position", "give a position for every stage or for none")
    order = list(range(len(body["stages"])))
    if all(given):
        taken: dict[int, int] = {}
        for i, s in enumerate(body["stages"]):
            if s["position"] in taken:
                raise field_error(f"/stages/{i}/position", f"duplicate position {s['position']}")
            taken[s["position"]] = i
        order.sort(key=lambda i: body["stages"][i]["position"])
    stages = [body["stages"][i] for i in order]
    _check([{"name": s["name"], "kind": s.get("kind", "open")} for s in body["stages"]])
    at = resources.now()
    if body.get("is_default"):
        await _take_default(conn, ctx, at)
    row = {
        "id": uuid7(),
        "name": body["name"],
        "is_default": bool(body.get("is_default")),
        "stages": [
            _stage(s["name"], s.get("kind", "open"), s.get("probability"), n) for n, s in enumerate(stages)
        ],
        "created_at": at,
        "updated_at": at,
        "version": 1,
        "archived_at": None,
    }
    return await _save(conn, ctx, None, row, "created", at)


async def create_default(conn: asyncpg.Connection, workspace_id: uuid.UUID) -> dict[str, Any]:
    """A new workspace's sales pipeline: part of provisioning the workspace, which itself has no event, so it
    has none either (no one can have subscribed yet, and the feed starts with what clients did)."""
    at = resources.now()
    row = {
        "id": uuid7(),
        "name": "Sales",
        "is_default": True,
        "stages": [_stage(name, kind, p, n) for n, (name, kind, p) in enumerate(DEFAULT_STAGES)],
        "created_at": at,
        "updated_at": at,
        "version": 1,
        "archived_at": None,
    }
    return await _save(conn, SystemContext(workspace_id, "system"), None, row, "created", at, record=False)


async def get(
    conn: asyncpg.Connection | asyncpg.Pool, ctx: Context, pipeline_id: uuid.UUID
) -> dict[str, Any]:
    row = await repo.fetch(conn, ctx.workspace_id, pipeline_id)
    if row is None:
        raise NotFound(f"No pipeline with id {pipeline_id}")
    return row


async def update(
    conn: asyncpg.Connection,
    ctx: Context,
    pipeline_id: uuid.UUID,
    changes: dict[str, Any],
    if_match: int | None,
) -> dict[str, Any]:
    if "name" in changes and changes["name"] is None:
        raise field_error("/name", "must not be null")
    if "is_default" in changes and changes["is_default"] is None:
        raise field_error("/is_default", "make another pipeline the default instead")
    row = await _locked(conn, ctx, pipeline_id, if_match)
    at = resources.now()
    new = copy.deepcopy(row)
    new.update(changes)
    if new["is_default"] and not row["is_default"]:
        if row["archived_at"] is not None:
            raise field_error("/is_default", "an archived pipeline cannot be the default")
        await _take_default(conn, ctx, at)
    return await _save(conn, ctx, row, new, "updated", at)


async def archive(
    conn: asyncpg.Connection, ctx: Context, pipeline_id: uuid.UUID, if_match: int | None
) -> dict[str, Any]:
    row = await _locked(conn, ctx, pipeline_id, if_match)
    if row["archived_at"] is not None:
        return row
    if row["is_default"]:
        raise Conflict(
            "The default pipeline cannot be archived; make another pipeline the default first",
            [FieldError("/is_default", "the default pipeline")],
        )
    at = resources.now()
    return await _save(conn, ctx, row, {**copy.deepcopy(row), "archived_at": at}, "archived", at)


async def restore(
    conn: asyncpg.Connection, ctx: Context, pipeline_id: uuid.UUID, if_match: int | None
) -> dict[str, Any]:
    row = await _locked(conn, ctx, pipeline_id, if_match)
    if row["archived_at"] is None:
        return row
    at = resources.now()
    return await _save(conn, ctx, row, {**copy.deepcopy(row), "archived_at": None}, "restored", at)


def _find(row: dict[str, Any], stage_id: uuid.UUID) -> int:
    for i, stage in enumerate(row["stages"]):
        if stage["id"] == stage_id:
            return i
    raise NotFound(f"No stage with id {stage_id} in this pipeline")


async def add_stage(
    conn: asyncpg.Connection, ctx: Context, pipeline_id: uuid.UUID, body: dict[str, Any], if_match: int | None
) -> dict[str, Any]:
    row = await _locked(conn, ctx, pipeline_id, if_match)
    new = copy.deepcopy(row)
    position = body.get("position")
    if position is None:
        position = len(new["stages"])
    if position > len(new["stages"]):
        raise field_error("/position", f"must be from 0 to {len(new['stages'])}")
    new["stages"].insert(position, _stage(body["name"], body.get("kind", "open"), body.get("probability"), 0))
    _renumber(new["stages"])
    _check_one(new["stages"])
    return await _save(conn, ctx, row, new, "updated", resources.now())


async def update_stage(
    conn: asyncpg.Connection,
    ctx: Context,
    pipeline_id: uuid.UUID,
    stage_id: uuid.UUID,
    changes: dict[str, Any],
    if_match: int | None,
) -> dict[str, Any]:
    for name in ("name", "kind", "probability"):
        if name in changes and changes[name] is None:
            raise field_error(f"/{name}", "must not be null")
    row = await _locked(conn, ctx, pipeline_id, if_match)
    new = copy.deepcopy(row)
    i = _find(new, stage_id)
    stage = new["stages"][i]
    if "kind" in changes and changes["kind"] != stage["kind"]:
        held = await deal_repo.count_in_stage(conn, ctx.workspace_id, stage_id)
        if held:
            raise Conflict(
                f"The stage holds {held} deals; its kind decides their status, so it cannot change now",
                [FieldError("/kind", f"the stage holds {held} deals")],
            )
    if "probability" in changes:
        changes["probability"] = round(changes["probability"], 3)
    stage.update(changes)
    _check_one(new["stages"])
    return await _save(conn, ctx, row, new, "updated", resources.now())


async def reorder_stages(
    conn: asyncpg.Connection,
    ctx: Context,
    pipeline_id: uuid.UUID,
    stage_ids: list[uuid.UUID],
    if_match: int | None,
) -> dict[str, Any]:
    row = await _locked(conn, ctx, pipeline_id, if_match)
    current = {s["id"]: s for s in copy.deepcopy(row["stages"])}
    if len(stage_ids) != len(set(stage_ids)) or set(stage_ids) != set(current):
        raise field_error("/stage_ids", "must list every stage of the pipeline exactly once")
    new = {**copy.deepcopy(row), "stages": _renumber([current[sid] for sid in stage_ids])}
    return await _save(conn, ctx, row, new, "updated", resources.now())


async def remove_stage(
    conn: asyncpg.Connection,
    ctx: Context,
    pipeline_id: uuid.UUID,
    stage_id: uuid.UUID,
    move_to: uuid.UUID | None,
    if_match: int | None,
) -> dict[str, Any]:
    row = await _locked(conn, ctx, pipeline_id, if_match)
    new = copy.deepcopy(row)
    del new["stages"][_find(new, stage_id)]
    _renumber(new["stages"])
    _check(new["stages"])
    if move_to is not None and (move_to == stage_id or all(s["id"] != move_to for s in new["stages"])):
        raise field_error("/move_to_stage_id", "must be another stage of this pipeline")
    deals = await deal_repo.in_stage(conn, DEALS, ctx.workspace_id, stage_id)
    if deals and move_to is None:
        raise Conflict(
            f"The stage holds {len(deals)} deals; say where they go with move_to_stage_id",
            [FieldError("/move_to_stage_id", f"required: the stage holds {len(deals)} deals")],
        )
    if deals:
        assert move_to is not None
        await _move_deals(conn, ctx, deals, move_to)
    return await _save(conn, ctx, row, new, "updated", resources.now())


async def _move_deals(
    conn: asyncpg.Connection, ctx: Context, deals: list[dict[str, Any]], stage_id: uuid.UUID
) -> None:
    """Every deal of a removed stage moves in one write through the deal pipeline: the deal rules (status,
    closed_at), a ``deal.stage_changed`` event each (and so a history row each), and the deals' upkeep
    (the lifetime value of contacts whose deals the move wins or loses)."""
    done = await writes.apply(conn, DEALS, ctx, [(d, {"stage_id": stage_id}) for d in deals], "updated")
    done.raise_first()
    if any(done.lost(i) for i in done.changed):  # cannot happen: the rows are locked
        raise Conflict("Deals changed while they were moved; retry")
