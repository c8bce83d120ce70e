"""Network (Neutron) tables.

Every user-visible resource carries Neutron's standard attributes (``description``,
``revision_number``, ``created_at``/``updated_at``). IP addresses live in
``net_ip_allocation`` whose primary key ``(subnet_id, ip_address)`` makes a double
allocation impossible whatever the concurrency; deleting a port cascades to its allocations,
which returns the addresses to the pool. Segment ids are claimed the same way in
``net_segment_allocation``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, declared_attr, mapped_column

from onestack.db.base import Base, JSONDoc, Timestamps, indexes, owner_ref, uuid_key


class _Standard(Timestamps):
    """Neutron's standard attributes."""

    description: Mapped[str] = mapped_column(String(255), default="")
    revision_number: Mapped[int] = mapped_column(Integer, default=0)


class _ProjectResource:
    """Mixin of a project's named resource (network, address scope, subnet pool, security
    group, router): its id, project and name ahead of the table's own columns, and the
    index on the project (``ix_<table>_project``) that project-scoped listings use."""

    id: Mapped[str] = uuid_key(sort_order=-1)
    project_id: Mapped[str] = mapped_column(String(64), default="", sort_order=-1)
    name: Mapped[str] = mapped_column(String(255), default="", sort_order=-1)

    @declared_attr.directive
    def __table_args__(cls) -> tuple[Index, ...]:
        return indexes(cls.__tablename__, project="project_id")


class Network(_ProjectResource, _Standard, Base):
    __tablename__ = "net_network"
    admin_state_up: Mapped[bool] = mapped_column(Boolean, default=True)
    status: Mapped[str] = mapped_column(String(16), default="ACTIVE")
    shared: Mapped[bool] = mapped_column(Boolean, default=False)
    external: Mapped[bool] = mapped_column(Boolean, default=False)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    network_type: Mapped[str] = mapped_column(String(32), default="local")
    physical_network: Mapped[str | None] = mapped_column(String(64), default=None)
    segmentation_id: Mapped[int | None] = mapped_column(Integer, default=None)
    mtu: Mapped[int] = mapped_column(Integer, default=1500)
    port_security_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    availability_zone_hints: Mapped[list[str]] = mapped_column(JSONDoc, default=list)
    dns_domain: Mapped[str] = mapped_column(String(255), default="")


class SegmentAllocation(Base):
    """A claimed (type, physical network, id); flat networks claim id 0 of their physnet."""

    __tablename__ = "net_segment_allocation"
    network_type: Mapped[str] = mapped_column(String(32), primary_key=True)
    physical_network: Mapped[str] = mapped_column(String(64), primary_key=True)
    segmentation_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    network_id: Mapped[str] = owner_ref("net_network.id", String(36))


class AddressScope(_ProjectResource, Base):
    """A Neutron address scope: subnet pools bound to one share a non-overlapping address
    space (Neutron gives address scopes no standard attributes)."""

    __tablename__ = "net_address_scope"
    ip_version: Mapped[int] = mapped_column(Integer, default=4)
    shared: Mapped[bool] = mapped_column(Boolean, default=False)


class SubnetPool(_ProjectResource, _Standard, Base):
    __tablename__ = "net_subnetpool"
    ip_version: Mapped[int] = mapped_column(Integer, default=4)
    prefixes: Mapped[list[str]] = mapped_column(JSONDoc, default=list)
    default_prefixlen: Mapped[int] = mapped_column(Integer, default=0)
    min_prefixlen: Mapped[int] = mapped_column(Integer, default=0)
    max_prefixlen: Mapped[int] = mapped_column(Integer, default=0)
    shared: Mapped[bool] = mapped_column(Boolean, default=False)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    default_quota: Mapped[int | None] = mapped_column(Integer, default=None)
    address_scope_id: Mapped[str | None] = mapped_column(String(36), default=None)


