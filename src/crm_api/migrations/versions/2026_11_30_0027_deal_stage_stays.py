"""The sales cycle kept at write time: each stage change knows when the deal left the stage and whether it
later advanced, so the report reads the period's changes from one index and no later history.

``deal_stage_changes`` gains ``left_at`` (the deal's next change, in any pipeline; null while it stays) and
``advanced`` (a later change of the deal put it in an open stage of the same pipeline further on, or in a won
stage). A trigger on the history settles the deal's rows after each insert (every write path writes the
history through the events trigger); a trigger on ``pipeline_stages`` settles the pipeline's deals again when
a stage moves, changes kind or goes, since ``advanced`` depends on positions. The migration backfills.

Revision ID: 0027
Revises: 0024
Create Date: 2026-11-30 19:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0027"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# What a deal's rows should hold, from its whole history: one window per deal (the next change, in any
# pipeline) and one per deal and pipeline (how far the later changes in the same pipeline went: a won stage
# is further than any position, a lost one nowhere). Only rows whose values differ are written.
_SETTLE = """
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

_FUNCTIONS = f"""
CREATE FUNCTION settle_deal_stage_changes(ws uuid, deals uuid[]) RETURNS void LANGUAGE sql AS $$
{_SETTLE.format(where="c.workspace_id = ws AND c.deal_id = ANY(deals)")}
$$;

CREATE FUNCTION deal_stage_change_settle() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM settle_deal_stage_changes(NEW.workspace_id, ARRAY[NEW.deal_id]);
    RETURN NULL;
END
$$;

-- a stage moved, changed kind or went: every deal that ever entered its pipeline is settled again (rare,
-- and one statement per workspace); a pipeline write that renames or re-weights its stages settles nothing
CREATE FUNCTION settle_pipelines(ws uuid, pipelines uuid[]) RETURNS void LANGUAGE sql AS $$
SELECT settle_deal_stage_changes(ws, ARRAY(
    SELECT DISTINCT c.deal_id FROM deal_stage_changes AS c
    WHERE c.workspace_id = ws AND c.pipeline_id = ANY(pipelines)))
$$;

CREATE FUNCTION pipeline_stages_settle_moved() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM settle_pipelines(o.workspace_id, array_agg(DISTINCT o.pipeline_id))
    FROM old_stages AS o JOIN new_stages AS n ON n.workspace_id = o.workspace_id AND n.id = o.id
    WHERE (n.position, n.kind, n.pipeline_id) IS DISTINCT FROM (o.position, o.kind, o.pipeline_id)
    GROUP BY o.workspace_id;
    RETURN NULL;
END
$$;

CREATE FUNCTION pipeline_stages_settle_gone() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM settle_pipelines(o.workspace_id, array_agg(DISTINCT o.pipeline_id))
    FROM old_stages AS o GROUP BY o.workspace_id;
    RETURN NULL;
END
$$;
"""


def upgrade() -> None:
    op.add_column("deal_stage_changes", sa.Column("left_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column(
        "deal_stage_changes",
        sa.Column("advanced", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    for function in _FUNCTIONS.split("$$;")[:-1]:  # one statement each (a prepared statement)
        op.execute(function + "$$")
    op.execute(
        "CREATE TRIGGER deal_stage_changes_settle AFTER INSERT ON deal_stage_changes FOR EACH ROW "
        "EXECUTE FUNCTION deal_stage_change_settle()"
    )
    # statement triggers with the changed rows: a reorder of six stages settles the pipeline once
    op.execute(
        "CREATE TRIGGER pipeline_stages_settle_update AFTER UPDATE ON pipeline_stages "
        "REFERENCING OLD TABLE AS old_stages NEW TABLE AS new_stages FOR EACH STATEMENT "
        "EXECUTE FUNCTION pipeline_stages_settle_moved()"
    )
    op.execute(
        "CREATE TRIGGER pipeline_stages_settle_delete AFTER DELETE ON pipeline_stages "
        "REFERENCING OLD TABLE AS old_stages FOR EACH STATEMENT EXECUTE FUNCTION pipeline_stages_settle_gone()"
    )
    op.execute(_SETTLE.format(where="true"))
    op.create_index(
        "ix_deal_stage_changes_cycle",
        "deal_stage_changes",
        ["workspace_id", "pipeline_id", "changed_at"],
        postgresql_include=["to_stage_id", "deal_id", "left_at", "advanced"],
    )


def downgrade() -> None:
    op.drop_index("ix_deal_stage_changes_cycle", table_name="deal_stage_changes")
    op.execute("DROP TRIGGER pipeline_stages_settle_delete ON pipeline_stages")
    op.execute("DROP TRIGGER pipeline_stages_settle_update ON pipeline_stages")
    op.execute("DROP TRIGGER deal_stage_changes_settle ON deal_stage_changes")
    op.execute("DROP FUNCTION pipeline_stages_settle_gone()")
    op.execute("DROP FUNCTION pipeline_stages_settle_moved()")
    op.execute("DROP FUNCTION settle_pipelines(uuid, uuid[])")
    op.execute("DROP FUNCTION deal_stage_change_settle()")
    op.execute("DROP FUNCTION settle_deal_stage_changes(uuid, uuid[])")
    op.drop_column("deal_stage_changes", "advanced")
    op.drop_column("deal_stage_changes", "left_at")
