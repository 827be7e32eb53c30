"""Consents record whether the person allows a newer model's template to be added from a later match.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # consents given before the field existed did not allow it: the default is no
    op.execute("ALTER TABLE consents ADD COLUMN template_updates integer NOT NULL DEFAULT 0"
               " CHECK (template_updates IN (0, 1))")
    op.execute("UPDATE meta SET value = '2' WHERE key = 'privacy_schema_version'")


def downgrade() -> None:
    op.execute("ALTER TABLE consents DROP COLUMN template_updates")
    op.execute("UPDATE meta SET value = '1' WHERE key = 'privacy_schema_version'")
