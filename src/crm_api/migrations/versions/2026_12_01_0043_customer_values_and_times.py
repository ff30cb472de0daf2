"""The customers report without parsing every customer's value, and its cohorts without reading the period's
orders (issue 15).

``contact_purchase_values``: a customer's value per currency as a row (the same sums as
``contact_purchases.value``, exact numerics), indexed by (workspace, currency, value). The summary's valued
count and mean are one index-only range, and its two percentiles read the range in value order up to their
place, no sort.

``contact_purchases.purchase_times``: when a customer bought (each purchase's moment, ascending, once each).
A cohort customer's purchases are all since the cohorts' start (their first is), so the cohorts read the
cohort customers' rows alone, in any time zone, not the period's paid orders and each one's won deals.

Both are settled by ``settle_contact_purchases``, in the statement that already reads the contacts'
purchases (a data-modifying CTE): every trigger that keeps ``contact_purchases`` keeps them too. The
migration settles every customer again.

``ix_contact_purchases_first`` (workspace, first_at) carrying the contact, ``last_at`` and ``purchases``:
the cohorts' first months as an index-only range. It replaces ``ix_contact_purchases_deals`` (partial on
customers with won deals), which only the cohorts' read of won deals used.

Revision ID: 0043
Revises: 0042
Create Date: 2026-12-01 11:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0043"
down_revision: str | None = "0042"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# a purchase, as migration 0037 defines it
_PURCHASES = """
        SELECT o.contact_id, coalesce(o.placed_at, o.created_at) AS at, o.currency, o.total AS amount,
               false AS deal
        FROM orders AS o
        WHERE o.workspace_id = ws AND o.contact_id = ANY(contacts) AND o.status IN ('paid', 'fulfilled')
        UNION ALL
        SELECT d.contact_id, d.closed_at, d.currency, d.amount, true
        FROM deals AS d
        WHERE d.workspace_id = ws AND d.contact_id = ANY(contacts) AND d.status = 'won'
          AND d.closed_at IS NOT NULL AND d.archived_at IS NULL
          AND NOT EXISTS (SELECT FROM orders AS b WHERE b.workspace_id = d.workspace_id AND b.deal_id = d.id)
"""

_SETTLE = (
    """
CREATE OR REPLACE FUNCTION settle_contact_purchases(ws uuid, contacts uuid[]) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
DELETE FROM contact_purchases AS k WHERE k.workspace_id = ws AND k.contact_id = ANY(contacts);
DELETE FROM contact_purchase_values AS v WHERE v.workspace_id = ws AND v.contact_id = ANY(contacts);
WITH p AS ("""
    + _PURCHASES
    + """),
c AS (
    SELECT p.contact_id, p.currency, count(*) AS n, count(*) FILTER (WHERE p.deal) AS deals,
           min(p.at) AS first_at, max(p.at) AS last_at, sum(p.amount) AS amount
    FROM p
    GROUP BY p.contact_id, p.currency
),
t AS (SELECT p.contact_id, array_agg(DISTINCT p.at ORDER BY p.at) AS times FROM p GROUP BY p.contact_id),
v AS (
    INSERT INTO contact_purchase_values (workspace_id, contact_id, currency, value)
    SELECT ws, c.contact_id, c.currency, c.amount FROM c WHERE c.currency IS NOT NULL AND c.amount IS NOT NULL
)
INSERT INTO contact_purchases (workspace_id, contact_id, purchases, deal_purchases, first_at, last_at, value,
                               purchase_times)
SELECT ws, s.contact_id, s.purchases, s.deals, s.first_at, s.last_at, s.value, t.times
FROM (
    SELECT c.contact_id, sum(c.n)::integer AS purchases, sum(c.deals)::integer AS deals, min(c.first_at) AS first_at,
           max(c.last_at) AS last_at,
           coalesce(jsonb_object_agg(c.currency, c.amount) FILTER (WHERE c.currency IS NOT NULL
                                                                    AND c.amount IS NOT NULL), '{}') AS value
    FROM c
    GROUP BY c.contact_id
) AS s
JOIN t ON t.contact_id = s.contact_id;
END
$$
"""
)

# migration 0037's
_SETTLE_0037 = (
    """
CREATE OR REPLACE FUNCTION settle_contact_purchases(ws uuid, contacts uuid[]) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
DELETE FROM contact_purchases AS k WHERE k.workspace_id = ws AND k.contact_id = ANY(contacts);
INSERT INTO contact_purchases (workspace_id, contact_id, purchases, deal_purchases, first_at, last_at, value)
SELECT ws, c.contact_id, sum(c.n)::integer, sum(c.deals)::integer, min(c.first_at), max(c.last_at),
       coalesce(jsonb_object_agg(c.currency, c.amount) FILTER (WHERE c.currency IS NOT NULL
                                                                AND c.amount IS NOT NULL), '{}')
FROM (
    SELECT p.contact_id, p.currency, count(*) AS n, count(*) FILTER (WHERE p.deal) AS deals,
           min(p.at) AS first_at, max(p.at) AS last_at, sum(p.amount) AS amount
    FROM ("""
    + _PURCHASES
    + """
    ) AS p
    GROUP BY p.contact_id, p.currency
) AS c
GROUP BY c.contact_id;
END
$$
"""
)


def upgrade() -> None:
    op.create_table(
        "contact_purchase_values",
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column("contact_id", sa.UUID(), nullable=False),
        sa.Column("currency", sa.Text(), nullable=False),
        sa.Column("value", sa.Numeric(), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_contact_purchase_values_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "workspace_id", "contact_id", "currency", name=op.f("pk_contact_purchase_values")
        ),
    )
    op.create_index(
        "ix_contact_purchase_values_value",
        "contact_purchase_values",
        ["workspace_id", "currency", "value"],
        postgresql_include=["contact_id"],
    )
    op.add_column(
        "contact_purchases",
        sa.Column(
            "purchase_times",
            postgresql.ARRAY(sa.DateTime(timezone=True)),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
    )
    # the cohorts' customers by first purchase, with what the summary counts: the cohorts' first months an
    # index-only range; it replaces the partial index the cohorts' won deals were found by
    op.drop_index("ix_contact_purchases_deals", table_name="contact_purchases")
    op.create_index(
        "ix_contact_purchases_first",
        "contact_purchases",
        ["workspace_id", "first_at"],
        postgresql_include=["contact_id", "last_at", "purchases"],
    )
    op.execute(_SETTLE)
    # every customer settled again, into an emptied table (rewritten rows would leave it twice its size)
    op.execute("TRUNCATE contact_purchases")
    op.execute(
        "SELECT settle_contact_purchases(w.id, ARRAY("
        "SELECT o.contact_id FROM orders AS o WHERE o.workspace_id = w.id AND o.status IN ('paid', 'fulfilled') "
        "UNION SELECT d.contact_id FROM deals AS d WHERE d.workspace_id = w.id AND d.status = 'won' "
        "AND d.contact_id IS NOT NULL)) FROM workspaces AS w"
    )


def downgrade() -> None:
    op.execute(_SETTLE_0037)
    op.drop_index("ix_contact_purchases_first", table_name="contact_purchases")
    op.create_index(
        "ix_contact_purchases_deals",
        "contact_purchases",
        ["workspace_id", "first_at"],
        postgresql_where=sa.text("deal_purchases > 0"),
    )
    op.drop_column("contact_purchases", "purchase_times")
    op.drop_index("ix_contact_purchase_values_value", table_name="contact_purchase_values")
    op.drop_table("contact_purchase_values")
