"""Reports: indexes that carry what the slow reports read, so each reads one index range and no table.

``ix_deals_report_pipeline`` gains the deal's id: the pipeline as it stood (``as_of``) is one pass over the
workspace's deals hash-joined with the moves since, instead of a lookup per moved deal.
``ix_deal_stage_changes_changed`` gains the pipeline and the stage entered: the sales cycle reads the changes
of its period from the index alone. ``ix_contacts_report_created`` is new: attribution reads the contacts
created in its period, with their id, source, lifecycle stage and archived_at, from the index alone (it read
the table: a million rows at the bench's size).

Revision ID: 0022
Revises: 0018
Create Date: 2026-11-30 15:10:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PIPELINE = ["currency", "amount", "owner_id", "archived_at", "created_at"]
_CHANGED = ["deal_id", "id", "from_stage_id"]


def _pipeline(include: list[str]) -> None:
    op.drop_index("ix_deals_report_pipeline", table_name="deals")
    op.create_index(
        "ix_deals_report_pipeline",
        "deals",
        ["workspace_id", "pipeline_id", "stage_id"],
        postgresql_include=include,
    )


def _changed(include: list[str]) -> None:
    op.drop_index("ix_deal_stage_changes_changed", table_name="deal_stage_changes")
    op.create_index(
        "ix_deal_stage_changes_changed",
        "deal_stage_changes",
        ["workspace_id", "changed_at"],
        postgresql_include=include,
    )


def upgrade() -> None:
    _pipeline([*_PIPELINE, "id"])
    _changed([*_CHANGED, "pipeline_id", "to_stage_id"])
    op.create_index(
        "ix_contacts_report_created",
        "contacts",
        ["workspace_id", "created_at"],
        postgresql_include=["id", "source", "lifecycle_stage", "archived_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_contacts_report_created", table_name="contacts")
    _changed(_CHANGED)
    _pipeline(_PIPELINE)
