"""Merging records into a survivor, in the request's transaction.

Order matters: (1) lock the survivor and the merged records (one statement, id order, so two merges that
share records queue instead of deadlocking); (2) archive the merged ones with ``merged_into`` and their
external ids released; (3) write the survivor, filled and holding those external ids; (4) move every
reference, one locked read and one write statement per referencing table. Step 2 comes before 3 because
the live-unique email/domain and the external-id registry would refuse the survivor taking them while the
merged records still hold them (and so would the survivor's unique custom fields check, which runs at its
write). Every write goes through ``writes.apply``, so each changed object has its new version, its event,
its webhooks and its spec's upkeep (a moved won deal's contacts) like any other write. A dry run takes steps
2 and 3 in a savepoint it rolls back, and only counts step 4.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
from sqlalchemy import ColumnElement, Select, Update, and_, any_, func, or_, select, update
from sqlalchemy.dialects.postgresql import ARRAY, UUID

from .. import sql
from ..activities.spec import ACTIVITIES
from ..auth import Context
from ..contacts.spec import CONTACTS
from ..contacts.totals import refresh_contacts
from ..deals.spec import DEALS
from ..errors import Conflict, FieldError, NotFound, Unprocessable
from ..events.emit import emit
from ..resources import repository as repo
from ..resources import writes
from ..resources.service import now
from ..resources.spec import ResourceSpec
from ..tickets.spec import TICKETS

# Consent is a person's own statement: never copied from another record unless ``prefer`` says so.
NOT_FILLED = frozenset(
    {"merged_into", "marketing_consent", "marketing_consent_at", "marketing_consent_source"}
)
# Derived or terminal state, never taken from another record: the order aggregates are recomputed from the
# moved deals after the merge, the score is the scoring workers' (they rescore the survivor), and an erasure
# belongs to the record that was erased.
DERIVED = frozenset({"merged_into", "erased_at", "lifetime_value", "order_count", "score"})
UNPREFERABLE = DERIVED

Remap = Callable[[dict[str, Any]], dict[str, Any]]


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def _swap(ids: list[uuid.UUID], merged: set[uuid.UUID], survivor: uuid.UUID) -> list[uuid.UUID]:
    """An id array with the merged ids replaced by the survivor, each id once, order kept."""
    return list(dict.fromkeys(survivor if i in merged else i for i in ids))


def combine(
    spec: ResourceSpec,
    survivor: dict[str, Any],
    others: list[dict[str, Any]],
    prefer: dict[str, uuid.UUID],
) -> tuple[dict[str, Any], dict[str, uuid.UUID], list[dict[str, Any]]]:
    """(changes to the survivor, field -> record its value came from, external ids dropped)."""
    by_id = {r["id"]: r for r in (survivor, *others)}
    changes: dict[str, Any] = {}
    filled: dict[str, uuid.UUID] = {}
    for name in spec.field_names:
        if name == "external_ids" or name in DERIVED:
            continue
        if name in prefer:
            source = by_id[prefer[name]]
            if source[name] != survivor[name]:
                changes[name], filled[name] = source[name], source["id"]
        elif name == "tags":
            tags = list(dict.fromkeys(t for r in (survivor, *others) for t in r["tags"]))
            if tags != survivor["tags"]:
                changes["tags"] = tags
        elif name == "custom_fields":
            fields: dict[str, Any] = {}
            for r in (*reversed(others), survivor):  # the survivor's keys win, then earlier records'
                fields.update(r["custom_fields"])
            if fields != survivor["custom_fields"]:
                changes["custom_fields"] = fields
        elif name not in NOT_FILLED and _empty(survivor[name]):
            source_row = next((r for r in others if not _empty(r[name])), None)
            if source_row is not None:
                changes[name], filled[name] = source_row[name], source_row["id"]
    # one external id per source: the preferred record's first, then the survivor's, then in ``from`` order
    ranked = [survivor, *others]
    if "external_ids" in prefer:
        first = by_id[prefer["external_ids"]]
        ranked = [first, *(r for r in ranked if r is not first)]
    external: dict[str, Any] = {}
    for r in ranked:
        for source, value in r["external_ids"].items():
            external.setdefault(source, value)
    dropped = [
        {"record": r["id"], "source": s, "external_id": v}
        for r in ranked
        for s, v in r["external_ids"].items()
        if external[s] != v
    ]
    if external != survivor["external_ids"]:
        changes["external_ids"] = external
    return changes, filled, dropped


def _check_prefer(spec: ResourceSpec, prefer: dict[str, uuid.UUID], allowed: set[uuid.UUID]) -> None:
    errors = [
        FieldError(f"/prefer/{name}", "not a field of the record")
        for name in prefer
        if name not in spec.field_names or name in UNPREFERABLE
    ]
    errors += [
        FieldError(f"/prefer/{name}", "must be the survivor or one of from")
        for name, oid in prefer.items()
        if oid not in allowed
    ]
    if errors:
        raise Unprocessable("prefer names unknown fields or records", errors)


@sql.shape
def _locked(spec: ResourceSpec, columns: tuple[str, ...]) -> Select[Any]:
    """The rows any of whose ``columns`` holds one of ``ids`` (an id column: ``= ANY``, an id array:
    ``&&``), locked, in id order."""
    t = sql.table(spec.table)
    ids = sql.param("ids", ARRAY(UUID))

    def holds(name: str) -> ColumnElement[bool]:
        col = t.c[name]
        return col.overlap(ids) if isinstance(col.type, ARRAY) else col == any_(ids)

    return (
        select(*sql.columns(spec.columns, t))
        .where(t.c.workspace_id == sql.param("ws"), or_(*(holds(c) for c in columns)))
        .order_by(t.c.id)
        .with_for_update()
    )


async def _lock(
    conn: asyncpg.Connection,
    spec: ResourceSpec,
    ws: uuid.UUID,
    columns: tuple[str, ...],
    ids: list[uuid.UUID],
) -> list[dict[str, Any]]:
    return [dict(r) for r in await _locked(spec, columns).fetch(conn, ws=ws, ids=ids)]


def _check_written(spec: ResourceSpec, done: writes.Applied) -> None:
    # every row is locked, so a version cannot move; a miss would be a bug, never a silent partial merge
    if any(done.lost(i) for i in done.changed):
        raise Conflict(f"{spec.name} changed during the merge; try again")


async def _move(
    conn: asyncpg.Connection,
    spec: ResourceSpec,
    ctx: Context,
    columns: tuple[str, ...],
    merged: list[uuid.UUID],
    remap: Remap,
    at: dt.datetime,
    dry_run: bool,
) -> int:
    """Point one table's references at the survivor: one locked read, one write (with events, and the
    spec's upkeep: a moved won deal refreshes its contacts). Links only change, so the rules are not run."""
    rows = await _lock(conn, spec, ctx.workspace_id, columns, merged)
    changes = [(row, remap(row)) for row in rows]
    done = await writes.apply(conn, spec, ctx, changes, "updated", at=at, rules=False, dry_run=dry_run)
    _check_written(spec, done)
    return len(done.changed)


