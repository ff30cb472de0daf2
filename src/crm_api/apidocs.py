"""The OpenAPI document (served at ``/openapi.json``, committed as ``openapi/openapi.json``) and the pages
that show it, ``/docs`` (Swagger UI) and ``/redoc``. Their scripts and styles are served from an installed
package (fastapi-offline ships both) instead of a CDN, and a Content-Security-Policy keeps the pages from
reaching any other host (ReDoc would fetch its logo from one), so they work on a machine without internet.

FastAPI builds the paths and schemas from the routes; ``document`` adds what holds across routes: the
headers every response carries (``X-Request-ID``, the ``RateLimit`` fields), ``Idempotency-Key`` on the
routes marked ``@idempotent`` (and ``Idempotent-Replayed`` on their successes), the problem schema, bearer
auth, ``servers``, tag descriptions and the ``webhooks`` section. Routes declare their own problems and
success headers (``http.problems``, ``http.success``).
"""

from __future__ import annotations

import json
from importlib.resources import files
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.staticfiles import StaticFiles
from pydantic.json_schema import models_json_schema

from . import __version__
from .errors import problem_schema
from .events.describe import webhooks_section
from .http import BODY_MODELS, HEADERS, PROBLEM_NAMES, problem_response
from .idempotency import MAX_KEY_LENGTH, is_idempotent
from .reports import aggregate_schema
from .resources import includes
from .segments.schemas import SegmentReference

