"""Issue 12 "Done when" 1 and 2: the DevStack lab end to end, through the ``openstack`` CLI.

onestack runs inside a network namespace made for this test (loopback only; the namespace plays
"the host"), with ``--compute-driver qemu --network-driver linux``. As a project member: a
network and subnet, a router with gateway ``public`` and an interface on the subnet, a security
group allowing ICMP and TCP/22, a key pair, two test guests, a floating IP on the first. Then,
from the host side (the namespace, whose ``public`` bridge carries 172.24.4.1/24 as DevStack's
br-ex does): ``ping`` and ``ssh`` to the floating IP. Inside the guest (over SSH): its address
came by DHCP, the metadata service answers with its id through 169.254.169.254, it pings its
router and the second guest. Removing the ICMP rule stops ping within 2 s while SSH stays;
disassociating the floating IP makes it unreachable. A guest of another project cannot reach
the first one's fixed IP. A second network attached to the running guest appears in it as
a hot-plugged NIC with its DHCP address, and leaves it when detached. After ``kill -9`` of
onestack and a new ``onestack up``, the guest answers on its floating IP again with nothing
duplicated (one dnsmasq per network).

Root, QEMU and the data-plane tools only; the namespace, guests, dnsmasq and every namespace
the cloud made are removed afterwards.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

from tests.conftest import start_cloud
from tests.dataplane.lab import Lab, _ping, _wait, pytestmark  # noqa: F401 - applies here
from tests.netns import netns_pids


def test_devstack_lab_end_to_end(lab: Lab) -> None:
    member, password, project = lab.cloud.make_member("lab")
    env = lab.cloud.os_env(member, password, project)
    lab.env = env
    icmp = lab.project_network("lab", "192.168.77.0/24")

    started = time.monotonic()
    vm1 = lab.boot("lab-vm1", "lab-net", "lab-sg")
    fip = lab.reachable("lab-vm1")
    boot_to_reachable = time.monotonic() - started
    print(f"boot -> floating IP answers ping and ssh: {boot_to_reachable:.1f} s")

    # ---- inside the guest
    fixed1 = lab.fixed_ip("lab-vm1")
    addr = lab.ssh(fip, "ip -4 -o addr show dev eth0").stdout
    assert f"{fixed1}/24" in addr, addr
    assert lab.ssh(fip, "pidof udhcpc").returncode == 0, "the address did not come by DHCP"
    md = lab.ssh(fip, "wget -q -O - http://169.254.169.254/openstack/latest/meta_data.json")
    assert json.loads(md.stdout)["uuid"] == vm1["id"], md
    assert lab.ssh(fip, "ping -c 1 -W 2 192.168.77.1").returncode == 0, "router unreachable"
    lab.boot("lab-vm2", "lab-net", "lab-sg")
    fixed2 = lab.fixed_ip("lab-vm2")
    _wait(lambda: lab.ssh(fip, f"ping -c 1 -W 2 {fixed2}").returncode == 0,
          "guest-to-guest ping", timeout=120)

    # ---- another project's guest cannot reach the first one's fixed IP
    other_user, other_pw, other_project = lab.cloud.make_member("lab2")
    env2 = lab.cloud.os_env(other_user, other_pw, other_project)
    lab.run("network", "create", "other-net", env=env2)
    lab.run("subnet", "create", "other-subnet", "--network", "other-net",
            "--subnet-range", "192.168.78.0/24", env=env2)
    lab.run("router", "create", "other-router", env=env2)
    lab.run("router", "set", "other-router", "--external-gateway", "public", env=env2)
    lab.run("router", "add", "subnet", "other-router", "other-subnet", env=env2)
    lab.run("security", "group", "rule", "create", "--protocol", "tcp", "--dst-port", "22",
            "default", env=env2)
    lab.run("keypair", "create", "--public-key", str(lab.key) + ".pub", "lab-key", env=env2)
    lab.boot("other-vm", "other-net", "default", env=env2)
    fip2 = lab.json("floating", "ip", "create", "public", env=env2)["floating_ip_address"]
    lab.run("server", "add", "floating", "ip", "other-vm", fip2, env=env2)
    _wait(lambda: lab.ssh(fip2, "true").returncode == 0, f"ssh to {fip2}")
    # vm1 answers ping (ICMP is still allowed) from its own network, not from here.
    probe = lab.ssh(fip2, f"ping -c 2 -W 2 {fixed1} >/dev/null && echo reached || echo blocked",
                    30)
    assert "blocked" in probe.stdout, probe

    # ---- NIC hot-plug: a second network attached to the running guest gets its address
    # by DHCP on the new NIC (the subnet has no gateway: the guest's default route stays)
    lab.run("network", "create", "lab-net2")
    lab.run("subnet", "create", "lab-subnet2", "--network", "lab-net2",
            "--subnet-range", "192.168.79.0/24", "--gateway", "none")
    lab.run("server", "add", "network", "lab-vm1", "lab-net2")
    ports = lab.json("port", "list", "--server", "lab-vm1", "--network", "lab-net2")
    assert len(ports) == 1, ports
    fixed3 = ports[0]["Fixed IP Addresses"][0]["ip_address"]
    _wait(lambda: f" {fixed3}/24 " in lab.ssh(fip, "ip -4 -o addr show").stdout,
          "the hot-plugged NIC's DHCP address", timeout=60)
    dhcp_ip = next(p["Fixed IP Addresses"][0]["ip_address"] for p in lab.json(
        "port", "list", "--network", "lab-net2", "--device-owner", "network:dhcp"))
    assert lab.ssh(fip, f"ping -c 1 -W 2 {dhcp_ip}").returncode == 0, "new network unreachable"
    lab.run("server", "remove", "network", "lab-vm1", "lab-net2")
    _wait(lambda: f" {fixed3}/" not in lab.ssh(fip, "ip -4 -o addr show").stdout,
          "the hot-unplugged NIC to leave the guest", timeout=60)
    # The kernel drops the NIC (and its address) at once; the guest's watcher, which looks
    # once a second, says so on the console just after.
    _wait(lambda: "nic eth1 removed" in lab.run("console", "log", "show", "lab-vm1"),
          "the guest's console line for the unplugged NIC", timeout=30)
    assert lab.json("port", "list", "--server", "lab-vm1", "--network", "lab-net2") == []

    # ---- removing the ICMP rule stops ping within 2 s; SSH stays
    lab.run("security", "group", "rule", "delete", icmp["id"])
    removed = time.monotonic()
    _wait(lambda: not _ping(fip, 0.5), "ping to stop", timeout=10, interval=0.1)
    assert time.monotonic() - removed <= 2.5
    assert lab.ssh(fip, "true").returncode == 0

    # ---- kill -9 and restart: reachable again, nothing duplicated
    net_id = lab.json("network", "show", "lab-net")["id"]
    lab.cloud.stop(signal.SIGKILL)
    restarted = start_cloud(lab.cloud.data_dir, ports=lab.cloud.ports, env=lab.cloud.extra_env,
                            wait=600,
                            args=["--compute-driver", "qemu", "--network-driver", "linux"])
    lab.cloud.proc = restarted.proc
    _wait(lambda: lab.ssh(fip, "true").returncode == 0, "ssh after restart", timeout=120)
    dnsmasqs = [p for p in netns_pids(f"qdhcp-{net_id}")
                if b"dnsmasq" in Path(f"/proc/{p}/cmdline").read_bytes()]
    assert len(dnsmasqs) == 1, dnsmasqs

    # ---- disassociating the floating IP makes it unreachable
    lab.run("server", "remove", "floating", "ip", "lab-vm1", fip)
    _wait(lambda: lab.ssh(fip, "true", timeout=10).returncode != 0, "ssh to stop",
          timeout=20)
