"""Lists and search: query-parameter filters, ``q=``, the filter grammar, keyset pages."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import asyncpg
from sqlalchemy import and_, select, text
from starlette.datastructures import QueryParams

from .. import sql
from ..auth import Context
from ..errors import InvalidCursor, field_error
from ..pagination import Sort, cursor_by, decode_cursor, keyset_page, parse_sort
from ..textsearch import query_text
from . import includes
from . import repository as repo
from .custom_fields import enforce as custom_fields
from .custom_fields import sorting as custom_sorting
from .exprs import Expr, Params, column_ref, workspace_param
from .filters import Compiler, _coerce, _like
from .spec import FieldType, Include, ResourceSpec, element_type

PAGE_PARAMS = ("limit", "cursor", "sort", "include_archived", "q", "include", "fields")
"""Parameters of every list beside its filters (``include`` and ``fields``: ``includes.py``)."""


_OPS = {"eq": "=", "gt": ">", "lt": "<", "gte": ">=", "lte": "<="}


def in_workspace(spec: ResourceSpec) -> Expr:
    return Expr(("ws", spec.table), lambda: sql.table(spec.table).c.workspace_id == workspace_param().build())


def live(spec: ResourceSpec) -> Expr:
    return Expr(("live", spec.table), lambda: sql.table(spec.table).c.archived_at.is_(None))


def _equals(spec: ResourceSpec, column: str, op: str, value: Expr) -> Expr:
    """``column <op> value`` for a list's query parameter."""
    col = column_ref(spec, column)
    return Expr((op, col.key, value.key), lambda: col.build().op(op)(value.build()))


def in_segment(spec: ResourceSpec, segment_id: Expr) -> Expr:
    """The resource's members of a segment: a range of the members' primary key (workspace, segment)."""

    def build() -> Any:
        m = sql.table("segment_members")
        members = select(m.c.object_id).where(
            m.c.workspace_id == workspace_param().build(), m.c.segment_id == segment_id.build()
        )
        return sql.table(spec.table).c.id.in_(members)

    return Expr(("segment", spec.table, segment_id.key), build)


def _flag(condition: str) -> Expr:
    # the condition is SQL text on purpose: it is a partial index's predicate word for word
    # (ix_activities_open_tasks), which the planner must see as written to use the index
    return Expr(("flag", condition), lambda: and_(text(condition)))


def _limit(value: Any) -> int:
    try:
        limit = int(value)
    except (TypeError, ValueError):
        raise field_error("/limit", "must be an integer from 1 to 200") from None
    if not 1 <= limit <= 200:
        raise field_error("/limit", "must be an integer from 1 to 200")
    return limit


def _number(name: str, value: str, pg_type: FieldType) -> Any:
    """A query string is text; read it as the number the column holds, then check it like a JSON value."""
    try:
        number: Any = int(value) if pg_type == "bigint" else value.strip()
    except ValueError:
        raise field_error(f"/{name}", f"expected a value of type {pg_type}") from None
    return _coerce(number, pg_type, f"/{name}")


def _bool(name: str, value: str) -> bool:
    if value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise field_error(f"/{name}", "must be true or false")


