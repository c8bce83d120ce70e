"""Security groups and port security (anti-spoofing) of the Linux data plane, in nftables.

Neutron's linuxbridge agent filters bridged traffic with iptables ``physdev`` rules through
``br_netfilter``; this component does the same with two nft tables named ``onestack-sg`` in
the root-side namespace (:attr:`Host.netns`), loaded atomically as one ``nft -f -`` script:

* ``bridge onestack-sg``: ``prerouting`` (priority -300) stamps the packet mark of frames
  from a filtered port (``iifname "tap…"``) with the port's index and drops frames whose
  source MAC, ARP sender or IP source is not the port's (sets keyed by device . MAC .
  address: fixed IPs and allowed address pairs, CIDRs too; DHCP discovery from 0.0.0.0,
  IPv6 link-local and DAD pass), DHCP server replies and router advertisements from
  guests. ``forward`` (priority -300) adds the index of a filtered egress port
  (``oifname``) to the mark in ``out-N``.
* ``inet onestack-sg``: ``prerouting`` (raw priority) puts each tenant network's traffic in
  its own conntrack zone (keyed by the network's bridge, which is what ``iifname`` is there
  under ``br_netfilter``), so overlapping tenant CIDRs never share entries; ``forward`` drops
  invalid, accepts established/related, then runs the sender's ``eg-N`` chain (its groups'
  egress rules) and the receiver's ``in-N`` chain (ingress rules); both end in ``drop``.
  ``input`` runs the sender's ``eg-N`` for what guests send to the host itself.

The mark layout is :data:`MARK_FLAG` (set on every packet touched) | ingress index (bits
0–14) | egress index << 15 (bits 15–29). Port indexes and network zones are kept in
``<state_dir>/firewall.json`` so they survive restarts. Ports without port security, ports of
routers and DHCP servers (``network:*`` owners), unbound ports and ports of unknown networks
get no filtering. When a port loses an allow rule, the conntrack entries of its addresses
(per zone and protocol) are deleted so the removed allow also stops existing flows; a member
leaving a remote group loses its flows with the ports whose rules named the group.

External networks stay in conntrack zone 0: the host routes (and may masquerade) their
traffic, and replies from the uplink arrive in zone 0. A reload is one transaction that
deletes and redefines both tables (``flush table`` would keep stale chains and set
elements); it happens only when the rendered text changed.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import json
import logging
import os
import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from onestack.drivers.network.linux import names
from onestack.drivers.network.linux.host import Host, HostError
from onestack.drivers.network.linux.model import Dirty, Model, View
from onestack.drivers.network.linux.options import LinuxOptions

LOG = logging.getLogger(__name__)

TABLE = "onestack-sg"
STATE_FILE = "firewall.json"
MARK_FLAG = 0x80000000
IN_MASK = 0x00007FFF
OUT_SHIFT = 15
OUT_MASK = IN_MASK << OUT_SHIFT
MAX_INDEX = IN_MASK
MAX_ZONE = 65535

#: Protocol names Neutron accepts, as IP protocol numbers.
PROTOCOLS: dict[str, int] = {
    "ah": 51, "dccp": 33, "egp": 8, "esp": 50, "gre": 47, "hopopt": 0, "icmp": 1,
    "icmpv6": 58, "igmp": 2, "ipip": 4, "ipv6-encap": 41, "ipv6-frag": 44, "ipv6-icmp": 58,
    "ipv6-nonxt": 59, "ipv6-opts": 60, "ipv6-route": 43, "ospf": 89, "pgm": 113,
    "rsvp": 46, "sctp": 132, "tcp": 6, "udp": 17, "udplite": 136, "vrrp": 112,
}
#: Protocols whose rules may carry a destination port range.
PORT_PROTOCOLS = frozenset({6, 17, 33, 132, 136})
#: Protocols ``conntrack -p`` knows by name.
CONNTRACK_NAMES = {1: "icmp", 6: "tcp", 17: "udp", 33: "dccp", 47: "gre", 58: "icmpv6",
                   132: "sctp", 136: "udplite"}

_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_ANY = (None, "", "any")
_V4, _V6 = 4, 6

_EGRESS_FIXED = (
    "meta nfproto ipv4 udp sport 68 udp dport 67 return",
    "meta nfproto ipv6 udp sport 546 udp dport 547 return",
    "icmpv6 type @nd-egress return",
)
_INGRESS_FIXED = (
    "ip6 saddr fe80::/10 udp sport 547 udp dport 546 return",
    "icmpv6 type @nd-ingress return",
    "ip6 saddr fe80::/10 icmpv6 type nd-router-advert return",
)

Net = ipaddress.IPv4Network | ipaddress.IPv6Network
_LINK_LOCAL = ipaddress.ip_network("fe80::/10")
_UNSPECIFIED = ipaddress.ip_network("0.0.0.0/32")


# ---------------------------------------------------------------------- pure rendering
def _network(value: Any) -> Net | None:
    return _parse_network(str(value))


@functools.lru_cache(maxsize=65536)
def _parse_network(text: str) -> Net | None:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


def _fmt(net: Net) -> str:
    return str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)


def _collapse(nets: Iterable[Net]) -> list[str]:
    """Sorted, non-overlapping nft elements (IPv4 first, then IPv6)."""
    return list(_collapse_set(frozenset(nets)))


@functools.lru_cache(maxsize=65536)
def _collapse_set(nets: frozenset[Net]) -> tuple[str, ...]:
    v4 = [n for n in nets if n.version == _V4]
    v6 = [n for n in nets if n.version == _V6]
    out = [_fmt(n) for n in ipaddress.collapse_addresses(v4)]
    return tuple(out + [_fmt(n) for n in ipaddress.collapse_addresses(v6)])


def _int(value: Any, low: int, high: int) -> int | None:
    """``value`` as an int in [low, high]; None when absent; ValueError when bad."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError(value)
    number = int(str(value).strip())
    if not low <= number <= high:
        raise ValueError(value)
    return number


