"""Scoring rules' request and response bodies, and a contact's score explained."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from pydantic import BaseModel, Field
from typing_extensions import TypeAliasType

from ..resources.schemas import ExternalIds, Filter, ReadModel, ShortText, WriteModel, not_clearable

RuleStatus = TypeAliasType("RuleStatus", Literal["building", "ready"])
ActivityType = TypeAliasType("ActivityType", Literal["note", "call", "email", "meeting", "task"])
Points = Annotated[int, Field(ge=-1_000_000, le=1_000_000)]
"""Bounded so that a score (a sum over the rules) stays a 32-bit integer."""


class ActivityRule(BaseModel):
    """Points per activity of a type linked to the contact, counted while it is recent."""

    type: ActivityType
    filter: Filter | None = Field(None, description="The activities' POST /search grammar, to count fewer")
    within_days: int = Field(
        ge=1, le=3650, description="Activities that occurred (else were created) in the last N days count"
    )
    points: Points = Field(description="Per matching activity; may be negative")
    max_points: int | None = Field(
        None, ge=1, le=1_000_000, description="A cap on the rule's points for one contact (on their size)"
    )


class ScoringRuleCreate(WriteModel):
    """Exactly one of `condition` (with `points`) or `activity`."""

    name: ShortText = Field(min_length=1)
    points: Points | None = Field(None, description="A condition rule's points (may be negative)")
    condition: Filter | None = Field(
        None,
        description="The contacts meeting it get `points`: the contacts' POST /search grammar, relation hops "
        "and relative times included",
    )
    activity: ActivityRule | None = None
    external_ids: ExternalIds = {}


class ScoringRuleUpdate(WriteModel):
    """A changed `points`, `condition` or `activity` rescores the workspace (`status: building`). Sending
    one kind replaces the other: an `activity` alone clears `condition` and `points`, a `condition` clears
    `activity` (a former activity rule needs `points` with it)."""

    name: ShortText | None = not_clearable(min_length=1)
    points: Points | None = Field(None, description="Null for an activity rule")
    condition: Filter | None = not_clearable()
    activity: ActivityRule | None = not_clearable()
    external_ids: ExternalIds | None = None


class ScoringRule(ReadModel):
    """A lead scoring rule. ``status`` is ``building`` while the workers rescore the workspace's contacts
    after the rule was created, changed, archived or restored."""

    object: Literal["scoring_rule"]
    name: str
    points: int | None
    condition: Filter | None
    activity: ActivityRule | None
    status: RuleStatus
    external_ids: ExternalIds


class ScoreContribution(BaseModel):
    rule_id: uuid.UUID
    name: str
    points: int


class ContactScore(BaseModel):
    object: Literal["contact_score"]
    contact_id: uuid.UUID
    score: int = Field(description="The sum of the contributions")
    contributions: list[ScoreContribution] = Field(description="The rules that give the contact points")
