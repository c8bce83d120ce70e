"""Attaching and detaching the NICs and volumes of QEMU guests, and what the volume service
asks of an attached volume (grow it, hold its writes for a snapshot).

A running (or paused) guest gets the device hot-plugged on a free spare root port
(``nics.py``, ``disks.py``); a stopped one only has its record changed, which the next start
follows. Either way ``state.json`` keeps the ports (``networks``), volumes
(``block_devices``) and the slots they sit on (``nic_slots``, ``disk_slots``), so every later
start, and a restore, has the same layout. A suspended guest refuses changes: its saved
state fixes the layout.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from onestack.drivers.hypervisor.base import DriverError, InstanceSpec
from onestack.drivers.hypervisor.qemu import disks as qemu_disks
from onestack.drivers.hypervisor.qemu.guests import QemuGuests
from onestack.drivers.hypervisor.qemu.nics import LEGACY_SLOTS, GuestNics, port_id, ports_of
from onestack.drivers.hypervisor.qemu.process import GuestProcesses
from onestack.drivers.hypervisor.qemu.qmp import QmpCall


def free_slot(state: dict[str, Any]) -> str | None:
    """A root port no hot-plugged NIC or volume of the guest holds ("" on the ``pc``
    machine, None when all are taken)."""
    props = (state["spec"].get("image") or {}).get("properties") or {}
    used = [*(state.get("nic_slots") or {}).values(),
            *(state.get("disk_slots") or {}).values()]
    return GuestNics.free_slot(str(props.get("hw_machine_type") or "q35"), used,
                               int(state.get("root_ports") or LEGACY_SLOTS))


@dataclass(frozen=True)
class _Recorded:
    """Where ``state.json`` records one kind of hot-pluggable device."""

    #: The spec's list of them.
    listing: str
    #: Their root ports, by id.
    slots: str
    #: The id of one entry of ``listing``.
    ident: Callable[[dict[str, Any]], str]


_NICS = _Recorded("networks", "nic_slots", port_id)
_VOLUMES = _Recorded("block_devices", "disk_slots", lambda b: str(b.get("volume_id")))


class GuestHotplug:
    """The NIC and volume operations of guests (see the module docstring)."""

    def __init__(self, guests: QemuGuests, processes: GuestProcesses, nics: GuestNics,
                 disks: qemu_disks.GuestDisks) -> None:
        self.guests = guests
        self.processes = processes
        self.nics = nics
        self.disks = disks

    def _refuse_suspended(self, uuid: str) -> None:
        if self.processes.suspended(uuid):
            raise DriverError(f"instance {uuid} is suspended")  # saved layout is fixed

    @contextlib.asynccontextmanager
    async def _detaching(self, uuid: str, kind: _Recorded,
                         ident: str) -> AsyncIterator[QmpCall | None]:
        """Detach device ``ident`` of ``kind`` from guest ``uuid`` (refused while it is
        suspended): under the guest's lock the block unplugs it -- from QEMU through the
        monitor it is given while QEMU runs, None otherwise -- then the device leaves the
        guest's record."""
        async with self.guests.lock(uuid):
            state = self.guests.load_state(uuid)
            spec = state["spec"]
            self._refuse_suspended(uuid)
            yield self.processes.monitor(uuid) if self.processes.pid(uuid) is not None else None
            spec[kind.listing] = [d for d in spec.get(kind.listing) or []
                                  if kind.ident(d) != ident]
            (state.get(kind.slots) or {}).pop(ident, None)
            self.guests.save_state(uuid, state)

    # ------------------------------------------------------------------ NICs
    async def attach_interface(self, instance: InstanceSpec, port: dict[str, Any]) -> None:
        uuid = instance["uuid"]
        pid = port_id(port)
        async with self.guests.lock(uuid):
            state = self.guests.load_state(uuid)
            spec = state["spec"]
            if any(port_id(p) == pid for p in ports_of(spec)):
                return
            slots: dict[str, str] = state.setdefault("nic_slots", {})
            self._refuse_suspended(uuid)
            if self.processes.pid(uuid) is not None:
                slot = free_slot(state)
                if slot is None:
                    raise DriverError(f"instance {uuid} has no free PCIe slot for another "
                                      "interface (a restart of the server frees them)")
                await asyncio.to_thread(self.nics.plug, [port])
                try:
                    await self.nics.wait_plugged([port])
                    await self.nics.hot_add(self.processes.monitor(uuid), port, slot)
                except DriverError:
                    await asyncio.to_thread(self.nics.unplug, [port])
                    raise
                if slot:
                    slots[pid] = slot
            spec["networks"] = [*(spec.get("networks") or []), dict(port)]
            self.guests.save_state(uuid, state)

    async def detach_interface(self, instance: InstanceSpec, port: dict[str, Any]) -> None:
        async with self._detaching(instance["uuid"], _NICS, port_id(port)) as monitor:
            if monitor is not None:
                await self.nics.hot_remove(monitor, port)
            await asyncio.to_thread(self.nics.unplug, [port])

    # ------------------------------------------------------------------ volumes
    async def attach_volume(self, instance: InstanceSpec, volume: dict[str, Any]) -> None:
        uuid = instance["uuid"]
        vid = str(volume["volume_id"])
        async with self.guests.lock(uuid):
            state = self.guests.load_state(uuid)
            spec = state["spec"]
            if any(str(b.get("volume_id")) == vid for b in spec.get("block_devices") or []):
                return
            self._refuse_suspended(uuid)
            qemu_disks.blockdev(volume)  # refuses what QEMU could not open, before anything
            slot = free_slot(state)
            if self.processes.pid(uuid) is not None:
                if slot is None:
                    raise DriverError(f"instance {uuid} has no free PCIe slot for another "
                                      "volume (detach a volume or interface first)")
                await self.disks.hot_add(self.processes.monitor(uuid), volume, slot)
            if slot:
                state.setdefault("disk_slots", {})[vid] = slot
            keep = {k: volume.get(k) for k in ("volume_id", "device", "mode",
                                               "connection_info", "boot_index",
                                               "multiattach")}
            spec["block_devices"] = [*(spec.get("block_devices") or []), keep]
            self.guests.save_state(uuid, state)

    async def detach_volume(self, instance: InstanceSpec, volume: dict[str, Any]) -> None:
        async with self._detaching(instance["uuid"], _VOLUMES,
                                   str(volume["volume_id"])) as monitor:
            if monitor is not None:
                await self.disks.hot_remove(monitor, volume)

    async def extend_volume(self, instance: InstanceSpec, volume: dict[str, Any],
                            new_size: int) -> None:
        uuid = instance["uuid"]
        async with self.guests.lock(uuid):
            state = self.guests.load_state(uuid)
            if not any(str(b.get("volume_id")) == str(volume["volume_id"])
                       for b in state["spec"].get("block_devices") or []):
                raise DriverError(f"volume {volume['volume_id']} is not attached")
            if self.processes.pid(uuid) is not None:
                await self.disks.resize(self.processes.monitor(uuid), volume, new_size)

    async def pause_volume_io(self, instance: InstanceSpec, volume: dict[str, Any]) -> bool:
        """The guest's vCPUs stop (QEMU drains and flushes every disk on a stop), so the
        volume's file holds one point in time until ``resume_volume_io``."""
        uuid = instance["uuid"]
        async with self.guests.lock(uuid):
            self.guests.load_state(uuid)
            if await self.processes.status(uuid) != "running":
                return False
            await self.processes.qmp(uuid, "stop")
            return True

    async def resume_volume_io(self, instance: InstanceSpec, volume: dict[str, Any]) -> None:
        uuid = instance["uuid"]
        async with self.guests.lock(uuid):
            self.guests.load_state(uuid)
            if await self.processes.status(uuid) == "paused":
                await self.processes.qmp(uuid, "cont")
