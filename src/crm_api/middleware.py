"""Pure ASGI middleware (cheaper than BaseHTTPMiddleware): request ids, the headers every response carries
(with the RateLimit fields), and the body size limit."""

from __future__ import annotations

import os

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import jsonutil
from .errors import PROBLEM_JSON, CRMError, PayloadTooLarge
from .logs import REQUEST_ID

# Responses carry personal data and secrets: no cache may keep them (a response that sets its own
# Cache-Control keeps it), and no browser may guess a type other than the one declared.
_NO_STORE = (b"cache-control", b"no-store")
_NOSNIFF = (b"x-content-type-options", b"nosniff")


def _sane_request_id(raw: bytes) -> str | None:
    try:
        value = raw.decode("ascii")
    except UnicodeDecodeError:
        return None
    return value if 0 < len(value) <= 200 and value.isprintable() else None


class RequestContext:
    """Gives every request an id (the client's ``X-Request-ID`` or a new one), echoes it on the response
    with ``Cache-Control: no-store`` and ``X-Content-Type-Options: nosniff``, puts it on every log record
    written meanwhile, and answers 413 to bodies over the limit, whether declared by Content-Length or
    streamed."""

    def __init__(self, app: ASGIApp, max_body_bytes: int, uploads: dict[str, int] | None = None) -> None:
        self.app = app
        self.max_body = max_body_bytes
        self.uploads = uploads or {}
        """path -> the limit of a multipart POST there (a file streamed to storage, not held)"""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = None
        length = None
        multipart = False
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                request_id = _sane_request_id(value)
            elif name == b"content-length":
                length = value
            elif name == b"content-type":
                multipart = value.lower().startswith(b"multipart/form-data")
        limit = self.max_body
        if multipart and scope["method"] == "POST":
            limit = self.uploads.get(scope["path"], limit)
        request_id = request_id or os.urandom(16).hex()  # 32 hex digits as before, no UUID object built
        scope.setdefault("state", {})["request_id"] = request_id
        header = (b"x-request-id", request_id.encode())

        def too_large() -> PayloadTooLarge:  # built only when sent
            return PayloadTooLarge(f"The body exceeds {limit} bytes")

        if length is not None and (not length.isdigit() or int(length) > limit):
            await _send_problem(send, too_large(), request_id, header)
            return

        received = 0
        overflowed = False

        async def limited_receive() -> Message:
            nonlocal received, overflowed
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    overflowed = True
                    raise too_large()
            return message

        async def send_with_id(message: Message) -> None:
            # the app turns a failed body read into its own error; an overflow is answered as 413 instead
            if overflowed:
                if message["type"] == "http.response.start":
                    await _send_problem(send, too_large(), request_id, header)
                return
            if message["type"] == "http.response.start":
                headers = message.get("headers", [])
                cached = any(name.lower() == b"cache-control" for name, _ in headers)
                # and the RateLimit fields, once auth has counted the request (ratelimit.py)
                quota = scope["state"].get("ratelimit", ())
                message["headers"] = [*headers, header, _NOSNIFF, *(() if cached else (_NO_STORE,)), *quota]
            await send(message)

        token = REQUEST_ID.set(request_id)
        try:
            await self.app(scope, limited_receive, send_with_id)
        finally:
            REQUEST_ID.reset(token)


async def _send_problem(send: Send, error: CRMError, request_id: str, header: tuple[bytes, bytes]) -> None:
    body = jsonutil.dumps(error.body(request_id))
    headers = [
        (b"content-type", PROBLEM_JSON.encode()),
        (b"content-length", str(len(body)).encode()),
        header,
        _NOSNIFF,
        _NO_STORE,
    ]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
