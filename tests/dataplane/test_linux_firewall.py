"""The Linux data plane's firewall on real bridged traffic (root, nft, conntrack).

A namespace ``fw-…`` plays the host's root side: a bridge for one network and four guests,
each a namespace joined by a veth whose root end is the port's ``tap<port[:11]>``:

* A and B are in group ``web`` (ingress ICMP, TCP 22, UDP 5000; egress anything);
* C has port security disabled and no groups;
* D is in group ``db`` (ingress TCP 8080 from members of ``web`` only).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from onestack.drivers.network.linux import names
from onestack.drivers.network.linux.driver import LinuxOptions
from onestack.drivers.network.linux.firewall import TABLE, Firewall
from onestack.drivers.network.linux.host import Host
from onestack.drivers.network.linux.model import Dirty, Model
from onestack.drivers.network.linux.wiring import plug_veth
from tests.netns import in_netns, namespace

pytestmark = pytest.mark.skipif(
    subprocess.run(["id", "-u"], capture_output=True, text=True).stdout.strip() != "0"
    or any(shutil.which(t) is None for t in ("ip", "nft", "conntrack", "sysctl", "ping")),
    reason="needs root and ip, nft, conntrack, sysctl, ping")

NET = "5e1f0000-0000-4000-8000-000000000001"
GUESTS = {  # name -> (port id, mac, ip)
    "a": ("aaaa0000-0000-4000-8000-00000000000a", "fa:16:3e:00:00:0a", "10.0.0.11"),
    "b": ("bbbb0000-0000-4000-8000-00000000000b", "fa:16:3e:00:00:0b", "10.0.0.12"),
    "c": ("cccc0000-0000-4000-8000-00000000000c", "fa:16:3e:00:00:0c", "10.0.0.13"),
    "d": ("dddd0000-0000-4000-8000-00000000000d", "fa:16:3e:00:00:0d", "10.0.0.14"),
}
LISTEN_TCP = (22, 23, 8080)
UDP_PORT = 5000


def _rule(direction: str, protocol: str | None = None, low: int | None = None,
          high: int | None = None, ethertype: str = "IPv4", **extra: Any) -> dict[str, Any]:
    return {"id": f"{direction}-{protocol}-{low}-{extra}", "direction": direction,
            "ethertype": ethertype, "protocol": protocol, "port_range_min": low,
            "port_range_max": high, "remote_ip_prefix": None, "remote_group_id": None,
            "remote_address_group_id": None, **extra}


def web_rules(icmp: bool = True) -> list[dict[str, Any]]:
    rules = [_rule("ingress", "tcp", 22, 22), _rule("ingress", "udp", UDP_PORT, UDP_PORT),
             _rule("egress"), _rule("egress", ethertype="IPv6")]
    return ([_rule("ingress", "icmp")] if icmp else []) + rules


def make_model(icmp: bool = True, c_security: bool = False) -> Model:
    m = Model()
    m.networks = {NET: {"id": NET, "provider:network_type": "vxlan",
                        "provider:segmentation_id": 100, "mtu": 1450}}
    m.security_groups = {
        "web": {"id": "web", "security_group_rules": web_rules(icmp)},
        "db": {"id": "db", "security_group_rules": [
            _rule("ingress", "tcp", 8080, 8080, remote_group_id="web"), _rule("egress")]},
    }
    groups = {"a": ["web"], "b": ["web"], "c": [], "d": ["db"]}
    for g, (pid, mac, ip) in GUESTS.items():
        m.ports[pid] = {
            "id": pid, "network_id": NET, "mac_address": mac,
            "fixed_ips": [{"subnet_id": "s", "ip_address": ip}],
            "device_owner": "compute:nova", "device_id": "vm-" + g,
            "security_groups": groups[g], "allowed_address_pairs": [],
            "port_security_enabled": c_security if g == "c" else True,
            "admin_state_up": True, "binding:host_id": "host1", "project_id": "p"}
    return m


@dataclass
class Lab:
    root: str
    ns: dict[str, str]
    host: Host
    options: LinuxOptions
    fw: Firewall
    sockets: dict[str, socket.socket]

    def run(self, guest: str, *argv: str, check: bool = True) -> str:
        return subprocess.run(["ip", "netns", "exec", self.ns[guest], *argv], check=check,
                              capture_output=True, text=True).stdout

    def ping(self, src: str, dst: str) -> bool:
        return subprocess.run(["ip", "netns", "exec", self.ns[src], "ping", "-c", "1", "-W",
                               "1", GUESTS[dst][2]], capture_output=True).returncode == 0

    def connect(self, src: str, dst: str, port: int, timeout: float = 1.0) -> bool:
        with in_netns(self.ns[src]), socket.socket() as s:
            s.settimeout(timeout)
            try:
                s.connect((GUESTS[dst][2], port))
                return True
            except OSError:
                return False

    def udp_arrives(self, src: str, dst: str, source_ip: str | None = None) -> bool:
        """Send a datagram from ``src`` (optionally from ``source_ip``) to ``dst``."""
        rx = self.sockets[dst]
        with contextlib.suppress(BlockingIOError):
            while True:
                rx.recv(2048)
        token = f"x{time.monotonic_ns()}".encode()
        if source_ip:
            self.run(src, "ip", "addr", "add", f"{source_ip}/32", "dev", "eth0")
        try:
            with in_netns(self.ns[src]), socket.socket(type=socket.SOCK_DGRAM) as s:
                if source_ip:
                    s.bind((source_ip, 0))
                s.sendto(token, (GUESTS[dst][2], UDP_PORT))
        finally:
            if source_ip:
                self.run(src, "ip", "addr", "del", f"{source_ip}/32", "dev", "eth0")
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            try:
                if rx.recv(2048) == token:
                    return True
            except BlockingIOError:
                time.sleep(0.02)
        return False

    def apply(self, model: Model) -> None:
        self.fw.apply(model, Dirty(all=True))


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with contextlib.ExitStack() as stack:
        root = stack.enter_context(namespace("fw"))
        host = Host(netns=root)
        bridge = names.bridge(NET)
        host.ip_batch([f"link add {bridge} type bridge", f"link set {bridge} up"])
        ns: dict[str, str] = {}
        sockets: dict[str, socket.socket] = {}
        for g, (pid, mac, ip) in GUESTS.items():
            ns[g] = stack.enter_context(namespace(f"fw-{g}"))
            plug_veth(host, bridge=bridge, root_end=names.tap(pid), netns=ns[g],
                      ns_end="eth0", mac=mac)
            host.run(["ip", "addr", "add", f"{ip}/24", "dev", "eth0"], netns=ns[g])
            with in_netns(ns[g]):
                for port in LISTEN_TCP:
                    srv = stack.enter_context(socket.socket())
                    srv.bind(("0.0.0.0", port))
                    srv.listen(64)
                udp = stack.enter_context(socket.socket(type=socket.SOCK_DGRAM))
                udp.bind(("0.0.0.0", UDP_PORT))
                udp.setblocking(False)
                sockets[g] = udp
        for g in GUESTS:  # static neighbours: spoofed sources cannot resolve by ARP
            for other, (_, mac, ip) in GUESTS.items():
                if other != g:
                    host.run(["ip", "neigh", "replace", ip, "lladdr", mac, "dev", "eth0",
                              "nud", "permanent"], netns=ns[g])
        options = LinuxOptions(state_dir=tmp_path_factory.mktemp("fw-state"))
        fw = Firewall(host, options)
        yield Lab(root, ns, host, options, fw, sockets)
        host.nft("".join(f"add table {fam} {TABLE}\ndelete table {fam} {TABLE}\n"
                         for fam in ("bridge", "inet")))


def test_groups_allow_and_deny(lab: Lab) -> None:
    lab.apply(make_model())
    assert lab.ping("a", "b")
    assert lab.connect("a", "b", 22)  # the SYN-ACK passes A's ingress statefully
    assert not lab.connect("a", "b", 23, timeout=0.5)
    assert lab.connect("b", "a", 22)
    assert lab.udp_arrives("a", "b")
    # default egress allow from a filtered port to an unfiltered one, replies stateful
    assert lab.connect("a", "c", 23)
    assert lab.ping("a", "c")
    # D takes TCP 8080 from members of web only; C (no groups) is not one
    assert lab.connect("a", "d", 8080)
    assert not lab.connect("c", "d", 8080, timeout=0.5)
    assert not lab.connect("a", "d", 22, timeout=0.5)
    assert not lab.ping("a", "d")
    zones = lab.host.run(["conntrack", "-L", "-w", str(lab.fw.zones[NET])], check=False)
    assert GUESTS["b"][2] in zones


def test_port_security_disabled_passes_everything(lab: Lab) -> None:
    lab.apply(make_model())
    assert lab.connect("b", "c", 23)
    assert lab.connect("d", "c", 8080)
    assert lab.udp_arrives("c", "a", source_ip="10.0.0.98")  # C may spoof


def test_spoofed_ip_and_mac_dropped(lab: Lab) -> None:
    lab.apply(make_model())
    assert lab.udp_arrives("a", "b")
    assert not lab.udp_arrives("a", "b", source_ip="10.0.0.99")
    lab.apply(make_model(c_security=True))
    # port security without groups: everything but DHCP/ND is dropped
    assert not lab.udp_arrives("c", "a")
    assert not lab.connect("c", "a", 22, timeout=0.5)
    lab.apply(make_model())
    lab.run("a", "ip", "link", "set", "dev", "eth0", "address", "fa:16:3e:00:00:77")
    try:
        assert not lab.udp_arrives("a", "b")
    finally:
        lab.run("a", "ip", "link", "set", "dev", "eth0", "address", GUESTS["a"][1])
    assert lab.udp_arrives("a", "b")


def test_removed_rule_stops_existing_flow(lab: Lab) -> None:
    lab.apply(make_model())
    out = Path(lab.options.state_dir, "ping.out")
    with out.open("w") as fh:
        proc = subprocess.Popen(["ip", "netns", "exec", lab.ns["a"], "ping", "-n", "-i",
                                 "0.2", "-W", "1", GUESTS["b"][2]], stdout=fh,
                                stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.2)
        before = out.read_text().count("bytes from")
        assert before >= 3
        deletes = lab.fw.conntrack_deletes
        lab.apply(make_model(icmp=False))
        assert lab.fw.conntrack_deletes == deletes + 2  # A and B lost the rule
        time.sleep(2.0)
        settled = out.read_text().count("bytes from")
        time.sleep(1.0)
        assert out.read_text().count("bytes from") == settled
    finally:
        proc.kill()
        proc.wait()
    assert not lab.ping("a", "b")
    lab.apply(make_model())
    assert lab.ping("a", "b")


def test_member_leaving_remote_group_loses_its_flows(lab: Lab) -> None:
    lab.apply(make_model())
    a, d = GUESTS["a"][2], GUESTS["d"][2]
    zone = str(lab.fw.zones[NET])

    def tracked() -> str:
        return lab.host.run(["conntrack", "-L", "-w", zone, "-p", "tcp", "-s", a, "-d", d,
                             "--dport", "8080"], check=False)

    with in_netns(lab.ns["a"]), socket.socket() as s:
        s.settimeout(1.0)
        s.connect((d, 8080))
        assert "ESTABLISHED" in tracked()
        model = make_model()
        model.security_groups["plain"] = {"id": "plain", "security_group_rules": [
            _rule("egress")]}
        aid = GUESTS["a"][0]
        model.ports[aid] = {**model.ports[aid], "security_groups": ["plain"]}
        lab.apply(model)
        assert "ESTABLISHED" not in tracked()
    assert not lab.connect("a", "d", 8080, timeout=0.5)
    lab.apply(make_model())
    assert lab.connect("a", "d", 8080)


def test_same_model_spawns_nothing_and_restart_adopts(lab: Lab) -> None:
    model = make_model()
    lab.apply(model)
    loads, seen = lab.fw.loads, len(lab.host.history)
    lab.apply(make_model())
    lab.fw.cleanup(make_model())
    assert lab.fw.loads == loads
    assert len(lab.host.history) == seen
    fresh = Firewall(Host(netns=lab.root), lab.options)
    assert fresh.marks == lab.fw.marks
    fresh.apply(model, Dirty(all=True))
    assert fresh.marks == lab.fw.marks and fresh.zones == lab.fw.zones
    listing = lab.host.run(["nft", "list", "tables"])
    assert listing.count(TABLE) == 2
    bridge_table = lab.host.run(["nft", "list", "table", "bridge", TABLE])
    assert bridge_table.count("chain out-") == 3  # A, B, D (C has no port security)
    assert lab.connect("a", "b", 22) and not lab.connect("a", "b", 23, timeout=0.5)


def test_new_port_loads_incrementally(lab: Lab) -> None:
    """A port joining (its chains, marks, anti-spoofing and remote-group elements) is
    added to the loaded ruleset without reloading it; a port leaving reloads it all."""
    without_b = make_model()
    b = GUESTS["b"][0]
    del without_b.ports[b]
    lab.apply(without_b)
    assert not lab.connect("b", "d", 8080, timeout=0.5)
    deltas, loads = lab.fw.delta_loads, lab.fw.loads
    lab.apply(make_model())
    assert (lab.fw.delta_loads, lab.fw.loads) == (deltas + 1, loads + 1)
    assert lab.connect("a", "b", 22) and not lab.connect("a", "b", 23, timeout=0.5)
    assert lab.connect("b", "d", 8080)  # b's address joined d's remote group "web"
    assert lab.ping("b", "a") and not lab.udp_arrives("b", "a", source_ip="10.0.0.99")
    lab.apply(without_b)
    assert lab.fw.delta_loads == deltas + 1 and lab.fw.loads == loads + 2
    assert not lab.connect("b", "d", 8080, timeout=0.5)


def test_unbound_and_unknown_network_ports_get_nothing(lab: Lab) -> None:
    model = make_model()
    b = GUESTS["b"][0]
    model.ports[b] = {**model.ports[b], "binding:host_id": ""}
    lab.apply(model)
    assert lab.connect("a", "b", 23)  # B unfiltered now
    model.ports[b] = {**model.ports[b], "binding:host_id": "h", "network_id": "other"}
    lab.apply(model)
    assert lab.connect("a", "b", 23)
    lab.apply(make_model())
    assert not lab.connect("a", "b", 23, timeout=0.5)


DHCP_PORT = ("d4c90000-0000-4000-8000-0000000000dc", "fa:16:3e:00:00:dc", "10.0.0.2")


@contextlib.contextmanager
def dnsmasq(lab: Lab, netns: str, server_ip: str) -> Iterator[None]:
    """A DHCP server in ``netns`` offering A its address."""
    leases = Path(lab.options.state_dir, f"leases-{netns}")
    proc = subprocess.Popen(
        ["ip", "netns", "exec", netns, "dnsmasq", "--no-daemon", "--conf-file=/dev/null",
         "--port=0", "--no-resolv", "--no-hosts", "--bind-interfaces", "--interface=eth0",
         f"--listen-address={server_ip}", "--pid-file=", f"--dhcp-leasefile={leases}",
         "--dhcp-range=10.0.0.0,static,255.255.255.0,120",
         f"--dhcp-host={GUESTS['a'][1]},{GUESTS['a'][2]}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        yield
    finally:
        proc.kill()
        proc.wait()


def dhcp_lease(lab: Lab) -> bool:
    """Whether A gets a lease (discover from 0.0.0.0, broadcast/unicast offer)."""
    return subprocess.run(
        ["ip", "netns", "exec", lab.ns["a"], "busybox", "udhcpc", "-i", "eth0", "-n", "-q",
         "-f", "-t", "3", "-T", "1", "-s", "/bin/true"],
        capture_output=True, timeout=20).returncode == 0


@pytest.mark.skipif(shutil.which("dnsmasq") is None or shutil.which("busybox") is None,
                    reason="needs dnsmasq and busybox (udhcpc)")
def test_dhcp_passes_and_guests_cannot_serve_it(lab: Lab) -> None:
    model = make_model()
    lab.apply(model)
    with dnsmasq(lab, lab.ns["b"], GUESTS["b"][2]):  # a filtered guest as a rogue server
        assert not dhcp_lease(lab)
        open_b = make_model()
        bid = GUESTS["b"][0]
        open_b.ports[bid] = {**open_b.ports[bid], "port_security_enabled": False}
        lab.apply(open_b)  # control: without port security B's offers do arrive
        assert dhcp_lease(lab)
    lab.apply(model)
    with namespace("fw-dhcp") as dns:
        pid, mac, ip = DHCP_PORT
        plug_veth(lab.host, bridge=names.bridge(NET), root_end=names.tap(pid), netns=dns,
                  ns_end="eth0", mac=mac)
        lab.host.run(["ip", "addr", "add", f"{ip}/24", "dev", "eth0"], netns=dns)
        model.ports[pid] = {
            "id": pid, "network_id": NET, "mac_address": mac, "device_owner": "network:dhcp",
            "fixed_ips": [{"subnet_id": "s", "ip_address": ip}], "security_groups": [],
            "port_security_enabled": False, "binding:host_id": "host1"}
        lab.apply(model)
        try:
            with dnsmasq(lab, dns, ip):
                assert dhcp_lease(lab)
        finally:
            lab.host.run(["ip", "link", "del", names.tap(pid)], check=False)
    lab.apply(make_model())


def test_ipv6_link_local_and_neighbour_discovery(lab: Lab) -> None:
    model = make_model()
    model.security_groups["web"]["security_group_rules"].append(
        _rule("ingress", "icmp", ethertype="IPv6"))
    lab.apply(model)
    out = lab.run("b", "ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope", "link")
    b_ll = out.split("inet6 ", 1)[1].split("/", 1)[0]

    def ping6(src: str) -> bool:
        return subprocess.run(["ip", "netns", "exec", lab.ns[src], "ping", "-6", "-c", "1",
                               "-W", "1", f"{b_ll}%eth0"], capture_output=True).returncode == 0

    deadline = time.monotonic() + 5  # the guests' link-local addresses may still be in DAD
    while not ping6("a") and time.monotonic() < deadline:
        time.sleep(0.3)
    assert ping6("a")
    lab.apply(make_model())  # without the IPv6 ICMP rule: ND still passes, echo does not
    lab.run("a", "ip", "-6", "neigh", "flush", "dev", "eth0", check=False)
    assert not ping6("a")
    assert "lladdr" in lab.run("a", "ip", "-6", "neigh", "show", b_ll, "dev", "eth0")


def test_hostile_model_loads(lab: Lab) -> None:
    from tests.unit.drivers.network.linux.test_firewall import hostile_model
    with namespace("fw-bad") as root:
        fw = Firewall(Host(netns=root), LinuxOptions(state_dir=Path(lab.options.state_dir,
                                                                    "bad")))
        fw.apply(hostile_model(), Dirty(all=True))
        assert fw.loads == 1


def test_thousand_ports_render_and_load(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    model = Model()
    for n in range(10):
        nid = f"5e1f{n:04d}-0000-4000-8000-000000000000"
        model.networks[nid] = {"id": nid, "provider:network_type": "vxlan"}
    for g in range(10):
        model.security_groups[f"g{g}"] = {"id": f"g{g}", "security_group_rules": [
            _rule("ingress", "tcp", 22 + g, 22 + g), _rule("ingress", "icmp"),
            _rule("ingress", "udp", 1000, 2000 + g, remote_group_id=f"g{g}"),
            _rule("egress"), _rule("egress", ethertype="IPv6")]}
    for i in range(1000):
        pid = f"{i:08x}-1111-4000-8000-000000000000"
        model.ports[pid] = {
            "id": pid, "network_id": f"5e1f{i % 10:04d}-0000-4000-8000-000000000000",
            "mac_address": f"fa:16:3e:00:{i // 256:02x}:{i % 256:02x}",
            "fixed_ips": [{"ip_address": f"10.{i % 10}.{i // 250}.{i % 250 + 2}"}],
            "security_groups": [f"g{i % 10}"], "binding:host_id": "h",
            "device_owner": "compute:nova"}
    with namespace("fw-bench") as root:
        fw = Firewall(Host(netns=root), LinuxOptions(state_dir=Path(lab.options.state_dir,
                                                                    "bench")))
        start = time.perf_counter()
        fw.apply(model, Dirty(all=True))
        first = time.perf_counter() - start
        start = time.perf_counter()
        fw.apply(model, Dirty(all=True))
        again = time.perf_counter() - start
        chains = fw.host.run(["nft", "list", "table", "inet", TABLE]).count("chain in-")
    with capsys.disabled():
        print(f"\nfirewall: 1000 ports x 5 rules: render+load {first:.2f} s, "
              f"unchanged re-render {again:.2f} s")
    assert fw.loads == 1 and chains == 1000
    assert first < 30
