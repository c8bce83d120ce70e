"""Snapshots of QEMU guests: the root disk written out as a standalone qcow2 file in the
instance directory (``snapshot-<hex>.qcow2``; the agent uploads it to the image service and
deletes it). A running guest is paused while the disk is copied: QEMU flushes the guest's
writes on the stop, so the copy is one point in time."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets

from onestack.drivers.hypervisor.base import InstanceSpec
from onestack.drivers.hypervisor.qemu.guests import QemuGuests
from onestack.drivers.hypervisor.qemu.host import QEMU_IMG, run
from onestack.drivers.hypervisor.qemu.process import GuestProcesses
from onestack.drivers.hypervisor.qemu.qmp import QMPError


class GuestSnapshots:
    """Writes guests' root disks to image files (see the module docstring)."""

    def __init__(self, guests: QemuGuests, processes: GuestProcesses) -> None:
        self.guests = guests
        self.processes = processes

    async def snapshot(self, instance: InstanceSpec) -> str:
        """A standalone qcow2 of the root disk (a running guest is paused while copying)."""
        uuid = instance["uuid"]
        async with self.guests.lock(uuid):
            self.guests.load_state(uuid)
            d = self.guests.dir(uuid)
            out = d / f"snapshot-{secrets.token_hex(6)}.qcow2"
            status = await self.processes.status(uuid)
            paused_here = False
            if status == "running":
                await self.processes.qmp(uuid, "stop")  # flushes the guest's disk writes
                paused_here = True
            try:
                await asyncio.to_thread(run, [QEMU_IMG, "convert", "-U", "-O", "qcow2",
                                              os.fspath(d / "disk"), os.fspath(out)])
            finally:
                if paused_here:
                    with contextlib.suppress(QMPError):
                        await self.processes.qmp(uuid, "cont")
            return os.fspath(out)
