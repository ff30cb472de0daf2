"""What every report route takes, declared once: the query parameters as the OpenAPI document types them
(dates, UUIDs, enums, ranges, patterns), and the dependency that reads and checks them.

The declared types are for the document only (``WithJsonSchema``): the values are read from the query
string by ``params.py``, which refuses exactly what the declared types forbid, with a 422 whose pointer is
the parameter's name (``/from``), and refuses a parameter the route does not declare. What no type can say
(``from`` after ``to``, too many buckets, a time zone missing from the IANA database, a pipeline of
another workspace) is refused there too, and docs/API.md says so.

(No ``from __future__ import annotations``: FastAPI reads the annotations at definition.)
"""

import uuid
from dataclasses import dataclass
from typing import Annotated, Any

import asyncpg
from fastapi import Depends, Query, Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import WithJsonSchema

from ..auth import Principal, require
from ..deps import read_pool
from ..http import context
from . import params
from .render import respond
from .sales import WIN_RATE_GROUPS
from .service import SERVICE_GROUPS

Reader = Annotated[Principal, require("reports:read")]

_YEAR = rf"({params.FIRST_YEAR}|19[0-9]{{2}}|[2-8][0-9]{{3}}|{params.LAST_YEAR})"
"""The years ``params`` takes, 1900 to 9000, as a pattern."""


def enum(values: tuple[str, ...]) -> WithJsonSchema:
    return WithJsonSchema({"type": "string", "enum": list(values)})


UUID = WithJsonSchema({"type": "string", "format": "uuid"})
DATE = WithJsonSchema({"type": "string", "format": "date", "pattern": rf"^{_YEAR}-[0-9]{{2}}-[0-9]{{2}}$"})
TIMESTAMP = WithJsonSchema({"type": "string", "format": "date-time", "pattern": rf"^{_YEAR}-"})
# the zone must also be in the IANA database; the list changes with its releases, so the document does
# not carry it
ZONE = WithJsonSchema(
    {"type": "string", "pattern": r"^[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+)*$", "maxLength": 64}
)
Text = str | None
"""How every parameter arrives: the schemas above are the document's; ``params`` reads the text."""

PipelineId = Annotated[
    Text, UUID, Query(description="A pipeline's id; default: the workspace's default pipeline")
]
OnlyPipeline = Annotated[Text, UUID, Query(description="Only this pipeline's deals; default: all")]
OwnerId = Annotated[Text, UUID, Query(description="Only this owner's deals")]
From = Annotated[
    Text, DATE, Query(alias="from", description="First day (YYYY-MM-DD, in tz); default: 1 January this year")
]
To = Annotated[Text, DATE, Query(description="Last day, inclusive; default: 31 December this year")]
Tz = Annotated[Text, ZONE, Query(description="IANA time zone the days are in; default UTC")]
Interval = Annotated[
    Text, enum(params.INTERVALS), Query(description="day, week, month (default), quarter or year")
]
Archived = Annotated[
    Text,
    WithJsonSchema({"type": "boolean"}),
    Query(description="true: count archived records too; default false"),
]
AsOf = Annotated[Text, TIMESTAMP, Query(description="An RFC 3339 timestamp; default: now")]
Currency = Annotated[
    Text,
    WithJsonSchema({"type": "string", "pattern": "^[A-Z]{3}$"}),
    Query(description="ISO 4217; default USD"),
]
ChurnDays = Annotated[
    Text,
    WithJsonSchema({"type": "integer", "minimum": 1, "maximum": 3650}),
    Query(description="1 to 3650; default 180"),
]
ByOwner = Annotated[Text, enum(("owner",)), Query(description="owner")]
BySource = Annotated[Text, enum(("source",)), Query(description="source")]
WinRateGroup = Annotated[Text, enum(WIN_RATE_GROUPS), Query(description="owner, pipeline or source")]
ServiceGroup = Annotated[Text, enum(SERVICE_GROUPS), Query(description="priority, assignee or channel")]


def _query_names(dependant: Dependant) -> list[str]:
    """The query parameters a route declares, its dependencies' too: the only ones it takes."""
    names = [p.alias for p in dependant.query_params]
    for inner in dependant.dependencies:
        names += _query_names(inner)
    return names


@dataclass(frozen=True)
class Report:
    """A report request: the reader's workspace, the read pool, the query string (checked against what the
    route declares) and ``include_archived``."""

    request: Request
    query: dict[str, str]
    workspace_id: uuid.UUID
    conn: asyncpg.Pool
    archived: bool

    def uuid(self, name: str) -> uuid.UUID | None:
        return params.uuid_param(self.query, name)

    def choice(self, name: str, options: tuple[str, ...]) -> str | None:
        return params.choice(self.query, name, options, None)

    def respond(self, report: dict[str, Any], rows: str) -> Response:
        """JSON, or CSV of ``report[rows]`` when the client asks for it."""
        return respond(self.request, report, rows)


async def report_request(request: Request, principal: Reader, include_archived: Archived = None) -> Report:
    """The dependency (async: a sync one would cost a thread-pool hop per request)."""
    query = dict(request.query_params)
    route: APIRoute = request.scope["route"]
    params.check_known(query, _query_names(route.dependant))
    return Report(
        request=request,
        query=query,
        workspace_id=context(request, principal).workspace_id,
        conn=read_pool(request),
        archived=params.flag(query, "include_archived"),
    )


@dataclass(frozen=True)
class PeriodReport(Report):
    """A report over a period: ``from``, ``to`` and ``tz`` (and ``interval`` where the route declares it)."""

    period: params.Period

    @property
    def bounds(self) -> dict[str, Any]:
        """The period as the statements take it: UTC instants ``[lower, upper)``, days, unit and zone."""
        lower, upper = self.period.bounds()
        return {
            "lower": lower,
            "upper": upper,
            "first_day": self.period.start,
            "last_day": self.period.end,
            "unit": self.period.interval,
            "tz": self.period.tz_name,
        }


async def period_request(
    asked: Annotated[Report, Depends(report_request)], from_: From = None, to: To = None, tz: Tz = None
) -> PeriodReport:
    return PeriodReport(**vars(asked), period=params.period(asked.query, "month"))
