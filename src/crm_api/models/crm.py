"""Contacts, companies and the external-id registry that keeps ``external_ids`` unique."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ColumnElement,
    DateTime,
    ForeignKeyConstraint,
    Index,
    Integer,
    Numeric,
    Text,
    func,
    literal,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, RecordMixin

LIFECYCLE_STAGES = (
    "subscriber",
    "lead",
    "marketing_qualified",
    "sales_qualified",
    "opportunity",
    "customer",
    "evangelist",
    "other",
)


def _tags() -> Mapped[list[str]]:
    return mapped_column(ARRAY(Text), nullable=False, server_default=text("'{}'"))


def _jsonb() -> Mapped[dict[str, object]]:
    return mapped_column(JSONB, nullable=False, server_default=text("'{}'"))


def _standard_indexes(table: str, created_include: tuple[str, ...] = ()) -> tuple[Index, ...]:
    """Indexes behind the sorts and filters every resource offers. Equality filters carry the default sort
    (created_at, id) so a filtered page is an index range, not a sort of every match. ``created_include``:
    columns the default sort's index carries for reports that read it alone (one index, not two, to keep
    up on every write)."""
    created: dict[str, Any] = {"postgresql_include": list(created_include)} if created_include else {}
    return (
        Index(f"ix_{table}_created", "workspace_id", "created_at", "id", **created),
        Index(f"ix_{table}_updated", "workspace_id", "updated_at", "id"),
        Index(f"ix_{table}_owner", "workspace_id", "owner_id", "created_at", "id"),
        Index(f"ix_{table}_tags", "tags", postgresql_using="gin"),
        Index(
            f"ix_{table}_custom_fields",
            "custom_fields",
            postgresql_using="gin",
            postgresql_ops={"custom_fields": "jsonb_path_ops"},
        ),
    )


class Company(RecordMixin, Base):
    __tablename__ = "companies"
    __table_args__ = (
        ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        Index(
            "uq_companies_domain_live",
            "workspace_id",
            "domain",
            unique=True,
            postgresql_where=text("archived_at IS NULL AND domain IS NOT NULL"),
        ),
        Index("ix_companies_domain", "workspace_id", "domain", "id"),
        Index("ix_companies_name", "workspace_id", "name", "id"),
        Index("ix_companies_industry", "workspace_id", "industry", "created_at", "id"),
        Index("ix_companies_employee_count", "workspace_id", "employee_count"),
        Index("ix_companies_annual_revenue", "workspace_id", "annual_revenue"),
        # search: a company by the start of its name (``ann acme``)
        Index(
            "ix_companies_search_prefix",
            "workspace_id",
            "search_text",
            postgresql_ops={"search_text": "text_pattern_ops"},
        ),
        Index(
            "ix_companies_search",
            "search_text",
            postgresql_using="gin",
            postgresql_ops={"search_text": "gin_trgm_ops"},
        ),
        *_standard_indexes("companies"),
    )

    name: Mapped[str] = mapped_column(Text, nullable=False)
    domain: Mapped[str | None] = mapped_column(Text)
    industry: Mapped[str | None] = mapped_column(Text)
    employee_count: Mapped[int | None] = mapped_column(BigInteger)
    annual_revenue: Mapped[decimal.Decimal | None] = mapped_column(Numeric(20, 2))
    currency: Mapped[str | None] = mapped_column(Text)
    owner_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    tags: Mapped[list[str]] = _tags()
    custom_fields: Mapped[dict[str, object]] = _jsonb()
    external_ids: Mapped[dict[str, object]] = _jsonb()
    search_text: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("''"))
    """Lower-cased name and domain, what ``q=`` matches (trigram index)."""
    merged_into: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    """The company this one was merged into (it is archived then); GET on it answers 301 there."""


class Contact(RecordMixin, Base):
    __tablename__ = "contacts"
    __table_args__ = (
        ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        ForeignKeyConstraint(["workspace_id", "company_id"], ["companies.workspace_id", "companies.id"]),
        CheckConstraint(
            "lifecycle_stage IN (" + ", ".join(f"'{s}'" for s in LIFECYCLE_STAGES) + ")",
            name="lifecycle_stage",
        ),
        Index(
            "uq_contacts_email_live",
            "workspace_id",
            "email",
            unique=True,
            postgresql_where=text("archived_at IS NULL AND email IS NOT NULL"),
        ),
        Index("ix_contacts_last_name", "workspace_id", "last_name", "id"),
        Index("ix_contacts_company", "workspace_id", "company_id", "created_at", "id"),
        Index("ix_contacts_lifecycle", "workspace_id", "lifecycle_stage", "created_at", "id"),
        Index("ix_contacts_source", "workspace_id", "source", "created_at", "id"),
        # the few archived (and merged) contacts, which reports leave out by an anti-join
        Index("ix_contacts_archived", "workspace_id", "id", postgresql_where=text("archived_at IS NOT NULL")),
        Index("ix_contacts_score", "workspace_id", "score", "id"),
        Index("ix_contacts_source_detail", "workspace_id", "source_detail"),
        Index("ix_contacts_phone", "workspace_id", "phone"),
        Index("ix_contacts_first_name", "workspace_id", "first_name"),
        Index("ix_contacts_title", "workspace_id", "title"),
        Index("ix_contacts_consent", "workspace_id", "marketing_consent", "marketing_consent_at"),
        Index(
            "ix_contacts_search",
            "search_text",
            postgresql_using="gin",
            postgresql_ops={"search_text": "gin_trgm_ops"},
        ),
        # search: a name typed whole (its text starts with it) is a range here, not a trigram scan
        Index(
            "ix_contacts_search_prefix",
            "workspace_id",
            "search_text",
            postgresql_ops={"search_text": "text_pattern_ops"},
        ),
        # search: an email's start (its local part) is a range here, not a trigram scan
        Index(
            "ix_contacts_email_prefix",
            "workspace_id",
            "email",
            postgresql_ops={"email": "text_pattern_ops"},
        ),
        # search: a company's contacts by the start of their names (``ann acme``)
        Index(
            "ix_contacts_company_search",
            "workspace_id",
            "company_id",
            "search_text",
            postgresql_ops={"search_text": "text_pattern_ops"},
            postgresql_where=text("company_id IS NOT NULL"),
        ),
        # attribution reads the contacts created in a period from ix_contacts_created alone (its INCLUDE);
        # an email filter is an equality ix_contacts_email_prefix answers (no list sorts by email)
        *_standard_indexes("contacts", created_include=("source", "lifecycle_stage", "archived_at")),
    )

    email: Mapped[str | None] = mapped_column(Text)
    first_name: Mapped[str | None] = mapped_column(Text)
    last_name: Mapped[str | None] = mapped_column(Text)
    phone: Mapped[str | None] = mapped_column(Text)
    title: Mapped[str | None] = mapped_column(Text)
    lifecycle_stage: Mapped[str | None] = mapped_column(Text)
    company_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    owner_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    tags: Mapped[list[str]] = _tags()
    custom_fields: Mapped[dict[str, object]] = _jsonb()
    external_ids: Mapped[dict[str, object]] = _jsonb()
    marketing_consent: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    marketing_consent_at: Mapped[object | None] = mapped_column(DateTime(timezone=True))
    marketing_consent_source: Mapped[str | None] = mapped_column(Text)
    erased_at: Mapped[object | None] = mapped_column(DateTime(timezone=True))
    """When the contact's personal data was erased (GDPR); an erased contact takes no further writes."""
    lifetime_value: Mapped[dict[str, object]] = _jsonb()
    """Won deal amounts summed per currency (``{"EUR": "120.00"}``), kept by order writes."""
    order_count: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    score: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    """The lead score: the points of the scoring rules the contact meets, kept by the scoring workers."""
    search_text: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("''"))
    """Lower-cased names and email, what ``q=`` matches (trigram index)."""
    merged_into: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    """The contact this one was merged into (it is archived then); GET on it answers 301 there."""
    source: Mapped[str | None] = mapped_column(Text)
    """Where the contact was acquired (``newsletter``, ``google_ads``): the attribution report's groups."""
    source_detail: Mapped[str | None] = mapped_column(Text)
    """More about the source, such as a UTM campaign."""


