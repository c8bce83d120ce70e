"""The NICs of QEMU guests: tap devices, their part of the command line, hot-plug over QMP.

Every port of a guest is a tap device ``tap<port[:11]>`` (Neutron's name) that the network
driver's ``VifPlugger`` wires into the data plane, and a ``virtio-net-pci`` device with the
port's MAC address. QEMU ids follow the port too, so a NIC can be found again after the agent
restarts: netdev ``hn-<port[:11]>``, device ``nic-<port[:11]>``.

Hot-plug (what libvirt does for Nova's ``attach_interface``): on ``q35`` the guest gets
``HOTPLUG_SLOTS`` spare ``pcie-root-port``s (``hp0``...; Nova's ``num_pcie_ports``; shared
with hot-plugged volumes) at start;
``netdev_add`` + ``device_add`` put a new NIC on a free one. On ``pc`` (i440fx) NICs are
hot-plugged on the root bus. Unplug is ``device_del``, then waiting for the guest to release
the device (PCIe hot-plug needs the guest's cooperation: the kernel's pciehp/acpiphp), then
``netdev_del``. Which root port a hot-plugged NIC sits on is kept in the guest's state
(``nic_slots``) and reproduced by every later start, so a suspended guest's saved device
layout still matches on restore.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from onestack.drivers.hypervisor.base import DriverError
from onestack.drivers.hypervisor.qemu.qmp import (
    QmpCall,
    QMPError,
    add_device,
    remove_device,
)
from onestack.drivers.network.linux.names import tap as tap_name

#: Spare PCIe root ports of a new q35 guest for hot-plugged NICs and volumes (the number is
#: kept in the guest's state: a saved guest must be restored with the same layout).
HOTPLUG_SLOTS = 8
#: What guests started before the number was recorded have.
LEGACY_SLOTS = 4
#: How long a detach waits for the guest to release the NIC (Nova: 8 attempts x 20 s).
DETACH_TIMEOUT = 30.0


class VifPlugger(Protocol):
    """The network driver hook: wires a guest's tap device into the data plane."""

    def plug(self, port: dict[str, Any], tap: str) -> None: ...

    def unplug(self, port: dict[str, Any], tap: str) -> None: ...

    # Optional: ``wait_plugged(port_ids, timeout) -> bool``, True once the data plane has
    # wired every port (Nova's ``network-vif-plugged`` event); the guest starts after it.
    # False at the timeout, or sooner when a port can no longer be wired (deleted).


def port_id(port: dict[str, Any]) -> str:
    return str(port.get("port_id") or port.get("id"))


