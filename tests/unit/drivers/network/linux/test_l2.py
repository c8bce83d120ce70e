"""The Linux bridge component's commands, against a host that records them."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from onestack.drivers.network.linux.host import HostError
from onestack.drivers.network.linux.l2 import L2
from onestack.drivers.network.linux.model import Dirty, Model


class RecordingHost:
    """Links as ``link_masters`` reports them; ``ip`` batches recorded, a VXLAN add refused
    (as the kernel answers when another device already has the VNI on that port)."""

    def __init__(self) -> None:
        self.links: dict[str, str | None] = {}
        self.batches: list[list[str]] = []

    def link_masters(self) -> dict[str, str | None]:
        return dict(self.links)

    def ip_batch(self, commands: list[str], *, netns: str | None = None,
                 force: bool = False) -> None:
        self.batches.append(list(commands))
        if any(" type vxlan " in c for c in commands):
            raise HostError(["ip"], 2, "RTNETLINK answers: File exists")
        for c in commands:
            if c.startswith("link del dev ") and c.split()[-1] not in self.links:
                raise HostError(["ip"], 1, f'Cannot find device "{c.split()[-1]}"')


def _net(vni: int) -> dict[str, Any]:
    return {"id": "3b3dc8ed-47e7-445a-9792-0cd8ac2278fe", "provider:network_type": "vxlan",
            "provider:physical_network": None, "provider:segmentation_id": vni, "mtu": 1450}


def _applied(host: RecordingHost) -> tuple[L2, Model, dict[str, Any]]:
    """An L2 over ``host`` that has applied one new VXLAN network (VNI 2)."""
    options = SimpleNamespace(bridge_mappings={}, public_physical_network="public",
                              public_gateway_cidr="",
                              vxlan_local_ip="127.0.0.1", vxlan_port=4789, host="h1")
    l2 = L2(host, options)  # type: ignore[arg-type]
    model = Model()
    net = _net(2)
    model.networks[net["id"]] = net
    l2.apply(model, Dirty(networks={net["id"]}))
    return l2, model, net


def test_deleting_a_network_whose_vxlan_device_was_refused() -> None:
    host = RecordingHost()
    l2, model, net = _applied(host)
    bridge = next(c.split()[3] for b in host.batches for c in b
                  if c.startswith("link add name brq"))
    host.links[bridge] = None
    host.batches.clear()
    del model.networks[net["id"]]
    l2.apply(model, Dirty(networks={net["id"]}))  # raised HostError before: no vxlan-2 here
    assert host.batches == [[f"link del dev {bridge}"]]


class RacedHost(RecordingHost):
    """Another thread (a hypervisor's ``plug``) makes each device between this pass's look at
    the links and its own ``link add``, so the add fails as the kernel answers then."""

    def ip_batch(self, commands: list[str], *, netns: str | None = None,
                 force: bool = False) -> None:
        self.batches.append(list(commands))
        for c in commands:
            words = c.split()
            if c.startswith("link add "):
                name = words[3] if words[2] == "name" else words[2]
                if name not in self.links:
                    self.links[name] = None  # the other thread's add
                    raise HostError(["ip"], 2, "RTNETLINK answers: File exists")
            elif c.startswith("link set dev ") and " master " in c:
                self.links[words[3]] = words[5]
            elif c.startswith("link del dev "):
                if words[3] not in self.links:
                    raise HostError(["ip"], 1, f'Cannot find device "{words[3]}"')
                del self.links[words[3]]


def test_a_device_made_by_a_concurrent_plug_is_used_not_refused() -> None:
    host = RacedHost()
    l2, model, net = _applied(host)  # raised HostError (bridge) before
    bridge = next(name for name in host.links if name.startswith("brq"))
    assert host.links["vxlan-2"] == bridge  # enslaved, not taken for refused
    del model.networks[net["id"]]
    l2.apply(model, Dirty(networks={net["id"]}))
    assert host.batches[-1] == [f"link del dev {bridge}", "link del dev vxlan-2"]


def test_a_vni_reused_by_a_new_network_keeps_its_device() -> None:
    """A deleted network's VNI handed at once to a new network (the same pass sees both):
    the new network's bridge gets ``vxlan-2``, which the deleted network's removal must not
    then delete."""
    host = RacedHost()
    l2, model, old = _applied(host)
    del model.networks[old["id"]]
    new = {**_net(2), "id": "9d0e1c4b-5a55-4c39-8c65-2b0f6f6e6a01"}
    model.networks[new["id"]] = new
    host.batches.clear()
    l2.apply(model, Dirty(networks={old["id"], new["id"]}))
    new_bridge = next(name for name in host.links
                      if name.startswith("brq") and name[3:] in new["id"])
    assert host.links.get("vxlan-2") == new_bridge
    assert "link del dev vxlan-2" not in [c for b in host.batches for c in b]