def protocol_number(protocol: Any, version: int) -> int | None:
    """The IP protocol number of a rule (None = any); ValueError when not understood."""
    if protocol in _ANY:
        return None
    text = str(protocol).strip().lower()
    if text in PROTOCOLS:
        number = PROTOCOLS[text]
    elif text.isdigit():
        number = _int(text, 0, 255)
        assert number is not None
    else:
        raise ValueError(protocol)
    if version == _V6 and number == 1:
        number = 58  # Neutron accepts "icmp" for IPv6 rules and means ICMPv6
    if version == _V4 and number == 58:
        raise ValueError(protocol)
    return number


def group_set_name(group_id: str, version: int) -> str:
    """The nft set of a security group's member addresses (stable, always a safe name)."""
    digest = hashlib.sha256(str(group_id).encode()).hexdigest()[:16]
    return f"rg-{digest}-v{version}"


@dataclass(frozen=True)
class RuleMatch:
    """One rendered security group rule: its nft line and what it allows."""

    line: str
    protocol: int | None
    version: int
    #: The remote group's address set the rule matches against, if any.
    remote_set: str | None = None


def render_rule(rule: View) -> RuleMatch | None:
    """The nft line of a security group rule inside a port chain (``… return``), or None
    when the rule is malformed (it then allows nothing; never invalid nft text)."""
    direction = rule.get("direction")
    if direction not in ("ingress", "egress"):
        return None
    ethertype = rule.get("ethertype") or "IPv4"
    if ethertype not in ("IPv4", "IPv6"):
        return None
    version = _V4 if ethertype == "IPv4" else _V6
    fam = "ip" if version == _V4 else "ip6"
    peer = "saddr" if direction == "ingress" else "daddr"
    try:
        proto = protocol_number(rule.get("protocol"), version)
        low = _int(rule.get("port_range_min"), 0, 65535)
        high = _int(rule.get("port_range_max"), 0, 65535)
    except (ValueError, TypeError):
        return None
    parts = [f"meta nfproto ipv{version}"]
    remote_set = None
    if rule.get("remote_address_group_id"):
        return None  # address groups are not in the model: the rule matches nothing
    if rule.get("remote_group_id"):
        remote_set = group_set_name(rule["remote_group_id"], version)
        parts.append(f"{fam} {peer} @{remote_set}")
    elif rule.get("remote_ip_prefix") not in (None, ""):
        net = _network(rule["remote_ip_prefix"])
        if net is None or net.version != version:
            return None
        if net.prefixlen:
            parts.append(f"{fam} {peer} {_fmt(net)}")
    if proto is not None:
        parts.append(f"meta l4proto {proto}")
        if proto in PORT_PROTOCOLS and (low is not None or high is not None):
            if low is None or (high is not None and high < low):
                return None
            parts.append(f"th dport {low}" if high in (None, low) else f"th dport {low}-{high}")
        elif proto in (1, 58) and low is not None:
            icmp = "icmp" if proto == 1 else "icmpv6"
            if low > 255 or (high is not None and high > 255):
                return None
            parts.append(f"{icmp} type {low}")
            if high is not None:
                parts.append(f"{icmp} code {high}")
    parts.append("return")
    return RuleMatch(" ".join(parts), proto, version, remote_set)


