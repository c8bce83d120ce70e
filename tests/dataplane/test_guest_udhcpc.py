"""The test guest's DHCPv4 hook (``guestimage/data/udhcpc.sh``) with several NICs: each
NIC's default route gets a metric of its own, the first NIC's lowest, so the lease that
comes last does not take the default route from ``eth0`` (a guest with several NICs then
answers its floating IP on ``eth0``). Run against ``ip`` in a namespace with two veth
"NICs", as busybox udhcpc calls it."""

from __future__ import annotations

import os
import shutil
import subprocess
from importlib import resources

import pytest

from tests.netns import namespace

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="dataplane tests run as root only"),
    pytest.mark.skipif(shutil.which("ip") is None, reason="needs iproute2"),
]

SCRIPT = resources.files("onestack.guestimage").joinpath("data", "udhcpc.sh").read_text()


def _event(ns: str, event: str, env: dict[str, str]) -> None:
    subprocess.run(["ip", "netns", "exec", ns, "sh", "-c", SCRIPT, "udhcpc.sh", event],
                   env={"PATH": os.environ["PATH"], **env}, check=True, capture_output=True)


def _lease(ns: str, nic: str, ip: str, router: str, event: str = "bound") -> None:
    _event(ns, event, {"interface": nic, "ip": ip, "mask": "24", "router": router})


def _defaults(ns: str) -> list[str]:
    out = subprocess.run(["ip", "-n", ns, "-4", "route", "show", "default"], check=True,
                         capture_output=True, text=True).stdout
    return [" ".join(line.split()) for line in out.splitlines()]


def test_the_first_nic_keeps_the_default_route() -> None:
    with namespace("gdhcp") as ns:
        for i in range(2):
            subprocess.run(["ip", "-n", ns, "link", "add", f"eth{i}", "type", "veth", "peer",
                            "name", f"peer{i}"], check=True)
            subprocess.run(["ip", "-n", ns, "link", "set", f"peer{i}", "up"], check=True)
        for nic in ("eth0", "eth1"):
            _event(ns, "deconfig", {"interface": nic})  # udhcpc starts so: the link up
        _lease(ns, "eth0", "10.71.0.5", "10.71.0.1")
        _lease(ns, "eth1", "10.72.0.5", "10.72.0.1")  # the last lease
        routes = _defaults(ns)
        assert len(routes) == 2, routes
        assert routes[0].startswith("default via 10.71.0.1 dev eth0 metric "), routes
        first, second = (int(r.split(" metric ")[1].split()[0]) for r in routes)
        assert first < second
        # A renewal replaces its own route only.
        _lease(ns, "eth1", "10.72.0.5", "10.72.0.1", "renew")
        _lease(ns, "eth0", "10.71.0.5", "10.71.0.1", "renew")
        assert _defaults(ns) == routes
