"""All SQL for spec-described resources. Rows travel as dicts of column values.

Writes go through one statement built from data-modifying CTEs: inserts, version-checked updates, their
events and external-id changes commit together, for one object or a batch of 500, in one round trip.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, Literal

import asyncpg
from fastapi import Response
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Select,
    Table,
    Text,
    any_,
    column,
    delete,
    exists,
    func,
    literal,
    select,
    true,
    tuple_,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID, insert
from sqlalchemy.sql.selectable import TableValuedAlias

from .. import idempotency, jsonutil, sql
from ..errors import Conflict, FieldError, Unprocessable
from ..events.store import events_cte, fanout, recordset
from ..pagination import Sort
from . import related
from .exprs import Expr, Params, column_ref
from .spec import Include, ResourceSpec


def _table(spec: ResourceSpec) -> Table:
    return sql.table(spec.table)


@sql.shape
def _by_ids(spec: ResourceSpec) -> Select[Any]:
    t = _table(spec)
    return select(*sql.columns(spec.columns, t)).where(
        t.c.workspace_id == sql.param("ws"), t.c.id == any_(sql.param("ids", ARRAY(UUID)))
    )


@sql.shape
def _one(spec: ResourceSpec, for_update: bool) -> Select[Any]:
    t = _table(spec)
    stmt = select(*sql.columns(spec.columns, t)).where(
        t.c.workspace_id == sql.param("ws"), t.c.id == sql.param("id")
    )
    return stmt.with_for_update() if for_update else stmt


@sql.shape
def _one_joined(spec: ResourceSpec, joined: tuple[Include, ...]) -> Select[Any]:
    """``_one`` with the ``joined`` relations beside the row, as ``_page_rows`` reads them."""
    t = _table(spec)
    shown = [related.relation_json(t, i).label(related.JOINED + i.name) for i in joined]
    return select(*sql.columns(spec.columns, t), *shown).where(
        t.c.workspace_id == sql.param("ws"), t.c.id == sql.param("id")
    )


@sql.shape
def _live_by_key(spec: ResourceSpec, column: str) -> Select[Any]:
    t = _table(spec)
    return select(*sql.columns(spec.columns, t)).where(
        t.c.workspace_id == sql.param("ws"),
        t.c[column] == any_(sql.param("values", ARRAY(Text))),
        t.c.archived_at.is_(None),
    )


@sql.shape
def _live_ids(table: str) -> Select[Any]:
    t = sql.table(table)
    return select(t.c.id).where(
        t.c.workspace_id == sql.param("ws"),
        t.c.id == any_(sql.param("ids", ARRAY(UUID))),
        t.c.archived_at.is_(None),
    )


def _external_owners() -> Select[Any]:
    x = sql.table("external_ids")
    wanted = (
        func.unnest(sql.param("sources", ARRAY(Text)), sql.param("external_ids", ARRAY(Text)))
        .table_valued("source", "external_id")
        .render_derived(name="wanted")
    )
    return select(x.c.source, x.c.external_id, x.c.object_id).where(
        x.c.workspace_id == sql.param("ws"),
        x.c.object_type == sql.param("object_type"),
        tuple_(x.c.source, x.c.external_id).in_(select(wanted.c.source, wanted.c.external_id)),
    )


_EXTERNAL_OWNERS = sql.Query(_external_owners)


@sql.shape
def _children(spec: ResourceSpec, fk: str, count: int) -> Select[Any]:
    """Up to ``count`` live rows per parent id whose ``fk`` holds it, newest first, for a whole page of
    parents in one statement: a lateral subquery per parent, each one range of the
    ``(workspace_id, <fk>, created_at, id)`` index."""
    t = _table(spec)
    parent = (
        func.unnest(sql.param("ids", ARRAY(UUID)))
        .table_valued(column("id", UUID))
        .render_derived(name="parent")
    )
    rows = (
        select(*sql.columns(spec.columns, t))
        .where(t.c.workspace_id == sql.param("ws"), t.c[fk] == parent.c.id, t.c.archived_at.is_(None))
        .order_by(t.c.created_at.desc(), t.c.id.desc())
        .limit(count)
        .lateral("child")
    )
    return select(parent.c.id.label("parent_id"), *rows.c).select_from(parent.join(rows, true()))


async def fetch_by_ids(
    conn: asyncpg.Connection | asyncpg.Pool,
    spec: ResourceSpec,
    workspace_id: uuid.UUID,
    ids: Sequence[uuid.UUID],
) -> list[dict[str, Any]]:
    return [dict(r) for r in await _by_ids(spec).fetch(conn, ws=workspace_id, ids=list(ids))]


async def fetch_records_by_ids(
    conn: asyncpg.Connection | asyncpg.Pool,
    spec: ResourceSpec,
    workspace_id: uuid.UUID,
    ids: Sequence[uuid.UUID],
) -> list[asyncpg.Record]:
    """``fetch_by_ids`` as the driver's records, for a reader that only converts them (``spec.to_api``)."""
    return await _by_ids(spec).fetch(conn, ws=workspace_id, ids=list(ids))


