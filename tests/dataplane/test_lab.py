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

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import VENV_BIN, RunningCloud, free_port, start_cloud
from tests.netns import in_netns, namespace, netns_pids

TOOLS = ("qemu-system-x86_64", "qemu-img", "ip", "nft", "dnsmasq", "ping", "ssh", "ssh-keygen",
         "apt-get", "dpkg-deb")

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="dataplane tests run as root only"),
    pytest.mark.skipif(any(shutil.which(t) is None for t in TOOLS),
                       reason="needs " + ", ".join(TOOLS)),
]

GUEST_IMAGE = "onestack-guest"
GUEST_FLAVOR = "m1.guest"
BOOT_TIMEOUT = 240.0


def _wait(check: Any, what: str, timeout: float = BOOT_TIMEOUT, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(interval)


def _ping(ip: str, wait: float = 1.0) -> bool:
    return subprocess.run(["ping", "-c", "1", "-W", str(wait), ip], capture_output=True,
                          check=False).returncode == 0


class Lab:
    """The cloud in its namespace, the CLI as one project's member, and SSH to guests."""

    def __init__(self, cloud: RunningCloud, ns: str, tmp: Path) -> None:
        self.cloud = cloud
        self.ns = ns
        self.tmp = tmp
        self.key = tmp / "id_ed25519"
        self.env = cloud.os_env()

    def run(self, *args: str, env: dict[str, str] | None = None, check: bool = True) -> str:
        res = subprocess.run([str(VENV_BIN / "openstack"), *args], env=env or self.env,
                             capture_output=True, text=True, timeout=300)
        if check:
            assert res.returncode == 0, (f"openstack {' '.join(args)}: {res.stderr}\n"
                                         f"--- log tail:\n{self.cloud.log()[-4000:]}")
        return res.stdout

    def json(self, *args: str, env: dict[str, str] | None = None) -> Any:
        return json.loads(self.run(*args, "-f", "json", env=env))

    def ssh(self, ip: str, command: str, timeout: float = 20) -> subprocess.CompletedProcess[
            str]:
        return subprocess.run(
            ["ssh", "-i", str(self.key), "-o", "StrictHostKeyChecking=no",
             "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
             "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR", f"root@{ip}", command],
            capture_output=True, text=True, timeout=timeout, check=False)

    def boot(self, name: str, network: str, group: str, env: dict[str, str] | None = None
             ) -> dict[str, Any]:
        server = self.json("server", "create", "--image", GUEST_IMAGE, "--flavor", GUEST_FLAVOR,
                           "--network", network, "--security-group", group,
                           "--key-name", "lab-key", "--wait", name, env=env)
        assert server["status"] == "ACTIVE", server
        return server  # type: ignore[no-any-return]

    def fixed_ip(self, name: str, env: dict[str, str] | None = None) -> str:
        ports = self.json("port", "list", "--server", name, env=env)
        return str(ports[0]["Fixed IP Addresses"][0]["ip_address"])


def _cloud_namespaces(lab_ids: dict[str, list[str]]) -> list[str]:
    return ([f"qdhcp-{n}" for n in lab_ids.get("networks", [])]
            + [f"qrouter-{r}" for r in lab_ids.get("routers", [])])


def _remove_namespaces(names: list[str]) -> None:
    existing = set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()
    for name in names:
        if name in existing:
            for pid in netns_pids(name):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            subprocess.run(["ip", "netns", "delete", name], check=False, capture_output=True)


def _cloud_pids(data_dir: Path) -> list[int]:
    """QEMU guests and dnsmasq servers of this test's cloud (their command lines name its
    data dir); they outlive onestack by design."""
    out = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                cmdline = (proc / "cmdline").read_bytes()
                if (b"qemu-system" in cmdline or b"dnsmasq" in cmdline) \
                        and os.fsencode(data_dir) in cmdline:
                    out.append(int(proc.name))
    return out


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    from onestack.guestimage import build_guest_image, default_cache_dir

    build_guest_image()  # from Debian's archive, before entering the namespace (no uplink)
    tmp = Path(tempfile.mkdtemp(prefix="onestack-lab-"))
    data_dir = tmp / "data"
    ids: dict[str, list[str]] = {}
    with namespace("oslab") as ns, in_netns(ns):
        env = {"ONESTACK_GUEST_IMAGE_DIR": str(default_cache_dir()),
               "ONESTACK_METADATA_PORT": str(free_port()),
               "ONESTACK_CONSOLE_PORT": str(free_port()),
               "ONESTACK_LOG_LEVEL": "info"}
        cloud = None
        try:
            cloud = start_cloud(data_dir, env=env, wait=600,
                                args=["--compute-driver", "qemu", "--network-driver", "linux"])
            lab = Lab(cloud, ns, tmp)
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(lab.key)],
                           check=True)
            yield lab
        finally:
            if cloud is not None:
                with contextlib.suppress(Exception):
                    admin = cloud.os_env()
                    for kind in ("networks", "routers"):
                        out = subprocess.run(
                            [str(VENV_BIN / "openstack"), kind[:-1], "list", "-f", "value",
                             "-c", "ID"], env=admin, capture_output=True, text=True,
                            timeout=60).stdout
                        ids[kind] = out.split()
                cloud.stop()
            for pid in _cloud_pids(data_dir):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            _remove_namespaces(_cloud_namespaces(ids))
    shutil.rmtree(tmp, ignore_errors=True)


def test_devstack_lab_end_to_end(lab: Lab) -> None:
    member, password, project = lab.cloud.make_member("lab")
    env = lab.cloud.os_env(member, password, project)
    lab.env = env
    lab.run("network", "create", "lab-net")
    lab.run("subnet", "create", "lab-subnet", "--network", "lab-net",
            "--subnet-range", "192.168.77.0/24")
    lab.run("router", "create", "lab-router")
    lab.run("router", "set", "lab-router", "--external-gateway", "public")
    lab.run("router", "add", "subnet", "lab-router", "lab-subnet")
    lab.run("security", "group", "create", "lab-sg")
    icmp = lab.json("security", "group", "rule", "create", "--protocol", "icmp", "lab-sg")
    lab.run("security", "group", "rule", "create", "--protocol", "tcp", "--dst-port", "22",
            "lab-sg")
    lab.run("keypair", "create", "--public-key", str(lab.key) + ".pub", "lab-key")

    started = time.monotonic()
    vm1 = lab.boot("lab-vm1", "lab-net", "lab-sg")
    fip = lab.json("floating", "ip", "create", "public")["floating_ip_address"]
    lab.run("server", "add", "floating", "ip", "lab-vm1", fip)
    _wait(lambda: _ping(fip), f"ping to the floating IP {fip}")
    _wait(lambda: lab.ssh(fip, "true").returncode == 0, f"ssh to {fip}")
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
    assert "removed" in lab.run("console", "log", "show", "lab-vm1")
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
