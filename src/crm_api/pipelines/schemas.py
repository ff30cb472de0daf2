"""Pipeline and stage bodies, and the pipeline (with its stages inline) as the API returns it."""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel, Field
from typing_extensions import TypeAliasType

from ..resources.schemas import ReadModel, ShortText, WriteModel, not_clearable

StageKind = TypeAliasType("StageKind", Literal["open", "won", "lost"])
Probability = Field(None, ge=0, le=1, description="Win probability 0..1; default 1 for won, 0 otherwise")
MAX_STAGES = 50


class StageIn(WriteModel):
    name: ShortText = Field(min_length=1)
    kind: StageKind = "open"
    probability: float | None = Probability
    position: int | None = Field(
        None, ge=0, le=1000, description="Order among the stages; given for all stages or for none"
    )


class PipelineCreate(WriteModel):
    name: ShortText = Field(min_length=1)
    is_default: bool = Field(False, description="Make this the workspace's default pipeline")
    stages: list[StageIn] = Field(min_length=1, max_length=MAX_STAGES)


class PipelineUpdate(WriteModel):
    name: ShortText | None = not_clearable(min_length=1)
    is_default: Literal[True] | None = not_clearable(
        description="true makes this the default (the previous default stops being one)"
    )


class StageAdd(WriteModel):
    name: ShortText = Field(min_length=1)
    kind: StageKind = "open"
    probability: float | None = Probability
    position: int | None = Field(None, ge=0, description="Where to insert (0 = first); default last")


class StageUpdate(WriteModel):
    name: ShortText | None = not_clearable(min_length=1)
    kind: StageKind | None = not_clearable(description="Only while the stage holds no deals")
    probability: float | None = not_clearable(ge=0, le=1)


class StageOrder(WriteModel):
    stage_ids: list[uuid.UUID] = Field(
        min_length=1, max_length=MAX_STAGES, description="Every stage of the pipeline, in the new order"
    )


class Stage(BaseModel):
    id: uuid.UUID
    name: str
    position: int
    probability: float
    kind: StageKind


class Pipeline(ReadModel):
    object: Literal["pipeline"]
    name: str
    is_default: bool
    stages: list[Stage]


class PipelineList(BaseModel):
    object: Literal["list"]
    data: list[Pipeline]
    has_more: bool
    next_cursor: str | None