async def fetch_one(
    conn: asyncpg.Connection | asyncpg.Pool,
    spec: ResourceSpec,
    workspace_id: uuid.UUID,
    object_id: uuid.UUID,
    for_update: bool = False,
    joined: tuple[Include, ...] = (),
) -> dict[str, Any] | None:
    """The row, with the ``joined`` relations' JSON (``related.relation_json``) in the same statement."""
    stmt = _one_joined(spec, joined) if joined else _one(spec, for_update)
    row = await stmt.fetchrow(conn, ws=workspace_id, id=object_id)
    return dict(row) if row is not None else None


async def fetch_children(
    conn: asyncpg.Connection | asyncpg.Pool,
    spec: ResourceSpec,
    workspace_id: uuid.UUID,
    fk: str,
    parent_ids: Sequence[uuid.UUID],
    count: int,
) -> list[dict[str, Any]]:
    """``_children``: each row with its ``parent_id``."""
    rows = await _children(spec, fk, count).fetch(conn, ws=workspace_id, ids=list(parent_ids))
    return [dict(r) for r in rows]


async def fetch_live_by_key(
    conn: asyncpg.Connection, spec: ResourceSpec, workspace_id: uuid.UUID, column: str, values: Sequence[str]
) -> list[dict[str, Any]]:
    rows = await _live_by_key(spec, column).fetch(conn, ws=workspace_id, values=list(values))
    return [dict(r) for r in rows]


async def external_owners(
    conn: asyncpg.Connection, spec: ResourceSpec, workspace_id: uuid.UUID, pairs: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], uuid.UUID]:
    """Which object holds each (source, external id) now."""
    if not pairs:
        return {}
    rows = await _EXTERNAL_OWNERS.fetch(
        conn,
        ws=workspace_id,
        object_type=spec.object,
        sources=[p[0] for p in pairs],
        external_ids=[p[1] for p in pairs],
    )
    return {(r["source"], r["external_id"]): r["object_id"] for r in rows}


async def existing_ids(
    conn: asyncpg.Connection, table: str, workspace_id: uuid.UUID, ids: Sequence[uuid.UUID]
) -> set[uuid.UUID]:
    rows = await _live_ids(table).fetch(conn, ws=workspace_id, ids=list(set(ids)))
    return {r["id"] for r in rows}


def _id_records(name: str) -> TableValuedAlias:
    """``jsonb_to_recordset(:name) AS name(object_id uuid, source text, external_id text)``."""
    fn = func.jsonb_to_recordset(sql.param(name, JSONB))
    return fn.table_valued(
        column("object_id", UUID), column("source", Text), column("external_id", Text)
    ).render_derived(name=name, with_types=True)


Folded = Literal["create", "update"] | None


