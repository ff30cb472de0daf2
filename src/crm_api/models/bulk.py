"""Bulk jobs: imports (a file in parts, its progress and its row errors) and exports (a snapshot written to
parts). Files live here, in PostgreSQL, so a deployment needs nothing else to hold them."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base

IMPORT_STATUSES = ("uploading", "queued", "running", "succeeded", "failed", "cancelled")
EXPORT_STATUSES = ("queued", "running", "succeeded", "failed")


class _Job:
    """What both kinds of job share: who asked, the state, and the worker lease."""

    workspace_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    object_type: Mapped[str] = mapped_column(Text, nullable=False)
    format: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[str] = mapped_column(Text, nullable=False)
    actor: Mapped[str] = mapped_column(Text, nullable=False)
    """The events of the job's writes name who asked for it (``api_key:<id>``, or ``member:<id>`` for a key
    acting for a member)."""
    request_id: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    """Why the whole job failed (a file with no header), not a row's error."""
    lease_token: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    """The worker holding the job: a chunk commits only while its token is still the job's."""
    lease_until: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class ImportJob(_Job, Base):
    __tablename__ = "imports"
    __table_args__ = (
        ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        Index("ix_imports_list", "workspace_id", "created_at", "id"),
        # the workers' claim: jobs waiting for a worker, or whose worker's lease may have lapsed
        Index("ix_imports_pending", "lease_until", postgresql_where=text("status IN ('queued', 'running')")),
    )

    mapping: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    upsert_key: Mapped[str | None] = mapped_column(Text)
    dry_run: Mapped[bool] = mapped_column(Boolean, nullable=False)
    create_missing_companies: Mapped[bool] = mapped_column(
        Boolean, nullable=False, server_default=text("true")
    )
    parts: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    bytes: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default=text("0"))
    columns: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    unmapped: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    rows_total: Mapped[int | None] = mapped_column(Integer)
    rows_done: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    """Rows read and settled by committed chunks: a resumed job starts reading after them."""
    created: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    updated: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    unchanged: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    failed: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))


class ImportPart(Base):
    """A piece of an import's file, in upload order; the worker reads them one at a time."""

    __tablename__ = "import_parts"
    __table_args__ = (
        ForeignKeyConstraint(
            ["workspace_id", "import_id"], ["imports.workspace_id", "imports.id"], ondelete="CASCADE"
        ),
    )

    workspace_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    import_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    part: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)


class ImportRowError(Base):
    """One problem with one row of an import's file (a row may have several: one per field)."""

    __tablename__ = "import_errors"
    __table_args__ = (
        ForeignKeyConstraint(
            ["workspace_id", "import_id"], ["imports.workspace_id", "imports.id"], ondelete="CASCADE"
        ),
    )

    workspace_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    import_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    row: Mapped[int] = mapped_column(Integer, primary_key=True)
    n: Mapped[int] = mapped_column(Integer, primary_key=True)
    column: Mapped[str | None] = mapped_column(Text)
    code: Mapped[str] = mapped_column(Text, nullable=False)
    message: Mapped[str] = mapped_column(Text, nullable=False)


class ExportJob(_Job, Base):
    __tablename__ = "exports"
    __table_args__ = (
        ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        Index("ix_exports_list", "workspace_id", "created_at", "id"),
        Index("ix_exports_pending", "lease_until", postgresql_where=text("status IN ('queued', 'running')")),
        Index("ix_exports_expires", "expires_at"),
    )

    filter: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    fields: Mapped[list[str]] = mapped_column(ARRAY(Text), nullable=False)
    include_archived: Mapped[bool] = mapped_column(Boolean, nullable=False)
    rows: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default=text("0"))
    bytes: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default=text("0"))
    parts: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class ExportPart(Base):
    __tablename__ = "export_parts"
    __table_args__ = (
        ForeignKeyConstraint(
            ["workspace_id", "export_id"], ["exports.workspace_id", "exports.id"], ondelete="CASCADE"
        ),
    )

    workspace_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    export_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    part: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
