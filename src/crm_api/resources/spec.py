"""A resource described as data, so one repository, service and router serve every resource."""

from __future__ import annotations

import operator
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import Boolean, Date, DateTime, Integer, Numeric, String, Uuid
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.types import TypeEngine

from ..models.base import Base

FieldType = Literal[
    "text", "uuid", "bigint", "numeric", "boolean", "timestamptz", "date", "text[]", "uuid[]", "jsonb"
]
"""The PostgreSQL types a filter compares a field as; the filter compiler casts parameters to them."""
Operator = Literal[
    "eq", "neq", "lt", "lte", "gt", "gte", "in", "nin", "contains", "starts_with", "is_null", "between"
]
"""The filter grammar's comparison operators (``POST /search``)."""
QueryOp = Literal["eq", "contains", "gt", "lt", "gte", "lte", "flag", "segment"]
"""How a query parameter compares: ``contains`` is "the array has", ``flag`` a fixed condition,
``segment`` "is a member of the segment with this id" (``segment_id=``)."""

Pair = tuple[dict[str, Any] | None, dict[str, Any]]
"""(the row before the change or None for a create, the row after it)"""
Prepare = Callable[[Any, Any, Sequence[Pair]], Awaitable[dict[int, Any]]]
"""``async prepare(conn, ctx, pairs) -> {index: CRMError}``"""

SYSTEM_COLUMNS = ("workspace_id", "id", "created_at", "updated_at", "version", "archived_at")


@dataclass(frozen=True)
class FieldSpec:
    name: str
    type: FieldType
    filterable: bool = True
    """Usable in ``POST /search`` filters."""


# integer and bigint columns alike compare as bigint: a filter value may be any 64-bit integer
_SCALAR_TYPES: tuple[tuple[type[TypeEngine[Any]], FieldType], ...] = (
    (String, "text"),
    (Uuid, "uuid"),
    (Integer, "bigint"),
    (Numeric, "numeric"),
    (Boolean, "boolean"),
    (Date, "date"),
    (JSONB, "jsonb"),
)
_ARRAY_TYPES: dict[FieldType, FieldType] = {"text": "text[]", "uuid": "uuid[]"}


def field_type_of(column_type: TypeEngine[Any]) -> FieldType:
    """The field type of a SQLAlchemy column type. A column the filters could not compare is an error at
    import, not a wrong cast at query time."""
    if isinstance(column_type, ARRAY):
        array = _ARRAY_TYPES.get(field_type_of(column_type.item_type))
        if array is not None:
            return array
    elif isinstance(column_type, DateTime):
        if column_type.timezone:
            return "timestamptz"
    else:
        for sa_type, name in _SCALAR_TYPES:
            if isinstance(column_type, sa_type):
                return name
    raise TypeError(f"no field type for the column type {column_type!r}")


def element_type(array: FieldType) -> FieldType:
    """``text[]`` -> ``text``; a scalar type is its own element."""
    return next((scalar for scalar, a in _ARRAY_TYPES.items() if a == array), array)


def fields_of(model: type[Base], *, unfilterable: Iterable[str] = ()) -> tuple[FieldSpec, ...]:
    """A resource's fields as its model declares them: every column but the system columns and
    ``search_text``, in table order, typed from the column types. ``jsonb`` fields are never filterable,
    nor those named in ``unfilterable``."""
    table = Base.metadata.tables[model.__tablename__]
    closed = set(unfilterable)
    unknown = closed - set(table.columns.keys())
    if unknown:
        raise ValueError(f"{table.name} has no column {', '.join(sorted(unknown))}")
    fields = []
    for column in table.columns:
        if column.name in SYSTEM_COLUMNS or column.name == "search_text":
            continue
        pg_type = field_type_of(column.type)
        fields.append(FieldSpec(column.name, pg_type, pg_type != "jsonb" and column.name not in closed))
    return tuple(fields)


@dataclass(frozen=True)
class QueryParam:
    """A list filter given as a query parameter: ``?email=``, ``?tag=``, ``?updated_after=``."""

    name: str
    column: str
    op: QueryOp
    type: FieldType
    description: str = ""
    """Shown in the OpenAPI spec."""
    when: tuple[str, str] = ("", "")
    """For ``op="flag"`` (``?open=true``): the fixed SQL conditions for true and for false."""


@dataclass(frozen=True)
class NaturalKey:
    field: str
    path: str  # "by-email"
    normalise: Callable[[str], str]
    compared: str = ""
    """How values are compared, for the docs ("lower-cased and trimmed")."""


