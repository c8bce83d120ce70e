"""Settings of the Linux data plane (built from ``Settings.network_*`` by the loader)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class LinuxOptions:
    """Settings of the Linux data plane (from ``Settings.network_*``)."""

    #: Where dnsmasq files, the metadata proxy's state and the ownership ledger live.
    state_dir: Path
    #: This host's name (ports bound here are wired here).
    host: str = "localhost"
    #: The physical network of ``public`` (its bridge carries ``public_gateway_cidr``).
    public_physical_network: str = "public"
    #: physical network -> bridge name ("" = onestack makes ``brq<net>`` for flat networks
    #: on it). The ``public`` physical network's bridge carries ``public_gateway_cidr``.
    bridge_mappings: dict[str, str] = field(default_factory=dict)
    #: The address the host side of the public network carries (DevStack: 172.24.4.1/24);
    #: "" leaves the bridge without an address.
    public_gateway_cidr: str = "172.24.4.1/24"
    #: Local VTEP address of VXLAN devices and the UDP port.
    vxlan_local_ip: str = "127.0.0.1"
    vxlan_port: int = 4789
    #: The metadata service the proxy forwards to, and the shared secret it signs with.
    metadata_host: str = "127.0.0.1"
    metadata_port: int = 8775
    metadata_secret: str = ""
    #: Masquerade the public network to the host's uplink (off by default; never in tests).
    external_nat: bool = False
    dhcp_lease_seconds: int = 86400
    dns_servers: list[str] = field(default_factory=list)
    dns_domain: str = "openstacklocal"
    #: Seconds between full reconciles.
    sync_interval: float = 60.0
    #: Seconds between agent heartbeats.
    heartbeat_interval: float = 10.0
