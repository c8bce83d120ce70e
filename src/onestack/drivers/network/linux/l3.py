"""L3 of the Linux data plane: Neutron's legacy L3 agent.

Every router with ``admin_state_up`` gets a namespace ``qrouter-<id>`` (recorded in the
namespace :class:`~.wiring.Ledger` before it is made) with IPv4 and IPv6 forwarding on:

* each interface port is a veth ``tap<port[:11]>`` (in its network's bridge) <->
  ``qr-<port[:11]>`` (in the namespace) with the port's MAC and fixed IPs;
* the gateway port is ``qg-<port[:11]>`` on the external network's bridge, with its fixed IPs,
  the floating IPs as /32 addresses and a default route via the external subnet's gateway;
* extra routes (``router["routes"]``) are ``ip route replace <destination> via <nexthop>``;
* NAT lives in one nft table ``ip onestack-nat`` inside the namespace, replaced atomically
  (``nft -f -``) only when its rendered text changed: SNAT of the internal IPv4 subnets to the
  gateway address (``enable_snat``), per floating IP a DNAT (prerouting and output) and an SNAT
  ahead of the general one, hairpin (a guest reaching a floating IP of its own network is
  masqueraded so replies come back through the router), and the metadata redirect of
  ``169.254.169.254:80`` from ``qr-`` devices to the proxy on port 9697 (which only ``qr-``
  devices and loopback may reach).

Internal ports on IPv6 subnets with an ``ipv6_ra_mode`` get router advertisements from a
radvd in the namespace (``ra.py``).

A new floating IP is announced with a gratuitous ARP (``arping -U``, not waited for); a removed
one loses its address, rules and conntrack entries. Addresses and routes are reconciled against
``ip -j`` output on ``qr-``/``qg-`` devices only, so a second process (after ``kill -9``) adopts a
namespace without duplicating anything. ``cleanup`` deletes ``qrouter-`` namespaces in the
ledger that no router wants; namespaces not in the ledger are never touched.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import subprocess
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from onestack.drivers.network.linux import names
from onestack.drivers.network.linux.host import Host, HostError
from onestack.drivers.network.linux.model import (
    ROUTER_GATEWAY,
    ROUTER_INTERFACE_OWNERS,
    Dirty,
    Model,
)
from onestack.drivers.network.linux.wiring import (
    Ledger,
    delete_namespace,
    ensure_namespace,
    plug_veth,
)

if TYPE_CHECKING:
    from onestack.drivers.network.linux.options import LinuxOptions
from onestack.drivers.network.linux.ra import Radvd

LOG = logging.getLogger(__name__)

View = dict[str, Any]

#: The nft table of a router's NAT (inside its namespace).
NAT_TABLE = "onestack-nat"
#: The root-side nft table of ``external_nat`` (masquerade of the public network).
EXT_TABLE = "onestack-ext"
METADATA_IP = "169.254.169.254"
#: Where the metadata proxy listens inside each router namespace (Neutron's default).
METADATA_PORT = 9697
ROUTER_DEVICE_PREFIXES = ("qr-", "qg-")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


# ---------------------------------------------------------------------- the plan (pure)
@dataclass
class DevicePlan:
    """One ``qr-``/``qg-`` device of a router."""

    name: str
    port_id: str
    bridge: str
    mac: str | None
    mtu: int | None
    #: "address/prefixlen" in normalised form.
    addresses: list[str] = field(default_factory=list)
    gateway: bool = False


@dataclass
class RouterPlan:
    """What a router's namespace should hold."""

    router_id: str
    namespace: str
    devices: dict[str, DevicePlan] = field(default_factory=dict)
    #: (destination network, next hop), both normalised.
    routes: list[tuple[str, str]] = field(default_factory=list)
    #: floating IP -> fixed IP (IPv4, normalised).
    fips: dict[str, str] = field(default_factory=dict)
    nat: str = ""


