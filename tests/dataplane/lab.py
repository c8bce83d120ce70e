"""The DevStack-style lab the data-plane tests share: ``onestack up`` with QEMU guests and the
Linux data plane inside a network namespace made for the test (loopback only; the namespace
plays "the host", its ``public`` bridge carries 172.24.4.1/24 as DevStack's br-ex does), the
``openstack`` CLI as one project's member, and SSH to guests. The ``lab`` fixture (module
scope, in ``conftest.py``) removes the namespace, guests, dnsmasq and every namespace the
cloud made afterwards.
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

    def project_network(self, prefix: str, cidr: str, env: dict[str, str] | None = None
                        ) -> dict[str, Any]:
        """``<prefix>-net``/``-subnet`` behind ``<prefix>-router`` (gateway ``public``), a
        security group ``<prefix>-sg`` allowing ICMP and SSH, key pair ``lab-key``; returns
        the ICMP rule."""
        self.run("network", "create", f"{prefix}-net", env=env)
        self.run("subnet", "create", f"{prefix}-subnet", "--network", f"{prefix}-net",
                 "--subnet-range", cidr, env=env)
        self.run("router", "create", f"{prefix}-router", env=env)
        self.run("router", "set", f"{prefix}-router", "--external-gateway", "public", env=env)
        self.run("router", "add", "subnet", f"{prefix}-router", f"{prefix}-subnet", env=env)
        self.run("security", "group", "create", f"{prefix}-sg", env=env)
        icmp = self.json("security", "group", "rule", "create", "--protocol", "icmp",
                         f"{prefix}-sg", env=env)
        self.run("security", "group", "rule", "create", "--protocol", "tcp", "--dst-port",
                 "22", f"{prefix}-sg", env=env)
        self.run("keypair", "create", "--public-key", str(self.key) + ".pub", "lab-key",
                 env=env)
        return icmp  # type: ignore[no-any-return]

    def reachable(self, name: str, env: dict[str, str] | None = None) -> str:
        """A floating IP for server ``name``, once it answers ping and SSH."""
        fip = str(self.json("floating", "ip", "create", "public", env=env)[
            "floating_ip_address"])
        self.run("server", "add", "floating", "ip", name, fip, env=env)
        _wait(lambda: _ping(fip), f"ping to the floating IP {fip}")
        _wait(lambda: self.ssh(fip, "true").returncode == 0, f"ssh to {fip}")
        return fip

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


def lab_cloud() -> Iterator[Lab]:
    """A lab (see the module docstring), cleaned up when the generator is closed."""
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


