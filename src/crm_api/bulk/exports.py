"""Running an export: every matching row read in one REPEATABLE READ snapshot (so writes that go on
meanwhile appear wholly or not at all), written out as CSV or NDJSON in parts of about 1 MiB. Memory stays
flat: a part is stored once full.

CSV comes from PostgreSQL itself (``csv_copy``): one ``COPY (SELECT ...) TO STDOUT`` whose SELECT turns
each cell into its text as the API writes it, so the worker only cuts the stream into parts (a million
rows took 436 s through a cursor and Python's ``csv``). NDJSON goes through a cursor and ``Formatter``.

A killed worker's export starts over under the next worker (its parts are cleared first): an export
writes nothing but its own file, so a rerun is safe, and the file is served only once it succeeded.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import Select, select

from .. import jsonutil, sql
from ..resources.custom_fields import enforce
from ..resources.exprs import Expr, Params
from ..resources.filters import Compiler
from ..resources.query import in_workspace, live
from ..resources.spec import ResourceSpec
from . import repository as repo
from .lease import claim_and_run
from .mapping import OBJECTS

PART_BYTES = 1 << 20
FETCH = 2000
"""Rows the cursor fetches per round trip."""
_SHAPES = sql.Shapes(256)


def field_names(spec: ResourceSpec) -> list[str]:
    """What an export may name in ``fields``: the object's keys as the API shows them."""
    return [n for n in spec.read_schema.model_fields if n != "object"]


def field_problem(spec: ResourceSpec, name: str) -> str | None:
    head, dot, rest = name.partition(".")
    if dot and head == "custom_fields" and rest and "custom_fields" in spec.field_names:
        return None
    if not dot and name in field_names(spec):
        return None
    return f"unknown field; expected one of {', '.join(field_names(spec))} or custom_fields.<name>"


async def conditions(
    conn: Any, spec: ResourceSpec, ws: uuid.UUID, filter: Any, include_archived: bool
) -> tuple[Params, list[Expr]]:
    """The search's conditions for an export (its filter errors are 422s naming ``/filter/...``)."""
    params = Params(ws=ws)
    where = [in_workspace(spec)]
    if filter is not None:
        compiler = Compiler(spec, params)
        if enforce.applies(spec):
            compiler.custom_definitions = await enforce.definitions(conn, ws, spec.object)
        where.append(compiler.compile(filter))
    if not include_archived:
        where.append(live(spec))
    return params, where


def _statement(spec: ResourceSpec, where: list[Expr]) -> sql.Compiled:
    key = ("export", spec.table, tuple(w.key for w in where))

    def build() -> Select[Any]:
        t = sql.table(spec.table)
        # id order: the primary key's index walks it, and the file's order is stable from run to run
        return select(*sql.columns(spec.columns, t)).where(*(w.build() for w in where)).order_by(t.c.id)

    return _SHAPES.get(key, build)


