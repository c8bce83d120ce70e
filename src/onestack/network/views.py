"""Response shaping: table rows (plus their related rows) -> Neutron API dicts."""

from __future__ import annotations

from typing import Any

from onestack.common.timeutils import isotime
from onestack.db import network as t


def _std(row: Any, tags: list[str]) -> dict[str, Any]:
    return {"description": row.description, "tags": tags,
            "created_at": isotime(row.created_at), "updated_at": isotime(row.updated_at),
            "revision_number": row.revision_number}


def network(row: t.Network, subnets: list[str], tags: list[str], admin: bool,
            scopes: dict[int, str | None] | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": row.id, "name": row.name, "tenant_id": row.project_id,
        "project_id": row.project_id, "admin_state_up": row.admin_state_up,
        "status": row.status, "subnets": subnets, "shared": row.shared,
        "router:external": row.external, "mtu": row.mtu,
        "port_security_enabled": row.port_security_enabled,
        "availability_zone_hints": list(row.availability_zone_hints or []),
        "availability_zones": ["nova"],
        "ipv4_address_scope": (scopes or {}).get(4), "ipv6_address_scope": (scopes or {}).get(6),
        "is_default": row.is_default,
        "dns_domain": row.dns_domain or "",
        **_std(row, tags),
    }
    if admin:
        doc["provider:network_type"] = row.network_type
        doc["provider:physical_network"] = row.physical_network
        doc["provider:segmentation_id"] = row.segmentation_id
    return doc


def subnet(row: t.Subnet, tags: list[str]) -> dict[str, Any]:
    return {
        "id": row.id, "name": row.name, "tenant_id": row.project_id,
        "project_id": row.project_id, "network_id": row.network_id,
        "ip_version": row.ip_version, "cidr": row.cidr, "gateway_ip": row.gateway_ip,
        "enable_dhcp": row.enable_dhcp, "ipv6_ra_mode": row.ipv6_ra_mode,
        "ipv6_address_mode": row.ipv6_address_mode, "subnetpool_id": row.subnetpool_id,
        "allocation_pools": [dict(p) for p in row.allocation_pools or []],
        "dns_nameservers": list(row.dns_nameservers or []),
        "host_routes": [dict(r) for r in row.host_routes or []],
        "service_types": list(row.service_types or []), "segment_id": None,
        **_std(row, tags),
    }


def port(row: t.Port, fixed_ips: list[dict[str, str]], groups: list[str], tags: list[str],
         admin: bool) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": row.id, "name": row.name, "network_id": row.network_id,
        "tenant_id": row.project_id, "project_id": row.project_id,
        "mac_address": row.mac_address, "admin_state_up": row.admin_state_up,
        "status": row.status, "device_id": row.device_id, "device_owner": row.device_owner,
        "fixed_ips": fixed_ips, "security_groups": groups,
        "allowed_address_pairs": [dict(p) for p in row.allowed_address_pairs or []],
        "extra_dhcp_opts": [dict(o) for o in row.extra_dhcp_opts or []],
        "port_security_enabled": row.port_security_enabled,
        "binding:vnic_type": row.binding_vnic_type,
        **_std(row, tags),
    }
    if admin:
        doc["binding:host_id"] = row.binding_host_id
        doc["binding:profile"] = dict(row.binding_profile or {})
        doc["binding:vif_type"] = row.binding_vif_type
        doc["binding:vif_details"] = dict(row.binding_vif_details or {})
    return doc


def security_group_rule(row: t.SecurityGroupRule) -> dict[str, Any]:
    return {
        "id": row.id, "tenant_id": row.project_id, "project_id": row.project_id,
        "security_group_id": row.security_group_id, "direction": row.direction,
        "ethertype": row.ethertype, "protocol": row.protocol,
        "port_range_min": row.port_range_min, "port_range_max": row.port_range_max,
        "remote_ip_prefix": row.remote_ip_prefix, "remote_group_id": row.remote_group_id,
        "description": row.description, "created_at": isotime(row.created_at),
        "updated_at": isotime(row.updated_at), "revision_number": row.revision_number,
    }


def security_group(row: t.SecurityGroup, rules: list[t.SecurityGroupRule],
                   tags: list[str]) -> dict[str, Any]:
    return {
        "id": row.id, "name": row.name, "tenant_id": row.project_id,
        "project_id": row.project_id, "stateful": row.stateful,
        "security_group_rules": [security_group_rule(r) for r in rules],
        **_std(row, tags),
    }


def router(row: t.Router, gw_ips: list[dict[str, str]], tags: list[str],
           admin: bool) -> dict[str, Any]:
    gateway = None
    if row.gw_network_id:
        gateway = {"network_id": row.gw_network_id, "enable_snat": row.enable_snat,
                   "external_fixed_ips": gw_ips}
    doc: dict[str, Any] = {
        "id": row.id, "name": row.name, "tenant_id": row.project_id,
        "project_id": row.project_id, "admin_state_up": row.admin_state_up,
        "status": row.status, "external_gateway_info": gateway,
        "routes": [dict(r) for r in row.routes or []],
        "availability_zone_hints": list(row.availability_zone_hints or []),
        "availability_zones": ["nova"],
        **_std(row, tags),
    }
    if admin:
        doc["distributed"] = row.distributed
        doc["ha"] = row.ha
    return doc


