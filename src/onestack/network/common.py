"""Constants, errors and the retry signal shared by the network manager's modules."""

from __future__ import annotations

import logging
from typing import Any, TypeVar

from onestack.common.errors import Conflict, NotFound
from onestack.db import network as t

#: One logger for the whole manager (its name from before the split into modules).
LOG = logging.getLogger("onestack.network.manager")
T = TypeVar("T")

DEFAULT_QUOTAS: dict[str, int] = {
    "network": 100, "subnet": 100, "subnetpool": -1, "port": 500, "router": 10,
    "floatingip": 50, "security_group": 10, "security_group_rule": 100,
}
_QUOTA_MODELS: dict[str, Any] = {
    "network": t.Network, "subnet": t.Subnet, "subnetpool": t.SubnetPool, "port": t.Port,
    "router": t.Router, "floatingip": t.FloatingIP, "security_group": t.SecurityGroup,
    "security_group_rule": t.SecurityGroupRule,
}
ROUTER_INTERFACE = "network:router_interface"
ROUTER_GATEWAY = "network:router_gateway"
FLOATINGIP_OWNER = "network:floatingip"
TAGGABLE = {"networks": t.Network, "subnets": t.Subnet, "ports": t.Port,
            "routers": t.Router, "floatingips": t.FloatingIP,
            "security-groups": t.SecurityGroup, "security_groups": t.SecurityGroup,
            "subnetpools": t.SubnetPool}
_NOT_FOUND = {t.Network: "NetworkNotFound", t.Subnet: "SubnetNotFound",
              t.Port: "PortNotFound", t.Router: "RouterNotFound",
              t.FloatingIP: "FloatingIPNotFound", t.SecurityGroup: "SecurityGroupNotFound",
              t.SecurityGroupRule: "SecurityGroupRuleNotFound",
              t.SubnetPool: "SubnetPoolNotFound", t.Agent: "AgentNotFound",
              t.AddressScope: "AddressScopeNotFound"}
_LABEL = {t.Network: "Network", t.Subnet: "Subnet", t.Port: "Port", t.Router: "Router",
          t.FloatingIP: "Floating IP", t.SecurityGroup: "Security group",
          t.SecurityGroupRule: "Security group rule", t.SubnetPool: "Subnet pool",
          t.Agent: "Agent", t.AddressScope: "Address scope"}


def conflict(message: str, kind: str) -> Conflict:
    return Conflict(message, kind=kind)


def not_found(model: Any, rid: str) -> NotFound:
    label = _LABEL.get(model, "Resource")
    return NotFound(f"{label} {rid} could not be found.", kind=_NOT_FOUND.get(model, "NotFound"))


class _Retry(Exception):
    """Raised inside a transaction to start it again (a concurrent writer won)."""
