"""Filters on ``custom_fields.<name>`` typed by the field's definition.

``eq``/``in`` (and their negations) compare the stored form as containment (``custom_fields @> {...}``),
which the GIN ``jsonb_path_ops`` index on ``custom_fields`` serves; the filter value is normalised the way
writes are (``"A@X.COM"`` finds ``a@x.com``, ``12.50`` finds ``"12.5"``), and on a multi_enum ``eq`` means
"has this option". Ranges cast by type (number and decimal as numeric, datetime as timestamptz, dates
and text as text, which orders ISO dates correctly); they are not index-backed. Sorting by a custom field
is not offered: no index could serve it for every field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .. import jsonutil
from ..errors import field_error
from . import values

if TYPE_CHECKING:
    from ..filters import Compiler

_RANGES = ("lt", "lte", "gt", "gte", "between")
_DECIMAL = r"^[+-]?(\d+(\.\d*)?|\.\d+)$"
_DATETIME = r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d+)?Z$"


def typed_custom_field(
    compiler: Compiler, key: str, definition: Mapping[str, Any], op: str, value: Any, path: str
) -> str:
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
        parts = [f"custom_fields @> {compiler.params.add(jsonutil.dumps_str(p), 'jsonb')}" for p in probes]
        cond = "(" + " OR ".join(parts) + ")"
        return cond if op in ("eq", "in") else f"(NOT {cond})"
    if op not in _RANGES or kind in ("boolean", "multi_enum"):
        raise field_error(f"{path}/op", f"operator '{op}' does not apply to a {kind} custom field")
    if op == "between":
        if not isinstance(value, list) or len(value) != 2:
            raise field_error(vpath, "between takes an array of two values [low, high]")
        value = [_normalise(definition, v, f"{vpath}/{i}") for i, v in enumerate(value)]
    else:
        value = _normalise(definition, value, vpath)
    name = compiler.params.add(key, "text")
    text = f"(custom_fields ->> {name})"
    is_string = f"jsonb_typeof(custom_fields -> {name}) = 'string'"
    # each cast is guarded so a value stored before the definition existed never breaks the query
    if kind == "number":
        expr = f"(CASE WHEN jsonb_typeof(custom_fields -> {name}) = 'number' THEN {text}::numeric END)"
        return compiler.column(expr, "numeric", op, value, path)
    if kind == "decimal":
        expr = f"(CASE WHEN {is_string} AND {text} ~ '{_DECIMAL}' THEN {text}::numeric END)"
        return compiler.column(expr, "numeric", op, value, path)
    if kind == "datetime":
        expr = f"(CASE WHEN {is_string} AND {text} ~ '{_DATETIME}' THEN {text}::timestamptz END)"
        return compiler.column(expr, "timestamptz", op, value, path)
    return compiler.column(f"(CASE WHEN {is_string} THEN {text} END)", "text", op, value, path)


def _normalise(definition: Mapping[str, Any], value: Any, path: str) -> Any:
    if value is None:
        raise field_error(path, "null is only allowed with the is_null operator")
    single = {**definition, "type": "enum"} if definition["type"] == "multi_enum" else definition
    try:
        return values.normalise(single, value)
    except values.BadValue as exc:
        raise field_error(path, f"{definition['type']}: {exc}") from None
