"""network agent heartbeats (an agent is alive while it reports itself)

Revision ID: 0010_network_agent
Revises: 0006_network
Create Date: 2026-12-03 16:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0010_network_agent"
down_revision = "0006_network"
branch_labels = None
depends_on = None

TS = (
    sa.DateTime()
    .with_variant(mysql.DATETIME(fsp=6), "mariadb")
    .with_variant(mysql.DATETIME(fsp=6), "mysql")
)


def upgrade() -> None:
    with op.batch_alter_table("net_agent") as batch:
        batch.add_column(sa.Column("heartbeat_at", TS, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("net_agent") as batch:
        batch.drop_column("heartbeat_at")
