"""The outermost middleware: each request's metric sample and its log line, labelled by route template
(``/v1/contacts/{id}``, never the path: ids would make labels without end, and paths carry values)."""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import metrics
from .logs import access

UNMATCHED = "unmatched"
"""The route label of requests no route took (404s, preflights answered by the CORS middleware)."""


def route_template(scope: Scope) -> str:
    route = scope.get("route")
    path: str | None = getattr(route, "path", None)
    return path if path is not None else UNMATCHED


class Observe:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # if the app raises before answering, the server answers 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            seconds = time.perf_counter() - started
            route = route_template(scope)
            metrics.observe_request(route, scope["method"], status, seconds)
            if access.isEnabledFor(logging.INFO):
                _log(scope, route, status, seconds)


def _log(scope: Scope, route: str, status: int, seconds: float) -> None:
    state = scope.get("state") or {}
    principal = state.get("principal")
    fields = {
        "request_id": state.get("request_id"),
        "workspace_id": principal.workspace_id if principal is not None else None,
        "key_id": principal.key_id if principal is not None else None,
        "method": scope["method"],
        "route": route,
        "status": status,
        "duration_ms": round(seconds * 1000, 3),
    }
    # made and handed over directly: Logger.info would also look up the calling frame, unused here
    access.handle(
        access.makeRecord(access.name, logging.INFO, "", 0, "request", (), None, extra={"fields": fields})
    )