def port_networks(port: View) -> list[tuple[str, Net]]:
    """(MAC, address/CIDR) pairs a port may send from: fixed IPs and allowed pairs."""
    mac = str(port.get("mac_address") or "").lower()
    out: list[tuple[str, Net]] = []
    for ip in port.get("fixed_ips") or ():
        net = _network((ip or {}).get("ip_address"))
        if net is not None and net.prefixlen == net.max_prefixlen:
            out.append((mac, net))
    for pair in port.get("allowed_address_pairs") or ():
        net = _network((pair or {}).get("ip_address"))
        if net is not None:
            out.append((str(pair.get("mac_address") or mac).lower(), net))
    return [(m, n) for m, n in out if _MAC.match(m)]


@dataclass
class SpoofElements:
    """What one port with port security may send, as elements of the bridge table's sets."""

    macs: list[str] = field(default_factory=list)
    arp: list[str] = field(default_factory=list)
    v4: list[str] = field(default_factory=list)
    v6: list[str] = field(default_factory=list)


def spoof_elements(port: View, tap: str) -> SpoofElements:
    """The port's allowed (device . MAC [. address]) elements: its MAC and fixed IPs,
    allowed address pairs (CIDRs too), ARP probes from 0.0.0.0 and IPv6 link-local."""
    mac = str(port.get("mac_address") or "").lower()
    pairs = port_networks(port)
    macs = sorted({m for m, _ in pairs} | ({mac} if _MAC.match(mac) else set()))
    by_mac: dict[str, list[Net]] = {m: [_LINK_LOCAL] for m in macs}
    for m, net in pairs:
        by_mac[m].append(net)
    dev = f'"{tap}"'
    out = SpoofElements(macs=[f"{dev} . {m}" for m in macs])
    for m in macs:
        elems = _collapse(by_mac[m])
        v4 = [e for e in elems if ":" not in e]
        out.v4 += [f"{dev} . {m} . {e}" for e in v4]
        out.v6 += [f"{dev} . {m} . {e}" for e in elems if ":" in e]
        arp = _collapse([n for n in by_mac[m] if n.version == _V4]
                        + [_UNSPECIFIED])
        out.arp += [f"{dev} . {m} . {e}" for e in arp]
    return out


