"""The workspace's people: members (who may own records) and teams of members."""

from __future__ import annotations

import uuid

from sqlalchemy import Boolean, CheckConstraint, ForeignKeyConstraint, Index, Text, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, RecordMixin

MEMBER_ROLES = ("admin", "member", "viewer")


def _search_index(table: str) -> Index:
    return Index(
        f"ix_{table}_search",
        "search_text",
        postgresql_using="gin",
        postgresql_ops={"search_text": "gin_trgm_ops"},
    )


class Member(RecordMixin, Base):
    __tablename__ = "members"
    __table_args__ = (
        ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        CheckConstraint("role IN (" + ", ".join(f"'{r}'" for r in MEMBER_ROLES) + ")", name="role"),
        # emails are stored lower-cased (the spec normalises them), so this is case-insensitive
        Index(
            "uq_members_email_live",
            "workspace_id",
            "email",
            unique=True,
            postgresql_where=text("archived_at IS NULL"),
        ),
        Index("ix_members_email", "workspace_id", "email", "id"),
        Index("ix_members_name", "workspace_id", "name", "id"),
        Index("ix_members_role", "workspace_id", "role", "created_at", "id"),
        Index("ix_members_active", "workspace_id", "active", "created_at", "id"),
        Index("ix_members_created", "workspace_id", "created_at", "id"),
        Index("ix_members_updated", "workspace_id", "updated_at", "id"),
        _search_index("members"),
    )

    email: Mapped[str] = mapped_column(Text, nullable=False)
    name: Mapped[str] = mapped_column(Text, nullable=False)
    role: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("'member'"))
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("true"))
    external_ids: Mapped[dict[str, object]] = mapped_column(
        JSONB, nullable=False, server_default=text("'{}'")
    )
    search_text: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("''"))
    """Lower-cased name and email, what ``q=`` matches (trigram index)."""


class Team(RecordMixin, Base):
    __tablename__ = "teams"
    __table_args__ = (
        ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        Index("ix_teams_name", "workspace_id", "name", "id"),
        Index("ix_teams_member_ids", "member_ids", postgresql_using="gin"),
        Index("ix_teams_created", "workspace_id", "created_at", "id"),
        Index("ix_teams_updated", "workspace_id", "updated_at", "id"),
        _search_index("teams"),
    )

    name: Mapped[str] = mapped_column(Text, nullable=False)
    member_ids: Mapped[list[uuid.UUID]] = mapped_column(
        ARRAY(UUID(as_uuid=True)), nullable=False, server_default=text("'{}'")
    )
    external_ids: Mapped[dict[str, object]] = mapped_column(
        JSONB, nullable=False, server_default=text("'{}'")
    )
    search_text: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("''"))
