"""Segments' request and response bodies."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Literal

from pydantic import BaseModel, Field
from typing_extensions import TypeAliasType

from ..companies.schemas import Company
from ..contacts.schemas import Contact
from ..deals.schemas import Deal
from ..resources.schemas import ExternalIds, Filter, Problem, ReadModel, ShortText, WriteModel, not_clearable

SegmentObjectType = TypeAliasType("SegmentObjectType", Literal["contact", "company", "deal"])
SegmentKind = TypeAliasType("SegmentKind", Literal["dynamic", "static"])
SegmentStatus = TypeAliasType("SegmentStatus", Literal["building", "ready", "failed"])
MemberChange = TypeAliasType("MemberChange", Literal["added", "removed"])
MemberReason = TypeAliasType(
    "MemberReason", Literal["matched", "unmatched", "added", "removed", "archived", "merged", "erased"]
)


class SegmentCreate(WriteModel):
    name: ShortText = Field(min_length=1)
    object_type: SegmentObjectType
    kind: SegmentKind
    filter: Filter | None = Field(
        None,
        description="Dynamic segments only (required there): the POST /search grammar of the object type, "
        "relation hops and relative times included",
    )
    external_ids: ExternalIds = {}


class SegmentUpdate(WriteModel):
    """``object_type`` and ``kind`` are fixed at creation; a new ``filter`` rebuilds the membership."""

    name: ShortText | None = not_clearable(min_length=1)
    filter: Filter | None = None
    external_ids: ExternalIds | None = None


class Segment(ReadModel):
    """A saved set of contacts, companies or deals. A dynamic segment's members are the live objects its
    filter matches, kept current by the workers; a static one's are added and removed by clients.
    ``status`` is ``building`` while a new or edited dynamic segment fills in, ``failed`` if its build
    failed repeatedly (a new filter builds it again)."""

    object: Literal["segment"]
    name: str
    object_type: SegmentObjectType
    kind: SegmentKind
    filter: Filter | None
    member_count: int
    status: SegmentStatus
    external_ids: ExternalIds


class SegmentReference(BaseModel):
    """All a ``segment.member_added`` / ``segment.member_removed`` event holds as ``data.object``: the
    segment's id and name, not its whole object (``GET /v1/segments/{id}`` has the rest)."""

    id: uuid.UUID
    object: Literal["segment"]
    name: str


class MemberIds(WriteModel):
    ids: Annotated[list[uuid.UUID], Field(min_length=1, max_length=500)]


class MemberResult(BaseModel):
    id: uuid.UUID
    status: int = Field(
        description="200 changed, 204 nothing to do (already in, or not in), 404 no such live object"
    )
    error: Problem | None = None


class MemberResults(BaseModel):
    object: Literal["segment_member_results"]
    results: list[MemberResult]


class SegmentMember(BaseModel):
    object: Literal["segment_member"]
    segment_id: uuid.UUID
    object_type: SegmentObjectType
    object_id: uuid.UUID
    added_at: dt.datetime
    reason: MemberReason
    contact: Contact | None = Field(None, description="With include=object, in a contact segment")
    company: Company | None = Field(None, description="With include=object, in a company segment")
    deal: Deal | None = Field(None, description="With include=object, in a deal segment")


class SegmentMemberList(BaseModel):
    object: Literal["list"]
    data: list[SegmentMember]
    has_more: bool
    next_cursor: str | None


class SegmentChange(BaseModel):
    object: Literal["segment_change"]
    id: uuid.UUID
    segment_id: uuid.UUID
    object_id: uuid.UUID
    change: MemberChange
    reason: MemberReason
    created_at: dt.datetime


class SegmentChangeList(BaseModel):
    object: Literal["list"]
    data: list[SegmentChange]
    has_more: bool
    next_cursor: str | None


class ObjectSegments(BaseModel):
    object: Literal["list"]
    data: list[Segment]
