"""The Linux driver's copy of the desired model, and what changed since the last pass.

The network manager hands the driver API views after each commit; the driver keeps them here,
indexed the ways the data plane asks (ports of a network, interfaces of a router, members of a
security group), and marks what changed as *dirty*. The worker then converges only the dirty
parts; a full sync replaces the model and marks everything dirty. Plain dicts (Neutron API
views) throughout, so this module knows no ORM and no host.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from onestack.drivers.network.base import DesiredState

View = dict[str, Any]

ROUTER_INTERFACE_OWNERS = ("network:router_interface", "network:router_interface_distributed",
                           "network:ha_router_replicated_interface")
ROUTER_GATEWAY = "network:router_gateway"
DHCP = "network:dhcp"
FLOATINGIP = "network:floatingip"


@dataclass
class Dirty:
    """Ids whose host state must be converged on the next pass (``all`` means everything)."""

    networks: set[str] = field(default_factory=set)
    ports: set[str] = field(default_factory=set)
    routers: set[str] = field(default_factory=set)
    security_groups: set[str] = field(default_factory=set)
    all: bool = False

    def __bool__(self) -> bool:
        return bool(self.all or self.networks or self.ports or self.routers
                    or self.security_groups)

    def merge(self, other: Dirty) -> None:
        self.networks |= other.networks
        self.ports |= other.ports
        self.routers |= other.routers
        self.security_groups |= other.security_groups
        self.all = self.all or other.all


class Model:
    """Networks, subnets, ports, routers, floating IPs and security groups by id.

    Mutations happen under :attr:`lock` (the driver's contract methods, from API threads);
    the worker takes a :meth:`snapshot` and reads that without locking.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.networks: dict[str, View] = {}
        self.subnets: dict[str, View] = {}
        self.ports: dict[str, View] = {}
        self.routers: dict[str, View] = {}
        self.floating_ips: dict[str, View] = {}
        self.security_groups: dict[str, View] = {}

    # ------------------------------------------------------------------ whole model
    def replace(self, state: DesiredState, newer_ports: dict[str, View | None] | None = None
                ) -> None:
        """Take the whole desired model (``sync``). ``newer_ports``: port views (None: the
        port was deleted) that arrived while ``state`` was being read; they win over it."""
        with self.lock:
            self.networks = {n["id"]: n for n in state.networks}
            self.subnets = {s["id"]: s for s in state.subnets}
            self.ports = {p["id"]: p for p in state.ports}
            for pid, view in (newer_ports or {}).items():
                if view is None:
                    self.ports.pop(pid, None)
                else:
                    self.ports[pid] = view
            self.routers = {r["id"]: r for r in state.routers}
            self.floating_ips = {f["id"]: f for f in state.floating_ips}
            self.security_groups = {g["id"]: g for g in state.security_groups}

    def snapshot(self) -> Model:
        """A shallow copy the worker can read while API threads keep changing this one."""
        copy = Model()
        with self.lock:
            copy.networks = dict(self.networks)
            copy.subnets = dict(self.subnets)
            copy.ports = dict(self.ports)
            copy.routers = dict(self.routers)
            copy.floating_ips = dict(self.floating_ips)
            copy.security_groups = dict(self.security_groups)
        return copy

    # ------------------------------------------------------------------ queries
    def subnets_of(self, network_id: str) -> list[View]:
        return [s for s in self.subnets.values() if s.get("network_id") == network_id]

    def ports_of(self, network_id: str) -> list[View]:
        return [p for p in self.ports.values() if p.get("network_id") == network_id]

    def router_interfaces(self, router_id: str) -> list[View]:
        """The router's internal ports (``qr-`` devices)."""
        return [p for p in self.ports.values() if p.get("device_id") == router_id
                and p.get("device_owner") in ROUTER_INTERFACE_OWNERS]

    def _owned_port(self, key: str, value: str, owner: str) -> View | None:
        """The first port whose ``key`` is ``value`` and whose ``device_owner`` is
        ``owner``, if there is one."""
        for p in self.ports.values():
            if p.get(key) == value and p.get("device_owner") == owner:
                return p
        return None

    def router_gateway_port(self, router_id: str) -> View | None:
        """The router's port on its external network (``qg-`` device), if it has one."""
        return self._owned_port("device_id", router_id, ROUTER_GATEWAY)

    def router_floating_ips(self, router_id: str) -> list[View]:
        """Floating IPs associated through the router (with a fixed IP set)."""
        return [f for f in self.floating_ips.values() if f.get("router_id") == router_id
                and f.get("fixed_ip_address")]

    def dhcp_port(self, network_id: str) -> View | None:
        return self._owned_port("network_id", network_id, DHCP)

    def group_members(self, group_id: str) -> list[View]:
        """Ports in the security group (for remote-group rules)."""
        return [p for p in self.ports.values() if group_id in (p.get("security_groups") or ())]

    def routers_of_network(self, network_id: str) -> set[str]:
        """Routers with an interface or gateway on the network."""
        return {p["device_id"] for p in self.ports.values()
                if p.get("network_id") == network_id and p.get("device_id")
                and (p.get("device_owner") in ROUTER_INTERFACE_OWNERS
                     or p.get("device_owner") == ROUTER_GATEWAY)}

    def dhcp_subnets(self, network_id: str) -> list[View]:
        """The network's subnets with DHCP enabled."""
        return [s for s in self.subnets_of(network_id) if s.get("enable_dhcp")]

    def isolated(self, network_id: str) -> bool:
        """No router has an interface on any of the network's IPv4 subnets: its guests get
        metadata through the DHCP namespace (Neutron's ``enable_isolated_metadata``)."""
        v4 = {s["id"] for s in self.subnets_of(network_id) if s.get("ip_version") == 4}
        return not any(
            p.get("network_id") == network_id
            and p.get("device_owner") in ROUTER_INTERFACE_OWNERS
            and any(ip.get("subnet_id") in v4 for ip in p.get("fixed_ips") or ())
            for p in self.ports.values())
