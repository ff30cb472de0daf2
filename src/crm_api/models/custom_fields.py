"""Custom field definitions: the typed keys a workspace allows in an object's ``custom_fields``."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKeyConstraint,
    Index,
    Numeric,
    PrimaryKeyConstraint,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, RecordMixin

OBJECT_TYPES = ("contact", "company", "deal", "ticket")
FIELD_TYPES = (
    "text",
    "number",
    "decimal",
    "boolean",
    "date",
    "datetime",
    "enum",
    "multi_enum",
    "url",
    "email",
)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class CustomFieldDefinition(RecordMixin, Base):
    __tablename__ = "custom_fields"
    __table_args__ = (
        ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        CheckConstraint(_in("object_type", OBJECT_TYPES), name="object_type"),
        CheckConstraint(_in("type", FIELD_TYPES), name="type"),
        CheckConstraint("name ~ '^[a-z][a-z0-9_]{0,62}$'", name="name"),
        # one live definition per key and object type; archived ones may share it
        Index(
            "uq_custom_fields_name_live",
            "workspace_id",
            "object_type",
            "name",
            unique=True,
            postgresql_where=text("archived_at IS NULL"),
        ),
        Index("ix_custom_fields_created", "workspace_id", "created_at", "id"),
        Index("ix_custom_fields_updated", "workspace_id", "updated_at", "id"),
        Index("ix_custom_fields_object_type", "workspace_id", "object_type", "name"),
    )

    object_type: Mapped[str] = mapped_column(Text, nullable=False)
    name: Mapped[str] = mapped_column(Text, nullable=False)
    label: Mapped[str] = mapped_column(Text, nullable=False)
    type: Mapped[str] = mapped_column(Text, nullable=False)
    required: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    # "unique" is reserved in SQL; the API calls it ``unique``
    is_unique: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    options: Mapped[list[dict[str, str]]] = mapped_column(JSONB, nullable=False, server_default=text("'[]'"))
    """``[{"value": "gold", "label": "Gold"}]`` for enum and multi_enum; values are what records store."""
    description: Mapped[str | None] = mapped_column(Text)
    external_ids: Mapped[dict[str, object]] = mapped_column(
        JSONB, nullable=False, server_default=text("'{}'")
    )
    search_text: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("''"))


class CustomFieldValue(Base):
    """One typed custom field value of one record, kept by triggers (migration 0011) so that range filters
    and sorts on a custom field are btree range scans; the records' own tables carry no per-field index.

    number/decimal go to ``num``, datetime to ``ts``, text/date/enum/email/url to ``txt`` (its first 500
    characters, in "C" order, which sorts ISO dates correctly and keeps keys under btree's size limit).
    Booleans and multi_enum are not indexed. Only live definitions' values are here."""

    __tablename__ = "custom_field_values"
    __table_args__ = (
        PrimaryKeyConstraint("workspace_id", "object_type", "field", "object_id"),
        ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        CheckConstraint(_in("object_type", OBJECT_TYPES), name="object_type"),
        Index("ix_custom_field_values_num", "workspace_id", "object_type", "field", "num", "object_id"),
        Index("ix_custom_field_values_txt", "workspace_id", "object_type", "field", "txt", "object_id"),
        Index("ix_custom_field_values_ts", "workspace_id", "object_type", "field", "ts", "object_id"),
    )

    workspace_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    object_type: Mapped[str] = mapped_column(Text)
    field: Mapped[str] = mapped_column(Text)
    object_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    num: Mapped[decimal.Decimal | None] = mapped_column(Numeric)
    txt: Mapped[str | None] = mapped_column(Text(collation="C"))
    ts: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