def _ip(value: object) -> str | None:
    try:
        return str(ipaddress.ip_address(str(value)))
    except ValueError:
        return None


def _net(value: object) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(str(value), strict=False)
    except ValueError:
        return None


def wanted(model: Model, router_id: str) -> bool:
    """Whether the router should exist on the host (present and administratively up)."""
    router = model.routers.get(router_id)
    return router is not None and router.get("admin_state_up", True) is not False


def _device_plan(model: Model, port: View, name: str, bridge_mappings: dict[str, str],
                 gateway: bool) -> DevicePlan | None:
    network = model.networks.get(str(port.get("network_id")))
    if network is None or not _SAFE_NAME.match(name):
        return None
    addresses = []
    for fixed in port.get("fixed_ips") or ():
        subnet = model.subnets.get(str(fixed.get("subnet_id")))
        addr = _ip(fixed.get("ip_address"))
        net = _net(subnet.get("cidr")) if subnet else None
        if addr is None or net is None:
            continue
        addresses.append(f"{addr}/{net.prefixlen}")
    mtu = network.get("mtu")
    return DevicePlan(name=name, port_id=str(port["id"]),
                      bridge=names.network_bridge(network, bridge_mappings),
                      mac=port.get("mac_address") or None,
                      mtu=int(mtu) if mtu else None, addresses=addresses, gateway=gateway)


def plan_router(model: Model, router_id: str, bridge_mappings: dict[str, str]) -> RouterPlan:
    """The namespace, devices, routes, floating IPs and NAT rules of router ``router_id``."""
    router = model.routers[router_id]
    plan = RouterPlan(router_id=router_id, namespace=names.router_namespace(router_id))
    internal: list[str] = []
    #: device -> IPv4 address scope of its network (None: no scope, a scope of its own).
    scopes: dict[str, str | None] = {}
    cidr_scope: dict[str, str | None] = {}
    for port in sorted(model.router_interfaces(router_id), key=lambda p: str(p["id"])):
        dev = _device_plan(model, port, names.router_interface(str(port["id"])),
                           bridge_mappings, gateway=False)
        if dev is None:
            continue
        plan.devices[dev.name] = dev
        scopes[dev.name] = _scope(model, port)
        for fixed in port.get("fixed_ips") or ():
            subnet = model.subnets.get(str(fixed.get("subnet_id")))
            net = _net(subnet.get("cidr")) if subnet else None
            if net is not None and net.version == 4 and str(net) not in internal:
                internal.append(str(net))
                cidr_scope[str(net)] = scopes[dev.name]
    gw_dev: DevicePlan | None = None
    gw_ip: str | None = None
    gw_port = model.router_gateway_port(router_id)
    if gw_port is not None:
        gw_dev = _device_plan(model, gw_port, names.router_gateway(str(gw_port["id"])),
                              bridge_mappings, gateway=True)
    if gw_dev is not None and gw_port is not None:
        plan.devices[gw_dev.name] = gw_dev
        scopes[gw_dev.name] = _scope(model, gw_port)
        for fixed in gw_port.get("fixed_ips") or ():
            subnet = model.subnets.get(str(fixed.get("subnet_id"))) or {}
            addr = _ip(fixed.get("ip_address"))
            if addr is None:
                continue
            if ":" not in addr and gw_ip is None:
                gw_ip = addr
            gateway = _ip(subnet.get("gateway_ip"))
            if gateway is not None and gateway != addr:
                plan.routes.append(("0.0.0.0/0" if ":" not in gateway else "::/0", gateway))
        for fip in sorted(model.router_floating_ips(router_id),
                          key=lambda f: str(f.get("floating_ip_address"))):
            floating = _ip(fip.get("floating_ip_address"))
            fixed_ip = _ip(fip.get("fixed_ip_address"))
            if floating is None or fixed_ip is None or ":" in floating or ":" in fixed_ip:
                continue
            plan.fips[floating] = fixed_ip
            if f"{floating}/32" not in gw_dev.addresses:
                gw_dev.addresses.append(f"{floating}/32")
    connected = [n for d in plan.devices.values() for a in d.addresses
                 if (n := _net(a)) is not None and n.prefixlen < n.max_prefixlen]
    for route in model.routers[router_id].get("routes") or ():
        dest = _net(route.get("destination"))
        hop = _ip(route.get("nexthop"))
        if dest is None or hop is None:
            continue
        if not any(ipaddress.ip_address(hop) in n for n in connected
                   if n.version == dest.version):
            LOG.warning("router %s: next hop %s of %s is on no connected subnet; skipped",
                        router_id, hop, dest)
            continue
        key = (str(dest), hop)
        if key not in plan.routes:
            plan.routes.append(key)
    info = router.get("external_gateway_info") or {}
    snat = info.get("enable_snat", True) is not False
    gw_scope = scopes.get(gw_dev.name) if gw_dev else None
    # Neutron's address-scope rule: subnets in the external network's scope are routed,
    # not SNATed.
    snat_cidrs = [c for c in internal if gw_scope is None or cidr_scope.get(c) != gw_scope]
    plan.nat = render_nat(gateway_device=gw_dev.name if gw_dev else None, gateway_ip=gw_ip,
                          snat=snat, internal_cidrs=internal, fips=plan.fips,
                          snat_cidrs=snat_cidrs, scopes=scopes)
    return plan


