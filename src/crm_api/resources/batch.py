"""Batch create and upsert: up to 500 items, one result per item, a fixed handful of statements.

Statements, whatever the size: reference checks (one per reference), the advisory locks (upsert), the
natural-key and external-id lookups, then ``writes.apply`` with every item: its rules (one query each) and
one write that inserts, updates and emits for every good item.

Items are written as if one after another. In a create batch, an item claiming a key an earlier item
claimed is a 409. In an upsert batch, an item naming the object an earlier item names (the same key, or
the same stored object) updates what the earlier one wrote: the lookups and the write run again for the
items from there on (a second round, only for a batch that repeats itself).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import asyncpg

from ..auth import Context
from ..errors import Conflict, CRMError, FieldError, Unprocessable
from ..locks import lock_keys
from . import repository as repo
from . import writes
from .service import _key_lock, check_references, validate
from .spec import ResourceSpec

Mode = Literal["create", "upsert"]
E = TypeVar("E", bound=CRMError)


def _error(exc: CRMError, request_id: str | None) -> dict[str, Any]:
    return {"status": exc.status, "error": exc.body(request_id or "")}


@dataclass
class Outcome:
    results: list[dict[str, Any]]
    """One per item, in order: ``{"status", "object"}`` or ``{"status", "error"}``."""
    unchanged: set[int]
    """Items that matched an object and changed nothing (a 200 with no new version and no event)."""
    lost: set[int] = field(default_factory=set)
    """Items the write statement did not write: the object changed, or its key was taken, concurrently
    (their results are 409s)."""


async def run(
    conn: asyncpg.Connection, spec: ResourceSpec, ctx: Context, items: list[Any], mode: Mode
) -> list[dict[str, Any]]:
    return (await run_items(conn, spec, ctx, items, mode)).results


async def run_items(
    conn: asyncpg.Connection,
    spec: ResourceSpec,
    ctx: Context,
    items: list[Any],
    mode: Mode,
    *,
    dry_run: bool = False,
    matched: dict[int, dict[str, Any]] | None = None,
    validated: bool = False,
) -> Outcome:
    """``run``, telling the unchanged items apart; ``dry_run`` judges every item and writes nothing (an
    item repeating an earlier item's new key is judged as a create again: nothing was written to update).
    ``matched`` (upserts): the caller matched the items itself (by a unique custom field), holding the
    matched keys' locks and naming each object once; the items it gives a row for update that row, the
    others create. ``validated``: the items are payloads the caller already validated against the create
    schema and normalised (an import does it for the next chunk while this one is written)."""
    results: list[dict[str, Any] | None] = [None] * len(items)
    payloads: dict[int, dict[str, Any]] = {}
    for i, item in enumerate(items):
        if validated:
            payloads[i] = item
            continue
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
    batch = _Batch(
        spec,
        ctx,
        mode,
        {i: p.get(key.field) for i, p in payloads.items()} if key else {},
        {
            i: sorted((s, str(v)) for s, v in (p.get("external_ids") or {}).items())
            for i, p in payloads.items()
        },
        results,
        dry_run,
        matched=matched,
    )

    if mode == "upsert" and matched is None:
        for i in list(payloads):
            if not batch.key_of.get(i) and not batch.ext_of[i]:
                name = key.field if key else "external_ids"
                results[i] = _error(
                    Unprocessable(
                        f"Upsert needs {name} or external_ids to match on",
                        [FieldError(f"/items/{i}/{name}", "required in upsert mode")],
                    ),
                    ctx.request_id,
                )
                del payloads[i]
        locks = [_key_lock(spec, ctx, key.field, v) for i in payloads if key and (v := batch.key_of.get(i))]
        locks += [_key_lock(spec, ctx, "external", s, e) for i in payloads for s, e in batch.ext_of[i][:1]]
        await lock_keys(conn, locks)

    # An upsert naming an object an earlier item wrote updates what that item left: the items from there
    # on go to a next round (only when an item repeats an object: one round as a rule).
    pending = list(payloads)
    while pending:
        pending = await batch.write(conn, {i: payloads[i] for i in pending})
    return Outcome([r for r in results if r is not None], batch.unchanged, batch.lost)


@dataclass
class _Batch:
    spec: ResourceSpec
    ctx: Context
    mode: Mode
    key_of: dict[int, Any]
    """Each item's natural key value (None without one)"""
    ext_of: dict[int, list[tuple[str, str]]]
    """Each item's external id pairs, sorted: an upsert matches on the first one"""
    results: list[dict[str, Any] | None]
    dry_run: bool = False
    unchanged: set[int] = field(default_factory=set)
    lost: set[int] = field(default_factory=set)
    matched: dict[int, dict[str, Any]] | None = None
    """Targets the caller matched (``run_items``)."""

    async def write(self, conn: asyncpg.Connection, payloads: dict[int, dict[str, Any]]) -> list[int]:
        """Write the items up to the first that names an object an earlier one names (upserts); return
        the items left for the next round."""
        spec, ctx, key, key_of, ext_of = self.spec, self.ctx, self.spec.natural_key, self.key_of, self.ext_of
        key_values = sorted({v for i in payloads if (v := key_of.get(i))})
        live = (
            await repo.fetch_live_by_key(conn, spec, ctx.workspace_id, key.field, key_values) if key else []
        )
        live_by_key = {r[key.field]: r for r in live} if key else {}
        pairs = sorted({pair for i in payloads for pair in ext_of[i]})
        owners = await repo.external_owners(conn, spec, ctx.workspace_id, pairs)

        # Targets of upserts matched by external id only, fetched in one query.
        targets: dict[int, dict[str, Any]] = {}
        rest: list[int] = []
        if self.mode == "upsert" and self.matched is not None:
            targets = {i: self.matched[i] for i in payloads if i in self.matched}
        elif self.mode == "upsert":
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
            rest = _repeats(payloads, key_of, ext_of, targets)
            payloads = {i: p for i, p in payloads.items() if i not in rest}

        claimed_keys: dict[str, uuid.UUID] = {}
        claimed_pairs: dict[tuple[str, str], uuid.UUID] = {}
        touched: set[uuid.UUID] = set()

        def admit(pos: int, old: dict[str, Any] | None, row: dict[str, Any]) -> CRMError | None:
            """Refuse a clash with the database or an earlier item; otherwise the row claims its keys."""
            conflict = _conflicts(spec, row, live_by_key, owners, claimed_keys, claimed_pairs, touched)
            if conflict is not None:
                return conflict
            touched.add(row["id"])
            if key and row.get(key.field):
                claimed_keys[row[key.field]] = row["id"]
            for pair in _pairs(row):
                claimed_pairs[pair] = row["id"]
            return None

        changes: list[tuple[dict[str, Any] | None, dict[str, Any]]] = []
        for i, payload in payloads.items():
            target = targets.get(i)
            if target is not None:
                merged_ext = {**target["external_ids"], **(payload.get("external_ids") or {})}
                changes.append((target, {**payload, "external_ids": merged_ext}))
            else:
                changes.append((None, payload))
        order = list(payloads)
        done = await writes.apply(
            conn,
            spec,
            ctx,
            changes,
            lambda old, new: "created" if old is None else "updated",
            admit=admit,
            dry_run=self.dry_run,
        )
        for pos, failure in done.failures.items():
            self.results[order[pos]] = _error(_at_item(failure, order[pos]), ctx.request_id)
        for pos, row in done.rows.items():
            i = order[pos]
            if done.lost(pos):
                lost = Conflict(f"The {spec.object} was changed or created concurrently; retry this item")
                self.results[i] = _error(lost, ctx.request_id)
                self.lost.add(i)
            else:
                if pos not in done.changed_set:
                    self.unchanged.add(i)
                self.results[i] = {
                    "status": 201 if targets.get(i) is None else 200,
                    "object": spec.to_api(row),
                }
        return rest


def _repeats(
    payloads: dict[int, dict[str, Any]],
    key_of: dict[int, Any],
    ext_of: dict[int, list[tuple[str, str]]],
    targets: dict[int, dict[str, Any]],
) -> list[int]:
    """The items from the first one that names an object an earlier item names (by the key it matches
    on, or by the stored object it matches), in order."""
    seen: set[Any] = set()
    items = list(payloads)
    for n, i in enumerate(items):
        names = {("key", key_of[i]) if key_of.get(i) else ("external", ext_of[i][0])}
        if i in targets:
            names.add(("object", targets[i]["id"]))
        if names & seen:
            return items[n:]
        seen |= names
    return []


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
