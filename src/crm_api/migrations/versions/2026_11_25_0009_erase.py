"""erase: contacts.erased_at marks a contact whose personal data was erased (GDPR); requester comments by author

Revision ID: 0009
Revises: 0006
Create Date: 2026-11-25 13:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # nullable with no default: adding it rewrites nothing, so it is instant on a large table
    op.add_column("contacts", sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_ticket_comments_requester",
        "ticket_comments",
        ["workspace_id", "author_id"],
        unique=False,
        postgresql_where=sa.text("author_type = 'requester'"),
    )


def downgrade() -> None:
    op.drop_index("ix_ticket_comments_requester", table_name="ticket_comments")
    op.drop_column("contacts", "erased_at")