def _scope(model: Model, port: View) -> str | None:
    network = model.networks.get(str(port.get("network_id"))) or {}
    scope = network.get("ipv4_address_scope")
    return str(scope) if scope else None


def _scope_rules(scopes: dict[str, str | None], gateway_device: str | None,
                 snat: bool, snat_cidrs: list[str], fips: dict[str, str]) -> list[str]:
    """The forward rules of Neutron's address scopes: traffic between router interfaces
    whose networks are in different IPv4 address scopes (no scope being one of its own) is
    dropped, unless it is NATed (floating IPs; SNAT of internal subnets to the gateway)."""
    if len(set(scopes.values())) < 2:
        return []
    rules = ["ct status dnat accept", "ct status snat accept"]
    if gateway_device and snat and snat_cidrs:
        rules.append(f'oifname "{gateway_device}" ip saddr {{ {", ".join(snat_cidrs)} }} '
                     "accept")  # SNATed on the way out
    if gateway_device and fips:
        rules.append(f'oifname "{gateway_device}" ip saddr {{ {", ".join(fips.values())} }} '
                     "accept")  # SNATed to their floating IPs
    for src, src_scope in sorted(scopes.items()):
        for dst, dst_scope in sorted(scopes.items()):
            if src != dst and src_scope != dst_scope:
                rules.append(f'iifname "{src}" oifname "{dst}" drop')
    return rules


