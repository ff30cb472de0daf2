"""The activity resource: per-type field rules, task completion, links, filters."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from .. import models
from ..errors import CRMError, FieldError, Unprocessable
from ..models.activities import OPEN_TASK
from ..resources.spec import Include, Pair, QueryParam, Reference, ResourceSpec, fields_of, register
from .schemas import Activity, ActivityCreate, ActivityUpdate

ONLY_FOR: dict[str, tuple[str, ...]] = {
    "direction": ("call", "email"),
    "duration_seconds": ("call", "meeting"),
    "due_at": ("task",),
    "completed_at": ("task",),
    "priority": ("task",),
}
"""Type-specific fields and the types that have them; on any other type they must be null."""

CHECKED_LINKS: tuple[Reference, ...] = (
    Reference("contact_ids", "contacts"),
    Reference("company_ids", "companies"),
    Reference("deal_ids", "deals"),
    Reference("ticket_ids", "tickets"),
)
"""Links checked on every write (each id must be a live object of this workspace)."""


def _normalise(payload: dict[str, Any]) -> dict[str, Any]:
    return dict(payload)


def _search_text(row: dict[str, Any]) -> str:
    return (row.get("subject") or "").lower()


def _finalise(old: dict[str, Any] | None, new: dict[str, Any]) -> None:
    """Give every activity a place in time: non-tasks default to the moment of the write; a task that
    was not dated takes its completion time (and gives it back when reopened), so done tasks show on a
    timeline ordered by occurred_at."""
    if new["type"] != "task":
        if new["occurred_at"] is None:
            new["occurred_at"] = dt.datetime.now(dt.UTC)
        return
    was_done = old["completed_at"] if old is not None and old["type"] == "task" else None
    derived = was_done is not None and old is not None and old["occurred_at"] == was_done
    if derived and new["occurred_at"] == was_done:
        new["occurred_at"] = new["completed_at"]  # follows a re-dated or cleared completion
    elif new["occurred_at"] is None:
        new["occurred_at"] = new["completed_at"]


def type_errors(row: dict[str, Any]) -> list[FieldError]:
    kind = row["type"]
    return [
        FieldError(f"/{name}", f"only {' and '.join(types)} activities have it; this is a {kind}")
        for name, types in ONLY_FOR.items()
        if row.get(name) is not None and kind not in types
    ]


async def _prepare(conn: Any, ctx: Any, pairs: Sequence[Pair]) -> dict[int, CRMError]:
    """Checked on the merged row, so a PATCH that changes the type, or an upsert, cannot leave a field
    the new type does not have."""
    failures: dict[int, CRMError] = {}
    for i, (_, new) in enumerate(pairs):
        errors = type_errors(new)
        if errors:
            names = ", ".join(e.path.lstrip("/") for e in errors)
            failures[i] = Unprocessable(f"A {new['type']} cannot have {names}", errors)
    return failures


def _derived_events(old: dict[str, Any] | None, new: dict[str, Any]) -> list[str]:
    done = new["type"] == "task" and new["completed_at"] is not None
    was_done = old is not None and old["type"] == "task" and old["completed_at"] is not None
    return ["completed"] if done and not was_done else []


ACTIVITIES = register(
    ResourceSpec(
        name="activities",
        object="activity",
        called=("an activity", "activities"),
        searched="subject",
        fields=fields_of(
            models.Activity, unfilterable=("subject", "body", "direction", "duration_seconds", "priority")
        ),
        create_schema=ActivityCreate,
        update_schema=ActivityUpdate,
        read_schema=Activity,
        normalise=_normalise,
        search_text=_search_text,
        finalise=_finalise,
        prepare=_prepare,
        derived_events=_derived_events,
        references=CHECKED_LINKS,
        sorts=("created_at", "updated_at", "occurred_at", "due_at"),
        nullable_sorts=("occurred_at", "due_at"),
        includes=(
            Include("contacts", "contact_ids", "contacts", "array"),
            Include("companies", "company_ids", "companies", "array"),
            Include("deals", "deal_ids", "deals", "array"),
            Include("tickets", "ticket_ids", "tickets", "array"),
        ),
        member_columns=("owner_id",),
        query_params=(
            QueryParam("type", "type", "eq", "text"),
            QueryParam("contact_id", "contact_ids", "contains", "uuid[]"),
            QueryParam("company_id", "company_ids", "contains", "uuid[]"),
            QueryParam("deal_id", "deal_ids", "contains", "uuid[]"),
            QueryParam("ticket_id", "ticket_ids", "contains", "uuid[]"),
            QueryParam("owner_id", "owner_id", "eq", "uuid"),
            QueryParam("due_before", "due_at", "lt", "timestamptz"),
            QueryParam("due_after", "due_at", "gt", "timestamptz"),
            # open=true: tasks still to do; open=false: tasks done
            QueryParam(
                "open", "", "flag", "boolean", when=(OPEN_TASK, "type = 'task' AND completed_at IS NOT NULL")
            ),
            QueryParam("occurred_after", "occurred_at", "gt", "timestamptz"),
            QueryParam("occurred_before", "occurred_at", "lt", "timestamptz"),
            QueryParam("updated_after", "updated_at", "gt", "timestamptz"),
            QueryParam("created_after", "created_at", "gt", "timestamptz"),
            QueryParam("created_before", "created_at", "lt", "timestamptz"),
        ),
        defaults={
            "contact_ids": [],
            "company_ids": [],
            "deal_ids": [],
            "ticket_ids": [],
            "custom_fields": {},
            "external_ids": {},
        },
        required=("type",),
    )
)