class Subnet(_Standard, Base):
    __tablename__ = "net_subnet"
    __table_args__ = indexes(__tablename__, network="network_id", project="project_id")
    id: Mapped[str] = uuid_key()
    network_id: Mapped[str] = owner_ref("net_network.id", String(36))
    project_id: Mapped[str] = mapped_column(String(64), default="")
    name: Mapped[str] = mapped_column(String(255), default="")
    ip_version: Mapped[int] = mapped_column(Integer, default=4)
    cidr: Mapped[str] = mapped_column(String(64))
    gateway_ip: Mapped[str | None] = mapped_column(String(64), default=None)
    enable_dhcp: Mapped[bool] = mapped_column(Boolean, default=True)
    ipv6_ra_mode: Mapped[str | None] = mapped_column(String(32), default=None)
    ipv6_address_mode: Mapped[str | None] = mapped_column(String(32), default=None)
    subnetpool_id: Mapped[str | None] = mapped_column(String(36), default=None)
    allocation_pools: Mapped[list[dict[str, str]]] = mapped_column(JSONDoc, default=list)
    dns_nameservers: Mapped[list[str]] = mapped_column(JSONDoc, default=list)
    host_routes: Mapped[list[dict[str, str]]] = mapped_column(JSONDoc, default=list)
    service_types: Mapped[list[str]] = mapped_column(JSONDoc, default=list)


class Port(_Standard, Base):
    __tablename__ = "net_port"
    __table_args__ = (UniqueConstraint("network_id", "mac_address"),
                      *indexes(__tablename__, project="project_id", device="device_id"))
    id: Mapped[str] = uuid_key()
    network_id: Mapped[str] = owner_ref("net_network.id", String(36))
    project_id: Mapped[str] = mapped_column(String(64), default="")
    name: Mapped[str] = mapped_column(String(255), default="")
    mac_address: Mapped[str] = mapped_column(String(32))
    admin_state_up: Mapped[bool] = mapped_column(Boolean, default=True)
    status: Mapped[str] = mapped_column(String(16), default="DOWN")
    device_id: Mapped[str] = mapped_column(String(255), default="")
    device_owner: Mapped[str] = mapped_column(String(255), default="")
    port_security_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    allowed_address_pairs: Mapped[list[dict[str, str]]] = mapped_column(JSONDoc, default=list)
    extra_dhcp_opts: Mapped[list[dict[str, Any]]] = mapped_column(JSONDoc, default=list)
    binding_host_id: Mapped[str] = mapped_column(String(255), default="")
    binding_vnic_type: Mapped[str] = mapped_column(String(64), default="normal")
    binding_vif_type: Mapped[str] = mapped_column(String(64), default="unbound")
    binding_profile: Mapped[dict[str, Any]] = mapped_column(JSONDoc, default=dict)
    binding_vif_details: Mapped[dict[str, Any]] = mapped_column(JSONDoc, default=dict)
    dns_name: Mapped[str] = mapped_column(String(255), default="")


class IPAllocation(Base):
    """One fixed IP of a port; the primary key forbids handing an address out twice."""

    __tablename__ = "net_ip_allocation"
    __table_args__ = indexes(__tablename__, port="port_id")
    subnet_id: Mapped[str] = owner_ref("net_subnet.id", String(36), primary_key=True)
    ip_address: Mapped[str] = mapped_column(String(64), primary_key=True)
    port_id: Mapped[str] = owner_ref("net_port.id", String(36))
    network_id: Mapped[str] = mapped_column(String(36))


class SecurityGroup(_ProjectResource, _Standard, Base):
    __tablename__ = "net_security_group"
    stateful: Mapped[bool] = mapped_column(Boolean, default=True)


class DefaultSecurityGroup(Base):
    """The one ``default`` group of a project (the key stops concurrent double creation)."""

    __tablename__ = "net_default_security_group"
    project_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    security_group_id: Mapped[str] = mapped_column(String(36))