def render_nat(*, gateway_device: str | None, gateway_ip: str | None, snat: bool,
               internal_cidrs: list[str], fips: dict[str, str],
               snat_cidrs: list[str] | None = None,
               scopes: dict[str, str | None] | None = None) -> str:
    """The nft script that atomically replaces a router's ``ip onestack-nat`` table.
    ``snat_cidrs``: the internal subnets SNATed to the gateway (default: all); ``scopes``:
    each device's IPv4 address scope (forward rules between scopes)."""
    snat_cidrs = internal_cidrs if snat_cidrs is None else snat_cidrs
    pre = [f'iifname "qr-*" ip daddr {METADATA_IP} tcp dport 80 redirect to :{METADATA_PORT}']
    out: list[str] = []
    post: list[str] = []
    internal = ", ".join(internal_cidrs)
    if internal:
        # Hairpin: a guest reaching a floating IP whose fixed address is on an internal
        # network; without this the reply would bypass the router (and its conntrack).
        post.append(f'oifname "qr-*" ct status dnat ip saddr {{ {internal} }} masquerade')
    if gateway_device:
        for floating, fixed in fips.items():
            pre.append(f"ip daddr {floating} dnat to {fixed}")
            out.append(f"ip daddr {floating} dnat to {fixed}")
            post.append(f'oifname "{gateway_device}" ip saddr {fixed} snat to {floating}')
        if snat and gateway_ip and snat_cidrs:
            post.append(f'oifname "{gateway_device}" ip saddr {{ {", ".join(snat_cidrs)} }} '
                        f"snat to {gateway_ip}")
    lines = [f"table ip {NAT_TABLE}", f"delete table ip {NAT_TABLE}",
             f"table ip {NAT_TABLE} {{"]

    def chain(name: str, head: str, rules: list[str]) -> None:
        lines.append(f"\tchain {name} {{")
        lines.append(f"\t\t{head}; policy accept;")
        lines.extend(f"\t\t{rule}" for rule in rules)
        lines.append("\t}")

    chain("prerouting", "type nat hook prerouting priority dstnat", pre)
    chain("output", "type nat hook output priority -100", out)
    chain("postrouting", "type nat hook postrouting priority srcnat", post)
    forward = _scope_rules(scopes or {}, gateway_device, snat, snat_cidrs, fips)
    if forward:
        chain("forward", "type filter hook forward priority filter", forward)
    chain("input", "type filter hook input priority filter", [
        f'iifname "qr-*" tcp dport {METADATA_PORT} accept',
        f'iifname "lo" tcp dport {METADATA_PORT} accept',
        f"tcp dport {METADATA_PORT} drop"])
    lines.append("}")
    return "\n".join(lines) + "\n"


def render_external_nat(cidrs: list[str], bridges: list[str]) -> str:
    """The root-side ``ip onestack-ext`` table: the public subnets masqueraded when they
    leave through anything but onestack's bridges and taps (``external_nat``)."""
    lines = [f"table ip {EXT_TABLE}", f"delete table ip {EXT_TABLE}", f"table ip {EXT_TABLE} {{",
             "\tchain postrouting {",
             "\t\ttype nat hook postrouting priority srcnat; policy accept;"]
    skip = ['oifname != "brq*"', 'oifname != "tap*"']
    skip += [f'oifname != "{b}"' for b in sorted(set(bridges)) if _SAFE_NAME.match(b)]
    for cidr in cidrs:
        lines.append(f"\t\tip saddr {cidr} {' '.join(skip)} masquerade")
    lines += ["\t}", "}"]
    return "\n".join(lines) + "\n"



def _ensure_namespace(host: Host, ledger: Ledger, name: str) -> None:
    """:func:`~.wiring.ensure_namespace`, except that with a root-side namespace set the
    ``ip netns add`` runs in this process's mount namespace: under ``ip netns exec`` (a
    private mount namespace) the new namespace's bind mount would not be visible outside."""
    if host.netns is None:
        ensure_namespace(host, ledger, name)
        return
    if name in host.netns_list():
        return
    ledger.add(name)
    argv = ["ip", "netns", "add", name]
    host.history.append(argv)
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise HostError(argv, proc.returncode, proc.stderr)
    host.run(["ip", "link", "set", "lo", "up"], netns=name)


# ---------------------------------------------------------------------- reading the host
@dataclass
class NsState:
    """What a router namespace holds now (``qr-``/``qg-`` devices only)."""

    #: device -> (mac, up)
    links: dict[str, tuple[str, bool]] = field(default_factory=dict)
    #: device -> addresses "ip/len" (link-local IPv6 left out)
    addresses: dict[str, set[str]] = field(default_factory=dict)
    #: (destination, next hop or "", device) of non-kernel main-table routes
    routes: set[tuple[str, str, str]] = field(default_factory=set)


def _json_docs(text: str) -> list[Any]:
    decoder = json.JSONDecoder()
    docs, i = [], 0
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i >= len(text):
            return docs
        doc, i = decoder.raw_decode(text, i)
        docs.append(doc)


