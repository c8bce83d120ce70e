"""Volume (Cinder) tables: volumes, snapshots, volume types and quotas.

Rows are deleted outright (Cinder soft-deletes; nothing here reads deleted rows). A volume's
data lives with the storage driver; ``provider_location`` is the driver's name for it, so a
row and its data can be reconciled after a crash.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Boolean, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from onestack.db.base import Base, JSONDoc, TimestampsNullUntilUpdated, indexes, uuid_key


class _Owned:
    """Mixin of a volume, snapshot, backup or group: its id, the project and user owning it,
    its name and description, ahead of the table's own columns (the id first: a column the
    table puts between the id and the owner, such as a snapshot's volume, takes
    ``sort_order=-2``)."""

    id: Mapped[str] = uuid_key(sort_order=-3)
    project_id: Mapped[str] = mapped_column(String(64), default="", sort_order=-1)
    user_id: Mapped[str] = mapped_column(String(64), default="", sort_order=-1)
    name: Mapped[str | None] = mapped_column(String(255), default=None, sort_order=-1)
    description: Mapped[str | None] = mapped_column(String(255), default=None, sort_order=-1)


class Volume(_Owned, TimestampsNullUntilUpdated, Base):
    __tablename__ = "volume_volume"
    __table_args__ = indexes(__tablename__, project="project_id")
    size: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(String(32), default="creating")
    attach_status: Mapped[str] = mapped_column(String(32), default="detached")
    availability_zone: Mapped[str] = mapped_column(String(255), default="nova")
    volume_type_id: Mapped[str | None] = mapped_column(String(36), default=None)
    bootable: Mapped[bool] = mapped_column(Boolean, default=False)
    multiattach: Mapped[bool] = mapped_column(Boolean, default=False)
    snapshot_id: Mapped[str | None] = mapped_column(String(36), default=None)
    source_volid: Mapped[str | None] = mapped_column(String(36), default=None)
    host: Mapped[str | None] = mapped_column(String(255), default=None)
    provider_location: Mapped[str | None] = mapped_column(String(255), default=None)
    metadata_: Mapped[dict[str, str]] = mapped_column("metadata", JSONDoc, default=dict)
    admin_metadata: Mapped[dict[str, str]] = mapped_column(JSONDoc, default=dict)
    image_metadata: Mapped[dict[str, str]] = mapped_column(JSONDoc, default=dict)
    group_id: Mapped[str | None] = mapped_column(String(36), default=None)
    #: Attachments recorded through the attach actions: ``{id, server_id, host_name,
    #: device, attached_at, attach_mode}`` each.
    attachments: Mapped[list[dict[str, Any]]] = mapped_column(JSONDoc, default=list)


class Snapshot(_Owned, TimestampsNullUntilUpdated, Base):
    __tablename__ = "volume_snapshot"
    __table_args__ = indexes(__tablename__, volume="volume_id", project="project_id")
    volume_id: Mapped[str] = mapped_column(String(36), sort_order=-2)
    size: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(String(32), default="creating")
    progress: Mapped[str] = mapped_column(String(16), default="0%")
    group_snapshot_id: Mapped[str | None] = mapped_column(String(36), default=None)
    provider_location: Mapped[str | None] = mapped_column(String(255), default=None)
    metadata_: Mapped[dict[str, str]] = mapped_column("metadata", JSONDoc, default=dict)


class VolumeType(Base):
    __tablename__ = "volume_type"
    id: Mapped[str] = uuid_key()
    name: Mapped[str] = mapped_column(String(255), unique=True)
    description: Mapped[str | None] = mapped_column(String(255), default=None)
    is_public: Mapped[bool] = mapped_column(Boolean, default=True)
    extra_specs: Mapped[dict[str, str]] = mapped_column(JSONDoc, default=dict)
    projects: Mapped[list[str]] = mapped_column(JSONDoc, default=list)
    qos_specs_id: Mapped[str | None] = mapped_column(String(36), default=None)
    created_at: Mapped[dt.datetime] = mapped_column()


class VolumeTypeEncryption(TimestampsNullUntilUpdated, Base):
    """The encryption a volume type asks for (Cinder's ``encryption`` of a type): at most
    one per type."""

    __tablename__ = "volume_type_encryption"
    volume_type_id: Mapped[str] = uuid_key()
    encryption_id: Mapped[str] = mapped_column(String(36))
    provider: Mapped[str] = mapped_column(String(255))
    cipher: Mapped[str | None] = mapped_column(String(255), default=None)
    key_size: Mapped[int | None] = mapped_column(Integer, default=None)
    control_location: Mapped[str] = mapped_column(String(16))


class QosSpecs(Base):
    """Named QoS specs (``consumer`` back-end, front-end or both) that types point to."""

    __tablename__ = "volume_qos_specs"
    id: Mapped[str] = uuid_key()
    name: Mapped[str] = mapped_column(String(255), unique=True)
    consumer: Mapped[str] = mapped_column(String(16), default="back-end")
    specs: Mapped[dict[str, str]] = mapped_column(JSONDoc, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column()


class Transfer(Base):
    """A volume offered to another project: whoever presents the id and the auth key (kept
    as a salted hash) takes it."""

    __tablename__ = "volume_transfer"
    __table_args__ = indexes(__tablename__, project="project_id")
    id: Mapped[str] = uuid_key()
    volume_id: Mapped[str] = mapped_column(String(36))
    project_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str | None] = mapped_column(String(255), default=None)
    salt: Mapped[str] = mapped_column(String(64))
    key_hash: Mapped[str] = mapped_column(String(128))
    no_snapshots: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column()


class Backup(_Owned, TimestampsNullUntilUpdated, Base):
    """A copy of a volume's data in the backup directory (full, or incremental on a
    parent)."""

    __tablename__ = "volume_backup"
    __table_args__ = indexes(__tablename__, project="project_id", volume="volume_id")
    volume_id: Mapped[str] = mapped_column(String(36), sort_order=-2)
    status: Mapped[str] = mapped_column(String(32), default="creating")
    size: Mapped[int] = mapped_column(Integer, default=0)
    object_count: Mapped[int] = mapped_column(Integer, default=0)
    container: Mapped[str | None] = mapped_column(String(255), default=None)
    parent_id: Mapped[str | None] = mapped_column(String(36), default=None)
    snapshot_id: Mapped[str | None] = mapped_column(String(36), default=None)
    #: The directory of the backup store holding its data (its own id, or for an
    #: imported record the id it was exported with).
    service_metadata: Mapped[str | None] = mapped_column(String(255), default=None)
    fail_reason: Mapped[str | None] = mapped_column(String(255), default=None)
    availability_zone: Mapped[str] = mapped_column(String(255), default="nova")
    metadata_: Mapped[dict[str, str]] = mapped_column("metadata", JSONDoc, default=dict)
    data_timestamp: Mapped[dt.datetime | None] = mapped_column(default=None)


class Message(Base):
    """A user message: why an asynchronous operation failed (Cinder's ``messages``)."""

    __tablename__ = "volume_message"
    __table_args__ = indexes(__tablename__, project="project_id")
    id: Mapped[str] = uuid_key()
    project_id: Mapped[str] = mapped_column(String(64))
    resource_type: Mapped[str] = mapped_column(String(64))
    resource_uuid: Mapped[str | None] = mapped_column(String(36), default=None)
    event_id: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(String(255))
    request_id: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[dt.datetime] = mapped_column()
    expires_at: Mapped[dt.datetime] = mapped_column()


class GroupType(Base):
    __tablename__ = "volume_group_type"
    id: Mapped[str] = uuid_key()
    name: Mapped[str] = mapped_column(String(255), unique=True)
    description: Mapped[str | None] = mapped_column(String(255), default=None)
    is_public: Mapped[bool] = mapped_column(Boolean, default=True)
    group_specs: Mapped[dict[str, str]] = mapped_column(JSONDoc, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column()


class Group(_Owned, Base):
    """A group of volumes snapshotted together (Cinder's generic volume groups)."""

    __tablename__ = "volume_group"
    __table_args__ = indexes(__tablename__, project="project_id")
    status: Mapped[str] = mapped_column(String(32), default="creating")
    group_type_id: Mapped[str] = mapped_column(String(36))
    volume_type_ids: Mapped[list[str]] = mapped_column(JSONDoc, default=list)
    availability_zone: Mapped[str] = mapped_column(String(255), default="nova")
    group_snapshot_id: Mapped[str | None] = mapped_column(String(36), default=None)
    source_group_id: Mapped[str | None] = mapped_column(String(36), default=None)
    created_at: Mapped[dt.datetime] = mapped_column()


class GroupSnapshot(Base):
    __tablename__ = "volume_group_snapshot"
    __table_args__ = indexes(__tablename__, project="project_id")
    id: Mapped[str] = uuid_key()
    project_id: Mapped[str] = mapped_column(String(64), default="")
    group_id: Mapped[str] = mapped_column(String(36))
    group_type_id: Mapped[str] = mapped_column(String(36))
    name: Mapped[str | None] = mapped_column(String(255), default=None)
    description: Mapped[str | None] = mapped_column(String(255), default=None)
    status: Mapped[str] = mapped_column(String(32), default="creating")
    created_at: Mapped[dt.datetime] = mapped_column()


class VolumeQuota(Base):
    """A project's own limit for one resource (the class defaults are settings)."""

    __tablename__ = "volume_quota"
    project_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    resource: Mapped[str] = mapped_column(String(255), primary_key=True)
    hard_limit: Mapped[int] = mapped_column(Integer)
