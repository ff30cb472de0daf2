"""Automation bodies: a trigger and a list of actions, each action a tagged object."""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field
from typing_extensions import TypeAliasType

from ..events.types import CATALOGUE
from ..resources.schemas import (
    ExternalIds,
    Filter,
    ReadModel,
    ShortText,
    Tags,
    Text,
    WriteModel,
    not_clearable,
)

RunStatus = TypeAliasType("RunStatus", Literal["succeeded", "failed", "stopped"])
AssignStrategy = TypeAliasType("AssignStrategy", Literal["round_robin", "least_open"])
TRIGGER_OBJECTS = ("contact", "company", "deal", "activity", "ticket")
"""The objects whose events may trigger an automation: the records actions can change."""


TriggerEventType = enum.StrEnum(  # type: ignore[misc]
    "TriggerEventType", {e.type: e.type for e in CATALOGUE if e.object_type in TRIGGER_OBJECTS}
)
"""The event types a trigger may name: those of the records actions can change."""


class EventTrigger(WriteModel):
    type: Literal["event"]
    event_type: TriggerEventType = Field(
        description="An event type of a contact, company, deal, activity or ticket (`contact.created`, "
        "`deal.stage_changed`); `GET /v1/event-types` lists them"
    )
    filter: Filter | None = Field(
        None,
        description="The search grammar of `POST /v1/<resource>/search`, on the event's object as it is "
        "when the run starts; the automation runs only when it matches",
    )


TriggerObject = TypeAliasType("TriggerObject", Literal["contact", "company", "deal", "activity", "ticket"])


class ScheduleTrigger(WriteModel):
    type: Literal["schedule"]
    object_type: TriggerObject
    filter: Filter | None = Field(None, description="The search grammar on the object type's records")
    not_updated_for_days: int = Field(
        0, ge=0, le=3650, description="Only records whose `updated_at` is at least this many days old"
    )
    interval_minutes: int = Field(60, ge=1, le=10_080, description="How often the workers look")


SegmentObject = TypeAliasType("SegmentObject", Literal["contact", "company", "deal"])


class SegmentTrigger(WriteModel):
    type: Literal["segment"]
    segment_id: uuid.UUID = Field(
        description="A live segment (dynamic or static): the automation runs for each object it gains "
        "(`segment.member_added`), on that object"
    )
    filter: Filter | None = Field(
        None, description="The search grammar on the object that entered, as it is when the run starts"
    )
    object_type: SegmentObject | None = Field(
        None, description="The segment's object type, set on save (a value given is replaced)"
    )


Trigger = TypeAliasType(
    "Trigger", Annotated[EventTrigger | ScheduleTrigger | SegmentTrigger, Field(discriminator="type")]
)


class SetFields(WriteModel):
    type: Literal["set_fields"]
    fields: dict[str, Any] = Field(
        description="Fields of the record, as its `PATCH` takes them (checked on save)"
    )


class AddTags(WriteModel):
    type: Literal["add_tags"]
    tags: Tags = Field(min_length=1)


class RemoveTags(WriteModel):
    type: Literal["remove_tags"]
    tags: Tags = Field(min_length=1)


class AssignOwner(WriteModel):
    """One of ``member_id`` and ``team_id``."""

    type: Literal["assign_owner"]
    member_id: uuid.UUID | None = Field(None, description="An active member (tickets: their `assignee_id`)")
    team_id: uuid.UUID | None = Field(
        None, description="A team: its active members in turn, in the team's order (`strategy`)"
    )
    strategy: AssignStrategy = Field(
        "round_robin",
        description="For a team: `round_robin` (each active member in turn, in the team's order) or "
        "`least_open` (the active member owning the fewest open records of the type: open deals, tickets "
        "not solved or closed, tasks not completed, live contacts or companies)",
    )


class CreateTask(WriteModel):
    type: Literal["create_task"]
    subject: Text = Field(min_length=1)
    due_in_days: int = Field(0, ge=0, le=3650, description="The task is due this many days after the run")
    owner_id: Literal["record_owner"] | uuid.UUID = Field(
        "record_owner", description="`record_owner` (the record's owner, or none) or an active member"
    )


class AddToSegment(WriteModel):
    type: Literal["add_to_segment"]
    segment_id: uuid.UUID = Field(description="A live static segment of the record's object type")


class RemoveFromSegment(WriteModel):
    type: Literal["remove_from_segment"]
    segment_id: uuid.UUID = Field(description="A live static segment of the record's object type")


class CreateNote(WriteModel):
    type: Literal["create_note"]
    body: Annotated[str, Field(min_length=1, max_length=65_536)]


AutomationAction = TypeAliasType(
    "AutomationAction",
    Annotated[
        SetFields
        | AddTags
        | RemoveTags
        | AssignOwner
        | CreateTask
        | CreateNote
        | AddToSegment
        | RemoveFromSegment,
        Field(discriminator="type"),
    ],
)
Actions = Annotated[list[AutomationAction], Field(min_length=1, max_length=20)]


class AutomationCreate(WriteModel):
    name: ShortText = Field(min_length=1)
    enabled: bool = True
    trigger: Trigger
    actions: Actions
    external_ids: ExternalIds = {}


class AutomationUpdate(WriteModel):
    name: ShortText | None = not_clearable(min_length=1)
    enabled: bool | None = not_clearable()
    trigger: Trigger | None = not_clearable()
    actions: Actions | None = not_clearable()
    external_ids: ExternalIds | None = None


class Automation(ReadModel):
    object: Literal["automation"]
    name: str
    enabled: bool
    trigger: Trigger
    actions: list[AutomationAction]
    external_ids: ExternalIds


class ActionDone(BaseModel):
    type: str = Field(description="The action's type")
    object_type: str = Field(
        description="`activity` for a task or note made, `segment` for a segment's membership, else the "
        "record's type"
    )
    object_id: uuid.UUID | None = Field(description="The object touched (null for one a test would create)")
    changes: dict[str, Any] = Field(
        description="The fields it set, as the object shows them; for a segment, `members_added` or "
        "`members_removed` with the record's id (empty when it already was, or was not, a member)"
    )


class AutomationRun(BaseModel):
    object: Literal["automation_run"]
    id: uuid.UUID
    automation_id: uuid.UUID
    event_id: uuid.UUID = Field(description="The triggering event (`GET /v1/events/{id}`)")
    event_type: str
    object_type: str
    object_id: uuid.UUID = Field(description="The record the event is about, which the actions act on")
    depth: int = Field(description="1, or one more than the run whose change triggered this one")
    status: RunStatus = Field(
        description="`failed`: an action was refused and the run changed nothing (see `error`); `stopped`: "
        "the chain of automations reached depth 3 and this run did not act"
    )
    actions: list[ActionDone]
    error: str | None
    created_at: dt.datetime


class AutomationRunList(BaseModel):
    object: Literal["list"]
    data: list[AutomationRun]
    has_more: bool
    next_cursor: str | None


class AutomationTestRequest(WriteModel):
    object_id: uuid.UUID = Field(description="A record of the trigger's object type")


class AutomationTestResult(BaseModel):
    object: Literal["automation_test"]
    matches: bool = Field(description="Whether the trigger's filter holds for the record now")
    actions: list[ActionDone] = Field(
        description="What each action would change, in order; nothing is written"
    )
