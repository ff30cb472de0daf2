"""What the catalogue says about each event type, in the forms clients read it: the OpenAPI ``webhooks``
section, and the JSON Schema and sample payload ``GET /v1/event-types`` serves.

All of it is built from the OpenAPI components (the read schemas the objects are returned with), so an
event's ``data.object`` is described exactly as ``GET`` on the object describes it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from .types import CATALOGUE, EventType

_REF = "#/components/schemas/"
INCLUDES_KEY = "x-includes"
"""A read component's list of the properties only `include=` adds (`resources/includes.py`)."""
_SAMPLE_UUID = "0190f1c2-5a3b-7c4d-8e5f-6a7b8c9d0e1f"
_SAMPLE_WORKSPACE = "0190f1c2-0000-7000-8000-000000000001"
_SAMPLE_TIME = "2025-01-15T09:30:00Z"
_STRING_SAMPLES = {
    "uuid": _SAMPLE_UUID,
    "date-time": _SAMPLE_TIME,
    "date": "2025-01-15",
    "email": "ada@example.com",
    "uri": "https://example.com/",
}


def _envelope(event: EventType, data_object: dict[str, Any]) -> dict[str, Any]:
    """The JSON Schema of the whole body a webhook POSTs (and the feed serves) for this type."""
    data: dict[str, Any] = {
        "object": data_object,
        "previous": {"type": "object", "description": "old values of the changed fields"},
    }
    data.update(copy.deepcopy(dict(event.data)))
    return {
        "type": "object",
        "required": ["id", "type", "created_at", "sequence", "workspace_id", "data"],
        "properties": {
            "id": {"type": "string", "format": "uuid", "description": "also sent as webhook-id"},
            "type": {"const": event.type},
            "created_at": {"type": "string", "format": "date-time"},
            "sequence": {"type": "integer"},
            "workspace_id": {"type": "string", "format": "uuid"},
            "data": {"type": "object", "properties": data},
        },
    }


_SIGNATURE_HEADERS: tuple[dict[str, Any], ...] = (
    {
        "name": "webhook-id",
        "in": "header",
        "required": True,
        "description": "The event's id (the body's `id`), the same on every retry of it: delivery is at "
        "least once, so store it and skip an id already handled",
        "schema": {"type": "string", "format": "uuid"},
    },
    {
        "name": "webhook-timestamp",
        "in": "header",
        "required": True,
        "description": "When this attempt was signed, in Unix seconds; Standard Webhooks libraries refuse "
        "a timestamp more than five minutes from their clock (a replayed request)",
        "schema": {"type": "string", "pattern": "^[0-9]+$", "examples": ["1736933400"]},
    },
    {
        "name": "webhook-signature",
        "in": "header",
        "required": True,
        "description": '`v1,<base64 HMAC-SHA256 of "<webhook-id>.<webhook-timestamp>.<body>">` keyed '
        "with the endpoint's `whsec_` secret; for 24 hours after a rotation two such signatures, "
        "space-separated (one per secret): accept the request when one verifies",
        "schema": {"type": "string", "examples": ["v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4="]},
    },
)


def webhooks_section(components: Mapping[str, Any]) -> dict[str, Any]:
    """The OpenAPI ``webhooks``: one entry per catalogued type, for generated receivers. They are requests
    this service makes, signed per Standard Webhooks: they carry the signature headers, not the API's bearer
    key (``security: []`` overrides the document's)."""
    missing = sorted({e.schema for e in CATALOGUE} - set(components))
    if missing:
        raise LookupError(f"event payload schemas missing from the OpenAPI components: {missing}")
    out: dict[str, Any] = {}
    for event in CATALOGUE:
        body = _envelope(event, {"$ref": _REF + event.schema})
        out[event.type] = {
            "post": {
                "summary": f"{event.type}, signed per Standard Webhooks"
                + (f"; {event.note}" if event.note else ""),
                "description": event.description,
                "operationId": f"webhook_{event.prefix}_{event.action}",
                "parameters": copy.deepcopy(list(_SIGNATURE_HEADERS)),
                "security": [],
                "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
                "responses": {
                    "200": {"description": "any 2xx acknowledges the delivery"},
                    "410": {"description": "Gone: the endpoint is disabled and receives nothing more"},
                    "default": {
                        "description": "Any other answer, or none in time, is retried for about three days "
                        "(a `Retry-After` lengthens the wait)"
                    },
                },
            }
        }
    return out


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        found = {ref.removeprefix(_REF)} if isinstance(ref, str) and ref.startswith(_REF) else set()
        return found.union(*(_refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node))
    return set()


