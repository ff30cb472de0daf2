"""From a file's columns to a resource's fields: which targets a column may name, and one record turned
into the body of a write (``custom_fields.<name>``, ``external_ids.<source>``, and a related object named
by its natural key, ``company.domain``, resolved to its id for a whole chunk in one query).
"""

from __future__ import annotations

import re
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from ..activities.spec import ACTIVITIES
from ..companies.spec import COMPANIES
from ..contacts.spec import CONTACTS
from ..deals.spec import DEALS
from ..errors import CRMError
from ..resources import repository as repo
from ..resources.spec import REGISTRY, ResourceSpec
from ..tickets.spec import TICKETS
from .rows import Problem, Record

OBJECTS: dict[str, ResourceSpec] = {s.name: s for s in (CONTACTS, COMPANIES, DEALS, ACTIVITIES, TICKETS)}
"""What an import or export may name as its ``object_type`` (imported here, so a worker that serves no
routes has them registered too)."""

Create = Callable[[asyncpg.Connection, ResourceSpec, list[str]], Awaitable[dict[str, uuid.UUID | str] | None]]
"""Makes a relation's missing objects from their natural keys (``Mapper.resolve``); None when it makes
none for that resource."""

_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")
WHOLE = ("custom_fields", "external_ids")
"""Object fields a column cannot name whole (a CSV cell holds one value): one key of them it can."""
LIST_SEPARATOR = ";"
"""A CSV cell for a list field (``tags``) holds its items separated by this."""


@dataclass(frozen=True)
class Relation:
    column: str
    """The foreign key column the resolved id goes to (``company_id``)."""
    spec: ResourceSpec
    """The related resource, looked up by its natural key."""


def relations(spec: ResourceSpec) -> dict[str, Relation]:
    """``company.domain`` -> the relation, for each relation whose resource has a natural key."""
    out: dict[str, Relation] = {}
    for name, (column, resource) in spec.relations.items():
        related = REGISTRY[resource]
        if related.natural_key is not None:
            out[f"{name}.{related.natural_key.field}"] = Relation(column, related)
    return out


def target_problem(spec: ResourceSpec, target: str) -> str | None:
    """Why ``target`` is not a field a column may map to (None when it is)."""
    writable = set(spec.create_schema.model_fields)
    head, dot, rest = target.partition(".")
    if dot and head in WHOLE and head in writable:
        return None if _NAME.match(rest) else f"not a valid {head} key"
    if target in relations(spec):
        return None
    if target in writable and target not in WHOLE:
        return None
    known = sorted((writable - set(WHOLE)) | set(relations(spec)))
    return f"unknown field; expected one of {', '.join(known)}, custom_fields.<name> or external_ids.<source>"


def effective(spec: ResourceSpec, mapping: dict[str, str | None], columns: Sequence[str]) -> dict[str, str]:
    """The mapping applied to a file's columns: a column the mapping names goes where it says (nowhere for
    null), one it does not name goes to the field of its own name when there is one."""
    out: dict[str, str] = {}
    for column in columns:
        if column in mapping:
            target = mapping[column]
            if target is not None:
                out[column] = target
        elif target_problem(spec, column) is None:
            out[column] = column
    return out


def upsert_problem(spec: ResourceSpec, key: str) -> str | None:
    """``email``/``domain`` (the natural key), ``external_ids.<source>``, or ``custom_fields.<name>`` (which
    must also be a live unique custom field: ``custom_key``); None when it is one."""
    natural = spec.natural_key.field if spec.natural_key else None
    if key == natural:
        return None
    head, dot, name = key.partition(".")
    custom = "custom_fields" in spec.field_names
    if dot and (head == "external_ids" or (head == "custom_fields" and custom)) and _NAME.match(name):
        return None
    options = [natural] if natural else []
    options += ["external_ids.<source>", *(["custom_fields.<name>"] if custom else [])]
    return f"expected {', '.join(options[:-1])} or {options[-1]}"