# The duplicate finder's criteria (``merge.duplicates``) query exactly these expressions, so a fuzzy-name
# search is a trigram index scan and a phone match an index range, not a table scan. Built by one function
# each, for the index here and for the queries there (same parse tree; migration 0008 holds the same text).


def contact_name_key(first_name: Any, last_name: Any) -> ColumnElement[str]:
    """``lower((coalesce(first_name, '') || ' ') || coalesce(last_name, ''))``."""
    first = func.coalesce(first_name, literal("", Text))
    last = func.coalesce(last_name, literal("", Text))
    return func.lower(first.op("||")(literal(" ", Text)).op("||")(last), type_=Text)


def company_name_key(name: Any) -> ColumnElement[str]:
    """``lower(name)``."""
    return func.lower(name, type_=Text)


def phone_digits(phone: Any) -> ColumnElement[str]:
    """``regexp_replace(phone, '[^0-9]', '', 'g')``: a phone as typed, its digits only."""
    return func.regexp_replace(
        phone, literal("[^0-9]", Text), literal("", Text), literal("g", Text), type_=Text
    )


Index(
    "ix_contacts_name_trgm",
    contact_name_key(Contact.first_name, Contact.last_name).label("name_key"),
    postgresql_using="gin",
    postgresql_ops={"name_key": "gin_trgm_ops"},
)
Index(
    "ix_companies_name_trgm",
    company_name_key(Company.name).label("name_key"),
    postgresql_using="gin",
    postgresql_ops={"name_key": "gin_trgm_ops"},
)
# Phones match on their digits (see ``merge.duplicates.phone_key``), stored as typed.
Index("ix_contacts_phone_digits", Contact.workspace_id, phone_digits(Contact.phone))


