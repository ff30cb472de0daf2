"""Running an import: its file read in chunks, each chunk written through the batch upsert
(``resources.batch.run_items``, and so ``writes.apply``: rules, events and webhook deliveries included) in
one transaction with the job's progress and the chunk's row errors.

Overlap: while chunk n is written, chunk n+1 is read, mapped and validated (``_prepare``, which yields to
the event loop every ``SLICE`` rows so chunk n's round trips are not held up), then written beside it on a
second connection: its lookups, its rows and events built in Python and its statement run while chunk n's
statement runs in PostgreSQL. At most two chunks are in flight, and they commit in file order: a chunk's
last statement (its progress) waits for the chunk before it to commit. Two chunks go side by side only when
nothing of one can change what the other reads: no key (natural key, external id) in common, no custom
unique key, no companies made, not a dry run; otherwise the later one waits for the earlier one. Should
they meet all the same (an object one matched by external id and the other by email, a lock a trigger
takes), the later chunk rolls back and is written again alone once the earlier one committed: when its
statement lost a row to a concurrent change, or when the earlier chunk waits for a lock the later holds.

Exactly once: a chunk commits its records, its errors and ``rows_done`` together, and only while the
worker still holds the job's lease, the job is still running and the chunk before it is committed (its
progress statement checks all three, last). A worker killed mid-chunk leaves nothing of the chunks in
flight; whichever worker claims the job next reads the file again and starts after ``rows_done``. A
cancel rolls back the chunks in flight; nothing more is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg

from ..auth import Context, Principal
from ..errors import CRMError
from ..resources import batch
from ..resources.custom_fields import enforce
from ..resources.service import validate
from ..resources.spec import ResourceSpec
from . import custom_key, missing
from . import repository as repo
from .mapping import OBJECTS, Create, Mapper, effective
from .rows import CsvReader, FileError, Problem, Record, reader

log = logging.getLogger("crm_api.imports")

CHUNK = 500
"""Rows per chunk by default (``bulk_import_chunk_rows``), written in a fixed handful of statements. 2,000
cut those round trips by four but no wall time measurably under load (bench/README.md), while holding the
rows' key locks four times longer and redoing four times more after a kill."""
SLICE = 50
"""Rows ``_prepare`` maps and validates between two yields to the event loop."""
MAX_COLUMNS = 1000
WAIT_LOOK = 0.5
"""Seconds between two looks, while a chunk waits for the chunk before it to commit, at whether that one
waits for a lock this one holds."""
"""NDJSON keys remembered for ``columns`` and ``unmapped`` (the mapping itself applies to every key)."""


def actor_context(workspace_id: uuid.UUID, actor: str, request_id: str | None) -> Context:
    """The context of the request that made the job, so its events name the key (or the key's member) that
    asked, and ``"me"`` in the file names that member."""
    kind, _, value = actor.partition(":")
    if kind == "member":
        return Context(
            Principal(workspace_id, uuid.UUID(int=0), frozenset(), member_id=uuid.UUID(value)), request_id
        )
    return Context(Principal(workspace_id, uuid.UUID(value), frozenset()), request_id)


async def parts(pool: Any, ws: uuid.UUID, job: uuid.UUID, count: int) -> AsyncIterator[bytes]:
    """The file, one stored part at a time (each part is one short read)."""
    for n in range(count):
        data = await repo.IMPORTS.part_data(pool, ws, job, n)
        if data is None:
            raise FileError(f"Part {n} of the file is missing")
        yield data


@dataclass
class Prepared:
    """A chunk read, mapped and validated, its relations still to resolve (that reads the database)."""

    records: list[Record]
    problems: dict[int, list[Problem]]
    """Rows refused before validation (encoding, column count): nothing of them is written."""
    bodies: list[dict[str, Any] | None]
    """Each row's validated payload, with its relations' natural keys (``company.domain``) still in it;
    for a row that failed validation, only those keys (a relation that names nothing is its first
    problem, as when validation came after it)."""
    invalid: dict[int, list[Problem]]
    """Rows the create schema refused."""


@dataclass(eq=False)
class Flight:
    """A chunk being written: its task (True when committed, False when the job is no longer this
    worker's), the keys it writes, and its connection's backend once it has one."""

    keys: set[tuple[Any, ...]]
    task: asyncio.Task[bool] | None = None
    pid: int | None = None

    async def committed(self) -> bool:
        assert self.task is not None
        return await self.task


class _Retry(Exception):
    """A chunk written beside the one before it met that one: it rolls back, to be written again alone."""


class _Lost(Exception):
    """The job is no longer this worker's to write (cancelled, its lease passed on): roll back."""