async def list_page(
    conn: asyncpg.Connection | asyncpg.Pool,
    spec: ResourceSpec,
    ctx: Context,
    query: QueryParams,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``GET /v1/<resource>``: every query parameter is checked; unknown ones are a 422 naming them.
    ``include=`` and ``fields=`` (``includes``) apply to the page."""
    shaping = includes.requested(spec, query)
    page = await _list_page(conn, spec, ctx, query, extra, includes.joined(shaping))
    if shaping is not None:
        page["data"] = await includes.shape(conn, spec, ctx.workspace_id, page["data"], shaping)
    return page


async def _list_page(
    conn: asyncpg.Connection | asyncpg.Pool,
    spec: ResourceSpec,
    ctx: Context,
    query: Mapping[str, str],
    extra: Mapping[str, Any] | None,
    joined: tuple[Include, ...] = (),
) -> dict[str, Any]:
    known = {p.name: p for p in spec.query_params}
    for name in query:
        if name not in known and name not in PAGE_PARAMS:
            raise field_error(f"/{name}", f"unknown query parameter; filters are {', '.join(sorted(known))}")
    params = Params(ws=ctx.workspace_id)
    conditions = [in_workspace(spec)]
    for name, value in (extra or {}).items():
        conditions.append(_equals(spec, name, "=", params.add(value, "uuid")))
    include_archived = (
        _bool("include_archived", query["include_archived"]) if "include_archived" in query else False
    )
    for name, value in query.items():
        qp = known.get(name)
        if qp is None:
            continue
        if "\x00" in value:
            raise field_error(f"/{name}", "must not contain NUL characters")
        element = element_type(qp.type)
        if qp.op == "flag":
            conditions.append(_flag(qp.when[0] if _bool(name, value) else qp.when[1]))
            continue
        if qp.type == "boolean":
            coerced: Any = _bool(name, value)
        elif element in ("bigint", "numeric"):
            coerced = _number(name, value, element)
        else:
            coerced = _coerce(value, element, f"/{name}")
        if qp.name == "updated_after":
            include_archived = True  # incremental sync must see archivals too
        if qp.op == "segment":
            conditions.append(in_segment(spec, params.add(coerced, "uuid")))
        elif qp.op == "contains":
            conditions.append(_equals(spec, qp.column, "@>", params.add([coerced], qp.type)))
        else:
            if qp.column in ("email", "domain"):
                coerced = spec.normalise({qp.column: coerced})[qp.column]
            conditions.append(_equals(spec, qp.column, _OPS[qp.op], params.add(coerced, qp.type)))
    if "q" in query:
        if "\x00" in query["q"]:
            raise field_error("/q", "must not contain NUL characters")
        q = query_text(query["q"])
        if q:
            conditions.append(_equals(spec, "search_text", "LIKE", params.add("%" + _like(q) + "%", "text")))
    if not include_archived:
        conditions.append(live(spec))
    limit = _limit(query.get("limit", 50))
    custom = await custom_sorting.parse(conn, spec, ctx.workspace_id, query.get("sort"))
    if custom is not None:
        return await custom_sorting.page(conn, spec, params, conditions, custom, query.get("cursor"), limit)
    default_sort = "updated_at" if "updated_after" in query else "-created_at"
    sort = parse_sort(query.get("sort"), spec.sorts, default_sort)
    return await _page(conn, spec, params, conditions, sort, query.get("cursor"), limit, joined)


def _names_custom_field(node: Any) -> bool:
    """Whether a filter may name a custom field (any string mentioning ``custom_fields.``)."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, str) and "custom_fields." in item:
            return True
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


async def search(
    conn: asyncpg.Connection | asyncpg.Pool,
    spec: ResourceSpec,
    ctx: Context,
    body: dict[str, Any],
    joined: tuple[Include, ...] = (),
) -> dict[str, Any]:
    """``POST /v1/<resource>/search`` with the filter grammar; ``joined``: relations read in the page's
    statement (``includes.joined``)."""
    params = Params(ws=ctx.workspace_id)
    conditions = [in_workspace(spec)]
    if body.get("filter") is not None:
        compiler = Compiler(spec, params)
        # one query for the definitions, only when the filter may name a custom field
        if custom_fields.applies(spec) and _names_custom_field(body["filter"]):
            compiler.custom_definitions = await custom_fields.definitions(conn, ctx.workspace_id, spec.object)
        conditions.append(compiler.compile(body["filter"]))
    if body.get("segment_id") is not None:
        if not any(qp.op == "segment" for qp in spec.query_params):
            raise field_error("/segment_id", f"{spec.many} are not in segments")
        conditions.append(in_segment(spec, params.add(body["segment_id"], "uuid")))
    if not body.get("include_archived"):
        conditions.append(live(spec))
    sorts = body.get("sort") or ["-created_at"]
    if len(sorts) > 1:
        raise field_error("/sort", "one sort key is supported (ties are broken by id)")
    limit = _limit(body.get("limit", 50))
    custom = await custom_sorting.parse(conn, spec, ctx.workspace_id, sorts[0])
    if custom is not None:
        return await custom_sorting.page(conn, spec, params, conditions, custom, body.get("cursor"), limit)
    sort = parse_sort(sorts[0], spec.sorts)
    return await _page(conn, spec, params, conditions, sort, body.get("cursor"), limit, joined)


def _fits(value: Any, pg_type: str | None, nullable: bool) -> bool:
    """Whether a cursor's sort value can be what we wrote into it (a tampered one must not reach SQL)."""
    if value is None:
        return nullable
    if pg_type == "timestamptz":
        return isinstance(value, dt.datetime)
    if pg_type == "text":
        return isinstance(value, str)
    if pg_type == "bigint":
        return isinstance(value, int) and not isinstance(value, bool)
    return True


async def _page(
    conn: asyncpg.Connection | asyncpg.Pool,
    spec: ResourceSpec,
    params: Params,
    conditions: list[Expr],
    sort: Sort,
    cursor: str | None,
    limit: int,
    joined: tuple[Include, ...] = (),
) -> dict[str, Any]:
    after = decode_cursor(cursor, sort) if cursor else None
    if after is not None and not _fits(
        after[0], spec.field_type(sort.column), sort.column in spec.nullable_sorts
    ):
        raise InvalidCursor("The cursor is not one this API issued")
    rows = await repo.list_rows(conn, spec, params, conditions, sort, after, limit, joined)
    # the rows select the spec's columns first (``repository._page_rows``)
    return keyset_page(rows, limit, cursor_by(sort), includes.converter(spec, joined, records=True))
