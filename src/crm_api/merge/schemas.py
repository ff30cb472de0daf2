"""Bodies and answers of the duplicate finder and of merges."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import BaseModel, Field
from typing_extensions import TypeAliasType

from ..resources.schemas import ShortText, WriteModel

MAX_INPUTS = 100
MAX_MERGED = 20


class ContactCandidate(WriteModel):
    """A contact as an integration is about to create it: which live contacts look like it?"""

    email: str | None = Field(None, max_length=320)
    first_name: ShortText | None = None
    last_name: ShortText | None = None
    phone: str | None = Field(None, max_length=50)
    company_id: uuid.UUID | None = None


class CompanyCandidate(WriteModel):
    name: ShortText | None = None
    domain: str | None = Field(None, max_length=253)


_THRESHOLD = Field(
    0.6, ge=0.3, le=1.0, description="Lowest pg_trgm similarity of names that counts as a fuzzy match"
)
_LIMIT = Field(10, ge=1, le=50, description="Most matches returned per input, best first")
_IDS: Any = Field([], max_length=MAX_INPUTS, description="Existing records to find duplicates of")


class ContactDuplicatesRequest(WriteModel):
    ids: list[uuid.UUID] = _IDS
    records: list[ContactCandidate] = Field([], max_length=MAX_INPUTS)
    threshold: float = _THRESHOLD
    limit: int = _LIMIT


class CompanyDuplicatesRequest(WriteModel):
    ids: list[uuid.UUID] = _IDS
    records: list[CompanyCandidate] = Field([], max_length=MAX_INPUTS)
    threshold: float = _THRESHOLD
    limit: int = _LIMIT


DuplicateReason = TypeAliasType(
    "DuplicateReason", Literal["email", "phone", "name_at_company", "domain", "fuzzy_name"]
)


class DuplicateMatch(BaseModel):
    id: uuid.UUID
    score: float = Field(
        description="The strongest reason's weight: email/domain 1, phone 0.9, "
        "name_at_company 0.85, fuzzy_name 0.8 x similarity"
    )
    reasons: list[DuplicateReason]
    similarity: float | None = Field(None, description="Name similarity (0..1) when fuzzy_name matched")
    object: dict[str, Any] = Field(description="The matching record, as GET returns it")


class DuplicateResult(BaseModel):
    input: str = Field(description="JSON pointer of the input: /ids/0 or /records/2")
    id: uuid.UUID | None = Field(description="The input record's id (ids only); never among its matches")
    matches: list[DuplicateMatch]


class DuplicatesResponse(BaseModel):
    object: Literal["duplicates"]
    data: list[DuplicateResult]


class MergeRequest(WriteModel):
    from_: list[uuid.UUID] = Field(
        alias="from", min_length=1, max_length=MAX_MERGED, description="Records to fold into this one"
    )
    dry_run: bool = Field(False, description="Answer what would happen; write nothing")
    prefer: dict[str, uuid.UUID] = Field(
        {},
        max_length=50,
        description="field -> id of the record (survivor or one of from) whose value the survivor takes; "
        "without it, empty fields are filled from `from` in order",
    )


class DroppedExternalId(BaseModel):
    record: uuid.UUID
    source: str
    external_id: str


class MergeResultBase(BaseModel):
    object: Literal["merge"]
    dry_run: bool
    merged: list[uuid.UUID]
    filled: dict[str, uuid.UUID] = Field(description="field -> the record its new value came from")
    moved: dict[str, int] = Field(description="table -> rows whose references now point at the survivor")
    dropped_external_ids: list[DroppedExternalId] = Field(
        description="External ids lost because the survivor keeps another id of the same source"
    )
