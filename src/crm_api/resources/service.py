"""The rules every resource shares: create, read, update with If-Match, archive, restore, upsert by a
natural key or external id, and batches of up to 500 (``batch``). Each writes through ``writes.apply``, the
one write pipeline; what is here is the reading, matching and checking of a request around it.

Nothing here commits: the request's connection does (``deps``: one statement commits on its own; a
``LockingConn`` transaction commits before the response is sent).
"""

from __future__ import annotations

import datetime as dt
import uuid
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
from . import repository as repo
from . import writes
from .spec import Include, ResourceSpec

MAX_BATCH = 500


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


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


def validate_upsert_create(spec: ResourceSpec, payload: dict[str, Any]) -> dict[str, Any]:
    """An upsert's PATCH body as the create it turns into: a null there means "the default" (on an update
    it clears the field to its default), so it is left out rather than refused by a create schema that
    has no null for fields with a default (``tags``); a required field left out is still a 422 naming it."""
    return validate(spec.create_schema, {k: v for k, v in payload.items() if v is not None}, "")


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
    done = await writes.apply(conn, spec, ctx, [(None, payload)], "created")
    done.raise_first()
    row = done.rows[0]
    if done.lost(0):
        raise await _conflict_for(conn, spec, ctx, row)
    return row


async def get(
    conn: asyncpg.Connection | asyncpg.Pool,
    spec: ResourceSpec,
    ctx: Context,
    oid: uuid.UUID,
    joined: tuple[Include, ...] = (),
) -> dict[str, Any]:
    """The row (404 when there is none, 301 when it was merged), with the ``joined`` relations read in
    the same statement (``includes.joined``)."""
    row = await repo.fetch_one(conn, spec, ctx.workspace_id, oid, joined=joined)
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
    written = await _update_once(conn, spec, ctx, oid, changes, if_match, event_type, lock=False)
    if written is not None:
        return written
    if if_match is not None:
        raise PreconditionFailed(f"The {spec.object} changed while this request was applied")
    async with conn.transaction():
        written = await _update_once(conn, spec, ctx, oid, changes, None, event_type, lock=True)
    assert written is not None, "a locked row cannot change under us"
    return written


async def _update_once(
    conn: asyncpg.Connection,
    spec: ResourceSpec,
    ctx: Context,
    oid: uuid.UUID,
    changes: dict[str, Any],
    if_match: int | None,
    event_type: str,
    lock: bool,
) -> dict[str, Any] | None:
    """One read-merge-write (the row as it was when nothing changed); None when the version moved between
    the read and the write."""
    row = await repo.fetch_one(conn, spec, ctx.workspace_id, oid, for_update=lock)
    if row is None:
        raise NotFound(f"No {spec.object} with id {oid}")
    check_not_merged(spec, row)
    if if_match is not None and row["version"] != if_match:
        raise PreconditionFailed(f"The {spec.object} is at version {row['version']}, not {if_match}")
    done = await writes.apply(conn, spec, ctx, [(row, changes)], event_type)
    done.raise_first()
    return None if done.lost(0) else done.rows[0]


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
    return 201, await create(conn, spec, ctx, validate_upsert_create(spec, payload))


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
    return 201, await create(conn, spec, ctx, validate_upsert_create(spec, payload))
