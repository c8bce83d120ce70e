"""Rescue of QEMU guests: boot a rescue image with the guest's own disk attached.

The rescue root disk (``disk.rescue``) is an overlay on the rescue image (default: the
instance's own image); ``state.json`` keeps the rescue (its image, boot files and, for Nova's
stable device rescue, bus and device) so a restart stays rescued until the unrescue. Without
``hw_rescue_bus``/``hw_rescue_device`` the rescue disk boots first and the guest's disks
follow; with them the guest's disks stay where they are and the rescue disk is added on that
bus (``cmdline.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from onestack.drivers.hypervisor.base import InstanceSpec
from onestack.drivers.hypervisor.qemu.cmdline import rescue_device_argv
from onestack.drivers.hypervisor.qemu.guests import QemuGuests
from onestack.drivers.hypervisor.qemu.images import GuestImages
from onestack.drivers.hypervisor.qemu.process import GuestProcesses


class GuestRescue:
    """Rescues and unrescues guests (see the module docstring)."""

    def __init__(self, guests: QemuGuests, processes: GuestProcesses,
                 images: GuestImages) -> None:
        self.guests = guests
        self.processes = processes
        self.images = images

    async def rescue(self, instance: InstanceSpec, rescue_image: dict[str, Any]) -> None:
        """Boot from ``rescue_image`` (a spec image dict; default: the instance's own image)
        with the instance's disk attached second; a rescue image with ``hw_rescue_bus``/
        ``hw_rescue_device`` gets Nova's stable device rescue (the guest's disks, its root
        volume included, stay where they are; the rescue disk is added on that bus)."""
        uuid = instance["uuid"]
        async with self.guests.lock(uuid):
            state = self.guests.load_state(uuid)
            image = self.images.resolve(rescue_image or {})
            if not image.get("path") and not image.get("kernel_path"):
                image = state["spec"].get("image") or {}  # default: the instance's image
            d = self.guests.dir(uuid)
            props = image.get("properties") or {}
            stable = None
            if props.get("hw_rescue_bus") or props.get("hw_rescue_device"):
                stable = {"bus": str(props.get("hw_rescue_bus") or "virtio"),
                          "device": str(props.get("hw_rescue_device") or "disk")}
                rescue_device_argv(d / "disk.rescue", stable["bus"], stable["device"])
            await self.processes.stop(uuid, 0)

            def prepare() -> dict[str, Any]:
                boot = self.images.boot_files(image)
                if image.get("path") or stable:
                    self.images.make_root_disk(d / "disk.rescue", image, 0)
                return boot

            boot = await asyncio.to_thread(prepare)
            state["rescue"] = {"image": {k: image.get(k) for k in ("id", "path")}, "boot": boot,
                               "stable": stable}
            self.guests.save_state(uuid, state)
            await self.processes.start(uuid, state)

    async def unrescue(self, instance: InstanceSpec) -> None:
        """Boot the guest from its own disk again (the rescue disk is deleted)."""
        uuid = instance["uuid"]
        async with self.guests.lock(uuid):
            state = self.guests.load_state(uuid)
            await self.processes.stop(uuid, 0)
            with contextlib.suppress(OSError):
                (self.guests.dir(uuid) / "disk.rescue").unlink()
            state["rescue"] = None
            self.guests.save_state(uuid, state)
            await self.processes.start(uuid, state)
