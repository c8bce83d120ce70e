"""The contract between the network control plane and a data plane.

The manager (``onestack.network.manager.NetworkManager``) owns the model: networks with
their segment (type, physical network, segmentation id), subnets, ports with fixed IPs and
security groups, routers with interfaces and a gateway, floating IPs. After each committed
change it tells the driver what the model now wants, through the methods below. A driver
translates that into the host: the later Linux driver makes bridges, veth pairs, network
namespaces, nftables rules and dnsmasq configuration.

Rules every driver follows:

* Calls come *after* the database commit and carry plain dicts (the API views of the
  resources), never ORM objects. A driver must not write the database.
* Every method is idempotent: calling it twice with the same data leaves the same state.
  ``sync`` is called on start (and may be called periodically) with the whole desired
  model; a driver reconciles what exists on the host with it, so a crash loses nothing.
* Methods must not raise for data-plane trouble the user cannot fix; they log it and
  leave the port/router ``DOWN`` by returning False where a result is asked for.
* ``bind_port`` decides the VIF a hypervisor plugs: it returns ``vif_type`` (e.g.
  ``bridge``, ``ovs``, ``tap``) and ``vif_details`` (Nova's os-vif hints), or None when this
  driver cannot bind the port on that host (the port then stays ``binding_failed``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class Binding:
    """The result of binding a port to a host."""

    vif_type: str
    vif_details: dict[str, Any] = field(default_factory=dict)
    #: Whether the data plane wired the port up (the port's status becomes ACTIVE).
    active: bool = True


@dataclass
class DesiredState:
    """The whole model, for ``NetworkDriver.sync`` (lists of API views)."""

    networks: list[dict[str, Any]] = field(default_factory=list)
    subnets: list[dict[str, Any]] = field(default_factory=list)
    ports: list[dict[str, Any]] = field(default_factory=list)
    routers: list[dict[str, Any]] = field(default_factory=list)
    floating_ips: list[dict[str, Any]] = field(default_factory=list)
    security_groups: list[dict[str, Any]] = field(default_factory=list)


class ControlPlane(Protocol):
    """What a data plane may ask of the network control plane (the manager implements it).

    Neutron's agents do the same over RPC: read the model, report port status, create the
    DHCP port of a network, and send heartbeats.
    """

    def desired_state(self) -> DesiredState:
        """The whole model, read from the database now."""

    def set_port_status(self, port_id: str, status: str) -> None:
        """The port is wired (``ACTIVE``) or not (``DOWN``); ACTIVE on a compute port sends
        Nova's ``network-vif-plugged`` event."""

    def ensure_dhcp_port(self, network_id: str) -> dict[str, Any] | None:
        """The network's ``network:dhcp`` port for this host, created when missing (with an
        address in each DHCP-enabled subnet); None when the network has no such subnet."""

    def agent_heartbeat(self, agent_types: list[str]) -> None:
        """The named agents of this host are alive now."""


class NetworkDriver(ABC):
    """What the data plane implements. See the module documentation for the rules."""

    #: Name reported in agent listings and port bindings.
    name: str = "base"
    #: ``port_updated``/``port_deleted`` return at once without I/O (they only record the
    #: change): the API may then call them from its event loop (the fast port-create path).
    nonblocking_updates: bool = False

    @abstractmethod
    def sync(self, state: DesiredState) -> None:
        """Reconcile the host with the whole desired model (on start, periodically)."""

    @abstractmethod
    def network_updated(self, network: dict[str, Any], subnets: list[dict[str, Any]]) -> None:
        """A network or one of its subnets was created or changed (DHCP, bridge, MTU)."""

    @abstractmethod
    def network_deleted(self, network_id: str) -> None:
        """Remove everything the host has for the network (bridge, DHCP namespace)."""

    @abstractmethod
    def bind_port(self, port: dict[str, Any], host: str) -> Binding | None:
        """Choose the VIF for ``port`` on ``host``; None when this driver cannot bind it."""

    @abstractmethod
    def port_updated(self, port: dict[str, Any]) -> None:
        """Fixed IPs, security groups, address pairs or admin state of a port changed."""

    @abstractmethod
    def port_deleted(self, port: dict[str, Any]) -> None:
        """Unplug and forget the port (its filter rules and DHCP reservation)."""

    @abstractmethod
    def security_group_updated(self, group: dict[str, Any]) -> None:
        """A group or its rules changed: re-render the filters of every member port."""

    @abstractmethod
    def router_updated(self, router: dict[str, Any], interfaces: list[dict[str, Any]],
                       floating_ips: list[dict[str, Any]]) -> None:
        """A router's gateway, interfaces (ports), extra routes or floating IPs changed."""

    @abstractmethod
    def router_deleted(self, router_id: str) -> None:
        """Remove the router's namespace, NAT rules and addresses."""

    def start(self, control: ControlPlane) -> None:  # noqa: B027 - optional hook
        """Begin work (threads, agents). Called once, before the first ``sync``."""

    def stop(self) -> None:  # noqa: B027 - optional hook
        """Stop background work; what runs on the host stays (the next start adopts it)."""

    def agents(self) -> list[dict[str, Any]]:
        """The agents this data plane runs on this host: dicts with ``agent_type``,
        ``binary``, ``topic`` and ``configurations`` (shown by ``GET /v2.0/agents``)."""
        return []
