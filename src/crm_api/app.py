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

from . import __version__, jsonutil, maintenance, registry
from .admin.router import router as keys_router
from .auth import KeyCache
from .config import Settings, get_settings
from .db import Database, create_pool, database_url
from .errors import PROBLEM_JSON, BadRequest, CRMError, FieldError, NotFound, Unprocessable, problem_schema
from .events.describe import webhooks_section
from .middleware import RequestContext
from .ratelimit import RateLimits
from .webhooks.dispatcher import Dispatcher

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
    schema["webhooks"] = webhooks_section(schema["components"]["schemas"])
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
        quotas = asyncio.create_task(app.state.rate_limits.run(stop))
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
            await quotas
            await app.state.rate_limits.close()
            await pool.close()

    app = FastAPI(title="crm-api", version=__version__, lifespan=lifespan)
    app.state.settings = settings
    app.state.key_cache = KeyCache(settings.auth_cache_seconds)
    app.state.rate_limits = RateLimits(settings)
    app.add_middleware(RequestContext, max_body_bytes=settings.max_body_bytes)
    app.add_exception_handler(CRMError, _crm_problem)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_problem)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_problem)  # type: ignore[arg-type]
    # class 22 (data exception: numeric out of range, string too long, bad encoding, asyncpg's own
    # "invalid input for query argument") and 54 (program limit: an index row too large)
    app.add_exception_handler(asyncpg.DataError, _data_problem)
    app.add_exception_handler(asyncpg.ProgramLimitExceededError, _data_problem)
    app.add_exception_handler(Exception, _crash)
    for router in registry.routers():
        app.include_router(router)
    app.include_router(keys_router)

    @app.get("/health", include_in_schema=False)
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app
