"""The life of a QEMU guest: spawn (instance directory, disks, config drive, ``state.json``,
start), destroy, the power state, and the power operations.

``power_off(timeout)`` is the ACPI power button, waiting up to ``timeout`` s, then ``quit``,
then SIGKILL; ``power_on`` starts QEMU again from ``state.json`` (or restores a suspended
guest); a soft reboot is a clean power-off (forced after ``soft_reboot_timeout`` s) and a
start, a hard reboot ``system_reset``; pause and unpause are ``stop``/``cont``.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from typing import Any

from onestack.drivers.hypervisor.base import DriverError, InstanceNotFound, InstanceSpec, PowerState
from onestack.drivers.hypervisor.configdrive import build_config_drive
from onestack.drivers.hypervisor.qemu.guests import QemuGuests
from onestack.drivers.hypervisor.qemu.hotplug import free_slot
from onestack.drivers.hypervisor.qemu.images import GuestImages
from onestack.drivers.hypervisor.qemu.nics import HOTPLUG_SLOTS, GuestNics, ports_of
from onestack.drivers.hypervisor.qemu.process import GuestProcesses
from onestack.drivers.hypervisor.qemu.suspend import GuestSuspend


class GuestLifecycle:
    """Spawns, destroys and powers guests (see the module docstring); ``host`` names this
    host in errors, ``force_config_drive`` gives every guest a config drive."""

    def __init__(self, host: str, guests: QemuGuests, processes: GuestProcesses,
                 images: GuestImages, nics: GuestNics, suspend: GuestSuspend,
                 force_config_drive: bool = False, soft_reboot_timeout: float = 60.0) -> None:
        self.host = host
        self.guests = guests
        self.processes = processes
        self.images = images
        self.nics = nics
        self.suspend = suspend
        self.force_config_drive = force_config_drive
        self.soft_reboot_timeout = soft_reboot_timeout

    # ------------------------------------------------------------------ spawn & destroy
    async def spawn(self, instance: InstanceSpec) -> None:
        uuid = instance["uuid"]
        async with self.guests.lock(uuid):
            d = self.guests.dir(uuid)
            if self.processes.pid(uuid) is not None:
                raise DriverError(f"instance {uuid} is already running on {self.host}")
            if d.exists():
                await asyncio.to_thread(shutil.rmtree, d, True)
            self.guests.root.mkdir(parents=True, exist_ok=True, mode=0o700)
            d.mkdir(mode=0o700)
            spec = {k: v for k, v in instance.items() if k != "admin_pass"}
            state: dict[str, Any] = {"spec": spec, "rescue": None, "created_at": time.time(),
                                     "root_ports": HOTPLUG_SLOTS}
            for bdm in spec.get("block_devices") or []:  # slots, so they can be unplugged
                if bdm.get("boot_index") == 0:
                    continue  # the root volume stays on the root bus, first
                slot = free_slot(state)
                if slot:
                    state.setdefault("disk_slots", {})[str(bdm["volume_id"])] = slot
            await asyncio.to_thread(self._prepare_disks, uuid, instance, state)
            self.guests.save_state(uuid, state)
            await self.processes.start(uuid, state)

    def _prepare_disks(self, uuid: str, instance: InstanceSpec, state: dict[str, Any]) -> None:
        d = self.guests.dir(uuid)
        image = self.images.resolve(instance.get("image") or {})
        state["spec"]["image"] = image
        state["boot"] = self.images.boot_files(image)
        root_gb = int((instance.get("flavor") or {}).get("root_gb") or 0)
        if not any(b.get("boot_index") == 0 for b in instance.get("block_devices") or []):
            self.images.make_root_disk(d / "disk", image, root_gb)  # not volume-backed
        self.images.make_flavor_disks(d, instance.get("flavor") or {})
        if instance.get("config_drive") or self.force_config_drive:
            build_config_drive(d / "config.iso", instance)
        (d / "console.log").touch(mode=0o600)

    async def destroy(self, instance: InstanceSpec) -> None:
        uuid = instance["uuid"]
        try:
            d = self.guests.dir(uuid)
        except InstanceNotFound:
            return
        async with self.guests.lock(uuid):
            try:
                spec = self.guests.load_state(uuid)["spec"]
            except InstanceNotFound:
                spec = instance
            await self.processes.stop(uuid, 0)
            self.processes.reap(uuid)
            await asyncio.to_thread(self.nics.unplug, ports_of(spec))
            await asyncio.to_thread(shutil.rmtree, d, True)
            self.guests.drop_sock_link(uuid)
        self.guests.forget(uuid)

    async def get_info(self, instance: InstanceSpec) -> PowerState:
        uuid = instance["uuid"]
        self.guests.load_state(uuid)
        return await self.processes.power_state(uuid)

    # ------------------------------------------------------------------ power
    async def power_off(self, instance: InstanceSpec, timeout: float = 0) -> None:
        uuid = instance["uuid"]
        async with self.guests.lock(uuid):
            self.guests.load_state(uuid)
            await self.processes.stop(uuid, timeout)

    async def power_on(self, instance: InstanceSpec) -> None:
        uuid = instance["uuid"]
        async with self.guests.lock(uuid):
            state = self.guests.load_state(uuid)
            if self.processes.suspended(uuid):
                await self.suspend.restore(uuid, state)
                return
            status = await self.processes.status(uuid)
            if status is None:
                await self.processes.start(uuid, state)
            elif status in ("paused", "shutdown", "postmigrate"):
                if status == "shutdown":
                    await self.processes.qmp(uuid, "system_reset")
                await self.processes.qmp(uuid, "cont")

    async def reboot(self, instance: InstanceSpec, hard: bool) -> None:
        uuid = instance["uuid"]
        async with self.guests.lock(uuid):
            state = self.guests.load_state(uuid)
            status = await self.processes.status(uuid)
            if status is None:
                await self.processes.start(uuid, state)
                return
            if hard:
                await self.processes.qmp(uuid, "system_reset")
                if status != "running":
                    await self.processes.qmp(uuid, "cont")
                return
            # Soft: ACPI power button, wait for the guest to power off, start it again
            # (a guest that ignores the button is stopped the hard way).
            await self.processes.stop(
                uuid, self.soft_reboot_timeout if status == "running" else 0)
            await self.processes.start(uuid, state)

    async def pause(self, instance: InstanceSpec) -> None:
        await self._vcpus(instance, "stop")

    async def unpause(self, instance: InstanceSpec) -> None:
        await self._vcpus(instance, "cont")

    async def _vcpus(self, instance: InstanceSpec, command: str) -> None:
        """Stop (``stop``) or go on with (``cont``) the vCPUs of a guest whose QEMU runs."""
        uuid = instance["uuid"]
        async with self.guests.lock(uuid):
            self.guests.load_state(uuid)
            if await self.processes.status(uuid) is None:
                raise DriverError(f"instance {uuid} is not running")
            await self.processes.qmp(uuid, command)
