"""``GET /v1/schemas/{object_type}``: the JSON Schema of an object as the API returns it, with the workspace's
live custom field definitions in ``custom_fields``, so a form builder can render a record's fields, typed
fields included.

The object's part is its read component of the OpenAPI document (as ``GET /v1/event-types`` shows it:
self-contained, referenced components under ``$defs``, without the properties only ``include=`` adds); the
``custom_fields`` part is one statement for the live definitions. It needs ``custom_fields:read``: what it
adds to the document is the definitions.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from sqlalchemy import Select, select

from .. import sql
from ..auth import Principal, require
from ..deps import read_pool
from ..errors import NotFound
from ..events.describe import object_schema
from ..http import json_response, problems
from ..models.custom_fields import OBJECT_TYPES
from ..resources.spec import REGISTRY
from ..routing import Route

router = APIRouter(prefix="/v1/schemas", tags=["custom_fields"], route_class=Route)
Reader = Annotated[Principal, require("custom_fields:read")]
DIALECT = "https://json-schema.org/draft/2020-12/schema"


def _live() -> Select[Any]:
    cf = sql.table("custom_fields")
    return (
        select(
            cf.c.name, cf.c.label, cf.c.description, cf.c.type, cf.c.required, cf.c.is_unique, cf.c.options
        )
        .where(
            cf.c.workspace_id == sql.param("ws"),
            cf.c.object_type == sql.param("object_type"),
            cf.c.archived_at.is_(None),
        )
        .order_by(cf.c.created_at, cf.c.id)
    )


_LIVE = sql.Query(_live)

# each type as it is stored and returned (resources/custom_fields/values.py normalises to these)
_TYPES: dict[str, dict[str, Any]] = {
    "text": {"type": "string"},
    "number": {"type": "number"},
    "decimal": {"type": "string", "pattern": r"^-?\d+(\.\d+)?$"},
    "boolean": {"type": "boolean"},
    "date": {"type": "string", "format": "date"},
    "datetime": {"type": "string", "format": "date-time"},
    "url": {"type": "string", "format": "uri"},
    "email": {"type": "string", "format": "email"},
}


def value_schema(definition: Any) -> dict[str, Any]:
    """One definition's value: its type, its options (each a ``const`` with its label as ``title``), its
    label and description."""
    kind = definition["type"]
    if kind in ("enum", "multi_enum"):
        options = [{"const": o["value"], "title": o.get("label", o["value"])} for o in definition["options"]]
        schema: dict[str, Any] = {"oneOf": options}
        if kind == "multi_enum":
            schema = {"type": "array", "items": schema, "uniqueItems": True}
    else:
        schema = dict(_TYPES[kind])
    schema["title"] = definition["label"]
    if definition["description"]:
        schema["description"] = definition["description"]
    if definition["is_unique"]:
        schema["x-unique"] = True  # no JSON Schema keyword says "unique among records"
    return schema


def _objects() -> dict[str, Any]:
    """The served objects by their type (``contact``): the specs of the registry."""
    return {spec.object: spec for spec in REGISTRY.values()}


@router.get(
    "/{object_type}",
    operation_id="schemas_get",
    responses=problems(404, 422),
    summary="Get the JSON Schema of an object, with the workspace's custom fields",
    description="The object as `GET` returns it (JSON Schema 2020-12, referenced schemas under `$defs`), "
    "its `custom_fields` described by the workspace's live definitions: each field's type, options "
    "(`oneOf` of `const` and `title`), label (`title`) and description, the required ones in `required`, "
    "the unique ones marked `x-unique`. Objects without definitions keep free-form `custom_fields`. "
    "Object types: contact, company, deal, activity, ticket, sla_policy, custom_field. Needs "
    "`custom_fields:read`.",
)
async def get_schema(
    request: Request,
    object_type: Annotated[str, Path(max_length=64, pattern=r"^[a-z_]+$")],
    principal: Reader,
) -> Response:
    conn = read_pool(request)
    spec = _objects().get(object_type)
    components = request.app.openapi()["components"]["schemas"]
    if spec is None or spec.read_schema.__name__ not in components:
        raise NotFound(f"No object type {object_type!r}")
    schema = {
        "$schema": DIALECT,
        "title": spec.read_schema.__name__,
        **object_schema(components, spec.read_schema.__name__),
    }
    if object_type in OBJECT_TYPES and "custom_fields" in schema.get("properties", {}):
        rows = await _LIVE.fetch(conn, ws=principal.workspace_id, object_type=object_type)
        if rows:
            schema["properties"]["custom_fields"] = {
                "type": "object",
                "description": f"The workspace's custom fields of {spec.many}",
                "properties": {r["name"]: value_schema(r) for r in rows},
                "required": [r["name"] for r in rows if r["required"]],
            }
    return json_response(schema)
