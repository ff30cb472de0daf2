"""The streaming multipart reader: the same parts whatever sizes the network's reads come in, including
reads that cut a boundary, and a clear error for a body that is not well formed."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from crm_api.bulk.multipart import MultipartError, boundary_of, disposition, events

BODY = (
    b"preamble to ignore\r\n--b1\r\n"
    b'Content-Disposition: form-data; name="job"\r\nContent-Type: application/json\r\n\r\n{"a": 1}\r\n'
    b'--b1\r\nContent-Disposition: form-data; name="file"; filename="a.csv"\r\n\r\n'
    b"email\r\n-b1x@y.com--b1\r\n\r\n--b1\r\n\r\n\r\n--b1--\r\nepilogue"
)


async def _read(body: bytes, size: int) -> list[tuple[str | None, str | None, bytes]]:
    async def stream() -> AsyncIterator[bytes]:
        for at in range(0, len(body), size):
            yield body[at : at + size]

    out: list[tuple[str | None, str | None, bytes]] = []
    ended = 0
    async for kind, value in events(stream(), b"b1"):
        if kind == "part":
            out.append((*disposition(value), b""))  # type: ignore[arg-type]
        elif kind == "data":
            name, filename, data = out[-1]
            out[-1] = (name, filename, data + value)  # type: ignore[operator]
        else:
            ended += 1
    assert ended == len(out)
    return out


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 13, 4096])
async def test_parts_are_the_same_whatever_the_reads(size: int) -> None:
    assert await _read(BODY, size) == [
        ("job", None, b'{"a": 1}'),
        ("file", "a.csv", b"email\r\n-b1x@y.com--b1\r\n"),  # "--b1" not after a line break is data
        (None, None, b""),
    ]


@pytest.mark.parametrize(
    "body",
    [BODY[:-20], b"--b1\r\nno colon here\r\n\r\nx\r\n--b1--", b"--b1garbage\r\n", b""],
)
async def test_a_body_that_is_not_well_formed_is_refused(body: bytes) -> None:
    with pytest.raises(MultipartError):
        await _read(body, 7)


def test_the_boundary_comes_from_a_multipart_form_data_type_only() -> None:
    assert boundary_of('multipart/form-data; boundary="a b"') == b"a b"
    assert boundary_of("multipart/mixed; boundary=x") is None
    assert boundary_of("multipart/form-data") is None
    assert boundary_of("application/json") is None
