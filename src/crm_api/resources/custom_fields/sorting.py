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
from dataclasses import dataclass
from typing import Any

import asyncpg

from ...errors import InvalidCursor, field_error
from ...pagination import Sort, decode_cursor, encode_cursor, keyset_page
from ...sqlparams import Params
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
    token = raw.strip()
    descending = token.startswith("-")
    name = token.lstrip("-+")
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


def page_sql(
    spec: ResourceSpec,
    params: Params,
    conditions: list[str],
    custom: CustomSort,
    after: tuple[Any, Any] | None,
    limit: int,
) -> str:
    """One keyset page (``limit + 1`` rows) in the field's order; ``after`` is a decoded cursor."""
    col, desc = custom.column, custom.sort.descending
    direction = "DESC" if desc else "ASC"
    where = [
        "v.workspace_id = $1",
        f"v.object_type = '{spec.object}'",
        f"v.field = {params.add(custom.field, 'text')}",
    ]
    if after is not None:
        low = params.add(_cursor_value(after[0], col), values.COLUMN_TYPES[col])
        where.append(f"(v.{col}, v.object_id) {'<' if desc else '>'} ({low}, {params.add(after[1], 'uuid')})")
    # the record's conditions stay unqualified inside the lateral subquery, as lists write them
    return (
        f"SELECT v.{col} AS cf_sort_value, r.* FROM custom_field_values AS v CROSS JOIN LATERAL "
        f"(SELECT {', '.join(spec.columns)} FROM {spec.table} "
        f"WHERE id = v.object_id AND {' AND '.join(conditions)}) AS r "
        f"WHERE {' AND '.join(where)} ORDER BY v.{col} {direction}, v.object_id {direction} "
        f"LIMIT {int(limit) + 1}"
    )


async def page(
    conn: asyncpg.Connection | asyncpg.Pool,
    spec: ResourceSpec,
    params: Params,
    conditions: list[str],
    custom: CustomSort,
    cursor: str | None,
    limit: int,
) -> dict[str, Any]:
    after = decode_cursor(cursor, custom.sort) if cursor else None
    sql = page_sql(spec, params, conditions, custom, after, limit)
    rows = [dict(r) for r in await conn.fetch(sql, *params.values)]

    def cursor_of(row: dict[str, Any]) -> str:
        last = row["cf_sort_value"]
        encoded = str(last) if isinstance(last, decimal.Decimal) else last
        return encode_cursor(custom.sort, encoded, row["id"])

    return keyset_page(rows, limit, cursor_of, spec.to_api)
