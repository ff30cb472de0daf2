"""Reading an import's file: records from CSV or NDJSON bytes, streamed part by part, and the problems of
each record that no schema can see (bad encoding, a wrong column count, a line that is not a JSON object).

Memory stays flat whatever the file's size: a part at a time is held, plus the record it splits. A record
is numbered from 1 in file order (CSV's header line and blank lines are not records), and the numbering is
the same on every read, which is how a resumed import skips the records its committed chunks settled.
"""

from __future__ import annotations

import codecs
import csv
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

BOM = "\ufeff"


@dataclass(slots=True)
class Problem:
    column: str | None
    code: str
    message: str


@dataclass(slots=True)
class Record:
    number: int
    values: dict[str, Any]
    """column -> value: CSV cells as text (empty cells left out), NDJSON members as parsed"""
    problems: list[Problem] = field(default_factory=list)


class FileError(ValueError):
    """The file as a whole cannot be read (a CSV without a header line); the job fails with this."""


def _lines(text: str, tail: str) -> tuple[list[str], str]:
    """Complete lines of ``tail + text``, and what is left after the last line break."""
    text = tail + text
    cut = text.rfind("\n") + 1
    return text[:cut].splitlines(keepends=True), text[cut:]


_ESCAPED = re.compile("[\udc80-\udcff]")
"""What ``surrogateescape`` makes of a byte that is not UTF-8."""
BLANK = " \t\r\n,"
"""A record of nothing but these is a blank line (CSV), not a row."""


async def _text_lines(parts: AsyncIterator[bytes]) -> AsyncIterator[tuple[list[str], bool]]:
    """Lines of the file, a part's worth at a time, and whether they may hold bytes that are not UTF-8.
    Such bytes survive as lone surrogates (``surrogateescape``), so a bad byte spoils its record, not the
    file; a clean part (one search of its text) spares its records the check."""
    decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
    tail = ""
    first = True
    async for data in parts:
        text = decoder.decode(data)
        if first and text:
            text, first = text.removeprefix(BOM), False
        lines, tail = _lines(text, tail)
        if lines:
            yield lines, _ESCAPED.search(text) is not None or _ESCAPED.search(lines[0]) is not None
    tail += decoder.decode(b"", final=True)
    if tail:
        yield [tail], _ESCAPED.search(tail) is not None


def _bad_text(value: str) -> bool:
    return _ESCAPED.search(value) is not None


class _Records:
    """Lines grouped into whole CSV records: a line break inside quotes continues the record (an odd count
    of quote characters so far), so a record may span lines and parts."""

    def __init__(self) -> None:
        self.pending: list[str] = []
        self.quotes = 0
        self.dirty = False

    def feed(self, lines: list[str], dirty: bool) -> tuple[list[str], bool]:
        """The records these lines complete, and whether any of them may hold bad bytes."""
        records: list[str] = []
        dirty = dirty or self.dirty
        for line in lines:
            if not self.pending and '"' not in line:
                records.append(line)  # the common case: a record on one line, no quotes
                continue
            self.pending.append(line)
            self.quotes += line.count('"')
            if self.quotes % 2 == 0:
                records.append("".join(self.pending))
                self.pending, self.quotes = [], 0
        self.dirty = dirty and bool(self.pending)
        return records, dirty

    def rest(self) -> str:
        """A record left open by an unclosed quote at the end of the file: read what there is."""
        return "".join(self.pending)


class CsvReader:
    """Records of a CSV file with a header line, from its parts."""

    def __init__(self) -> None:
        self.header: list[str] | None = None

    async def _texts(self, parts: AsyncIterator[bytes]) -> AsyncIterator[tuple[list[str], bool]]:
        """Each part's whole records, blank lines left out, the header line read and taken off."""
        grouper = _Records()
        async for lines, dirty in _text_lines(parts):
            texts, dirty = grouper.feed(lines, dirty)
            texts = self._header([t for t in texts if t.strip(BLANK)])
            if texts:
                yield texts, dirty
        rest = self._header([grouper.rest()] if grouper.rest().strip(BLANK) else [])
        if rest:
            yield rest, True
        if self.header is None:
            raise FileError("The file has no header line")

    def _header(self, texts: list[str]) -> list[str]:
        if self.header is not None or not texts:
            return texts
        self.header = [c.strip() for c in next(csv.reader(texts[:1]))]
        if len(set(self.header)) != len(self.header) or not all(self.header):
            raise FileError("The header line repeats a column name or has an empty one")
        return texts[1:]

    async def count(self, parts: AsyncIterator[bytes]) -> int:
        """The number of rows, without parsing them (the first read of a file, for ``rows_total``)."""
        return sum([len(texts) async for texts, _ in self._texts(parts)])

    async def records(self, parts: AsyncIterator[bytes]) -> AsyncIterator[list[Record]]:
        number = 0
        async for texts, dirty in self._texts(parts):
            batch = [
                self._record(number + i, text, cells, dirty)
                for i, (text, cells) in enumerate(zip(texts, csv.reader(texts), strict=True), 1)
            ]
            number += len(batch)
            yield batch

    def _record(self, number: int, text: str, cells: list[str], dirty: bool) -> Record:
        header = self.header
        assert header is not None
        if len(cells) != len(header):
            problem = Problem(
                None, "column_count", f"The row has {len(cells)} columns, the header {len(header)}"
            )
            return Record(number, {}, [problem])
        if not (dirty and _bad_text(text)):
            return Record(number, {c: v for c, v in zip(header, cells, strict=True) if v != ""})
        record = Record(number, {})
        for column, cell in zip(header, cells, strict=True):
            if _bad_text(cell):
                record.problems.append(Problem(column, "encoding", "The value is not valid UTF-8"))
            elif cell != "":
                record.values[column] = cell
        return record


class NdjsonReader:
    """Records of a file of JSON objects, one a line."""

    header: list[str] | None = None

    async def records(self, parts: AsyncIterator[bytes]) -> AsyncIterator[list[Record]]:
        number = 0
        async for lines, _ in _text_lines(parts):
            batch: list[Record] = []
            for line in lines:
                if not line.strip():
                    continue
                number += 1
                batch.append(_json_record(number, line))
            if batch:
                yield batch


def _json_record(number: int, line: str) -> Record:
    record = Record(number, {})
    if _bad_text(line):
        record.problems.append(Problem(None, "encoding", "The line is not valid UTF-8"))
        return record
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        record.problems.append(Problem(None, "invalid_json", f"The line is not JSON: {exc}"))
        return record
    if not isinstance(value, dict):
        record.problems.append(Problem(None, "invalid_json", "The line is not a JSON object"))
        return record
    record.values = value
    return record


Reader = CsvReader | NdjsonReader


def reader(format: str) -> Reader:
    return CsvReader() if format == "csv" else NdjsonReader()


def flatten(batches: list[list[Record]]) -> Iterator[Record]:
    for batch in batches:
        yield from batch
