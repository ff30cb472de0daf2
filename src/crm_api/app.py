"""create_app(): lifespan (pool, key cache), middleware, error handlers, routers, the OpenAPI document
(built in apidocs)."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import (
    __version__,
    apidocs,
    db,
    faults,
    jsonutil,
    logs,
    maintenance,
    masterkey,
    metrics,
    probes,
    registry,
    routing,
    vault,
)
from .admin.browser_tokens import router as browser_token_routes
from .admin.router import router as keys_router
from .auth import KeyCache
from .config import Settings, get_settings
from .cors import Cors
from .db import Database, Timeouts, create_pool, database_url
from .errors import PROBLEM_JSON, BadRequest, CRMError, FieldError, NotFound, Unprocessable
from .key_use import KeyUse
from .middleware import RequestContext
from .observe import Observe, route_template
from .ratelimit import RateLimits
from .reports import rollup
from .resources.custom_fields.cache import CACHE as DEFINITIONS_CACHE
from .webhooks import backlog
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
    gap gets closed where it belongs. The log names the column and the error, not its message: that quotes
    the value, which may be personal data."""
    log.warning(
        "database refused a value on %s %s: %s (SQLSTATE %s, table %s, column %s, constraint %s)",
        request.method,
        route_template(request.scope),
        type(exc).__name__,
        getattr(exc, "sqlstate", None),
        getattr(exc, "table_name", None),
        getattr(exc, "column_name", None),
        getattr(exc, "constraint_name", None),
    )
    message = "a value is outside what can be stored (too large, too long or not valid text)"
    return _problem(
        request, Unprocessable(f"The request could not be stored: {message}", [FieldError("/", message)])
    )


async def _fault_problem(request: Request, exc: Exception) -> Response:
    """A database, network or pool failure: a 503 when it is a fault that passes (down, out of time, out of
    resources), else a bug (500). Answered here, so the response is an ordinary one (``faults.py``)."""
    error = faults.classify(exc)
    if error is None:
        log.exception("unhandled error on %s %s", request.method, route_template(request.scope), exc_info=exc)
        error = CRMError("An unexpected error occurred; it has been logged")
    else:
        log.warning(
            "%s %s: %s (%s)",
            request.method,
            route_template(request.scope),
            error.code,
            faults.first_line(exc),
        )
    return _problem(request, error)


def _settle_telemetry(app: FastAPI) -> Callable[[], None]:
    """FastAPI's own OpenTelemetry instrumentation applies when a tracer, meter or logger provider is
    configured, which it looked up on every request (four provider look-ups, 2% of a plain GET's CPU).
    Providers are configured before the app serves (``opentelemetry-instrument``, or code run at start-up,
    within the lifespan FastAPI wraps around ours): the answer is taken once, here, and kept until shutdown.
    Returns what undoes it."""
    native = app._native_telemetry
    lookup = native.enabled
    enabled = lookup()
    native.enabled = lambda: enabled  # type: ignore[method-assign]

    def restore() -> None:
        native.enabled = lookup  # type: ignore[method-assign]

    return restore


_GC_YOUNG = 10_000  # allocations between young collections (CPython's default is 700)


def create_app(settings: Settings | None = None, url: str | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        keyring = masterkey.load(settings)
        pool = await create_pool(url or database_url(), settings.pool_size, Timeouts.of(settings))
        try:
            await vault.prepare(pool, keyring)
        except BaseException:
            await pool.close()
            raise
        app.state.db = Database(pool)
        app.state.keyring = keyring
        housekeeping = asyncio.create_task(maintenance.run_forever(pool, settings))
        sampler = asyncio.create_task(metrics.sample_pool_forever(pool))
        stop = asyncio.Event()
        key_use = asyncio.create_task(app.state.key_use.run(pool, settings.key_use_flush_seconds, stop))
        quotas = asyncio.create_task(app.state.rate_limits.run(stop))
        folds = asyncio.create_task(rollup.fold_forever(pool, stop))
        definitions = None
        if settings.definitions_cache:
            definitions = asyncio.create_task(DEFINITIONS_CACHE.run(pool, stop))
        dispatcher = None
        if settings.run_dispatcher:
            dispatcher = asyncio.create_task(Dispatcher(pool, settings, keyring=keyring).run(stop))
        # The start-up heap (modules, routes, schemas, compiled statements: ~140k objects) lives as long as
        # the process: frozen, a full collection no longer walks it (61-71 ms a pass here, the list's p99
        # tail), and a larger young generation makes passes rarer for a request's short-lived objects.
        gc.collect()
        gc.freeze()
        gc.set_threshold(_GC_YOUNG, *gc.get_threshold()[1:])
        settled = _settle_telemetry(app)
        try:
            yield
        finally:
            settled()
            stop.set()
            if dispatcher is not None:
                await dispatcher
            await key_use
            await folds
            if definitions is not None:
                await definitions
            housekeeping.cancel()
            sampler.cancel()
            await quotas
            await app.state.rate_limits.close()
            streams = getattr(app.state, "event_streams", None)
            if streams is not None:  # the LISTEN connection of the event streams, if one was opened
                await streams.aclose()
            await pool.close()
            metrics.process_exit()

    logs.configure(settings)
    app = FastAPI(title="crm-api", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.settings = settings
    app.state.key_cache = KeyCache(settings.auth_cache_seconds)
    app.state.key_use = KeyUse(settings.key_use_seconds)
    # the last added runs first: Observe times and logs everything, CORS answers preflights before the
    # rest; the fault guard sits inside the request context, so its answers carry the request id
    app.add_middleware(
        faults.Guard,
        request_timeout_s=settings.request_timeout_s,
        uploads={"/v1/imports": settings.upload_timeout_s},
    )
    app.state.rate_limits = RateLimits(settings)
    app.add_middleware(
        RequestContext,
        max_body_bytes=settings.max_body_bytes,
        uploads={"/v1/imports": settings.max_upload_bytes},
    )
    if settings.cors_origin_list():
        app.add_middleware(Cors, origins=settings.cors_origin_list())
    app.add_middleware(Observe)
    app.add_exception_handler(CRMError, _crm_problem)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_problem)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_problem)  # type: ignore[arg-type]
    # class 22 (data exception: numeric out of range, string too long, bad encoding, asyncpg's own
    # "invalid input for query argument") and 54 (program limit: an index row too large)
    app.add_exception_handler(asyncpg.DataError, _data_problem)
    app.add_exception_handler(asyncpg.ProgramLimitExceededError, _data_problem)
    for family in db.ERRORS:
        app.add_exception_handler(family, _fault_problem)
    # No handler for Exception: Starlette would answer it in ServerErrorMiddleware and re-raise it to the
    # server, which then drops the connection. faults.Guard answers the rest.
    for router in registry.routers():
        app.include_router(router)
    app.include_router(keys_router)
    app.include_router(browser_token_routes)
    app.include_router(probes.router(measures=[backlog.measure]))

    @app.get("/health", include_in_schema=False)
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    routing.guard_included(app.router)

    apidocs.add_docs(app)
    app.openapi = lambda: apidocs.document(app)  # type: ignore[method-assign]
    return app
