"""A ``multipart/form-data`` body read as it arrives, for an import's file sent in one request: each part's
headers, then its data in pieces as the stream gives them, so a file of any size passes through a buffer
of about one network read (RFC 7578; the boundary's rules from RFC 2046)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from email.message import Message

MAX_HEADERS = 16 * 1024
"""A part's header block at most: a longer one is not a form's."""


class MultipartError(ValueError):
    """The body is not the multipart document its Content-Type announces."""


def boundary_of(content_type: str) -> bytes | None:
    """The boundary of a ``multipart/form-data`` Content-Type (None for another type or none given)."""
    message = Message()
    message["content-type"] = content_type
    if message.get_content_type() != "multipart/form-data":
        return None
    boundary = message.get_param("boundary")
    if not isinstance(boundary, str) or not 0 < len(boundary) <= 70:
        return None
    return boundary.encode("latin-1")


def disposition(headers: dict[str, str]) -> tuple[str | None, str | None]:
    """A part's form field ``name`` and ``filename`` from its Content-Disposition."""
    message = Message()
    message["content-disposition"] = headers.get("content-disposition", "")
    name, filename = message.get_param("name", header="content-disposition"), message.get_filename()
    return (name if isinstance(name, str) else None), filename


def _headers(block: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in block.decode("utf-8", "replace").split("\r\n"):
        name, colon, value = line.partition(":")
        if not colon:
            raise MultipartError(f"a part's header line is not a header: {line[:80]!r}")
        out[name.strip().lower()] = value.strip()
    return out


async def events(stream: AsyncIterator[bytes], boundary: bytes) -> AsyncIterator[tuple[str, object]]:
    """``("part", headers)`` as a part begins, ``("data", bytes)`` for its content, piece by piece, and
    ``("end", None)`` as it ends; raises ``MultipartError`` for a body that is not well formed."""
    delimiter = b"\r\n--" + boundary
    keep = len(delimiter) + 1  # what may hold a delimiter cut by a read
    buffer = bytearray(b"\r\n")  # so the first boundary line reads as any other delimiter
    state = "preamble"
    in_part = False
    async for chunk in stream:
        buffer += chunk
        while True:
            if state in ("preamble", "data"):
                at = buffer.find(delimiter)
                if at < 0:
                    if state == "data" and len(buffer) > keep:
                        yield "data", bytes(buffer[:-keep])
                        del buffer[:-keep]
                    elif state == "preamble" and len(buffer) > keep:
                        del buffer[:-keep]
                    break
                if state == "data" and at:
                    yield "data", bytes(buffer[:at])
                if in_part:
                    yield "end", None
                    in_part = False
                del buffer[: at + len(delimiter)]
                state = "delimiter"
            elif state == "delimiter":
                if len(buffer) < 2:
                    break
                if buffer.startswith(b"--"):
                    return  # the closing delimiter: what follows is an epilogue, to be ignored
                if not buffer.startswith(b"\r\n"):
                    raise MultipartError("a boundary line does not end where it should")
                del buffer[:2]
                state = "headers"
            else:
                if buffer.startswith(b"\r\n"):
                    headers: dict[str, str] = {}
                    del buffer[:2]
                else:
                    end = buffer.find(b"\r\n\r\n")
                    if end < 0:
                        if len(buffer) > MAX_HEADERS:
                            raise MultipartError("a part's headers are too long")
                        break
                    headers = _headers(bytes(buffer[:end]))
                    del buffer[: end + 4]
                yield "part", headers
                in_part = True
                state = "data"
    raise MultipartError("the body ended before its closing boundary")
