"""The sales cycle's per-stage counts without ``count(DISTINCT deal_id)``, and the pipeline at a past moment
from the stays that cover it.

The sales cycle: each stage change also knows when
the same deal last entered the same stage of the same pipeline before it (``prev_entered_at``) and when it
last did so in an entry that later advanced (``prev_advanced_at``).

A deal counts once per stage in a period: its entries there are rows of the period, and the first of them is
the one whose previous entry (if any) is before the period (``prev_entered_at < lower``); likewise the first
advanced one for ``advanced``. So the report counts rows with a filter, and sorts only for the median.

Both are settled with ``left_at`` and ``advanced`` by the same function, so every path that settles those
(the history trigger, a stage moved, changed kind or removed) settles these too. The migration backfills
(only re-entries get a value) and rebuilds the sales cycle's covering index per stage (workspace,
pipeline, stage, changed_at) carrying them: the report reads one range per stage, already grouped.

The pipeline at ``as_of``: a deal that moved since was, at ``as_of``, in the stay with ``changed_at <= as_of
< left_at``; ``ix_deal_stage_changes_left`` (partial on left stays, by ``left_at``) finds those stays as one
range (the stays left since ``as_of``), no sort of every move since. A deal whose recorded history begins
with a move (``opens_history``: older than the stage log kept) was, before that move, where it moved from;
``ix_deal_stage_changes_opens`` (partial: a row per such deal) finds those whose first move is after ``as_of``.

Revision ID: 0037
Revises: 0035
Create Date: 2026-12-01 03:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0037"
down_revision: str | None = "0035"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# What a deal's rows should hold, from its whole history (as in 0027, plus the previous entries): the next
# change in any pipeline, how far the later changes of the same pipeline went, and, per deal, pipeline and
# stage, the previous entry and the previous entry that advanced; and whether the row is the deal's earliest
# recorded change and a move (its history begins mid-way: older than the stage log kept). Only rows whose
# values differ are written.
_SETTLE = """
UPDATE deal_stage_changes AS h
SET left_at = y.left_at, advanced = y.advanced,
    prev_entered_at = y.prev_entered_at, prev_advanced_at = y.prev_advanced_at, opens_history = y.opens_history
