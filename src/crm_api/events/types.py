"""Every event type the code writes, with its object type and what it means: the one list.

The OpenAPI ``webhooks`` section, ``GET /v1/event-types``, the check on webhook subscriptions and the
history's list of derived events are all read from here. Adding an event type means adding its line here;
the test suite fails when a write records a type this list does not hold (``tests/events`` drives every
writer; ``tests/conftest.py`` checks every type the whole run wrote).

Each entry names the OpenAPI component of ``data.object`` (the read schema its object is returned with)
rather than importing the model: this module sits below the domains that emit the events.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

RECORD_ACTIONS = ("created", "updated", "archived", "restored")
"""What every archivable record emits (the generic resources and pipelines)."""

_UUID: dict[str, Any] = {"type": "string", "format": "uuid"}


@dataclass(frozen=True, slots=True)
class EventType:
    type: str
    """``<prefix>.<action>``: subscriptions match the exact type, ``<prefix>.*`` or ``*``."""
    object_type: str
    """The ``object_type`` column of the event rows (``ticket_comment`` for ``ticket.comment_created``)."""
    schema: str
    """The OpenAPI component that ``data.object`` follows."""
    description: str
    note: str = ""
    """The OpenAPI summary's remark after the type, worded as first published (summaries do not change)."""
    data: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Keys ``data`` carries beside ``object`` and ``previous``, with their JSON Schemas."""
    previous: tuple[str, ...] = ()
    """The fields ``data.previous`` names when an older version existed (shown in the sample)."""
    derived: bool = False
    """Written beside a ``.created``/``.updated`` event of the same change, repeating its ``previous``."""

    @property
    def prefix(self) -> str:
        return self.type.partition(".")[0]

    @property
    def action(self) -> str:
        return self.type.partition(".")[2]


def _record(prefix: str, schema: str, noun: str) -> tuple[EventType, ...]:
    """The four events of an archivable record."""
    meanings = {
        "created": f"{noun} was created",
        "updated": f"{noun} changed; data.previous holds the old values of the changed fields",
        "archived": f"{noun} was archived (deleted: kept, restorable, hidden from lists)",
        "restored": f"{noun} was restored from the archive",
    }
    previous = {"archived": ("archived_at",), "restored": ("archived_at",)}
    return tuple(
        EventType(f"{prefix}.{action}", prefix, schema, meanings[action], previous=previous.get(action, ()))
        for action in RECORD_ACTIONS
    )


_MERGED: dict[str, dict[str, Any]] = {"survivor": _UUID, "merged": {"type": "array", "items": _UUID}}
_MEMBER: dict[str, dict[str, Any]] = {
    "segment_id": _UUID,
    "object_type": {"type": "string", "enum": ["contact", "company", "deal"]},
    "object_id": _UUID,
    "reason": {
        "type": "string",
        "enum": ["matched", "unmatched", "added", "removed", "archived", "merged", "erased"],
    },
}
_MERGE_NOTE = "data.survivor is the id kept, data.merged the ids archived into it"

CATALOGUE: tuple[EventType, ...] = (
    *_record("contact", "Contact", "A contact"),
    EventType(
        "contact.merged",
        "contact",
        "Contact",
        "Other contacts were merged into this one (the survivor); " + _MERGE_NOTE,
        note=_MERGE_NOTE,
        data=_MERGED,
    ),
    EventType(
        "contact.erased",
        "contact",
        "ErasedContact",
        "A contact's personal data was erased (GDPR); data.object is only its id",
        note="the contact's personal data was erased; data.object is only its id",
    ),
    EventType(
        "contact.score_changed",
        "contact",
        "Contact",
        "A contact's lead score changed (a scoring rule, a change of the contact or its activities, or time "
        "passing); data.score is the new score, data.previous.score the old one",
        note="data.score is the new lead score, data.previous.score the old one",
        data={"score": {"type": "integer"}},
        previous=("score",),
    ),
    *_record("company", "Company", "A company"),
    EventType(
        "company.merged",
        "company",
        "Company",
        "Other companies were merged into this one (the survivor); " + _MERGE_NOTE,
        note=_MERGE_NOTE,
        data=_MERGED,
    ),
    *_record("pipeline", "Pipeline", "A pipeline (or its stages)"),
    *_record("deal", "Deal", "A deal"),
    EventType(
        "deal.stage_changed",
        "deal",
        "Deal",
        "A deal moved to another stage; data.previous.stage_id holds the stage it left",
        note="previous.stage_id holds the stage it left",
        previous=("stage_id",),
        derived=True,
    ),
    EventType(
        "deal.won",
        "deal",
        "Deal",
        "A deal entered a won stage (on create or on a move)",
        note="the deal entered a won stage",
        previous=("stage_id", "status"),
        derived=True,
    ),
    EventType(
        "deal.lost",
        "deal",
        "Deal",
        "A deal entered a lost stage (on create or on a move)",
        note="the deal entered a lost stage",
        previous=("stage_id", "status"),
        derived=True,
    ),
    *_record("activity", "Activity", "An activity"),
    EventType(
        "activity.completed",
        "activity",
        "Activity",
        "A task was completed: its completed_at was set",
        note="a task's completed_at was set",
        previous=("completed_at",),
        derived=True,
    ),
    *_record("ticket", "Ticket", "A ticket"),
    EventType(
        "ticket.status_changed",
        "ticket",
        "Ticket",
        "A ticket's status changed; data.previous.status holds the old status",
        note="previous.status holds the old status",
        previous=("status",),
        derived=True,
    ),
    EventType(
        "ticket.sla_breached",
        "ticket",
        "Ticket",
        "A ticket missed an SLA target; data.target names it, data.due_at is the time missed, "
        "data.previous holds its <target>_breached_at (null)",
        note="data.target is first_response or resolution; data.due_at the time missed",
        data={
            "target": {"type": "string", "enum": ["first_response", "resolution"]},
            "due_at": {"type": "string", "format": "date-time"},
        },
    ),
    EventType(
        "ticket.comment_created",
        "ticket_comment",
        "TicketComment",
        "A comment was added to a ticket; data.object is the comment, its ticket_id names the ticket",
        note="data.object is the comment; its ticket_id names the ticket",
    ),
    *_record("sla_policy", "SlaPolicy", "An SLA policy"),
    *_record("custom_field", "CustomField", "A custom field definition"),
    *_record("member", "Member", "A member of the workspace"),
    *_record("team", "Team", "A team of members"),
    *_record("segment", "Segment", "A segment"),
    *_record("scoring_rule", "ScoringRule", "A scoring rule"),
    *(
        EventType(
            f"segment.member_{change}",
            "segment",
            "SegmentReference",
            f"An object {verb} a segment; data.object is the segment's reference (id, object, name), "
            f"data.object_id the {noun}, data.reason why ({reasons})",
            note=f"data.object_id {verb} the segment; data.reason says why",
            data=_MEMBER,
        )
        for change, verb, noun, reasons in (
            ("added", "entered", "object that entered", "matched or added"),
            (
                "removed",
                "left",
                "object that left",
                "unmatched, removed, archived, merged or erased",
            ),
        )
    ),
    *_record("automation", "Automation", "An automation"),
    EventType(
        "automation.run_failed",
        "automation",
        "Automation",
        "A run of an automation failed and changed nothing; data.run is the run, as "
        "GET /v1/automations/{id}/runs shows it",
        data={"run": {"type": "object"}},
    ),
    EventType(
        "webhook.test",
        "webhook_endpoint",
        "Endpoint",
        "A test sent by POST /v1/webhooks/{id}/test, to that endpoint only; data.object is the endpoint",
    ),
)

BY_TYPE: dict[str, EventType] = {e.type: e for e in CATALOGUE}
PREFIXES: frozenset[str] = frozenset(e.prefix for e in CATALOGUE)
DERIVED: tuple[str, ...] = tuple(e.type for e in CATALOGUE if e.derived)


def pattern_problem(pattern: str) -> str | None:
    """Why a subscription pattern (``*``, ``contact.*`` or an exact type) would never match, or None."""
    if pattern == "*" or pattern in BY_TYPE:
        return None
    prefix, _, action = pattern.partition(".")
    if action == "*":
        return None if prefix in PREFIXES else f"no event type starts with '{prefix}.'"
    return f"unknown event type '{pattern}' (GET /v1/event-types lists them)"
