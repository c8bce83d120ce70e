"""Placement tables: resource providers, their inventories, traits and aggregates, consumers
and the allocations consumers hold against providers.

Standard resource classes and traits are not stored: they are constants of the code (the
``os-traits`` package lists the traits), so only ``CUSTOM_*`` names live in tables. Resource
classes and traits are referenced by name, which keeps the capacity queries to one join.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Double, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, MappedColumn, mapped_column

from onestack.db.base import (
    Base,
    SerialWithUUID,
    Timestamps,
    indexes,
    owner_ref,
    serial_key,
    uuid_key,
)


def _provider_key(fk_name: str) -> MappedColumn[int]:
    """The provider a row describes, part of the row's key: the row goes with the provider
    (``fk_name`` names the foreign key)."""
    return owner_ref("placement_resource_provider.id", Integer(), primary_key=True, fk_name=fk_name)


class ResourceProvider(SerialWithUUID, Timestamps, Base):
    """A provider of resources (a compute node, a NUMA cell, a shared storage pool...).

    ``generation`` is bumped by every change to the provider's inventory, traits, aggregates
    and allocations; writers compare-and-swap it so concurrent updates are detected.
    """

    __tablename__ = "placement_resource_provider"
    __table_args__ = indexes(__tablename__, root="root_provider_id",
                             parent="parent_provider_id")
    name: Mapped[str] = mapped_column(String(200), unique=True)
    generation: Mapped[int] = mapped_column(Integer, default=0)
    parent_provider_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("placement_resource_provider.id", name="fk_placement_rp_parent"),
        default=None)
    #: The provider's own id for a root (set right after the insert).
    root_provider_id: Mapped[int | None] = mapped_column(Integer, default=None)


class Inventory(Base):
    """How much of one resource class a provider has, and how it may be consumed."""

    __tablename__ = "placement_inventory"
    resource_provider_id: Mapped[int] = _provider_key("fk_placement_inventory_rp")
    resource_class: Mapped[str] = mapped_column(String(255), primary_key=True)
    total: Mapped[int] = mapped_column(Integer)
    reserved: Mapped[int] = mapped_column(Integer, default=0)
    min_unit: Mapped[int] = mapped_column(Integer, default=1)
    max_unit: Mapped[int] = mapped_column(Integer, default=2147483647)
    step_size: Mapped[int] = mapped_column(Integer, default=1)
    allocation_ratio: Mapped[float] = mapped_column(Double, default=1.0)
    updated_at: Mapped[dt.datetime] = mapped_column()


class Consumer(Timestamps, Base):
    """Something holding allocations (an instance, a migration...), with its owner."""

    __tablename__ = "placement_consumer"
    __table_args__ = indexes(__tablename__, project_user=("project_id", "user_id"))
    uuid: Mapped[str] = uuid_key()
    project_id: Mapped[str] = mapped_column(String(255))
    user_id: Mapped[str] = mapped_column(String(255))
    generation: Mapped[int] = mapped_column(Integer, default=0)
    consumer_type: Mapped[str | None] = mapped_column(String(255), default=None)


class Allocation(Base):
    """``used`` units of one resource class a consumer holds on one provider."""

    __tablename__ = "placement_allocation"
    __table_args__ = (
        UniqueConstraint("consumer_id", "resource_provider_id", "resource_class",
                         name="uq_placement_allocation_consumer_rp_rc"),
        *indexes(__tablename__, provider_class=("resource_provider_id", "resource_class")),
    )
    id: Mapped[int] = serial_key()
    resource_provider_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("placement_resource_provider.id", name="fk_placement_allocation_rp"))
    consumer_id: Mapped[str] = mapped_column(String(36))
    resource_class: Mapped[str] = mapped_column(String(255))
    used: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column()


class ProviderTrait(Base):
    __tablename__ = "placement_provider_trait"
    __table_args__ = indexes(__tablename__, trait="trait")
    resource_provider_id: Mapped[int] = _provider_key("fk_placement_provider_trait_rp")
    trait: Mapped[str] = mapped_column(String(255), primary_key=True)


class ProviderAggregate(Base):
    __tablename__ = "placement_provider_aggregate"
    __table_args__ = indexes(__tablename__, aggregate="aggregate_uuid")
    resource_provider_id: Mapped[int] = _provider_key("fk_placement_provider_aggregate_rp")
    aggregate_uuid: Mapped[str] = uuid_key()


class CustomResourceClass(Base):
    """A ``CUSTOM_*`` resource class (standard classes are constants of the code)."""

    __tablename__ = "placement_resource_class"
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column()


class CustomTrait(Base):
    """A ``CUSTOM_*`` trait (standard traits come from ``os-traits``)."""

    __tablename__ = "placement_trait"
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column()