#: Rules of the bridge prerouting chain after the port's mark is set (ports with port
#: security only): the guest's own MAC/addresses, no DHCP server, no router advertisement.
_SPOOF_RULES = (
    "iifname . ether saddr != @sg-macs drop",
    "ip protocol udp udp sport 67 udp dport 68 drop",
    "ether type ip6 meta l4proto udp udp sport 547 udp dport 546 drop",
    "icmpv6 type @guest-no-icmpv6 drop",
    "iifname . arp saddr ether . arp saddr ip != @sg-arp drop",
    "ip saddr 0.0.0.0 udp sport 68 udp dport 67 accept",
    "iifname . ether saddr . ip saddr != @sg-v4 drop",
    "ip6 saddr :: meta l4proto ipv6-icmp accept",
    "iifname . ether saddr . ip6 saddr != @sg-v6 drop",
    "ether type != @guest-ethertypes drop",
)


def _named_set(name: str, kind: str, elements: Iterable[str], interval: bool = False,
               ) -> list[str]:
    lines = [f"\t{'map' if ' : ' in kind else 'set'} {name} {{", f"\t\ttype {kind}"]
    if interval:
        lines.append("\t\tflags interval")
    elems = list(elements)
    if elems:
        lines.append(f"\t\telements = {{ {', '.join(elems)} }}")
    return lines + ["\t}"]


@dataclass
class PortFilter:
    """What was rendered for one filtered port (kept to find removed rules)."""

    port_id: str
    tap: str
    index: int
    zone: int
    egress: dict[str, RuleMatch] = field(default_factory=dict)
    ingress: dict[str, RuleMatch] = field(default_factory=dict)
    addresses: list[Net] = field(default_factory=list)


@dataclass
class Rendered:
    """The whole ruleset as text, and the per-port plans it came from."""

    text: str
    ports: dict[str, PortFilter]
    marks: dict[str, int]
    zones: dict[str, int]
    #: Remote group set name -> the host addresses in it.
    members: dict[str, frozenset[str]] = field(default_factory=dict)
    #: The text without set elements and per-port chains (what must not change for an
    #: incremental load), the named sets' elements and the per-port chains' rules.
    skeleton: str = ""
    sets: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    chains: dict[tuple[str, str], list[str]] = field(default_factory=dict)


def filtered(port: View, model: Model) -> bool:
    """Whether the port gets security group filtering here."""
    return bool(port.get("binding:host_id")
                and port.get("network_id") in model.networks
                and port.get("port_security_enabled", True) is not False
                and not str(port.get("device_owner") or "").startswith("network:"))


def _allocate(current: dict[str, int], wanted: Iterable[str], low: int, high: int,
              ) -> dict[str, int]:
    """Keep existing numbers of ``wanted`` keys, give new keys the lowest free numbers."""
    wanted = sorted(set(wanted))
    kept = {k: v for k, v in current.items() if k in wanted and low <= v <= high}
    used = set(kept.values())
    if len(used) != len(kept):  # a corrupt state file: renumber duplicates
        seen: set[int] = set()
        for k in sorted(kept):
            if kept[k] in seen:
                del kept[k]
            else:
                seen.add(kept[k])
        used = seen
    free = (n for n in range(low, high + 1) if n not in used)
    for key in wanted:
        if key not in kept:
            number = next(free, None)
            if number is None:
                LOG.error("firewall: out of numbers for %s", key)
                continue
            kept[key] = number
    return kept