def parse_state(addr_doc: list[View], route_doc: list[View]) -> NsState:
    """The :class:`NsState` of ``ip -j addr show`` and ``ip -j route show table all``."""
    state = NsState()
    for link in addr_doc:
        name = str(link.get("ifname", ""))
        if not name.startswith(ROUTER_DEVICE_PREFIXES):
            continue
        state.links[name] = (str(link.get("address", "")).lower(),
                             "UP" in (link.get("flags") or ()))
        addrs = state.addresses.setdefault(name, set())
        for info in link.get("addr_info") or ():
            if info.get("family") == "inet6" and info.get("scope") == "link":
                continue
            addr = _ip(info.get("local"))
            if addr is not None:
                addrs.add(f"{addr}/{info.get('prefixlen')}")
    for route in route_doc:
        dev = str(route.get("dev", ""))
        if route.get("table") or not dev.startswith(ROUTER_DEVICE_PREFIXES) \
                or route.get("protocol") in ("kernel", "ra") or route.get("type"):
            continue
        gateway = str(route.get("gateway", ""))
        dst = str(route.get("dst", ""))
        if dst == "default":
            dst = "::/0" if ":" in gateway else "0.0.0.0/0"
        net = _net(dst)
        if net is not None:
            state.routes.add((str(net), _ip(gateway) or "", dev))
    return state


