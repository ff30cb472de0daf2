"""All SQL for spec-described resources. Rows travel as dicts of column values.

Writes go through one statement built from data-modifying CTEs: inserts, version-checked updates, their
events and external-id changes commit together, for one object or a batch of 500, in one round trip.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg

from .. import jsonutil
from ..errors import Conflict, FieldError, Unprocessable
from ..events.store import FANOUT_SQL, insert_events
from ..pagination import Sort
from ..sqlparams import Params
from .spec import ResourceSpec


def _select(spec: ResourceSpec) -> str:
    return ", ".join(spec.columns)


async def fetch_by_ids(
    conn: asyncpg.Connection, spec: ResourceSpec, workspace_id: uuid.UUID, ids: Sequence[uuid.UUID]
) -> list[dict[str, Any]]:
    sql = f"SELECT {_select(spec)} FROM {spec.table} WHERE workspace_id = $1 AND id = ANY($2::uuid[])"
    return [dict(r) for r in await conn.fetch(sql, workspace_id, list(ids))]


async def fetch_one(
    conn: asyncpg.Connection | asyncpg.Pool,
    spec: ResourceSpec,
    workspace_id: uuid.UUID,
    object_id: uuid.UUID,
    for_update: bool = False,
) -> dict[str, Any] | None:
    sql = f"SELECT {_select(spec)} FROM {spec.table} WHERE workspace_id = $1 AND id = $2"
    if for_update:
        sql += " FOR UPDATE"
    row = await conn.fetchrow(sql, workspace_id, object_id)
    return dict(row) if row is not None else None


async def fetch_live_by_key(
    conn: asyncpg.Connection, spec: ResourceSpec, workspace_id: uuid.UUID, column: str, values: Sequence[str]
) -> list[dict[str, Any]]:
    sql = (
        f"SELECT {_select(spec)} FROM {spec.table} "
        f"WHERE workspace_id = $1 AND {column} = ANY($2::text[]) AND archived_at IS NULL"
    )
    return [dict(r) for r in await conn.fetch(sql, workspace_id, list(values))]


async def external_owners(
    conn: asyncpg.Connection, spec: ResourceSpec, workspace_id: uuid.UUID, pairs: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], uuid.UUID]:
    """Which object holds each (source, external id) now."""
    if not pairs:
        return {}
    rows = await conn.fetch(
        "SELECT source, external_id, object_id FROM external_ids "
        "WHERE workspace_id = $1 AND object_type = $2 "
        "AND (source, external_id) IN (SELECT * FROM unnest($3::text[], $4::text[]))",
        workspace_id,
        spec.object,
        [p[0] for p in pairs],
        [p[1] for p in pairs],
    )
    return {(r["source"], r["external_id"]): r["object_id"] for r in rows}


async def existing_ids(
    conn: asyncpg.Connection, table: str, workspace_id: uuid.UUID, ids: Sequence[uuid.UUID]
) -> set[uuid.UUID]:
    rows = await conn.fetch(
        f"SELECT id FROM {table} WHERE workspace_id = $1 AND id = ANY($2::uuid[]) AND archived_at IS NULL",
        workspace_id,
        list(set(ids)),
    )
    return {r["id"] for r in rows}


def _write_sql(spec: ResourceSpec) -> str:
    t = spec.table
    assignments = ", ".join(c for c in spec.columns if c not in ("workspace_id", "id", "created_at"))
    values = ", ".join(f"x.{c}" for c in spec.columns if c not in ("workspace_id", "id", "created_at"))
    return f"""
