"""Member and team bodies, and the objects as the API returns them."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from pydantic import Field
from typing_extensions import TypeAliasType

from ..emails import Email
from ..resources.schemas import ExternalIds, ReadModel, ShortText, WriteModel, not_clearable

MemberRole = TypeAliasType("MemberRole", Literal["admin", "member", "viewer"])
MemberIds = Annotated[list[uuid.UUID], Field(max_length=500)]


class MemberCreate(WriteModel):
    email: Email = Field(description="Unique among the workspace's live members, compared case-insensitively")
    name: ShortText = Field(min_length=1)
    role: MemberRole = "member"
    active: bool = True
    external_ids: ExternalIds = {}


class MemberUpdate(WriteModel):
    """Absent fields stay as they are; ``null`` clears (where a field may be empty)."""

    email: Email | None = not_clearable()
    name: ShortText | None = not_clearable(min_length=1)
    role: MemberRole | None = not_clearable()
    active: bool | None = not_clearable()
    external_ids: ExternalIds | None = None


class Member(ReadModel):
    object: Literal["member"]
    email: str
    name: str
    role: MemberRole
    active: bool = Field(description="Only active members may be given records (owner_id, assignee_id)")
    external_ids: ExternalIds


class TeamCreate(WriteModel):
    name: ShortText = Field(min_length=1)
    member_ids: MemberIds = []
    external_ids: ExternalIds = {}


class TeamUpdate(WriteModel):
    name: ShortText | None = not_clearable(min_length=1)
    member_ids: MemberIds | None = None
    external_ids: ExternalIds | None = None


class Team(ReadModel):
    object: Literal["team"]
    name: str
    member_ids: list[uuid.UUID]
    external_ids: ExternalIds
