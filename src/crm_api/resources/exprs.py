"""Statement pieces for statements shaped by a request (filters, lists, sorts).

A piece is a shape (a hashable key) and a builder of its SQLAlchemy Core expression. A statement made of
pieces is looked up by its shape in a ``sql.Shapes`` cache and built and compiled only on a miss: building
Core costs 100-300 us per statement, a shape key a few. Parameters are named in order (``p0``, ``p1``...)
by ``Params``; their names are part of the shape and their values are not.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ColumnElement,
    Date,
    DateTime,
    Interval,
    Numeric,
    Text,
    and_,
    bindparam,
    not_,
    or_,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.types import TypeEngine

from .. import sql
from .spec import ResourceSpec


class Expr:
    """A piece of a statement as a shape and a builder: equal shapes build equal SQL, so a statement is
    built from its pieces (and compiled) only the first time its shape is seen; ``build`` is not called
    when the shape is in the cache. Parameters are numbered in the shape, their values kept in ``Params``.
    """

    __slots__ = ("build", "key")

    def __init__(self, key: Hashable, build: Callable[[], ColumnElement[Any]]) -> None:
        self.key = key
        self.build = build


_SA_TYPES: dict[str, TypeEngine[Any]] = {
    "text": Text(),
    "uuid": UUID(as_uuid=True),
    "bigint": BigInteger(),
    "numeric": Numeric(),
    "boolean": Boolean(),
    "timestamptz": DateTime(timezone=True),
    "date": Date(),
    "jsonb": JSONB(),
    "interval": Interval(),
}


def sa_type(pg_type: str) -> TypeEngine[Any]:
    if pg_type.endswith("[]"):
        return ARRAY(_SA_TYPES[pg_type.removesuffix("[]")])
    return _SA_TYPES[pg_type]


class Params:
    """A statement's parameter values by name; ``add`` gives the parameter as a piece (``p3::numeric``)."""

    def __init__(self, **initial: Any) -> None:
        self.values: dict[str, Any] = dict(initial)

    def add(self, value: Any, pg_type: str) -> Expr:
        name = f"p{len(self.values)}"
        self.values[name] = value
        return Expr(("param", name, pg_type), lambda: bindparam(name, type_=sa_type(pg_type)))


def ref(name: str, build: Callable[[], ColumnElement[Any]]) -> Expr:
    return Expr(("ref", name), build)


def all_of(kind: str, parts: Sequence[Expr]) -> Expr:
    join = and_ if kind == "and" else or_
    return Expr((kind, tuple(p.key for p in parts)), lambda: join(*(p.build() for p in parts)))


def negate(part: Expr) -> Expr:
    return Expr(("not", part.key), lambda: not_(part.build()))


def column_ref(spec: ResourceSpec, name: str) -> Expr:
    """A column of the resource's table."""
    return ref(f"{spec.table}.{name}", lambda: sql.table(spec.table).c[name])


def workspace_param() -> Expr:
    return Expr(("param", "ws", "uuid"), lambda: bindparam("ws", type_=UUID(as_uuid=True)))
