"""The filter grammar shared by lists and ``POST /search``, compiled to a SQLAlchemy Core condition.

    filter := {"and": [filter, ...]} | {"or": [filter, ...]} | {"not": filter}
            | {"field": <name>, "op": <op>, "value": <value>}

A field is a column of the resource, ``custom_fields.<name>``, or one relation hop such as
``company.industry``. A time or date field also takes a relative time (``"-30d"``: ``relative_time.py``).
Every error names the JSON path of the offending node.
"""

from __future__ import annotations

import datetime as dt
import decimal
import operator
import uuid
from collections.abc import Callable, Mapping
from typing import Any, TypeGuard, get_args

from sqlalchemy import (
    ColumnElement,
    Date,
    Numeric,
    Text,
    and_,
    any_,
    case,
    cast,
    func,
    literal_column,
    not_,
    or_,
    select,
)
from sqlalchemy.dialects.postgresql import JSONB

from .. import jsonutil, sql
from ..errors import field_error
from ..timeutil import to_utc
from . import relative_time
from .custom_fields.typed import typed_custom_field
from .exprs import Expr, Params, all_of, column_ref, negate, workspace_param
from .schemas import text_problem
from .spec import REGISTRY, FieldType, Operator, ResourceSpec, element_type

OPERATORS: tuple[Operator, ...] = get_args(Operator)
_COMPARE: dict[Operator, Callable[[Any, Any], ColumnElement[Any]]] = {
    "eq": operator.eq,
    "lt": operator.lt,
    "lte": operator.le,
    "gt": operator.gt,
    "gte": operator.ge,
}
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1
# far inside what PostgreSQL's numeric and asyncpg's encoder take (1e1000000 is refused by both)
_NUMERIC_EXP = 1000
_NUMERIC_DIGITS = 1000
MAX_DEPTH = 8
MAX_NODES = 100


def _coerce(value: Any, pg_type: FieldType, path: str) -> Any:
    """Check a JSON value against a column type and turn it into what asyncpg sends."""
    bad = field_error(path, f"expected a value of type {pg_type}")
    if value is None:
        raise field_error(path, "null is only allowed with the is_null operator")
    if pg_type == "text":
        if not isinstance(value, str):
            raise bad
        problem = text_problem(value)
        if problem:
            raise field_error(path, problem)
        return value
    if pg_type == "uuid":
        try:
            return uuid.UUID(str(value))
        except ValueError:
            raise bad from None
    if pg_type == "bigint":
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        if not _INT_MIN <= value <= _INT_MAX:
            raise field_error(path, "integer out of range")
        return value
    if pg_type == "numeric":
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise bad
        try:
            number = decimal.Decimal(str(value))
        except (decimal.InvalidOperation, ValueError):  # ValueError: an int of more than 4300 digits
            raise bad from None
        if not number.is_finite():
            raise bad
        if number and not -_NUMERIC_EXP <= number.adjusted() <= _NUMERIC_EXP:
            raise field_error(path, f"number out of range (its exponent must lie within ±{_NUMERIC_EXP})")
        if len(number.as_tuple().digits) > _NUMERIC_DIGITS:
            raise field_error(path, f"number with too many digits (at most {_NUMERIC_DIGITS})")
        return number
    if pg_type == "boolean":
        if not isinstance(value, bool):
            raise bad
        return value
    if pg_type == "timestamptz":
        if not isinstance(value, str):
            raise bad
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise field_error(path, f"expected an RFC 3339 timestamp or {relative_time.FORMS}") from None
        try:
            return to_utc(parsed)
        except ValueError as exc:
            raise field_error(path, str(exc)) from None
    if pg_type == "date":
        if not isinstance(value, str):
            raise bad
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            raise field_error(path, f"expected a date (YYYY-MM-DD) or {relative_time.FORMS}") from None
    raise bad