class Mapper:
    """Records to payloads for one import: the effective mapping, the list fields, custom field types."""

    def __init__(self, spec: ResourceSpec, mapping: dict[str, str], definitions: dict[str, Any]) -> None:
        self.spec = spec
        self.mapping = mapping
        self.columns_of: dict[str, list[str]] = defaultdict(list)
        for column, target in mapping.items():
            self.columns_of[target].append(column)
            if target.startswith(WHOLE):
                self.columns_of[target.partition(".")[0]].append(column)
        self.lists = {f.name for f in spec.fields if f.type.endswith("[]")}
        self.kinds = {name: d["type"] for name, d in definitions.items() if d["archived_at"] is None}
        self.relations = relations(spec)
        for target, relation in self.relations.items():
            if target in self.columns_of:
                self.columns_of[relation.column] += self.columns_of[target]

    def column_of(self, path: str) -> str | None:
        """The file's column behind an error's field path (``/custom_fields/tier`` -> the column mapped to
        ``custom_fields.tier``)."""
        parts = path.strip("/").split("/")
        if len(parts) >= 2 and parts[0] in WHOLE:
            columns = self.columns_of.get(f"{parts[0]}.{parts[1]}") or self.columns_of.get(parts[0])
        else:
            columns = self.columns_of.get(parts[0])
        return columns[0] if columns else None

    def payload(self, record: Record, text: bool) -> dict[str, Any]:
        """The record as a write's body. ``text``: values came from CSV, so list fields are split and
        custom fields read per their definition's type; a value that does not read stays as it is, for
        the schema or the definition to refuse with its own message."""
        body: dict[str, Any] = {}
        for column, value in record.values.items():
            target = self.mapping.get(column)
            if target is None:
                continue
            head, dot, rest = target.partition(".")
            if dot and head in WHOLE:
                if head == "custom_fields" and text:
                    value = _typed(self.kinds.get(rest), value)
                elif head == "external_ids":
                    value = str(value)
                body.setdefault(head, {})[rest] = value
            elif text and target in self.lists and isinstance(value, str):
                body[target] = [v.strip() for v in value.split(LIST_SEPARATOR) if v.strip()]
            else:
                body[target] = value
        return body

    async def resolve(
        self,
        conn: asyncpg.Connection,
        workspace_id: uuid.UUID,
        bodies: list[dict[str, Any] | None],
        create: Create | None = None,
    ) -> dict[int, Problem]:
        """Replace each related object's natural key by its id, one query per relation for all bodies; a
        key that names no live object is the row's problem, unless ``create`` makes the missing objects
        of that relation (its answer: each key's new id, or why none was made; a key it leaves out, as a
        dry run does, leaves the row without the relation)."""
        problems: dict[int, Problem] = {}
        for target, relation in self.relations.items():
            key = relation.spec.natural_key
            assert key is not None
            wanted: dict[int, str] = {}
            for i, body in enumerate(bodies):
                if body is not None and target in body:
                    raw = body.pop(target)
                    try:
                        wanted[i] = key.normalise(str(raw))
                    except CRMError:
                        problems[i] = Problem(self._column(target), "invalid", f"not a valid {key.field}")
            if not wanted:
                continue
            rows = await repo.fetch_live_by_key(
                conn, relation.spec, workspace_id, key.field, sorted(set(wanted.values()))
            )
            ids: dict[str, uuid.UUID | str] = {r[key.field]: r["id"] for r in rows}
            made: dict[str, uuid.UUID | str] | None = None
            if create is not None and (missing := sorted(set(wanted.values()) - ids.keys())):
                made = await create(conn, relation.spec, missing)
                if made is not None:
                    ids.update(made)
            for i, value in wanted.items():
                body = bodies[i]
                assert body is not None
                found = ids.get(value)
                if isinstance(found, uuid.UUID):
                    body[relation.column] = found
                elif isinstance(found, str):
                    problems[i] = Problem(self._column(target), "invalid", found)
                elif made is None:
                    problems[i] = Problem(
                        self._column(target),
                        "not_found",
                        f"No live {relation.spec.object} has {key.field} {value}",
                    )
        return problems

    def _column(self, target: str) -> str | None:
        columns = self.columns_of.get(target)
        return columns[0] if columns else None


_TRUE = {"true", "yes", "1", "y", "t"}
_FALSE = {"false", "no", "0", "n", "f"}


def _typed(kind: str | None, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    if kind == "number":
        try:
            return int(value)
        except ValueError:
            try:
                return float(value)
            except ValueError:
                return value
    if kind == "boolean":
        lowered = value.strip().lower()
        return True if lowered in _TRUE else False if lowered in _FALSE else value
    if kind == "multi_enum":
        return [v.strip() for v in value.split(LIST_SEPARATOR) if v.strip()]
    return value
