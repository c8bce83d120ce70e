"""Request validation helpers: Neutron's attribute conversions and its 400 messages."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from onestack.common.errors import BadRequest


def bad(message: str, kind: str = "HTTPBadRequest") -> BadRequest:
    return BadRequest(message, kind=kind)


def invalid(field: str, value: Any, reason: str) -> BadRequest:
    return bad(f"Invalid input for {field}. Reason: {reason}")


def check_keys(body: Mapping[str, Any], allowed: Iterable[str], resource: str) -> None:
    """400 for attributes the resource does not have (Neutron rejects them too)."""
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise bad(f"Unrecognized attribute(s) '{', '.join(unknown)}'")


def to_bool(value: Any, field: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    raise invalid(field, value, f"'{value}' cannot be converted to boolean.")


def to_str(value: Any, field: str, maxlen: int = 255, nullable: bool = False) -> str | None:
    if value is None and nullable:
        return None
    if not isinstance(value, str):
        raise invalid(field, value, f"'{value}' is not a valid string.")
    if len(value) > maxlen:
        raise invalid(field, value, f"'{value}' exceeds maximum length of {maxlen}.")
    return value


def to_int(value: Any, field: str, nullable: bool = False, minimum: int | None = None,
           maximum: int | None = None) -> int | None:
    if value is None and nullable:
        return None
    if isinstance(value, bool):
        raise invalid(field, value, f"'{value}' is not an integer.")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise invalid(field, value, f"'{value}' is not an integer.") from None
    if isinstance(value, float) and value != number:
        raise invalid(field, value, f"'{value}' is not an integer.")
    if minimum is not None and number < minimum:
        raise invalid(field, value, f"'{value}' is too small - must be at least "
                      f"'{minimum}'.")
    if maximum is not None and number > maximum:
        raise invalid(field, value, f"'{value}' is too large - must be no larger than "
                      f"'{maximum}'.")
    return number


def to_list(value: Any, field: str) -> list[Any]:
    if not isinstance(value, list):
        raise invalid(field, value, f"'{value}' is not a list.")
    return value


def to_dict(value: Any, field: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise invalid(field, value, f"'{value}' is not a dictionary.")
    return value


def project_of(body: Mapping[str, Any], default: str | None) -> str | None:
    """The owning project asked for (``project_id``/``tenant_id`` must agree)."""
    pid = body.get("project_id")
    tid = body.get("tenant_id")
    if pid is not None and tid is not None and pid != tid:
        raise bad("'project_id' and 'tenant_id' do not match")
    value = pid if pid is not None else tid
    if value is None:
        return default
    return to_str(value, "project_id")


STANDARD = ("name", "description", "project_id", "tenant_id", "tags")

NETWORK_KEYS = STANDARD + (
    "admin_state_up", "shared", "router:external", "provider:network_type",
    "provider:physical_network", "provider:segmentation_id", "mtu", "port_security_enabled",
    "availability_zone_hints", "is_default", "dns_domain", "segments", "qos_policy_id")
SUBNET_KEYS = STANDARD + (
    "network_id", "ip_version", "cidr", "gateway_ip", "enable_dhcp", "ipv6_ra_mode",
    "ipv6_address_mode", "subnetpool_id", "prefixlen", "use_default_subnetpool",
    "allocation_pools", "dns_nameservers", "host_routes", "service_types", "segment_id",
    "dns_publish_fixed_ip")
PORT_KEYS = STANDARD + (
    "network_id", "admin_state_up", "mac_address", "fixed_ips", "device_id", "device_owner",
    "security_groups", "allowed_address_pairs", "port_security_enabled", "extra_dhcp_opts",
    "binding:host_id", "binding:vnic_type", "binding:profile", "dns_name", "qos_policy_id",
    "propagate_uplink_status")
ROUTER_KEYS = STANDARD + (
    "admin_state_up", "external_gateway_info", "routes", "distributed", "ha",
    "availability_zone_hints", "flavor_id")
FLOATINGIP_KEYS = STANDARD + (
    "floating_network_id", "floating_ip_address", "port_id", "fixed_ip_address", "subnet_id",
    "dns_name", "dns_domain", "qos_policy_id")
SECURITY_GROUP_KEYS = STANDARD + ("stateful",)
SECURITY_GROUP_RULE_KEYS = ("description", "project_id", "tenant_id", "security_group_id",
                            "direction", "ethertype", "protocol", "port_range_min",
                            "port_range_max", "remote_ip_prefix", "remote_group_id")
SUBNETPOOL_KEYS = STANDARD + (
    "prefixes", "default_prefixlen", "min_prefixlen", "max_prefixlen", "shared",
    "is_default", "default_quota", "address_scope_id", "ip_version")

#: Protocol names accepted in security group rules, with their IANA numbers.
PROTOCOLS = {
    "ah": 51, "dccp": 33, "egp": 8, "esp": 50, "gre": 47, "hopopt": 0, "icmp": 1,
    "icmpv6": 58, "igmp": 2, "ipip": 4, "ipv6-encap": 41, "ipv6-frag": 44, "ipv6-icmp": 58,
    "ipv6-nonxt": 59, "ipv6-opts": 60, "ipv6-route": 43, "ospf": 89, "pgm": 113,
    "rsvp": 46, "sctp": 132, "tcp": 6, "udp": 17, "udplite": 136, "vrrp": 112,
}
#: Protocols whose rules take a port range.
PORT_PROTOCOLS = {"tcp", "udp", "sctp", "dccp", "udplite", "6", "17", "132", "33", "136"}
ICMP_PROTOCOLS = {"icmp", "icmpv6", "ipv6-icmp", "1", "58"}

VNIC_TYPES = ("normal", "direct", "macvtap", "baremetal", "direct-physical",
              "virtio-forwarder", "smart-nic", "vdpa", "remote-managed", "accelerator-direct",
              "accelerator-direct-physical")
IPV6_MODES = ("slaac", "dhcpv6-stateful", "dhcpv6-stateless")
