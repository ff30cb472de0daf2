"""An import's create_missing_companies: a contact's (or deal's, ticket's) company named by a domain no live
company has is made, instead of the row failing with not_found

Revision ID: 0033
Revises: 0030
Create Date: 2026-11-30 23:00:00.000000

Jobs made before this had no such choice: they keep the old behaviour (false), and new ones default to true.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0033"
down_revision: str | None = "0030"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "imports",
        sa.Column("create_missing_companies", sa.Boolean(), nullable=False, server_default=sa.text("false")),
    )
    op.alter_column("imports", "create_missing_companies", server_default=sa.text("true"))


def downgrade() -> None:
    op.drop_column("imports", "create_missing_companies")
