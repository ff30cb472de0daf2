"""``sort=custom_fields.<name>`` (and ``-custom_fields.<name>``): keyset pages in a custom field's order.

A page walks the field's btree range in ``custom_field_values`` (migration 0011) in ``(value, id)`` order
and joins each entry to its record, which must pass the list's conditions; the walk stops after
``limit + 1`` matches. Records without a value for the field (or with one that does not fit its type)
are not in a sorted page: "sorted by X" lists the records that have an X. Text-like values sort in code
point order by their first 500 characters, then by id. Only live definitions of an indexed type
(not boolean, not multi_enum) can be sorted by; anything else is a 422 naming the field. A filter that
matches few of the records holding the field makes the walk long: the index serves the order, not the
filter.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy import Select, select, true, tuple_

from ... import sql
from ...errors import InvalidCursor, field_error
from ...pagination import Sort, decode_cursor, encode_cursor, keyset_page
from ..exprs import Expr, Params, workspace_param
from ..spec import ResourceSpec
from . import enforce, values

PREFIX = "custom_fields."


@dataclass(frozen=True, slots=True)
class CustomSort:
    sort: Sort
    field: str
    column: str  # num, txt or ts


async def parse(
    conn: asyncpg.Connection | asyncpg.Pool, spec: ResourceSpec, workspace_id: Any, raw: Any
) -> CustomSort | None:
    """The custom field sort ``raw`` asks for, or None when it names no custom field."""
    if not isinstance(raw, str) or not enforce.applies(spec):
        return None
    descending = raw.startswith("-")
    name = raw.removeprefix("-")
    if not name.startswith(PREFIX):
        return None
    field = name.removeprefix(PREFIX)
    if not field or "\x00" in field:
        raise field_error("/sort", "name the custom field: custom_fields.<name>")
    definition = (await enforce.definitions(conn, workspace_id, spec.object)).get(field)
    if definition is None:
        raise field_error("/sort", f"no custom field named {field!r} is defined for {spec.object}")
    if definition["archived_at"] is not None:
        raise field_error("/sort", f"the custom field {field!r} is archived: it cannot be sorted by")
    column = values.INDEXED.get(definition["type"])
    if column is None:
        raise field_error("/sort", f"a {definition['type']} custom field ({field!r}) cannot be sorted by")
    return CustomSort(Sort(name, descending), field, column)


def _cursor_value(value: Any, column: str) -> Any:
    """The cursor's sort value as the column's type; a tampered one is an InvalidCursor, not a 500."""
    bad = InvalidCursor("The cursor is not one this API issued")
    if column == "ts":
        if not isinstance(value, dt.datetime):
            raise bad
        return value
    if not isinstance(value, str):
        raise bad
    if column == "txt":
        if len(value) > values.INDEXED_PREFIX or "\x00" in value:
            raise bad
        return value
    try:
        number = decimal.Decimal(value)
    except decimal.InvalidOperation:
        raise bad from None
    if not number.is_finite() or abs(number.adjusted()) > 1000:
        raise bad
    return number


_PAGES = sql.Shapes(512)


def _page_statement(
    spec: ResourceSpec,
    conditions: list[Expr],
    custom: CustomSort,
    field: Expr,
    after: tuple[Expr, Expr] | None,
    count: int,
) -> Callable[[], Select[Any]]:
    col, desc = custom.column, custom.sort.descending

    def build() -> Select[Any]:
        v = sql.table("custom_field_values").alias("v")
        t = sql.table(spec.table)
        record = (
            select(*sql.columns(spec.columns, t))
            .where(t.c.id == v.c.object_id, *(c.build() for c in conditions))
            .lateral("r")
        )
        where = [
            v.c.workspace_id == workspace_param().build(),
            v.c.object_type == spec.object,
            v.c.field == field.build(),
        ]
        if after is not None:
            bound = tuple_(after[0].build(), after[1].build())
            where.append(tuple_(v.c[col], v.c.object_id).op("<" if desc else ">")(bound))
        order = [v.c[col].desc(), v.c.object_id.desc()] if desc else [v.c[col].asc(), v.c.object_id.asc()]
        return (
            select(v.c[col].label("cf_sort_value"), *record.c)
            .select_from(v.join(record, true()))
            .where(*where)
            .order_by(*order)
            .limit(count)
        )

    return build


def page_statement(
    spec: ResourceSpec,
    params: Params,
    conditions: list[Expr],
    custom: CustomSort,
    after: tuple[Any, Any] | None,
    limit: int,
) -> sql.Compiled:
    """One keyset page (``limit + 1`` rows) in the field's order; ``after`` is a decoded cursor."""
    field = params.add(custom.field, "text")
    bound = None
    if after is not None:
        col = custom.column
        bound = (
            params.add(_cursor_value(after[0], col), values.COLUMN_TYPES[col]),
            params.add(after[1], "uuid"),
        )
    key = (
        "cf_page",
        spec.table,
        tuple(c.key for c in conditions),
        custom.column,
        custom.sort.descending,
        field.key,
        bound and (bound[0].key, bound[1].key),
        limit + 1,
    )
    return _PAGES.get(key, _page_statement(spec, conditions, custom, field, bound, limit + 1))


async def page(
    conn: asyncpg.Connection | asyncpg.Pool,
    spec: ResourceSpec,
    params: Params,
    conditions: list[Expr],
    custom: CustomSort,
    cursor: str | None,
    limit: int,
) -> dict[str, Any]:
    after = decode_cursor(cursor, custom.sort) if cursor else None
    statement = page_statement(spec, params, conditions, custom, after, limit)
    rows = [dict(r) for r in await statement.fetch(conn, **params.values)]

    def cursor_of(row: dict[str, Any]) -> str:
        last = row["cf_sort_value"]
        encoded = str(last) if isinstance(last, decimal.Decimal) else last
        return encode_cursor(custom.sort, encoded, row["id"])

    return keyset_page(rows, limit, cursor_of, spec.to_api)