@sql.shape
def _write_stmt(spec: ResourceSpec, folded: Folded = None) -> Select[Any]:
    """Rows, events, deliveries and external ids in one statement. ``folded`` adds a folded
    Idempotency-Key record (see ``idempotency``): for a ``"create"``, the key is claimed first and the row
    goes in only if the claim took (a unique key it hits is then an error, not a skip: the record must not
    outlive a row that was not written) and the key's lock is released; for an ``"update"``, the record goes
    in only if the row did."""
    t = _table(spec)
    xt = sql.table("external_ids")
    ws = sql.param("ws")
    object_type = sql.param("object_type")
    inserted = recordset("inserts", spec.table, "inserted")
    claim = idempotency.record_insert().cte("claim") if folded == "create" else None
    rows = select(*sql.columns(spec.columns, inserted))
    if claim is not None:
        adding = insert(t).from_select(list(spec.columns), rows.where(exists(select(claim))))
    else:
        adding = insert(t).from_select(list(spec.columns), rows).on_conflict_do_nothing()
    ins = adding.returning(t.c.id).cte("ins")
    updated = recordset("updates", spec.table, "x")
    assigned = [c for c in spec.columns if c not in ("workspace_id", "id", "created_at")]
    upd = (
        update(t)
        .values({c: updated.c[c] for c in assigned})
        .where(t.c.workspace_id == ws, t.c.id == updated.c.id, t.c.version == updated.c.version - 1)
        .returning(t.c.id)
        .cte("upd")
    )
    ok = union_all(select(ins.c.id), select(upd.c.id)).cte("ok")
    ev = events_cte("events", lambda e: e.c.object_id.in_(select(ok.c.id)))
    removed = _id_records("external_removed")
    xdel = (
        delete(xt)
        .where(
            xt.c.workspace_id == ws,
            xt.c.object_type == object_type,
            xt.c.object_id == removed.c.object_id,
            xt.c.source == removed.c.source,
            xt.c.external_id == removed.c.external_id,
            removed.c.object_id.in_(select(upd.c.id)),
        )
        .cte("xdel")
    )
    added = _id_records("external_added")
    xins = (
        insert(xt)
        .from_select(
            ["workspace_id", "object_type", "source", "external_id", "object_id"],
            select(ws, object_type, added.c.source, added.c.external_id, added.c.object_id).where(
                added.c.object_id.in_(select(ok.c.id))
            ),
        )
        .cte("xins")
    )
    ctes = [ev, fanout(ev).cte("fanout"), xdel, xins]
    if folded is None:
        return select(ok.c.id).add_cte(*ctes)
    if folded == "update":
        claim = idempotency.record_insert(exists(select(ok.c.id))).cte("claim")
    assert claim is not None
    # one row whatever was written, so the flags below are always read (and the unlock always runs)
    one = select(literal(1).label("one")).subquery("one")
    flags: list[ColumnElement[Any]] = [
        select(func.count()).select_from(claim).scalar_subquery().label("claimed")
    ]
    if folded == "create":
        flags.append(func.pg_advisory_unlock(sql.param("lock", BigInteger)).label("unlocked"))
    return select(ok.c.id, *flags).select_from(one.outerjoin(ok, true())).add_cte(claim, *ctes)


def write_statement(spec: ResourceSpec) -> sql.Compiled:
    """The resource's write statement, compiled (tests read it)."""
    return _write_stmt(spec)


def read_statements(spec: ResourceSpec) -> list[sql.Compiled]:
    """The resource's fixed reads, compiled (tests read them)."""
    reads = [_by_ids(spec), _one(spec, False), _one(spec, True), _live_ids(spec.table)]
    if spec.natural_key is not None:
        reads.append(_live_by_key(spec, spec.natural_key.field))
    return reads


