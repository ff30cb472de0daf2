"""Filters on ``custom_fields.<name>`` typed by the field's definition.

``eq``/``in`` (and their negations) compare the stored form as containment (``custom_fields @> {...}``),
which the GIN ``jsonb_path_ops`` index on ``custom_fields`` serves; the filter value is normalised the way
writes are (``"A@X.COM"`` finds ``a@x.com``, ``12.50`` finds ``"12.5"``), and on a multi_enum ``eq`` means
"has this option". Ranges (lt/lte/gt/gte/between) on an indexed type are btree range scans of
``custom_field_values`` (migration 0011): number and decimal compare as numbers, datetime as timestamps,
and text, date, enum, email and url as text in code point order ("C" collation, which orders ISO dates).
The side table keeps a text prefix only, so text ranges widen to the prefix there and recheck the full
value on the narrowed rows. A field's definition must be live for its values to be in the side table;
archived fields, and ranges on values of fields with no definition, fall back to unindexed expressions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from sqlalchemy import ColumnElement, DateTime, Numeric, Text, and_, case, cast, func, select
from sqlalchemy.dialects.postgresql import JSONB

from ... import sql
from ...errors import field_error
from .. import relative_time
from ..exprs import Expr, Params, column_ref
from ..spec import FieldType, Operator, ResourceSpec
from . import values


class Compiler(Protocol):
    """What these filters use of ``filters.Compiler``, which calls them (described here rather than
    imported, so the two modules do not import each other)."""

    spec: ResourceSpec
    params: Params
    ws: Expr

    def column(self, column: Expr, pg_type: FieldType, op: Operator, value: Any, path: str) -> Expr: ...

    def contains_any(self, probes: list[dict[str, Any]], negated: bool) -> Expr: ...


_RANGES = ("lt", "lte", "gt", "gte", "between")
_DECIMAL = r"^[+-]?(\d+(\.\d*)?|\.\d+)$"
_DATETIME = r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d+)?Z$"


def typed_custom_field(
    compiler: Compiler, key: str, definition: Mapping[str, Any], op: Operator, value: Any, path: str
) -> Expr:
    kind = definition["type"]
    vpath = f"{path}/value"
    if op in ("eq", "neq", "in", "nin"):
        many = op in ("in", "nin")
        items = value if many else [value]
        if not isinstance(items, list) or not items:
            raise field_error(vpath, f"{op} takes a non-empty array")
        if len(items) > 1000:
            raise field_error(vpath, "at most 1000 values")
        probes = []
        for i, item in enumerate(items):
            stored = _normalise(definition, item, f"{vpath}/{i}" if many else vpath)
            probes.append({key: [stored] if kind == "multi_enum" else stored})
        return compiler.contains_any(probes, negated=op in ("neq", "nin"))
    if op not in _RANGES or kind in ("boolean", "multi_enum"):
        raise field_error(f"{path}/op", f"operator '{op}' does not apply to a {kind} custom field")
    if op == "between":
        if not isinstance(value, list) or len(value) != 2:
            raise field_error(vpath, "between takes an array of two values [low, high]")
        value = [_bound(definition, v, f"{vpath}/{i}") for i, v in enumerate(value)]
    else:
        value = _bound(definition, value, vpath)
    if definition.get("archived_at") is not None:  # its values left the side table with it
        return _unindexed(compiler, key, kind, op, value, path)
    column = values.INDEXED[kind]
    side = _indexed(compiler, key, column, op, value, path)
    if column != "txt":
        return side
    # the full value, on the rows the index narrowed to
    full = _unindexed(compiler, key, kind, op, value, path)
    return Expr(("and", (side.key, full.key)), lambda: and_(side.build(), full.build()))


def _indexed(compiler: Compiler, key: str, column: str, op: Operator, value: Any, path: str) -> Expr:
    """The ids whose indexed value is in range: one btree range of ``custom_field_values``."""
    if column == "txt":  # the index holds a prefix: a strict bound on it could drop a longer value
        op = "lte" if op == "lt" else "gte" if op == "gt" else op
        cut = values.INDEXED_PREFIX
        value = [v[:cut] for v in value] if op == "between" else value[:cut]
    side = sql.table("custom_field_values").alias("v")
    indexed = Expr(("cfv", column), lambda: side.c[column])
    cond = compiler.column(indexed, values.COLUMN_TYPES[column], op, value, path)
    field = compiler.params.add(key, "text")
    spec, ws = compiler.spec, compiler.ws

    def ids_in_range() -> ColumnElement[Any]:
        ids = select(side.c.object_id).where(
            side.c.workspace_id == ws.build(),
            side.c.object_type == spec.object,
            side.c.field == field.build(),
            cond.build(),
        )
        return sql.table(spec.table).c.id.in_(ids)

    return Expr(("cf_range", spec.table, field.key, cond.key), ids_in_range)


def _unindexed(compiler: Compiler, key: str, kind: str, op: Operator, value: Any, path: str) -> Expr:
    """A range over the stored JSON: an archived field's, or the recheck of a text range."""
    name = compiler.params.add(key, "text")
    fields = column_ref(compiler.spec, "custom_fields")

    def stored() -> ColumnElement[Any]:
        return fields.build().op("->>", return_type=Text())(name.build())

    def json_kind() -> ColumnElement[Any]:
        return func.jsonb_typeof(fields.build().op("->", return_type=JSONB())(name.build()))

    # each cast is guarded so a value stored before the definition existed never breaks the query
    def guarded(pattern: str, target: Any) -> Callable[[], ColumnElement[Any]]:
        return lambda: case(
            (and_(json_kind() == "string", stored().regexp_match(pattern)), cast(stored(), target))
        )

    if kind == "number":
        expr = Expr(
            ("cf_number", name.key), lambda: case((json_kind() == "number", cast(stored(), Numeric())))
        )
        return compiler.column(expr, "numeric", op, value, path)
    if kind == "decimal":
        expr = Expr(("cf_decimal", name.key), guarded(_DECIMAL, Numeric()))
        return compiler.column(expr, "numeric", op, value, path)
    if kind == "datetime":
        expr = Expr(("cf_datetime", name.key), guarded(_DATETIME, DateTime(timezone=True)))
        return compiler.column(expr, "timestamptz", op, value, path)
    expr = Expr(
        ("cf_string", name.key),
        lambda: case((json_kind() == "string", stored())).collate("C"),
    )
    return compiler.column(expr, "text", op, value, path)


def _bound(definition: Mapping[str, Any], value: Any, path: str) -> Any:
    """A range's bound: a datetime field's relative time (``-30d``) stays as it is, for the compiler."""
    if definition["type"] == "datetime" and relative_time.is_relative(value):
        return value
    return _normalise(definition, value, path)


def _normalise(definition: Mapping[str, Any], value: Any, path: str) -> Any:
    if value is None:
        raise field_error(path, "null is only allowed with the is_null operator")
    single = {**definition, "type": "enum"} if definition["type"] == "multi_enum" else definition
    try:
        return values.normalise(single, value)
    except values.BadValue as exc:
        raise field_error(path, f"{definition['type']}: {exc}") from None
