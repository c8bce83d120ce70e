"""Image (Glance) tables.

Images are deleted for real (their rows, tags, properties, members and data go together);
custom properties live in their own table so list filters on them stay in SQL.

The metadata-definition catalog (``/v2/metadefs``) has its own tables: namespaces own their
objects, properties, tags and resource-type associations (deleted with the namespace).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import BigInteger, Boolean, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, MappedColumn, declared_attr, mapped_column

from onestack.db.base import Base, JSONDoc, LongText, Timestamps, indexes, owner_ref, uuid_key


class Image(Timestamps, Base):
    __tablename__ = "image_image"
    __table_args__ = indexes(__tablename__, owner="owner", visibility="visibility",
                             created="created_at")
    id: Mapped[str] = uuid_key()
    name: Mapped[str | None] = mapped_column(String(255), default=None)
    status: Mapped[str] = mapped_column(String(30), default="queued")
    visibility: Mapped[str] = mapped_column(String(20), default="shared")
    disk_format: Mapped[str | None] = mapped_column(String(20), default=None)
    container_format: Mapped[str | None] = mapped_column(String(20), default=None)
    size: Mapped[int | None] = mapped_column(BigInteger, default=None)
    virtual_size: Mapped[int | None] = mapped_column(BigInteger, default=None)
    checksum: Mapped[str | None] = mapped_column(String(32), default=None)
    os_hash_algo: Mapped[str | None] = mapped_column(String(64), default=None)
    os_hash_value: Mapped[str | None] = mapped_column(String(128), default=None)
    min_disk: Mapped[int] = mapped_column(Integer, default=0)
    min_ram: Mapped[int] = mapped_column(Integer, default=0)
    owner: Mapped[str | None] = mapped_column(String(64), default=None)
    protected: Mapped[bool] = mapped_column(Boolean, default=False)
    os_hidden: Mapped[bool] = mapped_column(Boolean, default=False)
    #: Store location of the data (``file:///...``); never shown to users.
    location: Mapped[str | None] = mapped_column(String(1024), default=None)
    #: Internal bookkeeping (staged data hashes, upload owner); never shown to users.
    internal: Mapped[dict[str, Any]] = mapped_column(JSONDoc, default=dict)


def _image_key() -> MappedColumn[str]:
    """The image a row belongs to, first part of the row's key (deleted with the image)."""
    return owner_ref("image_image.id", String(36), primary_key=True)


class ImageProperty(Base):
    __tablename__ = "image_property"
    image_id: Mapped[str] = _image_key()
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[str] = mapped_column(LongText)


class ImageTag(Base):
    __tablename__ = "image_tag"
    __table_args__ = indexes(__tablename__, value="value")
    image_id: Mapped[str] = _image_key()
    value: Mapped[str] = mapped_column(String(255), primary_key=True)


class ImageMember(Timestamps, Base):
    __tablename__ = "image_member"
    __table_args__ = indexes(__tablename__, member="member")
    image_id: Mapped[str] = _image_key()
    member: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(20), default="pending")


class ImageTask(Base):
    """An import task (``GET /v2/images/{id}/tasks``)."""

    __tablename__ = "image_task"
    __table_args__ = indexes(__tablename__, image="image_id")
    id: Mapped[str] = uuid_key()
    image_id: Mapped[str] = owner_ref("image_image.id", String(36))
    type: Mapped[str] = mapped_column(String(30), default="api_image_import")
    status: Mapped[str] = mapped_column(String(30), default="pending")
    owner: Mapped[str | None] = mapped_column(String(64), default=None)
    user_id: Mapped[str | None] = mapped_column(String(64), default=None)
    request_id: Mapped[str | None] = mapped_column(String(64), default=None)
    input: Mapped[dict[str, Any]] = mapped_column(JSONDoc, default=dict)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc, default=None)
    message: Mapped[str] = mapped_column(LongText, default="")
    created_at: Mapped[dt.datetime] = mapped_column()
    updated_at: Mapped[dt.datetime] = mapped_column()
    expires_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class MetadefNamespace(Timestamps, Base):
    """A metadata-definition namespace (the unit of ownership and visibility)."""

    __tablename__ = "image_metadef_namespace"
    __table_args__ = indexes(__tablename__, owner="owner")
    id: Mapped[str] = uuid_key()
    namespace: Mapped[str] = mapped_column(String(80), unique=True)
    display_name: Mapped[str | None] = mapped_column(String(80), default=None)
    description: Mapped[str | None] = mapped_column(LongText, default=None)
    visibility: Mapped[str] = mapped_column(String(32), default="private")
    protected: Mapped[bool] = mapped_column(Boolean, default=False)
    owner: Mapped[str | None] = mapped_column(String(255), default=None)


class MetadefResourceType(Timestamps, Base):
    """A kind of resource namespaces apply to (``OS::Glance::Image``, ...)."""

    __tablename__ = "image_metadef_resource_type"
    id: Mapped[str] = uuid_key()
    name: Mapped[str] = mapped_column(String(80), unique=True)
    protected: Mapped[bool] = mapped_column(Boolean, default=False)


class MetadefResourceTypeAssoc(Timestamps, Base):
    """Namespace <-> resource type, with the prefix its properties take on that resource."""

    __tablename__ = "image_metadef_rt_assoc"
    __table_args__ = indexes(__tablename__, resource_type_id="resource_type_id")
    namespace_id: Mapped[str] = owner_ref(
        "image_metadef_namespace.id", String(36), primary_key=True)
    resource_type_id: Mapped[str] = owner_ref(
        "image_metadef_resource_type.id", String(36), primary_key=True)
    prefix: Mapped[str | None] = mapped_column(String(80), default=None)
    properties_target: Mapped[str | None] = mapped_column(String(80), default=None)


class _NamespaceItem(Timestamps):
    """Mixin of a namespace's objects, properties and tags: an id, then the namespace (the
    item is deleted with it) ahead of the item's own columns; names (the item's own column,
    of its own length) are unique in a namespace."""

    id: Mapped[str] = uuid_key(sort_order=-1)
    namespace_id: Mapped[str] = owner_ref("image_metadef_namespace.id", String(36), sort_order=-1)

    @declared_attr.directive
    def __table_args__(cls) -> tuple[UniqueConstraint]:
        return (UniqueConstraint("namespace_id", "name"),)


class MetadefObject(_NamespaceItem, Base):
    """A named group of property definitions inside a namespace."""

    __tablename__ = "image_metadef_object"
    name: Mapped[str] = mapped_column(String(80))
    description: Mapped[str | None] = mapped_column(LongText, default=None)
    required: Mapped[list[str] | None] = mapped_column(JSONDoc, default=None)
    #: ``{property name: JSON-schema fragment}``.
    properties: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc, default=None)


class MetadefProperty(_NamespaceItem, Base):
    """A property definition (a JSON-schema fragment: title, type, enum, ...)."""

    __tablename__ = "image_metadef_property"
    name: Mapped[str] = mapped_column(String(255))
    schema: Mapped[dict[str, Any]] = mapped_column(JSONDoc, default=dict)


class MetadefTag(_NamespaceItem, Base):
    __tablename__ = "image_metadef_tag"
    name: Mapped[str] = mapped_column(String(255))