def render(model: Model, options: LinuxOptions, marks: dict[str, int],
           zones: dict[str, int]) -> Rendered:
    """Render both tables for ``model`` (pure; ``marks``/``zones`` are the previous
    allocation, the result carries the new one)."""
    ports = sorted((p for p in model.ports.values() if filtered(p, model)),
                   key=lambda p: str(p["id"]))
    taps: dict[str, View] = {}
    for p in ports:
        tap = names.tap(str(p["id"]))
        if _SAFE_NAME.match(tap) and tap not in taps:
            taps[tap] = p
    ports = list(taps.values())
    new_marks = _allocate(marks, (str(p["id"]) for p in ports), 1, MAX_INDEX)
    ports = [p for p in ports if str(p["id"]) in new_marks]
    bridges: dict[str, str] = {}
    for net_id in sorted(model.networks):
        net = model.networks[net_id]
        if net.get("router:external"):
            continue  # host-routed (SNAT/uplink) traffic must stay in the default zone
        bridge = names.network_bridge(net, options.bridge_mappings)
        if _SAFE_NAME.match(bridge) and bridge not in bridges:
            bridges[bridge] = net_id
    new_zones = _allocate(zones, bridges.values(), 1, MAX_ZONE)

    groups: dict[str, View] = model.security_groups
    used_sets: dict[str, tuple[str, int]] = {}
    plans: dict[str, PortFilter] = {}
    for p in ports:
        pid = str(p["id"])
        zone = new_zones.get(str(p["network_id"]), 0)
        plan = PortFilter(pid, names.tap(pid), new_marks[pid], zone,
                          addresses=[n for _, n in port_networks(p)
                                     if n.prefixlen == n.max_prefixlen])
        for gid in p.get("security_groups") or ():
            for rule in (groups.get(gid) or {}).get("security_group_rules") or ():
                match = render_rule(rule)
                if match is None:
                    continue
                if rule.get("remote_group_id"):
                    rg = str(rule["remote_group_id"])
                    used_sets[group_set_name(rg, match.version)] = (rg, match.version)
                side = plan.ingress if rule.get("direction") == "ingress" else plan.egress
                side[match.line] = match
        plans[pid] = plan

    dhcp_sets: dict[str, str] = {}
    out = _Text()
    out.line(f"table bridge {TABLE} {{")
    spoof = SpoofElements()
    for p in ports:
        elems = spoof_elements(p, names.tap(str(p["id"])))
        spoof.macs += elems.macs
        spoof.arp += elems.arp
        spoof.v4 += elems.v4
        spoof.v6 += elems.v6
    out.named("bridge", "sg-ports", "ifname", (f'"{pl.tap}"' for pl in plans.values()))
    out.named("bridge", "sg-marks", "ifname : mark",
              (f'"{pl.tap}" : {MARK_FLAG | pl.index:#010x}' for pl in plans.values()))
    out.named("bridge", "sg-macs", "ifname . ether_addr", spoof.macs)
    out.named("bridge", "sg-arp", "ifname . ether_addr . ipv4_addr", spoof.arp, interval=True)
    out.named("bridge", "sg-v4", "ifname . ether_addr . ipv4_addr", spoof.v4, interval=True)
    out.named("bridge", "sg-v6", "ifname . ether_addr . ipv6_addr", spoof.v6, interval=True)
    out.named("bridge", "guest-no-icmpv6", "icmpv6_type", ["nd-router-advert", "nd-redirect"])
    out.named("bridge", "guest-ethertypes", "ether_type", ["ip", "ip6", "arp"])
    out.named("bridge", "out-chains", "ifname : verdict",
              (f'"{pl.tap}" : jump out-{pl.index}' for pl in plans.values()))
    out.line("\tchain prerouting {\n\t\ttype filter hook prerouting priority -300; "
             "policy accept;")
    out.line("\t\tiifname != @sg-ports accept")
    out.line("\t\tmeta mark set iifname map @sg-marks")
    for line in _SPOOF_RULES:
        out.line(f"\t\t{line}")
    out.line("\t}")
    out.line("\tchain forward {\n\t\ttype filter hook forward priority -300; "
             "policy accept;")
    out.line("\t\toifname vmap @out-chains")
    out.line("\t}")
    for pl in plans.values():
        out.chain("bridge", f"out-{pl.index}",
                  [f"meta mark set meta mark | {MARK_FLAG | (pl.index << OUT_SHIFT):#010x}"])
    out.line("}")

    out.line(f"table inet {TABLE} {{")
    hosts: dict[str, frozenset[str]] = {}
    for set_name, (gid, version) in sorted(used_sets.items()):
        members = [n for m in model.group_members(gid) for _, n in port_networks(m)
                   if n.version == version]
        hosts[set_name] = frozenset(str(n.network_address) for n in members
                                    if n.prefixlen == n.max_prefixlen)
        out.named("inet", set_name, "ipv4_addr" if version == _V4 else "ipv6_addr",
                  _collapse(members), interval=True)
    for net_id in sorted({str(p["network_id"]) for p in ports}):
        dport = model.dhcp_port(net_id)
        servers = _collapse(n for _, n in port_networks(dport) if n.version == _V4) \
            if dport else []
        if servers:
            dhcp_sets[net_id] = "dhcp-" + hashlib.sha256(net_id.encode()).hexdigest()[:16]
            out.named("inet", dhcp_sets[net_id], "ipv4_addr", servers, interval=True)
    out.named("inet", "nd-egress", "icmpv6_type", [
        "nd-router-solicit", "nd-neighbor-solicit", "nd-neighbor-advert",
        "mld-listener-report", "mld-listener-done", "mld2-listener-report"])
    out.named("inet", "nd-ingress", "icmpv6_type", [
        "nd-neighbor-solicit", "nd-neighbor-advert", "mld-listener-query"])
    out.line("\tchain prerouting {\n\t\ttype filter hook prerouting priority raw; "
             "policy accept;")
    if bridges:
        zmap = ", ".join(f'"{b}" : {new_zones[n]}' for b, n in bridges.items()
                         if n in new_zones)
        out.line(f"\t\tct zone set iifname map {{ {zmap} }}")
    out.line("\t}")
    out.named("inet", "egress-chains", "mark : verdict",
              (f"{pl.index:#x} : jump eg-{pl.index}" for pl in plans.values()))
    out.named("inet", "ingress-chains", "mark : verdict",
              (f"{pl.index << OUT_SHIFT:#x} : jump in-{pl.index}" for pl in plans.values()))
    for hook in ("forward", "input"):
        # input: what a guest sends to the host itself passes its egress rules (Neutron)
        out.line(f"\tchain {hook} {{\n\t\ttype filter hook {hook} priority filter; "
                 "policy accept;")
        out.line(f"\t\tmeta mark & {MARK_FLAG:#010x} == 0 accept")
        out.line("\t\tct state invalid drop")
        out.line("\t\tct state established,related accept")
        out.line(f"\t\tmeta mark & {IN_MASK:#010x} vmap @egress-chains")
        if hook == "forward":
            out.line(f"\t\tmeta mark & {OUT_MASK:#010x} vmap @ingress-chains")
        out.line("\t}")
    for p in ports:
        pl = plans[str(p["id"])]
        out.chain("inet", f"eg-{pl.index}",
                  [*_EGRESS_FIXED, *sorted(pl.egress), "drop"])
        dset = dhcp_sets.get(str(p["network_id"]))
        src = f"ip saddr @{dset} " if dset else "meta nfproto ipv4 "
        out.chain("inet", f"in-{pl.index}",
                  [f"{src}udp sport 67 udp dport 68 return", *_INGRESS_FIXED,
                   *sorted(pl.ingress), "drop"])
    out.line("}")
    return Rendered(out.text(), plans, new_marks, new_zones, hosts,
                    skeleton=out.skeleton(), sets=out.sets, chains=out.chains)


