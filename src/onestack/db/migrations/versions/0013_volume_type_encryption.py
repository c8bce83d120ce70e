"""volume type encryption

Revision ID: 0013_volume_encryption
Revises: 0012_volume
Create Date: 2026-12-04 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0013_volume_encryption"
down_revision = "0012_volume"
branch_labels = None
depends_on = None

TS = (
    sa.DateTime()
    .with_variant(mysql.DATETIME(fsp=6), "mariadb")
    .with_variant(mysql.DATETIME(fsp=6), "mysql")
)


def upgrade() -> None:
    op.create_table(
        "volume_type_encryption",
        sa.Column("volume_type_id", sa.String(36), nullable=False),
        sa.Column("encryption_id", sa.String(36), nullable=False),
        sa.Column("provider", sa.String(255), nullable=False),
        sa.Column("cipher", sa.String(255), nullable=True),
        sa.Column("key_size", sa.Integer(), nullable=True),
        sa.Column("control_location", sa.String(16), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("volume_type_id", name=op.f("pk_volume_type_encryption")),
    )


def downgrade() -> None:
    op.drop_table("volume_type_encryption")
