"""The bodies of ``/v1/imports`` and ``/v1/exports``, and the job objects they answer with."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypeAliasType

from ..resources.schemas import Filter, WriteModel

# enums are components of their own (one type each in generated clients)
BulkObjectType = TypeAliasType(
    "BulkObjectType", Literal["contacts", "companies", "deals", "activities", "tickets"]
)
BulkFormat = TypeAliasType("BulkFormat", Literal["csv", "ndjson"])
ImportStatus = TypeAliasType(
    "ImportStatus", Literal["uploading", "queued", "running", "succeeded", "failed", "cancelled"]
)
ExportStatus = TypeAliasType("ExportStatus", Literal["queued", "running", "succeeded", "failed"])

NAME = r"[A-Za-z0-9_.:-]{1,100}"
"""A custom field's name or an external id's source, as a column target, key or export field names it."""
Target = Annotated[
    str, Field(pattern=rf"^([a-z_]+(\.(email|domain))?|(custom_fields|external_ids)\.{NAME})$")
]
"""A mapping's target: a field, a relation's natural key, one custom field or external id (which of them
the object has, and which custom fields the workspace defines, the server checks: a 422 naming the column)."""
UpsertKey = Annotated[str, Field(pattern=rf"^(email|domain|(external_ids|custom_fields)\.{NAME})$")]
ExportField = Annotated[str, Field(pattern=rf"^([a-z_]+|custom_fields\.{NAME})$")]

MAX_PARTS = 100_000
"""An upload's parts, each up to the body limit (2 MiB by default): files to ~200 GB."""


class ImportCreate(WriteModel):
    object_type: BulkObjectType
    format: BulkFormat
    mapping: Annotated[dict[str, Target | None], Field(max_length=1000)] = Field(
        default_factory=dict,
        description="Column (a CSV header's name, an NDJSON key) to field: a field of the object, "
        "`custom_fields.<name>`, `external_ids.<source>`, or a related object by its natural key "
        "(`company.domain`, a deal's `contact.email`); null ignores the column. A column the mapping does "
        "not name goes to the field of its own name when there is one, else it is listed in "
        "`unmapped_columns`. Default: no mapping.",
    )
    upsert_key: UpsertKey | None = Field(
        None,
        description="How a row finds the object it updates: `email` (contacts), `domain` (companies), "
        "`external_ids.<source>`, or `custom_fields.<name>` naming a live unique custom field of the "
        "object; without it every row creates an object.",
    )
    dry_run: bool = Field(False, description="Judge every row and write nothing. Default: false.")
    create_missing_companies: bool = Field(
        True,
        description="A company named by a domain (`company.domain`) that no live company has is made, "
        "named after its domain, with its `company.created` event, in the same chunk as the rows naming "
        "it; false: those rows fail with `not_found`. A dry run makes none and judges the rows without "
        "the company. Default: true.",
    )
    file: str | None = Field(
        None,
        description="The whole file, for one that fits in a request; without it the job waits in "
        "`uploading` for its parts (`PUT /v1/imports/{id}/parts/{n}`) and `POST /v1/imports/{id}/start`.",
    )


class ImportUpload(BaseModel):
    """``multipart/form-data``: the import, then its file (streamed to storage as it arrives, so a file of
    any size up to the upload limit, 8 GiB by default, takes one request)."""

    model_config = ConfigDict(extra="forbid")

    job: ImportCreate = Field(
        description="The import as JSON (its part's `Content-Type: application/json`), without `file`"
    )
    file: bytes = Field(description="The file, after the job part")


class Import(BaseModel):
    object: Literal["import"]
    id: uuid.UUID
    object_type: BulkObjectType
    format: BulkFormat
    status: ImportStatus
    dry_run: bool
    create_missing_companies: bool
    upsert_key: str | None
    mapping: dict[str, str | None]
    columns: list[str] | None
    unmapped_columns: list[str] | None
    parts: int
    bytes: int
    rows_total: int | None
    rows_done: int
    created: int
    updated: int
    unchanged: int
    failed: int
    error: str | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None


class ImportPart(BaseModel):
    object: Literal["import_part"]
    part: int
    bytes: int


class RowError(BaseModel):
    row: int = Field(description="The record's number in the file, from 1 (CSV's header line not counted)")
    column: str | None
    code: str
    message: str


class RowErrorList(BaseModel):
    object: Literal["list"]
    data: list[RowError]
    has_more: bool
    next_cursor: str | None


class ExportCreate(WriteModel):
    object_type: BulkObjectType
    format: BulkFormat
    filter: Filter | None = Field(
        None, description="The search grammar (`POST /v1/<r>/search`). Default: all."
    )
    fields: Annotated[list[ExportField], Field(max_length=500)] | None = Field(
        None,
        description="Columns, in order: fields of the object and `custom_fields.<name>`. Default: every "
        "field of the object (custom fields as one JSON column in CSV).",
    )
    include_archived: bool = Field(False, description="Default: false.")


class Export(BaseModel):
    object: Literal["export"]
    id: uuid.UUID
    object_type: BulkObjectType
    format: BulkFormat
    status: ExportStatus
    filter: Filter | None
    fields: list[str]
    include_archived: bool
    rows: int
    bytes: int
    error: str | None
    created_at: dt.datetime
    finished_at: dt.datetime | None
    expires_at: dt.datetime


def import_api(row: Any) -> dict[str, Any]:
    keys = (
        "id", "object_type", "format", "status", "dry_run", "create_missing_companies", "upsert_key",
        "mapping", "columns", "parts", "bytes", "rows_total", "rows_done", "created", "updated", "unchanged",
        "failed", "error", "created_at", "started_at", "finished_at",
    )  # fmt: skip
    return {"object": "import", **{k: row[k] for k in keys}, "unmapped_columns": row["unmapped"]}


def export_api(row: Any) -> dict[str, Any]:
    keys = (
        "id", "object_type", "format", "status", "filter", "fields", "include_archived", "rows", "bytes",
        "error", "created_at", "finished_at", "expires_at",
    )  # fmt: skip
    return {"object": "export", **{k: row[k] for k in keys}}