_COMMENTS = sql.table("ticket_comments")
_ORDERS = sql.table("orders")


def _requester_comments() -> ColumnElement[bool]:
    c = _COMMENTS
    return and_(
        c.c.workspace_id == sql.param("ws"),
        c.c.author_type == sql.const("requester"),
        c.c.author_id == any_(sql.param("ids", ARRAY(UUID))),
    )


_COMMENTS_COUNT = sql.Query(lambda: select(func.count()).where(_requester_comments()))
_COMMENTS_MOVE = sql.Query(
    lambda: (
        update(_COMMENTS)
        .values(
            author_id=sql.param("survivor", UUID),
            version=_COMMENTS.c.version + 1,
            updated_at=sql.param("at", _COMMENTS.c.updated_at.type),
        )
        .where(_requester_comments())
    )
)


def _orders_of(column: str) -> ColumnElement[bool]:
    return and_(
        _ORDERS.c.workspace_id == sql.param("ws"), _ORDERS.c[column] == any_(sql.param("ids", ARRAY(UUID)))
    )


@sql.shape
def _orders_count(column: str) -> Select[Any]:
    return select(func.count()).select_from(_ORDERS).where(_orders_of(column))


@sql.shape
def _orders_move(column: str) -> Update:
    return update(_ORDERS).values({column: sql.param("survivor", UUID)}).where(_orders_of(column))