# ---------------------------------------------------------------------- the component
class L3:
    """Routers in namespaces. See the module documentation."""

    agent_type = "L3 agent"

    def __init__(self, host: Host, options: LinuxOptions, ledger: Ledger | None = None) -> None:
        self.host = host
        self.options = options
        self.ledger = ledger or Ledger(options.state_dir / "namespaces.json")
        #: router -> the NAT script last loaded into its namespace
        self._nat: dict[str, str] = {}
        #: router -> floating IP -> fixed IP applied
        self._fips: dict[str, dict[str, str]] = {}
        #: router -> ids of the ports whose veth is plugged
        self._wired: dict[str, set[str]] = {}
        #: routers whose namespace had its sysctls set by this process
        self._ready: set[str] = set()
        self._ext_nat = ""
        self._garps: list[subprocess.Popen[bytes]] = []
        #: IPv6 router advertisements (radvd per router namespace, see ``ra.py``).
        self.ra = Radvd(host, options.state_dir)

    # ------------------------------------------------------------------ Component
    def apply(self, model: Model, dirty: Dirty) -> None:
        self._reap()
        failed: list[Exception] = []
        for rid in sorted(self._affected(model, dirty)):
            try:  # one broken router must not keep the others from converging
                if wanted(model, rid):
                    self.converge(model, rid, full=dirty.all)
                else:
                    self.teardown(rid)
            except (HostError, OSError) as exc:
                LOG.warning("router %s: %s", rid, exc)
                failed.append(exc)
        if self.options.external_nat:
            self._external_nat(model)
        if failed:
            raise failed[0]

    def cleanup(self, model: Model) -> None:
        prefix = names.router_namespace("")
        for ns in sorted(self.ledger.names(prefix)):
            rid = ns[len(prefix):]
            if not wanted(model, rid):
                self.teardown(rid)
        for rid in [r for r in self._wired if not wanted(model, r)]:
            self._forget(rid)
        for rid in self.ra.routers() - set(model.routers):
            self.ra.stop(rid)
        if not self.options.external_nat:
            self.host.run(["nft", "delete", "table", "ip", EXT_TABLE], check=False)
            self._ext_nat = ""

    def wired(self, model: Model) -> set[str]:
        return {pid for rid, ports in self._wired.items() if wanted(model, rid)
                for pid in ports}

    def stop(self) -> None:
        self._reap()

    # ------------------------------------------------------------------ which routers
    def _affected(self, model: Model, dirty: Dirty) -> set[str]:
        if dirty.all:
            return set(model.routers) | set(self._wired)
        rids = set(dirty.routers)
        owners = (*ROUTER_INTERFACE_OWNERS, ROUTER_GATEWAY)
        for pid in dirty.ports:
            port = model.ports.get(pid)
            if port is not None and port.get("device_owner") in owners \
                    and port.get("device_id"):
                rids.add(str(port["device_id"]))
            rids |= {rid for rid, ports in self._wired.items() if pid in ports}
            rids |= {str(f["router_id"]) for f in model.floating_ips.values()
                     if f.get("port_id") == pid and f.get("router_id")}
        for nid in dirty.networks:
            rids |= model.routers_of_network(nid)
            rids |= {rid for rid, r in model.routers.items()
                     if (r.get("external_gateway_info") or {}).get("network_id") == nid}
        return rids

    # ------------------------------------------------------------------ one router
    def converge(self, model: Model, router_id: str, *, full: bool = False) -> None:
        """Make router ``router_id``'s namespace match the model. Idempotent."""
        plan = plan_router(model, router_id, self.options.bridge_mappings)
        ns = plan.namespace
        if ns not in self.host.netns_list():
            self._forget(router_id)
        _ensure_namespace(self.host, self.ledger, ns)
        if router_id not in self._ready:
            try:
                self.host.run(["sysctl", "-q", "-w", "net.ipv4.ip_forward=1",
                               "net.ipv6.conf.all.forwarding=1"], netns=ns)
            except HostError:  # no IPv6 on this kernel: IPv4 forwarding is what matters
                self.host.run(["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"], netns=ns)
            self._ready.add(router_id)
        state = self._read(ns)
        # Devices: delete the unwanted, plug the missing or wrong.
        stale = [d for d in state.links if d not in plan.devices]
        if stale:
            self.host.ip_batch([f"link del dev {d}" for d in stale], netns=ns, force=True)
        repaired = False
        for dev in plan.devices.values():
            have = state.links.get(dev.name)
            ok = (have is not None and have[1]
                  and (dev.mac is None or have[0] == dev.mac.lower()))
            root_end = names.tap(dev.port_id)
            if ok and full and self.host.master_of(root_end) != dev.bridge:
                ok = False
            if not ok:
                plug_veth(self.host, bridge=dev.bridge, root_end=root_end, netns=ns,
                          ns_end=dev.name, mac=dev.mac, mtu=dev.mtu)
                if have is None:
                    state.addresses[dev.name] = set()
                else:
                    repaired = True
        if repaired:  # a half-made pair may have been redone: addresses lost with it
            state = self._read(ns)
        # Addresses and routes.
        route_dels: list[str] = []
        cmds: list[str] = []
        added: list[tuple[str, str]] = []
        removed_fips: set[str] = set()
        for name, dev in plan.devices.items():
            have_addrs = state.addresses.get(name, set())
            for addr in sorted(have_addrs - set(dev.addresses)):
                cmds.append(f"addr del {addr} dev {name}")
                if dev.gateway and addr.endswith("/32"):
                    removed_fips.add(addr.split("/")[0])
            for addr in dev.addresses:
                if addr not in have_addrs:
                    nodad = " nodad" if ":" in addr else ""
                    cmds.append(f"addr add {addr} dev {name}{nodad}")
                    if dev.gateway and ":" not in addr:
                        added.append((name, addr.split("/")[0]))
        want_routes = set(plan.routes)
        have_routes = {(dst, via) for dst, via, dev in state.routes if dev in plan.devices}
        for dst, via, dev in sorted(state.routes):
            if dev in plan.devices and (dst, via) not in want_routes:
                route_dels.append(f"route del {dst}{f' via {via}' if via else ''} dev {dev}")
        for dst, via in plan.routes:
            if (dst, via) not in have_routes:
                cmds.append(f"route replace {dst} via {via}")
        if route_dels:
            self.host.run(["ip", "-force", "-batch", "-"], netns=ns, check=False,
                          input="\n".join(route_dels) + "\n")
        self.host.ip_batch(cmds, netns=ns)
        # NAT, then the floating IPs' conntrack entries and announcements.
        if self._nat.get(router_id) != plan.nat:
            self.host.nft(plan.nat, netns=ns)
            self._nat[router_id] = plan.nat
        old = self._fips.get(router_id, {})
        removed_fips |= {f for f, fixed in old.items() if plan.fips.get(f) != fixed}
        for fip in sorted(removed_fips):
            self._flush_conntrack(ns, fip)
        self._fips[router_id] = dict(plan.fips)
        for dev_name, addr in added:
            self._announce(ns, dev_name, addr)
        self.ra.ensure(model, router_id, ns)
        self._wired[router_id] = {d.port_id for d in plan.devices.values()}

    def teardown(self, router_id: str) -> None:
        """Delete router ``router_id``'s namespace (only when onestack made it)."""
        ns = names.router_namespace(router_id)
        self.ra.stop(router_id)
        if ns in self.ledger:
            delete_namespace(self.host, self.ledger, ns)
        self._forget(router_id)

    def _forget(self, router_id: str) -> None:
        for cache in (self._nat, self._fips, self._wired):
            cache.pop(router_id, None)
        self._ready.discard(router_id)

    def _read(self, ns: str) -> NsState:
        out = self.host.run(["ip", "-j", "-batch", "-"], netns=ns,
                            input="addr show\nroute show table all\n")
        docs = _json_docs(out)
        if len(docs) != 2:
            raise HostError(["ip", "-j", "-batch", "-"], 0, f"unexpected output: {out[:200]}")
        return parse_state(docs[0], docs[1])

    def _flush_conntrack(self, ns: str, fip: str) -> None:
        """Forget the connections of a floating IP (exit 1: there were none)."""
        for flag in ("-d", "-s", "--reply-dst"):
            try:
                self.host.run(["conntrack", "-D", flag, fip], netns=ns)
            except HostError as exc:
                if exc.returncode != 1:
                    LOG.warning("conntrack flush of %s in %s failed: %s", fip, ns, exc)

    def _announce(self, ns: str, device: str, addr: str) -> None:
        """A gratuitous ARP for ``addr`` on ``device`` (not waited for; reaped later)."""
        argv = ["ip", "netns", "exec", ns, "arping", "-U", "-c", "1", "-I", device, addr]
        self.host.history.append(argv)
        try:
            self._garps.append(subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                                stdout=subprocess.DEVNULL,
                                                stderr=subprocess.DEVNULL))
        except OSError as exc:
            LOG.warning("gratuitous ARP for %s failed: %s", addr, exc)

    def _reap(self) -> None:
        self._garps = [p for p in self._garps if p.poll() is None]

    # ------------------------------------------------------------------ external NAT
    def _external_nat(self, model: Model) -> None:
        """``external_nat``: masquerade the public subnets leaving the host (never in tests)."""
        nets: set[str] = set()
        for rid in model.routers:
            port = model.router_gateway_port(rid)
            if port is not None:
                nets.add(str(port["network_id"]))
        cidrs, bridges = [], []
        for nid in sorted(nets):
            if nid in model.networks:
                bridges.append(names.network_bridge(model.networks[nid],
                                                    self.options.bridge_mappings))
            cidrs += [str(n) for s in model.subnets_of(nid)
                      if (n := _net(s.get("cidr"))) is not None and n.version == 4]
        if self.options.public_gateway_cidr:
            cidrs.append(str(ipaddress.ip_interface(self.options.public_gateway_cidr).network))
        script = render_external_nat(sorted(set(cidrs)), bridges)
        if script != self._ext_nat:
            self.host.run(["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])
            self.host.nft(script)
            self._ext_nat = script
