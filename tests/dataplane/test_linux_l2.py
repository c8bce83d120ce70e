"""The Linux data plane's L2 through the driver's worker: bridges, VXLAN devices, the public
bridge's address, guest taps enslaved and reported ACTIVE, stale devices removed by a sync.

Root and iproute2 only; everything happens in a namespace made here (the driver's root side).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from onestack.drivers.network.base import DesiredState
from onestack.drivers.network.linux import names
from onestack.drivers.network.linux.driver import LinuxDriver, LinuxOptions
from onestack.drivers.network.linux.host import Host, missing_requirements
from onestack.drivers.network.linux.l2 import L2
from tests.netns import namespace

pytestmark = pytest.mark.skipif(bool(missing_requirements()),
                                reason="needs root, ip, bridge, nft, dnsmasq")

NET = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
PUB = "1a2b3c4d-5e6f-7081-92a3-b4c5d6e7f809"
PORT = "aa11bb22-cc33-dd44-ee55-ff6677889900"


class FakeControl:
    """The control plane as a dict of views; records statuses and heartbeats."""

    def __init__(self, state: DesiredState) -> None:
        self.state = state
        self.statuses: dict[str, str] = {}
        self.beats: list[list[str]] = []
        self.changed = threading.Event()

    def desired_state(self) -> DesiredState:
        return self.state

    def set_port_status(self, port_id: str, status: str) -> None:
        self.statuses[port_id] = status
        self.changed.set()

    def ensure_dhcp_port(self, network_id: str) -> dict[str, Any] | None:
        return None

    def agent_heartbeat(self, agent_types: list[str]) -> None:
        self.beats.append(agent_types)


def _links(ns: str) -> dict[str, dict[str, Any]]:
    out = subprocess.run(["ip", "-n", ns, "-j", "-d", "link", "show"], capture_output=True,
                         text=True, check=True).stdout
    return {link["ifname"]: link for link in json.loads(out)}


def _addrs(ns: str, dev: str) -> list[str]:
    out = subprocess.run(["ip", "-n", ns, "-j", "addr", "show", "dev", dev],
                         capture_output=True, text=True, check=True).stdout
    return [f"{a['local']}/{a['prefixlen']}" for i in json.loads(out) for a in i["addr_info"]]


@pytest.fixture
def root() -> Iterator[str]:
    with namespace("l2") as ns:
        yield ns


def _state() -> DesiredState:
    return DesiredState(
        networks=[{"id": NET, "provider:network_type": "vxlan",
                   "provider:segmentation_id": 77, "mtu": 1450},
                  {"id": PUB, "provider:network_type": "flat",
                   "provider:physical_network": "public", "mtu": 1500}],
        ports=[{"id": PORT, "network_id": NET, "device_owner": "compute:nova",
                "binding:host_id": "h1", "admin_state_up": True, "status": "DOWN",
                "fixed_ips": [], "mac_address": "fa:16:3e:00:00:01"}])


def test_bridges_vxlan_taps_and_sync(root: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        opts = LinuxOptions(state_dir=Path(tmp), host="h1", public_gateway_cidr="172.24.4.1/24",
                            heartbeat_interval=0.2)
        host = Host(netns=root)
        driver = LinuxDriver(opts, host=host, components=[L2(host, opts)])
        control = FakeControl(_state())
        driver.start(control)  # type: ignore[arg-type]
        try:
            driver.sync(control.state)
            assert driver.wait_idle(20)
            links = _links(root)
            br, pub = names.bridge(NET), names.bridge(PUB)
            assert links[br]["linkinfo"]["info_kind"] == "bridge"
            assert links["vxlan-77"]["linkinfo"]["info_data"]["id"] == 77
            assert links["vxlan-77"]["master"] == br
            assert "172.24.4.1/24" in _addrs(root, pub)
            assert control.statuses == {}  # no tap yet: nothing wired, status stays DOWN

            # The hypervisor makes the tap, then tells the driver (the QEMU driver's hook).
            tap = names.tap(PORT)
            subprocess.run(["ip", "-n", root, "tuntap", "add", "dev", tap, "mode", "tap"],
                           check=True)
            assert not driver.wait_plugged([PORT], 0.3)  # no tap: never wired
            driver.plug({"id": PORT, "network_id": NET}, tap)
            assert driver.wait_plugged([PORT], 20)  # what the QEMU driver waits for
            assert driver.wait_idle(20)
            links = _links(root)
            assert links[tap]["master"] == br and links[tap]["mtu"] == 1450
            assert control.statuses == {PORT: "ACTIVE"}
            assert any("Linux bridge agent" in b for b in control.beats)

            # admin_state_up false takes the tap out of the bridge (DOWN); true puts it back.
            # (Views carry the status last written, as the control plane's do.)
            port = {**_state().ports[0], "admin_state_up": False, "status": "ACTIVE"}
            control.state.ports[0] = port
            driver.port_updated(port)
            assert driver.wait_idle(20)
            assert "master" not in _links(root)[tap] and control.statuses[PORT] == "DOWN"
            port = {**port, "admin_state_up": True, "status": "DOWN"}
            control.state.ports[0] = port
            driver.port_updated(port)
            assert driver.wait_idle(20)
            assert _links(root)[tap]["master"] == br and control.statuses[PORT] == "ACTIVE"

            # The control plane writes DOWN itself when it binds the port again (an interface
            # moved to another guest within one burst): the wired port is reported again.
            control.statuses.clear()
            port = {**port, "status": "DOWN"}  # was ACTIVE; the rebind wrote DOWN
            control.state.ports[0] = port
            driver.port_updated(port)
            assert driver.wait_idle(20)
            assert control.statuses == {PORT: "ACTIVE"}

            # The network is deleted: its bridge and VXLAN device go at once.
            control.state = DesiredState(networks=[_state().networks[1]])
            driver.network_deleted(NET)
            assert driver.wait_idle(20)
            links = _links(root)
            assert br not in links and "vxlan-77" not in links and tap in links
            # A full sync removes what is left over from before (and only that).
            subprocess.run(["ip", "-n", root, "link", "add", br, "type", "bridge"], check=True)
            subprocess.run(["ip", "-n", root, "link", "add", "keep0", "type", "bridge"],
                           check=True)
            control.state = DesiredState(networks=[_state().networks[1]])
            driver.sync(control.state)
            assert driver.wait_idle(20)
            links = _links(root)
            assert br not in links and "vxlan-77" not in links
            assert pub in links and "keep0" in links and tap in links
        finally:
            driver.stop()


def test_restart_adopts_without_changes(root: str) -> None:
    """A second driver on the same host state finds everything in place: no device is
    re-created (the bridge keeps its ifindex)."""
    with tempfile.TemporaryDirectory() as tmp:
        opts = LinuxOptions(state_dir=Path(tmp), host="h1")
        for round_ in range(2):
            host = Host(netns=root)
            driver = LinuxDriver(opts, host=host, components=[L2(host, opts)])
            control = FakeControl(_state())
            driver.start(control)  # type: ignore[arg-type]
            try:
                driver.sync(control.state)
                assert driver.wait_idle(20)
                index = _links(root)[names.bridge(NET)]["ifindex"]
                if round_ == 0:
                    first = index
                else:
                    assert index == first
                    assert not any("link add" in " ".join(c) or "add name" in " ".join(c)
                                   for c in host.history), host.history
            finally:
                driver.stop()
