"""Compute (Nova) tables.

Instances are soft-deleted (``deleted`` + ``deleted_at``) so ``changes-since`` listings and
usage reports still see them; everything else is deleted for real. Per-instance metadata is a
JSON document on the row (it is always read with the instance); tags live in their own table
so the ``tags``/``tags-any`` list filters stay in SQL.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import BigInteger, Boolean, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from onestack.db.base import (
    Base,
    JSONDoc,
    LongText,
    SerialWithUUID,
    TimestampsNullUntilUpdated,
    indexes,
    owner_ref,
    serial_key,
    uuid_key,
)


class Flavor(TimestampsNullUntilUpdated, Base):
    __tablename__ = "compute_flavor"
    __table_args__ = (UniqueConstraint("flavorid"), UniqueConstraint("name"))
    id: Mapped[int] = serial_key()
    flavorid: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(255))
    memory_mb: Mapped[int] = mapped_column(Integer)
    vcpus: Mapped[int] = mapped_column(Integer)
    root_gb: Mapped[int] = mapped_column(Integer, default=0)
    ephemeral_gb: Mapped[int] = mapped_column(Integer, default=0)
    swap: Mapped[int] = mapped_column(Integer, default=0)
    rxtx_factor: Mapped[float] = mapped_column(default=1.0)
    is_public: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    description: Mapped[str | None] = mapped_column(LongText, default=None)
    extra_specs: Mapped[dict[str, Any]] = mapped_column(JSONDoc, default=dict)


class FlavorAccess(Base):
    __tablename__ = "compute_flavor_access"
    flavor_id: Mapped[int] = owner_ref("compute_flavor.id", Integer(), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(255), primary_key=True)


class KeyPair(Base):
    __tablename__ = "compute_keypair"
    user_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(255))
    public_key: Mapped[str] = mapped_column(LongText)
    type: Mapped[str] = mapped_column(String(16), default="ssh")
    created_at: Mapped[dt.datetime] = mapped_column()


class Instance(Base):
    __tablename__ = "compute_instance"
    __table_args__ = indexes(__tablename__, project=("project_id", "deleted"), host="host",
                             created="created_at", updated="updated_at")
    uuid: Mapped[str] = uuid_key()
    display_name: Mapped[str] = mapped_column(String(255), default="")
    display_description: Mapped[str | None] = mapped_column(LongText, default=None)
    project_id: Mapped[str] = mapped_column(String(255))
    user_id: Mapped[str] = mapped_column(String(255))
    host: Mapped[str | None] = mapped_column(String(255), default=None)
    node: Mapped[str | None] = mapped_column(String(255), default=None)
    #: The flavor the instance runs with (a snapshot: later flavor edits do not change it).
    flavor: Mapped[dict[str, Any]] = mapped_column(JSONDoc, default=dict)
    #: Resize bookkeeping: the old/new flavor while a resize waits for confirmation.
    old_flavor: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc, default=None)
    new_flavor: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc, default=None)
    vcpus: Mapped[int] = mapped_column(Integer, default=0)
    memory_mb: Mapped[int] = mapped_column(Integer, default=0)
    root_gb: Mapped[int] = mapped_column(Integer, default=0)
    image_ref: Mapped[str] = mapped_column(String(255), default="")
    vm_state: Mapped[str] = mapped_column(String(32), default="building")
    task_state: Mapped[str | None] = mapped_column(String(32), default=None)
    power_state: Mapped[int] = mapped_column(Integer, default=0)
    key_name: Mapped[str | None] = mapped_column(String(255), default=None)
    key_data: Mapped[str | None] = mapped_column(LongText, default=None)
    user_data: Mapped[str | None] = mapped_column(LongText, default=None)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSONDoc, default=dict)
    #: Internal facts (image properties, requested networks, security groups, retries).
    system_metadata: Mapped[dict[str, Any]] = mapped_column(JSONDoc, default=dict)
    locked: Mapped[bool] = mapped_column(Boolean, default=False)
    locked_by: Mapped[str | None] = mapped_column(String(16), default=None)
    locked_reason: Mapped[str | None] = mapped_column(String(255), default=None)
    availability_zone: Mapped[str | None] = mapped_column(String(255), default=None)
    config_drive: Mapped[str] = mapped_column(String(16), default="")
    access_ip_v4: Mapped[str | None] = mapped_column(String(64), default=None)
    access_ip_v6: Mapped[str | None] = mapped_column(String(64), default=None)
    hostname: Mapped[str] = mapped_column(String(255), default="")
    launch_index: Mapped[int] = mapped_column(Integer, default=0)
    reservation_id: Mapped[str] = mapped_column(String(255), default="")
    progress: Mapped[int] = mapped_column(Integer, default=0)
    fault: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc, default=None)
    launched_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    terminated_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    created_at: Mapped[dt.datetime] = mapped_column()
    updated_at: Mapped[dt.datetime] = mapped_column()
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    deleted_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class InstanceTag(Base):
    __tablename__ = "compute_instance_tag"
    __table_args__ = indexes(__tablename__, tag="tag")
    instance_uuid: Mapped[str] = owner_ref("compute_instance.uuid", String(36), primary_key=True)
    tag: Mapped[str] = mapped_column(String(80), primary_key=True)


class InstanceAction(Base):
    __tablename__ = "compute_instance_action"
    __table_args__ = indexes(__tablename__, instance="instance_uuid")
    id: Mapped[int] = serial_key()
    instance_uuid: Mapped[str] = mapped_column(String(36))
    action: Mapped[str] = mapped_column(String(255))
    request_id: Mapped[str] = mapped_column(String(255))
    project_id: Mapped[str | None] = mapped_column(String(255), default=None)
    user_id: Mapped[str | None] = mapped_column(String(255), default=None)
    message: Mapped[str | None] = mapped_column(String(255), default=None)
    start_time: Mapped[dt.datetime] = mapped_column()
    finish_time: Mapped[dt.datetime | None] = mapped_column(default=None)
    updated_at: Mapped[dt.datetime] = mapped_column()
    #: Events (name, start_time, finish_time, result, host) as a list of documents.
    events: Mapped[list[dict[str, Any]]] = mapped_column(JSONDoc, default=list)


class Service(SerialWithUUID, TimestampsNullUntilUpdated, Base):
    __tablename__ = "compute_service"
    __table_args__ = (UniqueConstraint("host", "binary"),)
    host: Mapped[str] = mapped_column(String(255))
    binary: Mapped[str] = mapped_column(String(255))
    topic: Mapped[str] = mapped_column(String(255))
    zone: Mapped[str] = mapped_column(String(255), default="internal")
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    disabled_reason: Mapped[str | None] = mapped_column(String(255), default=None)
    forced_down: Mapped[bool] = mapped_column(Boolean, default=False)
    report_count: Mapped[int] = mapped_column(Integer, default=0)
    last_seen_up: Mapped[dt.datetime | None] = mapped_column(default=None)


class ComputeNode(SerialWithUUID, TimestampsNullUntilUpdated, Base):
    """A hypervisor: capacity, usage counters (kept by atomic claims) and facts."""

    __tablename__ = "compute_node"
    __table_args__ = (UniqueConstraint("hypervisor_hostname"),)
    host: Mapped[str] = mapped_column(String(255))
    hypervisor_hostname: Mapped[str] = mapped_column(String(255))
    hypervisor_type: Mapped[str] = mapped_column(String(255), default="fake")
    hypervisor_version: Mapped[int] = mapped_column(Integer, default=1000)
    host_ip: Mapped[str] = mapped_column(String(64), default="127.0.0.1")
    vcpus: Mapped[int] = mapped_column(Integer, default=0)
    memory_mb: Mapped[int] = mapped_column(BigInteger, default=0)
    local_gb: Mapped[int] = mapped_column(BigInteger, default=0)
    vcpus_used: Mapped[int] = mapped_column(Integer, default=0)
    memory_mb_used: Mapped[int] = mapped_column(BigInteger, default=0)
    local_gb_used: Mapped[int] = mapped_column(BigInteger, default=0)
    running_vms: Mapped[int] = mapped_column(Integer, default=0)
    cpu_allocation_ratio: Mapped[float] = mapped_column(default=16.0)
    ram_allocation_ratio: Mapped[float] = mapped_column(default=1.5)
    disk_allocation_ratio: Mapped[float] = mapped_column(default=1.0)
    cpu_info: Mapped[dict[str, Any]] = mapped_column(JSONDoc, default=dict)
    capabilities: Mapped[dict[str, Any]] = mapped_column(JSONDoc, default=dict)


class Allocation(Base):
    """Resources one instance holds on one node (released on delete/move)."""

    __tablename__ = "compute_allocation"
    __table_args__ = indexes(__tablename__, node="node_id")
    instance_uuid: Mapped[str] = uuid_key()
    node_id: Mapped[int] = owner_ref("compute_node.id", Integer(), primary_key=True)
    vcpus: Mapped[int] = mapped_column(Integer, default=0)
    memory_mb: Mapped[int] = mapped_column(Integer, default=0)
    disk_gb: Mapped[int] = mapped_column(Integer, default=0)


class Aggregate(SerialWithUUID, TimestampsNullUntilUpdated, Base):
    __tablename__ = "compute_aggregate"
    name: Mapped[str] = mapped_column(String(255), unique=True)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSONDoc, default=dict)


class AggregateHost(Base):
    __tablename__ = "compute_aggregate_host"
    aggregate_id: Mapped[int] = owner_ref("compute_aggregate.id", Integer(), primary_key=True)
    host: Mapped[str] = mapped_column(String(255), primary_key=True)


class ServerGroup(Base):
    __tablename__ = "compute_server_group"
    __table_args__ = indexes(__tablename__, project="project_id")
    uuid: Mapped[str] = uuid_key()
    name: Mapped[str] = mapped_column(String(255))
    project_id: Mapped[str] = mapped_column(String(255))
    user_id: Mapped[str] = mapped_column(String(255))
    policy: Mapped[str] = mapped_column(String(64))
    rules: Mapped[dict[str, Any]] = mapped_column(JSONDoc, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column()


class ServerGroupMember(Base):
    __tablename__ = "compute_server_group_member"
    __table_args__ = indexes(__tablename__, instance="instance_uuid")
    group_uuid: Mapped[str] = owner_ref("compute_server_group.uuid", String(36), primary_key=True)
    instance_uuid: Mapped[str] = uuid_key()


class Quota(Base):
    """A project's (or, with ``user_id``, a user's) hard limit of one resource."""

    __tablename__ = "compute_quota"
    project_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(255), primary_key=True, default="")
    resource: Mapped[str] = mapped_column(String(255), primary_key=True)
    hard_limit: Mapped[int] = mapped_column(Integer)


class QuotaClass(Base):
    __tablename__ = "compute_quota_class"
    class_name: Mapped[str] = mapped_column(String(255), primary_key=True)
    resource: Mapped[str] = mapped_column(String(255), primary_key=True)
    hard_limit: Mapped[int] = mapped_column(Integer)


class Migration(SerialWithUUID, TimestampsNullUntilUpdated, Base):
    __tablename__ = "compute_migration"
    __table_args__ = indexes(__tablename__, instance="instance_uuid")
    instance_uuid: Mapped[str] = mapped_column(String(36))
    project_id: Mapped[str | None] = mapped_column(String(255), default=None)
    user_id: Mapped[str | None] = mapped_column(String(255), default=None)
    source_compute: Mapped[str | None] = mapped_column(String(255), default=None)
    dest_compute: Mapped[str | None] = mapped_column(String(255), default=None)
    source_node: Mapped[str | None] = mapped_column(String(255), default=None)
    dest_node: Mapped[str | None] = mapped_column(String(255), default=None)
    old_flavor_id: Mapped[str | None] = mapped_column(String(255), default=None)
    new_flavor_id: Mapped[str | None] = mapped_column(String(255), default=None)
    migration_type: Mapped[str] = mapped_column(String(32), default="migration")
    status: Mapped[str] = mapped_column(String(32), default="pre-migrating")