@dataclass(frozen=True)
class Reference:
    """A foreign key to another resource, checked before a write so a bad id is a 422 naming it."""

    column: str
    table: str


IncludeKind = Literal["one", "array", "reverse"]
"""How a related object is found: ``one``, the id in a column here (``company_id``); ``array``, the ids in a
``uuid[]`` column here (``contact_ids``); ``reverse``, the rows there whose column holds this id (a
company's contacts)."""

Loader = Callable[[Any, Any, Sequence[Any]], Awaitable[dict[Any, dict[str, Any]]]]
"""``async load(conn, workspace_id, ids) -> {id: object as the API shows it}``, in one statement."""


@dataclass(frozen=True)
class Include:
    """A relation ``include=<name>`` adds to the object: a field named ``name`` holding the related object
    (``one``) or ``{"data": [...], "has_more"}`` (``array``, ``reverse``). The target is named, and looked
    up when used (so two resources may name each other): a resource in ``REGISTRY``, or objects that are no
    resource (pipelines, stages) by their loader in ``LOADERS`` and their OpenAPI ``component``."""

    name: str
    column: str
    target: str
    kind: IncludeKind = "one"
    component: str = ""
    """The OpenAPI component of a loader's objects (a resource's is its read schema)."""


@dataclass(eq=False)  # compared and hashed by identity: compiled statements are cached per spec
class ResourceSpec:
    name: str  # "contacts": path segment, table and scope prefix
    object: str  # "contact"
    fields: tuple[FieldSpec, ...]
    create_schema: type[BaseModel]
    update_schema: type[BaseModel]
    read_schema: type[BaseModel]
    normalise: Callable[[dict[str, Any]], dict[str, Any]]
    """Canonical form of a payload (lower-cased email, bare domain); may raise ``Unprocessable``. Idempotent:
    ``writes.apply`` runs it on every change, after callers that look a natural key up have run it too."""
    search_text: Callable[[dict[str, Any]], str]
    natural_key: NaturalKey | None = None
    finalise: Callable[[dict[str, Any] | None, dict[str, Any]], None] | None = None
    """Derive fields from the change (old row or None for a create, new row edited in place); runs after
    ``prepare`` (see ``writes`` for the order)."""
    prepare: Prepare | None = None
    """Async, before every write (create, update, upsert, batch, a stage removal's moves): derive fields that
    need the database (a deal's status from its stage's kind), editing each new row in place. Returns
    failures by pair index; those rows are not written. ``writes.apply`` calls it for every writer of client
    changes, so no path can skip a rule (upkeep with ``rules=False`` skips it: see ``writes``)."""
    derived_events: Callable[[dict[str, Any] | None, dict[str, Any]], list[str]] | None = None
    """Event actions a change implies beside created/updated (``["stage_changed", "won"]``), each written
    as ``<object>.<action>`` with the same object and previous values, in the same statement. Each such
    type is listed in ``events/types.py`` (``derived=True``)."""
    after_write: Prepare | None = None
    """Async, after a write and in its transaction, with the (old, new) pairs that were written: upkeep of
    other objects that a change implies (a contact's lifetime value when a deal is won). ``writes.apply``
    calls it for every writer, upkeep included. Its return value is ignored."""
    upkeep_needed: Callable[[Sequence[Pair]], bool] | None = None
    """Whether ``after_write`` has anything to do for these (old, new) pairs, judged before the write: when it
    has not, a one-statement write runs without BEGIN and COMMIT (two round trips). None: it always has."""
    references: tuple[Reference, ...] = ()
    member_columns: tuple[str, ...] = ()
    """Columns that hold a member (``owner_id``): every write that sets or changes one must name an active
    member, and ``"me"`` names the key's member (``resources/owners.py``)."""
    sorts: tuple[str, ...] = ("created_at", "updated_at")
    nullable_sorts: tuple[str, ...] = ()
    """Sorts on columns that may be null: pages walk the nulls too (last ascending, first descending)."""
    query_params: tuple[QueryParam, ...] = ()
    relations: dict[str, tuple[str, str]] = field(default_factory=dict)
    """``company`` -> (fk column here, resource name there): one hop allowed in filters."""
    includes: tuple[Include, ...] = ()
    """What ``include=`` may add to the objects of a get, list or search (``resources/includes.py``)."""
    defaults: dict[str, Any] = field(default_factory=dict)
    """Values a null or absent field takes (``tags`` -> ``[]``)."""
    required: tuple[str, ...] = ()
    """Fields that can never be null."""
    path: str | None = None
    """The URL segment when it differs from ``name`` (``sla-policies`` for the table ``sla_policies``)."""
    api_names: dict[str, str] = field(default_factory=dict)
    """Columns the API names otherwise (``is_unique`` -> ``unique``, a reserved word in SQL)."""
    called: tuple[str, str] = ("", "")
    """What the docs call one object, with its article, and several: ("an SLA policy", "SLA policies").
    Unset: "a" and ``object``, and ``name``, with spaces for underscores."""
    searched: str = ""
    """What ``q=`` searches, for the docs ("names and email")."""
    money: tuple[str, ...] = ()
    """Number fields that are amounts of money in the row's ``currency``: never summed across currencies (an
    aggregate of one must group by ``currency``)."""

    @property
    def table(self) -> str:
        return self.name

    @property
    def url_segment(self) -> str:
        return self.path or self.name

    # cached: every read converts every row through these (a spec's fields never change after it is made;
    # dataclasses.replace makes a new spec)
    @cached_property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    @cached_property
    def columns(self) -> tuple[str, ...]:
        return (*SYSTEM_COLUMNS, *self.field_names, "search_text")

    @cached_property
    def api_layout(self) -> tuple[tuple[str, str], ...]:
        """``to_api``'s (key, column) pairs after ``id`` and ``object``, in the order clients see them."""
        renamed = self.api_names
        return (
            *((n, n) for n in self.field_names if n not in renamed),
            *((n, n) for n in ("created_at", "updated_at", "version", "archived_at")),
            *((key, column) for column, key in renamed.items()),  # last, where clients have always found them
        )

    @cached_property
    def _api_keys(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """``api_layout`` as its keys and its columns, for ``to_api``."""
        return tuple(k for k, _ in self.api_layout), tuple(c for _, c in self.api_layout)

    @cached_property
    def record_to_api(self) -> Callable[[Any], dict[str, Any]]:
        """``to_api`` of a driver record whose first columns are ``columns``, in that order (a statement
        selecting ``sql.columns(spec.columns, t)``, with anything else after them): its values read by
        position, all at once, into pairs made and stored in C (a list page's 51 rows read by name, through
        a dict copy each, cost a fifth of its CPU). The same keys in the same order as ``to_api``."""
        where = {c: i for i, c in enumerate(self.columns)}
        at_id, kind = where["id"], self.object
        keys, columns = self._api_keys
        values = operator.itemgetter(*(where[c] for c in columns))

        def convert(record: Any) -> dict[str, Any]:
            out: dict[str, Any] = {"id": record[at_id], "object": kind}
            out.update(zip(keys, values(record), strict=False))  # itemgetter: exactly one per key
            return out

        return convert

    @property
    def one(self) -> str:
        """One object as the docs call it, with its article: "a contact", "an SLA policy"."""
        return self.called[0] or "a " + self.object.replace("_", " ")

    @property
    def noun(self) -> str:
        """One object as the docs call it, without its article: "contact", "SLA policy"."""
        return self.one.split(" ", 1)[1]

    @property
    def many(self) -> str:
        """Several objects as the docs call them: "contacts", "SLA policies"."""
        return self.called[1] or self.name.replace("_", " ")

    def field_type(self, name: str) -> FieldType | None:
        for f in self.fields:
            if f.name == name:
                return f.type
        if name in ("id",):
            return "uuid"
        if name in ("created_at", "updated_at", "archived_at"):
            return "timestamptz"
        if name == "version":
            return "bigint"
        return None

    def to_api(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """The object as the API returns it, from a full row: the one row-to-API conversion of every
        resource (responses, batch results, event payloads, merges)."""
        out: dict[str, Any] = {"id": row["id"], "object": self.object}
        keys, columns = self._api_keys
        out.update(zip(keys, map(row.__getitem__, columns), strict=True))  # the pairs made and stored in C
        return out


REGISTRY: dict[str, ResourceSpec] = {}
LOADERS: dict[str, Loader] = {}
"""Objects that are no resource but may be included (``Include.target``), by name: registered by the
package that owns them, which the resources naming them may not import."""


def register(spec: ResourceSpec) -> ResourceSpec:
    REGISTRY[spec.name] = spec
    return spec


def register_loader(name: str, load: Loader) -> Loader:
    LOADERS[name] = load
    return load