def _relink(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            k: ("#/$defs/" + v.removeprefix(_REF) if k == "$ref" and isinstance(v, str) else _relink(v))
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_relink(v) for v in node]
    return node


def _as_stored(component: Mapping[str, Any]) -> dict[str, Any]:
    """A component without the properties only ``include=`` adds (``INCLUDES_KEY``): an event holds the
    object as it was written."""
    added = component.get(INCLUDES_KEY)
    if not added:
        return dict(component)
    kept = {k: v for k, v in component.items() if k != INCLUDES_KEY}
    kept["properties"] = {k: v for k, v in component["properties"].items() if k not in added}
    return kept


def object_schema(components: Mapping[str, Any], name: str) -> dict[str, Any]:
    """A component as a self-contained JSON Schema: the components it refers to, transitively, under
    ``$defs``."""
    needed: set[str] = set()
    todo = _refs(_as_stored(components[name]))
    while todo:
        ref = todo.pop()
        if ref not in needed:
            needed.add(ref)
            todo |= _refs(_as_stored(components[ref]))
    schema: dict[str, Any] = _relink(_as_stored(components[name]))
    if needed:
        schema["$defs"] = {ref: _relink(_as_stored(components[ref])) for ref in sorted(needed)}
    return schema


def sample_value(schema: Mapping[str, Any], components: Mapping[str, Any], depth: int = 0) -> Any:
    """A value the schema accepts: its const, first example or enum member, else one of its type."""
    if depth > 12:
        return None
    ref = schema.get("$ref")
    if isinstance(ref, str):
        return sample_value(components[ref.rsplit("/", 1)[-1]], components, depth + 1)
    if "const" in schema:
        return schema["const"]
    for key in ("examples", "enum"):
        if schema.get(key):
            return schema[key][0]
    for key in ("anyOf", "oneOf", "allOf"):
        branches = [b for b in schema.get(key, ()) if b.get("type") != "null"]
        if branches:
            return sample_value(branches[0], components, depth + 1)
    kind = schema.get("type")
    if kind == "string":
        return _STRING_SAMPLES.get(schema.get("format", ""), "string")
    if kind == "integer":
        return 1
    if kind == "number":
        return 0.5
    if kind == "boolean":
        return False
    if kind == "array":
        items = schema.get("items")
        return [sample_value(items, components, depth + 1)] if items else []
    if kind == "object" or "properties" in schema:
        properties = _as_stored(schema).get("properties", {})
        return {k: sample_value(v, components, depth + 1) for k, v in properties.items()}
    return None


def sample_event(event: EventType, components: Mapping[str, Any]) -> dict[str, Any]:
    """A whole event as a webhook delivers it (and the feed lists it)."""
    obj = sample_value({"$ref": _REF + event.schema}, components)
    data: dict[str, Any] = {"object": obj, "previous": {k: obj.get(k) for k in event.previous}}
    data.update({k: sample_value(v, components) for k, v in event.data.items()})
    return {
        "id": _SAMPLE_UUID,
        "type": event.type,
        "created_at": _SAMPLE_TIME,
        "sequence": 1,
        "workspace_id": _SAMPLE_WORKSPACE,
        "data": data,
    }


def describe(components: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``GET /v1/event-types``'s entries, in catalogue order."""
    return [
        {
            "object": "event_type",
            "type": e.type,
            "object_type": e.object_type,
            "description": e.description,
            "schema": object_schema(components, e.schema),
            "sample": sample_event(e, components),
        }
        for e in CATALOGUE
    ]
