"""create_app(): lifespan (pool, key cache), middleware, error handlers, routers, the OpenAPI document."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import __version__, jsonutil, maintenance
from .activities.spec import ACTIVITIES
from .admin.router import router as keys_router
from .auth import KeyCache
from .companies.router import router as company_extra_router
from .companies.spec import COMPANIES
from .config import Settings, get_settings
from .contacts.spec import CONTACTS
from .custom_fields.router import upsert_router
from .custom_fields.spec import CUSTOM_FIELDS
from .db import Database, create_pool, database_url
from .deals.router import router as deal_extra_router
from .deals.spec import DEALS
from .erase.router import router as erase_router
from .errors import PROBLEM_JSON, BadRequest, CRMError, FieldError, NotFound, Unprocessable, problem_schema
from .events.router import router as events_router
from .history.router import history_router
from .merge.router import merge_router
from .middleware import RequestContext
from .orders.router import router as orders_router
from .pipelines.router import router as pipelines_router
from .resources.router import build_router
from .tickets.policies import SLA_POLICIES
from .tickets.router import router as ticket_extra_router
from .tickets.spec import TICKETS
from .timeline.router import timeline_router
from .webhooks.dispatcher import Dispatcher
from .webhooks.router import router as webhooks_router

log = logging.getLogger("crm_api")


def _problem(request: Request, exc: CRMError) -> Response:
    request_id = getattr(request.state, "request_id", "")
    headers = {"Allow": exc.allow} if isinstance(exc, _MethodNotAllowed) else exc.headers()
    return Response(jsonutil.dumps(exc.body(request_id)), exc.status, headers, media_type=PROBLEM_JSON)


async def _crm_problem(request: Request, exc: CRMError) -> Response:
    # async on purpose: Starlette runs plain-function handlers in a thread pool
    return _problem(request, exc)


class _MethodNotAllowed(CRMError):
    status = 405
    code = "method_not_allowed"
    title = "Method not allowed"
    allow = ""


def _pointer(loc: tuple[Any, ...]) -> str:
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header"):
        kind = parts.pop(0)
        if kind != "body":
            parts.insert(0, kind)
    return "/" + "/".join(str(p) for p in parts)


async def _validation_problem(request: Request, exc: RequestValidationError) -> Response:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        detail = next(e for e in errors if e.get("type") == "json_invalid").get("ctx", {}).get("error", "")
        return _problem(request, BadRequest(f"The body is not valid JSON: {detail}".strip()))
    fields = [FieldError(_pointer(tuple(e["loc"])), str(e["msg"])) for e in errors]
    summary = "; ".join(f"{f.path}: {f.message}" for f in fields[:3])
    return _problem(request, Unprocessable(f"Validation failed: {summary}", fields))


async def _http_problem(request: Request, exc: StarletteHTTPException) -> Response:
    if exc.status_code == 404:
        return _problem(request, NotFound("No such route"))
    if exc.status_code == 405:
        error = _MethodNotAllowed(f"{request.method} is not allowed here")
        error.allow = (exc.headers or {}).get("Allow", "")
        return _problem(request, error)
    if exc.status_code == 400:
        return _problem(request, BadRequest(f"The body could not be read: {exc.detail}"))
    generic = _HttpError(str(exc.detail))
    generic.status = exc.status_code  # type: ignore[misc]
    return _problem(request, generic)


class _HttpError(CRMError):
    code = "http_error"
    title = "HTTP error"


async def _data_problem(request: Request, exc: asyncpg.PostgresError) -> Response:
    """A value PostgreSQL (or asyncpg's encoder) refused: out of range, too long for an index, bad text.

    Schemas and the filter compiler should refuse such values first, naming the field; this is the net
    for what they miss, so the client still gets a 4xx (the transaction has rolled back). Logged, so the
    gap gets closed where it belongs."""
    log.warning("database refused a value on %s %s: %s", request.method, request.url.path, exc, exc_info=exc)
    message = "a value is outside what can be stored (too large, too long or not valid text)"
    return _problem(
        request, Unprocessable(f"The request could not be stored: {message}", [FieldError("/", message)])
    )


async def _crash(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return _problem(request, CRMError("An unexpected error occurred; it has been logged"))


EVENT_OBJECTS = {
    "contact": "Contact",
    "company": "Company",
    "pipeline": "Pipeline",
    "deal": "Deal",
    "activity": "Activity",
    "ticket": "Ticket",
    "sla_policy": "SlaPolicy",
    "custom_field": "CustomField",
}
EVENT_ACTIONS = ("created", "updated", "archived", "restored")
# Event types beyond the standard actions (a spec's derived events and the jobs' events):
# (type, schema of data.object, what it says)
EVENT_EXTRAS = (
    ("deal.stage_changed", "Deal", "previous.stage_id holds the stage it left"),
    ("deal.won", "Deal", "the deal entered a won stage"),
    ("deal.lost", "Deal", "the deal entered a lost stage"),
    ("activity.completed", "Activity", "a task's completed_at was set"),
    ("ticket.status_changed", "Ticket", "previous.status holds the old status"),
    (
        "ticket.sla_breached",
        "Ticket",
        "data.target is first_response or resolution; data.due_at the time missed",
    ),
    ("contact.merged", "Contact", "data.survivor is the id kept, data.merged the ids archived into it"),
    ("company.merged", "Company", "data.survivor is the id kept, data.merged the ids archived into it"),
    ("ticket.comment_created", "TicketComment", "data.object is the comment; its ticket_id names the ticket"),
    ("contact.erased", "ErasedContact", "the contact's personal data was erased; data.object is only its id"),
)


def _webhook_payloads(components: dict[str, Any]) -> dict[str, Any]:
    """The bodies our webhooks POST, one entry per event type, for generated receivers."""
    out: dict[str, Any] = {}
    types = [
        (f"{obj}.{action}", model, "") for obj, model in EVENT_OBJECTS.items() for action in EVENT_ACTIONS
    ]
    for name, model, note in [*types, *EVENT_EXTRAS]:
        obj, _, action = name.partition(".")
        body: dict[str, Any] = {
            "type": "object",
            "required": ["id", "type", "created_at", "sequence", "workspace_id", "data"],
            "properties": {
                "id": {"type": "string", "format": "uuid", "description": "also sent as webhook-id"},
                "type": {"const": name},
                "created_at": {"type": "string", "format": "date-time"},
                "sequence": {"type": "integer"},
                "workspace_id": {"type": "string", "format": "uuid"},
                "data": {
                    "type": "object",
                    "properties": {
                        "object": {"$ref": f"#/components/schemas/{model}"},
                        "previous": {"type": "object", "description": "old values of the changed fields"},
                    },
                },
            },
        }
        if action == "merged":  # merge/service.py adds the ids to data
            body["properties"]["data"]["properties"].update(
                survivor={"type": "string", "format": "uuid"},
                merged={"type": "array", "items": {"type": "string", "format": "uuid"}},
            )
        out[name] = {
            "post": {
                "summary": f"{name}, signed per Standard Webhooks" + (f"; {note}" if note else ""),
                "operationId": f"webhook_{obj}_{action}",
                "requestBody": {"content": {"application/json": {"schema": body}}},
                "responses": {"200": {"description": "any 2xx acknowledges the delivery"}},
            }
        }
    assert all(m in components for _, m, _ in [*types, *EVENT_EXTRAS])
    return out


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title="crm-api",
        version=__version__,
        description="An API-first, headless CRM. Every error is application/problem+json.",
        routes=app.routes,
    )
    schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = problem_schema()
    schema["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    schema["webhooks"] = _webhook_payloads(schema["components"]["schemas"])
    schema["security"] = [{"bearer": []}]
    app.openapi_schema = schema
    return schema


def create_app(settings: Settings | None = None, url: str | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await create_pool(url or database_url(), settings.pool_size)
        app.state.db = Database(pool)
        housekeeping = asyncio.create_task(maintenance.run_forever(pool, settings))
        stop = asyncio.Event()
        dispatcher = None
        if settings.run_dispatcher:
            dispatcher = asyncio.create_task(Dispatcher(pool, settings).run(stop))
        try:
            yield
        finally:
            stop.set()
            if dispatcher is not None:
                await dispatcher
            housekeeping.cancel()
            await pool.close()

    app = FastAPI(title="crm-api", version=__version__, lifespan=lifespan)
    app.state.settings = settings
    app.state.key_cache = KeyCache(settings.auth_cache_seconds)
    app.add_middleware(RequestContext, max_body_bytes=settings.max_body_bytes)
    app.add_exception_handler(CRMError, _crm_problem)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_problem)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_problem)  # type: ignore[arg-type]
    # class 22 (data exception: numeric out of range, string too long, bad encoding, asyncpg's own
    # "invalid input for query argument") and 54 (program limit: an index row too large)
    app.add_exception_handler(asyncpg.DataError, _data_problem)
    app.add_exception_handler(asyncpg.ProgramLimitExceededError, _data_problem)
    app.add_exception_handler(Exception, _crash)
    for merging in (CONTACTS, COMPANIES):
        app.include_router(merge_router(merging))
    app.include_router(build_router(CONTACTS))
    app.include_router(company_extra_router)
    app.include_router(build_router(COMPANIES))
    app.include_router(pipelines_router)
    app.include_router(deal_extra_router)
    app.include_router(build_router(DEALS))
    app.include_router(orders_router)
    app.include_router(build_router(ACTIVITIES))
    app.include_router(ticket_extra_router)
    app.include_router(build_router(TICKETS))
    app.include_router(build_router(SLA_POLICIES))
    app.include_router(build_router(CUSTOM_FIELDS))
    for spec in (CONTACTS, COMPANIES, DEALS, TICKETS):
        app.include_router(upsert_router(spec))
    for spec in (CONTACTS, COMPANIES, DEALS):
        app.include_router(timeline_router(spec))
    app.include_router(erase_router)
    for spec in (CONTACTS, COMPANIES, DEALS, TICKETS, ACTIVITIES):
        app.include_router(history_router(spec))
    app.include_router(keys_router)
    app.include_router(events_router)
    app.include_router(webhooks_router)

    @app.get("/health", include_in_schema=False)
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app