FROM (
    SELECT x.workspace_id, x.id, x.left_at, x.advanced, x.opens_history,
           max(x.changed_at) OVER w AS prev_entered_at,
           max(x.changed_at) FILTER (WHERE x.advanced) OVER w AS prev_advanced_at
    FROM (
        SELECT c.workspace_id, c.id, c.deal_id, c.pipeline_id, c.to_stage_id, c.changed_at,
               first_value(c.changed_at) OVER (PARTITION BY c.deal_id ORDER BY c.changed_at, c.id
                                               ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING) AS left_at,
               coalesce(max(CASE s.kind WHEN 'won' THEN 1000000 WHEN 'open' THEN s.position END)
                            OVER (PARTITION BY c.deal_id, c.pipeline_id ORDER BY c.changed_at, c.id
                                  ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING) > s.position,
                        false) AS advanced,
               c.from_stage_id IS NOT NULL
                   AND row_number() OVER (PARTITION BY c.deal_id ORDER BY c.changed_at, c.id) = 1
                   AS opens_history
        FROM deal_stage_changes AS c
        LEFT JOIN pipeline_stages AS s
            ON s.workspace_id = c.workspace_id AND s.pipeline_id = c.pipeline_id AND s.id = c.to_stage_id
        WHERE {where}
    ) AS x
    WINDOW w AS (PARTITION BY x.deal_id, x.pipeline_id, x.to_stage_id ORDER BY x.changed_at, x.id
                 ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
) AS y
WHERE h.workspace_id = y.workspace_id AND h.id = y.id
  AND (h.left_at, h.advanced, h.prev_entered_at, h.prev_advanced_at, h.opens_history)
      IS DISTINCT FROM (y.left_at, y.advanced, y.prev_entered_at, y.prev_advanced_at, y.opens_history)
"""

# 0027's, to go back to
_SETTLE_0027 = """
UPDATE deal_stage_changes AS h
SET left_at = x.left_at, advanced = x.advanced
FROM (
    SELECT c.workspace_id, c.id,
           first_value(c.changed_at) OVER (PARTITION BY c.deal_id ORDER BY c.changed_at, c.id
                                           ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING) AS left_at,
           coalesce(max(CASE s.kind WHEN 'won' THEN 1000000 WHEN 'open' THEN s.position END)
                        OVER (PARTITION BY c.deal_id, c.pipeline_id ORDER BY c.changed_at, c.id
                              ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING) > s.position,
                    false) AS advanced
    FROM deal_stage_changes AS c
    LEFT JOIN pipeline_stages AS s
        ON s.workspace_id = c.workspace_id AND s.pipeline_id = c.pipeline_id AND s.id = c.to_stage_id
    WHERE {where}
) AS x
WHERE h.workspace_id = x.workspace_id AND h.id = x.id
  AND (h.left_at IS DISTINCT FROM x.left_at OR h.advanced IS DISTINCT FROM x.advanced)
"""

_FUNCTION = """
CREATE OR REPLACE FUNCTION settle_deal_stage_changes(ws uuid, deals uuid[]) RETURNS void LANGUAGE sql AS $$
{settle}
$$
"""

_INCLUDE_0027 = ["to_stage_id", "deal_id", "left_at", "advanced"]

# The customers report's purchases per contact, kept at write time (one row per contact: no row shared by
# writes of different contacts). A purchase is what reports/customers.py says: a paid or fulfilled order
# (at placed_at, else created_at), or a won, live deal no order stands behind (at closed_at). PL/pgSQL, so
# its two statements' plans are kept per session (a SQL function plans them at every call).
_PURCHASES = """
CREATE FUNCTION settle_contact_purchases(ws uuid, contacts uuid[]) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
DELETE FROM contact_purchases AS k WHERE k.workspace_id = ws AND k.contact_id = ANY(contacts);
INSERT INTO contact_purchases (workspace_id, contact_id, purchases, deal_purchases, first_at, last_at, value)
SELECT ws, c.contact_id, sum(c.n)::integer, sum(c.deals)::integer, min(c.first_at), max(c.last_at),
       coalesce(jsonb_object_agg(c.currency, c.amount) FILTER (WHERE c.currency IS NOT NULL
                                                                AND c.amount IS NOT NULL), '{}')
FROM (
    SELECT p.contact_id, p.currency, count(*) AS n, count(*) FILTER (WHERE p.deal) AS deals,
           min(p.at) AS first_at, max(p.at) AS last_at, sum(p.amount) AS amount
    FROM (
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
    ) AS p
    GROUP BY p.contact_id, p.currency
) AS c
GROUP BY c.contact_id;
END
$$;

CREATE FUNCTION settle_order_purchases(ws uuid, contacts uuid[], deals uuid[]) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
PERFORM settle_contact_purchases(ws, contacts || ARRAY(
    SELECT d.contact_id FROM deals AS d
    WHERE d.workspace_id = ws AND d.id = ANY(deals) AND d.contact_id IS NOT NULL));
END
$$;

CREATE FUNCTION orders_purchases_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM settle_order_purchases(r.workspace_id, array_agg(r.contact_id), array_agg(r.deal_id)) FROM new_orders AS r GROUP BY r.workspace_id;
    RETURN NULL;
END
$$;

CREATE FUNCTION orders_purchases_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM settle_order_purchases(r.workspace_id, array_agg(r.contact_id), array_agg(r.deal_id)) FROM old_orders AS r GROUP BY r.workspace_id;
    RETURN NULL;
END
$$;

-- a row at a time, only when a purchase column changed (the trigger's WHEN): both its versions (a contact or
-- a deal left behind too)
CREATE FUNCTION orders_purchases_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM settle_order_purchases(NEW.workspace_id, ARRAY[OLD.contact_id, NEW.contact_id],
                                   ARRAY[OLD.deal_id, NEW.deal_id]);
    RETURN NULL;
END
$$;

CREATE FUNCTION deals_purchases_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM settle_contact_purchases(r.workspace_id, array_agg(r.contact_id)) FROM new_deals AS r GROUP BY r.workspace_id;
    RETURN NULL;
END
$$;

CREATE FUNCTION deals_purchases_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM settle_contact_purchases(r.workspace_id, array_agg(r.contact_id)) FROM old_deals AS r GROUP BY r.workspace_id;
    RETURN NULL;
END
$$;

-- likewise
CREATE FUNCTION deals_purchases_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM settle_contact_purchases(NEW.workspace_id, ARRAY[OLD.contact_id, NEW.contact_id]);
    RETURN NULL;
END
$$;
"""

_PURCHASE_COLUMNS = {
    "orders": ["status", "placed_at", "created_at", "currency", "total", "contact_id", "deal_id"],
    "deals": ["status", "closed_at", "archived_at", "currency", "amount", "contact_id"],
}


def upgrade() -> None:
    op.add_column(
        "deal_stage_changes", sa.Column("prev_entered_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column(
        "deal_stage_changes", sa.Column("prev_advanced_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column(
        "deal_stage_changes",
        sa.Column("opens_history", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    op.execute(
        _FUNCTION.format(settle=_SETTLE.format(where="c.workspace_id = ws AND c.deal_id = ANY(deals)"))
    )
    op.execute(_SETTLE.format(where="true"))
    op.drop_index("ix_deal_stage_changes_cycle", table_name="deal_stage_changes")
    op.create_index(
        "ix_deal_stage_changes_cycle",
        "deal_stage_changes",
        ["workspace_id", "pipeline_id", "to_stage_id", "changed_at"],
        postgresql_include=["deal_id", "left_at", "advanced", "prev_entered_at", "prev_advanced_at"],
    )
    # the pipeline at a past moment: the stays left since then, each with when it began
    op.create_index(
        "ix_deal_stage_changes_left",
        "deal_stage_changes",
        ["workspace_id", "left_at"],
        postgresql_include=["changed_at", "deal_id", "to_stage_id"],
        postgresql_where=sa.text("left_at IS NOT NULL"),
    )
    # ... and the deals whose recorded history begins with a move after it: they were where it moved from
    op.create_index(
        "ix_deal_stage_changes_opens",
        "deal_stage_changes",
        ["workspace_id", "changed_at"],
        postgresql_include=["deal_id", "from_stage_id"],
        postgresql_where=sa.text("opens_history"),
    )

    # the customers report's purchases per contact
    op.create_table(
        "contact_purchases",
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column("contact_id", sa.UUID(), nullable=False),
        sa.Column("purchases", sa.Integer(), nullable=False),
        sa.Column("deal_purchases", sa.Integer(), nullable=False),
        sa.Column("first_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("value", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_contact_purchases_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("workspace_id", "contact_id", name=op.f("pk_contact_purchases")),
    )
    op.create_index("ix_contact_purchases_last", "contact_purchases", ["workspace_id", "last_at"])
    op.create_index(
        "ix_contact_purchases_deals",
        "contact_purchases",
        ["workspace_id", "first_at"],
        postgresql_where=sa.text("deal_purchases > 0"),
    )
    for function in _PURCHASES.split("$$;")[:-1]:  # one statement each (a prepared statement)
        op.execute(function + "$$")
    for table in ("orders", "deals"):
        for event, refs in (("INSERT", f"NEW TABLE AS new_{table}"), ("DELETE", f"OLD TABLE AS old_{table}")):
            done = {"INSERT": "inserted", "DELETE": "deleted"}[event]
            op.execute(
                f"CREATE TRIGGER {table}_purchases_{done} AFTER {event} ON {table} REFERENCING {refs} "
                f"FOR EACH STATEMENT EXECUTE FUNCTION {table}_purchases_{done}()"
            )
        # an update a row at a time, only when a purchase column changed: any other update runs nothing
        columns = _PURCHASE_COLUMNS[table]
        op.execute(
            f"CREATE TRIGGER {table}_purchases_updated AFTER UPDATE ON {table} FOR EACH ROW "
            f"WHEN (ROW({', '.join('OLD.' + c for c in columns)}) IS DISTINCT FROM "
            f"ROW({', '.join('NEW.' + c for c in columns)})) EXECUTE FUNCTION {table}_purchases_updated()"
        )
    op.execute(
        "SELECT settle_contact_purchases(w.id, ARRAY("
        "SELECT o.contact_id FROM orders AS o WHERE o.workspace_id = w.id AND o.status IN ('paid', 'fulfilled') "
        "UNION SELECT d.contact_id FROM deals AS d WHERE d.workspace_id = w.id AND d.status = 'won' "
        "AND d.contact_id IS NOT NULL)) FROM workspaces AS w"
    )


def downgrade() -> None:
    for table in ("orders", "deals"):
        for done in ("inserted", "deleted", "updated"):
            op.execute(f"DROP TRIGGER {table}_purchases_{done} ON {table}")
            op.execute(f"DROP FUNCTION {table}_purchases_{done}()")
    op.execute("DROP FUNCTION settle_order_purchases(uuid, uuid[], uuid[])")
    op.execute("DROP FUNCTION settle_contact_purchases(uuid, uuid[])")
    op.drop_index("ix_contact_purchases_deals", table_name="contact_purchases")
    op.drop_index("ix_contact_purchases_last", table_name="contact_purchases")
    op.drop_table("contact_purchases")
    op.drop_index("ix_deal_stage_changes_opens", table_name="deal_stage_changes")
    op.drop_index("ix_deal_stage_changes_left", table_name="deal_stage_changes")
    op.drop_index("ix_deal_stage_changes_cycle", table_name="deal_stage_changes")
    op.create_index(
        "ix_deal_stage_changes_cycle",
        "deal_stage_changes",
        ["workspace_id", "pipeline_id", "changed_at"],
        postgresql_include=_INCLUDE_0027,
    )
    op.execute(
        _FUNCTION.format(settle=_SETTLE_0027.format(where="c.workspace_id = ws AND c.deal_id = ANY(deals)"))
    )
    op.drop_column("deal_stage_changes", "opens_history")
    op.drop_column("deal_stage_changes", "prev_advanced_at")
    op.drop_column("deal_stage_changes", "prev_entered_at")
