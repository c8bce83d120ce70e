"""image metadefs: metadata-definition catalog (namespaces, objects, properties, tags,
resource types)

Revision ID: 0008_image_metadefs
Revises: 0002_image
Create Date: 2026-11-23 06:31:27.521907
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0008_image_metadefs"
down_revision = "0002_image"
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
        "image_metadef_namespace",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("namespace", sa.String(length=80), nullable=False),
        sa.Column("display_name", sa.String(length=80), nullable=True),
        sa.Column("description", LONGTEXT, nullable=True),
        sa.Column("visibility", sa.String(length=32), nullable=False),
        sa.Column("protected", sa.Boolean(), nullable=False),
        sa.Column("owner", sa.String(length=255), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_image_metadef_namespace")),
        sa.UniqueConstraint("namespace", name=op.f("uq_image_metadef_namespace_namespace")),
    )
    with op.batch_alter_table("image_metadef_namespace", schema=None) as batch_op:
        batch_op.create_index("ix_image_metadef_namespace_owner", ["owner"], unique=False)

    op.create_table(
        "image_metadef_resource_type",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("protected", sa.Boolean(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_image_metadef_resource_type")),
        sa.UniqueConstraint("name", name=op.f("uq_image_metadef_resource_type_name")),
    )
    op.create_table(
        "image_metadef_object",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("namespace_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("description", LONGTEXT, nullable=True),
        sa.Column("required", sa.JSON(), nullable=True),
        sa.Column("properties", sa.JSON(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["namespace_id"],
            ["image_metadef_namespace.id"],
            name=op.f("fk_image_metadef_object_namespace_id_image_metadef_namespace"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_image_metadef_object")),
        sa.UniqueConstraint(
            "namespace_id", "name", name=op.f("uq_image_metadef_object_namespace_id_name")
        ),
    )
    op.create_table(
        "image_metadef_property",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("namespace_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("schema", sa.JSON(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["namespace_id"],
            ["image_metadef_namespace.id"],
            name=op.f("fk_image_metadef_property_namespace_id_image_metadef_namespace"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_image_metadef_property")),
        sa.UniqueConstraint(
            "namespace_id", "name", name=op.f("uq_image_metadef_property_namespace_id_name")
        ),
    )
    op.create_table(
        "image_metadef_rt_assoc",
        sa.Column("namespace_id", sa.String(length=36), nullable=False),
        sa.Column("resource_type_id", sa.String(length=36), nullable=False),
        sa.Column("prefix", sa.String(length=80), nullable=True),
        sa.Column("properties_target", sa.String(length=80), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["namespace_id"],
            ["image_metadef_namespace.id"],
            name=op.f("fk_image_metadef_rt_assoc_namespace_id_image_metadef_namespace"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["resource_type_id"],
            ["image_metadef_resource_type.id"],
            name=op.f("fk_image_metadef_rt_assoc_resource_type_id_image_metadef_resource_type"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "namespace_id", "resource_type_id", name=op.f("pk_image_metadef_rt_assoc")
        ),
    )
    with op.batch_alter_table("image_metadef_rt_assoc", schema=None) as batch_op:
        batch_op.create_index(
            "ix_image_metadef_rt_assoc_resource_type_id", ["resource_type_id"], unique=False
        )

    op.create_table(
        "image_metadef_tag",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("namespace_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["namespace_id"],
            ["image_metadef_namespace.id"],
            name=op.f("fk_image_metadef_tag_namespace_id_image_metadef_namespace"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_image_metadef_tag")),
        sa.UniqueConstraint(
            "namespace_id", "name", name=op.f("uq_image_metadef_tag_namespace_id_name")
        ),
    )


def downgrade() -> None:
    # Dropping a table drops its indexes (MariaDB refuses to drop an index a foreign key
    # still uses).
    for table in (
        "image_metadef_tag",
        "image_metadef_rt_assoc",
        "image_metadef_property",
        "image_metadef_object",
        "image_metadef_resource_type",
        "image_metadef_namespace",
    ):
        op.drop_table(table)