def ports_of(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The port dicts of an instance spec that name a port."""
    return [p for p in spec.get("networks") or []
            if isinstance(p, dict) and (p.get("port_id") or p.get("id"))]


def mac_of(port: dict[str, Any]) -> str | None:
    mac = port.get("mac_address") or port.get("mac")
    return str(mac) if mac else None


def qemu_ids(port: dict[str, Any]) -> tuple[str, str]:
    """(netdev id, device id) of a port's NIC."""
    short = port_id(port)[:11]
    return f"hn-{short}", f"nic-{short}"


def _run(argv: list[str]) -> None:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DriverError(f"{argv[0]} failed: {exc}") from exc
    if proc.returncode != 0:
        raise DriverError(f"{' '.join(argv[:4])}… failed: {proc.stderr.strip()[-500:]}")


def link_exists(name: str) -> bool:
    """Whether network device ``name`` exists in this process's namespace (sysfs when it
    shows that namespace, else the kernel over netlink)."""
    from onestack.drivers.network.linux.host import sysfs_is_ours

    if sysfs_is_ours():
        return Path(f"/sys/class/net/{name}").exists()
    return subprocess.run(["ip", "link", "show", "dev", name], capture_output=True,
                          check=False).returncode == 0


def tap_stats(tap: str, mac: str | None) -> dict[str, Any]:
    """A NIC's counters from its tap device, turned to the guest's side (what the host's
    tap receives the guest sent)."""
    base = Path(f"/sys/class/net/{tap}/statistics")

    def read(name: str) -> int | None:
        try:
            return int((base / name).read_text())
        except (OSError, ValueError):
            return None

    return {"mac_address": mac, "rx_octets": read("tx_bytes"), "rx_errors": read("tx_errors"),
            "rx_drop": read("tx_dropped"), "rx_packets": read("tx_packets"), "rx_rate": None,
            "tx_octets": read("rx_bytes"), "tx_errors": read("rx_errors"),
            "tx_drop": read("rx_dropped"), "tx_packets": read("rx_packets"), "tx_rate": None}


class GuestNics:
    """Taps, command line and hot-plug of guests' NICs (see the module docstring).

    ``vif_plugger`` is the network driver's hook (None: taps stay unwired);
    ``plugging_timeout`` how long a start or attach waits for the data plane.
    """

    def __init__(self, vif_plugger: VifPlugger | None, plugging_timeout: float,
                 detach_timeout: float = DETACH_TIMEOUT) -> None:
        self.vif_plugger = vif_plugger
        self.plugging_timeout = plugging_timeout
        self.detach_timeout = detach_timeout

    # ------------------------------------------------------------------ taps
    def plug(self, ports: Iterable[dict[str, Any]]) -> None:
        """Create each port's tap (idempotent) and hand it to the data plane."""
        for port in ports:
            tap = tap_name(port_id(port))
            if not link_exists(tap):
                _run(["ip", "tuntap", "add", "dev", tap, "mode", "tap"])
            if port.get("mtu"):
                _run(["ip", "link", "set", "dev", tap, "mtu", str(int(port["mtu"]))])
            _run(["ip", "link", "set", "dev", tap, "up"])
            if self.vif_plugger is not None:
                self.vif_plugger.plug(port, tap)

    async def wait_plugged(self, ports: Iterable[dict[str, Any]]) -> None:
        """Return once the data plane wired the ports (so a guest's DHCP request never
        races the wiring); ``DriverError`` after ``plugging_timeout``."""
        wait = getattr(self.vif_plugger, "wait_plugged", None)
        ids = [port_id(p) for p in ports]
        if wait is None or not ids:
            return
        started = time.monotonic()
        if not await asyncio.to_thread(wait, ids, self.plugging_timeout):
            if time.monotonic() - started < self.plugging_timeout:
                raise DriverError(f"the network will not wire ports {', '.join(ids)} (a port "
                                  "was deleted, or the data plane is stopping)")
            raise DriverError(f"the network did not wire ports {', '.join(ids)} within "
                              f"{self.plugging_timeout:g} s (vif plugging timed out)")

    def unplug(self, ports: Iterable[dict[str, Any]]) -> None:
        """Unwire and delete each port's tap (idempotent, never raises)."""
        for port in ports:
            tap = tap_name(port_id(port))
            if self.vif_plugger is not None:
                with contextlib.suppress(Exception):
                    self.vif_plugger.unplug(port, tap)
            if link_exists(tap):
                with contextlib.suppress(DriverError):
                    _run(["ip", "link", "del", "dev", tap])

    # ------------------------------------------------------------------ command line
    @staticmethod
    def argv(ports: list[dict[str, Any]], machine: str, slots: dict[str, str],
             root_ports: int = LEGACY_SLOTS) -> list[str]:
        """The NICs' part of QEMU's command line: ``root_ports`` spare root ports (q35),
        then one tap netdev and virtio NIC per port (on its recorded hot-plug slot, if
        any)."""
        out: list[str] = []
        if machine.startswith("q35") or machine == "pc-q35":
            for n in range(root_ports):
                out += ["-device", f"pcie-root-port,id=hp{n},bus=pcie.0,chassis={n + 1}"]
        for port in ports:
            netdev, device = qemu_ids(port)
            tap = tap_name(port_id(port))
            nic = f"virtio-net-pci,netdev={netdev},id={device}"
            if mac_of(port):
                nic += f",mac={mac_of(port)}"
            slot = slots.get(port_id(port))
            if slot:
                nic += f",bus={slot}"
            out += ["-netdev", f"tap,id={netdev},ifname={tap},script=no,downscript=no",
                    "-device", nic]
        return out

    @staticmethod
    def free_slot(machine: str, used: Iterable[str],
                  root_ports: int = LEGACY_SLOTS) -> str | None:
        """A root port no device occupies ("" on machines that hot-plug on the root bus);
        ``used``: the slots hot-plugged NICs and volumes hold."""
        if not (machine.startswith("q35") or machine == "pc-q35"):
            return ""
        taken = set(used)
        return next((f"hp{n}" for n in range(root_ports) if f"hp{n}" not in taken), None)

    # ------------------------------------------------------------------ hot-plug
    async def hot_add(self, qmp: QmpCall, port: dict[str, Any], slot: str) -> None:
        """Give a running QEMU the port's NIC (its tap already plugged)."""
        netdev, device = qemu_ids(port)
        try:
            await qmp("netdev_add", {"type": "tap", "id": netdev,
                                     "ifname": tap_name(port_id(port)),
                                     "script": "no", "downscript": "no"})
        except QMPError as exc:
            raise DriverError(f"QEMU refused the interface's tap: {exc}") from exc
        args: dict[str, Any] = {"driver": "virtio-net-pci", "netdev": netdev, "id": device}
        if mac_of(port):
            args["mac"] = mac_of(port)
        if slot:
            args["bus"] = slot
        await add_device(qmp, args, ("netdev_del", {"id": netdev}),
                         "QEMU refused the interface")

    async def hot_remove(self, qmp: QmpCall, port: dict[str, Any]) -> None:
        """Unplug the port's NIC from a running QEMU; returns once the guest released it
        (``DriverError`` after ``detach_timeout``). A NIC QEMU does not have is no error."""
        netdev, device = qemu_ids(port)
        await remove_device(qmp, device, self.detach_timeout, f"interface {port_id(port)}",
                            ("netdev_del", {"id": netdev}))