DOCS_ASSETS = "/docs/assets"
EVENT_MODELS = (SegmentReference,)
"""Event payload objects no route returns, so that the ``webhooks`` section can name them."""
"""Where the Swagger UI and ReDoc files are served from (``/docs/assets/swagger-ui-bundle.js``, ...)."""
_ASSET_FILES = str(files("fastapi_offline") / "static")
# Only this server: the pages' own scripts (and their inline start-up code), their styles, images drawn
# from data: URLs, the spec, and ReDoc's search worker (a blob:); ajv in ReDoc compiles schemas with eval.
_DOCS_POLICY = (
    "default-src 'none'; script-src 'self' 'unsafe-inline' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

DESCRIPTION = """\
An API-first, headless CRM: contacts, companies, pipelines and deals, activities, tickets with SLA
policies, orders, custom fields, an event feed and signed webhooks.

- Send `Authorization: Bearer <key>` on every request; keys carry scopes (`contacts:read`, ...).
- Every error is `application/problem+json` (the `Problem` schema), naming the field at fault.
- Writes accept `Idempotency-Key`: a retry with the same key replays the first answer.
- Objects carry a `version`, sent as `ETag`; `If-Match` makes an update, archive or restore apply only to
  that version (412 otherwise).
- Lists are keyset-paginated: pass `next_cursor` back as `cursor` until `has_more` is false.
"""

SERVERS = [
    {"url": "/", "description": "The server this document was fetched from"},
    {"url": "http://127.0.0.1:8000", "description": "`crm-api serve` on this machine, with its defaults"},
]

TAGS = [
    {"name": "contacts", "description": "People: emails, phones, lifecycle stage, consent, custom fields"},
    {"name": "companies", "description": "Organisations, matched by domain"},
    {"name": "pipelines", "description": "Sales pipelines and their ordered stages (open, won or lost)"},
    {"name": "deals", "description": "Opportunities moving through a pipeline's stages"},
    {"name": "orders", "description": "Orders pushed by shops: contact, company and deal upserted together"},
    {"name": "activities", "description": "Notes, calls, emails, meetings and tasks linked to records"},
    {"name": "tickets", "description": "Support tickets, their comments, status rules and SLA due times"},
    {"name": "sla_policies", "description": "First response and resolution targets per ticket priority"},
    {"name": "custom_fields", "description": "Typed definitions of the records' custom_fields"},
    {"name": "events", "description": "The event feed: every change, in commit order, and the event types"},
    {"name": "webhooks", "description": "Endpoints that receive events, signed per Standard Webhooks"},
    {"name": "api-keys", "description": "The workspace's API keys (admin scope)"},
]

PARAMETERS: dict[str, dict[str, Any]] = {
    "IdempotencyKey": {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "description": "Any unique value (a UUID) to make the write safe to retry: a repeat with the same "
        "key, method, path, query and body within 48 hours answers with the first response (and "
        "`Idempotent-Replayed: true`) without running again; the same key with another request is a 422, "
        "and while the first is still running a 409. Keys are per workspace.",
        "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH},
    },
    "RequestId": {
        "name": "X-Request-ID",
        "in": "header",
        "required": False,
        "description": "Your id for the request (1 to 200 printable ASCII characters), echoed in the "
        "response, in problem documents and in the events the request writes; one is made up without it, "
        "and in place of one that is longer or not printable (the request is not refused for it)",
        # no maxLength: the server never refuses a request over this header, it replaces the value
        "schema": {"type": "string"},
    },
}

RESPONSE_HEADERS: dict[str, dict[str, Any]] = {
    "X-Request-ID": {
        "description": "The request's id: the client's `X-Request-ID` when it sent a usable one, else a new "
        "one. Problem documents repeat it as `request_id`.",
        "schema": {"type": "string"},
    },
    "ETag": {
        "description": 'The object\'s version, quoted (`"3"`): send it back as `If-Match` to write only '
        "over that version",
        "schema": {"type": "string", "examples": ['"3"']},
    },
    "Location": {"description": "The path of the object created", "schema": {"type": "string"}},
    "Idempotent-Replayed": {
        "description": "`true` when this is the stored answer to an earlier request with the same "
        "Idempotency-Key: nothing ran again",
        "schema": {"type": "string", "enum": ["true"]},
    },
    "Retry-After": {
        "description": "Seconds to wait before retrying",
        "schema": {"type": "integer", "minimum": 0},
    },
    "RateLimit": {
        "description": "What is left of each quota, per draft-ietf-httpapi-ratelimit-headers-11: "
        '`"key";r=1953;t=1, "workspace";r=9871;t=1` (`r` requests left as the answering process sees it, '
        "`t` seconds until the next is freed). Sent on every answer to a request with a known key; a 401 "
        'for a refused key and a 429 for too many of them carry `"auth-failures";r=...;t=...` instead',
        "schema": {"type": "string"},
    },
    "RateLimit-Policy": {
        "description": 'The quotas that apply: `"key";q=2000;w=2, "workspace";q=10000;w=2` (`q` requests per '
        "`w` seconds: each API key's, and its workspace's), or `\"auth-failures\";q=20;w=60` (refused keys "
        "per client address per minute) beside the `auth-failures` RateLimit",
        "schema": {"type": "string"},
    },
}
_EVERY_RESPONSE = ("X-Request-ID", "RateLimit", "RateLimit-Policy")


def add_docs(app: FastAPI) -> None:
    """``/docs``, ``/redoc`` and their assets under ``DOCS_ASSETS``, from the installed fastapi-offline
    package. The app is made with ``docs_url=None, redoc_url=None`` (FastAPI's own pages use a CDN)."""
    app.mount(DOCS_ASSETS, StaticFiles(directory=_ASSET_FILES), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        page = get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png",
            # no online validator badge
            swagger_ui_parameters={"validatorUrl": None, "displayOperationId": True},
        )
        page.headers["Content-Security-Policy"] = _DOCS_POLICY
        return page

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        page = get_redoc_html(
            openapi_url="/openapi.json",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{DOCS_ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{DOCS_ASSETS}/favicon.png",
            with_google_fonts=False,
        )
        page.headers["Content-Security-Policy"] = _DOCS_POLICY
        return page


def document(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document, built once."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title,
        version=__version__,
        description=DESCRIPTION,
        routes=app.routes,
        servers=SERVERS,
        tags=TAGS,
    )
    components = schema.setdefault("components", {})
    components["schemas"]["Problem"] = problem_schema()
    includes.components(components["schemas"])
    aggregate_schema.components(components["schemas"])
    _body_models(components["schemas"])
    _event_models(components["schemas"])
    components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    components["parameters"] = PARAMETERS
    components["headers"] = RESPONSE_HEADERS
    components["responses"] = {
        name: _with_headers(problem_response(status), False) for status, name in PROBLEM_NAMES.items()
    }
    # as get_openapi walks them: included routers are kept whole in app.routes, not copied into it
    for route in iter_route_contexts(app.routes):
        if isinstance(route.original_route, APIRoute) and route.include_in_schema:
            operations = schema["paths"][route.path_format]
            for method in route.methods or ():
                _decorate(
                    operations[method.lower()], route.endpoint is not None and is_idempotent(route.endpoint)
                )
    _defaults_to_prose(components["schemas"], _request_schemas(schema))
    schema["webhooks"] = webhooks_section(components["schemas"])
    schema["security"] = [{"bearer": []}]
    app.openapi_schema = schema
    return schema


def _body_models(schemas: dict[str, Any]) -> None:
    """The bodies routes read themselves (``http.request_body``), with the models they refer to."""
    if not BODY_MODELS:
        return
    _, defined = models_json_schema(
        [(m, "validation") for m in BODY_MODELS], ref_template="#/components/schemas/{model}"
    )
    for name, schema in defined.get("$defs", {}).items():
        schemas.setdefault(name, schema)


def _event_models(schemas: dict[str, Any]) -> None:
    """The ``data.object`` of events whose object no route returns (``events/types.py`` names them)."""
    _, defined = models_json_schema(
        [(m, "serialization") for m in EVENT_MODELS], ref_template="#/components/schemas/{model}"
    )
    for name, schema in defined.get("$defs", {}).items():
        schemas.setdefault(name, schema)


def _decorate(operation: dict[str, Any], idempotent: bool) -> None:
    parameters = operation.setdefault("parameters", [])
    for parameter in parameters:
        # an optional header (If-Match) is left out, never null: a header has no null to send
        schema = parameter.get("schema", {})
        kinds = schema.get("anyOf", [])
        if parameter.get("in") == "header" and {"type": "null"} in kinds:
            schema.pop("anyOf")
            schema.update(*(k for k in kinds if k != {"type": "null"}))
    parameters.append({"$ref": "#/components/parameters/RequestId"})
    if idempotent:
        parameters.append({"$ref": "#/components/parameters/IdempotencyKey"})
    responses = operation["responses"]
    for status, response in responses.items():
        shared = PROBLEM_NAMES.get(int(status)) if status.isdigit() else None
        if shared is not None and response == problem_response(int(status)):
            responses[status] = {"$ref": "#/components/responses/" + shared}
        else:
            _with_headers(response, idempotent and status.startswith("2"))


def _with_headers(response: dict[str, Any], replayable: bool) -> dict[str, Any]:
    """``response`` with the headers every response carries, and ``Idempotent-Replayed`` if it may be a
    replay."""
    headers = response.setdefault("headers", {})
    for name in (*_EVERY_RESPONSE, "Idempotent-Replayed") if replayable else _EVERY_RESPONSE:
        headers.setdefault(name, {"$ref": HEADERS + name})
    return response


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        found = {ref.rsplit("/", 1)[-1]} if isinstance(ref, str) and "/schemas/" in ref else set()
        return found.union(*(_refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node))
    return set()


def _request_schemas(schema: dict[str, Any]) -> set[str]:
    """The components a request body may contain, transitively."""
    components = schema["components"]["schemas"]
    todo = _refs([op.get("requestBody") for path in schema["paths"].values() for op in path.values()])
    found: set[str] = set()
    while todo:
        name = todo.pop()
        if name not in found:
            found.add(name)
            todo |= _refs(components[name])
    return found


def _defaults_to_prose(components: dict[str, Any], names: set[str]) -> None:
    """Request bodies state their defaults in words, not as ``default``: TypeScript generators
    (openapi-typescript with its default flags) read a property with a default as always present and make
    it required, so a client would have to send every field the server fills in itself."""
    for name in names:
        for prop in components[name].get("properties", {}).values():
            if "default" in prop:
                value = json.dumps(prop.pop("default"))
                said = prop.get("description", "").rstrip(".")
                prop["description"] = f"{said}. Default: `{value}`." if said else f"Default: `{value}`."
