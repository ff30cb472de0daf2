"""The SQL of bulk jobs: the job row, its file's parts, an import's row errors, and the workers' lease on it.

Imports and exports are jobs of one shape (a row with a status and a lease, a file in numbered parts), so
their shared statements come from one ``JobSql``, built per table; what only imports have (row errors,
progress, the upload's start) follows it.

A worker holds a job by its ``lease_token`` until ``lease_until``; every chunk locks the job row and
checks the token before it writes, and writes its progress in the same transaction as its records, so a
chunk counts exactly once: committed with its progress, or not at all.
"""

from __future__ import annotations

import uuid
from functools import partial
from typing import Any

import asyncpg
from sqlalchemy import (
    ARRAY,
    DateTime,
    Float,
    Integer,
    Select,
    Text,
    and_,
    cast,
    column,
    delete,
    func,
    insert,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy import table as sa_table
from sqlalchemy.dialects.postgresql import REGCLASS
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.sql.dml import ReturningUpdate

from .. import jsonutil, sql
from ..events.store import recordset

ACTIVE = ("uploading", "queued", "running")
"""Statuses a job can still leave: cancel applies to these."""
COMMON = (
    "workspace_id",
    "id",
    "object_type",
    "format",
    "status",
    "actor",
    "request_id",
    "created_at",
    "updated_at",
)
"""The columns every job is created with; each kind adds its own."""


def _ids(t: Any) -> Any:
    return and_(t.c.workspace_id == sql.param("ws"), t.c.id == sql.param("id"))


def _lease() -> Any:
    """now() plus the lease in seconds (``make_interval``'s arguments by position: Core has no named ones)."""
    return func.now() + func.make_interval(0, 0, 0, 0, 0, 0, sql.param("lease", Float))


def _create(table: str, names: tuple[str, ...]) -> Any:
    t = sql.table(table)
    return insert(t).values({n: sql.param(n, t.c[n].type) for n in names}).returning(*t.c)


def _get(table: str, expires: bool) -> Select[Any]:
    t = sql.table(table)
    stmt = select(*t.c).where(_ids(t))
    return stmt.where(t.c.expires_at > func.now()) if expires else stmt


def _part_of(parts: str, fk: str) -> Any:
    """Which part of which job's file: ``ws``, ``id``, ``part``."""
    p = sql.table(parts)
    return and_(
        p.c.workspace_id == sql.param("ws"),
        p.c[fk] == sql.param("id"),
        p.c.part == sql.param("part", Integer),
    )


def _add_part(parts: str, fk: str, replace: bool) -> Any:
    """Store part ``part``; with ``replace`` a repeated upload of a part replaces it."""
    p = sql.table(parts)
    values = {"workspace_id": sql.param("ws"), fk: sql.param("id"), "part": sql.param("part", Integer)}
    stmt = pg_insert(p).values(**values, data=sql.param("data", p.c.data.type))
    if not replace:
        return stmt
    return stmt.on_conflict_do_update(
        index_elements=[p.c.workspace_id, p.c[fk], p.c.part], set_={"data": stmt.excluded.data}
    )


def _part(parts: str, fk: str) -> Select[Any]:
    return select(sql.table(parts).c.data).where(_part_of(parts, fk))


def _claim(table: str) -> ReturningUpdate[Any]:
    """The oldest job waiting for a worker, or whose worker's lease lapsed (a killed worker's job resumes
    here), across workspaces, ``FOR UPDATE SKIP LOCKED`` so two workers never take the same one. The
    start time is the worker's clock (``now``): Citus refuses ``now()`` inside COALESCE in an UPDATE."""
    t = sql.table(table)
    waiting = (
        select(t.c.workspace_id, t.c.id)
        .where(
            t.c.status.in_([sql.const("queued"), sql.const("running")]),
            or_(t.c.lease_until.is_(None), t.c.lease_until < func.now()),
        )
        .order_by(t.c.created_at)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    return (
        update(t)
        .where(tuple_(t.c.workspace_id, t.c.id).in_(waiting))
        .values(
            status="running",
            lease_token=sql.param("token"),
            lease_until=_lease(),
            started_at=func.coalesce(t.c.started_at, sql.param("now", DateTime(timezone=True))),
            updated_at=func.now(),
        )
        .returning(*t.c)
    )


def _renew(table: str) -> ReturningUpdate[Any]:
    t = sql.table(table)
    return (
        update(t)
        .where(_ids(t), t.c.lease_token == sql.param("token"))
        .values(lease_until=_lease())
        .returning(t.c.id)
    )


def _finish(table: str, counts: tuple[str, ...]) -> ReturningUpdate[Any]:
    """The run's end (``status``, ``error``, and the kind's ``counts``), while the worker holds the job."""
    t = sql.table(table)
    return (
        update(t)
        .where(_ids(t), t.c.lease_token == sql.param("token"), t.c.status == sql.const("running"))
        .values(
            status=sql.param("status"),
            error=sql.param("error"),
            lease_token=None,
            lease_until=None,
            finished_at=func.now(),
            updated_at=func.now(),
            **{c: sql.param(c, t.c[c].type) for c in counts},
        )
        .returning(t.c.id)
    )


class JobSql:
    """The statements one kind of job shares, for its table and its parts' table."""

    def __init__(
        self,
        table: str,
        parts: str,
        fk: str,
        fields: tuple[str, ...],
        *,
        expires: bool = False,
        replace_parts: bool = False,
        counts: tuple[str, ...] = (),
    ) -> None:
        self.create = sql.Query(partial(_create, table, COMMON + fields))
        self.get = sql.Query(partial(_get, table, expires))
        self.claim = sql.Query(partial(_claim, table))
        self.renew = sql.Query(partial(_renew, table))
        self.finish = sql.Query(partial(_finish, table, counts))
        self.add_part = sql.Query(partial(_add_part, parts, fk, replace_parts))
        self.part = sql.Query(partial(_part, parts, fk))

    async def part_data(
        self, conn: asyncpg.Connection | asyncpg.Pool, ws: uuid.UUID, job: uuid.UUID, n: int
    ) -> bytes | None:
        data = await self.part.fetchval(conn, ws=ws, id=job, part=n)
        return bytes(data) if data is not None else None


IMPORTS = JobSql(
    "imports",
    "import_parts",
    "import_id",
    ("mapping", "upsert_key", "dry_run", "create_missing_companies"),
    replace_parts=True,  # an upload's part sent again replaces it
)
EXPORTS = JobSql(
    "exports",
    "export_parts",
    "export_id",
    ("filter", "fields", "include_archived", "expires_at"),
    expires=True,  # past its 7 days an export is gone, even before the purge runs
    counts=("rows", "bytes", "parts"),
)


# --- imports only ---------------------------------------------------------------------------------------


def _parts_summary() -> Select[Any]:
    p = sql.table("import_parts")
    return select(
        func.count(), func.coalesce(func.max(p.c.part), -1), func.coalesce(func.sum(func.length(p.c.data)), 0)
    ).where(p.c.workspace_id == sql.param("ws"), p.c.import_id == sql.param("id"))


def _start() -> ReturningUpdate[Any]:
    t = sql.table("imports")
    return (
        update(t)
        .where(_ids(t), t.c.status == sql.const("uploading"))
        .values(
            status="queued",
            parts=sql.param("parts", Integer),
            bytes=sql.param("bytes"),
            updated_at=func.now(),
        )
        .returning(*t.c)
    )


def _cancel() -> ReturningUpdate[Any]:
    t = sql.table("imports")
    return (
        update(t)
        .where(_ids(t), t.c.status.in_([sql.const(s) for s in ACTIVE]))
        .values(
            status="cancelled",
            lease_token=None,
            lease_until=None,
            finished_at=func.now(),
            updated_at=func.now(),
        )
        .returning(*t.c)
    )


def _counted() -> ReturningUpdate[Any]:
    t = sql.table("imports")
    return (
        update(t)
        .where(_ids(t), t.c.lease_token == sql.param("token"))
        .values(
            rows_total=sql.param("rows_total", Integer),
            columns=sql.param("columns", t.c.columns.type),
            unmapped=sql.param("unmapped", t.c.unmapped.type),
            lease_until=_lease(),
            updated_at=func.now(),
        )
        .returning(t.c.id)
    )


def _progress() -> ReturningUpdate[Any]:
    """A chunk's progress, the last statement of its transaction, written only while the job is still
    this worker's (running, its lease token) and the chunk before it is committed (``rows_done`` is where
    this chunk starts): otherwise no row, and the chunk rolls back. A cancel or a lease that passed on
    during the chunk is seen here; the row lock it takes orders the chunks' commits."""
    t = sql.table("imports")
    counters = ("created", "updated", "unchanged", "failed")
    return (
        update(t)
        .where(
            _ids(t),
            t.c.status == sql.const("running"),
            t.c.lease_token == sql.param("token"),
            t.c.rows_done == sql.param("after", Integer),
        )
        .values(
            rows_done=sql.param("rows_done", Integer),
            lease_until=_lease(),
            updated_at=func.now(),
            **{c: t.c[c] + sql.param(c, Integer) for c in counters},
        )
        .returning(t.c.id)
    )


def _add_errors() -> Any:
    e = sql.table("import_errors")
    rows = recordset("errors", "import_errors", "r")
    names = [c.name for c in e.columns]
    return insert(e).from_select(names, select(*(rows.c[n] for n in names)))


def _errors_page() -> Select[Any]:
    e = sql.table("import_errors")
    return (
        select(e.c.row, e.c.n, e.c.column, e.c.code, e.c.message)
        .where(
            e.c.workspace_id == sql.param("ws"),
            e.c.import_id == sql.param("id"),
            tuple_(e.c.row, e.c.n) > tuple_(sql.param("row", Integer), sql.param("n", Integer)),
        )
        .order_by(e.c.row, e.c.n)
        .limit(sql.param("limit", Integer))
    )


PARTS_SUMMARY = sql.Query(_parts_summary)
START = sql.Query(_start)
CANCEL = sql.Query(_cancel)
COUNTED = sql.Query(_counted)
PROGRESS = sql.Query(_progress)
ADD_ERRORS = sql.Query(_add_errors)
BLOCKS = "SELECT $1::integer = ANY(pg_blocking_pids($2::integer))"
"""Whether the backend ``$1`` holds a lock the backend ``$2`` waits for (two chunks written side by side:
the later one steps back)."""
ERRORS_PAGE = sql.Query(_errors_page)


async def add_errors(conn: asyncpg.Connection, errors: list[dict[str, Any]]) -> None:
    if errors:
        await ADD_ERRORS.execute(conn, errors=jsonutil.dumps_str(errors))


# --- exports only ---------------------------------------------------------------------------------------


def _export_clear() -> Any:
    """A run starts over: the parts an earlier, killed run left go."""
    p = sql.table("export_parts")
    return delete(p).where(p.c.workspace_id == sql.param("ws"), p.c.export_id == sql.param("id"))


def _export_purge() -> Any:
    """Exports past their 7 days, with their files (every workspace's: housekeeping, not a client's read)."""
    t = sql.table("exports")
    return delete(t).where(t.c.expires_at < func.now())


EXPORT_CLEAR = sql.Query(_export_clear)
EXPORT_PURGE = sql.Query(_export_purge)


# --- planner statistics ---------------------------------------------------------------------------------


def _stale() -> Select[Any]:
    """Which of ``tables`` changed more since their last ANALYZE than the rows the planner thinks they
    hold (and by 500 rows at least): an import that grows a table past what its statistics say. Reads
    ``pg_class`` and the one counter by oid (the ``pg_stat_user_tables`` view computes every counter of
    every table first)."""
    c = sa_table("pg_class", column("oid"), column("relname"), column("reltuples"))
    changed = func.pg_stat_get_mod_since_analyze(c.c.oid)
    return select(c.c.relname).where(
        c.c.oid == func.any(cast(sql.param("tables", ARRAY(Text)), ARRAY(REGCLASS))),
        changed >= 500,
        changed > c.c.reltuples,
    )


STALE = sql.Query(_stale)


async def refresh_statistics(conn: asyncpg.Connection | Any, tables: list[str]) -> list[str]:
    """ANALYZE those of ``tables`` whose statistics an import outgrew, and name them.

    Without statistics the planner may check every foreign key into a table through an index that only
    narrows the workspace (plans cached for the connection's life): one import of 8,000 contacts read 21
    million index entries that way, each chunk slower than the last. With autovacuum on, its ANALYZE comes
    only after 10% of a table changed and a minute passed; an import's chunks come faster than that. A
    table whose owner is another role is skipped by PostgreSQL with a warning, not an error."""
    stale = [r[0] for r in await STALE.fetch(conn, tables=tables)]
    for name in stale:
        await conn.execute(f'ANALYZE "{sql.table(name).name}"')  # a model's table: a known name
    return stale