def floatingip(row: t.FloatingIP, tags: list[str], port: t.Port | None = None
               ) -> dict[str, Any]:
    """A floating IP with its associated port's summary (``fip-port-details``)."""
    details = None
    if port is not None:
        details = {"name": port.name, "network_id": port.network_id,
                   "mac_address": port.mac_address, "admin_state_up": port.admin_state_up,
                   "status": port.status, "device_id": port.device_id,
                   "device_owner": port.device_owner}
    return {
        "id": row.id, "tenant_id": row.project_id, "project_id": row.project_id,
        "floating_network_id": row.floating_network_id,
        "floating_ip_address": row.floating_ip_address, "port_id": row.port_id,
        "fixed_ip_address": row.fixed_ip_address, "router_id": row.router_id,
        "status": row.status, "port_details": details,
        **_std(row, tags),
    }


def address_scope(row: t.AddressScope) -> dict[str, Any]:
    return {"id": row.id, "name": row.name, "tenant_id": row.project_id,
            "project_id": row.project_id, "ip_version": row.ip_version, "shared": row.shared}


def subnetpool(row: t.SubnetPool, tags: list[str]) -> dict[str, Any]:
    return {
        "id": row.id, "name": row.name, "tenant_id": row.project_id,
        "project_id": row.project_id, "ip_version": row.ip_version,
        "prefixes": list(row.prefixes or []), "default_prefixlen": row.default_prefixlen,
        "min_prefixlen": row.min_prefixlen, "max_prefixlen": row.max_prefixlen,
        "shared": row.shared, "is_default": row.is_default,
        "default_quota": row.default_quota, "address_scope_id": row.address_scope_id,
        **_std(row, tags),
    }


def agent(row: t.Agent, alive: bool, heartbeat: str | None) -> dict[str, Any]:
    return {
        "id": row.id, "agent_type": row.agent_type, "binary": row.binary, "host": row.host,
        "topic": row.topic, "admin_state_up": row.admin_state_up, "alive": alive,
        "description": row.description or None, "availability_zone": row.availability_zone,
        "configurations": dict(row.configurations or {}),
        "created_at": str(row.created_at.replace(microsecond=0)),
        "started_at": str(row.started_at.replace(microsecond=0)),
        "heartbeat_timestamp": heartbeat, "resources_synced": None,
        "resource_versions": {},
    }


#: Attributes each collection may be filtered and sorted on (even when it is empty).
ATTRIBUTES: dict[str, set[str]] = {
    "networks": {"id", "name", "tenant_id", "project_id", "admin_state_up", "status",
                 "subnets", "shared", "router:external", "mtu", "port_security_enabled",
                 "availability_zone_hints", "availability_zones", "description", "tags",
                 "created_at", "updated_at", "revision_number", "provider:network_type",
                 "provider:physical_network", "provider:segmentation_id", "is_default",
                 "ipv4_address_scope", "ipv6_address_scope", "dns_domain"},
    "subnets": {"id", "name", "tenant_id", "project_id", "network_id", "ip_version", "cidr",
                "gateway_ip", "enable_dhcp", "ipv6_ra_mode", "ipv6_address_mode",
                "subnetpool_id", "allocation_pools", "dns_nameservers", "host_routes",
                "service_types", "segment_id", "description", "tags", "created_at",
                "updated_at", "revision_number"},
    "ports": {"id", "name", "network_id", "tenant_id", "project_id", "mac_address",
              "admin_state_up", "status", "device_id", "device_owner", "fixed_ips",
              "security_groups", "allowed_address_pairs", "extra_dhcp_opts",
              "port_security_enabled", "binding:vnic_type", "binding:host_id",
              "binding:profile", "binding:vif_type", "binding:vif_details", "description",
              "tags", "created_at", "updated_at", "revision_number"},
    "security_groups": {"id", "name", "tenant_id", "project_id", "stateful",
                        "security_group_rules", "description", "tags", "created_at",
                        "updated_at", "revision_number"},
    "security_group_rules": {"id", "tenant_id", "project_id", "security_group_id",
                             "direction", "ethertype", "protocol", "port_range_min",
                             "port_range_max", "remote_ip_prefix", "remote_group_id",
                             "description", "created_at", "updated_at",
                             "revision_number"},
    "routers": {"id", "name", "tenant_id", "project_id", "admin_state_up", "status",
                "external_gateway_info", "routes", "availability_zone_hints",
                "availability_zones", "distributed", "ha", "description", "tags",
                "created_at", "updated_at", "revision_number"},
    "address_scopes": {"id", "name", "tenant_id", "project_id", "ip_version", "shared"},
    "service_providers": {"service_type", "name", "default"},
    "floatingips": {"id", "tenant_id", "project_id", "floating_network_id",
                    "floating_ip_address", "port_id", "fixed_ip_address", "router_id",
                    "status", "description", "tags", "created_at", "updated_at",
                    "revision_number"},
    "subnetpools": {"id", "name", "tenant_id", "project_id", "ip_version", "prefixes",
                    "default_prefixlen", "min_prefixlen", "max_prefixlen", "shared",
                    "is_default", "default_quota", "address_scope_id", "description",
                    "tags", "created_at", "updated_at", "revision_number"},
    "agents": {"id", "agent_type", "binary", "host", "topic", "admin_state_up", "alive",
               "description", "availability_zone", "configurations", "created_at",
               "started_at", "heartbeat_timestamp"},
    "network_ip_availabilities": {"network_id", "network_name", "tenant_id", "project_id",
                                  "ip_version", "total_ips", "used_ips",
                                  "subnet_ip_availability"},
    "availability_zones": {"name", "resource", "state"},
}
