"""Reading an import's file: records from CSV or NDJSON bytes, streamed part by part, and the problems of
each record that no schema can see (bad encoding, a wrong column count, a line that is not a JSON object).

Memory stays flat whatever the file's size: a part at a time is held, plus the record it splits. A record
is numbered from 1 in file order (CSV's header line and blank lines are not records), and the numbering is
the same on every read, which is how a resumed import skips the records its committed chunks settled.
"""

from __future__ import annotations

import codecs
import csv
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


async def _text_lines(parts: AsyncIterator[bytes]) -> AsyncIterator[list[str]]:
    """Lines of the file, a part's worth at a time. Bytes that are not UTF-8 survive as lone surrogates
    (``surrogateescape``), so a bad byte spoils its record, not the file."""
    decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
    tail = ""
    first = True
    async for data in parts:
        text = decoder.decode(data)
        if first and text:
            text, first = text.removeprefix(BOM), False
        lines, tail = _lines(text, tail)
        if lines:
            yield lines
    tail += decoder.decode(b"", final=True)
    if tail:
        yield [tail]


def _bad_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _csv_records(lines: list[str], pending: list[str]) -> tuple[list[str], list[str]]:
    """Group lines into whole CSV records: a line break inside quotes continues the record (an odd count of
    quote characters so far), so a record may span lines and parts. Returns the records' texts and the
    lines of a record still open."""
    records: list[str] = []
    for line in lines:
        pending.append(line)
        if sum(part.count('"') for part in pending) % 2 == 0:
            records.append("".join(pending))
            pending = []
    return records, pending


class CsvReader:
    """Records of a CSV file with a header line, from its parts."""

    def __init__(self) -> None:
        self.header: list[str] | None = None

    async def records(self, parts: AsyncIterator[bytes]) -> AsyncIterator[list[Record]]:
        number = 0
        pending: list[str] = []
        async for lines in _text_lines(parts):
            texts, pending = _csv_records(lines, pending)
            batch, number = self._parse(texts, number)
            if batch:
                yield batch
        if pending:  # an unclosed quote at the end: read what there is
            batch, number = self._parse(["".join(pending)], number)
            if batch:
                yield batch
        if self.header is None:
            raise FileError("The file has no header line")

    def _parse(self, texts: list[str], number: int) -> tuple[list[Record], int]:
        out: list[Record] = []
        for text, cells in zip(texts, csv.reader(texts), strict=True):
            if not any(c.strip() for c in cells):
                continue  # a blank line
            if self.header is None:
                self.header = [c.strip() for c in cells]
                if len(set(self.header)) != len(self.header) or not all(self.header):
                    raise FileError("The header line repeats a column name or has an empty one")
                continue
            number += 1
            out.append(self._record(number, text, cells))
        return out, number

    def _record(self, number: int, text: str, cells: list[str]) -> Record:
        header = self.header
        assert header is not None
        record = Record(number, {})
        if len(cells) != len(header):
            record.problems.append(
                Problem(None, "column_count", f"The row has {len(cells)} columns, the header {len(header)}")
            )
            return record
        bad = _bad_text(text)
        for column, cell in zip(header, cells, strict=True):
            if bad and _bad_text(cell):
                record.problems.append(Problem(column, "encoding", "The value is not valid UTF-8"))
            elif cell != "":
                record.values[column] = cell
        return record


class NdjsonReader:
    """Records of a file of JSON objects, one a line."""

    header: list[str] | None = None

    async def records(self, parts: AsyncIterator[bytes]) -> AsyncIterator[list[Record]]:
        number = 0
        async for lines in _text_lines(parts):
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