async def _move_contact_refs(
    conn: asyncpg.Connection,
    ctx: Context,
    survivor: uuid.UUID,
    merged: list[uuid.UUID],
    at: dt.datetime,
    dry_run: bool,
) -> dict[str, int]:
    gone = set(merged)

    def one(value: uuid.UUID | None) -> uuid.UUID | None:
        return survivor if value in gone else value

    # orders first: a moved won deal refreshes its contacts' lifetime value and order count (the deals'
    # upkeep), which then counts the orders where they end up
    orders_moved = await _move_orders(conn, ctx, "contact_id", survivor, merged, dry_run)
    moved = {
        "deals": await _move(
            conn,
            DEALS,
            ctx,
            ("contact_id", "contact_ids"),
            merged,
            lambda r: {
                "contact_id": one(r["contact_id"]),
                "contact_ids": _swap(r["contact_ids"], gone, survivor),
            },
            at,
            dry_run,
        ),
        "activities": await _move(
            conn,
            ACTIVITIES,
            ctx,
            ("contact_ids",),
            merged,
            lambda r: {"contact_ids": _swap(r["contact_ids"], gone, survivor)},
            at,
            dry_run,
        ),
        "tickets": await _move(
            conn,
            TICKETS,
            ctx,
            ("requester_id",),
            merged,
            lambda r: {"requester_id": survivor},
            at,
            dry_run,
        ),
    }
    # Comments have no update event type: the author is a link, set-based, with a new version and no event.
    # Not through ``writes.apply``, which would read the comments first (a round trip) to emit nothing;
    # comments have no upkeep (``after_write``) to skip.
    if dry_run:
        moved["ticket_comments"] = int(await _COMMENTS_COUNT.fetchval(conn, ws=ctx.workspace_id, ids=merged))
    else:
        status = await _COMMENTS_MOVE.execute(conn, ws=ctx.workspace_id, ids=merged, survivor=survivor, at=at)
        moved["ticket_comments"] = int(status.split()[-1])
    moved["orders"] = orders_moved
    return moved


async def _move_company_refs(
    conn: asyncpg.Connection,
    ctx: Context,
    survivor: uuid.UUID,
    merged: list[uuid.UUID],
    at: dt.datetime,
    dry_run: bool,
) -> dict[str, int]:
    gone = set(merged)
    single = ("company_id",)

    def to_survivor(r: dict[str, Any]) -> dict[str, Any]:
        return {"company_id": survivor}

    return {
        "contacts": await _move(conn, CONTACTS, ctx, single, merged, to_survivor, at, dry_run),
        "deals": await _move(conn, DEALS, ctx, single, merged, to_survivor, at, dry_run),
        "activities": await _move(
            conn,
            ACTIVITIES,
            ctx,
            ("company_ids",),
            merged,
            lambda r: {"company_ids": _swap(r["company_ids"], gone, survivor)},
            at,
            dry_run,
        ),
        "tickets": await _move(conn, TICKETS, ctx, single, merged, to_survivor, at, dry_run),
        "orders": await _move_orders(conn, ctx, "company_id", survivor, merged, dry_run),
    }


async def _move_orders(
    conn: asyncpg.Connection,
    ctx: Context,
    column: str,
    survivor: uuid.UUID,
    merged: list[uuid.UUID],
    dry_run: bool,
) -> int:
    """Orders are the shop's records behind order deals (no API object, no event): relinked set-based, so
    later pushes of an order and the contact's order count follow the survivor."""
    if dry_run:
        return int(await _orders_count(column).fetchval(conn, ws=ctx.workspace_id, ids=merged))
    status = await _orders_move(column).execute(conn, ws=ctx.workspace_id, ids=merged, survivor=survivor)
    return int(status.split()[-1])