@dataclass
class Tally:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0


class ImportRun:
    """One worker's run of one claimed job, from ``rows_done`` to the end or until it loses the job."""

    def __init__(
        self, pool: Any, job: dict[str, Any], token: uuid.UUID, lease: float, chunk: int = CHUNK
    ) -> None:
        self.pool = pool
        self.size = max(1, chunk)
        self.job = job
        self.token = token
        self.lease = lease
        self.ws: uuid.UUID = job["workspace_id"]
        self.id: uuid.UUID = job["id"]
        self.spec: ResourceSpec = OBJECTS[job["object_type"]]
        self.ctx = actor_context(self.ws, job["actor"], job["request_id"])
        self.text = job["format"] == "csv"
        self.key_definition: dict[str, Any] | None = None
        """The unique custom field the rows match on, when ``upsert_key`` names one."""
        self.tables = sorted({self.spec.table, *(r.table for r in self.spec.references)})
        """The tables a chunk writes or checks foreign keys against: their statistics are kept fresh."""
        self.chunks = 0
        self.next_statistics = 1
        """Their statistics are looked at before chunk 1, 2, ... 8, then every quarter of the chunks
        written so far (a table outgrows its statistics when it doubles, so this catches it in time)."""

    def _parts(self) -> AsyncIterator[bytes]:
        return parts(self.pool, self.ws, self.id, self.job["parts"])

    async def run(self) -> str:
        """Returns how the run ended: ``succeeded``, ``failed``, or ``lost`` (cancelled, or the lease
        passed to another worker: nothing more is written)."""
        try:
            columns = await self._count()
        except FileError as exc:
            await repo.IMPORTS.finish.fetchval(
                self.pool, ws=self.ws, id=self.id, token=self.token, status="failed", error=str(exc)
            )
            return "failed"
        if columns is None:
            return "lost"
        definitions = (
            await enforce.definitions(self.pool, self.ws, self.spec.object)
            if enforce.applies(self.spec)
            else {}
        )
        key_field = custom_key.field_of(self.job["upsert_key"])
        if key_field is not None:
            if (problem := custom_key.definition_problem(definitions, key_field)) is not None:
                await repo.IMPORTS.finish.fetchval(
                    self.pool, ws=self.ws, id=self.id, token=self.token, status="failed", error=problem
                )
                return "failed"
            self.key_definition = {**definitions[key_field], "name": key_field}
        mapper = Mapper(self.spec, effective(self.spec, self.job["mapping"], columns), definitions)
        done = self.job["rows_done"]
        chunk: list[Record] = []
        flights: list[Flight] = []  # the chunks in flight, in file order: two at most

        async def write(chunk: list[Record]) -> bool:
            prepared = await self._prepare(mapper, chunk)
            flight = Flight(self._keys(prepared))
            if len(flights) == 2 and not await flights.pop(0).committed():
                return False
            before = flights[-1] if flights else None
            if before is not None and not self._beside(before, flight):
                if not await flights.pop().committed():
                    return False
                before = None
            flight.task = asyncio.create_task(self._chunk(mapper, prepared, before, flight))
            flights.append(flight)
            return True

        try:
            async for records in reader(self.job["format"]).records(self._parts()):
                for record in records:
                    if record.number <= done:
                        continue  # settled by a committed chunk, before a restart
                    chunk.append(record)
                    if len(chunk) == self.size:
                        if not await write(chunk):
                            return "lost"
                        chunk = []
            if chunk and not await write(chunk):
                return "lost"
            while flights:
                if not await flights.pop(0).committed():
                    return "lost"
        finally:
            for flight in flights:  # stopped or failed: the chunks in flight go
                if flight.task is not None and not flight.task.done():
                    flight.task.cancel()
            for flight in flights:
                if flight.task is not None:
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await flight.task
        finished = await repo.IMPORTS.finish.fetchval(
            self.pool, ws=self.ws, id=self.id, token=self.token, status="succeeded", error=None
        )
        return "succeeded" if finished is not None else "lost"

    async def _count(self) -> list[str] | None:
        """Read the file once for its row count and columns (first run only); None if the job was lost."""
        if self.job["rows_total"] is not None:
            return list(self.job["columns"] or [])
        read = reader(self.job["format"])
        total = 0
        keys: dict[str, None] = {}
        if isinstance(read, CsvReader):
            total = await read.count(self._parts())
        else:  # NDJSON's columns are the keys its rows use: parsed to be seen
            async for records in read.records(self._parts()):
                total += len(records)
                if len(keys) < MAX_COLUMNS:
                    for record in records:
                        keys.update(dict.fromkeys(record.values))
        columns = read.header if read.header is not None else list(keys)[:MAX_COLUMNS]
        mapped = effective(self.spec, self.job["mapping"], columns)
        unmapped = [c for c in columns if c not in mapped and c not in self.job["mapping"]]
        kept = await repo.COUNTED.fetchval(
            self.pool, ws=self.ws, id=self.id, token=self.token, rows_total=total, columns=columns,
            unmapped=unmapped, lease=self.lease,
        )  # fmt: skip
        self.job.update(rows_total=total, columns=columns, unmapped=unmapped)
        return columns if kept is not None else None

    async def _prepare(self, mapper: Mapper, records: list[Record]) -> Prepared:
        """Map and validate a chunk's rows (CPU only), yielding to the event loop now and then."""
        prepared = Prepared(records, {}, [], {})
        schema, spec, relations = self.spec.create_schema, self.spec, mapper.relations
        for i, record in enumerate(records):
            if i % SLICE == 0:
                await asyncio.sleep(0)
            if record.problems:
                prepared.problems[i] = record.problems
                prepared.bodies.append(None)
                continue
            body = mapper.payload(record, self.text)
            keys = {t: body.pop(t) for t in relations if t in body}
            try:
                payload = spec.normalise(validate(schema, body, "/items/0"))
            except CRMError as exc:
                prepared.invalid[i] = _problems(mapper, exc.body(self.ctx.request_id or ""))
                payload = {}
            prepared.bodies.append({**payload, **keys})
        return prepared

    def _keys(self, prepared: Prepared) -> set[tuple[Any, ...]]:
        """The keys a chunk's rows match on or claim: its natural key values and external ids."""
        key = self.spec.natural_key
        keys: set[tuple[Any, ...]] = set()
        for body in prepared.bodies:
            if body is None:
                continue
            if key is not None and (value := body.get(key.field)) is not None:
                keys.add(("key", value))
            for source, value in (body.get("external_ids") or {}).items():
                keys.add(("external", source, str(value)))
        return keys

    def _beside(self, before: Flight, flight: Flight) -> bool:
        """Whether ``flight`` may be written while ``before`` is: nothing of one changes what the other
        reads (see the module's docstring)."""
        return self.key_definition is None and not before.keys & flight.keys

    async def _chunk(self, mapper: Mapper, prepared: Prepared, before: Flight | None, flight: Flight) -> bool:
        """Write one chunk with its progress, once the chunk ``before`` it (if still in flight) has
        committed; False if the job is no longer this worker's to write."""
        if not self.job["dry_run"]:
            self.chunks += 1
            if self.chunks >= self.next_statistics:  # a look at 1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 15...
                self.next_statistics = self.chunks + max(1, self.chunks // 4)
                await repo.refresh_statistics(self.pool, self.tables)
        deadlocks = 0
        while True:
            try:
                return await self._attempt(mapper, prepared, before, flight)
            except (_Retry, asyncpg.DeadlockDetectedError):
                # rolled back: written again alone, after the chunk before it (a deadlock between the
                # two, which PostgreSQL broke by failing this one, is a meeting too)
                log.info("import chunk from row %s written again", prepared.records[0].number)
                if before is not None:
                    if not await before.committed():
                        return False
                    before = None
                else:
                    deadlocks += 1
                    if deadlocks > 3:
                        raise
            except _Lost:
                return False

    async def _attempt(
        self, mapper: Mapper, prepared: Prepared, before: Flight | None, flight: Flight
    ) -> bool:
        records = prepared.records
        async with self.pool.acquire() as conn, conn.transaction():
            flight.pid = conn.get_server_pid()
            tally, errors = await self._write(conn, mapper, prepared, beside=before is not None)
            await repo.add_errors(conn, errors)
            if before is not None:
                await self._after(conn, before)
            held = await repo.PROGRESS.fetchval(
                conn, ws=self.ws, id=self.id, token=self.token, after=records[0].number - 1,
                rows_done=records[-1].number, lease=self.lease, created=tally.created,
                updated=tally.updated, unchanged=tally.unchanged, failed=tally.failed,
            )  # fmt: skip
            if held is None:
                raise _Lost  # cancelled, or the lease passed on: nothing of the chunk stays
        return True

    async def _after(self, conn: asyncpg.Connection, before: Flight) -> None:
        """Wait for the chunk before this one to commit; step back (``_Retry``) if it waits for a lock
        this chunk holds, and stop (``_Lost``) if it found the job no longer this worker's."""
        assert before.task is not None
        while True:
            done, _ = await asyncio.wait({before.task}, timeout=WAIT_LOOK)
            if done:
                if not before.task.result():
                    raise _Lost
                return
            if before.pid is not None and await conn.fetchval(repo.BLOCKS, conn.get_server_pid(), before.pid):
                raise _Retry

    async def _write(
        self, conn: asyncpg.Connection, mapper: Mapper, prepared: Prepared, beside: bool = False
    ) -> tuple[Tally, list[dict[str, Any]]]:
        """The chunk's rows through the batch, and its row errors. ``beside``: the chunk before it is
        still in flight, and a row lost to a concurrent change may be that chunk's doing (``_Retry``)."""
        records, problems = prepared.records, dict(prepared.problems)
        bodies = [None if b is None else dict(b) for b in prepared.bodies]  # resolve changes them
        create: Create | None = None
        if self.job["create_missing_companies"]:

            async def create(
                conn: asyncpg.Connection, spec: ResourceSpec, keys: list[str]
            ) -> dict[str, uuid.UUID | str] | None:
                return await missing.companies(conn, self.ctx, self.job["dry_run"], spec, keys)

        for i, problem in (await mapper.resolve(conn, self.ws, bodies, create)).items():
            problems[i] = [problem]
            bodies[i] = None
        for i, invalid in prepared.invalid.items():
            if i not in problems:
                problems[i] = invalid
                bodies[i] = None
        items = [i for i, body in enumerate(bodies) if body is not None]
        mode: batch.Mode = "upsert" if self.job["upsert_key"] else "create"
        try:
            async with conn.transaction():  # a savepoint: a chunk that fails whole is retried row by row
                outcomes = await self._batch(conn, [bodies[i] for i in items], mode, beside)
        except CRMError:
            outcomes = []
            for i in items:
                try:
                    async with conn.transaction():
                        outcomes += await self._batch(conn, [bodies[i]], mode, beside)
                except CRMError as exc:
                    outcomes.append(
                        ("failed", {"status": exc.status, "error": exc.body(self.ctx.request_id or "")})
                    )
        tally = Tally()
        for i, (outcome, result) in zip(items, outcomes, strict=True):
            if outcome == "failed":
                problems[i] = _problems(mapper, result["error"])
            else:
                setattr(tally, outcome, getattr(tally, outcome) + 1)
        tally.failed = len(problems)
        errors = [
            {
                "workspace_id": self.ws,
                "import_id": self.id,
                "row": records[i].number,
                "n": n,
                "column": p.column,
                "code": p.code,
                "message": p.message,
            }
            for i in sorted(problems)
            for n, p in enumerate(problems[i])
        ]
        return tally, errors

    async def _batch(
        self,
        conn: asyncpg.Connection,
        bodies: list[dict[str, Any] | None],
        mode: batch.Mode,
        beside: bool = False,
    ) -> list[tuple[str, dict[str, Any]]]:
        if self.key_definition is not None:

            async def write(
                some: list[dict[str, Any] | None], matched: dict[int, dict[str, Any]]
            ) -> list[tuple[str, dict[str, Any]]]:
                return await self._items(conn, some, mode, matched)

            return await custom_key.upsert(conn, self.spec, self.ctx, self.key_definition, bodies, write)
        return await self._items(conn, bodies, mode, None, beside)

    async def _items(
        self,
        conn: asyncpg.Connection,
        bodies: list[dict[str, Any] | None],
        mode: batch.Mode,
        matched: dict[int, dict[str, Any]] | None,
        beside: bool = False,
    ) -> list[tuple[str, dict[str, Any]]]:
        done = await batch.run_items(
            conn, self.spec, self.ctx, list(bodies), mode, dry_run=self.job["dry_run"], matched=matched,
            validated=True,
        )  # fmt: skip
        if beside and done.lost:
            raise _Retry
        out: list[tuple[str, dict[str, Any]]] = []
        for i, result in enumerate(done.results):
            if "error" in result:
                out.append(("failed", result))
            elif result["status"] == 201:
                out.append(("created", result))
            else:
                out.append(("unchanged" if i in done.unchanged else "updated", result))
        return out


def _problems(mapper: Mapper, error: dict[str, Any]) -> list[Problem]:
    """A batch item's problem as row errors, one per field it names, each at the file's column."""
    code = error.get("code", "invalid")
    fields = error.get("errors") or []
    if not fields:
        return [Problem(None, code, error.get("detail", ""))]
    out = []
    for f in fields:
        path = f["path"]
        if path.startswith("/items/"):
            path = "/" + path.split("/", 3)[3] if path.count("/") >= 3 else "/"
        out.append(Problem(mapper.column_of(path), code, f"{path.lstrip('/') or 'row'}: {f['message']}"))
    return out


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
