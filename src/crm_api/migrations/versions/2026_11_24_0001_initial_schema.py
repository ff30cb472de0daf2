"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-24 12:09:53.607225
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.create_table(
        "workspaces",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workspaces")),
        sa.UniqueConstraint("name", name=op.f("uq_workspaces_name")),
    )
    op.create_table(
        "api_keys",
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("prefix", sa.Text(), nullable=False),
        sa.Column("key_hash", sa.Text(), nullable=False),
        sa.Column("scopes", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_api_keys_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("workspace_id", "id", name=op.f("pk_api_keys")),
    )
    op.create_index("ix_api_keys_key_hash", "api_keys", ["key_hash"], unique=True)
    op.create_table(
        "companies",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("domain", sa.Text(), nullable=True),
        sa.Column("industry", sa.Text(), nullable=True),
        sa.Column("employee_count", sa.BigInteger(), nullable=True),
        sa.Column("annual_revenue", sa.Numeric(precision=20, scale=2), nullable=True),
        sa.Column("currency", sa.Text(), nullable=True),
        sa.Column("owner_id", sa.UUID(), nullable=True),
        sa.Column("tags", postgresql.ARRAY(sa.Text()), server_default=sa.text("'{}'"), nullable=False),
        sa.Column(
            "custom_fields",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column(
            "external_ids",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column("search_text", sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_companies_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("workspace_id", "id", name=op.f("pk_companies")),
    )
    op.create_index(
        "ix_companies_annual_revenue", "companies", ["workspace_id", "annual_revenue"], unique=False
    )
    op.create_index("ix_companies_created", "companies", ["workspace_id", "created_at", "id"], unique=False)
    op.create_index(
        "ix_companies_custom_fields",
        "companies",
        ["custom_fields"],
        unique=False,
        postgresql_using="gin",
        postgresql_ops={"custom_fields": "jsonb_path_ops"},
    )
    op.create_index("ix_companies_domain", "companies", ["workspace_id", "domain", "id"], unique=False)
    op.create_index(
        "ix_companies_employee_count", "companies", ["workspace_id", "employee_count"], unique=False
    )
    op.create_index(
        "ix_companies_industry", "companies", ["workspace_id", "industry", "created_at", "id"], unique=False
    )
    op.create_index("ix_companies_name", "companies", ["workspace_id", "name", "id"], unique=False)
    op.create_index(
        "ix_companies_owner", "companies", ["workspace_id", "owner_id", "created_at", "id"], unique=False
    )
    op.create_index(
        "ix_companies_search",
        "companies",
        ["search_text"],
        unique=False,
        postgresql_using="gin",
        postgresql_ops={"search_text": "gin_trgm_ops"},
    )
    op.create_index("ix_companies_tags", "companies", ["tags"], unique=False, postgresql_using="gin")
    op.create_index("ix_companies_updated", "companies", ["workspace_id", "updated_at", "id"], unique=False)
    op.create_index(
        "uq_companies_domain_live",
        "companies",
        ["workspace_id", "domain"],
        unique=True,
        postgresql_where=sa.text("archived_at IS NULL AND domain IS NOT NULL"),
    )
    op.create_table(
        "events",
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("sequence", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("object_type", sa.Text(), nullable=False),
        sa.Column("object_id", sa.UUID(), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("request_id", sa.Text(), nullable=True),
        sa.Column("data", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_events_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("workspace_id", "id", name=op.f("pk_events")),
    )
    op.create_index("ix_events_created", "events", ["created_at"], unique=False)
    op.create_index("ix_events_object", "events", ["workspace_id", "object_id", "sequence"], unique=False)
    op.create_index("ix_events_workspace_sequence", "events", ["workspace_id", "sequence"], unique=False)
    op.create_index("uq_events_sequence", "events", ["sequence"], unique=True)
    op.create_table(
        "external_ids",
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column("object_type", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("external_id", sa.Text(), nullable=False),
        sa.Column("object_id", sa.UUID(), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_external_ids_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "workspace_id", "object_type", "source", "external_id", name=op.f("pk_external_ids")
        ),
    )
    op.create_index("ix_external_ids_object", "external_ids", ["workspace_id", "object_id"], unique=False)
    op.create_table(
        "idempotency_keys",
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("request_hash", sa.Text(), nullable=False),
        sa.Column("status", sa.BigInteger(), nullable=False),
        sa.Column("headers", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_idempotency_keys_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("workspace_id", "key", name=op.f("pk_idempotency_keys")),
    )
    op.create_index("ix_idempotency_keys_created", "idempotency_keys", ["created_at"], unique=False)
    op.create_table(
        "contacts",
        sa.Column("email", sa.Text(), nullable=True),
        sa.Column("first_name", sa.Text(), nullable=True),
        sa.Column("last_name", sa.Text(), nullable=True),
        sa.Column("phone", sa.Text(), nullable=True),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("lifecycle_stage", sa.Text(), nullable=True),
        sa.Column("company_id", sa.UUID(), nullable=True),
        sa.Column("owner_id", sa.UUID(), nullable=True),
        sa.Column("tags", postgresql.ARRAY(sa.Text()), server_default=sa.text("'{}'"), nullable=False),
        sa.Column(
            "custom_fields",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column(
            "external_ids",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column("marketing_consent", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("marketing_consent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("marketing_consent_source", sa.Text(), nullable=True),
        sa.Column("search_text", sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "lifecycle_stage IN ('subscriber', 'lead', 'marketing_qualified', 'sales_qualified', 'opportunity', 'customer', 'evangelist', 'other')",
            name=op.f("ck_contacts_lifecycle_stage"),
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id", "company_id"],
            ["companies.workspace_id", "companies.id"],
            name=op.f("fk_contacts_workspace_id_company_id_companies"),
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_contacts_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("workspace_id", "id", name=op.f("pk_contacts")),
    )
    op.create_index(
        "ix_contacts_company", "contacts", ["workspace_id", "company_id", "created_at", "id"], unique=False
    )
    op.create_index("ix_contacts_created", "contacts", ["workspace_id", "created_at", "id"], unique=False)
    op.create_index(
        "ix_contacts_custom_fields",
        "contacts",
        ["custom_fields"],
        unique=False,
        postgresql_using="gin",
        postgresql_ops={"custom_fields": "jsonb_path_ops"},
    )
    op.create_index("ix_contacts_email", "contacts", ["workspace_id", "email", "id"], unique=False)
    op.create_index("ix_contacts_last_name", "contacts", ["workspace_id", "last_name", "id"], unique=False)
    op.create_index(
        "ix_contacts_lifecycle",
        "contacts",
        ["workspace_id", "lifecycle_stage", "created_at", "id"],
        unique=False,
    )
    op.create_index(
        "ix_contacts_owner", "contacts", ["workspace_id", "owner_id", "created_at", "id"], unique=False
    )
    op.create_index("ix_contacts_phone", "contacts", ["workspace_id", "phone"], unique=False)
    op.create_index("ix_contacts_first_name", "contacts", ["workspace_id", "first_name"], unique=False)
    op.create_index("ix_contacts_title", "contacts", ["workspace_id", "title"], unique=False)
    op.create_index(
        "ix_contacts_consent",
        "contacts",
        ["workspace_id", "marketing_consent", "marketing_consent_at"],
        unique=False,
    )
    op.create_index(
        "ix_contacts_search",
        "contacts",
        ["search_text"],
        unique=False,
        postgresql_using="gin",
        postgresql_ops={"search_text": "gin_trgm_ops"},
    )
    op.create_index("ix_contacts_tags", "contacts", ["tags"], unique=False, postgresql_using="gin")
    op.create_index("ix_contacts_updated", "contacts", ["workspace_id", "updated_at", "id"], unique=False)
    op.create_index(
        "uq_contacts_email_live",
        "contacts",
        ["workspace_id", "email"],
        unique=True,
        postgresql_where=sa.text("archived_at IS NULL AND email IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index(
        "uq_contacts_email_live",
        table_name="contacts",
        postgresql_where=sa.text("archived_at IS NULL AND email IS NOT NULL"),
    )
    op.drop_index("ix_contacts_updated", table_name="contacts")
    op.drop_index("ix_contacts_tags", table_name="contacts", postgresql_using="gin")
    op.drop_index(
        "ix_contacts_search",
        table_name="contacts",
        postgresql_using="gin",
        postgresql_ops={"search_text": "gin_trgm_ops"},
    )
    op.drop_index("ix_contacts_phone", table_name="contacts")
    op.drop_index("ix_contacts_first_name", table_name="contacts")
    op.drop_index("ix_contacts_title", table_name="contacts")
    op.drop_index("ix_contacts_consent", table_name="contacts")
    op.drop_index("ix_contacts_owner", table_name="contacts")
    op.drop_index("ix_contacts_lifecycle", table_name="contacts")
    op.drop_index("ix_contacts_last_name", table_name="contacts")
    op.drop_index("ix_contacts_email", table_name="contacts")
    op.drop_index(
        "ix_contacts_custom_fields",
        table_name="contacts",
        postgresql_using="gin",
        postgresql_ops={"custom_fields": "jsonb_path_ops"},
    )
    op.drop_index("ix_contacts_created", table_name="contacts")
    op.drop_index("ix_contacts_company", table_name="contacts")
    op.drop_table("contacts")
    op.drop_index("ix_idempotency_keys_created", table_name="idempotency_keys")
    op.drop_table("idempotency_keys")
    op.drop_index("ix_external_ids_object", table_name="external_ids")
    op.drop_table("external_ids")
    op.drop_index("uq_events_sequence", table_name="events")
    op.drop_index("ix_events_workspace_sequence", table_name="events")
    op.drop_index("ix_events_object", table_name="events")
    op.drop_index("ix_events_created", table_name="events")
    op.drop_table("events")
    op.drop_index(
        "uq_companies_domain_live",
        table_name="companies",
        postgresql_where=sa.text("archived_at IS NULL AND domain IS NOT NULL"),
    )
    op.drop_index("ix_companies_updated", table_name="companies")
    op.drop_index("ix_companies_tags", table_name="companies", postgresql_using="gin")
    op.drop_index(
        "ix_companies_search",
        table_name="companies",
        postgresql_using="gin",
        postgresql_ops={"search_text": "gin_trgm_ops"},
    )
    op.drop_index("ix_companies_owner", table_name="companies")
    op.drop_index("ix_companies_name", table_name="companies")
    op.drop_index("ix_companies_industry", table_name="companies")
    op.drop_index("ix_companies_employee_count", table_name="companies")
    op.drop_index("ix_companies_domain", table_name="companies")
    op.drop_index(
        "ix_companies_custom_fields",
        table_name="companies",
        postgresql_using="gin",
        postgresql_ops={"custom_fields": "jsonb_path_ops"},
    )
    op.drop_index("ix_companies_created", table_name="companies")
    op.drop_index("ix_companies_annual_revenue", table_name="companies")
    op.drop_table("companies")
    op.drop_index("ix_api_keys_key_hash", table_name="api_keys")
    op.drop_table("api_keys")
    op.drop_table("workspaces")
