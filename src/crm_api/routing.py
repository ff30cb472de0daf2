"""How a request finds its route: a literal path segment beats a parameter, and a 405 names every method
the path has.

Starlette takes the first route that matches both path and method, so ``PATCH /v1/contacts/search`` was
taken by ``PATCH /v1/contacts/{id}`` (and refused as a bad id, 422) although ``/v1/contacts/search`` is a
path of its own that only answers POST. ``Route`` declines a path that a more specific route owns (one with
a literal segment where it has a parameter), so that path answers 405. And Starlette's 405 names only the
methods of the first route that matched the path (``/v1/contacts`` said ``Allow: GET``, forgetting POST);
``Route`` answers it with the methods of every route that owns the path.

Every router of the API is built with ``APIRouter(..., route_class=Route)``. What a route declines is worked
out on its first request, from the app it is served by, and kept.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi.routing import APIRoute, iter_route_contexts
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import Receive, Scope, Send

_PARAM = re.compile(r"^\{[^}:]+\}$")
_METHOD_ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _segments(path: str) -> list[str | None]:
    """The path's segments, None for a parameter."""
    return [None if _PARAM.match(s) else s for s in path.split("/")]


def more_specific(owner: str, other: str) -> bool:
    """Whether every path ``other`` matches that ``owner`` also matches belongs to ``owner``: both have the
    same segments, and at the first one where only one of them has a parameter, ``owner`` has a literal."""
    if ":" in owner or ":" in other:  # a convertor ({p:path}) may span segments: not compared
        return False
    mine, theirs = _segments(owner), _segments(other)
    if len(mine) != len(theirs):
        return False
    for a, b in zip(mine, theirs, strict=True):
        if a is not None and b is not None and a != b:
            return False  # different literals: the two never match the same path
    for a, b in zip(mine, theirs, strict=True):
        if (a is None) != (b is None):
            return a is not None
    return False


def _route_path(scope: Scope) -> str:
    """The path the routes match: without the root path the app is mounted under (as Starlette does)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


_GROUP = re.compile(r"\(\?P<[^>]+>")


def guard_included(router: Any) -> None:
    """Lets each router included in ``router`` decline at once a path none of its routes can match.

    FastAPI asks every included router in turn, and each one tries all of its routes, whatever the path:
    a request for a route of the 30th router made ~80 route matches (measured 0.6-3.7 ms of CPU a request,
    growing with every router added). One regular expression made of all the router's path patterns
    answers whether any of them can match, in one call; only when one can does FastAPI look further, so
    which route takes a request, and every 404, 405 and slash redirect, stay as they were."""
    for included in router.routes:
        if not hasattr(included, "original_router"):
            continue  # a route of the app itself
        found = [getattr(c, "path_regex", None) for c in iter_route_contexts([included])]
        patterns = [p for p in found if isinstance(p, re.Pattern)]
        if not patterns or len(patterns) < len(found):
            continue  # nothing known to guard on: it keeps matching as FastAPI does
        # each pattern is anchored (^...$); their groups are unnamed so that names may repeat
        either = "|".join(f"(?:{_GROUP.sub('(?:', p.pattern)})" for p in patterns)
        included.matches = _guarded(included.matches, re.compile(either))
        included._match = _matched_once(included, included._match)


_MATCHED = "crm_api.matched"
"""The scope key holding an included router's full match, from ``matches`` until ``handle`` reads it."""


def _matched_once(included: Any, match: Any) -> Any:
    """An included router's route match, done once per request rather than twice.

    FastAPI asks each included router whether it ``matches`` the request (it runs through its routes and
    keeps only the answer), then has the one that matched ``handle`` it, which runs through its routes
    again to find the route (a tenth of a plain GET's CPU for the two). A full match is kept in the scope
    for the ``handle`` that follows it on the same scope, which takes it back out; any other answer is
    worked out each time, as before."""

    def matched_once(scope: Scope) -> Any:
        kept = scope.pop(_MATCHED, None)
        if kept is not None and kept[0] is included and kept[1] == scope.get("path"):
            return kept[2]
        result = match(scope)
        if result[0] is Match.FULL:
            scope[_MATCHED] = (included, scope.get("path"), result)
        return result

    return matched_once


