"""The Linux data plane's DHCP component against real dnsmasq, bridges and DHCP clients.

Everything lives in namespaces this test makes: the root side ("dh-..."), one namespace per
guest (its end of a veth whose ``tap`` end is in the network's bridge) and the component's
``qdhcp-<net>``. Guests ask with ``busybox udhcpc``; the test checks the static lease and the
options, a reload by SIGHUP (same dnsmasq), a restart when the command line changes, adoption
by a second component on the same state, and that cleanup removes namespace and process.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from onestack.drivers.network.linux import names
from onestack.drivers.network.linux.dhcp import Dhcp, find_dnsmasq
from onestack.drivers.network.linux.driver import LinuxOptions
from onestack.drivers.network.linux.host import Host
from onestack.drivers.network.linux.model import Dirty, Model
from tests.netns import namespace, netns_pids

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="dataplane tests run as root only"),
    pytest.mark.skipif(any(shutil.which(t) is None for t in ("ip", "dnsmasq", "busybox")),
                       reason="ip, dnsmasq and busybox are needed"),
]

SCRIPT = """#!/bin/sh
[ "$1" = bound ] || exit 0
env | grep -E '^(ip|mask|router|dns|mtu|staticroutes|hostname|domain)=' > "$OUT"
"""


def _port(net: str, subnet: str, ip: str, owner: str, mac: str) -> dict[str, object]:
    return {"id": str(uuid.uuid4()), "network_id": net, "mac_address": mac,
            "fixed_ips": [{"subnet_id": subnet, "ip_address": ip}], "device_owner": owner,
            "device_id": str(uuid.uuid4()), "project_id": "p1", "admin_state_up": True,
            "binding:host_id": "h", "security_groups": [], "allowed_address_pairs": []}


class Lab:
    """The root side, the bridge, guests and the model of one test."""

    def __init__(self, root: str, tmp: Path) -> None:
        self.root = root
        self.tmp = tmp
        self.net = str(uuid.uuid4())
        self.subnet = str(uuid.uuid4())
        self.model = Model()
        self.model.networks[self.net] = {"id": self.net, "provider:network_type": "vxlan",
                                         "provider:segmentation_id": 77, "mtu": 1400}
        self.model.subnets[self.subnet] = {
            "id": self.subnet, "network_id": self.net, "cidr": "10.9.0.0/24",
            "ip_version": 4, "gateway_ip": "10.9.0.1", "enable_dhcp": True,
            "dns_nameservers": ["10.9.0.53"], "host_routes": [],
            "allocation_pools": [{"start": "10.9.0.2", "end": "10.9.0.250"}]}
        self.dhcp_port = _port(self.net, self.subnet, "10.9.0.2", "network:dhcp",
                               "fa:16:3e:00:00:02")
        self.add(self.dhcp_port)
        self.bridge = names.bridge(self.net)
        subprocess.run(["ip", "-n", root, "link", "add", self.bridge, "type", "bridge"],
                       check=True)
        subprocess.run(["ip", "-n", root, "link", "set", self.bridge, "up"], check=True)
        self.options = LinuxOptions(state_dir=tmp / "state", dns_domain="example.test")
        self.host = Host(netns=root)
        self.script = tmp / "udhcpc.sh"
        self.script.write_text(SCRIPT)
        self.script.chmod(0o755)

    def add(self, port: dict[str, object]) -> None:
        self.model.ports[str(port["id"])] = port

    def guest(self, stack: contextlib.ExitStack, ip: str, mac: str) -> tuple[str, dict]:
        """A guest port in the model and its namespace wired to the bridge."""
        port = _port(self.net, self.subnet, ip, "compute:nova", mac)
        self.add(port)
        ns = stack.enter_context(namespace("dh"))
        tap = names.tap(str(port["id"]))
        subprocess.run(["ip", "-n", self.root, "link", "add", tap, "type", "veth", "peer",
                        "name", "eth0", "netns", ns], check=True)
        subprocess.run(["ip", "-n", self.root, "link", "set", tap, "master", self.bridge, "up"],
                       check=True)
        subprocess.run(["ip", "-n", ns, "link", "set", "eth0", "address", mac, "up"],
                       check=True)
        return ns, port

    def ask(self, ns: str) -> dict[str, str]:
        """Run udhcpc in ``ns``; the variables of the lease it bound."""
        out = self.tmp / f"lease-{ns}"
        out.unlink(missing_ok=True)
        proc = subprocess.run(
            ["ip", "netns", "exec", ns, "busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-f",
             "-t", "5", "-T", "1", "-O", "mtu", "-O", "staticroutes", "-s", str(self.script)],
            env={**os.environ, "OUT": str(out)}, capture_output=True, text=True, timeout=30)
        assert out.exists(), proc.stderr + proc.stdout
        return dict(line.split("=", 1) for line in out.read_text().splitlines())


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[Lab, contextlib.ExitStack]]:
    with namespace("dh") as root, contextlib.ExitStack() as stack:
        lab = Lab(root, tmp_path)
        try:
            yield lab, stack
        finally:
            files = Dhcp(lab.host, lab.options).files(lab.net)
            pid = find_dnsmasq(files)
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
            subprocess.run(["ip", "netns", "delete", names.dhcp_namespace(lab.net)],
                           check=False, capture_output=True)


def test_dhcp_serves_reloads_adopts_and_cleans_up(lab: tuple[Lab, contextlib.ExitStack]) -> None:
    lab_, stack = lab
    g1, p1 = lab_.guest(stack, "10.9.0.10", "fa:16:3e:00:00:10")
    g2, p2 = lab_.guest(stack, "10.9.0.11", "fa:16:3e:00:00:11")
    dhcp = Dhcp(lab_.host, lab_.options)
    began = time.monotonic()
    dhcp.apply(lab_.model, Dirty(all=True))
    first_apply = time.monotonic() - began
    qdhcp = names.dhcp_namespace(lab_.net)
    files = dhcp.files(lab_.net)
    pid = find_dnsmasq(files)
    assert pid is not None and netns_pids(qdhcp) == [pid]
    assert dhcp.wired(lab_.model) == {lab_.dhcp_port["id"]}
    addrs = subprocess.run(["ip", "-n", qdhcp, "-o", "addr", "show"], capture_output=True,
                           text=True, check=True).stdout
    assert "10.9.0.2/24" in addrs and "169.254.169.254/32" in addrs

    began = time.monotonic()
    lease = lab_.ask(g1)
    first_lease = time.monotonic() - began
    assert lease["ip"] == "10.9.0.10" and lease["mask"] == "24"
    assert lease["router"] == "10.9.0.1" and lease["mtu"] == "1400"
    assert lease["dns"].split() == ["10.9.0.53"]
    assert lease["hostname"] == "host-10-9-0-10" and lease["domain"] == "example.test"
    # isolated network: the metadata route via the DHCP port, and the default route in 121
    assert lease["staticroutes"].split() == ["169.254.169.254/32", "10.9.0.2",
                                             "0.0.0.0/0", "10.9.0.1"]
    assert lab_.ask(g2)["ip"] == "10.9.0.11"

    # a new port reaches dnsmasq by SIGHUP: same process
    g3, p3 = lab_.guest(stack, "10.9.0.12", "fa:16:3e:00:00:12")
    began = time.monotonic()
    dhcp.apply(lab_.model, Dirty(ports={str(p3["id"])}, networks={lab_.net}))
    reload_apply = time.monotonic() - began
    assert find_dnsmasq(files) == pid and dhcp.last_reload is not None
    began = time.monotonic()
    assert lab_.ask(g3)["ip"] == "10.9.0.12"
    reload_lease = time.monotonic() - began

    # a second component on the same state adopts the running dnsmasq
    again = Dhcp(lab_.host, lab_.options)
    again.apply(lab_.model, Dirty(all=True))
    assert find_dnsmasq(files) == pid and netns_pids(qdhcp) == [pid]
    assert again.wired(lab_.model) == {lab_.dhcp_port["id"]}

    # an MTU change changes the command line: restarted (one process still)
    lab_.model.networks[lab_.net] = {**lab_.model.networks[lab_.net], "mtu": 1300}
    again.apply(lab_.model, Dirty(networks={lab_.net}))
    new_pid = find_dnsmasq(files)
    assert new_pid is not None and new_pid != pid and netns_pids(qdhcp) == [new_pid]
    assert lab_.ask(g1)["mtu"] == "1300"

    # no DHCP any more: cleanup removes process, namespace and state
    lab_.model.subnets[lab_.subnet] = {**lab_.model.subnets[lab_.subnet], "enable_dhcp": False}
    again.cleanup(lab_.model)
    assert qdhcp not in Host().netns_list()
    assert not Path(f"/proc/{new_pid}").exists() or not find_dnsmasq(files)
    assert not files.dir.exists()
    assert again.wired(lab_.model) == set()
    print(f"\ntimings: first apply {first_apply:.3f} s (dnsmasq start "
          f"{dhcp.last_start:.3f} s), first lease {first_lease:.3f} s, "
          f"apply of a new port (files + SIGHUP) {reload_apply:.3f} s, its lease "
          f"{reload_lease:.3f} s, restart {again.last_start:.3f} s")


def test_router_on_network_drops_metadata_route(lab: tuple[Lab, contextlib.ExitStack]) -> None:
    lab_, stack = lab
    g1, _ = lab_.guest(stack, "10.9.0.10", "fa:16:3e:00:00:10")
    router_if = _port(lab_.net, lab_.subnet, "10.9.0.1", "network:router_interface",
                      "fa:16:3e:00:00:01")
    lab_.add(router_if)
    dhcp = Dhcp(lab_.host, lab_.options)
    dhcp.apply(lab_.model, Dirty(all=True))
    lease = lab_.ask(g1)
    assert lease["router"] == "10.9.0.1" and "staticroutes" not in lease
    addrs = subprocess.run(["ip", "-n", names.dhcp_namespace(lab_.net), "-o", "addr", "show"],
                           capture_output=True, text=True, check=True).stdout
    assert "169.254.169.254" not in addrs
    # the router goes: the network is isolated again, the metadata address comes back
    del lab_.model.ports[str(router_if["id"])]
    dhcp.apply(lab_.model, Dirty(ports={str(router_if["id"])}, networks={lab_.net}))
    addrs = subprocess.run(["ip", "-n", names.dhcp_namespace(lab_.net), "-o", "addr", "show"],
                           capture_output=True, text=True, check=True).stdout
    assert "169.254.169.254/32" in addrs
    assert "169.254.169.254/32" in lab_.ask(g1)["staticroutes"]
    dhcp.cleanup(Model())
    assert names.dhcp_namespace(lab_.net) not in Host().netns_list()


def _dhcpv6_solicit(ns: str, mac: str, timeout: float = 10.0) -> list[str]:
    """Send a DHCPv6 Solicit (DUID-LL of ``mac``, one IA_NA) from ``ns``'s eth0; the
    addresses offered in the Advertise (empty: no answer)."""
    import socket
    import struct

    deadline = time.monotonic() + 10
    while "tentative" in subprocess.run(["ip", "-n", ns, "-6", "addr", "show", "dev", "eth0"],
                                        capture_output=True, text=True).stdout:
        assert time.monotonic() < deadline, "the link-local address stays tentative"
        time.sleep(0.1)
    from tests.netns import in_netns

    with in_netns(ns):
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"eth0")
        sock.bind(("::", 546))
        sock.settimeout(1.0)
        duid = struct.pack("!HH", 3, 1) + bytes.fromhex(mac.replace(":", ""))
        body = (b"\x01\x12\x34\x56" + struct.pack("!HH", 1, len(duid)) + duid
                + struct.pack("!HHIII", 3, 12, 1, 0, 0) + struct.pack("!HHH", 8, 2, 0))
        with in_netns(ns):
            index = socket.if_nametoindex("eth0")
        offered: list[str] = []
        end = time.monotonic() + timeout
        while time.monotonic() < end and not offered:
            sock.sendto(body, ("ff02::1:2", 547, 0, index))
            try:
                data = sock.recv(2048)
            except TimeoutError:
                continue
            pos = 4
            while pos + 4 <= len(data):
                code, length = struct.unpack("!HH", data[pos:pos + 4])
                value = data[pos + 4:pos + 4 + length]
                if code == 3:  # IA_NA: IAID, T1, T2, then options (IAADDR = 5)
                    sub = 12
                    while sub + 4 <= len(value):
                        c2, l2 = struct.unpack("!HH", value[sub:sub + 4])
                        if c2 == 5:
                            offered.append(socket.inet_ntop(socket.AF_INET6,
                                                            value[sub + 4:sub + 20]))
                        sub += 4 + l2
                pos += 4 + length
        return offered
    finally:
        sock.close()


def test_dhcpv6_stateful_subnet(lab: tuple[Lab, contextlib.ExitStack]) -> None:
    """A DHCPv6-stateful subnet next to the IPv4 one: dnsmasq offers the port's address to
    a Solicit from its MAC; a SLAAC subnet is left to router advertisements."""
    lab_, stack = lab
    v6, slaac = str(uuid.uuid4()), str(uuid.uuid4())
    lab_.model.subnets[v6] = {
        "id": v6, "network_id": lab_.net, "cidr": "2001:db8:9::/64", "ip_version": 6,
        "gateway_ip": "2001:db8:9::1", "enable_dhcp": True, "dns_nameservers": [],
        "host_routes": [], "ipv6_address_mode": "dhcpv6-stateful",
        "ipv6_ra_mode": "dhcpv6-stateful"}
    lab_.model.subnets[slaac] = {
        "id": slaac, "network_id": lab_.net, "cidr": "2001:db8:a::/64", "ip_version": 6,
        "gateway_ip": "2001:db8:a::1", "enable_dhcp": True, "dns_nameservers": [],
        "host_routes": [], "ipv6_address_mode": "slaac", "ipv6_ra_mode": "slaac"}
    lab_.dhcp_port["fixed_ips"].append({"subnet_id": v6, "ip_address": "2001:db8:9::2"})
    g1, p1 = lab_.guest(stack, "10.9.0.10", "fa:16:3e:00:00:10")
    p1["fixed_ips"].append({"subnet_id": v6, "ip_address": "2001:db8:9::10"})
    p1["fixed_ips"].append({"subnet_id": slaac, "ip_address": "2001:db8:a::f816:3eff:fe00:10"})
    dhcp = Dhcp(lab_.host, lab_.options)
    dhcp.apply(lab_.model, Dirty(all=True))
    files = dhcp.files(lab_.net)
    hosts = files.hosts.read_text()
    assert "fa:16:3e:00:00:10,host-2001-db8-9--10.example.test,[2001:db8:9::10]" in hosts
    assert "2001:db8:a::" not in hosts
    pid = find_dnsmasq(files)
    assert pid is not None
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert any(a.startswith(f"--dhcp-range=set:subnet-{v6},2001:db8:9::,static,64,".encode())
               for a in argv)
    assert not any(slaac.encode() in a for a in argv)
    assert lab_.ask(g1)["ip"] == "10.9.0.10"  # IPv4 unchanged
    assert _dhcpv6_solicit(g1, "fa:16:3e:00:00:10") == ["2001:db8:9::10"]