class SecurityGroupRule(_Standard, Base):
    __tablename__ = "net_security_group_rule"
    __table_args__ = indexes(__tablename__, group="security_group_id")
    id: Mapped[str] = uuid_key()
    security_group_id: Mapped[str] = owner_ref("net_security_group.id", String(36))
    project_id: Mapped[str] = mapped_column(String(64), default="")
    direction: Mapped[str] = mapped_column(String(16), default="ingress")
    ethertype: Mapped[str] = mapped_column(String(8), default="IPv4")
    protocol: Mapped[str | None] = mapped_column(String(40), default=None)
    port_range_min: Mapped[int | None] = mapped_column(Integer, default=None)
    port_range_max: Mapped[int | None] = mapped_column(Integer, default=None)
    remote_ip_prefix: Mapped[str | None] = mapped_column(String(64), default=None)
    remote_group_id: Mapped[str | None] = mapped_column(String(36), default=None)


class PortSecurityGroup(Base):
    __tablename__ = "net_port_security_group"
    __table_args__ = indexes(__tablename__, group="security_group_id")
    port_id: Mapped[str] = owner_ref("net_port.id", String(36), primary_key=True)
    security_group_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("net_security_group.id"), primary_key=True)


class Router(_ProjectResource, _Standard, Base):
    __tablename__ = "net_router"
    admin_state_up: Mapped[bool] = mapped_column(Boolean, default=True)
    status: Mapped[str] = mapped_column(String(16), default="ACTIVE")
    gw_network_id: Mapped[str | None] = mapped_column(String(36), default=None)
    gw_port_id: Mapped[str | None] = mapped_column(String(36), default=None)
    enable_snat: Mapped[bool] = mapped_column(Boolean, default=True)
    routes: Mapped[list[dict[str, str]]] = mapped_column(JSONDoc, default=list)
    distributed: Mapped[bool] = mapped_column(Boolean, default=False)
    ha: Mapped[bool] = mapped_column(Boolean, default=False)
    availability_zone_hints: Mapped[list[str]] = mapped_column(JSONDoc, default=list)


class FloatingIP(_Standard, Base):
    __tablename__ = "net_floatingip"
    __table_args__ = indexes(__tablename__, project="project_id", port="port_id")
    id: Mapped[str] = uuid_key()
    project_id: Mapped[str] = mapped_column(String(64), default="")
    floating_network_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("net_network.id"))
    floating_ip_address: Mapped[str] = mapped_column(String(64))
    floating_port_id: Mapped[str] = mapped_column(String(36))
    port_id: Mapped[str | None] = mapped_column(String(36), default=None)
    fixed_ip_address: Mapped[str | None] = mapped_column(String(64), default=None)
    router_id: Mapped[str | None] = mapped_column(String(36), default=None)
    status: Mapped[str] = mapped_column(String(16), default="DOWN")


class Tag(Base):
    """A tag of any network resource (ids are UUIDs, unique across resource kinds)."""

    __tablename__ = "net_tag"
    __table_args__ = indexes(__tablename__, tag="tag")
    resource_id: Mapped[str] = uuid_key()
    tag: Mapped[str] = mapped_column(String(255), primary_key=True)


class Quota(Base):
    __tablename__ = "net_quota"
    project_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    resource: Mapped[str] = mapped_column(String(64), primary_key=True)
    limit: Mapped[int] = mapped_column(Integer)


class Agent(Base):
    """The data-plane agents of each host; alive while their heartbeats are recent."""

    __tablename__ = "net_agent"
    id: Mapped[str] = uuid_key()
    agent_type: Mapped[str] = mapped_column(String(64))
    binary: Mapped[str] = mapped_column(String(255))
    host: Mapped[str] = mapped_column(String(255))
    topic: Mapped[str] = mapped_column(String(255), default="")
    admin_state_up: Mapped[bool] = mapped_column(Boolean, default=True)
    description: Mapped[str] = mapped_column(String(255), default="")
    availability_zone: Mapped[str | None] = mapped_column(String(255), default=None)
    configurations: Mapped[dict[str, Any]] = mapped_column(JSONDoc, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column()
    started_at: Mapped[dt.datetime] = mapped_column()
    #: When the agent last reported itself alive (None: never); ``alive`` is derived from it.
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(default=None)
