"""SLA policies (``/v1/sla-policies``): per-priority targets in calendar or business hours."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import asyncpg
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import Select, select
from typing_extensions import TypeAliasType

from .. import models, sql
from ..errors import Conflict, CRMError, FieldError, Unprocessable
from ..resources.schemas import ExternalIds, ReadModel, ShortText, Text, WriteModel, not_clearable
from ..resources.spec import Pair, QueryParam, ResourceSpec, fields_of, register
from . import sla

MAX_TARGET_MINUTES = 366 * 24 * 60
HHMM = r"^([01]\d|2[0-3]):[0-5]\d$"


def _zone(value: str) -> str:
    if value not in sla.time_zones():
        raise ValueError("not an IANA time zone (such as Europe/Berlin)")
    return value


TimeZone = Annotated[str, Field(max_length=64, examples=["Europe/Berlin"]), AfterValidator(_zone)]


class Window(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: str = Field(pattern=HHMM, examples=["09:00"])
    end: str = Field(pattern=r"^(([01]\d|2[0-3]):[0-5]\d|24:00)$", examples=["17:00"])

    @model_validator(mode="after")
    def _ordered(self) -> Window:
        if sla.parse_hhmm(self.end) <= sla.parse_hhmm(self.start):
            raise ValueError("end must be after start (windows do not cross midnight; use 24:00)")
        return self


def _no_overlap(windows: list[Window]) -> list[Window]:
    spans = sorted((sla.parse_hhmm(w.start), sla.parse_hhmm(w.end)) for w in windows)
    if any(a[1] > b[0] for a, b in itertools.pairwise(spans)):
        raise ValueError("windows of one day must not overlap")
    return windows


Day = Annotated[list[Window], Field(max_length=12), AfterValidator(_no_overlap)]


class Schedule(BaseModel):
    """Business hours per weekday, in the policy's time zone; absent days have none."""

    model_config = ConfigDict(extra="forbid")

    mon: Day = []
    tue: Day = []
    wed: Day = []
    thu: Day = []
    fri: Day = []
    sat: Day = []
    sun: Day = []


Minutes = Annotated[int, Field(ge=1, le=MAX_TARGET_MINUTES)]


class Target(BaseModel):
    model_config = ConfigDict(extra="forbid")

    first_response_minutes: Minutes | None = None
    resolution_minutes: Minutes | None = None


class Targets(BaseModel):
    """Targets per ticket priority; a priority left out has no SLA."""

    model_config = ConfigDict(extra="forbid")

    low: Target | None = None
    normal: Target | None = None
    high: Target | None = None
    urgent: Target | None = None


SlaHours = TypeAliasType("SlaHours", Literal["calendar", "business"])


class SlaPolicyCreate(WriteModel):
    name: ShortText = Field(min_length=1)
    description: Text | None = None
    is_default: bool = False
    hours: SlaHours = "calendar"
    time_zone: TimeZone = "UTC"
    schedule: Schedule = Schedule()
    targets: Targets = Targets()
    external_ids: ExternalIds = {}


class SlaPolicyUpdate(WriteModel):
    """Absent fields stay as they are; ``null`` clears. ``schedule`` and ``targets`` are replaced whole."""

    name: ShortText | None = not_clearable(min_length=1)
    description: Text | None = None
    is_default: bool | None = None
    hours: SlaHours | None = not_clearable()
    time_zone: TimeZone | None = not_clearable()
    schedule: Schedule | None = None
    targets: Targets | None = None
    external_ids: ExternalIds | None = None


class SlaPolicy(ReadModel):
    object: Literal["sla_policy"]
    name: str
    description: str | None
    is_default: bool
    hours: SlaHours
    time_zone: str
    schedule: Schedule
    targets: Targets
    external_ids: ExternalIds


