"""``/v1/custom-fields``: a workspace's typed custom field definitions, one resource like any other.

``object_type``, ``name``, ``type`` and ``unique`` are fixed at creation: changing them would reinterpret
stored values. ``label``, ``required``, ``description`` and ``options`` (their labels; adding or removing
values) may change. Archiving keeps stored values readable on the records but no longer writable.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal, get_args

import asyncpg
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import Select, func, select, tuple_, types
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from typing_extensions import TypeAliasType

from .. import models, sql
from ..errors import Conflict, CRMError, FieldError, Unprocessable
from ..models.custom_fields import FIELD_TYPES, OBJECT_TYPES
from ..resources.custom_fields.cache import CACHE as DEFINITIONS_CACHE
from ..resources.schemas import ExternalIds, ReadModel, ShortText, Text, WriteModel, not_clearable
from ..resources.spec import Pair, QueryParam, ResourceSpec, fields_of, register

NAME = r"^[a-z][a-z0-9_]{0,62}$"
CustomFieldObjectType = TypeAliasType(
    "CustomFieldObjectType", Literal["contact", "company", "deal", "ticket"]
)
CustomFieldType = TypeAliasType(
    "CustomFieldType",
    Literal["text", "number", "decimal", "boolean", "date", "datetime", "enum", "multi_enum", "url", "email"],
)
assert set(get_args(CustomFieldObjectType.__value__)) == set(OBJECT_TYPES)
assert set(get_args(CustomFieldType.__value__)) == set(FIELD_TYPES)
ENUMS = ("enum", "multi_enum")
NOT_UNIQUE = ("boolean", "multi_enum")  # two values (or sets of them) cannot be per-record keys
TABLE_OF = {"contact": "contacts", "company": "companies", "deal": "deals", "ticket": "tickets"}


class CustomFieldOption(BaseModel):
    """An enum choice. Records store ``value``, so a new ``label`` never touches stored data."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    value: Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[^\x00]+$")]
    label: ShortText = Field(min_length=1)


Options = Annotated[list[CustomFieldOption], Field(max_length=500)]


class CustomFieldCreate(WriteModel):
    object_type: CustomFieldObjectType
    name: str = Field(pattern=NAME, description="The key in the records' custom_fields")
    label: ShortText = Field(min_length=1)
    type: CustomFieldType
    required: bool = False
    unique: bool = False
    options: Options = Field([], description="Required for enum and multi_enum; not allowed otherwise")
    description: Text | None = None
    external_ids: ExternalIds = {}


class CustomFieldUpdate(WriteModel):
    """Absent fields stay as they are. ``options`` is replaced whole; removed values stay readable on
    records that hold them, but cannot be written again."""

    label: ShortText | None = not_clearable(min_length=1)
    required: bool | None = not_clearable()
    options: Options | None = None
    description: Text | None = None
    external_ids: ExternalIds | None = None


class CustomField(ReadModel):
    """A typed key of ``custom_fields`` on one object type. Once an object type has a definition, writes
    to its records' ``custom_fields`` are checked: unknown keys, values of the wrong type or option, and
    missing required fields are 422s naming ``/custom_fields/<name>``; a unique field's value held by
    another live record is a 409, and a unique field is an upsert key
    (``PUT /v1/<resource>/by-custom-field/{name}/{value}``). Values are stored normalised (decimal as a
    string, date and datetime ISO 8601 in UTC, email lower-cased, enums as the option ``value``).
    Archived fields' values stay on the records and are returned, but are read-only until restored."""

    object: Literal["custom_field"]
    object_type: CustomFieldObjectType
    name: str
    label: str
    type: CustomFieldType
    required: bool
    unique: bool
    options: list[CustomFieldOption]
    description: str | None
    external_ids: ExternalIds


def _normalise(payload: dict[str, Any]) -> dict[str, Any]:
    out = dict(payload)
    if "unique" in out:  # "unique" is reserved in SQL: the column is is_unique
        out["is_unique"] = out.pop("unique")
    return out


def _check_shape(row: dict[str, Any]) -> Unprocessable | None:
    options = row["options"] or []
    if row["type"] in ENUMS and not options:
        return Unprocessable(
            f"A {row['type']} field needs options", [FieldError("/options", "at least one option")]
        )
    if row["type"] not in ENUMS and options:
        return Unprocessable(
            "Only enum and multi_enum fields have options", [FieldError("/options", "must be empty")]
        )
    values = [o["value"] for o in options]
    if len(set(values)) != len(values):
        return Unprocessable("Option values must differ", [FieldError("/options", "repeated value")])
    if row["is_unique"] and row["type"] in NOT_UNIQUE:
        return Unprocessable(
            f"A {row['type']} field cannot be unique", [FieldError("/unique", f"not for {row['type']}")]
        )
    return None