async def write(
    conn: asyncpg.Connection,
    spec: ResourceSpec,
    workspace_id: uuid.UUID,
    *,
    inserts: Sequence[dict[str, Any]] = (),
    updates: Sequence[dict[str, Any]] = (),
    events: Sequence[dict[str, Any]] = (),
    external_removed: Sequence[dict[str, Any]] = (),
    external_added: Sequence[dict[str, Any]] = (),
    record: idempotency.Record | None = None,
    response: Response | None = None,
) -> set[uuid.UUID]:
    """Apply the rows; return the ids written. An insert that hit a unique key, or an update whose
    version moved underneath it, is left out of the result (and so are its event and external ids).

    With a folded Idempotency-Key ``record`` and the ``response`` it stores, the record goes into the same
    statement (one object: a create or an update); a create whose key a twin claimed first raises
    ``idempotency.Taken`` and writes nothing."""
    params: dict[str, Any] = {
        "ws": workspace_id,
        "inserts": jsonutil.dumps_str(inserts),
        "updates": jsonutil.dumps_str(updates),
        "events": jsonutil.dumps_str(events),
        "external_removed": jsonutil.dumps_str(external_removed),
        "object_type": spec.object,
        "external_added": jsonutil.dumps_str(external_added),
    }
    folded: Folded = None
    if record is not None and response is not None:
        folded = "create" if inserts else "update"
        params.update(record.params(response))
    try:
        rows = await _write_stmt(spec, folded).fetch(conn, **params)
    except asyncpg.UniqueViolationError as exc:
        raise _unique_conflict(spec, exc) from None
    except asyncpg.ForeignKeyViolationError as exc:
        raise Unprocessable(
            "A referenced object does not exist", [FieldError("/" + _fk_column(exc), "no such object")]
        ) from None
    if record is None or folded is None:
        return {r["id"] for r in rows}
    if folded == "create":
        record.unlocked = True
        if not rows[0]["claimed"]:
            raise idempotency.Taken()
    record.saved = bool(rows[0]["claimed"])
    return {r["id"] for r in rows if r["id"] is not None}


def _unique_conflict(spec: ResourceSpec, exc: asyncpg.UniqueViolationError) -> Conflict:
    constraint = getattr(exc, "constraint_name", "") or ""
    if constraint.startswith("pk_external_ids"):
        return Conflict(
            "An external id is already used by another object", [FieldError("/external_ids", "taken")]
        )
    if constraint.startswith("custom_fields."):  # raised by the unique custom field trigger
        key = constraint.removeprefix("custom_fields.")
        return Conflict(
            f"Another live {spec.object} has this value of {key}",
            [FieldError(f"/custom_fields/{key}", "already in use")],
        )
    if spec.natural_key and spec.natural_key.field in constraint:
        key = spec.natural_key.field
        return Conflict(
            f"Another live {spec.object} has this {key}", [FieldError(f"/{key}", "already in use")]
        )
    return Conflict("A unique value is already in use")


def _fk_column(exc: asyncpg.ForeignKeyViolationError) -> str:
    detail = getattr(exc, "detail", "") or ""
    # "Key (workspace_id, company_id)=(...) is not present in table ..."
    inside = detail.partition("(")[2].partition(")")[0]
    columns = [c.strip() for c in inside.split(",") if c.strip() and c.strip() != "workspace_id"]
    # a composite key names the object by its last id: (pipeline_id, stage_id, status) is the stage
    ids = [c for c in columns if c.endswith("_id")]
    return (ids or columns or ["id"])[-1]


_PAGES = sql.Shapes(2048)


def _keyset(spec: ResourceSpec, column: str, descending: bool, value: Expr, row_id: Expr) -> Expr:
    """``(column, id) < (value, id)`` (``>`` ascending): where the previous page stopped."""
    col = column_ref(spec, column)
    ident = column_ref(spec, "id")
    op = "<" if descending else ">"
    return Expr(
        ("after", col.key, op, value.key, row_id.key),
        lambda: tuple_(col.build(), ident.build()).op(op)(tuple_(value.build(), row_id.build())),
    )


async def _page_rows(
    conn: Any,
    spec: ResourceSpec,
    params: Params,
    where: list[Expr],
    order: tuple[str, ...],
    desc: bool,
    count: int,
    joined: tuple[Include, ...] = (),
) -> list[asyncpg.Record]:
    """``count`` rows meeting every condition, ordered by ``order`` (each descending when ``desc``).
    ``joined`` (relations to resources) are read in the same statement, one round trip: the page first
    (its own plan, limited), then each relation as JSON text for the page's rows alone
    (``related.relation_json``)."""
    shown = tuple((i.name, i.column, i.target) for i in joined)
    key = ("page", spec.table, tuple(w.key for w in where), order, desc, count, shown)

    def build() -> Select[Any]:
        t = _table(spec)
        columns = [t.c[c].desc() if desc else t.c[c].asc() for c in order]
        stmt = select(*sql.columns(spec.columns, t)).where(*(w.build() for w in where))
        stmt = stmt.order_by(*columns).limit(count)
        if not joined:
            return stmt
        page = stmt.subquery("page")
        again = [page.c[c].desc() if desc else page.c[c].asc() for c in order]
        shown = [related.relation_json(page, i).label(related.JOINED + i.name) for i in joined]
        return select(*page.c, *shown).order_by(*again)

    # the driver's records as they are: the page only reads them by column name (``spec.to_api``, the
    # cursor), and a dict copy of each of 51 rows was a tenth of a list's CPU
    return await _PAGES.get(key, build).fetch(conn, **params.values)


