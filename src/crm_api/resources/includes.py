"""``include=`` and ``fields=``: related objects beside an object, and sparse objects.

A spec declares its relations (``spec.includes``). The statement that reads a list page, a search page or
one object also reads its relations to resources (``joined``), whatever their kind, as JSON text
PostgreSQL builds (``related.py``) and the response embeds as it is (``converter``): one round trip for
the objects and all of them. A relation to objects that are no resource (a deal's pipeline and stage, read
by their package's loader) costs one statement, whatever the page size: the ids the page names are
gathered and read at once. So does every relation of a page read another way (a custom field sort's), by
the target's read by ids or, for the rows that point here, one lateral statement for every parent of the
page. Every read is scoped to the workspace, so an id of another workspace (an id list holds no foreign
key) finds nothing. ``fields=`` trims the main object after that, keeping ``id``, ``object`` and the
relations asked for.

Neither parameter costs anything when absent: ``requested`` answers None and the routes go on as before.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg
import orjson

from ..errors import field_error
from ..events.describe import INCLUDES_KEY
from . import repository as repo
from .related import JOINED, MAX_ITEMS
from .spec import LOADERS, REGISTRY, Include, ResourceSpec

ALWAYS = ("id", "object")
"""What ``fields=`` always keeps."""


class MultiQuery(Protocol):
    """A query string's parameters, repeated ones too (Starlette's ``QueryParams``)."""

    def __contains__(self, key: object) -> bool: ...

    def getlist(self, key: Any) -> list[str]: ...


@dataclass(frozen=True)
class Shaping:
    """What a request asked for: relations to add, and the fields to keep (None: all)."""

    includes: tuple[Include, ...]
    fields: frozenset[str] | None


def api_fields(spec: ResourceSpec) -> tuple[str, ...]:
    """The keys of an object as ``spec.to_api`` returns it."""
    renamed = spec.api_names
    return (
        *ALWAYS,
        *(renamed.get(n, n) for n in spec.field_names),
        "created_at",
        "updated_at",
        "version",
        "archived_at",
    )


def _names(query: MultiQuery, key: str) -> list[str]:
    """Comma-separated, repeated, or both (``include=a,b``, ``include=a&include=b``), in order, once each."""
    names: dict[str, None] = {}
    for value in query.getlist(key):
        for name in value.split(","):
            if name.strip():
                names.setdefault(name.strip(), None)
    return list(names)


def requested(spec: ResourceSpec, query: MultiQuery) -> Shaping | None:
    """The request's ``include=`` and ``fields=``, checked (422 at ``/include`` or ``/fields`` naming the
    unknown name); None when it has neither."""
    if "include" not in query and "fields" not in query:
        return None
    relations = {i.name: i for i in spec.includes}
    includes = []
    for name in _names(query, "include"):
        if name not in relations:
            known = ", ".join(relations) or "none"
            raise field_error("/include", f"unknown relation {name!r}; {spec.many} have: {known}")
        includes.append(relations[name])
    fields = None
    if "fields" in query:
        known_fields = api_fields(spec)
        wanted = _names(query, "fields")
        for name in wanted:
            if name not in known_fields:
                raise field_error("/fields", f"unknown field {name!r}; fields are {', '.join(known_fields)}")
        fields = frozenset((*wanted, *ALWAYS))
    return Shaping(tuple(includes), fields)


def joined(shaping: Shaping | None) -> tuple[Include, ...]:
    """The relations read in the objects' own statement (``repository.list_rows``, ``fetch_one_joined``):
    those whose target is a resource, of every kind. A loader's objects stay a statement of their own."""
    if shaping is None:
        return ()
    return tuple(i for i in shaping.includes if i.target in REGISTRY)


def converter(
    spec: ResourceSpec, relations: tuple[Include, ...], records: bool = False
) -> Callable[[Any], dict[str, Any]]:
    """``spec.to_api`` for rows read with ``relations`` beside them: their JSON as PostgreSQL built it
    (``related.relation_json``), embedded in the response as it is (``orjson.Fragment``: never decoded
    nor encoded again here). A to-one relation that found nothing is null. ``records``: the rows are the
    driver's records of a statement selecting ``spec.columns`` first (``spec.record_to_api``)."""
    convert = spec.record_to_api if records else spec.to_api
    if not relations:
        return convert
    keys = [(i.name, JOINED + i.name) for i in relations]

    def to_api(row: Any) -> dict[str, Any]:
        obj = convert(row)
        for name, key in keys:
            text = row[key]
            obj[name] = None if text is None else orjson.Fragment(text)
        return obj

    return to_api


async def shape(
    conn: Any, spec: ResourceSpec, workspace_id: uuid.UUID, objects: list[dict[str, Any]], shaping: Shaping
) -> list[dict[str, Any]]:
    """The objects with their relations added (one statement per relation), then trimmed to ``fields``.
    A relation the page's statement already read (``joined``: every object holds it) costs nothing here.
    On the pool the relations' statements run side by side, each on a connection of its own; on one
    connection (a transaction's), one after another."""
    todo = [i for i in shaping.includes if not (objects and i.name in objects[0])]
    if len(todo) > 1 and not isinstance(conn, asyncpg.Connection):
        await asyncio.gather(*(_add(conn, spec, workspace_id, objects, i) for i in todo))
    else:
        for include in todo:
            await _add(conn, spec, workspace_id, objects, include)
    if shaping.fields is None:
        return objects
    keep = shaping.fields | {i.name for i in shaping.includes}
    return [{k: v for k, v in obj.items() if k in keep} for obj in objects]


