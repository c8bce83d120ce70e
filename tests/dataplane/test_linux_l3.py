"""The Linux data plane's L3 component against real namespaces (root only).

A namespace ``l3-…`` plays the host (root side) with an internal and an external bridge; the
external one carries 172.24.4.1/24 (as ``public_gateway_cidr`` does). Guests are namespaces
``l3g-…`` plugged into the internal bridge by a veth. The router under test lives in
``qrouter-<id>`` (the component's own name); every test deletes what it made.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from onestack.drivers.network.linux import names
from onestack.drivers.network.linux.driver import LinuxOptions
from onestack.drivers.network.linux.host import Host, missing_requirements
from onestack.drivers.network.linux.l3 import L3, NAT_TABLE
from onestack.drivers.network.linux.model import Dirty, Model
from tests.netns import in_netns, namespace

_MISSING = missing_requirements() + [f"{t} not found" for t in ("ping", "conntrack", "arping")
                                     if shutil.which(t) is None]
pytestmark = pytest.mark.skipif(bool(_MISSING), reason="; ".join(_MISSING))

EXT_GW = "172.24.4.1"


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=check)


def ping(ns: str, addr: str) -> bool:
    return sh("ip", "netns", "exec", ns, "ping", "-c", "1", "-W", "1", addr,
              check=False).returncode == 0


def listen(ns: str, port: int, addr: str = "0.0.0.0") -> socket.socket:
    """A TCP listener created inside ``ns`` (the socket stays there)."""
    with in_netns(ns):
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((addr, port))
    srv.listen(8)
    srv.settimeout(3)
    return srv


def connect(ns: str, addr: str, port: int, timeout: float = 3.0) -> bool:
    """Whether a TCP connection from ``ns`` to ``addr:port`` is accepted."""
    with in_netns(ns):
        cli = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    cli.settimeout(timeout)
    try:
        cli.connect((addr, port))
        return True
    except OSError:
        return False
    finally:
        cli.close()


def peer_of(srv: socket.socket, ns: str, addr: str, port: int) -> str | None:
    """Connect from ``ns`` to ``addr:port``; the source address ``srv`` saw (None: nothing)."""
    seen: list[str] = []

    def accept() -> None:
        with contextlib.suppress(OSError):
            conn, peer = srv.accept()
            seen.append(peer[0])
            conn.close()

    thread = threading.Thread(target=accept)
    thread.start()
    connected = connect(ns, addr, port)
    thread.join(5)
    return seen[0] if connected and seen else None


def ns_addrs(ns: str) -> list[str]:
    out = json.loads(sh("ip", "-n", ns, "-j", "addr", "show").stdout)
    return [f"{a['local']}/{a['prefixlen']}" for link in out for a in link.get("addr_info", ())
            if link["ifname"].startswith(("qr-", "qg-")) and a.get("scope") != "link"]


def ns_routes(ns: str) -> list[str]:
    return [f"{r['dst']} via {r.get('gateway')}"
            for r in json.loads(sh("ip", "-n", ns, "-j", "route", "show").stdout)
            if r.get("gateway")]


def nat_rules(ns: str) -> str:
    return sh("ip", "netns", "exec", ns, "nft", "list", "table", "ip", NAT_TABLE).stdout


def uid() -> str:
    return str(uuid.uuid4())


@dataclass
class World:
    root: str
    host: Host
    options: LinuxOptions
    model: Model
    router_id: str
    gw_port: str
    if_port: str
    fip_id: str
    guests: list[str] = field(default_factory=list)
    l3: L3 | None = None

    @property
    def ns(self) -> str:
        return names.router_namespace(self.router_id)

    def apply(self, l3: L3 | None = None) -> float:
        start = time.monotonic()
        (l3 or self.l3 or L3(self.host, self.options)).apply(
            self.model, Dirty(routers={self.router_id}))
        return time.monotonic() - start


def _guest(root: str, bridge: str, guest: str, addr: str) -> str:
    port = uid()
    tap = names.tap(port)
    sh("ip", "-n", root, "link", "add", tap, "type", "veth", "peer", "name", "eth0",
       "netns", guest)
    sh("ip", "-n", root, "link", "set", tap, "master", bridge, "up")
    sh("ip", "-n", guest, "addr", "add", f"{addr}/24", "dev", "eth0")
    sh("ip", "-n", guest, "link", "set", "eth0", "up")
    sh("ip", "-n", guest, "route", "add", "default", "via", "10.20.0.1")
    return port


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    int_net, ext_net, int_sub, ext_sub = uid(), uid(), uid(), uid()
    router_id, gw_port, if_port, fip_id = uid(), uid(), uid(), uid()
    with namespace("l3") as root, namespace("l3g") as g1, namespace("l3g") as g2:
        host = Host(netns=root)
        options = LinuxOptions(state_dir=tmp_path)
        int_br, ext_br = names.bridge(int_net), names.bridge(ext_net)
        for br in (int_br, ext_br):
            sh("ip", "-n", root, "link", "add", br, "type", "bridge")
            sh("ip", "-n", root, "link", "set", br, "up")
        host.ip_batch([f"addr replace {EXT_GW}/24 dev {ext_br}", f"link set dev {ext_br} up"])
        vm1 = _guest(root, int_br, g1, "10.20.0.5")
        _guest(root, int_br, g2, "10.20.0.6")
        model = Model()
        model.networks = {
            int_net: {"id": int_net, "provider:network_type": "vxlan", "mtu": 1450},
            ext_net: {"id": ext_net, "provider:network_type": "flat",
                      "provider:physical_network": "public", "mtu": 1500,
                      "router:external": True}}
        model.subnets = {
            int_sub: {"id": int_sub, "network_id": int_net, "cidr": "10.20.0.0/24",
                      "ip_version": 4, "gateway_ip": "10.20.0.1"},
            ext_sub: {"id": ext_sub, "network_id": ext_net, "cidr": "172.24.4.0/24",
                      "ip_version": 4, "gateway_ip": EXT_GW}}
        model.ports = {
            if_port: {"id": if_port, "network_id": int_net, "mac_address": "fa:16:3e:00:00:01",
                      "fixed_ips": [{"subnet_id": int_sub, "ip_address": "10.20.0.1"}],
                      "device_owner": "network:router_interface", "device_id": router_id},
            gw_port: {"id": gw_port, "network_id": ext_net, "mac_address": "fa:16:3e:00:00:02",
                      "fixed_ips": [{"subnet_id": ext_sub, "ip_address": "172.24.4.10"}],
                      "device_owner": "network:router_gateway", "device_id": router_id},
            vm1: {"id": vm1, "network_id": int_net, "device_owner": "compute:nova",
                  "fixed_ips": [{"subnet_id": int_sub, "ip_address": "10.20.0.5"}]}}
        model.routers = {router_id: {
            "id": router_id, "admin_state_up": True, "routes": [],
            "external_gateway_info": {"network_id": ext_net, "enable_snat": True}}}
        model.floating_ips = {fip_id: {
            "id": fip_id, "floating_ip_address": "172.24.4.20", "fixed_ip_address": "10.20.0.5",
            "port_id": vm1, "router_id": router_id, "floating_network_id": ext_net}}
        w = World(root, host, options, model, router_id, gw_port, if_port, fip_id, [g1, g2])
        try:
            yield w
        finally:
            sh("ip", "netns", "delete", w.ns, check=False)


def test_router_forwards_nats_and_serves_metadata(world: World) -> None:
    w = world
    g1, g2 = w.guests
    w.l3 = L3(w.host, w.options)
    w.l3.apply(w.model, Dirty(all=True))
    assert w.ns in w.host.netns_list()
    assert w.l3.wired(w.model) == {w.if_port, w.gw_port}
    assert sorted(ns_addrs(w.ns)) == ["10.20.0.1/24", "172.24.4.10/24", "172.24.4.20/32"]
    assert ns_routes(w.ns) == [f"default via {EXT_GW}"]
    assert ping(g1, "10.20.0.1")

    # SNAT through the floating IP: the root side sees the FIP as the source.
    srv = listen(w.root, 7001, EXT_GW)
    try:
        assert peer_of(srv, g1, EXT_GW, 7001) == "172.24.4.20"
        # A guest without a FIP is SNATed to the gateway address.
        assert peer_of(srv, g2, EXT_GW, 7001) == "172.24.4.10"
    finally:
        srv.close()

    # DNAT: the root side reaches the guest through its FIP, unmasqueraded.
    assert ping(w.root, "172.24.4.20")
    vm_srv = listen(g1, 7002)
    try:
        assert peer_of(vm_srv, w.root, "172.24.4.20", 7002) == EXT_GW
        # Hairpin: another guest of the same network reaches it through the FIP.
        assert peer_of(vm_srv, g2, "172.24.4.20", 7002) is not None
    finally:
        vm_srv.close()

    # Metadata: 169.254.169.254:80 from a guest lands on :9697 in the router namespace.
    md = listen(w.ns, 9697)
    try:
        assert peer_of(md, g1, "169.254.169.254", 80) == "10.20.0.5"
        # ...which the external side cannot reach directly.
        assert not connect(w.root, "172.24.4.10", 9697, timeout=1.0)
    finally:
        md.close()

    # Re-apply with nothing changed: no nft process.
    mark = len(w.host.history)
    w.apply()
    assert not [c for c in w.host.history[mark:] if "nft" in c]


def test_floating_ip_removal_and_readd(world: World) -> None:
    w = world
    g1 = w.guests[0]
    w.l3 = L3(w.host, w.options)
    w.apply()
    assert ping(w.root, "172.24.4.20")
    assert ping(g1, EXT_GW)  # leaves a conntrack entry SNATed to the FIP
    fip = w.model.floating_ips.pop(w.fip_id)
    w.apply()
    assert sorted(ns_addrs(w.ns)) == ["10.20.0.1/24", "172.24.4.10/24"]
    assert "172.24.4.20" not in nat_rules(w.ns)
    assert "172.24.4.20" not in sh("ip", "netns", "exec", w.ns, "conntrack", "-L").stdout
    assert not ping(w.root, "172.24.4.20")
    srv = listen(w.root, 7003, EXT_GW)
    try:
        assert peer_of(srv, g1, EXT_GW, 7003) == "172.24.4.10"
        w.model.floating_ips[w.fip_id] = fip
        took = w.apply()
        print(f"\nL3: floating IP add {took * 1000:.0f} ms")
        assert any(c[-1] == "172.24.4.20" and "arping" in c for c in w.host.history)
        assert ping(w.root, "172.24.4.20")
        assert peer_of(srv, g1, EXT_GW, 7003) == "172.24.4.20"
    finally:
        srv.close()


def test_timing_adoption_routes_and_cleanup(world: World) -> None:
    w = world
    w.l3 = L3(w.host, w.options)
    took = w.apply()
    print(f"\nL3: router apply from empty {took * 1000:.0f} ms")
    addrs, rules = sorted(ns_addrs(w.ns)), nat_rules(w.ns)

    # A second process (after kill -9) adopts the namespace: nothing duplicated.
    second = L3(Host(netns=w.root), w.options)
    second.apply(w.model, Dirty(all=True))
    assert sorted(ns_addrs(w.ns)) == addrs
    assert nat_rules(w.ns) == rules
    assert second.wired(w.model) == {w.if_port, w.gw_port}

    # Extra routes appear and disappear.
    router = w.model.routers[w.router_id]
    router["routes"] = [{"destination": "10.99.0.0/24", "nexthop": "10.20.0.6"},
                        {"destination": "192.168.50.0/24", "nexthop": "172.24.4.99"}]
    w.apply(second)
    assert sorted(ns_routes(w.ns)) == ["10.99.0.0/24 via 10.20.0.6",
                                       "192.168.50.0/24 via 172.24.4.99",
                                       f"default via {EXT_GW}"]
    router["routes"] = [{"destination": "10.99.0.0/24", "nexthop": "10.20.0.5"}]
    w.apply(second)
    assert sorted(ns_routes(w.ns)) == ["10.99.0.0/24 via 10.20.0.5", f"default via {EXT_GW}"]

    # Without SNAT, only the floating IP is translated.
    router["external_gateway_info"]["enable_snat"] = False
    w.apply(second)
    assert "snat to 172.24.4.10" not in nat_rules(w.ns)
    assert "snat to 172.24.4.20" in nat_rules(w.ns)

    # Removing the gateway port and the interface deletes their veths (and root ends).
    gw: dict[str, Any] = w.model.ports.pop(w.gw_port)
    w.apply(second)
    links = sh("ip", "-n", w.ns, "-o", "link").stdout
    assert names.router_gateway(w.gw_port) not in links
    assert names.router_interface(w.if_port) in links
    assert names.tap(w.gw_port) not in sh("ip", "-n", w.root, "-o", "link").stdout
    assert second.wired(w.model) == {w.if_port}
    w.model.ports[w.gw_port] = gw

    # Administratively down: treated as absent; up again: back.
    router["admin_state_up"] = False
    w.apply(second)
    assert w.ns not in w.host.netns_list()
    router["admin_state_up"] = True
    w.apply(second)
    assert w.ns in w.host.netns_list()

    # Cleanup removes the namespace of a router the model no longer has.
    del w.model.routers[w.router_id]
    second.cleanup(w.model)
    assert w.ns not in w.host.netns_list()
    assert not second.ledger.names("qrouter-")
    assert second.wired(w.model) == set()


@pytest.mark.skipif(shutil.which("radvd") is None, reason="radvd is not installed")
def test_ipv6_router_advertisements(world: World) -> None:
    """An IPv6 SLAAC subnet on the router: radvd in the namespace advertises the prefix, a
    guest makes its EUI-64 address and a default route via the router; the router's removal
    stops radvd."""
    w = world
    v6 = uid()
    int_net = str(w.model.ports[w.if_port]["network_id"])
    w.model.subnets[v6] = {"id": v6, "network_id": int_net, "cidr": "2001:db8:20::/64",
                           "ip_version": 6, "gateway_ip": "2001:db8:20::1",
                           "ipv6_ra_mode": "slaac", "ipv6_address_mode": "slaac",
                           "dns_nameservers": ["2001:db8:20::53"]}
    w.model.ports[w.if_port]["fixed_ips"].append({"subnet_id": v6,
                                                  "ip_address": "2001:db8:20::1"})
    w.l3 = L3(w.host, w.options)
    w.apply()
    pid = w.l3.ra.pid(w.router_id)
    assert pid is not None, (w.options.state_dir / "ra").glob("*/log")
    conf = (w.options.state_dir / "ra" / w.router_id / "radvd.conf").read_text()
    assert "prefix 2001:db8:20::/64" in conf and "AdvAutonomous on;" in conf
    assert "RDNSS 2001:db8:20::53" in conf and "AdvLinkMTU 1450;" in conf
    # The guest solicits (link down/up) and configures itself from the advertisement.
    guest = w.guests[0]
    sh("ip", "-n", guest, "link", "set", "eth0", "down")
    sh("ip", "-n", guest, "link", "set", "eth0", "up")
    mac = sh("ip", "-n", guest, "-j", "link", "show", "eth0").stdout
    octets = [int(x, 16) for x in json.loads(mac)[0]["address"].split(":")]
    eui = [octets[0] ^ 2, octets[1], octets[2], 0xFF, 0xFE, octets[3], octets[4], octets[5]]
    expected = "2001:db8:20:0:" + ":".join(
        f"{eui[i] << 8 | eui[i + 1]:x}" for i in range(0, 8, 2))
    deadline = time.monotonic() + 20
    addrs = ""
    while time.monotonic() < deadline:
        addrs = sh("ip", "-n", guest, "-6", "addr", "show", "dev", "eth0").stdout
        if expected in addrs:
            break
        time.sleep(0.2)
    assert expected in addrs, addrs
    routes = sh("ip", "-n", guest, "-6", "route", "show", "default").stdout
    assert "via fe80:" in routes, routes
    # A second L3 (after kill -9) adopts radvd; a changed subnet reloads the same process.
    second = L3(Host(netns=w.root), w.options)
    w.model.subnets[v6]["ipv6_ra_mode"] = "dhcpv6-stateful"
    w.model.subnets[v6]["ipv6_address_mode"] = "dhcpv6-stateful"
    w.apply(second)
    assert second.ra.pid(w.router_id) == pid
    conf = (w.options.state_dir / "ra" / w.router_id / "radvd.conf").read_text()
    assert "AdvManagedFlag on;" in conf and "AdvAutonomous off;" in conf
    # The router goes: radvd stops with its namespace.
    del w.model.routers[w.router_id]
    second.cleanup(w.model)
    assert second.ra.pid(w.router_id) is None
    assert not Path(f"/proc/{pid}").exists() or b"radvd" not in Path(
        f"/proc/{pid}/cmdline").read_bytes()


def test_address_scopes(world: World) -> None:
    """Neutron's rules: an internal subnet in the external network's IPv4 address scope is
    routed (no SNAT); across different scopes only NATed traffic passes."""
    w = world
    _g1, g2 = w.guests
    int_net, ext_net = (p["network_id"] for p in (w.model.ports[w.if_port],
                                                  w.model.ports[w.gw_port]))
    w.model.networks[int_net]["ipv4_address_scope"] = "scope-a"
    w.model.networks[ext_net]["ipv4_address_scope"] = "scope-a"
    w.l3 = L3(w.host, w.options)
    w.l3.apply(w.model, Dirty(all=True))
    # The "upstream" routes the internal subnet to the router, as a scope's routing would.
    sh("ip", "-n", w.root, "route", "add", "10.20.0.0/24", "via", "172.24.4.10")
    srv = listen(w.root, 7101, EXT_GW)
    guest_srv = listen(g2, 7102)
    try:
        assert peer_of(srv, g2, EXT_GW, 7101) == "10.20.0.6"  # same scope: not SNATed
        assert peer_of(guest_srv, w.root, "10.20.0.6", 7102) == EXT_GW  # and routed in
        w.model.networks[ext_net]["ipv4_address_scope"] = "scope-b"
        w.apply()
        assert peer_of(srv, g2, EXT_GW, 7101) == "172.24.4.10"  # other scope: SNATed
        assert not connect(w.root, "10.20.0.6", 7102, timeout=1.0)  # not routed across
        assert ping(w.root, "172.24.4.20")  # floating IPs still pass
    finally:
        srv.close()
        guest_srv.close()