class _Text:
    """The ruleset being rendered, with its structure kept for incremental loads."""

    def __init__(self) -> None:
        self._full: list[str] = []
        self._skel: list[str] = []
        self.sets: dict[tuple[str, str], list[str]] = {}
        self.chains: dict[tuple[str, str], list[str]] = {}

    def line(self, text: str) -> None:
        self._full.append(text)
        self._skel.append(text)

    def named(self, family: str, name: str, kind: str, elements: Iterable[str],
              interval: bool = False) -> None:
        elems = list(elements)
        self._full += _named_set(name, kind, elems, interval)
        self._skel += _named_set(name, kind, (), interval)
        self.sets[(family, name)] = elems

    def chain(self, family: str, name: str, rules: list[str]) -> None:
        self._full.append(f"\tchain {name} {{")
        self._full += [f"\t\t{r}" for r in rules]
        self._full.append("\t}")
        self.chains[(family, name)] = list(rules)

    def text(self) -> str:
        return "\n".join(self._full) + "\n"

    def skeleton(self) -> str:
        return "\n".join(self._skel) + "\n"


def delta_script(old: Rendered, new: Rendered) -> str | None:
    """An nft script that turns ``old`` (loaded) into ``new`` by additions only: new
    per-port chains and new set elements, the rest unchanged. None when anything else
    changed (a port or rule removed or changed, a set or chain declared anew): then the
    whole ruleset is reloaded."""
    if old.skeleton != new.skeleton or not old.skeleton:
        return None
    for key, rules in old.chains.items():
        if new.chains.get(key) != rules:
            return None
    added: dict[tuple[str, str], list[str]] = {}
    for key, elems in new.sets.items():
        before = set(old.sets.get(key, ()))
        if not before <= set(elems):
            return None
        fresh = [e for e in elems if e not in before]
        if fresh:
            added[key] = fresh
    lines: list[str] = []
    for (family, name), rules in new.chains.items():
        if (family, name) not in old.chains:
            lines.append(f"add chain {family} {TABLE} {name}")
            lines += [f"add rule {family} {TABLE} {name} {r}" for r in rules]
    for (family, name), fresh in added.items():  # after the chains the maps jump to
        lines.append(f"add element {family} {TABLE} {name} {{ {', '.join(fresh)} }}")
    return "".join(line + "\n" for line in lines)