def _guarded(matches: Any, paths: re.Pattern[str]) -> Any:
    def guarded(scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "lifespan" and paths.match(_route_path(scope)) is None:
            return Match.NONE, {}
        result: tuple[Match, Scope] = matches(scope)
        return result

    return guarded


def _contexts(router: Any) -> list[Any]:
    return [c for c in iter_route_contexts(router.routes) if c.path_format and c.methods]


Direct = Callable[[Request], Awaitable[Response | None]]
"""A route's request handled without FastAPI's request handler (``Route.direct``): the response, or None
to have FastAPI handle the request after all."""


class Route(APIRoute):
    _owners: tuple[Any, tuple[re.Pattern[str], ...]] | None = None
    """(the app router it was worked out for, the path patterns of the routes more specific than this one)"""
    direct: Direct | None = None
    """The route's requests answered without FastAPI's request handler, which reads the body, solves the
    dependencies and validates the parameters (two exit stacks, a response object, the dependency cache:
    a fifth of a plain GET's CPU). For a hot route that needs none of that (a read taking its parameters
    from the query string itself): it authenticates, checks what FastAPI would validate and calls the
    endpoint, or answers None for what it does not take on (a malformed path parameter: FastAPI answers
    that one, as before). Errors propagate to the app's exception handlers, the ones FastAPI's handler
    would have called. Not while FastAPI's own OpenTelemetry instrumentation or a dependency override
    is active: both live in the handler skipped here."""

    def _more_specific(self, scope: Scope) -> tuple[re.Pattern[str], ...]:
        router = scope.get("router")
        if self._owners is not None and self._owners[0] is router:
            return self._owners[1]
        patterns: tuple[re.Pattern[str], ...] = ()
        if router is not None and "{" in self.path_format:
            contexts = _contexts(router)
            mine = [c.path_format for c in contexts if c.original_route is self] or [self.path_format]
            patterns = tuple(
                c.path_regex
                for c in contexts
                if c.original_route is not self and any(more_specific(c.path_format, p) for p in mine)
            )
        self._owners = (router, patterns)
        return patterns

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child_scope = super().matches(scope)
        if match is not Match.NONE and scope["type"] == "http":
            path = _route_path(scope)
            if any(p.match(path) for p in self._more_specific(scope)):
                return Match.NONE, {}
        return match, child_scope

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.methods and scope["method"] not in self.methods:
            raise HTTPException(405, headers={"Allow": allowed_methods(scope)})
        direct = self.direct
        if (
            direct is not None
            and scope["type"] == "http"
            and "fastapi.telemetry" not in scope
            and not getattr(scope.get("app"), "dependency_overrides", None)
        ):
            response = await direct(Request(scope, receive, send))
            if response is not None:
                await response(scope, receive, send)
                return
        await super().handle(scope, receive, send)


def handle_directly(router: Any, endpoint: Callable[..., Any], direct: Direct) -> None:
    """Has the route of ``router`` that calls ``endpoint`` answer its requests with ``direct``
    (``Route.direct``)."""
    found = [r for r in router.routes if isinstance(r, Route) and r.endpoint is endpoint]
    assert len(found) == 1, f"{endpoint.__name__}: {len(found)} routes"
    found[0].direct = direct


def canonical_uuid(value: Any) -> uuid.UUID | None:
    """A path parameter that is a UUID in its canonical form (8-4-4-12 hex digits, either case), which
    FastAPI's validation takes as the same UUID; None for anything else, whether valid or not (FastAPI
    validates those, and answers the invalid ones)."""
    if not isinstance(value, str) or len(value) != 36 or value.count("-") != 4:
        return None
    if value[8] != "-" or value[13] != "-" or value[18] != "-" or value[23] != "-":
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def allowed_methods(scope: Scope) -> str:
    """The methods of every route that owns the request's path, as an ``Allow`` header."""
    router, path = scope["router"], _route_path(scope)
    methods: set[str] = set()
    for context in _contexts(router):
        if not context.path_regex.match(path):
            continue
        route = context.original_route
        if isinstance(route, Route) and any(p.match(path) for p in route._more_specific(scope)):
            continue
        methods |= context.methods
    order = {m: i for i, m in enumerate(_METHOD_ORDER)}
    return ", ".join(sorted(methods, key=lambda m: (order.get(m, len(order)), m)))
