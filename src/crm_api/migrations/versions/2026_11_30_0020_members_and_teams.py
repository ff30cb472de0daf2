"""Members and teams; API keys may act for a member; every existing owner becomes a member

Owners (``owner_id`` of contacts, companies, deals and activities, ``assignee_id`` of tickets) were free
UUIDs until now; from here they must name an active member. Each id already in use that names no member
becomes a placeholder member with that id (``name: "Imported owner"``, an ``.invalid`` email), so every
stored record stays valid; the number made is written to the migration's log.

Revision ID: 0020
Revises: 0018
Create Date: 2026-11-30 15:00:00.000000
"""

import logging
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# a warning: `crm-api migrate` configures no logging, and Python shows warnings on stderr without it
LOG = logging.getLogger("crm_api.migrations")

OWNED = (
    ("contacts", "owner_id"),
    ("companies", "owner_id"),
    ("deals", "owner_id"),
    ("activities", "owner_id"),
    ("tickets", "assignee_id"),
)


def _record_columns() -> list[sa.Column]:  # type: ignore[type-arg]
    return [
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True),
    ]


def _tail(table: str) -> list[object]:
    return [
        sa.Column(
            "external_ids",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column("search_text", sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f(f"fk_{table}_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("workspace_id", "id", name=op.f(f"pk_{table}")),
    ]


def _common_indexes(table: str) -> None:
    op.create_index(f"ix_{table}_created", table, ["workspace_id", "created_at", "id"])
    op.create_index(f"ix_{table}_updated", table, ["workspace_id", "updated_at", "id"])
    op.create_index(f"ix_{table}_name", table, ["workspace_id", "name", "id"])
    op.create_index(
        f"ix_{table}_search",
        table,
        ["search_text"],
        postgresql_using="gin",
        postgresql_ops={"search_text": "gin_trgm_ops"},
    )


def upgrade() -> None:
    op.create_table(
        "members",
        *_record_columns(),
        sa.Column("email", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("role", sa.Text(), server_default=sa.text("'member'"), nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        *_tail("members"),  # type: ignore[arg-type]
        sa.CheckConstraint("role IN ('admin', 'member', 'viewer')", name=op.f("ck_members_role")),
    )
    _common_indexes("members")
    op.create_index(
        "uq_members_email_live",
        "members",
        ["workspace_id", "email"],
        unique=True,
        postgresql_where=sa.text("archived_at IS NULL"),
    )
    op.create_index("ix_members_email", "members", ["workspace_id", "email", "id"])
    op.create_index("ix_members_role", "members", ["workspace_id", "role", "created_at", "id"])
    op.create_index("ix_members_active", "members", ["workspace_id", "active", "created_at", "id"])

    op.create_table(
        "teams",
        *_record_columns(),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("member_ids", postgresql.ARRAY(sa.UUID()), server_default=sa.text("'{}'"), nullable=False),
        *_tail("teams"),  # type: ignore[arg-type]
    )
    _common_indexes("teams")
    op.create_index("ix_teams_member_ids", "teams", ["member_ids"], postgresql_using="gin")

    op.add_column("api_keys", sa.Column("member_id", sa.UUID(), nullable=True))

    owners = " UNION ".join(
        f"SELECT workspace_id, {column} AS id FROM {table} WHERE {column} IS NOT NULL"
        for table, column in OWNED
    )
    made = (
        op.get_bind()
        .execute(
            sa.text(
                f"""
            WITH owners AS ({owners}),
            made AS (
                INSERT INTO members (workspace_id, id, created_at, updated_at, email, name, search_text)
                SELECT workspace_id, id, now(), now(), 'imported-' || id || '@members.invalid', 'Imported owner',
                       'imported owner imported-' || id || '@members.invalid'
                FROM owners
                RETURNING 1
            )
            SELECT count(*) FROM made
            """
            )
        )
        .scalar_one()
    )
    LOG.warning(
        '0020: %d placeholder members ("Imported owner") made for owner ids that named no member', made
    )


def downgrade() -> None:
    op.drop_column("api_keys", "member_id")
    op.drop_table("teams")
    op.drop_table("members")
