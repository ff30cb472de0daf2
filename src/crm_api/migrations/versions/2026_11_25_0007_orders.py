"""orders: orders from ecommerce platforms, deal line items, contacts' lifetime value and order count

Revision ID: 0007
Revises: 0009
Create Date: 2026-11-25 13:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "contacts",
        sa.Column(
            "lifetime_value",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
    )
    op.add_column(
        "contacts", sa.Column("order_count", sa.Integer(), server_default=sa.text("0"), nullable=False)
    )
    op.create_table(
        "orders",
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("external_id", sa.Text(), nullable=False),
        sa.Column("deal_id", sa.UUID(), nullable=False),
        sa.Column("contact_id", sa.UUID(), nullable=False),
        sa.Column("company_id", sa.UUID(), nullable=True),
        sa.Column("order_number", sa.Text(), nullable=True),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("currency", sa.Text(), nullable=False),
        sa.Column("subtotal", sa.Numeric(20, 2), nullable=True),
        sa.Column("discount", sa.Numeric(20, 2), nullable=True),
        sa.Column("tax", sa.Numeric(20, 2), nullable=True),
        sa.Column("shipping", sa.Numeric(20, 2), nullable=True),
        sa.Column("total", sa.Numeric(20, 2), nullable=False),
        sa.Column("placed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("shop_updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("body_hash", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'paid', 'fulfilled', 'refunded', 'cancelled')",
            name=op.f("ck_orders_status"),
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id", "deal_id"],
            ["deals.workspace_id", "deals.id"],
            name=op.f("fk_orders_workspace_id_deals"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_orders_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("workspace_id", "source", "external_id", name=op.f("pk_orders")),
    )
    op.create_index("ix_orders_contact", "orders", ["workspace_id", "contact_id"], unique=False)
    op.create_index("ix_orders_deal", "orders", ["workspace_id", "deal_id"], unique=True)
    op.create_table(
        "deal_line_items",
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("deal_id", sa.UUID(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("sku", sa.Text(), nullable=True),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("unit_price", sa.Numeric(20, 2), nullable=False),
        sa.Column("discount", sa.Numeric(20, 2), nullable=False),
        sa.Column("tax", sa.Numeric(20, 2), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("quantity >= 0", name=op.f("ck_deal_line_items_quantity")),
        sa.ForeignKeyConstraint(
            ["workspace_id", "deal_id"],
            ["deals.workspace_id", "deals.id"],
            name=op.f("fk_deal_line_items_workspace_id_deals"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("workspace_id", "id", name=op.f("pk_deal_line_items")),
    )
    op.create_index(
        "ix_deal_line_items_deal",
        "deal_line_items",
        ["workspace_id", "deal_id", "position", "id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_deal_line_items_deal", table_name="deal_line_items")
    op.drop_table("deal_line_items")
    op.drop_index("ix_orders_deal", table_name="orders")
    op.drop_index("ix_orders_contact", table_name="orders")
    op.drop_table("orders")
    op.drop_column("contacts", "order_count")
    op.drop_column("contacts", "lifetime_value")
