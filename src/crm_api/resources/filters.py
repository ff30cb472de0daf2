"""The filter grammar shared by lists and ``POST /search``, compiled to a parameterised SQL condition.

    filter := {"and": [filter, ...]} | {"or": [filter, ...]} | {"not": filter}
            | {"field": <name>, "op": <op>, "value": <value>}

A field is a column of the resource, ``custom_fields.<name>``, or one relation hop such as
``company.industry``. Every error names the JSON path of the offending node.
"""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from collections.abc import Mapping
from typing import Any, TypeGuard, get_args

from .. import jsonutil
from ..errors import field_error
from ..sqlparams import Params
from ..timeutil import to_utc
from .custom_fields.typed import typed_custom_field
from .schemas import text_problem
from .spec import REGISTRY, FieldType, Operator, ResourceSpec, element_type

OPERATORS: tuple[Operator, ...] = get_args(Operator)
_COMPARE: dict[Operator, str] = {"eq": "=", "lt": "<", "lte": "<=", "gt": ">", "gte": ">="}
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
            raise field_error(path, "expected an RFC 3339 timestamp") from None
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
            raise field_error(path, "expected a date (YYYY-MM-DD)") from None
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


def _is_operator(op: Any) -> TypeGuard[Operator]:
    return op in OPERATORS