#: A conntrack delete: (zone, IP version, source, destination, protocol); None = any.
Flow = tuple[int, int, str | None, str | None, int | None]


def _removed_flows(old: dict[str, PortFilter], new: dict[str, PortFilter],
                   old_members: dict[str, frozenset[str]] | None = None,
                   new_members: dict[str, frozenset[str]] | None = None) -> set[Flow]:
    """Conntrack entries that must go because a port still filtered lost an allow rule
    (entries of its addresses, per protocol) or a remote group lost a member (entries
    between the port and that member), as Neutron does."""
    keys: set[Flow] = set()
    old_members, new_members = old_members or {}, new_members or {}
    gone_members = {name: hosts - new_members.get(name, frozenset())
                    for name, hosts in old_members.items()}
    for pid, after in new.items():
        before = old.get(pid)
        for side in ("egress", "ingress"):
            rules: dict[str, RuleMatch] = getattr(after, side)
            gone = (set(getattr(before, side)) - set(rules)) if before else set()
            for line in gone:
                match: RuleMatch = getattr(before, side)[line]
                proto = match.protocol if match.protocol in CONNTRACK_NAMES else None
                for addr in after.addresses:
                    if addr.version == match.version:
                        a = str(addr.network_address)
                        keys.add((after.zone, addr.version, *((a, None) if side == "egress"
                                                              else (None, a)), proto))
            for match in rules.values():
                for member in gone_members.get(match.remote_set or "", ()):
                    for addr in after.addresses:
                        if addr.version == match.version:
                            a = str(addr.network_address)
                            keys.add((after.zone, addr.version,
                                      *((a, member) if side == "egress" else (member, a)),
                                      None))
    # a delete without a protocol covers those with one
    return {k for k in keys if k[4] is None or (*k[:4], None) not in keys}