async def _load(
    conn: Any, target: str, workspace_id: uuid.UUID, ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, dict[str, Any]]:
    """The target's objects with these ids, in this workspace, as the API shows them."""
    wanted = list(set(ids))
    if not wanted:
        return {}
    spec = REGISTRY.get(target)
    if spec is None:
        return await LOADERS[target](conn, workspace_id, wanted)
    to_api = spec.to_api
    return {r["id"]: to_api(r) for r in await repo.fetch_records_by_ids(conn, spec, workspace_id, wanted)}


async def _add(
    conn: Any, spec: ResourceSpec, workspace_id: uuid.UUID, objects: list[dict[str, Any]], include: Include
) -> None:
    name, column = include.name, include.column
    if include.kind == "one":
        found = await _load(conn, include.target, workspace_id, (o[column] for o in objects if o[column]))
        for obj in objects:
            obj[name] = found.get(obj[column]) if obj[column] is not None else None
    elif include.kind == "array":
        heads: list[Sequence[uuid.UUID]] = [(o[column] or [])[:MAX_ITEMS] for o in objects]
        found = await _load(conn, include.target, workspace_id, (i for ids in heads for i in ids))
        for obj, ids in zip(objects, heads, strict=True):
            items = [found[i] for i in ids if i in found]
            obj[name] = {"data": items, "has_more": len(obj[column] or []) > MAX_ITEMS}
    else:
        target = REGISTRY[include.target]
        rows = await repo.fetch_children(
            conn, target, workspace_id, column, [o["id"] for o in objects], MAX_ITEMS + 1
        )
        children: dict[uuid.UUID, list[dict[str, Any]]] = {}
        for row in rows:
            children.setdefault(row.pop("parent_id"), []).append(row)
        for obj in objects:
            mine = children.get(obj["id"], [])
            data = [target.to_api(r) for r in mine[:MAX_ITEMS]]
            obj[name] = {"data": data, "has_more": len(mine) > MAX_ITEMS}


# The OpenAPI side: the parameters (their names as enum components, so generated clients type them) and
# the relation properties on the read components.


def _component(spec: ResourceSpec) -> str:
    return spec.read_schema.__name__


def _target_component(include: Include) -> str:
    spec = REGISTRY.get(include.target)
    return _component(spec) if spec is not None else include.component


DECLARED: set[ResourceSpec] = set()
"""The specs whose parameters some route declares: ``components`` adds the components they refer to."""


def parameters(spec: ResourceSpec) -> list[dict[str, Any]]:
    """``include`` (when the spec has relations) and ``fields``, as OpenAPI query parameters."""
    DECLARED.add(spec)
    ref = "#/components/schemas/" + _component(spec)
    params = []
    if spec.includes:
        names = ", ".join(f"`{i.name}`" for i in spec.includes)
        params.append(
            {
                "name": "include",
                "in": "query",
                "style": "form",
                "explode": False,
                "description": f"Related objects to add, comma-separated or repeated: {names}. A to-one "
                "relation adds a field of its name holding the object (or null), a to-many one "
                f'`{{"data": [...], "has_more"}}` with at most {MAX_ITEMS} objects.',
                "schema": {"type": "array", "items": {"$ref": ref + "Include"}},
            }
        )
    params.append(
        {
            "name": "fields",
            "in": "query",
            "style": "form",
            "explode": False,
            "description": "Only these fields of the object, comma-separated or repeated (`id` and `object` "
            "always come, and the relations of `include`)",
            "schema": {"type": "array", "items": {"$ref": ref + "Field"}},
        }
    )
    return params


def components(schemas: dict[str, Any]) -> None:
    """Add to the OpenAPI ``schemas``, for each spec in ``DECLARED``: its ``<Object>Field`` and
    ``<Object>Include`` enums, each relation as an optional property of the read component (listed under
    ``INCLUDES_KEY``, so event payloads, which never hold them, are described and sampled without them),
    and ``<Object>Page`` for to-many ones."""
    for spec in sorted(DECLARED, key=_component):
        name = _component(spec)
        schemas[name + "Field"] = {"type": "string", "enum": list(api_fields(spec))}
        if not spec.includes:
            continue
        schemas[name + "Include"] = {"type": "string", "enum": [i.name for i in spec.includes]}
        schemas[name][INCLUDES_KEY] = [i.name for i in spec.includes]
        properties = schemas[name]["properties"]
        for include in spec.includes:
            target = _target_component(include)
            if include.kind == "one":
                properties[include.name] = {
                    "anyOf": [{"$ref": "#/components/schemas/" + target}, {"type": "null"}],
                    "description": f"With `include={include.name}`: the object `{include.column}` names",
                }
                continue
            schemas[target + "Page"] = {
                "type": "object",
                "required": ["data", "has_more"],
                "properties": {
                    "data": {"type": "array", "items": {"$ref": "#/components/schemas/" + target}},
                    "has_more": {"type": "boolean"},
                },
                "description": f"At most {MAX_ITEMS} related objects; `has_more`: there are others",
            }
            properties[include.name] = {"$ref": "#/components/schemas/" + target + "Page"}
