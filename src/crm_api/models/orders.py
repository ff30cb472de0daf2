"""Orders pushed by ecommerce platforms: the order as last applied, and its deal's line items."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    ForeignKeyConstraint,
    Index,
    Integer,
    Numeric,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base

ORDER_STATUSES = ("pending", "paid", "fulfilled", "refunded", "cancelled")


class Order(Base):
    """One row per (source, external id): the shop's version clock and a hash of the body last applied,
    so a replay or an older version is recognised without touching the deal."""

    __tablename__ = "orders"
    __table_args__ = (
        ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        ForeignKeyConstraint(
            ["workspace_id", "deal_id"], ["deals.workspace_id", "deals.id"], ondelete="CASCADE"
        ),
        CheckConstraint("status IN (" + ", ".join(f"'{s}'" for s in ORDER_STATUSES) + ")", name="status"),
        Index("ix_orders_deal", "workspace_id", "deal_id", unique=True),
        # order_count and the contacts an order moves between are found through this index
        Index("ix_orders_contact", "workspace_id", "contact_id"),
        # the customers report's purchases (reports/customers.py): paid orders, with what it reads
        Index(
            "ix_orders_report_paid",
            "workspace_id",
            "placed_at",
            postgresql_include=["contact_id", "created_at", "currency", "total"],
            postgresql_where=text("status IN ('paid', 'fulfilled')"),
        ),
    )

    workspace_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    source: Mapped[str] = mapped_column(Text, primary_key=True)
    external_id: Mapped[str] = mapped_column(Text, primary_key=True)
    deal_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    contact_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    company_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    order_number: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text, nullable=False)
    currency: Mapped[str] = mapped_column(Text, nullable=False)
    subtotal: Mapped[decimal.Decimal | None] = mapped_column(Numeric(20, 2))
    discount: Mapped[decimal.Decimal | None] = mapped_column(Numeric(20, 2))
    tax: Mapped[decimal.Decimal | None] = mapped_column(Numeric(20, 2))
    shipping: Mapped[decimal.Decimal | None] = mapped_column(Numeric(20, 2))
    total: Mapped[decimal.Decimal] = mapped_column(Numeric(20, 2), nullable=False)
    placed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    shop_updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    """The shop's ``updated_at``: an order older than this changes nothing."""
    body_hash: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class DealLineItem(Base):
    """A deal's products, in the order the shop listed them; replaced as a whole when the order changes."""

    __tablename__ = "deal_line_items"
    __table_args__ = (
        ForeignKeyConstraint(
            ["workspace_id", "deal_id"], ["deals.workspace_id", "deals.id"], ondelete="CASCADE"
        ),
        CheckConstraint("quantity >= 0", name="quantity"),
        Index("ix_deal_line_items_deal", "workspace_id", "deal_id", "position", "id"),
    )

    workspace_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    deal_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    position: Mapped[int] = mapped_column(Integer, nullable=False)
    sku: Mapped[str | None] = mapped_column(Text)
    name: Mapped[str] = mapped_column(Text, nullable=False)
    quantity: Mapped[int] = mapped_column(Integer, nullable=False)
    unit_price: Mapped[decimal.Decimal] = mapped_column(Numeric(20, 2), nullable=False)
    discount: Mapped[decimal.Decimal] = mapped_column(Numeric(20, 2), nullable=False)
    tax: Mapped[decimal.Decimal] = mapped_column(Numeric(20, 2), nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class ContactPurchases(Base):
    """What the customers report reads per customer, kept at write time (migration 0037): a contact's
    purchases (paid or fulfilled orders, and won live deals no order stands behind), the first and the last,
    and the value per currency (``{"USD": 180.00}``, exact numbers). Statement triggers on ``orders`` and
    ``deals`` settle the contacts a write touches from their rows, so every write path keeps it (merges,
    erasure, archiving included); one row per contact, none shared between contacts' writes. No foreign key
    to the contact: the report counts what the orders name, as before."""

    __tablename__ = "contact_purchases"
    __table_args__ = (
        ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        # whether any purchase is after a moment (then the report reads the purchases themselves)
        Index("ix_contact_purchases_last", "workspace_id", "last_at"),
        # the customers by first purchase (migration 0043): the cohorts' customers, an index-only range
        Index(
            "ix_contact_purchases_first",
            "workspace_id",
            "first_at",
            postgresql_include=["contact_id", "last_at", "purchases"],
        ),
    )

    workspace_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    contact_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    purchases: Mapped[int] = mapped_column(Integer, nullable=False)
    deal_purchases: Mapped[int] = mapped_column(Integer, nullable=False)
    """How many of them are won deals (no order behind)."""
    first_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    last_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    value: Mapped[dict[str, object]] = mapped_column(JSONB, nullable=False)
    purchase_times: Mapped[list[dt.datetime]] = mapped_column(
        ARRAY(DateTime(timezone=True)), nullable=False, server_default=text("'{}'")
    )
    """When the contact bought (migration 0043): each purchase's moment, ascending, once each. The cohorts
    read these for their customers, in the time zone asked."""


class ContactPurchaseValues(Base):
    """A customer's value in one currency (migration 0043): the sum ``contact_purchases.value`` holds for it,
    as a row, so the customers report's mean and percentiles read one index range in value order, no jsonb
    parsed and no sort. Settled with ``contact_purchases`` by the same function."""

    __tablename__ = "contact_purchase_values"
    __table_args__ = (
        ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        Index(
            "ix_contact_purchase_values_value",
            "workspace_id",
            "currency",
            "value",
            postgresql_include=["contact_id"],
        ),
    )

    workspace_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    contact_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    currency: Mapped[str] = mapped_column(Text, primary_key=True)
    value: Mapped[decimal.Decimal] = mapped_column(Numeric, nullable=False)


__all__ = ["ORDER_STATUSES", "ContactPurchaseValues", "ContactPurchases", "DealLineItem", "Order"]