def _live_names() -> Select[Any]:
    """The live definitions holding any of the (``object_types[i]``, ``names[i]``) pairs."""
    cf = sql.table("custom_fields")
    wanted = (
        func.unnest(sql.param("object_types", ARRAY(types.Text)), sql.param("names", ARRAY(types.Text)))
        .table_valued("object_type", "name")
        .render_derived(name="wanted")
    )
    return select(cf.c.object_type, cf.c.name, cf.c.id).where(
        cf.c.workspace_id == sql.param("ws"),
        cf.c.archived_at.is_(None),
        tuple_(cf.c.object_type, cf.c.name).in_(select(wanted.c.object_type, wanted.c.name)),
    )


_LIVE_NAMES = sql.Query(_live_names)


@sql.shape
def _duplicates(table: str) -> Select[Any]:
    """A value of the custom field ``name`` that two live records of ``table`` share (one row, if any)."""
    t = sql.table(table)
    name = sql.param("name", types.Text)
    return (
        select(sql.const(1))
        .where(
            t.c.workspace_id == sql.param("ws"), t.c.archived_at.is_(None), t.c.custom_fields.has_key(name)
        )
        .group_by(t.c.custom_fields.op("->", return_type=JSONB())(name))
        .having(func.count() > sql.const(1))
        .limit(sql.const(1))
    )


def _goes_live(old: dict[str, Any] | None, new: dict[str, Any]) -> bool:
    return new["archived_at"] is None and (old is None or old["archived_at"] is not None)


async def _prepare(conn: asyncpg.Connection, ctx: Any, pairs: Sequence[Pair]) -> dict[int, CRMError]:
    """Shape rules; one live definition per (object type, name); a unique field only over unique data."""
    # this process's cached definitions go now, so a client's next request here sees the change even before
    # the NOTIFY of its commit arrives (only a concurrent write of the workspace could cache the old ones
    # again before the commit; the NOTIFY drops them: see cache.py)
    DEFINITIONS_CACHE.invalidate(ctx.workspace_id)
    failures: dict[int, CRMError] = {}
    for i, (_, new) in enumerate(pairs):
        error = _check_shape(new)
        if error is not None:
            failures[i] = error
    arriving = [(i, new) for i, (old, new) in enumerate(pairs) if i not in failures and _goes_live(old, new)]
    if not arriving:
        return failures
    rows = await _LIVE_NAMES.fetch(
        conn,
        ws=ctx.workspace_id,
        object_types=[new["object_type"] for _, new in arriving],
        names=[new["name"] for _, new in arriving],
    )
    taken = {(r["object_type"], r["name"]): r["id"] for r in rows}
    for i, new in arriving:
        key = (new["object_type"], new["name"])
        holder = taken.setdefault(key, new["id"])  # a batch's first item claims the name
        if holder != new["id"]:
            failures[i] = Conflict(
                f"A live {new['object_type']} field named {new['name']} exists ({holder})",
                [FieldError("/name", "already in use")],
            )
        elif new["is_unique"] and await _has_duplicates(conn, ctx, new):
            failures[i] = Conflict(
                f"Live {new['object_type']} records already share values of {new['name']}",
                [FieldError("/unique", "existing values are not unique")],
            )
    return failures


async def _has_duplicates(conn: asyncpg.Connection, ctx: Any, new: dict[str, Any]) -> bool:
    stmt = _duplicates(TABLE_OF[new["object_type"]])
    found = await stmt.fetchval(conn, ws=ctx.workspace_id, name=new["name"])
    return found is not None


CUSTOM_FIELDS = register(
    ResourceSpec(
        name="custom_fields",
        object="custom_field",
        searched="name and label",
        path="custom-fields",
        fields=fields_of(models.CustomFieldDefinition, unfilterable=("description",)),
        create_schema=CustomFieldCreate,
        update_schema=CustomFieldUpdate,
        read_schema=CustomField,
        normalise=_normalise,
        search_text=lambda row: f"{row.get('name') or ''} {row.get('label') or ''}".lower(),
        prepare=_prepare,
        sorts=("created_at", "updated_at"),
        query_params=(
            QueryParam("object_type", "object_type", "eq", "text"),
            QueryParam("name", "name", "eq", "text"),
            QueryParam("updated_after", "updated_at", "gt", "timestamptz"),
        ),
        defaults={"options": [], "external_ids": {}, "required": False, "is_unique": False},
        required=("label", "required"),
        api_names={"is_unique": "unique"},  # "unique" is reserved in SQL
    )
)
