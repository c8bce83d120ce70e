"""image tables: images, properties, tags, members, import tasks

Revision ID: 0002_image
Revises: 0001_identity
Create Date: 2026-11-23 06:13:55.471570
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0002_image"
down_revision = "0001_identity"
branch_labels = None
depends_on = None

TS = (
    sa.DateTime()
    .with_variant(mysql.DATETIME(fsp=6), "mariadb")
    .with_variant(mysql.DATETIME(fsp=6), "mysql")
)
LONGTEXT = (
    sa.Text().with_variant(mysql.LONGTEXT(), "mariadb").with_variant(mysql.LONGTEXT(), "mysql")
)


def upgrade() -> None:
    op.create_table(
        "image_image",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("status", sa.String(length=30), nullable=False),
        sa.Column("visibility", sa.String(length=20), nullable=False),
        sa.Column("disk_format", sa.String(length=20), nullable=True),
        sa.Column("container_format", sa.String(length=20), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("virtual_size", sa.BigInteger(), nullable=True),
        sa.Column("checksum", sa.String(length=32), nullable=True),
        sa.Column("os_hash_algo", sa.String(length=64), nullable=True),
        sa.Column("os_hash_value", sa.String(length=128), nullable=True),
        sa.Column("min_disk", sa.Integer(), nullable=False),
        sa.Column("min_ram", sa.Integer(), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=True),
        sa.Column("protected", sa.Boolean(), nullable=False),
        sa.Column("os_hidden", sa.Boolean(), nullable=False),
        sa.Column("location", sa.String(length=1024), nullable=True),
        sa.Column("internal", sa.JSON(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_image_image")),
    )
    with op.batch_alter_table("image_image", schema=None) as batch_op:
        batch_op.create_index("ix_image_image_created", ["created_at"], unique=False)
        batch_op.create_index("ix_image_image_owner", ["owner"], unique=False)
        batch_op.create_index("ix_image_image_visibility", ["visibility"], unique=False)

    op.create_table(
        "image_member",
        sa.Column("image_id", sa.String(length=36), nullable=False),
        sa.Column("member", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["image_id"],
            ["image_image.id"],
            name=op.f("fk_image_member_image_id_image_image"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("image_id", "member", name=op.f("pk_image_member")),
    )
    with op.batch_alter_table("image_member", schema=None) as batch_op:
        batch_op.create_index("ix_image_member_member", ["member"], unique=False)

    op.create_table(
        "image_property",
        sa.Column("image_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("value", LONGTEXT, nullable=False),
        sa.ForeignKeyConstraint(
            ["image_id"],
            ["image_image.id"],
            name=op.f("fk_image_property_image_id_image_image"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("image_id", "name", name=op.f("pk_image_property")),
    )
    op.create_table(
        "image_tag",
        sa.Column("image_id", sa.String(length=36), nullable=False),
        sa.Column("value", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(
            ["image_id"],
            ["image_image.id"],
            name=op.f("fk_image_tag_image_id_image_image"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("image_id", "value", name=op.f("pk_image_tag")),
    )
    with op.batch_alter_table("image_tag", schema=None) as batch_op:
        batch_op.create_index("ix_image_tag_value", ["value"], unique=False)

    op.create_table(
        "image_task",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("image_id", sa.String(length=36), nullable=False),
        sa.Column("type", sa.String(length=30), nullable=False),
        sa.Column("status", sa.String(length=30), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=True),
        sa.Column("user_id", sa.String(length=64), nullable=True),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("input", sa.JSON(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("message", LONGTEXT, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=True),
        sa.ForeignKeyConstraint(
            ["image_id"],
            ["image_image.id"],
            name=op.f("fk_image_task_image_id_image_image"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_image_task")),
    )
    with op.batch_alter_table("image_task", schema=None) as batch_op:
        batch_op.create_index("ix_image_task_image", ["image_id"], unique=False)


def downgrade() -> None:
    # Dropping a table drops its indexes (MariaDB refuses to drop an index a foreign key
    # still uses, so the indexes are not dropped one by one first).
    for table in ("image_task", "image_tag", "image_property", "image_member", "image_image"):
        op.drop_table(table)
