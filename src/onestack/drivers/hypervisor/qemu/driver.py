"""The QEMU hypervisor driver: real guests, one detached ``qemu-system-x86_64`` each.

Same contract as ``fake.py`` (see ``base.py``). Everything a guest owns lives in
``DATA/instances/<uuid>/``::

    state.json      the spec the guest was built from (+ rescue state); the source of truth
                    that lets a new driver object (after the agent restarts, even kill -9)
                    re-adopt and restart the guest
    disk            qcow2 overlay on the cached base image (``DATA/instances/_base``)
    disk.rescue     rescue root disk (while rescued)
    disk.local      the flavor's ephemeral disk (ephemeral_gb; thin qcow2, unformatted)
    disk.swap       the flavor's swap disk (swap MiB; thin qcow2, unformatted)
    config.iso      config drive (ISO 9660, label ``config-2``), when requested
    console.log     serial console (QEMU appends; rotated to console.log.0 past a limit)
    qemu.log        QEMU's own stdout/stderr
    qemu.pid        pidfile written by QEMU; qmp.sock: the QMP monitor
    suspend.state   saved memory of a suspended guest

QEMU runs in its own session (``setsid``) with ``-nodefaults -sandbox on``, no network but
the tap devices of the guest's ports (never ``-netdev user``), consoles on loopback only:
VNC on ``127.0.0.1:5900+N`` (see ``consoles.py``). The accelerator is KVM when a time-boxed
probe boots under it, TCG otherwise (reported as ``cpu_info["accel"]``).

``QemuDriver`` is the contract's face; the work is done by one part per concept, each given
what it shares with the others: the guests' records (``guests.py``), their QEMU processes
(``process.py``), images and local disks (``images.py``), spawn/destroy/power
(``lifecycle.py``), suspend/resume (``suspend.py``), rescue (``rescue.py``), resize
(``resize.py``), snapshots (``snapshot.py``), NIC and volume hot-plug (``hotplug.py``),
consoles (``consoles.py``) and diagnostics (``diagnostics.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path
from typing import Any

from onestack.drivers.hypervisor.base import (
    Capabilities,
    DriverError,
    HostResources,
    HypervisorDriver,
    InstanceSpec,
    PowerState,
)
from onestack.drivers.hypervisor.qemu.consoles import GuestConsoles
from onestack.drivers.hypervisor.qemu.diagnostics import guest_diagnostics
from onestack.drivers.hypervisor.qemu.disks import GuestDisks
from onestack.drivers.hypervisor.qemu.guests import QemuGuests
from onestack.drivers.hypervisor.qemu.host import (
    QEMU_BINARY,
    QEMU_IMG,
    GiB,
    available,
    cpu_model,
    meminfo_mb,
    qemu_version,
)
from onestack.drivers.hypervisor.qemu.hotplug import GuestHotplug
from onestack.drivers.hypervisor.qemu.images import GuestImages
from onestack.drivers.hypervisor.qemu.lifecycle import GuestLifecycle
from onestack.drivers.hypervisor.qemu.nics import GuestNics, VifPlugger
from onestack.drivers.hypervisor.qemu.process import GuestProcesses
from onestack.drivers.hypervisor.qemu.rescue import GuestRescue
from onestack.drivers.hypervisor.qemu.resize import GuestResize
from onestack.drivers.hypervisor.qemu.snapshot import GuestSnapshots
from onestack.drivers.hypervisor.qemu.suspend import GuestSuspend

LOG = logging.getLogger(__name__)


class QemuDriver(HypervisorDriver):
    """Runs guests as detached QEMU processes (see the module docstring).

    Options: ``data_dir`` (default: the onestack data dir), ``accel`` (``auto``, ``kvm``,
    ``tcg``), ``force_config_drive``, ``vif_plugger`` (the network driver hook, default
    none: taps stay unplugged), ``console_log_limit`` bytes kept per generation,
    ``kvm_probe_timeout`` s, ``soft_reboot_timeout`` s, ``qemu_binary``,
    ``vif_plugging_timeout`` s (how long a start waits for the data plane to wire the
    guest's ports before it fails, as Nova's ``vif_plugging_timeout`` with
    ``vif_plugging_is_fatal``).
    """

    hypervisor_type = "QEMU"
    capabilities = Capabilities(supports_live_migration=False, supports_remote_console=True)

    def __init__(self, host: str, data_dir: str | Path | None = None, accel: str = "auto",
                 force_config_drive: bool = False, vif_plugger: VifPlugger | None = None,
                 console_log_limit: int = 1 << 20, kvm_probe_timeout: float = 3.0,
                 soft_reboot_timeout: float = 60.0, qemu_binary: str = QEMU_BINARY,
                 vif_plugging_timeout: float = 300.0, **options: Any) -> None:
        super().__init__(host)
        if data_dir is None:
            from onestack.config import default_data_dir

            data_dir = default_data_dir()
        self.data_dir = Path(data_dir)
        self.root = self.data_dir / "instances"
        self.base_dir = self.root / "_base"
        self.qemu_binary = qemu_binary
        if options:
            LOG.debug("QEMU driver ignores options %s", sorted(options))
        self.nics = GuestNics(vif_plugger, vif_plugging_timeout)
        self.disks = GuestDisks()
        self.guests = QemuGuests(self.root)
        self.processes = GuestProcesses(self.guests, self.nics, qemu_binary, accel,
                                        kvm_probe_timeout)
        self.images = GuestImages(self.data_dir, self.base_dir)
        self.suspender = GuestSuspend(self.guests, self.processes)
        self.lifecycle = GuestLifecycle(host, self.guests, self.processes, self.images,
                                        self.nics, self.suspender, force_config_drive,
                                        soft_reboot_timeout)
        self.rescuer = GuestRescue(self.guests, self.processes, self.images)
        self.resizer = GuestResize(host, self.guests, self.processes, self.images,
                                   min(soft_reboot_timeout, 30.0))
        self.snapshots = GuestSnapshots(self.guests, self.processes)
        self.hotplug = GuestHotplug(self.guests, self.processes, self.nics, self.disks)
        self.consoles = GuestConsoles(self.guests, self.processes, console_log_limit)
        if not available():
            raise DriverError(f"{QEMU_BINARY} and {QEMU_IMG} are needed by the QEMU driver "
                              "(Debian/Ubuntu: apt-get install qemu-system-x86 qemu-utils)")

    @property
    def vif_plugger(self) -> VifPlugger | None:
        """The network driver's hook that wires taps (set by the composition root)."""
        return self.nics.vif_plugger

    @vif_plugger.setter
    def vif_plugger(self, plugger: VifPlugger | None) -> None:
        self.nics.vif_plugger = plugger

    @property
    def accel(self) -> str:
        """``kvm`` or ``tcg``: what guests run under."""
        return self.processes.accel

    # ------------------------------------------------------------------ host
    async def init_host(self) -> None:
        """Create the directories, pick the accelerator, re-adopt running guests."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.base_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        await asyncio.to_thread(lambda: self.accel)
        for uuid in await self.list_instances():
            if self.processes.pid(uuid) is not None:
                LOG.info("re-adopted running guest %s", uuid)

    async def list_instances(self) -> list[str]:
        uuids = self.guests.uuids()
        for uuid in uuids:
            with contextlib.suppress(OSError):
                self.consoles.rotate(uuid)
        return uuids

    async def get_available_resource(self) -> HostResources:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        st = os.statvfs(self.root)
        accel = await asyncio.to_thread(lambda: self.accel)
        version, version_text = await asyncio.to_thread(qemu_version, self.qemu_binary)
        model, vendor, flags = cpu_model()
        cpus = os.cpu_count() or 1
        return HostResources(
            vcpus=cpus, memory_mb=meminfo_mb(),
            local_gb=(st.f_blocks * st.f_frsize) // GiB,
            hypervisor_type="QEMU", hypervisor_version=version,
            hypervisor_hostname=self.host,
            cpu_info={"arch": os.uname().machine, "model": model, "vendor": vendor,
                      "accel": accel, "qemu_version": version_text,
                      "topology": {"sockets": 1, "cores": cpus, "threads": 1},
                      "features": sorted(f for f in flags if f in (
                          "vmx", "svm", "aes", "avx", "avx2", "sse4_2", "x2apic", "hypervisor"))},
        )

    # ------------------------------------------------------------------ lifecycle & power
    async def spawn(self, instance: InstanceSpec) -> None:
        await self.lifecycle.spawn(instance)

    async def destroy(self, instance: InstanceSpec) -> None:
        await self.lifecycle.destroy(instance)

    async def get_info(self, instance: InstanceSpec) -> PowerState:
        return await self.lifecycle.get_info(instance)

    async def power_off(self, instance: InstanceSpec, timeout: float = 0) -> None:
        await self.lifecycle.power_off(instance, timeout)

    async def power_on(self, instance: InstanceSpec) -> None:
        await self.lifecycle.power_on(instance)

    async def reboot(self, instance: InstanceSpec, hard: bool) -> None:
        await self.lifecycle.reboot(instance, hard)

    async def pause(self, instance: InstanceSpec) -> None:
        await self.lifecycle.pause(instance)

    async def unpause(self, instance: InstanceSpec) -> None:
        await self.lifecycle.unpause(instance)

    async def suspend(self, instance: InstanceSpec) -> None:
        await self.suspender.suspend(instance)

    async def resume(self, instance: InstanceSpec) -> None:
        await self.suspender.resume(instance)

    # ------------------------------------------------------------------ rescue & resize
    async def rescue(self, instance: InstanceSpec, rescue_image: dict[str, Any]) -> None:
        await self.rescuer.rescue(instance, rescue_image)

    async def unrescue(self, instance: InstanceSpec) -> None:
        await self.rescuer.unrescue(instance)

    async def migrate_disk_and_power_off(self, instance: InstanceSpec, dest_host: str,
                                         new_flavor: dict[str, Any]) -> None:
        await self.resizer.migrate_disk_and_power_off(instance, dest_host, new_flavor)

    async def finish_migration(self, instance: InstanceSpec, resize_instance: bool) -> None:
        """Start the guest on its new flavor (disk grown to the new root_gb, never shrunk)."""
        if self.guests.has_record(instance["uuid"]):
            await self.resizer.restart_with_flavor(instance)
        else:
            await self.spawn(instance)

    async def finish_revert_migration(self, instance: InstanceSpec) -> None:
        """Restart on the old flavor (a grown disk stays grown, as qcow2 cannot shrink)."""
        await self.finish_migration(instance, False)

    async def snapshot(self, instance: InstanceSpec) -> str:
        return await self.snapshots.snapshot(instance)

    # ------------------------------------------------------------------ hot-plug
    async def attach_interface(self, instance: InstanceSpec, port: dict[str, Any]) -> None:
        await self.hotplug.attach_interface(instance, port)

    async def detach_interface(self, instance: InstanceSpec, port: dict[str, Any]) -> None:
        await self.hotplug.detach_interface(instance, port)

    async def attach_volume(self, instance: InstanceSpec, volume: dict[str, Any]) -> None:
        await self.hotplug.attach_volume(instance, volume)

    async def detach_volume(self, instance: InstanceSpec, volume: dict[str, Any]) -> None:
        await self.hotplug.detach_volume(instance, volume)

    async def extend_volume(self, instance: InstanceSpec, volume: dict[str, Any],
                            new_size: int) -> None:
        await self.hotplug.extend_volume(instance, volume, new_size)

    async def pause_volume_io(self, instance: InstanceSpec, volume: dict[str, Any]) -> bool:
        return await self.hotplug.pause_volume_io(instance, volume)

    async def resume_volume_io(self, instance: InstanceSpec, volume: dict[str, Any]) -> None:
        await self.hotplug.resume_volume_io(instance, volume)

    # ------------------------------------------------------------------ consoles
    async def get_console_output(self, instance: InstanceSpec) -> str:
        return await self.consoles.output(instance)

    async def get_vnc_console(self, instance: InstanceSpec) -> dict[str, Any]:
        """Where the guest's VNC server listens: ``{"host": "127.0.0.1", "port": 59xx}``
        (loopback only; the console proxy connects to it)."""
        return await self.consoles.vnc(instance)

    async def get_diagnostics(self, instance: InstanceSpec) -> dict[str, Any]:
        """Nova's standard diagnostics, read off the running guest (``diagnostics.py``)."""
        return await guest_diagnostics(self.guests, self.processes, instance["uuid"])


def driver_options(settings: Any) -> dict[str, Any]:
    """``QemuDriver`` keyword options from the onestack ``Settings``."""
    return {"data_dir": settings.data_dir,
            "accel": getattr(settings, "compute_qemu_accel", "auto"),
            "force_config_drive": getattr(settings, "compute_force_config_drive", False)}
