"""The deal resource: fields, filters, and the rules that tie a deal to its pipeline's stages.

``prepare`` (every write path: create, PATCH, upserts, batch, deals moved off a removed stage) resolves the
pipeline and stage in one query for all rows: an omitted pipeline is the workspace default (or the named
stage's pipeline), an omitted stage the pipeline's first open stage; a stage of another pipeline is a 422
naming ``/stage_id``. ``status`` follows the stage's kind and ``closed_at`` is stamped on won or lost and
cleared on reopening. Stage moves become ``deal.stage_changed`` events, from which a trigger writes the
stage history (see migration 0004).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from .. import models
from ..contacts.totals import refresh_contacts
from ..errors import CRMError, FieldError, Unprocessable, field_error
from ..resources.spec import Include, Pair, QueryParam, Reference, ResourceSpec, fields_of, register
from . import repository as repo
from .schemas import Deal, DealCreate, DealUpdate


def _normalise(payload: dict[str, Any]) -> dict[str, Any]:
    return payload


def _finalise(old: dict[str, Any] | None, new: dict[str, Any]) -> None:
    """The primary contact is always among the associated ones (so ``?contact_id=`` finds either)."""
    ids = list(dict.fromkeys(new.get("contact_ids") or []))
    if new.get("contact_id") is not None and new["contact_id"] not in ids:
        ids.insert(0, new["contact_id"])
    new["contact_ids"] = ids


def _search_text(row: dict[str, Any]) -> str:
    return (row.get("name") or "").lower()


async def _prepare(conn: Any, ctx: Any, pairs: Sequence[Pair]) -> dict[int, CRMError]:
    pipeline_ids = {new["pipeline_id"] for _, new in pairs if new["pipeline_id"] is not None}
    stage_ids = {new["stage_id"] for _, new in pairs if new["stage_id"] is not None}
    with_default = any(new["pipeline_id"] is None for _, new in pairs)
    rows = await repo.stages_for(conn, ctx.workspace_id, list(pipeline_ids), list(stage_ids), with_default)
    stages = {r["id"]: r for r in rows}
    first_open: dict[Any, Any] = {}
    archived: set[Any] = set()
    default = None
    for r in rows:  # ordered by pipeline, position
        if r["kind"] == "open":
            first_open.setdefault(r["pipeline_id"], r["id"])
        if r["archived_at"] is not None:
            archived.add(r["pipeline_id"])
        if r["is_default"]:
            default = r["pipeline_id"]

    failures: dict[int, CRMError] = {}
    at = dt.datetime.now(dt.UTC)
    for i, (old, new) in enumerate(pairs):
        try:
            _place(old, new, stages, first_open, archived, default, at)
        except CRMError as exc:
            failures[i] = exc
    return failures


def _place(
    old: dict[str, Any] | None,
    new: dict[str, Any],
    stages: dict[Any, Any],
    first_open: dict[Any, Any],
    archived: set[Any],
    default: Any,
    at: dt.datetime,
) -> None:
    if new["pipeline_id"] is None:
        named = stages.get(new["stage_id"])
        new["pipeline_id"] = named["pipeline_id"] if named is not None else default
        if new["pipeline_id"] is None:
            raise field_error("/pipeline_id", "required: this workspace has no default pipeline")
    moved_pipeline = old is not None and new["pipeline_id"] != old["pipeline_id"]
    if moved_pipeline and old is not None and new["stage_id"] == old["stage_id"]:
        new["stage_id"] = None  # a new pipeline without a stage: its first open stage
    if (old is None or moved_pipeline) and new["pipeline_id"] in archived:
        raise field_error("/pipeline_id", "the pipeline is archived")
    if new["stage_id"] is None:
        new["stage_id"] = first_open.get(new["pipeline_id"])
        if new["stage_id"] is None:
            raise field_error("/pipeline_id", "no such pipeline, or it has no open stage")
    stage = stages.get(new["stage_id"])
    if stage is None:
        raise field_error("/stage_id", "no such stage")
    if stage["pipeline_id"] != new["pipeline_id"]:
        raise field_error("/stage_id", "the stage belongs to another pipeline")
    new["status"] = stage["kind"]
    before = old["status"] if old is not None else None
    if new["status"] != before:
        new["closed_at"] = at if new["status"] != "open" else None
    if new["amount"] is not None and new["currency"] is None:
        raise Unprocessable(
            "An amount needs its currency", [FieldError("/currency", "required with an amount")]
        )


_VALUE_FIELDS = ("status", "amount", "currency", "contact_id", "archived_at")


def _valued_contacts(pairs: Sequence[Pair]) -> set[Any]:
    """The contacts whose lifetime value the changes move: a won deal that appears, changes or stops
    counting, its contacts before and after."""
    touched: set[Any] = set()
    for old, new in pairs:
        won = new["status"] == "won" or (old is not None and old["status"] == "won")
        if won and (old is None or any(old[f] != new[f] for f in _VALUE_FIELDS)):
            touched |= {c for c in (new["contact_id"], old and old["contact_id"]) if c is not None}
    return touched


def _upkeep_needed(pairs: Sequence[Pair]) -> bool:
    return bool(_valued_contacts(pairs))


async def _after_write(conn: Any, ctx: Any, pairs: Sequence[Pair]) -> dict[int, CRMError]:
    """A contact's lifetime value sums its won deals: refresh the contacts the changes move, in the same
    transaction, set-based."""
    touched = _valued_contacts(pairs)
    if touched:
        await refresh_contacts(conn, ctx, touched)
    return {}


def _derived_events(old: dict[str, Any] | None, new: dict[str, Any]) -> list[str]:
    events = []
    if old is not None and old["stage_id"] != new["stage_id"]:
        events.append("stage_changed")
    before = old["status"] if old is not None else "open"
    if new["status"] != before and new["status"] in ("won", "lost"):
        events.append(new["status"])
    return events


DEALS = register(
    ResourceSpec(
        name="deals",
        object="deal",
        searched="name",
        fields=fields_of(models.Deal, unfilterable=("currency", "lost_reason")),
        money=("amount",),
        create_schema=DealCreate,
        update_schema=DealUpdate,
        read_schema=Deal,
        normalise=_normalise,
        search_text=_search_text,
        finalise=_finalise,
        prepare=_prepare,
        derived_events=_derived_events,
        after_write=_after_write,
        upkeep_needed=_upkeep_needed,
        references=(
            Reference("contact_id", "contacts"),
            Reference("company_id", "companies"),
            Reference("contact_ids", "contacts"),
        ),
        sorts=("created_at", "updated_at", "name"),
        member_columns=("owner_id",),
        query_params=(
            QueryParam("segment_id", "id", "segment", "uuid", "Members of this segment"),
            QueryParam("pipeline_id", "pipeline_id", "eq", "uuid"),
            QueryParam("stage_id", "stage_id", "eq", "uuid"),
            QueryParam("status", "status", "eq", "text"),
            QueryParam("owner_id", "owner_id", "eq", "uuid"),
            # contact_ids always holds the primary contact, so one GIN lookup answers both
            QueryParam(
                "contact_id",
                "contact_ids",
                "contains",
                "uuid[]",
                "Deals whose primary or associated contacts include this one",
            ),
            QueryParam("expected_close_after", "expected_close_date", "gt", "date", "Strictly after"),
            QueryParam("expected_close_before", "expected_close_date", "lt", "date", "Strictly before"),
            QueryParam("company_id", "company_id", "eq", "uuid"),
            QueryParam("amount_gte", "amount", "gte", "numeric", "Amount at least this (a decimal string)"),
            QueryParam("amount_lte", "amount", "lte", "numeric", "Amount at most this (a decimal string)"),
            QueryParam("closed_after", "closed_at", "gt", "timestamptz"),
            QueryParam("closed_before", "closed_at", "lt", "timestamptz"),
            QueryParam("source", "source", "eq", "text"),
            QueryParam("tag", "tags", "contains", "text[]"),
            QueryParam("updated_after", "updated_at", "gt", "timestamptz"),
            QueryParam("created_after", "created_at", "gt", "timestamptz"),
            QueryParam("created_before", "created_at", "lt", "timestamptz"),
        ),
        relations={"company": ("company_id", "companies"), "contact": ("contact_id", "contacts")},
        # pipelines and stages are no resources: their package registers their loaders
        includes=(
            Include("contact", "contact_id", "contacts"),
            Include("company", "company_id", "companies"),
            Include("pipeline", "pipeline_id", "pipelines", component="Pipeline"),
            Include("stage", "stage_id", "pipeline_stages", component="Stage"),
        ),
        defaults={"tags": [], "custom_fields": {}, "external_ids": {}, "contact_ids": []},
        required=("name", "pipeline_id", "stage_id"),
    )
)