# ---------------------------------------------------------------------- the component
class Firewall:
    """Security groups and anti-spoofing for bridged ports (part of the L2 agent)."""

    agent_type = ""

    def __init__(self, host: Host, options: LinuxOptions) -> None:
        self.host = host
        self.options = options
        self._last_text: str | None = None
        #: What the kernel holds now (as loaded by this process), for incremental loads.
        self._last: Rendered | None = None
        self._plans: dict[str, PortFilter] = {}
        self._members: dict[str, frozenset[str]] = {}
        self._sysctl_done = False
        self._marks, self._zones = self._load_state()
        #: Number of ``nft`` loads and conntrack deletes so far (tests, diagnostics).
        self.loads = 0
        #: Of those loads, how many only added new ports' chains and elements.
        self.delta_loads = 0
        self.conntrack_deletes = 0

    # ------------------------------------------------------------------ state file
    @property
    def state_path(self) -> Any:
        return self.options.state_dir / STATE_FILE

    def _load_state(self) -> tuple[dict[str, int], dict[str, int]]:
        try:
            data = json.loads(self.state_path.read_text())
            marks = {str(k): int(v) for k, v in dict(data.get("marks") or {}).items()}
            zones = {str(k): int(v) for k, v in dict(data.get("zones") or {}).items()}
            return marks, zones
        except (FileNotFoundError, ValueError, TypeError, AttributeError):
            return {}, {}

    def _save_state(self) -> None:
        path = self.state_path
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"marks": self._marks, "zones": self._zones},
                                  sort_keys=True))
        os.replace(tmp, path)

    @property
    def marks(self) -> dict[str, int]:
        """Port id -> mark index of the ports filtered now."""
        return dict(self._marks)

    @property
    def zones(self) -> dict[str, int]:
        """Network id -> conntrack zone."""
        return dict(self._zones)

    # ------------------------------------------------------------------ component
    def apply(self, model: Model, dirty: Dirty) -> None:
        """Render the whole ruleset from ``model``; load it when it changed."""
        if not (dirty.all or dirty.ports or dirty.networks or dirty.security_groups):
            return
        self._converge(model)

    def cleanup(self, model: Model) -> None:
        """A full render already leaves out ports the model no longer has."""
        self._converge(model)

    def wired(self, model: Model) -> set[str]:
        return set()

    def stop(self) -> None:
        """Nothing runs in-process; the rules stay and the next start adopts them."""

    # ------------------------------------------------------------------ internals
    def _converge(self, model: Model) -> None:
        rendered = render(model, self.options, self._marks, self._zones)
        if (rendered.marks, rendered.zones) != (self._marks, self._zones):
            self._marks, self._zones = rendered.marks, rendered.zones
            self._save_state()
        if rendered.text == self._last_text:
            self._plans, self._members = rendered.ports, rendered.members
            self._last = rendered
            return
        self._enable_br_netfilter()
        delta = delta_script(self._last, rendered) if self._last is not None else None
        loaded = False
        if delta:
            try:  # new ports only: add their chains and elements, nothing reloaded
                self.host.nft(delta)
                loaded = True
                self.delta_loads += 1
            except HostError as exc:
                LOG.warning("firewall: incremental load failed (%s); reloading", exc)
        if not loaded:
            script = "".join(f"add table {fam} {TABLE}\ndelete table {fam} {TABLE}\n"
                             for fam in ("bridge", "inet")) + rendered.text
            self.host.nft(script)
        self._last = rendered
        self.loads += 1
        old, self._plans = self._plans, rendered.ports
        old_members, self._members = self._members, rendered.members
        self._last_text = rendered.text
        self._flush_conntrack(_removed_flows(old, rendered.ports, old_members,
                                             rendered.members))

    def _enable_br_netfilter(self) -> None:
        if self._sysctl_done:
            return
        self.host.run(["sysctl", "-q", "-w", "net.bridge.bridge-nf-call-iptables=1",
                       "net.bridge.bridge-nf-call-ip6tables=1"])
        self._sysctl_done = True

    def _flush_conntrack(self, keys: set[Flow]) -> None:
        if not keys:
            return
        if shutil.which("conntrack") is None:
            LOG.warning("firewall: conntrack not found; removed rules keep existing flows")
            return
        for zone, version, src, dst, proto in sorted(keys, key=str):
            argv = ["conntrack", "-D", "-f", f"ipv{version}", "-w", str(zone)]
            argv += ["-s", src] if src else []
            argv += ["-d", dst] if dst else []
            if proto is not None:
                argv += ["-p", CONNTRACK_NAMES[proto]]
            self.host.run(argv, check=False)  # exit 1 when nothing matched
            self.conntrack_deletes += 1
