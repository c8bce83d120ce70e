"""network address scopes

Revision ID: 0011_network_scopes
Revises: 0010_network_agent
Create Date: 2026-12-04 02:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_network_scopes"
down_revision = "0010_network_agent"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "net_address_scope",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("ip_version", sa.Integer(), nullable=False),
        sa.Column("shared", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_net_address_scope")),
    )
    with op.batch_alter_table("net_address_scope") as batch:
        batch.create_index("ix_net_address_scope_project", ["project_id"], unique=False)


def downgrade() -> None:
    op.drop_table("net_address_scope")
