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
from typing import Any

from fastapi.routing import APIRoute, iter_route_contexts
from starlette.exceptions import HTTPException
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


def _guarded(matches: Any, paths: re.Pattern[str]) -> Any:
    def guarded(scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "lifespan" and paths.match(_route_path(scope)) is None:
            return Match.NONE, {}
        result: tuple[Match, Scope] = matches(scope)
        return result

    return guarded


def _contexts(router: Any) -> list[Any]:
    return [c for c in iter_route_contexts(router.routes) if c.path_format and c.methods]


class Route(APIRoute):
    _owners: tuple[Any, tuple[re.Pattern[str], ...]] | None = None
    """(the app router it was worked out for, the path patterns of the routes more specific than this one)"""

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
        await super().handle(scope, receive, send)


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