async def list_rows(
    conn: asyncpg.Connection | asyncpg.Pool,
    spec: ResourceSpec,
    params: Params,
    conditions: list[Expr],
    sort: Sort,
    after: tuple[Any, uuid.UUID] | None,
    limit: int,
    joined: tuple[Include, ...] = (),
) -> list[asyncpg.Record]:
    """One keyset page (``limit + 1`` rows, so the caller knows whether there is more), with the
    ``joined`` relations' rows (``_page_rows``)."""
    if sort.column in spec.nullable_sorts:
        return await _list_nullable(conn, spec, params, conditions, sort, after, limit, joined)
    where = list(conditions)
    if after is not None:
        pg_type = spec.field_type(sort.column) or "text"
        value = params.add(after[0], pg_type)
        where.append(_keyset(spec, sort.column, sort.descending, value, params.add(after[1], "uuid")))
    order = (sort.column, "id")
    return await _page_rows(conn, spec, params, where, order, sort.descending, int(limit) + 1, joined)


async def _list_nullable(
    conn: asyncpg.Connection | asyncpg.Pool,
    spec: ResourceSpec,
    params: Params,
    conditions: list[Expr],
    sort: Sort,
    after: tuple[Any, uuid.UUID] | None,
    limit: int,
    joined: tuple[Include, ...],
) -> list[asyncpg.Record]:
    """A page over a column that may be null, in PostgreSQL's order (nulls last ascending, first
    descending). A row comparison with a null is never true, so the rows with a value and the rows without
    are walked as two index ranges, one after the other, each a keyset query of its own."""
    col, desc = sort.column, sort.descending
    pg_type = spec.field_type(col) or "text"
    in_nulls = after is not None and after[0] is None  # the cursor stopped among the nulls
    column = column_ref(spec, col)
    ident = column_ref(spec, "id")

    def nulls() -> tuple[list[Expr], Params]:
        p = Params(**params.values)
        where = [*conditions, Expr(("null", column.key), lambda: column.build().is_(None))]
        if in_nulls:
            assert after is not None
            row_id = p.add(after[1], "uuid")
            op = "<" if desc else ">"
            where.append(Expr(("id", op, row_id.key), lambda: ident.build().op(op)(row_id.build())))
        return where, p

    def values() -> tuple[list[Expr], Params]:
        p = Params(**params.values)
        if after is not None and not in_nulls:
            value, row_id = p.add(after[0], pg_type), p.add(after[1], "uuid")
            return [*conditions, _keyset(spec, col, desc, value, row_id)], p
        return [*conditions, Expr(("notnull", column.key), lambda: column.build().is_not(None))], p

    wanted = int(limit) + 1
    if desc:  # nulls first, then values
        rows: list[asyncpg.Record] = []
        if after is None or in_nulls:
            where, p = nulls()
            rows = await _page_rows(conn, spec, p, where, ("id",), desc, wanted, joined)
        if len(rows) < wanted:
            where, p = values()  # all of them: the nulls came first
            rows += await _page_rows(conn, spec, p, where, (col, "id"), desc, wanted - len(rows), joined)
        return rows
    rows = []
    if not in_nulls:
        where, p = values()
        rows = await _page_rows(conn, spec, p, where, (col, "id"), desc, wanted, joined)
    if len(rows) < wanted:
        where, p = nulls()
        rows += await _page_rows(conn, spec, p, where, ("id",), desc, wanted - len(rows), joined)
    return rows