def _check_strings(node: Any, path: str) -> None:
    """Every string of a filter, keys too, must be text PostgreSQL can take (no NUL, no lone surrogate),
    whatever the node: checked once up front, so no branch can pass one to the database."""
    stack = [(path, node)]
    while stack:
        pointer, item = stack.pop()
        if isinstance(item, str):
            problem = text_problem(item)
            if problem:
                raise field_error(pointer, problem)
        elif isinstance(item, dict):
            for key, value in item.items():
                problem = text_problem(key)
                if problem:
                    raise field_error(pointer, f"a key {problem}")
                stack.append((f"{pointer}/{key}", value))
        elif isinstance(item, list):
            stack.extend((f"{pointer}/{i}", value) for i, value in enumerate(item))


def _like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _is_operator(op: Any) -> TypeGuard[Operator]:
    return op in OPERATORS


class Compiler:
    def __init__(self, spec: ResourceSpec, params: Params) -> None:
        self.spec = spec
        self.params = params
        self.ws = workspace_param()
        self.nodes = 0
        self.custom_definitions: Mapping[str, Mapping[str, Any]] = {}
        """name -> custom field definition, set by the caller when the filter names custom fields."""

    def compile(self, node: Any, path: str = "/filter", depth: int = 0) -> Expr:
        if depth == 0:
            _check_strings(node, path)
        self.nodes += 1
        if depth > MAX_DEPTH or self.nodes > MAX_NODES:
            raise field_error(path, f"filter too complex (at most {MAX_DEPTH} levels and {MAX_NODES} nodes)")
        if not isinstance(node, dict):
            raise field_error(path, "a filter must be an object")
        if "and" in node or "or" in node:
            key = "and" if "and" in node else "or"
            if set(node) != {key}:
                raise field_error(path, f"'{key}' must be the only key of its object")
            items = node[key]
            if not isinstance(items, list) or not items:
                raise field_error(f"{path}/{key}", "must be a non-empty array of filters")
            parts = [self.compile(item, f"{path}/{key}/{i}", depth + 1) for i, item in enumerate(items)]
            return all_of(key, parts)
        if "not" in node:
            if set(node) != {"not"}:
                raise field_error(path, "'not' must be the only key of its object")
            return negate(self.compile(node["not"], f"{path}/not", depth + 1))
        unknown = set(node) - {"field", "op", "value"}
        if unknown:
            raise field_error(f"{path}/{sorted(unknown)[0]}", "unknown key in filter")
        name, op = node.get("field"), node.get("op")
        if not isinstance(name, str):
            raise field_error(f"{path}/field", "required: the field to compare")
        if not _is_operator(op):
            raise field_error(f"{path}/op", f"unknown operator '{op}'; use one of {', '.join(OPERATORS)}")
        return self.condition(self.spec, name, op, node.get("value"), path, relation_ok=True)

    def condition(
        self, spec: ResourceSpec, name: str, op: Operator, value: Any, path: str, relation_ok: bool
    ) -> Expr:
        head, dot, rest = name.partition(".")
        if dot and head == "custom_fields":
            if not rest or "\x00" in rest:
                raise field_error(f"{path}/field", "name the custom field: custom_fields.<name>")
            # definitions type the comparison; only the searched resource's own are loaded
            definition = self.custom_definitions.get(rest) if spec is self.spec else None
            if definition is not None and op not in ("is_null", "contains", "starts_with"):
                return typed_custom_field(self, rest, definition, op, value, path)
            return self.custom_field(rest, op, value, path)
        if dot and head in spec.relations and relation_ok:
            fk, target_name = spec.relations[head]
            target = REGISTRY[target_name]
            inner = self.condition(target, rest, op, value, path, relation_ok=False)
            ws, here = self.ws, spec

            def related() -> ColumnElement[Any]:
                there = sql.table(target.table)
                ids = select(there.c.id).where(there.c.workspace_id == ws.build(), inner.build())
                return sql.table(here.table).c[fk].in_(ids)

            return Expr(("related", spec.table, fk, target.table, inner.key), related)
        pg_type = spec.field_type(name)
        filterable = name in ("id", "created_at", "updated_at", "archived_at", "version") or any(
            f.name == name and f.filterable for f in spec.fields
        )
        if pg_type is None or not filterable or pg_type == "jsonb":
            raise field_error(f"{path}/field", f"unknown field '{name}' for {spec.name}")
        return self.column(column_ref(spec, name), pg_type, op, value, path)

    def column(self, column: Expr, pg_type: FieldType, op: Operator, value: Any, path: str) -> Expr:
        """A comparison of ``column`` (a piece: a table column or an expression) with the filter's value."""
        vpath = f"{path}/value"
        col = column.build
        if op == "is_null":
            if not isinstance(value, bool):
                raise field_error(vpath, "is_null takes true or false")
            if pg_type.endswith("[]"):
                if value:
                    return Expr(("empty", column.key), lambda: func.cardinality(col()) == 0)
                return Expr(("nonempty", column.key), lambda: func.cardinality(col()) > 0)
            if value:
                return Expr(("null", column.key), lambda: col().is_(None))
            return Expr(("notnull", column.key), lambda: col().is_not(None))
        if pg_type.endswith("[]"):  # tags (text[]), links (uuid[]): has one, has any of
            element = element_type(pg_type)
            if op == "contains":
                one = self.params.add([_coerce(value, element, vpath)], pg_type)
                return Expr(("has", column.key, one.key), lambda: col().contains(one.build()))
            if op in ("in", "nin"):
                values = self.params.add(self._list(value, element, vpath), pg_type)
                overlap = Expr(("overlap", column.key, values.key), lambda: col().overlap(values.build()))
                return overlap if op == "in" else negate(overlap)
            raise field_error(f"{path}/op", f"operator '{op}' does not apply to a list of tags")
        if op in _COMPARE:
            if op != "eq" and pg_type in ("uuid", "boolean"):
                raise field_error(f"{path}/op", f"operator '{op}' does not apply to a {pg_type} field")
            p = self.bound(value, pg_type, vpath)
            compare = _COMPARE[op]
            return Expr((op, column.key, p.key), lambda: compare(col(), p.build()))
        if op == "neq":
            p = self.params.add(_coerce(value, pg_type, vpath), pg_type)
            return Expr(("neq", column.key, p.key), lambda: col().is_distinct_from(p.build()))
        if op in ("in", "nin"):
            values = self.params.add(self._list(value, pg_type, vpath), pg_type + "[]")
            if op == "in":
                return Expr(("in", column.key, values.key), lambda: col() == any_(values.build()))
            return Expr(
                ("nin", column.key, values.key),
                lambda: or_(not_(col() == any_(values.build())), col().is_(None)),
            )
        if op == "between":
            if not isinstance(value, list) or len(value) != 2:
                raise field_error(vpath, "between takes an array of two values [low, high]")
            low = self.bound(value[0], pg_type, f"{vpath}/0")
            high = self.bound(value[1], pg_type, f"{vpath}/1")
            return Expr(
                ("between", column.key, low.key, high.key), lambda: col().between(low.build(), high.build())
            )
        # contains / starts_with: text only
        if pg_type != "text":
            raise field_error(f"{path}/op", f"operator '{op}' applies to text fields only")
        text = _like(_coerce(value, "text", vpath))
        pattern = self.params.add(f"%{text}%" if op == "contains" else f"{text}%", "text")
        return Expr(("ilike", column.key, pattern.key), lambda: col().ilike(pattern.build()))

    def bound(self, value: Any, pg_type: FieldType, path: str) -> Expr:
        """A value to compare with: a parameter, or for a time or date field a relative time, computed by
        the database from the statement's ``now()`` (so the value's shape, not the value, is in the key)."""
        interval = relative_time.parse(value) if pg_type in ("timestamptz", "date") else None
        if interval is None:
            return self.params.add(_coerce(value, pg_type, path), pg_type)
        p = self.params.add(interval, "interval")
        if pg_type == "date":  # the day of that instant in UTC, the session's time zone
            return Expr(("ago_date", p.key), lambda: cast(func.now() - p.build(), Date()))
        return Expr(("ago", p.key), lambda: func.now() - p.build())

    def custom_field(self, key: str, op: Operator, value: Any, path: str) -> Expr:
        vpath = f"{path}/value"
        if op in ("eq", "neq", "in", "nin"):
            return self._custom_field_equals(key, op, value, vpath)
        name = self.params.add(key, "text")  # only where the SQL uses it: unused parameters have no type
        fields = column_ref(self.spec, "custom_fields")
        if op == "is_null":
            if not isinstance(value, bool):
                raise field_error(vpath, "is_null takes true or false")

            def present() -> ColumnElement[Any]:
                cf = fields.build()
                return and_(
                    cf.has_key(name.build()),
                    cf.op("->", return_type=JSONB())(name.build()) != literal_column("'null'::jsonb"),
                )

            found = Expr(("cf_present", name.key), present)
            return negate(found) if value else found
        as_text = Expr(
            ("cf_text", name.key), lambda: fields.build().op("->>", return_type=Text())(name.build())
        )
        if op in ("contains", "starts_with"):
            text = _like(_coerce(value, "text", vpath))
            pattern = self.params.add(f"%{text}%" if op == "contains" else f"{text}%", "text")
            return Expr(("ilike", as_text.key, pattern.key), lambda: as_text.build().ilike(pattern.build()))
        # ordering comparisons: numbers compare as numbers, anything else as text
        sample = value[0] if op == "between" and isinstance(value, list) and value else value
        numeric = isinstance(sample, int | float) and not isinstance(sample, bool)
        if not numeric:
            return self.column(as_text, "text", op, value, path)

        def number() -> ColumnElement[Any]:
            kind = func.jsonb_typeof(fields.build().op("->", return_type=JSONB())(name.build()))
            return case((kind == "number", cast(as_text.build(), Numeric())))

        return self.column(Expr(("cf_number", name.key), number), "numeric", op, value, path)

    def _custom_field_equals(self, key: str, op: Operator, value: Any, vpath: str) -> Expr:
        values = value if op in ("in", "nin") else [value]
        if not isinstance(values, list) or not values:
            raise field_error(vpath, f"{op} takes a non-empty array")
        for i, v in enumerate(values):
            if isinstance(v, dict | list) or v is None:
                raise field_error(f"{vpath}/{i}" if op in ("in", "nin") else vpath, "expected a scalar")
            problem = text_problem(v) if isinstance(v, str) else None
            if problem:
                raise field_error(f"{vpath}/{i}" if op in ("in", "nin") else vpath, problem)
        return self.contains_any([{key: v} for v in values], negated=op in ("neq", "nin"))

    def contains_any(self, probes: list[dict[str, Any]], negated: bool) -> Expr:
        """``custom_fields @> probe`` for any of the probes: the jsonb_path_ops GIN index serves it."""
        fields = column_ref(self.spec, "custom_fields")

        def has(probe: Expr) -> Expr:
            return Expr(("cf_has", probe.key), lambda: fields.build().contains(probe.build()))

        either = all_of("or", [has(self.params.add(jsonutil.dumps_str(p), "jsonb")) for p in probes])
        return negate(either) if negated else either

    def _list(self, value: Any, pg_type: FieldType, path: str) -> list[Any]:
        if not isinstance(value, list) or not value:
            raise field_error(path, "expected a non-empty array")
        if len(value) > 1000:
            raise field_error(path, "at most 1000 values")
        return [_coerce(v, pg_type, f"{path}/{i}") for i, v in enumerate(value)]
