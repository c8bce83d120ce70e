"""The fake twin of a network data plane: accepts everything, touches nothing.

It documents the semantics of ``NetworkDriver`` by example: binding always succeeds with a
``bridge`` VIF on a Linux bridge named after the network (as the Linux driver will name it),
and the calls it received are recorded for tests.
"""

from __future__ import annotations

from typing import Any

from onestack.drivers.network.base import Binding, DesiredState, NetworkDriver

#: The agents the Linux data plane runs on every host (type, binary, topic).
AGENTS: list[dict[str, Any]] = [
    {"agent_type": "L3 agent", "binary": "neutron-l3-agent", "topic": "l3_agent",
     "configurations": {"agent_mode": "legacy", "interface_driver": "linuxbridge"}},
    {"agent_type": "DHCP agent", "binary": "neutron-dhcp-agent", "topic": "dhcp_agent",
     "configurations": {"dhcp_driver": "dnsmasq", "dhcp_lease_duration": 86400}},
    {"agent_type": "Metadata agent", "binary": "neutron-metadata-agent", "topic": "N/A",
     "configurations": {"metadata_proxy_socket": "onestack"}},
    {"agent_type": "Linux bridge agent", "binary": "neutron-linuxbridge-agent",
     "topic": "N/A", "configurations": {"bridge_mappings": {}, "interface_mappings": {},
                                        "devices": 0}},
]


def bridge_name(network_id: str) -> str:
    """The Linux bridge of a network (``brq`` + the first 11 characters of its id)."""
    return "brq" + network_id[:11]


class NoopDriver(NetworkDriver):
    """Records calls, binds every port as a ``bridge`` VIF."""

    name = "noop"
    nonblocking_updates = True

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def _record(self, name: str, arg: Any) -> None:
        if len(self.calls) > 1000:
            del self.calls[:500]
        self.calls.append((name, arg))

    def sync(self, state: DesiredState) -> None:
        self._record("sync", state)

    def network_updated(self, network: dict[str, Any], subnets: list[dict[str, Any]]) -> None:
        self._record("network_updated", network["id"])

    def network_deleted(self, network_id: str) -> None:
        self._record("network_deleted", network_id)

    def bind_port(self, port: dict[str, Any], host: str) -> Binding | None:
        self._record("bind_port", (port["id"], host))
        return Binding("bridge", {"port_filter": True, "connectivity": "l2",
                                  "bridge_name": bridge_name(port["network_id"])})

    def port_updated(self, port: dict[str, Any]) -> None:
        self._record("port_updated", port["id"])

    def port_deleted(self, port: dict[str, Any]) -> None:
        self._record("port_deleted", port["id"])

    def security_group_updated(self, group: dict[str, Any]) -> None:
        self._record("security_group_updated", group["id"])

    def router_updated(self, router: dict[str, Any], interfaces: list[dict[str, Any]],
                       floating_ips: list[dict[str, Any]]) -> None:
        self._record("router_updated", router["id"])

    def router_deleted(self, router_id: str) -> None:
        self._record("router_deleted", router_id)

    def agents(self) -> list[dict[str, Any]]:
        """None: nothing runs on the host, so no agent is claimed."""
        return []
