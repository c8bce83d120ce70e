"""Names of what the Linux data plane makes on the host (Neutron's linuxbridge names).

Linux limits interface names to 15 characters, so resources are named by a prefix plus the
first 11 characters of their id, as Neutron's agents do. Everything onestack creates carries
one of these prefixes; nothing else on the host is ever touched.
"""

from __future__ import annotations

ID_LEN = 11

#: nftables table that holds every onestack rule in the namespace onestack runs in.
NFT_TABLE = "onestack"


def bridge(network_id: str) -> str:
    """The Linux bridge of a network."""
    return "brq" + network_id[:ID_LEN]


def tap(port_id: str) -> str:
    """A port's device on the bridge side (a guest's tap, or the root end of a veth)."""
    return "tap" + port_id[:ID_LEN]


def vxlan(vni: int) -> str:
    """The VXLAN device of a tenant network's segment."""
    return f"vxlan-{int(vni)}"


def dhcp_device(port_id: str) -> str:
    """The namespace end of a DHCP port's veth (inside ``qdhcp-<net>``)."""
    return "ns-" + port_id[:ID_LEN]


def router_interface(port_id: str) -> str:
    """The namespace end of a router interface port (inside ``qrouter-<id>``)."""
    return "qr-" + port_id[:ID_LEN]


def router_gateway(port_id: str) -> str:
    """The namespace end of a router gateway port (inside ``qrouter-<id>``)."""
    return "qg-" + port_id[:ID_LEN]


def dhcp_namespace(network_id: str) -> str:
    """The namespace of a network's DHCP server."""
    return "qdhcp-" + network_id


def router_namespace(router_id: str) -> str:
    """The namespace of a router."""
    return "qrouter-" + router_id


OWNED_LINK_PREFIXES = ("brq", "tap", "vxlan-")
OWNED_NETNS_PREFIXES = ("qdhcp-", "qrouter-")


def network_bridge(network: dict[str, object], bridge_mappings: dict[str, str]) -> str:
    """The bridge a network's ports go into: a flat network's physical network may be mapped
    to a named bridge (``bridge_mappings``); every other network gets ``brq<net[:11]>``."""
    physnet = network.get("provider:physical_network")
    if network.get("provider:network_type") == "flat" and isinstance(physnet, str):
        mapped = bridge_mappings.get(physnet)
        if mapped:
            return mapped
    return bridge(str(network["id"]))