WITH ins AS (
    INSERT INTO {t} SELECT * FROM jsonb_populate_recordset(NULL::{t}, $2::jsonb)
    ON CONFLICT DO NOTHING RETURNING id
), upd AS (
    UPDATE {t} AS t SET ({assignments}) = ({values})
    FROM jsonb_populate_recordset(NULL::{t}, $3::jsonb) AS x
    WHERE t.workspace_id = $1 AND t.id = x.id AND t.version = x.version - 1
    RETURNING t.id
), ok AS (
    SELECT id FROM ins UNION ALL SELECT id FROM upd
), ev AS (
    {insert_events("$4", "e.object_id IN (SELECT id FROM ok)")}
), fanout AS (
    {FANOUT_SQL}
), xdel AS (
    DELETE FROM external_ids AS d
    USING jsonb_to_recordset($5::jsonb) AS r(object_id uuid, source text, external_id text)
    WHERE d.workspace_id = $1 AND d.object_type = $6 AND d.object_id = r.object_id
      AND d.source = r.source AND d.external_id = r.external_id AND r.object_id IN (SELECT id FROM upd)
), xins AS (
    INSERT INTO external_ids (workspace_id, object_type, source, external_id, object_id)
    SELECT $1, $6, r.source, r.external_id, r.object_id
    FROM jsonb_to_recordset($7::jsonb) AS r(object_id uuid, source text, external_id text)
    WHERE r.object_id IN (SELECT id FROM ok)
)
SELECT id FROM ok
"""


_WRITE_SQL: dict[str, str] = {}


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
) -> set[uuid.UUID]:
    """Apply the rows; return the ids written. An insert that hit a unique key, or an update whose
    version moved underneath it, is left out of the result (and so are its event and external ids)."""
    sql = _WRITE_SQL.get(spec.name)
    if sql is None:
        sql = _WRITE_SQL[spec.name] = _write_sql(spec)
    try:
        rows = await conn.fetch(
            sql,
            workspace_id,
            jsonutil.dumps_str(inserts),
            jsonutil.dumps_str(updates),
            jsonutil.dumps_str(events),
            jsonutil.dumps_str(external_removed),
            spec.object,
            jsonutil.dumps_str(external_added),
        )
    except asyncpg.UniqueViolationError as exc:
        raise _unique_conflict(spec, exc) from None
    except asyncpg.ForeignKeyViolationError as exc:
        raise Unprocessable(
            "A referenced object does not exist", [FieldError("/" + _fk_column(exc), "no such object")]
        ) from None
    return {r["id"] for r in rows}


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
    return inside.split(",")[-1].strip() or "id"


async def list_rows(
    conn: asyncpg.Connection | asyncpg.Pool,
    spec: ResourceSpec,
    params: Params,
    conditions: list[str],
    sort: Sort,
    after: tuple[Any, uuid.UUID] | None,
    limit: int,
) -> list[dict[str, Any]]:
    """One keyset page (``limit + 1`` rows, so the caller knows whether there is more)."""
    if sort.column in spec.nullable_sorts:
        return await _list_nullable(conn, spec, params, conditions, sort, after, limit)
    where = list(conditions)
    direction = "DESC" if sort.descending else "ASC"
    if after is not None:
        pg_type = spec.field_type(sort.column) or "text"
        value = params.add(after[0], pg_type)
        row_id = params.add(after[1], "uuid")
        where.append(f"({sort.column}, id) {'<' if sort.descending else '>'} ({value}, {row_id})")
    sql = (
        f"SELECT {_select(spec)} FROM {spec.table} WHERE {' AND '.join(where)} "
        f"ORDER BY {sort.column} {direction}, id {direction} LIMIT {int(limit) + 1}"
    )
    return [dict(r) for r in await conn.fetch(sql, *params.values)]


async def _list_nullable(
    conn: asyncpg.Connection | asyncpg.Pool,
    spec: ResourceSpec,
    params: Params,
    conditions: list[str],
    sort: Sort,
    after: tuple[Any, uuid.UUID] | None,
    limit: int,
) -> list[dict[str, Any]]:
    """A page over a column that may be null, in PostgreSQL's order (nulls last ascending, first
    descending). A row comparison with a null is never true, so the rows with a value and the rows without
    are walked as two index ranges, one after the other, each a keyset query of its own."""
    col, desc = sort.column, sort.descending
    direction = "DESC" if desc else "ASC"
    pg_type = spec.field_type(col) or "text"
    in_nulls = after is not None and after[0] is None  # the cursor stopped among the nulls

    async def fetch(extra: str, order: str, values: list[Any], count: int) -> list[dict[str, Any]]:
        where = " AND ".join([*conditions, extra])
        sql = f"SELECT {_select(spec)} FROM {spec.table} WHERE {where} ORDER BY {order} LIMIT {count}"
        return [dict(r) for r in await conn.fetch(sql, *values)]

    def nulls() -> tuple[str, list[Any]]:
        p = Params(*params.values)
        extra = f"{col} IS NULL"
        if in_nulls:
            assert after is not None
            extra += f" AND id {'<' if desc else '>'} {p.add(after[1], 'uuid')}"
        return extra, p.values

    def values() -> tuple[str, list[Any]]:
        p = Params(*params.values)
        extra = f"{col} IS NOT NULL"
        if after is not None and not in_nulls:
            value, row_id = p.add(after[0], pg_type), p.add(after[1], "uuid")
            extra = f"({col}, id) {'<' if desc else '>'} ({value}, {row_id})"
        return extra, p.values

    wanted = int(limit) + 1
    null_order, value_order = f"id {direction}", f"{col} {direction}, id {direction}"
    if desc:  # nulls first, then values
        rows: list[dict[str, Any]] = []
        if after is None or in_nulls:
            extra, vals = nulls()
            rows = await fetch(extra, null_order, vals, wanted)
        if len(rows) < wanted:
            extra, vals = values()  # all of them: the nulls came first
            rows += await fetch(extra, value_order, vals, wanted - len(rows))
        return rows
    rows = []
    if not in_nulls:
        extra, vals = values()
        rows = await fetch(extra, value_order, vals, wanted)
    if len(rows) < wanted:
        extra, vals = nulls()
        rows += await fetch(extra, null_order, vals, wanted - len(rows))
    return rows
