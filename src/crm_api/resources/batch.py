"""Batch create and upsert: up to 500 items, one result per item, a fixed handful of statements.

Statements, whatever the size: reference checks (one per reference), the advisory locks (upsert), the
natural-key and external-id lookups, and one write that inserts, updates and emits for every good item.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal, TypeVar

import asyncpg

from ..auth import Context
from ..errors import Conflict, CRMError, FieldError, Unprocessable
from ..locks import lock_keys
from . import repository as repo
from .service import (
    _external_changes,
    _key_lock,
    bump,
    check_references,
    events_for,
    merged_row,
    new_row,
    now,
    prepare,
    validate,
)
from .spec import ResourceSpec

Mode = Literal["create", "upsert"]
E = TypeVar("E", bound=CRMError)


def _error(exc: CRMError, request_id: str | None) -> dict[str, Any]:
    return {"status": exc.status, "error": exc.body(request_id or "")}


async def run(
    conn: asyncpg.Connection, spec: ResourceSpec, ctx: Context, items: list[Any], mode: Mode
) -> list[dict[str, Any]]:
    results: list[dict[str, Any] | None] = [None] * len(items)
    payloads: dict[int, dict[str, Any]] = {}
    for i, item in enumerate(items):
        try:
            payloads[i] = spec.normalise(validate(spec.create_schema, item, f"/items/{i}"))
        except CRMError as exc:
            results[i] = _error(exc, ctx.request_id)

    order = list(payloads)
    failures = await check_references(conn, spec, ctx, [payloads[i] for i in order])
    for pos, failure in failures.items():
        results[order[pos]] = _error(_at_item(failure, order[pos]), ctx.request_id)
        del payloads[order[pos]]

    key = spec.natural_key
    key_of = {i: p.get(key.field) for i, p in payloads.items()} if key else {}
    ext_of = {
        i: sorted((s, str(v)) for s, v in (p.get("external_ids") or {}).items()) for i, p in payloads.items()
    }

    if mode == "upsert":
        for i in list(payloads):
            if not key_of.get(i) and not ext_of[i]:
                field = key.field if key else "external_ids"
                results[i] = _error(
                    Unprocessable(
                        f"Upsert needs {field} or external_ids to match on",
                        [FieldError(f"/items/{i}/{field}", "required in upsert mode")],
                    ),
                    ctx.request_id,
                )
                del payloads[i]
        locks = [_key_lock(spec, ctx, key.field, v) for i in payloads if key and (v := key_of.get(i))]
        locks += [_key_lock(spec, ctx, "external", s, e) for i in payloads for s, e in ext_of[i][:1]]
        await lock_keys(conn, locks)

    key_values = sorted({v for i in payloads if (v := key_of.get(i))})
    live = await repo.fetch_live_by_key(conn, spec, ctx.workspace_id, key.field, key_values) if key else []
    live_by_key = {r[key.field]: r for r in live} if key else {}
    pairs = sorted({pair for i in payloads for pair in ext_of[i]})
    owners = await repo.external_owners(conn, spec, ctx.workspace_id, pairs)

    # Targets of upserts matched by external id only, fetched in one query.
    targets: dict[int, dict[str, Any]] = {}
    if mode == "upsert":
        by_id: dict[uuid.UUID, dict[str, Any]] = {r["id"]: r for r in live}
        wanted = [owners[ext_of[i][0]] for i in payloads if ext_of[i] and ext_of[i][0] in owners]
        missing = [oid for oid in wanted if oid not in by_id]
        for r in await repo.fetch_by_ids(conn, spec, ctx.workspace_id, missing) if missing else []:
            by_id[r["id"]] = r
        for i in payloads:
            if key and key_of.get(i) in live_by_key:
                targets[i] = live_by_key[key_of[i]]
            elif ext_of[i] and ext_of[i][0] in owners:
                targets[i] = by_id[owners[ext_of[i][0]]]

    at = now()
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    removed_all: list[dict[str, Any]] = []
    added_all: list[dict[str, Any]] = []
    planned: dict[int, tuple[int, dict[str, Any]]] = {}
    claimed_keys: dict[str, uuid.UUID] = {}
    claimed_pairs: dict[tuple[str, str], uuid.UUID] = {}
    touched: set[uuid.UUID] = set()

    rows: dict[int, dict[str, Any]] = {}
    for i, payload in payloads.items():
        target = targets.get(i)
        if target is not None:
            merged_ext = {**target["external_ids"], **(payload.get("external_ids") or {})}
            rows[i] = merged_row(spec, target, {**payload, "external_ids": merged_ext}, at)
        else:
            rows[i] = new_row(spec, ctx, payload, at)
    order = list(rows)
    failures = await prepare(conn, spec, ctx, [(targets.get(i), rows[i]) for i in order])
    for pos, failure in failures.items():
        results[order[pos]] = _error(_at_item(failure, order[pos]), ctx.request_id)
        del rows[order[pos]]

    for i, row in rows.items():
        target = targets.get(i)
        conflict = _conflicts(spec, row, live_by_key, owners, claimed_keys, claimed_pairs, touched)
        if conflict is not None:
            results[i] = _error(_at_item(conflict, i), ctx.request_id)
            continue
        touched.add(row["id"])
        if key and row.get(key.field):
            claimed_keys[row[key.field]] = row["id"]
        for pair in _pairs(row):
            claimed_pairs[pair] = row["id"]
        if target is None:
            inserts.append(row)
            _, added = _external_changes(None, row)
            events += events_for(spec, ctx, None, row, "created", at)
            planned[i] = (201, row)
        elif not bump(target, row, at):
            results[i] = {"status": 200, "object": spec.to_api(row)}
            continue
        else:
            updates.append(row)
            removed, added = _external_changes(target, row)
            removed_all += removed
            events += events_for(spec, ctx, target, row, "updated", at)
            planned[i] = (200, row)
        added_all += added

    written: set[uuid.UUID] = set()
    if planned:
        written = await repo.write(
            conn,
            spec,
            ctx.workspace_id,
            inserts=inserts,
            updates=updates,
            events=events,
            external_removed=removed_all,
            external_added=added_all,
        )
    if spec.after_write is not None and written:
        done = [(targets.get(i), row) for i, (_, row) in planned.items() if row["id"] in written]
        await spec.after_write(conn, ctx, done)
    for i, (status, row) in planned.items():
        if row["id"] in written:
            results[i] = {"status": status, "object": spec.to_api(row)}
        else:
            lost = Conflict(f"The {spec.object} was changed or created concurrently; retry this item")
            results[i] = _error(lost, ctx.request_id)
    return [r for r in results if r is not None]


def _pairs(row: dict[str, Any]) -> list[tuple[str, str]]:
    return [(s, str(v)) for s, v in (row.get("external_ids") or {}).items()]


def _conflicts(
    spec: ResourceSpec,
    row: dict[str, Any],
    live_by_key: dict[str, dict[str, Any]],
    owners: dict[tuple[str, str], uuid.UUID],
    claimed_keys: dict[str, uuid.UUID],
    claimed_pairs: dict[tuple[str, str], uuid.UUID],
    touched: set[uuid.UUID],
) -> Conflict | None:
    """A uniqueness clash with the database or with an earlier item of the same batch."""
    oid = row["id"]
    if oid in touched:
        return Conflict(f"An earlier item of this batch already writes this {spec.object}")
    key = spec.natural_key
    if key and (value := row.get(key.field)):
        holder = live_by_key.get(value)
        if (holder is not None and holder["id"] != oid) or claimed_keys.get(value, oid) != oid:
            return Conflict(
                f"Another {spec.object} has this {key.field}", [FieldError(f"/{key.field}", "in use")]
            )
    for pair in _pairs(row):
        if owners.get(pair, oid) != oid or claimed_pairs.get(pair, oid) != oid:
            return Conflict(
                f"External id {pair[0]}={pair[1]} belongs to another {spec.object}",
                [FieldError(f"/external_ids/{pair[0]}", "in use")],
            )
    return None


def _at_item(error: E, index: int) -> E:
    """Point a conflict's field paths at the batch item."""
    error.errors = [FieldError(f"/items/{index}{e.path}", e.message) for e in error.errors]
    return error
