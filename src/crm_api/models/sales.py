"""Pipelines with their ordered stages, deals, and the record of every stage move."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKeyConstraint,
    Index,
    Integer,
    Numeric,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, RecordMixin
from .crm import _jsonb, _standard_indexes, _tags

STAGE_KINDS = ("open", "won", "lost")


class Pipeline(RecordMixin, Base):
    __tablename__ = "pipelines"
    __table_args__ = (
        ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        Index("ix_pipelines_created", "workspace_id", "created_at", "id"),
        # one default pipeline per workspace: where a deal lands when its pipeline is not named
        Index("uq_pipelines_default", "workspace_id", unique=True, postgresql_where=text("is_default")),
    )

    name: Mapped[str] = mapped_column(Text, nullable=False)
    is_default: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))


class PipelineStage(Base):
    __tablename__ = "pipeline_stages"
    __table_args__ = (
        ForeignKeyConstraint(
            ["workspace_id", "pipeline_id"], ["pipelines.workspace_id", "pipelines.id"], ondelete="CASCADE"
        ),
        # the target of deals' (workspace_id, pipeline_id, stage_id, status) key: a deal's stage is in its
        # pipeline and its status is the stage's kind, whatever raced with what
        UniqueConstraint("workspace_id", "pipeline_id", "id", "kind", name="uq_pipeline_stages_stage_kind"),
        # deferred: a reorder rewrites every position in one statement
        UniqueConstraint(
            "workspace_id",
            "pipeline_id",
            "position",
            name="uq_pipeline_stages_position",
            deferrable=True,
            initially="DEFERRED",
        ),
        CheckConstraint("kind IN ('open', 'won', 'lost')", name="kind"),
        CheckConstraint("probability >= 0 AND probability <= 1", name="probability"),
    )

    workspace_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    pipeline_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    name: Mapped[str] = mapped_column(Text, nullable=False)
    position: Mapped[int] = mapped_column(Integer, nullable=False)
    probability: Mapped[decimal.Decimal] = mapped_column(Numeric(4, 3), nullable=False)
    kind: Mapped[str] = mapped_column(Text, nullable=False)


class Deal(RecordMixin, Base):
    __tablename__ = "deals"
    __table_args__ = (
        ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        ForeignKeyConstraint(["workspace_id", "pipeline_id"], ["pipelines.workspace_id", "pipelines.id"]),
        ForeignKeyConstraint(
            ["workspace_id", "pipeline_id", "stage_id", "status"],
            [
                "pipeline_stages.workspace_id",
                "pipeline_stages.pipeline_id",
                "pipeline_stages.id",
                "pipeline_stages.kind",
            ],
            name="fk_deals_stage_kind",
        ),
        ForeignKeyConstraint(["workspace_id", "contact_id"], ["contacts.workspace_id", "contacts.id"]),
        ForeignKeyConstraint(["workspace_id", "company_id"], ["companies.workspace_id", "companies.id"]),
        CheckConstraint("status IN ('open', 'won', 'lost')", name="status"),
        Index("ix_deals_pipeline", "workspace_id", "pipeline_id", "created_at", "id"),
        Index("ix_deals_stage", "workspace_id", "stage_id", "created_at", "id"),
        Index("ix_deals_status", "workspace_id", "status", "created_at", "id"),
        Index("ix_deals_contact", "workspace_id", "contact_id", "created_at", "id"),
        Index("ix_deals_company", "workspace_id", "company_id", "created_at", "id"),
        Index("ix_deals_contact_ids", "contact_ids", postgresql_using="gin"),
        Index("ix_deals_amount", "workspace_id", "amount"),
        Index("ix_deals_expected_close", "workspace_id", "expected_close_date"),
        Index("ix_deals_closed", "workspace_id", "closed_at"),
        Index("ix_deals_name", "workspace_id", "name", "id"),
        Index("ix_deals_source", "workspace_id", "source"),
        # The reports' ranges (reports/sales.py), each carrying every column its report reads, so that a
        # report over 200,000 deals is an index-only scan: the pipeline by stage, open deals by expected
        # close date (the forecast), closed deals by closed_at (forecast, win rate, sales cycle).
        # the few archived deals, which reports leave out by an anti-join
        Index("ix_deals_archived", "workspace_id", "id", postgresql_where=text("archived_at IS NOT NULL")),
        Index(
            "ix_deals_report_pipeline",
            "workspace_id",
            "pipeline_id",
            "stage_id",
            # the id too: the pipeline as it stood is one pass over the deals joined with the moves since
            postgresql_include=["currency", "amount", "owner_id", "archived_at", "created_at", "id"],
        ),
        Index(
            "ix_deals_report_open",
            "workspace_id",
            "expected_close_date",
            postgresql_include=["pipeline_id", "stage_id", "owner_id", "currency", "amount", "archived_at"],
            postgresql_where=text("status = 'open'"),
        ),
        Index(
            "ix_deals_report_closed",
            "workspace_id",
            "closed_at",
            postgresql_include=[
                *("status", "pipeline_id", "owner_id", "source", "currency", "amount", "lost_reason"),
                *("archived_at", "created_at", "contact_id"),
            ],
            postgresql_where=text("closed_at IS NOT NULL"),
        ),
        Index(
            "ix_deals_search",
            "search_text",
            postgresql_using="gin",
            postgresql_ops={"search_text": "gin_trgm_ops"},
        ),
        *_standard_indexes("deals"),
    )

    name: Mapped[str] = mapped_column(Text, nullable=False)
    amount: Mapped[decimal.Decimal | None] = mapped_column(Numeric(20, 2))
    currency: Mapped[str | None] = mapped_column(Text)
    pipeline_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    stage_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    status: Mapped[str] = mapped_column(Text, nullable=False)
    expected_close_date: Mapped[dt.date | None] = mapped_column(Date)
    owner_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    contact_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    company_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    contact_ids: Mapped[list[uuid.UUID]] = mapped_column(
        ARRAY(UUID(as_uuid=True)), nullable=False, server_default=text("'{}'")
    )
    """Every associated contact, the primary one included (so one GIN index answers "deals of X")."""
    source: Mapped[str | None] = mapped_column(Text)
    lost_reason: Mapped[str | None] = mapped_column(Text)
    closed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    tags: Mapped[list[str]] = _tags()
    custom_fields: Mapped[dict[str, object]] = _jsonb()
    external_ids: Mapped[dict[str, object]] = _jsonb()
    search_text: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("''"))


class DealStageChange(Base):
    """One row per stage a deal entered (its creation included), written by a trigger on ``events`` from
    ``deal.created`` and ``deal.stage_changed``, so no write path can skip it. Stage ids carry no foreign
    key: the history outlives a removed stage."""

    __tablename__ = "deal_stage_changes"
    __table_args__ = (
        ForeignKeyConstraint(
            ["workspace_id", "deal_id"], ["deals.workspace_id", "deals.id"], ondelete="CASCADE"
        ),
        # carries the pipeline and stage, so the reports walk the history per deal from the index alone
        # (the pipeline as it stood at a moment, the sales cycle)
        Index(
            "ix_deal_stage_changes_deal",
            "workspace_id",
            "deal_id",
            "changed_at",
            "id",
            postgresql_include=["pipeline_id", "to_stage_id"],
        ),
        # the moves since a moment: the pipeline as it stood then is today's rolled back by them; and the
        # sales cycle's changes of its period, read from the index alone
        Index(
            "ix_deal_stage_changes_changed",
            "workspace_id",
            "changed_at",
            postgresql_include=["deal_id", "id", "from_stage_id", "pipeline_id", "to_stage_id"],
        ),
        # the pipeline as it stood at a moment: the stays left since then, each with when it began (partial:
        # a stay not left yet is where its deal is today)
        Index(
            "ix_deal_stage_changes_left",
            "workspace_id",
            "left_at",
            postgresql_include=["changed_at", "deal_id", "to_stage_id"],
            postgresql_where=text("left_at IS NOT NULL"),
        ),
        # ... and the deals whose recorded history begins with a move after that moment
        Index(
            "ix_deal_stage_changes_opens",
            "workspace_id",
            "changed_at",
            postgresql_include=["deal_id", "from_stage_id"],
            postgresql_where=text("opens_history"),
        ),
        # the sales cycle: a pipeline stage's entries of a period with how each stay ended, from the index
        # alone (one range per stage)
        Index(
            "ix_deal_stage_changes_cycle",
            "workspace_id",
            "pipeline_id",
            "to_stage_id",
            "changed_at",
            postgresql_include=[
                "deal_id",
                "left_at",
                "advanced",
                "prev_entered_at",
                "prev_advanced_at",
            ],
        ),
    )

    workspace_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    """The id of the event that recorded the move."""
    deal_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    pipeline_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    from_stage_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    to_stage_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    changed_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    actor: Mapped[str] = mapped_column(Text, nullable=False)
    left_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    """When the deal next changed stage (in any pipeline); null while it stays. Kept by a trigger."""
    advanced: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    """A later change put the deal in an open stage of this pipeline further on, or in a won stage. Kept
    by triggers on the history and on the stages (it depends on their positions)."""
    prev_entered_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    """When the deal last entered the same stage of the same pipeline before this change; null for its first
    entry. The sales cycle counts a deal once per stage in a period with it. Kept with ``left_at``."""
    prev_advanced_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    """The same, among the earlier entries that advanced (``advanced``). Kept with ``advanced``."""
    opens_history: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    """The deal's earliest recorded change, and a move (from a stage): its history begins mid-way (older than
    the stage log kept), so before this change it was in ``from_stage_id``. Kept with ``left_at``."""


__all__ = ["STAGE_KINDS", "Deal", "DealStageChange", "Pipeline", "PipelineStage"]
