"""``/v1/segments``: saved sets of contacts, companies or deals, one resource like any other.

A dynamic segment holds the live objects its filter matches (the ``POST /search`` grammar of its object
type, relation hops and relative times included), kept current by the workers (``segments/worker.py``),
never in the API's write: a new or edited filter sets ``status`` to ``building`` and a worker fills the
membership in the background. A static segment's members are added and removed by clients. ``object_type``
and ``kind`` are fixed at creation; ``member_count`` and ``status`` are the workers'.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from .. import models
from ..errors import CRMError, FieldError, Unprocessable
from ..resources.custom_fields import enforce as custom_fields
from ..resources.exprs import Expr, Params
from ..resources.filters import Compiler
from ..resources.spec import REGISTRY, Pair, QueryParam, ResourceSpec, fields_of, register
from .schemas import Segment, SegmentCreate, SegmentUpdate

TABLE_OF = {"contact": "contacts", "company": "companies", "deal": "deals"}


async def compile_filter(
    conn: asyncpg.Connection | asyncpg.Pool,
    workspace_id: Any,
    object_type: str,
    node: Any,
    params: Params,
    known: dict[str, Any] | None = None,
) -> Expr:
    """A segment's filter as a condition on its object type's table, typed by the workspace's custom field
    definitions as ``POST /search`` types it; errors name ``/filter/...``. ``known`` keeps the definitions
    read, by object type, for the next filters of the same workspace (a worker's step reads them once)."""
    spec = REGISTRY[TABLE_OF[object_type]]
    compiler = Compiler(spec, params)
    if custom_fields.applies(spec):
        cache = {} if known is None else known
        if object_type not in cache:
            cache[object_type] = await custom_fields.definitions(conn, workspace_id, spec.object)
        compiler.custom_definitions = cache[object_type]
    return compiler.compile(node)


async def _prepare(conn: asyncpg.Connection, ctx: Any, pairs: Sequence[Pair]) -> dict[int, CRMError]:
    """The filter fits the kind and compiles against the object type's grammar."""
    failures: dict[int, CRMError] = {}
    for i, (old, new) in enumerate(pairs):
        if new["kind"] == "static":
            if new["filter"] is not None:
                failures[i] = Unprocessable(
                    "A static segment has no filter", [FieldError("/filter", "only dynamic segments filter")]
                )
            continue
        if new["filter"] is None:
            failures[i] = Unprocessable(
                "A dynamic segment needs a filter", [FieldError("/filter", "required for a dynamic segment")]
            )
            continue
        if old is not None and old["filter"] == new["filter"]:
            continue
        try:
            await compile_filter(conn, ctx.workspace_id, new["object_type"], new["filter"], Params(ws=None))
        except CRMError as exc:
            failures[i] = exc
    return failures


def _finalise(old: dict[str, Any] | None, new: dict[str, Any]) -> None:
    """A dynamic segment whose filter is new, changed or back from the archive fills in again."""
    if new["kind"] != "dynamic":
        new["status"] = "ready"
        return
    back = old is not None and old["archived_at"] is not None and new["archived_at"] is None
    if old is None or old["filter"] != new["filter"] or back:
        new["status"] = "building"


SEGMENTS = register(
    ResourceSpec(
        name="segments",
        object="segment",
        searched="name",
        fields=fields_of(models.Segment),
        create_schema=SegmentCreate,
        update_schema=SegmentUpdate,
        read_schema=Segment,
        normalise=lambda payload: dict(payload),
        search_text=lambda row: (row.get("name") or "").lower(),
        prepare=_prepare,
        finalise=_finalise,
        sorts=("created_at", "updated_at", "name", "member_count"),
        query_params=(
            QueryParam("object_type", "object_type", "eq", "text"),
            QueryParam("kind", "kind", "eq", "text"),
            QueryParam("status", "status", "eq", "text"),
            QueryParam("name", "name", "eq", "text"),
            QueryParam("updated_after", "updated_at", "gt", "timestamptz"),
        ),
        defaults={"external_ids": {}, "member_count": 0, "status": "ready"},
        required=("name",),
    )
)
