"""Every resource the API serves, one entry each: the app includes their routes from here and API keys'
scopes are checked against their names, so a new resource cannot be served without its scopes (or the
reverse).

A resource with a spec (``resources/spec.py``) gets the generic routes built from it and
``POST .../aggregate``; its own routes come first (they must be matched before the generic ``/{id}`` ones),
then the features it has.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from fastapi import APIRouter

from .activities.spec import ACTIVITIES
from .automations.router import router as automation_routes
from .automations.spec import AUTOMATIONS
from .bulk.export_routes import router as export_routes
from .bulk.import_routes import router as import_routes
from .companies.router import router as company_routes
from .companies.spec import COMPANIES
from .contacts.spec import CONTACTS
from .custom_fields.object_schema import router as schema_routes
from .custom_fields.router import upsert_router
from .custom_fields.spec import CUSTOM_FIELDS
from .deals.router import router as deal_routes
from .deals.spec import DEALS
from .erase.router import router as erase_routes
from .events.router import router as event_routes
from .events.router import types_router as event_type_routes
from .history.router import history_router
from .members.router import router as member_routes
from .members.spec import MEMBERS, TEAMS
from .merge.router import merge_router
from .orders.router import router as order_routes
from .pipelines.router import router as pipeline_routes
from .reports.aggregate import aggregate_router
from .reports.router import router as report_routes
from .resources.router import build_router
from .resources.spec import ResourceSpec
from .scoring.router import router as score_routes
from .scoring.spec import SCORING_RULES
from .search.router import router as search_routes
from .segments.router import object_segments_router
from .segments.router import router as segment_routes
from .segments.spec import SEGMENTS
from .tickets.policies import SLA_POLICIES
from .tickets.router import router as ticket_routes
from .tickets.spec import TICKETS
from .timeline.router import timeline_router
from .webhooks.router import router as webhook_routes


@dataclass(frozen=True)
class Resource:
    scope: str
    """Keys are granted ``<scope>:read`` and ``<scope>:write``."""
    routers: tuple[APIRouter, ...]
    spec: ResourceSpec | None = None


def served(spec: ResourceSpec, before: Sequence[APIRouter] = (), after: Sequence[APIRouter] = ()) -> Resource:
    return Resource(spec.name, (*before, aggregate_router(spec), build_router(spec), *after), spec)


RESOURCES: tuple[Resource, ...] = (
    served(
        CONTACTS,
        before=[merge_router(CONTACTS)],
        after=[
            upsert_router(CONTACTS),
            timeline_router(CONTACTS),
            erase_routes,
            history_router(CONTACTS),
            object_segments_router(CONTACTS),
            score_routes,
        ],
    ),
    served(
        COMPANIES,
        before=[merge_router(COMPANIES), company_routes],
        after=[
            upsert_router(COMPANIES),
            timeline_router(COMPANIES),
            history_router(COMPANIES),
            object_segments_router(COMPANIES),
        ],
    ),
    Resource("pipelines", (pipeline_routes,)),
    served(
        DEALS,
        before=[deal_routes],
        after=[
            upsert_router(DEALS),
            timeline_router(DEALS),
            history_router(DEALS),
            object_segments_router(DEALS),
        ],
    ),
    Resource("orders", (order_routes,)),
    served(ACTIVITIES, after=[history_router(ACTIVITIES)]),
    served(TICKETS, before=[ticket_routes], after=[upsert_router(TICKETS), history_router(TICKETS)]),
    served(SLA_POLICIES),
    served(CUSTOM_FIELDS, after=[schema_routes]),
    served(MEMBERS, before=[member_routes]),
    served(TEAMS),
    served(SEGMENTS, before=[segment_routes]),
    served(SCORING_RULES),
    served(AUTOMATIONS, before=[automation_routes]),
    Resource("events", (event_routes, event_type_routes)),
    Resource("webhooks", (webhook_routes,)),
    Resource("reports", (report_routes,)),
    # GET /v1/search; each type it returns also needs that resource's read scope
    Resource("search", (search_routes,)),
    Resource("imports", (import_routes,)),
    Resource("exports", (export_routes,)),
    # its route (POST /v1/browser-tokens) is in admin/, above this list: it checks scopes against it
    Resource("browser_tokens", ()),
)

SCOPE_RESOURCES: tuple[str, ...] = tuple(r.scope for r in RESOURCES)
"""What ``<resource>:read`` and ``<resource>:write`` scopes may name."""


def routers() -> Iterator[APIRouter]:
    for resource in RESOURCES:
        yield from resource.routers
