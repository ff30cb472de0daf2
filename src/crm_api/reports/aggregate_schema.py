"""The aggregate request as each resource's OpenAPI document has it: the group and metric fields are that
resource's (an enum), a metric other than ``count`` takes a number field, a time bucket a timestamp or date
field, so that the server refuses only what the document forbids (what no schema can say: a filter's
fields, a time zone missing from the IANA database, more than 10,000 groups; docs/API.md).

The server still checks each rule itself, naming the field (``/metrics/0/field``): these schemas are the
document's only (``WithJsonSchema``)."""

from __future__ import annotations

from typing import Annotated, Any, cast

from pydantic import Field, WithJsonSchema, create_model

from ..resources.spec import ResourceSpec
from .query import ZONE

NUMERIC = ("numeric", "bigint")
TIMES = ("timestamptz", "date")
OPS = ("sum", "avg", "min", "max", "median", "p90")
INTERVALS = ("day", "week", "month", "quarter", "year")

COMPONENTS: dict[str, dict[str, Any]] = {
    "AggregateOp": {"type": "string", "enum": list(OPS)},
    "AggregateInterval": {"type": "string", "enum": list(INTERVALS)},
}
"""The schemas the request models name, for ``components`` to add to the document: each enum and object a
component of its own, so generated clients get one type each (not one per model and field)."""


def _component(name: str, schema: dict[str, Any]) -> dict[str, str]:
    COMPONENTS[name] = schema
    return {"$ref": "#/components/schemas/" + name}


def _enum(name: str, values: list[str]) -> dict[str, str]:
    return _component(name, {"type": "string", "enum": values})


def components(schemas: dict[str, Any]) -> None:
    schemas.update(COMPONENTS)


def _fields(spec: ResourceSpec) -> dict[str, str]:
    """Every field name the aggregate takes, with its type (``ResourceSpec.field_type``'s)."""
    names = [f.name for f in spec.fields] + ["id", "created_at", "updated_at", "archived_at", "version"]
    return {n: kind for n in dict.fromkeys(names) if (kind := spec.field_type(n)) is not None}


def groupable(kind: str) -> bool:
    return kind != "jsonb" and not kind.endswith("[]")


def _group(prefix: str, fields: dict[str, str]) -> dict[str, Any]:
    names = [n for n, kind in fields.items() if groupable(kind)]
    times = [n for n, kind in fields.items() if kind in TIMES]
    bucket = {
        "type": "object",
        "properties": {
            "field": _enum(prefix + "TimeField", times),
            "interval": {"$ref": "#/components/schemas/AggregateInterval"},
            "tz": {"anyOf": [ZONE.json_schema, {"type": "null"}]},
        },
        "required": ["field", "interval"],
        "additionalProperties": False,
    }
    return {"anyOf": [_enum(prefix + "GroupField", names), _component(prefix + "TimeGroup", bucket)]}


def _metric(prefix: str, fields: dict[str, str]) -> dict[str, Any]:
    count = {
        "type": "object",
        "properties": {
            "op": {"type": "string", "enum": ["count"]},
            "field": {"anyOf": [_enum(prefix + "Field", list(fields)), {"type": "null"}]},
        },
        "required": ["op"],
        "additionalProperties": False,
    }
    numbers = [n for n, kind in fields.items() if kind in NUMERIC]
    if not numbers:
        return _component(prefix + "Count", count)
    of_field = {
        "type": "object",
        "properties": {
            "op": {"$ref": "#/components/schemas/AggregateOp"},
            "field": _enum(prefix + "NumberField", numbers),
        },
        "required": ["op", "field"],
        "additionalProperties": False,
    }
    return {"anyOf": [_component(prefix + "Count", count), _component(prefix + "NumberMetric", of_field)]}


def request_model(spec: ResourceSpec, base: type[Any], group: Any, metric: Any) -> type[Any]:
    """``base`` (the shared request model) with the resource's group and metric schemas."""
    fields = _fields(spec)
    prefix = "".join(part.title() for part in spec.name.split("_")) + "Aggregate"
    group_by = Annotated[list[Annotated[group, WithJsonSchema(_group(prefix, fields))]], Field(max_length=5)]
    metrics = Annotated[
        list[Annotated[metric, WithJsonSchema(_metric(prefix, fields))]], Field(min_length=1, max_length=20)
    ]
    name = prefix + "Request"
    made = create_model(
        name,
        __base__=base,
        group_by=(group_by, Field([], description="Fields, or time buckets of one")),
        metrics=(metrics, ...),
    )
    return cast(type[Any], made)
