"""The rules every resource shares: create, read, update with If-Match, archive, restore, upsert by a
natural key or external id, and batches of up to 500, each change recorded by ``events.emit``.

Nothing here commits: the request's transaction (``deps.write_conn``) does, before the response is sent.
"""

from __future__ import annotations

import datetime as dt
import uuid
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import Any

import asyncpg
from pydantic import BaseModel, ValidationError

from .. import locks
from ..auth import Context
from ..errors import (
    Conflict,
    CRMError,
    FieldError,
    Merged,
    MergedConflict,
    NotFound,
    PreconditionFailed,
    Unprocessable,
)
from ..events.emit import emit
from ..ids import uuid7
from . import repository as repo
from .custom_fields import enforce as custom_fields
from .spec import ResourceSpec

MAX_BATCH = 500


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _external_pairs(row: dict[str, Any]) -> set[tuple[str, str]]:
    return {(k, str(v)) for k, v in (row.get("external_ids") or {}).items()}


def _external_changes(
    old: dict[str, Any] | None, new: dict[str, Any]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    before = _external_pairs(old) if old else set()
    after = _external_pairs(new)
    oid = new["id"]
    removed = [{"object_id": oid, "source": s, "external_id": e} for s, e in before - after]
    added = [{"object_id": oid, "source": s, "external_id": e} for s, e in after - before]
    return removed, added


def new_row(spec: ResourceSpec, ctx: Context, payload: dict[str, Any], at: dt.datetime) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(spec.columns)
    row.update(spec.defaults)
    row.update({k: v for k, v in payload.items() if v is not None or k not in spec.defaults})
    row.update(workspace_id=ctx.workspace_id, id=uuid7(), created_at=at, updated_at=at, version=1)
    row["archived_at"] = None
    if spec.finalise:
        spec.finalise(None, row)
    row["search_text"] = spec.search_text(row)
    return row


def merged_row(
    spec: ResourceSpec, row: dict[str, Any], changes: dict[str, Any], at: dt.datetime
) -> dict[str, Any]:
    new = dict(row)
    for key, value in changes.items():
        new[key] = spec.defaults.get(key) if value is None and key in spec.defaults else value
    if spec.finalise:
        spec.finalise(row, new)
    new["search_text"] = spec.search_text(new)
    return new


def bump(row: dict[str, Any], new: dict[str, Any], at: dt.datetime) -> bool:
    """Give a changed row its next version; False (and no new version) when nothing changed."""
    if new == row:
        return False
    new["version"] = row["version"] + 1
    new["updated_at"] = at
    return True


async def prepare(
    conn: asyncpg.Connection,
    spec: ResourceSpec,
    ctx: Context,
    pairs: list[tuple[dict[str, Any] | None, dict[str, Any]]],
) -> dict[int, CRMError]:
    """The spec's database-backed rules for each (old, new) pair, and the workspace's custom field
    definitions for resources with ``custom_fields``; failures by index."""
    if not pairs:
        return {}
    failures = await custom_fields.check(conn, spec, ctx, pairs)
    if spec.prepare is None:
        return failures
    for i, error in (await spec.prepare(conn, ctx, pairs)).items():
        failures.setdefault(i, error)
    for _, new in pairs:
        new["search_text"] = spec.search_text(new)
    return failures


def events_for(
    spec: ResourceSpec,
    ctx: Context,
    old: dict[str, Any] | None,
    new: dict[str, Any],
    action: str,
    at: dt.datetime,
) -> list[dict[str, Any]]:
    """The change's own event plus those its spec derives (``deal.stage_changed``), one snapshot for all."""
    obj = spec.to_api(new)
    previous = previous_values(spec, old, new) if old is not None else {}
    actions = [action, *(spec.derived_events(old, new) if spec.derived_events else ())]
    return [emit(ctx, f"{spec.object}.{a}", spec.object, new["id"], obj, previous, at) for a in actions]


def previous_values(spec: ResourceSpec, old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    return {k: old[k] for k in (*spec.field_names, "archived_at") if old[k] != new[k]}


def validate(schema: type[BaseModel], data: Any, path: str) -> dict[str, Any]:
    """Validate one batch item the way FastAPI validates a body, with paths under ``path``."""
    try:
        model = schema.model_validate(data)
    except ValidationError as exc:
        errors = [
            FieldError(path + "".join(f"/{p}" for p in e["loc"]), e["msg"])
            for e in exc.errors(include_url=False)
        ]
        raise Unprocessable("The item is not valid", errors) from None
    return model.model_dump(exclude_unset=True)


async def check_references(
    conn: asyncpg.Connection, spec: ResourceSpec, ctx: Context, payloads: list[dict[str, Any]]
) -> dict[int, CRMError]:
    """Referenced ids that do not exist (or are archived), per payload index, in one query per reference."""
    failures: dict[int, CRMError] = {}
    for ref in spec.references:
        # a column holds one id, or a list of ids (``contact_ids``)
        named = [_ids(p.get(ref.column)) for p in payloads]
        wanted = [oid for ids in named for oid in ids]
        if not wanted:
            continue
        found = await repo.existing_ids(conn, ref.table, ctx.workspace_id, wanted)
        for i, ids in enumerate(named):
            bad = [(n, oid) for n, oid in enumerate(ids) if oid not in found]
            if bad and i not in failures:
                many = isinstance(payloads[i].get(ref.column), list)
                failures[i] = Unprocessable(
                    f"{ref.column}: no such object",
                    [
                        FieldError(
                            f"/{ref.column}/{n}" if many else f"/{ref.column}", f"no live {ref.table} object"
                        )
                        for n, _ in bad
                    ],
                )
    return failures


def _ids(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


async def _conflict_for(
    conn: asyncpg.Connection, spec: ResourceSpec, ctx: Context, row: dict[str, Any]
) -> Conflict:
    key = spec.natural_key
    if key and row.get(key.field):
        holders = await repo.fetch_live_by_key(conn, spec, ctx.workspace_id, key.field, [row[key.field]])
        if holders:
            return Conflict(
                f"Another live {spec.object} ({holders[0]['id']}) has this {key.field}",
                [FieldError(f"/{key.field}", "already in use")],
            )
    return Conflict(f"The {spec.object} conflicts with an existing one")


async def create(
    conn: asyncpg.Connection, spec: ResourceSpec, ctx: Context, payload: dict[str, Any]
) -> dict[str, Any]:
    payload = spec.normalise(payload)
    failures = await check_references(conn, spec, ctx, [payload])
    if failures:
        raise failures[0]
    at = now()
    row = new_row(spec, ctx, payload, at)
    failures = await prepare(conn, spec, ctx, [(None, row)])
    if failures:
        raise failures[0]
    _, added = _external_changes(None, row)
    events = events_for(spec, ctx, None, row, "created", at)
    async with _scope(conn, spec):
        written = await repo.write(
            conn, spec, ctx.workspace_id, inserts=[row], events=events, external_added=added
        )
        if row["id"] not in written:
            raise await _conflict_for(conn, spec, ctx, row)
        if spec.after_write is not None:
            await spec.after_write(conn, ctx, [(None, row)])
    return row


def _scope(conn: asyncpg.Connection, spec: ResourceSpec) -> AbstractAsyncContextManager[Any]:
    """A transaction (a savepoint inside the request's) when the spec has upkeep to do after its write,
    so the two commit together; a plain write is one statement and needs none."""
    return conn.transaction() if spec.after_write is not None else nullcontext()


async def get(
    conn: asyncpg.Connection | asyncpg.Pool, spec: ResourceSpec, ctx: Context, oid: uuid.UUID
) -> dict[str, Any]:
    row = await repo.fetch_one(conn, spec, ctx.workspace_id, oid)
    if row is None:
        raise NotFound(f"No {spec.object} with id {oid}")
    if row.get("merged_into") is not None:
        target = row["merged_into"]
        raise Merged(
            f"The {spec.object} {oid} was merged into {target}", target, f"/v1/{spec.url_segment}/{target}"
        )
    return row


def check_not_merged(spec: ResourceSpec, row: dict[str, Any]) -> None:
    """Writes to a merged object are refused with 409 and the survivor's id (reads get a 301)."""
    if row.get("merged_into") is not None:
        raise MergedConflict(
            f"The {spec.object} {row['id']} was merged into {row['merged_into']}; write to that one",
            row["merged_into"],
        )


async def update(
    conn: asyncpg.Connection,
    spec: ResourceSpec,
    ctx: Context,
    oid: uuid.UUID,
    changes: dict[str, Any],
    if_match: int | None,
    event_type: str = "updated",
) -> dict[str, Any]:
    """Read, merge, write with a version check; on a lost race without If-Match, again under a row lock."""
    changes = spec.normalise(changes)
    for name in spec.required:
        if name in changes and changes[name] is None:
            raise Unprocessable(f"{name} cannot be cleared", [FieldError(f"/{name}", "must not be null")])
    if any(changes.get(ref.column) for ref in spec.references):
        failures = await check_references(conn, spec, ctx, [changes])
        if failures:
            raise failures[0]
    # Optimistic first: read, then a version-checked write (two statements, no locks). If another writer
    # got in between and the client did not pin a version, apply again under a row lock, which cannot lose.
    written = await _apply(conn, spec, ctx, oid, changes, if_match, event_type, lock=False)
    if written is not None:
        return written
    if if_match is not None:
        raise PreconditionFailed(f"The {spec.object} changed while this request was applied")
    async with conn.transaction():
        written = await _apply(conn, spec, ctx, oid, changes, None, event_type, lock=True)
    assert written is not None, "a locked row cannot change under us"
    return written


async def _apply(
    conn: asyncpg.Connection,
    spec: ResourceSpec,
    ctx: Context,
    oid: uuid.UUID,
    changes: dict[str, Any],
    if_match: int | None,
    event_type: str,
    lock: bool,
) -> dict[str, Any] | None:
    """One read-merge-write; None when the version moved between the read and the write."""
    row = await repo.fetch_one(conn, spec, ctx.workspace_id, oid, for_update=lock)
    if row is None:
        raise NotFound(f"No {spec.object} with id {oid}")
    check_not_merged(spec, row)
    if if_match is not None and row["version"] != if_match:
        raise PreconditionFailed(f"The {spec.object} is at version {row['version']}, not {if_match}")
    at = now()
    new = merged_row(spec, row, changes, at)
    failures = await prepare(conn, spec, ctx, [(row, new)])
    if failures:
        raise failures[0]
    if not bump(row, new, at):
        return row  # nothing changed: no new version, no event
    removed, added = _external_changes(row, new)
    async with _scope(conn, spec):
        written = await repo.write(
            conn,
            spec,
            ctx.workspace_id,
            updates=[new],
            events=events_for(spec, ctx, row, new, event_type, at),
            external_removed=removed,
            external_added=added,
        )
        if oid in written and spec.after_write is not None:
            await spec.after_write(conn, ctx, [(row, new)])
    return new if oid in written else None


async def archive(
    conn: asyncpg.Connection, spec: ResourceSpec, ctx: Context, oid: uuid.UUID, if_match: int | None
) -> dict[str, Any]:
    row = await repo.fetch_one(conn, spec, ctx.workspace_id, oid)
    if row is None:
        raise NotFound(f"No {spec.object} with id {oid}")
    check_not_merged(spec, row)
    if row["archived_at"] is not None:
        return row
    return await update(conn, spec, ctx, oid, {"archived_at": now()}, if_match, "archived")


async def restore(
    conn: asyncpg.Connection, spec: ResourceSpec, ctx: Context, oid: uuid.UUID, if_match: int | None
) -> dict[str, Any]:
    row = await repo.fetch_one(conn, spec, ctx.workspace_id, oid)
    if row is None:
        raise NotFound(f"No {spec.object} with id {oid}")
    check_not_merged(spec, row)
    if row["archived_at"] is None:
        return row
    return await update(conn, spec, ctx, oid, {"archived_at": None}, if_match, "restored")


def _key_lock(spec: ResourceSpec, ctx: Context, kind: str, *value: str) -> int:
    return locks.key_lock(ctx.workspace_id, spec.name, kind, *value)


async def upsert_by_key(
    conn: asyncpg.Connection, spec: ResourceSpec, ctx: Context, value: str, payload: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    """PUT by natural key: 201 with a new object, or 200 with the updated live one. Concurrent upserts of
    one key queue on an advisory lock, so they end as one object."""
    key = spec.natural_key
    assert key is not None
    value = key.normalise(value)
    if (
        payload.get(key.field) is not None
        and spec.normalise({key.field: payload[key.field]})[key.field] != value
    ):
        raise Unprocessable(
            f"The body's {key.field} differs from the one in the path",
            [FieldError(f"/{key.field}", "differs")],
        )
    payload = {**payload, key.field: value}
    await locks.lock_keys(conn, [_key_lock(spec, ctx, key.field, value)])
    found = await repo.fetch_live_by_key(conn, spec, ctx.workspace_id, key.field, [value])
    if found:
        return 200, await update(conn, spec, ctx, found[0]["id"], payload, None)
    return 201, await create(conn, spec, ctx, validate(spec.create_schema, payload, ""))


async def upsert_by_external_id(
    conn: asyncpg.Connection,
    spec: ResourceSpec,
    ctx: Context,
    source: str,
    external_id: str,
    payload: dict[str, Any],
) -> tuple[int, dict[str, Any]]:
    ids = dict(payload.get("external_ids") or {})
    if ids.get(source, external_id) != external_id:
        raise Unprocessable(
            "The body's external id for this source differs from the path",
            [FieldError(f"/external_ids/{source}", "differs")],
        )
    await locks.lock_keys(conn, [_key_lock(spec, ctx, "external", source, external_id)])
    owners = await repo.external_owners(conn, spec, ctx.workspace_id, [(source, external_id)])
    owner = owners.get((source, external_id))
    if owner is not None:
        row = await get(conn, spec, ctx, owner)
        payload = {**payload, "external_ids": {**row["external_ids"], **ids, source: external_id}}
        return 200, await update(conn, spec, ctx, owner, payload, None)
    payload = {**payload, "external_ids": {**ids, source: external_id}}
    return 201, await create(conn, spec, ctx, validate(spec.create_schema, payload, ""))