async def _archive_and_fill(
    conn: asyncpg.Connection,
    spec: ResourceSpec,
    ctx: Context,
    survivor: dict[str, Any],
    others: list[dict[str, Any]],
    changes: dict[str, Any],
    at: dt.datetime,
    dry_run: bool,
) -> dict[str, Any]:
    """(2) archive the merged records, their external ids released; (3) the survivor, filled: always a new
    version, since the merge itself is a change to it. The survivor's rules run after (2), so a unique
    value it takes from a merged record is no longer held by a live one."""
    sid = survivor["id"]
    archived = await writes.apply(
        conn,
        spec,
        ctx,
        [
            (row, {"archived_at": row["archived_at"] or at, "merged_into": sid, "external_ids": {}})
            for row in others
        ],
        lambda old, new: "archived" if old is not None and old["archived_at"] is None else "updated",
        at=at,
        rules=False,  # the merge's own bookkeeping on records that stop being live
    )
    _check_written(spec, archived)

    def merged_event(old: dict[str, Any] | None, new: dict[str, Any]) -> list[dict[str, Any]]:
        event = emit(ctx, f"{spec.object}.merged", spec.object, new["id"], spec.to_api(new), {}, at)
        event["data"].update(survivor=new["id"], merged=[r["id"] for r in others])
        return [event]

    filled = await writes.apply(
        conn,
        spec,
        ctx,
        [(survivor, changes)],
        "updated" if changes else None,
        at=at,
        events=merged_event,
        always=True,
        dry_run=dry_run,
        # every value the merge sets was held by one of its records: an owner deactivated since stays
        carried=spec.member_columns,
    )
    filled.raise_first()
    _check_written(spec, filled)
    return filled.rows[0]


async def merge(
    conn: asyncpg.Connection,
    spec: ResourceSpec,
    ctx: Context,
    survivor_id: uuid.UUID,
    from_ids: list[uuid.UUID],
    prefer: dict[str, uuid.UUID],
    dry_run: bool,
) -> dict[str, Any]:
    merged = list(dict.fromkeys(from_ids))
    if survivor_id in merged:
        n = from_ids.index(survivor_id)
        raise Conflict(
            f"A {spec.object} cannot be merged into itself", [FieldError(f"/from/{n}", "is the survivor")]
        )
    _check_prefer(spec, prefer, {survivor_id, *merged})
    ws = ctx.workspace_id
    rows = {r["id"]: r for r in await _lock(conn, spec, ws, ("id",), [survivor_id, *merged])}
    if survivor_id not in rows:
        raise NotFound(f"No {spec.object} with id {survivor_id}")
    missing = [n for n, oid in enumerate(from_ids) if oid not in rows]
    if missing:
        raise NotFound(
            f"No {spec.object} with id {from_ids[missing[0]]}",
            [FieldError(f"/from/{n}", f"no such {spec.object}") for n in missing],
        )
    survivor = rows[survivor_id]
    if survivor["merged_into"] is not None:
        raise Unprocessable(
            f"The {spec.object} {survivor_id} was already merged into {survivor['merged_into']}",
            [FieldError("/id", "already merged")],
        )
    if survivor["archived_at"] is not None:
        raise Unprocessable(
            f"The {spec.object} {survivor_id} is archived; restore it before merging into it",
            [FieldError("/id", "archived")],
        )
    done = [n for n, oid in enumerate(from_ids) if rows[oid]["merged_into"] is not None]
    if done:
        raise Unprocessable(
            f"The {spec.object} {from_ids[done[0]]} was already merged",
            [FieldError(f"/from/{n}", "already merged") for n in done],
        )
    others = [rows[oid] for oid in merged]
    at = now()
    changes, filled, dropped = combine(spec, survivor, others, prefer)

    # (2) and (3); a dry run takes them too, in a savepoint it rolls back, so the survivor's rules see what
    # they would see in the merge itself
    preview = conn.transaction() if dry_run else None
    if preview is not None:
        await preview.start()
    try:
        new_survivor = await _archive_and_fill(conn, spec, ctx, survivor, others, changes, at, dry_run)
    finally:
        if preview is not None:
            await preview.rollback()
    before = {(s, str(v)) for s, v in survivor["external_ids"].items()}
    taken = [pair for pair in new_survivor["external_ids"].items() if (pair[0], str(pair[1])) not in before]

    # (4) every reference
    mover = _move_contact_refs if spec.name == "contacts" else _move_company_refs
    moved = await mover(conn, ctx, survivor_id, merged, at, dry_run)
    moved["external_ids"] = len(taken)
    if spec.name == "contacts" and not dry_run:
        # the deals moved, so lifetime value and order count move with them (one set-based refresh)
        await refresh_contacts(conn, ctx, {survivor_id, *merged})
        new_survivor = await repo.fetch_one(conn, spec, ws, survivor_id) or new_survivor
    return {
        "object": "merge",
        "dry_run": dry_run,
        "survivor": spec.to_api(new_survivor),
        "merged": merged,
        "filled": filled,
        "moved": moved,
        "dropped_external_ids": dropped,
    }
