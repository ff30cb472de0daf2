"""Statements: written in SQLAlchemy Core, compiled once per shape, run on the driver connection.

Repositories build statements against the models' ``Table`` objects, so a renamed column fails at import
or in mypy, not in production. Parameters are named ``bindparam``s. A statement is compiled for the asyncpg
dialect the first time it runs (``$n`` placeholders with casts, the parameter order remembered) and the
text is kept; each execution only orders its parameters and hands text and values to asyncpg, which keeps
its own prepared statement per text. That is the whole cost SQLAlchemy adds: building and compiling a Core
statement takes 100-300 us of CPU, its full execution path ~0.3 ms more per statement, against ~0.05-0.1 ms
for the driver (measured; see docs/ARCHITECTURE.md).

Values go to the driver as they are: uuid.UUID, datetime, Decimal, lists for arrays, and Python objects or
JSON text for jsonb (the codec installed in ``db.py``). SQLAlchemy's own bind processing is not used.

Three ways to hold a statement:
- ``Query(stmt)``: a fixed statement, module level.
- ``@shape`` on a function of hashable arguments returning a statement (``_select_page(spec_name, sort)``):
  one compiled statement per argument tuple.
- ``Shapes``: a bounded cache for statements whose shape comes from a request (the filter compiler keys it
  with the filter's shape and builds the Core statement only on a miss).
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any, ParamSpec

from sqlalchemy import BindParameter, ColumnElement, Table, bindparam, literal, literal_column
from sqlalchemy.dialects.postgresql.asyncpg import PGCompiler_asyncpg
from sqlalchemy.dialects.postgresql.asyncpg import dialect as _asyncpg_dialect
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.dml import Update
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.sql.visitors import iterate
from sqlalchemy.types import TypeEngine

from .models import Base


class _StatementCompiler(PGCompiler_asyncpg):
    """Constants written into a statement (``== "pending"``, ``.limit(50)``) render as SQL literals, as
    hand-written SQL has them: a partial index (``WHERE status = 'pending'``) serves a prepared statement
    only when the planner can see the constant, which a parameter hides from a generic plan."""

    def visit_bindparam(self, bindparam: Any, **kw: Any) -> Any:  # type: ignore[override]
        if (
            not bindparam.required
            and isinstance(bindparam.effective_value, str | int | bool)
            # a type with no literal form (jsonb) stays a parameter
            and bindparam.type.literal_processor(self.dialect) is not None
        ):
            kw["literal_binds"] = True
        return super().visit_bindparam(bindparam, **kw)  # type: ignore[no-untyped-call]


class _Dialect(_asyncpg_dialect):
    statement_compiler = _StatementCompiler


DIALECT: Dialect = _Dialect()  # type: ignore[no-untyped-call]

COMPILED: set[str] = set()
"""Every statement text compiled in this process (the Citus-readiness test reads it)."""

QUERIES: list[Query] = []
"""Every fixed statement (``Query``) defined, compiled or not: a test compiles them all."""

VOLATILE = frozenset({"gen_random_uuid", "random", "clock_timestamp", "timeofday", "uuid_generate_v4"})
"""Functions Citus cannot push into an UPDATE on a distributed table (``now()`` is fine: it is stable)."""

VOLATILE_UPDATES: list[str] = []
"""UPDATE statements compiled in this process that call one of ``VOLATILE`` (must stay empty)."""

P = ParamSpec("P")


class Compiled:
    """A statement's text for asyncpg and its parameters in placeholder order.

    Named ``bindparam``s without a value are the caller's to give. A literal written into the statement
    (``.limit(50)``, ``== "enabled"``) keeps the value it was built with, which is right for a statement
    built once per shape: the literal is part of the shape."""

    __slots__ = ("fixed", "names", "text")

    def __init__(self, stmt: ClauseElement) -> None:
        compiled: Any = stmt.compile(dialect=DIALECT)
        self.text: str = compiled.string
        self.names: tuple[str, ...] = tuple(compiled.positiontup or ())
        self.fixed: dict[str, Any] = {
            name: bind.effective_value for name, bind in _binds(compiled).items() if not bind.required
        }
        COMPILED.add(self.text)
        if volatile_in_update(stmt):
            VOLATILE_UPDATES.append(self.text)

    def args(self, params: Mapping[str, Any]) -> list[Any]:
        fixed = self.fixed
        try:
            if fixed:
                return [fixed[n] if n in fixed else params[n] for n in self.names]
            return [params[n] for n in self.names]
        except KeyError as exc:
            raise TypeError(f"missing statement parameter {exc}") from None

    async def fetch(self, conn: Any, /, **params: Any) -> list[Any]:
        return await conn.fetch(self.text, *self.args(params))  # type: ignore[no-any-return]

    async def fetchrow(self, conn: Any, /, **params: Any) -> Any:
        return await conn.fetchrow(self.text, *self.args(params))

    async def fetchval(self, conn: Any, /, **params: Any) -> Any:
        return await conn.fetchval(self.text, *self.args(params))

    async def execute(self, conn: Any, /, **params: Any) -> str:
        return await conn.execute(self.text, *self.args(params))  # type: ignore[no-any-return]


def _binds(compiled: Any) -> dict[str, BindParameter[Any]]:
    return {compiled.bind_names[b]: b for b in compiled.binds.values()}


class Query:
    """A fixed statement, compiled on first use (so importing a module compiles nothing)."""

    __slots__ = ("_build", "_compiled")

    def __init__(self, build: Callable[[], ClauseElement]) -> None:
        self._build = build
        self._compiled: Compiled | None = None
        QUERIES.append(self)

    @property
    def compiled(self) -> Compiled:
        if self._compiled is None:
            self._compiled = Compiled(self._build())
        return self._compiled

    async def fetch(self, conn: Any, /, **params: Any) -> list[Any]:
        return await self.compiled.fetch(conn, **params)

    async def fetchrow(self, conn: Any, /, **params: Any) -> Any:
        return await self.compiled.fetchrow(conn, **params)

    async def fetchval(self, conn: Any, /, **params: Any) -> Any:
        return await self.compiled.fetchval(conn, **params)

    async def execute(self, conn: Any, /, **params: Any) -> str:
        return await self.compiled.execute(conn, **params)


def shape(build: Callable[P, ClauseElement]) -> Callable[P, Compiled]:
    """Compile once per distinct (hashable) argument tuple."""

    @functools.cache
    def compiled(*args: P.args, **kwargs: P.kwargs) -> Compiled:
        return Compiled(build(*args, **kwargs))

    compiled.build = build  # type: ignore[attr-defined]  # the statement itself, for checks in tests
    return compiled  # type: ignore[return-value]


class Shapes:
    """A bounded cache of compiled statements keyed by a shape the caller computes."""

    def __init__(self, size: int = 512) -> None:
        self.size = size
        self._entries: OrderedDict[Hashable, Compiled] = OrderedDict()

    def get(self, key: Hashable, build: Callable[[], ClauseElement]) -> Compiled:
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = Compiled(build())
            if len(self._entries) > self.size:
                self._entries.popitem(last=False)
        else:
            self._entries.move_to_end(key)
        return entry


def param(name: str, type_: TypeEngine[Any] | type[TypeEngine[Any]] | None = None) -> BindParameter[Any]:
    """A named parameter; give the type when the column beside it does not imply one."""
    return bindparam(name, type_=type_)


def volatile_in_update(stmt: ClauseElement) -> bool:
    """Whether an UPDATE in the statement (a CTE's too) calls a volatile function in its SET or WHERE.
    Read from the statement's structure, not its text: the write statement has an UPDATE and, in another
    CTE, an INSERT that may call ``gen_random_uuid()``, which Citus allows."""
    for element in iterate(stmt):
        if isinstance(element, Update):
            parts = [*(element._values or {}).values(), *(element._where_criteria or ())]
            for part in parts:
                for inner in iterate(part):
                    if isinstance(inner, FunctionElement) and getattr(inner, "name", "") in VOLATILE:
                        return True
    return False


def table(name: str) -> Table:
    """A model's table by name (``Model.__table__`` is typed as any FROM clause)."""
    return Base.metadata.tables[name]


def columns(names: Iterable[str], table: Any) -> list[ColumnElement[Any]]:
    return [table.c[n] for n in names]


def const(
    value: str | int, type_: TypeEngine[Any] | type[TypeEngine[Any]] | None = None
) -> ColumnElement[Any]:
    """A constant written into the statement's text, where ``literal()`` would send it as a parameter.

    For constants the planner must see: a partial index (``WHERE status = 'pending'``) serves a query only
    when the query's text implies the index's predicate, and a prepared statement's cached generic plan
    knows nothing of parameter values. Rendered by SQLAlchemy's own literal quoting."""
    rendered = literal(value).compile(dialect=DIALECT, compile_kwargs={"literal_binds": True}).string
    return literal_column(rendered, type_ if type_ is not None else literal(value).type)
