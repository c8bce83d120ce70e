"""volume tables

Revision ID: 0012_volume
Revises: 0001_identity
Create Date: 2026-12-04 02:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0012_volume"
down_revision = "0001_identity"
branch_labels = None
depends_on = None

TS = (
    sa.DateTime()
    .with_variant(mysql.DATETIME(fsp=6), "mariadb")
    .with_variant(mysql.DATETIME(fsp=6), "mysql")
)


def upgrade() -> None:
    op.create_table(
        "volume_volume",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(255), nullable=True),
        sa.Column("description", sa.String(255), nullable=True),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("attach_status", sa.String(32), nullable=False),
        sa.Column("availability_zone", sa.String(255), nullable=False),
        sa.Column("volume_type_id", sa.String(36), nullable=True),
        sa.Column("bootable", sa.Boolean(), nullable=False),
        sa.Column("multiattach", sa.Boolean(), nullable=False),
        sa.Column("snapshot_id", sa.String(36), nullable=True),
        sa.Column("source_volid", sa.String(36), nullable=True),
        sa.Column("host", sa.String(255), nullable=True),
        sa.Column("provider_location", sa.String(255), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("admin_metadata", sa.JSON(), nullable=False),
        sa.Column("image_metadata", sa.JSON(), nullable=False),
        sa.Column("group_id", sa.String(36), nullable=True),
        sa.Column("attachments", sa.JSON(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_volume_volume")),
    )
    with op.batch_alter_table("volume_volume") as batch:
        batch.create_index("ix_volume_volume_project", ["project_id"], unique=False)
    op.create_table(
        "volume_snapshot",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("volume_id", sa.String(36), nullable=False),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(255), nullable=True),
        sa.Column("description", sa.String(255), nullable=True),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("progress", sa.String(16), nullable=False),
        sa.Column("group_snapshot_id", sa.String(36), nullable=True),
        sa.Column("provider_location", sa.String(255), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_volume_snapshot")),
    )
    with op.batch_alter_table("volume_snapshot") as batch:
        batch.create_index("ix_volume_snapshot_volume", ["volume_id"], unique=False)
        batch.create_index("ix_volume_snapshot_project", ["project_id"], unique=False)
    op.create_table(
        "volume_type",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.String(255), nullable=True),
        sa.Column("is_public", sa.Boolean(), nullable=False),
        sa.Column("extra_specs", sa.JSON(), nullable=False),
        sa.Column("projects", sa.JSON(), nullable=False),
        sa.Column("qos_specs_id", sa.String(36), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_volume_type")),
        sa.UniqueConstraint("name", name=op.f("uq_volume_type_name")),
    )
    op.create_table(
        "volume_qos_specs",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("consumer", sa.String(16), nullable=False),
        sa.Column("specs", sa.JSON(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_volume_qos_specs")),
        sa.UniqueConstraint("name", name=op.f("uq_volume_qos_specs_name")),
    )
    op.create_table(
        "volume_transfer",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("volume_id", sa.String(36), nullable=False),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(255), nullable=True),
        sa.Column("salt", sa.String(64), nullable=False),
        sa.Column("key_hash", sa.String(128), nullable=False),
        sa.Column("no_snapshots", sa.Boolean(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_volume_transfer")),
    )
    with op.batch_alter_table("volume_transfer") as batch:
        batch.create_index("ix_volume_transfer_project", ["project_id"], unique=False)
    op.create_table(
        "volume_backup",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("volume_id", sa.String(36), nullable=False),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(255), nullable=True),
        sa.Column("description", sa.String(255), nullable=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("object_count", sa.Integer(), nullable=False),
        sa.Column("container", sa.String(255), nullable=True),
        sa.Column("parent_id", sa.String(36), nullable=True),
        sa.Column("snapshot_id", sa.String(36), nullable=True),
        sa.Column("service_metadata", sa.String(255), nullable=True),
        sa.Column("fail_reason", sa.String(255), nullable=True),
        sa.Column("availability_zone", sa.String(255), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("data_timestamp", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_volume_backup")),
    )
    with op.batch_alter_table("volume_backup") as batch:
        batch.create_index("ix_volume_backup_project", ["project_id"], unique=False)
        batch.create_index("ix_volume_backup_volume", ["volume_id"], unique=False)
    op.create_table(
        "volume_message",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("resource_type", sa.String(64), nullable=False),
        sa.Column("resource_uuid", sa.String(36), nullable=True),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("message", sa.String(255), nullable=False),
        sa.Column("request_id", sa.String(255), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_volume_message")),
    )
    with op.batch_alter_table("volume_message") as batch:
        batch.create_index("ix_volume_message_project", ["project_id"], unique=False)
    op.create_table(
        "volume_group_type",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.String(255), nullable=True),
        sa.Column("is_public", sa.Boolean(), nullable=False),
        sa.Column("group_specs", sa.JSON(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_volume_group_type")),
        sa.UniqueConstraint("name", name=op.f("uq_volume_group_type_name")),
    )
    op.create_table(
        "volume_group",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(255), nullable=True),
        sa.Column("description", sa.String(255), nullable=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("group_type_id", sa.String(36), nullable=False),
        sa.Column("volume_type_ids", sa.JSON(), nullable=False),
        sa.Column("availability_zone", sa.String(255), nullable=False),
        sa.Column("group_snapshot_id", sa.String(36), nullable=True),
        sa.Column("source_group_id", sa.String(36), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_volume_group")),
    )
    with op.batch_alter_table("volume_group") as batch:
        batch.create_index("ix_volume_group_project", ["project_id"], unique=False)
    op.create_table(
        "volume_group_snapshot",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("group_id", sa.String(36), nullable=False),
        sa.Column("group_type_id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(255), nullable=True),
        sa.Column("description", sa.String(255), nullable=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_volume_group_snapshot")),
    )
    with op.batch_alter_table("volume_group_snapshot") as batch:
        batch.create_index("ix_volume_group_snapshot_project", ["project_id"], unique=False)
    op.create_table(
        "volume_quota",
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("resource", sa.String(255), nullable=False),
        sa.Column("hard_limit", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("project_id", "resource", name=op.f("pk_volume_quota")),
    )


def downgrade() -> None:
    for table in ("volume_group_snapshot", "volume_group", "volume_group_type",
                  "volume_quota", "volume_message", "volume_backup", "volume_transfer",
                  "volume_qos_specs", "volume_type", "volume_snapshot", "volume_volume"):
        op.drop_table(table)
