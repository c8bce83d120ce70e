"""Address arithmetic for IPAM: CIDRs, allocation pools, SLAAC addresses, MACs.

Pure functions; the manager combines them with the ``(subnet_id, ip_address)`` primary key
of ``net_ip_allocation`` (and a row lock on the subnet) to hand out addresses safely.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Iterable
from typing import Any

from onestack.common.errors import BadRequest

Net = ipaddress.IPv4Network | ipaddress.IPv6Network
Addr = ipaddress.IPv4Address | ipaddress.IPv6Address


def bad(message: str) -> BadRequest:
    return BadRequest(message, kind="HTTPBadRequest")


def parse_cidr(value: Any, field: str = "cidr") -> Net:
    """A network in canonical form (400 for anything else, including host bits set)."""
    if not isinstance(value, str) or "/" not in value:
        raise bad(f"Invalid input for {field}. Reason: '{value}' is not a valid IP subnet.")
    try:
        net = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise bad(f"Invalid input for {field}. Reason: '{value}' is not a valid IP "
                  "subnet.") from None
    try:
        ipaddress.ip_network(value, strict=True)
    except ValueError:
        raise bad(f"Invalid input for {field}. Reason: '{value}' isn't a recommended CIDR, "
                  f"use '{net}' instead.") from None
    return net


def parse_ip(value: Any, field: str = "ip_address") -> Addr:
    if not isinstance(value, str):
        raise bad(f"Invalid input for {field}. Reason: '{value}' is not a valid IP address.")
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        raise bad(f"Invalid input for {field}. Reason: '{value}' is not a valid IP "
                  "address.") from None


def default_pools(net: Net, gateway: str | None) -> list[dict[str, str]]:
    """Neutron's default pools: every usable host address except the gateway."""
    if net.version == 4:
        if net.prefixlen >= 31:
            first, last = int(net.network_address), int(net.broadcast_address)
        else:
            first, last = int(net.network_address) + 1, int(net.broadcast_address) - 1
    else:
        first, last = int(net.network_address) + 1, int(net.broadcast_address)
        if net.prefixlen == 128:
            first = last
    ranges = [(first, last)]
    if gateway:
        g = int(ipaddress.ip_address(gateway))
        out = []
        for a, b in ranges:
            if a <= g <= b:
                if a <= g - 1:
                    out.append((a, g - 1))
                if g + 1 <= b:
                    out.append((g + 1, b))
            else:
                out.append((a, b))
        ranges = out
    cls = ipaddress.IPv4Address if net.version == 4 else ipaddress.IPv6Address
    return [{"start": str(cls(a)), "end": str(cls(b))} for a, b in ranges if a <= b]


def validate_pools(net: Net, pools: Any, gateway: str | None) -> list[dict[str, str]]:
    """Check user-given pools: inside the subnet, start <= end, no overlap, no gateway."""
    if not isinstance(pools, list):
        raise bad("Invalid input for allocation_pools. Reason: Invalid data format.")
    spans: list[tuple[int, int]] = []
    out = []
    for pool in pools:
        if not isinstance(pool, dict) or "start" not in pool or "end" not in pool:
            raise bad("Invalid input for allocation_pools. Reason: each pool needs 'start' "
                      "and 'end'.")
        start = parse_ip(pool["start"], "allocation_pools")
        end = parse_ip(pool["end"], "allocation_pools")
        if start.version != net.version or end.version != net.version:
            raise bad("Invalid input for allocation_pools: IP version mismatch.")
        if start not in net or end not in net or start == net.network_address or (
                net.version == 4 and net.prefixlen < 31 and end == net.broadcast_address):
            raise BadRequest(
                f"The allocation pool {start}-{end} spans beyond the subnet cidr {net}.",
                kind="OutOfBoundsAllocationPool")
        if int(start) > int(end):
            raise BadRequest(f"Invalid allocation pool {start}-{end}.",
                             kind="InvalidAllocationPool")
        for a, b in spans:
            if int(start) <= b and a <= int(end):
                raise BadRequest(f"Found overlapping allocation pools: {start}-{end}.",
                                 kind="OverlappingAllocationPools")
        spans.append((int(start), int(end)))
        out.append({"start": str(start), "end": str(end)})
    if gateway:
        g = int(ipaddress.ip_address(gateway))
        for a, b in spans:
            if a <= g <= b:
                raise BadRequest(f"Gateway ip {gateway} conflicts with allocation pool "
                                 f"{ipaddress.ip_address(a)}-{ipaddress.ip_address(b)}.",
                                 kind="GatewayConflictWithAllocationPools")
    return out


def pool_ranges(pools: Iterable[dict[str, str]]) -> list[tuple[int, int]]:
    return [(int(ipaddress.ip_address(p["start"])), int(ipaddress.ip_address(p["end"])))
            for p in pools]


def in_pools(ip: Addr, pools: Iterable[dict[str, str]]) -> bool:
    n = int(ip)
    return any(a <= n <= b for a, b in pool_ranges(pools))


def pool_size(pools: Iterable[dict[str, str]]) -> int:
    return sum(b - a + 1 for a, b in pool_ranges(pools))


def eui64(net: Net, mac: str) -> str:
    """The SLAAC address of ``mac`` in a /64 (modified EUI-64)."""
    octets = [int(x, 16) for x in mac.split(":")]
    octets[0] ^= 0x02
    iid = octets[:3] + [0xFF, 0xFE] + octets[3:]
    value = int(net.network_address) | int.from_bytes(bytes(iid), "big")
    return str(ipaddress.IPv6Address(value))


def random_mac(base: str) -> str:
    """A MAC from ``base`` with its ``00`` octets after the first three randomised."""
    parts = base.lower().split(":")
    if len(parts) != 6:
        parts = ["fa", "16", "3e", "00", "00", "00"]
    bits = random.getrandbits(24)  # one draw for the (at most three) random octets
    for i in range(3, 6):
        if parts[i] == "00":
            parts[i] = f"{(bits >> (8 * (i - 3))) & 0xFF:02x}"
    return ":".join(parts)


def valid_mac(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    parts = value.split(":")
    if len(parts) != 6 or not all(len(p) == 2 for p in parts):
        return False
    try:
        octets = [int(p, 16) for p in parts]
    except ValueError:
        return False
    return not (octets[0] & 1) and any(octets) and value.lower() != "ff:ff:ff:ff:ff:ff"
