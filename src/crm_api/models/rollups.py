"""What the attribution report sums instead of reading every contact of its period (migration 0036).

``contact_attribution`` holds, per contact, the facts the report counts (its UTC creation time, source,
whether it is archived, ever a lead, a buyer, and its won deals per currency), kept by triggers on contacts,
the lifecycle history, deals and orders: each recomputes the touched contacts' facts and, for those that
changed, appends to ``attribution_deltas`` the signed change per (workspace, UTC hour of creation, source,
archived, currency). Writers only ever INSERT there (no shared row to wait on); the fold job
(``reports/rollup.py``) now and then replaces a group's rows by their sum.

Since migration 0041 the writers append to ``attribution_pending`` and ``lead_pending`` instead: heaps with no
index at all (an index entry per write was most of what a created lead paid for its roll-ups), which the fold
empties into ``attribution_deltas`` and ``lead_deltas`` (the sums, read by hour). The reports read both, so
they stay exact between folds; between two folds a pending table holds one fold period's writes.
"""

from __future__ import annotations

import datetime as dt
import decimal
import uuid

from sqlalchemy import BigInteger, Boolean, Column, DateTime, Identity, Index, Numeric, Table, Text
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base


class ContactAttribution(Base):
    """One row per contact (no foreign key: a contact's deletion must still find its row to take its counts
    back out)."""

    __tablename__ = "contact_attribution"
    __table_args__ = (Index("ix_contact_attribution_created", "workspace_id", "created_at"),)

    workspace_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    contact_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    source: Mapped[str | None] = mapped_column(Text)
    archived: Mapped[bool] = mapped_column(Boolean, nullable=False)
    ever_lead: Mapped[bool] = mapped_column(Boolean, nullable=False)
    """A lead now, or an entry into ``lead`` in the lifecycle history."""
    buyer: Mapped[bool] = mapped_column(Boolean, nullable=False)
    """A live won deal (as primary contact) or a paid or fulfilled order."""
    won: Mapped[dict[str, object] | None] = mapped_column(JSONB)
    """The live won deals' amounts summed per currency (``{"USD": 1200.00}``), null when none."""


class AttributionDelta(Base):
    """Folded sums of the signed changes of the attribution counts; ``currency`` null on the rows of counts,
    set on the rows of amounts. Written by the fold only: the writers append to ``attribution_pending``."""

    __tablename__ = "attribution_deltas"
    __table_args__ = (Index("ix_attribution_deltas_hour", "workspace_id", "hour"),)

    workspace_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    hour: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    source: Mapped[str | None] = mapped_column(Text)
    archived: Mapped[bool] = mapped_column(Boolean, nullable=False)
    currency: Mapped[str | None] = mapped_column(Text)
    contacts: Mapped[int] = mapped_column(BigInteger, nullable=False)
    leads: Mapped[int] = mapped_column(BigInteger, nullable=False)
    customers: Mapped[int] = mapped_column(BigInteger, nullable=False)
    amount: Mapped[decimal.Decimal | None] = mapped_column(Numeric(20, 2))


class LeadDelta(Base):
    """Signed changes of the count of entries into lead that were their contact's first (no earlier entry
    into lead), per (workspace, UTC hour of the entry, the contact's source, archived); appended by statement
    triggers on the lifecycle history to ``lead_pending``, folded here like ``attribution_deltas``."""

    __tablename__ = "lead_deltas"
    __table_args__ = (Index("ix_lead_deltas_hour", "workspace_id", "hour"),)

    workspace_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    hour: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    source: Mapped[str | None] = mapped_column(Text)
    archived: Mapped[bool] = mapped_column(Boolean, nullable=False)
    leads: Mapped[int] = mapped_column(BigInteger, nullable=False)


# The writers' appended changes, not yet folded: no key and no index (an insert is a heap tuple and nothing
# else); the fold deletes them all (what its snapshot sees) and the reports scan them whole.
attribution_pending = Table(
    "attribution_pending",
    Base.metadata,
    Column("workspace_id", UUID(as_uuid=True), nullable=False),
    Column("hour", DateTime(timezone=True), nullable=False),
    Column("source", Text),
    Column("archived", Boolean, nullable=False),
    Column("currency", Text),
    Column("contacts", BigInteger, nullable=False),
    Column("leads", BigInteger, nullable=False),
    Column("customers", BigInteger, nullable=False),
    Column("amount", Numeric(20, 2)),
)

lead_pending = Table(
    "lead_pending",
    Base.metadata,
    Column("workspace_id", UUID(as_uuid=True), nullable=False),
    Column("hour", DateTime(timezone=True), nullable=False),
    Column("source", Text),
    Column("archived", Boolean, nullable=False),
    Column("leads", BigInteger, nullable=False),
)
