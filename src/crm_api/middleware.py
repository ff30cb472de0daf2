"""Pure ASGI middleware (cheaper than BaseHTTPMiddleware): request ids and the body size limit."""

from __future__ import annotations

import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import PayloadTooLarge


def _sane_request_id(raw: bytes) -> str | None:
    try:
        value = raw.decode("ascii")
    except UnicodeDecodeError:
        return None
    return value if 0 < len(value) <= 200 and value.isprintable() else None


class RequestContext:
    """Gives every request an id (the client's ``X-Request-ID`` or a new one), echoes it on the response,
    and refuses bodies over the limit, whether declared by Content-Length or streamed."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = None
        length = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                request_id = _sane_request_id(value)
            elif name == b"content-length":
                length = value
        request_id = request_id or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        header = (b"x-request-id", request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise PayloadTooLarge(f"The body exceeds {self.max_body} bytes")
            return message

        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            receive_fn: Receive = _refuse(self.max_body)
        else:
            receive_fn = limited_receive
        await self.app(scope, receive_fn, send_with_id)


def _refuse(limit: int) -> Receive:
    async def receive() -> Message:
        raise PayloadTooLarge(f"The body exceeds {limit} bytes")

    return receive
