"""API keys: expires_at (optional, set on create) and last_used_at (written at most once a minute per key)

Webhook signing secrets need no schema change to be sealed (they stay text, now holding Fernet tokens), and a
migration cannot seal them: it does not have the master key. Every start of an API or dispatcher process
seals the ones still in the clear (crm_api/vault.py), and ``crm-api secrets encrypt`` does it on demand.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-27 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("api_keys", sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("api_keys", sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("api_keys", "last_used_at")
    op.drop_column("api_keys", "expires_at")