class ExternalId(Base):
    """One row per (source, external id) of an object: the database keeps them unique per workspace."""

    __tablename__ = "external_ids"
    __table_args__ = (
        ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        Index("ix_external_ids_object", "workspace_id", "object_id"),
    )

    workspace_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    object_type: Mapped[str] = mapped_column(Text, primary_key=True)
    source: Mapped[str] = mapped_column(Text, primary_key=True)
    external_id: Mapped[str] = mapped_column(Text, primary_key=True)
    object_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)


__all__ = [
    "LIFECYCLE_STAGES",
    "Company",
    "Contact",
    "DateTime",
    "ExternalId",
    "company_name_key",
    "contact_name_key",
    "phone_digits",
]


class ContactLifecycleChange(Base):
    """One row per lifecycle stage a contact entered (its creation with a stage included), written by a
    trigger on ``events`` from ``contact.created`` and ``contact.updated`` (migration 0015), so no write path
    can skip it; kept for good, where the events themselves expire. ``to_stage`` is null when the stage was
    cleared."""

    __tablename__ = "contact_lifecycle_changes"
    __table_args__ = (
        ForeignKeyConstraint(
            ["workspace_id", "contact_id"], ["contacts.workspace_id", "contacts.id"], ondelete="CASCADE"
        ),
        Index(
            "ix_contact_lifecycle_changes_contact",
            "workspace_id",
            "contact_id",
            "changed_at",
            "id",
            postgresql_include=["to_stage"],
        ),
        # the lead conversion report: entries into a stage in a period
        Index(
            "ix_contact_lifecycle_changes_stage",
            "workspace_id",
            "to_stage",
            "changed_at",
            postgresql_include=["contact_id"],
        ),
        # the lead conversion report: the entries into lead with all it reads of them (migration 0036)
        Index(
            "ix_contact_lifecycle_changes_leads",
            "workspace_id",
            "changed_at",
            postgresql_include=["prior_lead_at", "converted_at", "source", "archived"],
            postgresql_where=text("to_stage = 'lead'"),
        ),
        # its entries that converted (the median reads only these) and its repeated entries into lead
        Index(
            "ix_contact_lifecycle_changes_converted",
            "workspace_id",
            "changed_at",
            postgresql_include=["prior_lead_at", "converted_at", "source", "archived"],
            postgresql_where=text("to_stage = 'lead' AND converted_at IS NOT NULL"),
        ),
        Index(
            "ix_contact_lifecycle_changes_repeat",
            "workspace_id",
            "changed_at",
            postgresql_include=["prior_lead_at", "source", "archived"],
            postgresql_where=text("to_stage = 'lead' AND prior_lead_at IS NOT NULL"),
        ),
    )

    workspace_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    """The id of the event that recorded the change."""
    contact_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    from_stage: Mapped[str | None] = mapped_column(Text)
    to_stage: Mapped[str | None] = mapped_column(Text)
    changed_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    actor: Mapped[str] = mapped_column(Text, nullable=False)
    # kept on the entries into lead by triggers (migration 0036): what the lead conversion report reads
    prior_lead_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    """The contact's previous entry into lead (an entry is the first of a period starting after that)."""
    converted_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    """The contact's first entry into customer after this one."""
    source: Mapped[str | None] = mapped_column(Text)
    """The contact's source now."""
    archived: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    """The contact is archived (or merged) now."""
