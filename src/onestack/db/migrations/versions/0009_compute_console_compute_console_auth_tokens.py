"""compute console auth tokens (the console proxy's tokens, Nova's console_auth_tokens)

Revision ID: 0009_compute_console
Revises: 0007_compute
Create Date: 2026-11-23 09:02:32.898380
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0009_compute_console"
down_revision = "0007_compute"
branch_labels = None
depends_on = None

TS = (
    sa.DateTime()
    .with_variant(mysql.DATETIME(fsp=6), "mariadb")
    .with_variant(mysql.DATETIME(fsp=6), "mysql")
)


def upgrade() -> None:
    op.create_table(
        "compute_console_auth_token",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("console_type", sa.String(length=32), nullable=False),
        sa.Column("instance_uuid", sa.String(length=36), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("compute_host", sa.String(length=255), nullable=False),
        sa.Column("internal_access_path", sa.String(length=255), nullable=True),
        sa.Column("expires", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_compute_console_auth_token")),
        sa.UniqueConstraint(
            "token_hash", name=op.f("uq_compute_console_auth_token_token_hash")
        ),
    )
    with op.batch_alter_table("compute_console_auth_token", schema=None) as batch_op:
        batch_op.create_index(
            "ix_compute_console_auth_token_expires", ["expires"], unique=False
        )
        batch_op.create_index(
            "ix_compute_console_auth_token_instance", ["instance_uuid"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("compute_console_auth_token", schema=None) as batch_op:
        batch_op.drop_index("ix_compute_console_auth_token_instance")
        batch_op.drop_index("ix_compute_console_auth_token_expires")
    op.drop_table("compute_console_auth_token")