def _like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class Compiler:
    def __init__(self, spec: ResourceSpec, params: Params, workspace_param: str) -> None:
        self.spec = spec
        self.params = params
        self.ws = workspace_param
        self.nodes = 0
        self.custom_definitions: Mapping[str, Mapping[str, Any]] = {}
        """name -> custom field definition, set by the caller when the filter names custom fields."""

    def compile(self, node: Any, path: str = "/filter", depth: int = 0) -> str:
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
            return "(" + f" {key.upper()} ".join(parts) + ")"
        if "not" in node:
            if set(node) != {"not"}:
                raise field_error(path, "'not' must be the only key of its object")
            return f"(NOT {self.compile(node['not'], f'{path}/not', depth + 1)})"
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
    ) -> str:
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
            return f"{fk} IN (SELECT id FROM {target.table} WHERE workspace_id = {self.ws} AND {inner})"
        pg_type = spec.field_type(name)
        filterable = name in ("id", "created_at", "updated_at", "archived_at", "version") or any(
            f.name == name and f.filterable for f in spec.fields
        )
        if pg_type is None or not filterable or pg_type == "jsonb":
            raise field_error(f"{path}/field", f"unknown field '{name}' for {spec.name}")
        column = name if spec is self.spec else f"{spec.table}.{name}"
        return self.column(column, pg_type, op, value, path)

    def column(self, column: str, pg_type: FieldType, op: Operator, value: Any, path: str) -> str:
        vpath = f"{path}/value"
        if op == "is_null":
            if not isinstance(value, bool):
                raise field_error(vpath, "is_null takes true or false")
            if pg_type.endswith("[]"):
                return f"(cardinality({column}) {'=' if value else '>'} 0)"
            return f"({column} IS {'' if value else 'NOT '}NULL)"
        if pg_type.endswith("[]"):  # tags (text[]), links (uuid[]): has one, has any of
            element = element_type(pg_type)
            if op == "contains":
                return f"({column} @> ARRAY[{self.params.add(_coerce(value, element, vpath), element)}])"
            if op in ("in", "nin"):
                values = self._list(value, element, vpath)
                cond = f"({column} && {self.params.add(values, pg_type)})"
                return cond if op == "in" else f"(NOT {cond})"
            raise field_error(f"{path}/op", f"operator '{op}' does not apply to a list of tags")
        if op in _COMPARE:
            if op != "eq" and pg_type in ("uuid", "boolean"):
                raise field_error(f"{path}/op", f"operator '{op}' does not apply to a {pg_type} field")
            return f"({column} {_COMPARE[op]} {self.params.add(_coerce(value, pg_type, vpath), pg_type)})"
        if op == "neq":
            return f"({column} IS DISTINCT FROM {self.params.add(_coerce(value, pg_type, vpath), pg_type)})"
        if op in ("in", "nin"):
            values = self._list(value, pg_type, vpath)
            cond = f"({column} = ANY({self.params.add(values, pg_type + '[]')}))"
            return cond if op == "in" else f"(NOT {cond} OR {column} IS NULL)"
        if op == "between":
            if not isinstance(value, list) or len(value) != 2:
                raise field_error(vpath, "between takes an array of two values [low, high]")
            low = self.params.add(_coerce(value[0], pg_type, f"{vpath}/0"), pg_type)
            high = self.params.add(_coerce(value[1], pg_type, f"{vpath}/1"), pg_type)
            return f"({column} BETWEEN {low} AND {high})"
        # contains / starts_with: text only
        if pg_type != "text":
            raise field_error(f"{path}/op", f"operator '{op}' applies to text fields only")
        text = _like(_coerce(value, "text", vpath))
        pattern = f"%{text}%" if op == "contains" else f"{text}%"
        return f"({column} ILIKE {self.params.add(pattern, 'text')})"

    def custom_field(self, key: str, op: Operator, value: Any, path: str) -> str:
        vpath = f"{path}/value"
        if op in ("eq", "neq", "in", "nin"):
            return self._custom_field_equals(key, op, value, vpath)
        name = self.params.add(key, "text")  # only where the SQL uses it: unused parameters have no type
        if op == "is_null":
            if not isinstance(value, bool):
                raise field_error(vpath, "is_null takes true or false")
            present = f"(custom_fields ? {name} AND custom_fields -> {name} <> 'null'::jsonb)"
            return f"(NOT {present})" if value else present
        if op in ("contains", "starts_with"):
            text = _like(_coerce(value, "text", vpath))
            pattern = f"%{text}%" if op == "contains" else f"{text}%"
            return f"(custom_fields ->> {name} ILIKE {self.params.add(pattern, 'text')})"
        # ordering comparisons: numbers compare as numbers, anything else as text
        sample = value[0] if op == "between" and isinstance(value, list) and value else value
        numeric = isinstance(sample, int | float) and not isinstance(sample, bool)
        pg_type: FieldType = "numeric" if numeric else "text"
        expr = f"(custom_fields ->> {name})"
        if numeric:
            expr = (
                f"(CASE WHEN jsonb_typeof(custom_fields -> {name}) = 'number' "
                f"THEN (custom_fields ->> {name})::numeric END)"
            )
        return self.column(expr, pg_type, op, value, path)

    def _custom_field_equals(self, key: str, op: Operator, value: Any, vpath: str) -> str:
        values = value if op in ("in", "nin") else [value]
        if not isinstance(values, list) or not values:
            raise field_error(vpath, f"{op} takes a non-empty array")
        for i, v in enumerate(values):
            if isinstance(v, dict | list) or v is None:
                raise field_error(f"{vpath}/{i}" if op in ("in", "nin") else vpath, "expected a scalar")
            problem = text_problem(v) if isinstance(v, str) else None
            if problem:
                raise field_error(f"{vpath}/{i}" if op in ("in", "nin") else vpath, problem)
        # containment uses the jsonb_path_ops GIN index on custom_fields
        parts = [f"custom_fields @> {self.params.add(jsonutil.dumps_str({key: v}), 'jsonb')}" for v in values]
        cond = "(" + " OR ".join(parts) + ")"
        return cond if op in ("eq", "in") else f"(NOT {cond})"

    def _list(self, value: Any, pg_type: FieldType, path: str) -> list[Any]:
        if not isinstance(value, list) or not value:
            raise field_error(path, "expected a non-empty array")
        if len(value) > 1000:
            raise field_error(path, "at most 1000 values")
        return [_coerce(v, pg_type, f"{path}/{i}") for i, v in enumerate(value)]
