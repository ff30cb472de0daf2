"""Pydantic building blocks shared by every resource's schemas.

Named types (``TypeAliasType``) are one OpenAPI component each, referred to from every model that uses
them: generated clients get one ``CustomFields`` or ``LifecycleStage`` type, not a copy per model (and per
nullable field, which openapi-python-client names ``..._type_0``).
"""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    StrictBool,
    StringConstraints,
    WithJsonSchema,
    create_model,
)
from pydantic_core import PydanticCustomError
from typing_extensions import TypeAliasType

from ..timeutil import to_utc

MAX_INT = 2**63 - 1


def text_problem(value: str) -> str | None:
    """Why PostgreSQL (and orjson) cannot take ``value``, or None: NUL, or a lone surrogate (JSON allows
    ``"\\ud800"``, UTF-8 does not)."""
    if "\x00" in value:
        return "must not contain NUL characters"
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            return "must be valid Unicode (no lone surrogates)"
    return None


def _no_nul(value: str) -> str:
    problem = text_problem(value)
    if problem:
        raise ValueError(problem)
    return value


def _clean_json(value: Any, depth: int = 0) -> Any:
    if depth > 8:
        raise ValueError("nested too deeply (at most 8 levels)")
    if isinstance(value, str):
        return _no_nul(value)
    if isinstance(value, dict):
        return {_no_nul(k): _clean_json(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean_json(v, depth + 1) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
        raise ValueError("integer out of range")
    return value


def _clean_tags(value: list[str]) -> list[str]:
    seen: dict[str, None] = {}
    for tag in value:
        seen.setdefault(tag.strip(), None)
    return [t for t in seen if t]


def _utc(value: dt.datetime) -> dt.datetime:
    """Timestamps without an offset are taken as UTC; all are stored and returned in UTC."""
    return to_utc(value)


UtcDatetime = Annotated[dt.datetime, AfterValidator(_utc)]
Text = Annotated[str, StringConstraints(max_length=1000), AfterValidator(_no_nul)]
ShortText = Annotated[str, StringConstraints(max_length=255), AfterValidator(_no_nul)]
Tag = Annotated[str, StringConstraints(min_length=1, max_length=100), AfterValidator(_no_nul)]
Tags = Annotated[list[Tag], Field(max_length=100), AfterValidator(_clean_tags)]
CustomFields = TypeAliasType(
    "CustomFields",
    Annotated[
        dict[Annotated[str, StringConstraints(min_length=1, max_length=100)], Any],
        Field(
            max_length=200,
            description="Values by field name; checked against the object type's custom field definitions "
            "once it has one (free-form before)",
        ),
        AfterValidator(_clean_json),
    ],
)
ExternalIds = TypeAliasType(
    "ExternalIds",
    Annotated[
        dict[
            Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")],
            Annotated[str, StringConstraints(min_length=1, max_length=255), AfterValidator(_no_nul)],
        ],
        Field(
            max_length=20,
            description='The object\'s ids in other systems: {"<source>": "<id>"}',
            # a source that does not match the key pattern is refused, not free-form
            json_schema_extra={"additionalProperties": False},
        ),
    ],
)


def _decimal_string(value: Any) -> Any:
    """Money comes as a decimal string: a JSON number is read as a binary float (12.3 is not 12.30
    exactly, and large amounts lose cents), so one is refused rather than rounded."""
    if isinstance(value, str | decimal.Decimal):
        return value
    if isinstance(value, int | float):  # bool too
        raise PydanticCustomError("decimal_string", 'must be a decimal string such as "12.50", not a number')
    return value


Money = Annotated[
    decimal.Decimal,
    BeforeValidator(_decimal_string),
    Field(max_digits=20, decimal_places=2, ge=0, allow_inf_nan=False),
    AfterValidator(lambda v: v.quantize(decimal.Decimal("0.01"))),  # "12.5" is stored and shown as "12.50"
    WithJsonSchema({"type": "string", "pattern": r"^\d{1,18}(\.\d{1,2})?$", "examples": ["1250.00"]}),
]
MoneyOut = Annotated[decimal.Decimal, WithJsonSchema({"type": "string", "examples": ["1250.00"]})]
"""An amount as responses show it: a string ("1250.00"); ``MoneyOut | None`` keeps null allowed."""
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
Count = Annotated[int, Field(ge=0, le=2**53)]


def _member_ref(value: Any) -> uuid.UUID | str:
    # one error at the field itself, not one per branch of a union
    if value == "me" or isinstance(value, uuid.UUID):
        return value  # type: ignore[no-any-return]
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise PydanticCustomError("member_ref", 'must be a member id (a UUID) or "me"') from None


MemberRef = TypeAliasType(
    "MemberRef",
    Annotated[
        uuid.UUID | str,
        PlainValidator(_member_ref),
        WithJsonSchema(
            {
                "anyOf": [{"type": "string", "format": "uuid"}, {"type": "string", "const": "me"}],
                "description": 'An active member\'s id, or "me": the member the API key acts for',
            }
        ),
    ],
)


def _without_null(schema: dict[str, Any]) -> None:
    options = [o for o in schema.pop("anyOf", []) if o.get("type") != "null"]
    if len(options) == 1:
        schema.update(options[0])
    elif options:
        schema["anyOf"] = options


def not_clearable(**constraints: Any) -> Any:
    """An update field that may be left out but not cleared: the service refuses null ("name cannot be
    cleared"), so the spec shows no null. ``name: ShortText | None = not_clearable(min_length=1)``."""
    return Field(None, json_schema_extra=_without_null, **constraints)


class WriteModel(BaseModel):
    """Bodies of writes: unknown fields are refused, so a typo never silently drops data."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ReadModel(BaseModel):
    id: uuid.UUID
    created_at: dt.datetime
    updated_at: dt.datetime
    version: int
    archived_at: dt.datetime | None


Filter = TypeAliasType(
    "Filter",
    Annotated[
        dict[str, Any],
        Field(
            description='A condition of the filter grammar: {"field", "op", "value"}, or {"and": [...]}, '
            '{"or": [...]} or {"not": ...} of conditions',
            examples=[{"and": [{"field": "created_at", "op": "gte", "value": "2026-01-01T00:00:00Z"}]}],
        ),
    ],
)
BatchMode = TypeAliasType("BatchMode", Literal["create", "upsert"])
PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
Problem = Annotated[dict[str, Any], WithJsonSchema(PROBLEM_REF)]
"""A problem document (``errors.problem_schema``) inside a response body, such as a batch item's error."""


class SearchRequest(WriteModel):
    filter: Filter | None = None
    sort: list[str] | None = Field(
        None,
        max_length=1,
        examples=[["-created_at"]],
        description="One key: a sortable column or custom_fields.<name>, with - for descending",
    )
    limit: int = Field(50, ge=1, le=200)
    cursor: str | None = Field(None, max_length=2000)
    # strict: the spec says boolean, and 0 or "yes" is a mistake to name, not to guess at
    include_archived: StrictBool = False


class SegmentSearchRequest(SearchRequest):
    """The search body of the resources segments hold (contacts, companies, deals)."""

    segment_id: uuid.UUID | None = Field(None, description="Only members of this segment")


def list_model(read: type[BaseModel]) -> type[BaseModel]:
    fields: dict[str, Any] = {
        "object": (Literal["list"], ...),
        "data": (list[read], ...),  # type: ignore[valid-type]
        "has_more": (bool, ...),
        "next_cursor": (str | None, ...),
    }
    model: type[BaseModel] = create_model(read.__name__ + "List", **fields)
    return model


def batch_models(create: type[BaseModel], read: type[BaseModel]) -> tuple[type[BaseModel], type[BaseModel]]:
    """Items are checked one by one (a bad item fails alone), so the body takes raw objects; the spec
    still shows the create schema."""
    item = Annotated[dict[str, Any], WithJsonSchema({"$ref": f"#/components/schemas/{create.__name__}"})]
    request_fields: dict[str, Any] = {
        "items": (Annotated[list[item], Field(min_length=1, max_length=500)], ...),
        "mode": (BatchMode, "create"),
    }
    request: type[BaseModel] = create_model(
        read.__name__ + "BatchRequest", __config__=ConfigDict(extra="forbid"), **request_fields
    )
    result_fields: dict[str, Any] = {
        "status": (int, ...),
        "object": (read | None, None),
        "error": (Problem | None, None),
    }
    result: type[BaseModel] = create_model(read.__name__ + "BatchResult", **result_fields)
    response_fields: dict[str, Any] = {
        "object": (Literal["batch"], ...),
        "results": (list[result], ...),
    }
    response: type[BaseModel] = create_model(read.__name__ + "BatchResponse", **response_fields)
    return request, response
