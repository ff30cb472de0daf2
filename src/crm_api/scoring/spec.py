"""``/v1/scoring-rules``: lead scoring rules, one resource like any other.

A rule gives a contact points either for meeting a ``condition`` (the contacts' ``POST /search`` grammar,
relation hops and relative times included) or for each recent ``activity`` of a type linked to it. Scores
are kept by the workers (``scoring/worker.py``), never in the API's write: a rule created, changed,
archived or restored sets ``status`` to ``building`` and the workers rescore the workspace in chunks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
from pydantic import TypeAdapter

from .. import models
from ..errors import CRMError, FieldError, Unprocessable
from ..resources.custom_fields import enforce as custom_fields
from ..resources.exprs import Expr, Params
from ..resources.filters import Compiler
from ..resources.spec import REGISTRY, Pair, QueryParam, ResourceSpec, fields_of, register
from .schemas import ActivityRule, ScoringRule, ScoringRuleCreate, ScoringRuleUpdate

_ACTIVITY = TypeAdapter(ActivityRule)
SCORED = ("points", "condition", "activity")
"""The fields whose change rescores the workspace."""


async def compile_filter(
    conn: asyncpg.Connection | asyncpg.Pool,
    workspace_id: Any,
    table: str,
    node: Any,
    params: Params,
    path: str,
    known: dict[str, Any] | None = None,
) -> Expr:
    """A rule's condition (on contacts) or activity filter (on activities) as SQL, typed by the workspace's
    custom field definitions; errors name ``path``. ``known`` keeps the definitions read, by table."""
    spec = REGISTRY[table]
    compiler = Compiler(spec, params)
    if custom_fields.applies(spec):
        cache = {} if known is None else known
        if table not in cache:
            cache[table] = await custom_fields.definitions(conn, workspace_id, spec.object)
        compiler.custom_definitions = cache[table]
    return compiler.compile(node, path)


def _normalise(payload: dict[str, Any]) -> dict[str, Any]:
    """One kind replaces the other: an update sending only an ``activity`` clears ``condition`` (and
    ``points``, unless sent), one sending only a ``condition`` clears ``activity``. A kind is not cleared by
    null alone (the rule would have none): a create sends both keys, so only an update can."""
    out = dict(payload)
    for kind, other in (("condition", "activity"), ("activity", "condition")):
        if kind in out and other not in out:
            if out[kind] is None:
                raise Unprocessable(
                    f"A rule keeps its {kind} until it gets {'an' if other == 'activity' else 'a'} {other}",
                    [FieldError(f"/{kind}", "must not be null")],
                )
            out[other] = None
            if other == "condition" and "points" not in out:
                out["points"] = None
    if out.get("activity"):
        # stored whole, defaults included: an unchanged rule compares equal and is not rescored
        out["activity"] = _ACTIVITY.validate_python(out["activity"]).model_dump(mode="json")
    return out


def _kind_error(row: dict[str, Any]) -> FieldError | None:
    condition, activity = row["condition"] is not None, row["activity"] is not None
    if condition and activity:
        return FieldError("/activity", "a rule has a condition or an activity, not both")
    if not condition and not activity:
        return FieldError("/condition", "a rule needs a condition (with points) or an activity")
    if condition and row["points"] is None:
        return FieldError("/points", "required with a condition")
    if activity and row["points"] is not None:
        return FieldError("/points", "an activity rule's points are activity.points")
    return None


async def _prepare(conn: asyncpg.Connection, ctx: Any, pairs: Sequence[Pair]) -> dict[int, CRMError]:
    """Exactly one kind of rule, and its filter compiles against its grammar."""
    failures: dict[int, CRMError] = {}
    known: dict[str, Any] = {}
    for i, (old, new) in enumerate(pairs):
        if (error := _kind_error(new)) is not None:
            failures[i] = Unprocessable("A scoring rule has exactly one of condition and activity", [error])
            continue
        try:
            if new["condition"] is not None and (old is None or old["condition"] != new["condition"]):
                await compile_filter(
                    conn, ctx.workspace_id, "contacts", new["condition"], Params(ws=None), "/condition", known
                )
            activity = new["activity"]
            if activity is not None and activity.get("filter") is not None:
                await compile_filter(
                    conn, ctx.workspace_id, "activities", activity["filter"], Params(ws=None),
                    "/activity/filter", known,
                )  # fmt: skip
        except CRMError as exc:
            failures[i] = exc
    return failures


def _finalise(old: dict[str, Any] | None, new: dict[str, Any]) -> None:
    """A new rule, a changed one, or one archived or restored rescores the workspace."""
    moved = old is not None and (old["archived_at"] is None) != (new["archived_at"] is None)
    if old is None or moved or any(old[k] != new[k] for k in SCORED):
        new["status"] = "building"


SCORING_RULES = register(
    ResourceSpec(
        name="scoring_rules",
        object="scoring_rule",
        path="scoring-rules",
        searched="name",
        fields=fields_of(models.ScoringRule),
        create_schema=ScoringRuleCreate,
        update_schema=ScoringRuleUpdate,
        read_schema=ScoringRule,
        normalise=_normalise,
        search_text=lambda row: (row.get("name") or "").lower(),
        prepare=_prepare,
        finalise=_finalise,
        sorts=("created_at", "updated_at", "name"),
        query_params=(
            QueryParam("status", "status", "eq", "text"),
            QueryParam("name", "name", "eq", "text"),
            QueryParam("updated_after", "updated_at", "gt", "timestamptz"),
        ),
        defaults={"external_ids": {}, "status": "ready"},
        required=("name",),
    )
)