def _normalise(payload: dict[str, Any]) -> dict[str, Any]:
    out = dict(payload)
    # Stored whole and compact: days without windows and priorities without targets are left out.
    if isinstance(out.get("schedule"), dict):
        out["schedule"] = {d: w for d, w in out["schedule"].items() if w}
    if isinstance(out.get("targets"), dict):
        out["targets"] = {
            p: {k: v for k, v in t.items() if v is not None} for p, t in out["targets"].items() if t
        }
    return out


def _default_holder() -> Select[Any]:
    """The workspace's live default policy (the partial unique index uq_sla_policies_default_live)."""
    p = sql.table("sla_policies")
    return select(p.c.id).where(
        p.c.workspace_id == sql.param("ws"), p.c.is_default, p.c.archived_at.is_(None)
    )


_DEFAULT_HOLDER = sql.Query(_default_holder)


def _check_hours(row: dict[str, Any]) -> Unprocessable | None:
    """Business hours need a schedule, and each target must fit in a year of it (which also bounds the
    work of computing a due time)."""
    if row["hours"] != "business":
        return None
    weekly = sum(
        sla.parse_hhmm(w["end"]) - sla.parse_hhmm(w["start"]) for ws in row["schedule"].values() for w in ws
    )
    if weekly == 0:
        return Unprocessable(
            "A business-hours policy needs a schedule with at least one window",
            [FieldError("/schedule", "required when hours is business")],
        )
    too_long = [
        FieldError(
            f"/targets/{priority}/{kind}",
            f"more than a year of this schedule's hours ({weekly * 52} minutes)",
        )
        for priority, target in sorted(row["targets"].items())
        for kind, minutes in sorted(target.items())
        if minutes and minutes > weekly * 52
    ]
    return Unprocessable("A target is longer than a year of business hours", too_long) if too_long else None


async def _prepare(conn: asyncpg.Connection, ctx: Any, pairs: Sequence[Pair]) -> dict[int, CRMError]:
    """A business-hours policy needs hours; a workspace has at most one default policy."""
    failures: dict[int, CRMError] = {}
    for i, (_, new) in enumerate(pairs):
        error = _check_hours(new)
        if error is not None:
            failures[i] = error
    claiming = [
        (i, new)
        for i, (old, new) in enumerate(pairs)
        if i not in failures
        and new["is_default"]
        and new["archived_at"] is None
        and (old is None or not old["is_default"] or old["archived_at"] is not None)
    ]
    if not claiming:
        return failures
    holder: uuid.UUID | None = await _DEFAULT_HOLDER.fetchval(conn, ws=ctx.workspace_id)
    for n, (i, new) in enumerate(claiming):
        other = holder if holder is not None and holder != new["id"] else None
        if other is None and n > 0:
            other = claiming[0][1]["id"]
        if other is not None:
            failures[i] = Conflict(
                f"Policy {other} is already the default; unset it first",
                [FieldError("/is_default", "another policy is the default")],
            )
    return failures


SLA_POLICIES = register(
    ResourceSpec(
        name="sla_policies",
        object="sla_policy",
        called=("an SLA policy", "SLA policies"),
        searched="name",
        path="sla-policies",
        fields=fields_of(models.SlaPolicy, unfilterable=("description",)),
        create_schema=SlaPolicyCreate,
        update_schema=SlaPolicyUpdate,
        read_schema=SlaPolicy,
        normalise=_normalise,
        search_text=lambda row: (row.get("name") or "").lower(),
        prepare=_prepare,
        sorts=("created_at", "updated_at", "name"),
        query_params=(
            QueryParam("is_default", "is_default", "eq", "boolean"),
            QueryParam("hours", "hours", "eq", "text"),
            QueryParam("updated_after", "updated_at", "gt", "timestamptz"),
            QueryParam("created_after", "created_at", "gt", "timestamptz"),
        ),
        defaults={
            "hours": "calendar",
            "time_zone": "UTC",
            "schedule": {},
            "targets": {},
            "external_ids": {},
            "is_default": False,
        },
        required=("name", "hours", "time_zone"),
    )
)
