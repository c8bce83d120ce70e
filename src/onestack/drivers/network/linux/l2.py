"""L2 of the Linux data plane: Neutron's Linux bridge agent.

* A bridge per network, ``brq<net[:11]>``; a flat network whose physical network is mapped
  (``bridge_mappings``) uses the mapped bridge instead. The public physical network's bridge
  carries the host side of the public subnet (``public_gateway_cidr``, DevStack's br-ex
  address), so the host reaches floating IPs.
* VXLAN networks get a ``vxlan-<vni>`` device in their bridge even on one host (local VTEP
  ``vxlan_local_ip``, no learning), so more hosts only add forwarding entries later. A VXLAN
  device the kernel refuses is logged; the bridge alone carries one host's traffic.
* VLAN segments stay model-only (no 8021q on this kernel): their ports are never bound.
* Guests' taps (``tap<port[:11]>``, made by the hypervisor driver) are enslaved to their
  network's bridge with the network's MTU, at once through :meth:`L2.plug` and on every pass
  for the ports that changed (after a restart: all of them).

Only devices with onestack's names are touched; ``cleanup`` deletes ``brq*``/``vxlan-*``
devices no network wants.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from onestack.drivers.network.linux import names
from onestack.drivers.network.linux.host import Host, HostError
from onestack.drivers.network.linux.model import Dirty, Model

LOG = logging.getLogger(__name__)

View = dict[str, Any]

#: device_owner prefixes of ports whose device is a hypervisor's tap.
GUEST_OWNERS = ("compute:",)


class L2:
    """Bridges, VXLAN devices and guest taps. See the module documentation."""

    agent_type = "Linux bridge agent"

    def __init__(self, host: Host, options: Any) -> None:
        self.host = host
        self.options = options
        self._lock = threading.Lock()
        self._wired: set[str] = set()
        self._vxlan_refused: set[int] = set()
        #: network id -> signature of the network its bridge was last converged for
        #: (cleared by every full sync, which checks everything again).
        self._converged: dict[str, tuple[Any, ...]] = {}

    # ------------------------------------------------------------------ naming
    def bridge_of(self, network: View) -> str:
        return names.network_bridge(network, self.options.bridge_mappings)

    def _is_public(self, network: View) -> bool:
        return (network.get("provider:network_type") == "flat"
                and network.get("provider:physical_network")
                == self.options.public_physical_network)

    @staticmethod
    def _wired_here(port: View, host_name: str) -> bool:
        """A bound guest port: wired here when its tap exists here (the tap is the proof the
        guest runs on this host, whatever host name its compute agent reports)."""
        owner = str(port.get("device_owner") or "")
        return owner.startswith(GUEST_OWNERS) and bool(port.get("binding:host_id"))

    # ------------------------------------------------------------------ Component
    def apply(self, model: Model, dirty: Dirty) -> None:
        if dirty.all:
            nets = list(model.networks.values())
            ports = list(model.ports.values())
            self._converged.clear()
        else:
            net_ids = set(dirty.networks)
            port_ids = set(dirty.ports)
            for rid in dirty.routers:
                net_ids |= {p["network_id"] for p in model.ports.values()
                            if p.get("device_id") == rid}
            for pid in port_ids:
                if pid in model.ports:
                    net_ids.add(model.ports[pid]["network_id"])
            nets = [model.networks[n] for n in net_ids if n in model.networks]
            # A network seen for the first time (or changed) gets all its guest ports
            # checked; otherwise only the ports that changed.
            fresh = {n["id"] for n in nets
                     if self._converged.get(n["id"]) != self._signature(n)}
            ports = [p for p in model.ports.values()
                     if p["id"] in port_ids or p.get("network_id") in fresh]
        nets = [n for n in nets if self._converged.get(n["id"]) != self._signature(n)]
        guests = [p for p in ports if self._wired_here(p, self.options.host)
                  and p.get("network_id") in model.networks]
        if nets or guests:  # nothing to look at otherwise: no process spawned
            links = self.host.link_masters()
            for net in sorted(nets, key=lambda n: n["id"]):
                self._ensure_network(net, links)
                self._converged[net["id"]] = self._signature(net)
            for port in guests:
                self._plug(port, model.networks[port["network_id"]], links)
        self._remove_deleted(model, dirty)
        gone = {pid for pid in dirty.ports if pid not in model.ports}
        with self._lock:
            self._wired -= gone

    def _remove_deleted(self, model: Model, dirty: Dirty) -> None:
        """Networks deleted since they were converged here lose their bridge and VXLAN
        device at once (a full sync would find them too); a VXLAN device the kernel refused
        to make (``_ensure_vxlan``) is not there to delete, and one whose VNI a live network
        already has again (VNIs are reused at once) is that network's now."""
        gone = sorted(dirty.networks - set(model.networks))
        if not gone:  # the usual pass (ports changed): nothing to look up
            return
        cmds = []
        live_vnis = self._vnis(model)
        for net_id in gone:
            signature = self._converged.pop(net_id, None)
            if signature is None:
                continue
            kind, physnet, vni = signature[0], signature[1], signature[2]
            mapped = kind == "flat" and self.options.bridge_mappings.get(physnet)
            if not mapped:
                cmds.append(f"link del dev {names.bridge(net_id)}")
            if (kind == "vxlan" and vni is not None and int(vni) not in self._vxlan_refused
                    and int(vni) not in live_vnis):
                cmds.append(f"link del dev {names.vxlan(int(vni))}")
        if cmds:
            self.host.ip_batch(cmds, force=True)

    @staticmethod
    def _signature(net: View) -> tuple[Any, ...]:
        """What a network's host state is made from (a change re-converges it)."""
        return (net.get("provider:network_type"), net.get("provider:physical_network"),
                net.get("provider:segmentation_id"), net.get("mtu"))

    @staticmethod
    def _vnis(model: Model) -> set[int]:
        """The VNIs of the model's VXLAN networks."""
        return {int(n["provider:segmentation_id"]) for n in model.networks.values()
                if n.get("provider:network_type") == "vxlan"
                and n.get("provider:segmentation_id") is not None}

    def cleanup(self, model: Model) -> None:
        wanted = {self.bridge_of(n) for n in model.networks.values()
                  if n.get("provider:network_type") != "vlan"}
        mapped = set(self.options.bridge_mappings.values())
        vnis = self._vnis(model)
        stale = []
        for link in self.host.links():
            unwanted_bridge = link.startswith("brq") and link not in wanted | mapped
            unwanted_vxlan = (link.startswith("vxlan-") and link[6:].isdigit()
                              and int(link[6:]) not in vnis)
            if unwanted_bridge or unwanted_vxlan:
                stale.append(link)
        for net_id in set(self._converged) - set(model.networks):
            del self._converged[net_id]
        if stale:
            LOG.info("removing devices no network wants: %s", ", ".join(sorted(stale)))
            self.host.ip_batch([f"link del dev {name}" for name in stale], force=True)
        with self._lock:
            self._wired &= set(model.ports)

    def wired(self, model: Model) -> set[str]:
        with self._lock:
            return set(self._wired) & set(model.ports)

    def stop(self) -> None:
        """Nothing runs in-process; bridges and taps stay for the next start."""

    # ------------------------------------------------------------------ plugging
    def plug(self, port: View, network: View | None) -> bool:
        """The hypervisor made the guest's tap: enslave it now (True when done). Without the
        network's view yet, the worker does it on its next pass."""
        if network is None:
            return False
        links = self.host.link_masters()
        self._ensure_network(network, links)
        return self._plug(port, network, links)

    def _plug(self, port: View, network: View, links: dict[str, str | None]) -> bool:
        tap = names.tap(port["id"])
        if tap not in links:
            with self._lock:
                self._wired.discard(port["id"])
            return False
        bridge = self.bridge_of(network)
        if port.get("admin_state_up", True) is False:
            # Administratively down: out of the bridge, so nothing reaches or leaves the
            # guest (Neutron's agent does the same); back in when it is set up again.
            if links[tap] is not None:
                self.host.ip_batch([f"link set dev {tap} nomaster"])
                links[tap] = None
        elif links[tap] != bridge:
            cmds = [f"link set dev {tap} master {bridge}"]
            mtu = network.get("mtu")
            if mtu:
                cmds.append(f"link set dev {tap} mtu {int(mtu)}")
            cmds.append(f"link set dev {tap} up")
            self.host.ip_batch(cmds)
        with self._lock:
            self._wired.add(port["id"])
        return True

    # ------------------------------------------------------------------ networks
    def _ensure_network(self, net: View, links: dict[str, str | None]) -> None:
        kind = net.get("provider:network_type")
        if kind == "vlan":
            return  # model-only on this kernel
        bridge = self.bridge_of(net)
        if bridge not in links:
            self._add_link(bridge, [f"link add name {bridge} type bridge forward_delay 0",
                                    f"link set dev {bridge} up"], links)
        if kind == "vxlan" and net.get("provider:segmentation_id") is not None:
            self._ensure_vxlan(int(net["provider:segmentation_id"]), bridge, links)
        if self._is_public(net) and self.options.public_gateway_cidr:
            self.host.ip_batch([f"address replace {self.options.public_gateway_cidr} "
                                f"dev {bridge}", f"link set dev {bridge} up"])

    def _add_link(self, name: str, commands: list[str], links: dict[str, str | None]) -> None:
        """Make device ``name`` with ``commands`` and note it in ``links``. A hypervisor's
        :meth:`plug` and the worker's pass may both find a new network's device missing
        and race to make it: the one that loses finds the device there on a fresh look and
        goes on with it; any other refusal is raised."""
        try:
            self.host.ip_batch(commands)
        except HostError:
            now = self.host.link_masters()
            if name not in now:
                raise
            links[name] = now[name]
            return
        links[name] = None

    def _ensure_vxlan(self, vni: int, bridge: str, links: dict[str, str | None]) -> None:
        dev = names.vxlan(vni)
        if dev not in links:
            if vni in self._vxlan_refused:
                return
            try:
                self._add_link(dev, [
                    f"link add {dev} type vxlan id {vni} local {self.options.vxlan_local_ip} "
                    f"dstport {int(self.options.vxlan_port)} nolearning"], links)
            except HostError as exc:
                self._vxlan_refused.add(vni)
                LOG.warning("no VXLAN device for VNI %s (one host needs none): %s", vni, exc)
                return
        if links[dev] != bridge:
            self.host.ip_batch([f"link set dev {dev} master {bridge}",
                                f"link set dev {dev} up"])
            links[dev] = bridge
