"""Lead scoring: the rules, each contact's points from each rule, and how far the scoring workers have
followed each workspace's events."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, ForeignKeyConstraint, Index, Integer, Text, text
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, RecordMixin

RULE_STATUSES = ("building", "ready")


class ScoringRule(RecordMixin, Base):
    __tablename__ = "scoring_rules"
    __table_args__ = (
        ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        CheckConstraint("status IN ('building', 'ready')", name="status"),
        # exactly one of the two kinds of rule (the API says which field is wrong before this holds)
        CheckConstraint("(condition IS NULL) <> (activity IS NULL)", name="one_kind"),
        Index("ix_scoring_rules_created", "workspace_id", "created_at", "id"),
        Index("ix_scoring_rules_updated", "workspace_id", "updated_at", "id"),
        Index("ix_scoring_rules_name", "workspace_id", "name", "id"),
        Index("ix_scoring_rules_status", "workspace_id", "status"),
        Index(
            "ix_scoring_rules_search",
            "search_text",
            postgresql_using="gin",
            postgresql_ops={"search_text": "gin_trgm_ops"},
        ),
    )

    name: Mapped[str] = mapped_column(Text, nullable=False)
    points: Mapped[int | None] = mapped_column(Integer)
    """A condition rule's points; an activity rule's are in ``activity``."""
    condition: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    activity: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    status: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("'ready'"))
    external_ids: Mapped[dict[str, object]] = mapped_column(
        JSONB, nullable=False, server_default=text("'{}'::jsonb")
    )
    search_text: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("''"))


class ScoreContribution(Base):
    """A contact's points from one live rule (no row: none). A contact's score is their sum."""

    __tablename__ = "score_contributions"
    __table_args__ = (
        ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        # a rule's contributions, for the time pass (activity rules decay) and a rule's rescore
        Index("ix_score_contributions_rule", "workspace_id", "rule_id", "contact_id"),
    )

    workspace_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    contact_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    rule_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    points: Mapped[int] = mapped_column(Integer, nullable=False)


class ScoringCursor(Base):
    """How far the scoring workers have followed a workspace's events (its sequence), and the rescore of
    the workspace under way, if any: the last contact id done and the rule versions it rescores for."""

    __tablename__ = "scoring_cursors"
    __table_args__ = (ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),)

    workspace_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    sequence: Mapped[int] = mapped_column(BigInteger, nullable=False)
    walk_after: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    walk_versions: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    """``{rule id: version}`` of the rules the walk makes ready when it ends; null: no walk."""