def _cell(value: Any) -> str:
    """A custom field's value (any JSON) as a CSV cell."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ";".join(value)
    return jsonutil.dumps_str(value)


def _timestamp(value: dt.datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")  # as the API writes it (UTC, with a Z)


_CELLS: dict[str, Callable[[Any], str]] = {
    "text": lambda v: "" if v is None else v,
    "boolean": lambda v: "" if v is None else "true" if v else "false",
    "timestamptz": lambda v: "" if v is None else _timestamp(v),
    "date": lambda v: "" if v is None else v.isoformat(),
    # lists joined as an import reads them back
    "text[]": lambda v: ";".join(v) if v else "",
    "uuid[]": lambda v: ";".join(map(str, v)) if v else "",
    "jsonb": lambda v: "" if v is None else jsonutil.dumps_str(v),
}
"""A column's value as a CSV cell, by its field type (uuid, numbers: ``str``); written out per type
because a million rows of two dozen cells make every call count."""


def _plain(value: Any) -> str:
    return "" if value is None else str(value)


class Formatter:
    """Rows to the file's bytes, with the export's fields picked out. Reads the row itself, as
    ``spec.to_api`` would present it (a key is a column, renamed by ``api_names``), without building the
    object: the conversion was a third of an export's time."""

    def __init__(self, spec: ResourceSpec, format: str, fields: list[str]) -> None:
        self.format = format
        self.fields = fields
        column_of = {key: column for column, key in spec.api_names.items()}
        self.plan: list[tuple[str, str | None, Callable[[Any], str]]] = []
        for f in fields:
            _, dot, name = f.partition(".")
            if dot:
                self.plan.append(("custom_fields", name, _cell))
            else:
                column = column_of.get(f, f)
                kind = spec.field_type(column) or ("uuid" if column == "id" else "text")
                self.plan.append((column, None, _CELLS.get(kind, _plain)))

    def header(self) -> bytes:
        return self._csv([self.fields]) if self.format == "csv" else b""

    def rows(self, rows: list[Any]) -> bytes:
        plan = self.plan
        if self.format == "ndjson":
            return b"".join(jsonutil.dumps(self._object(r)) + b"\n" for r in rows)
        lines = [
            [cell((r[column] or {}).get(key)) if key else cell(r[column]) for column, key, cell in plan]
            for r in rows
        ]
        return self._csv(lines)

    def _object(self, row: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f, (column, key, _) in zip(self.fields, self.plan, strict=True):
            if key:
                out.setdefault("custom_fields", {})[key] = (row[column] or {}).get(key)
            else:
                out[f] = row[column]
        return out

    @staticmethod
    def _csv(lines: Iterable[list[str]]) -> bytes:
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows(lines)
        return out.getvalue().encode()


_STAMP = "'YYYY-MM-DD\"T\"HH24:MI:SS'"
_SQL_CELLS: dict[str, str] = {
    "boolean": "CASE WHEN {c} THEN 'true' WHEN NOT {c} THEN 'false' END",
    # as ``_timestamp``: UTC with a Z, microseconds only when there are some
    "timestamptz": (
        f"to_char({{c}} AT TIME ZONE 'UTC', {_STAMP}) || CASE WHEN date_trunc('second', {{c}}) = {{c}} "
        "THEN '' ELSE to_char({c} AT TIME ZONE 'UTC', '.US') END || 'Z'"
    ),
    "date": "to_char({c}, 'YYYY-MM-DD')",
    "text[]": "array_to_string({c}, ';')",
    "uuid[]": "array_to_string({c}, ';')",
    "jsonb": "{c}::text",
}
"""A column's CSV cell in SQL, by field type, as ``_CELLS`` writes it in Python (text, uuid and numbers:
their own text). A jsonb column's JSON has PostgreSQL's spacing (``{"a": 1}``)."""
_SQL_CUSTOM = (
    "CASE WHEN jsonb_typeof({v}) = 'array' AND NOT jsonb_path_exists({v}, 'strict $[*] ? "
    "(@.type() != \"string\")') THEN (SELECT string_agg(x, ';') FROM jsonb_array_elements_text({v}) x) "
    "ELSE {v} #>> '{{}}' END"
)
"""A custom field's value as ``_cell`` writes it: a string as it is, a list of strings joined by ``;``,
a number or boolean as JSON writes it, anything else as JSON."""


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def csv_copy(
    spec: ResourceSpec, fields: list[str], stmt: sql.Compiled, values: dict[str, Any]
) -> tuple[str, list[Any]]:
    """The query an export's ``COPY (...) TO STDOUT (FORMAT csv)`` runs, and its arguments: the filtered
    statement's rows, each field turned into its cell by SQL (custom field names are arguments, after the
    statement's own). The header line is ``Formatter.header``'s."""
    column_of = {key: column for column, key in spec.api_names.items()}
    args = stmt.args(values)
    cells: list[str] = []
    for f in fields:
        _, dot, name = f.partition(".")
        if dot:
            args.append(name)
            cells.append(_SQL_CUSTOM.format(v=f"(r.custom_fields -> ${len(args)}::text)"))
        else:
            column = column_of.get(f, f)
            kind = spec.field_type(column) or ("uuid" if column == "id" else "text")
            c = f"r.{_quote(column)}"
            cells.append(_SQL_CELLS.get(kind, "{c}::text").format(c=c))
    labels = [f"{cell} AS {_quote(f)}" for cell, f in zip(cells, fields, strict=True)]
    query = f"SELECT {', '.join(labels)} FROM ({stmt.text}) AS r ORDER BY r.id"
    return query, args


class ExportRun:
    def __init__(self, pool: Any, job: dict[str, Any], token: uuid.UUID) -> None:
        self.pool = pool
        self.job = job
        self.token = token
        self.ws: uuid.UUID = job["workspace_id"]
        self.id: uuid.UUID = job["id"]
        self.spec = OBJECTS[job["object_type"]]

    async def run(self) -> str:
        await repo.EXPORT_CLEAR.execute(self.pool, ws=self.ws, id=self.id)
        formatter = Formatter(self.spec, self.job["format"], self.job["fields"])
        buffer = bytearray(formatter.header())
        parts = rows = size = 0
        snapshot = {"isolation": "repeatable_read", "readonly": True}
        async with self.pool.acquire() as conn, conn.transaction(**snapshot):
            params, where = await conditions(
                conn, self.spec, self.ws, self.job["filter"], self.job["include_archived"]
            )
            stmt = _statement(self.spec, where)
            if self.job["format"] == "csv":
                query, args = csv_copy(self.spec, self.job["fields"], stmt, params.values)

                async def take(data: bytes) -> None:
                    nonlocal buffer, parts, size
                    buffer += data
                    if len(buffer) >= PART_BYTES:
                        await self._part(parts, bytes(buffer))
                        parts, size, buffer = parts + 1, size + len(buffer), bytearray()

                status = await conn.copy_from_query(query, *args, output=take, format="csv")
                rows = int(status.split()[-1])
            else:
                cursor = await conn.cursor(stmt.text, *stmt.args(params.values))
                while batch := await cursor.fetch(FETCH):
                    rows += len(batch)
                    buffer += formatter.rows(batch)
                    if len(buffer) >= PART_BYTES:
                        await self._part(parts, bytes(buffer))
                        parts, size, buffer = parts + 1, size + len(buffer), bytearray()
        if buffer:
            await self._part(parts, bytes(buffer))
            parts, size = parts + 1, size + len(buffer)
        done = await repo.EXPORTS.finish.fetchval(
            self.pool, ws=self.ws, id=self.id, token=self.token, status="succeeded", error=None, rows=rows,
            bytes=size, parts=parts,
        )  # fmt: skip
        return "succeeded" if done is not None else "lost"

    async def _part(self, n: int, data: bytes) -> None:
        await repo.EXPORTS.add_part.execute(self.pool, ws=self.ws, id=self.id, part=n, data=data)


async def run_once(pool: Any, lease: float, stop: asyncio.Event) -> bool:
    """Claim one export and run it; False when none was waiting (then expired exports are purged)."""
    outcome = await claim_and_run(
        pool, repo.EXPORTS, lease, stop, lambda job, token: ExportRun(pool, job, token).run()
    )
    if outcome is None:
        await repo.EXPORT_PURGE.execute(pool)
    return outcome is not None
