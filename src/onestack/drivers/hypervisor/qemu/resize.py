"""Resize of QEMU guests (the contract's cold migration), on the same host only: there is no
shared storage to hand a disk to another host.

The source side stops the guest (a clean shutdown, forced after ``shutdown_timeout``: the
soft reboot timeout, 30 s at most); the destination side, the same host, restarts it on the
new flavor from ``state.json``: the root disk grown to the new ``root_gb`` and the ephemeral
and swap disks made or grown, never shrunk (qcow2 cannot shrink, so a reverted resize keeps
a grown disk).
"""

from __future__ import annotations

import asyncio
from typing import Any

from onestack.drivers.hypervisor.base import DriverError, InstanceSpec
from onestack.drivers.hypervisor.qemu.guests import QemuGuests
from onestack.drivers.hypervisor.qemu.images import GuestImages
from onestack.drivers.hypervisor.qemu.process import GuestProcesses


class GuestResize:
    """Stops guests for a resize and restarts them on a flavor (see the module docstring);
    ``host`` is this host."""

    def __init__(self, host: str, guests: QemuGuests, processes: GuestProcesses,
                 images: GuestImages, shutdown_timeout: float = 30.0) -> None:
        self.host = host
        self.guests = guests
        self.processes = processes
        self.images = images
        self.shutdown_timeout = shutdown_timeout

    async def migrate_disk_and_power_off(self, instance: InstanceSpec, dest_host: str,
                                         new_flavor: dict[str, Any]) -> None:
        uuid = instance["uuid"]
        if dest_host != self.host:
            raise DriverError("the QEMU driver resizes on the same host only "
                              "(no shared storage for cold migration)")
        async with self.guests.lock(uuid):
            self.guests.load_state(uuid)
            await self.processes.stop(uuid, self.shutdown_timeout)

    async def restart_with_flavor(self, instance: InstanceSpec) -> None:
        """Restart the guest on ``instance``'s flavor (its recorded one when the spec has
        none)."""
        uuid = instance["uuid"]
        async with self.guests.lock(uuid):
            state = self.guests.load_state(uuid)
            await self.processes.stop(uuid, 0)
            flavor = dict(instance.get("flavor") or state["spec"].get("flavor") or {})
            state["spec"]["flavor"] = flavor
            root_gb = int(flavor.get("root_gb") or 0)
            d = self.guests.dir(uuid)
            disk = d / "disk"
            if root_gb and disk.exists():  # a volume-backed guest has no local root disk
                await asyncio.to_thread(self.images.grow_root_disk, disk, root_gb)
            await asyncio.to_thread(self.images.make_flavor_disks, d, flavor)
            self.guests.save_state(uuid, state)
            await self.processes.start(uuid, state)
