"""The fake hypervisor: guests are entries in a dict; nothing runs.

Their remote console is real enough for clients: one minimal VNC server per fake host on
loopback (``fakevnc.FakeVncServer``), started on the first ``get_vnc_console``.

It follows the contract of ``base.py`` exactly and adds two test knobs:

* ``delay`` seconds slept by every operation (``delays`` per operation name overrides it);
* ``fail`` — a set of operation names that raise ``DriverError`` (``fail_once`` for the next
  call only), so tests can drive the error paths (e.g. a failing ``spawn`` reschedules).

Many fake hosts may share a process (``onestack up --fake-hosts N``); each driver instance is
one host. The class attribute ``registry`` maps host names to their driver, for tests.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from dataclasses import dataclass, field
from typing import Any, ClassVar

from onestack.common.timeutils import isotime, utcnow
from onestack.drivers.hypervisor.base import (
    Capabilities,
    DriverError,
    HostResources,
    HypervisorDriver,
    InstanceNotFound,
    InstanceSpec,
    PowerState,
)
from onestack.drivers.hypervisor.fakevnc import FakeVncServer


@dataclass
class FakeGuest:
    uuid: str
    name: str
    state: PowerState
    flavor: dict[str, Any]
    rescued: bool = False
    console: list[str] = field(default_factory=list)
    #: The guest's NICs: port id -> MAC address (boot NICs and attached ones).
    nics: dict[str, str] = field(default_factory=dict)
    #: The guest's volumes: volume id -> device name.
    disks: dict[str, str] = field(default_factory=dict)


_BOOT_LOG = (
    "fake firmware: booting {uuid}",
    "Linux version 6.1.0-fake (onestack fake hypervisor)",
    "Command line: console=ttyS0 root=/dev/vda1",
    "Memory: ok",
    "virtio_blk virtio0: [vda] attached",
    "EXT4-fs (vda1): mounted filesystem",
    "cloud-init: fetching metadata",
    "cloud-init: hostname set to {name}",
    "{name} login:",
)


class FakeDriver(HypervisorDriver):
    """In-memory hypervisor (see the module docstring)."""

    hypervisor_type = "fake"
    capabilities = Capabilities(supports_remote_console=True)
    registry: ClassVar[dict[str, FakeDriver]] = {}

    def __init__(self, host: str, vcpus: int = 32, memory_mb: int = 131072,
                 local_gb: int = 2048, delay: float = 0.0,
                 delays: dict[str, float] | None = None,
                 fail: set[str] | None = None) -> None:
        super().__init__(host)
        self.vcpus = vcpus
        self.memory_mb = memory_mb
        self.local_gb = local_gb
        self.delay = delay
        self.delays = dict(delays or {})
        self.fail = set(fail or ())
        self.fail_once: set[str] = set()
        self.guests: dict[str, FakeGuest] = {}
        #: The remote console of every fake guest (started on first use).
        self.vnc = FakeVncServer(f"onestack fake console ({host})")
        FakeDriver.registry[host] = self

    async def _op(self, name: str) -> None:
        wait = self.delays.get(name, self.delay)
        if wait > 0:
            await asyncio.sleep(wait)
        if name in self.fail_once:
            self.fail_once.discard(name)
            raise DriverError(f"fake driver: injected failure of {name}")
        if name in self.fail:
            raise DriverError(f"fake driver: injected failure of {name}")

    def _guest(self, instance: InstanceSpec) -> FakeGuest:
        guest = self.guests.get(instance["uuid"])
        if guest is None:
            raise InstanceNotFound(f"Instance {instance['uuid']} could not be found.")
        return guest

    def _log(self, guest: FakeGuest, line: str) -> None:
        guest.console.append(f"[{isotime(utcnow())}] {line}")

    async def spawn(self, instance: InstanceSpec) -> None:
        await self._op("spawn")
        guest = FakeGuest(instance["uuid"], instance.get("name", ""), PowerState.RUNNING,
                          dict(instance.get("flavor") or {}))
        for line in _BOOT_LOG:
            self._log(guest, line.format(name=guest.name, uuid=guest.uuid))
        for port in instance.get("networks") or []:
            if isinstance(port, dict) and (port.get("port_id") or port.get("id")):
                guest.nics[str(port.get("port_id") or port.get("id"))] = str(
                    port.get("mac_address") or "")
        for bdm in instance.get("block_devices") or []:
            guest.disks[str(bdm["volume_id"])] = str(bdm.get("device") or "")
        self.guests[guest.uuid] = guest

    async def destroy(self, instance: InstanceSpec) -> None:
        await self._op("destroy")
        self.guests.pop(instance["uuid"], None)

    async def reboot(self, instance: InstanceSpec, hard: bool) -> None:
        await self._op("reboot")
        guest = self._guest(instance)
        guest.state = PowerState.RUNNING
        self._log(guest, "hard reboot" if hard else "reboot")

    async def power_off(self, instance: InstanceSpec, timeout: float = 0) -> None:
        await self._op("power_off")
        guest = self._guest(instance)
        guest.state = PowerState.SHUTDOWN
        self._log(guest, "powered off")

    async def power_on(self, instance: InstanceSpec) -> None:
        await self._op("power_on")
        guest = self._guest(instance)
        guest.state = PowerState.RUNNING
        self._log(guest, "powered on")

    async def pause(self, instance: InstanceSpec) -> None:
        await self._op("pause")
        self._guest(instance).state = PowerState.PAUSED

    async def unpause(self, instance: InstanceSpec) -> None:
        await self._op("unpause")
        self._guest(instance).state = PowerState.RUNNING

    async def suspend(self, instance: InstanceSpec) -> None:
        await self._op("suspend")
        self._guest(instance).state = PowerState.SHUTDOWN  # saved to disk (see base.py)

    async def resume(self, instance: InstanceSpec) -> None:
        await self._op("resume")
        self._guest(instance).state = PowerState.RUNNING

    async def rescue(self, instance: InstanceSpec, rescue_image: dict[str, Any]) -> None:
        await self._op("rescue")
        guest = self._guest(instance)
        guest.rescued = True
        guest.state = PowerState.RUNNING

    async def unrescue(self, instance: InstanceSpec) -> None:
        await self._op("unrescue")
        guest = self._guest(instance)
        guest.rescued = False
        guest.state = PowerState.RUNNING

    async def migrate_disk_and_power_off(self, instance: InstanceSpec, dest_host: str,
                                         new_flavor: dict[str, Any]) -> None:
        await self._op("migrate_disk_and_power_off")
        if instance["uuid"] in self.guests:
            self.guests[instance["uuid"]].state = PowerState.SHUTDOWN

    async def finish_migration(self, instance: InstanceSpec, resize_instance: bool) -> None:
        await self._op("finish_migration")
        guest = FakeGuest(instance["uuid"], instance.get("name", ""), PowerState.RUNNING,
                          dict(instance.get("flavor") or {}))
        self.guests[guest.uuid] = guest

    async def finish_revert_migration(self, instance: InstanceSpec) -> None:
        await self._op("finish_revert_migration")
        guest = self.guests.get(instance["uuid"])
        if guest is None:
            guest = FakeGuest(instance["uuid"], instance.get("name", ""), PowerState.RUNNING,
                              dict(instance.get("flavor") or {}))
            self.guests[guest.uuid] = guest
        guest.flavor = dict(instance.get("flavor") or {})
        guest.state = PowerState.RUNNING

    async def live_migrate(self, instance: InstanceSpec, dest_host: str) -> None:
        await self._op("live_migrate")
        guest = self.guests.pop(instance["uuid"], None)
        dest = FakeDriver.registry.get(dest_host)
        if guest is not None and dest is not None:
            dest.guests[guest.uuid] = guest

    async def snapshot(self, instance: InstanceSpec) -> str:
        await self._op("snapshot")
        self._guest(instance)
        fd, path = tempfile.mkstemp(prefix="onestack-snap-", suffix=".img")
        with os.fdopen(fd, "wb") as fh:
            fh.write(b"fake snapshot of " + instance["uuid"].encode() + b"\n")
        return path

    async def get_info(self, instance: InstanceSpec) -> PowerState:
        return self._guest(instance).state

    async def attach_interface(self, instance: InstanceSpec, port: dict[str, Any]) -> None:
        await self._op("attach_interface")
        guest = self._guest(instance)
        port_id = str(port.get("port_id") or port.get("id"))
        guest.nics[port_id] = str(port.get("mac_address") or "")
        self._log(guest, f"nic {port_id} added")

    async def detach_interface(self, instance: InstanceSpec, port: dict[str, Any]) -> None:
        await self._op("detach_interface")
        guest = self._guest(instance)
        port_id = str(port.get("port_id") or port.get("id"))
        if guest.nics.pop(port_id, None) is not None:
            self._log(guest, f"nic {port_id} removed")

    async def attach_volume(self, instance: InstanceSpec, volume: dict[str, Any]) -> None:
        await self._op("attach_volume")
        guest = self._guest(instance)
        if not (volume.get("connection_info") or {}).get("driver_volume_type"):
            raise DriverError(f"volume {volume.get('volume_id')} has no connection info")
        guest.disks[str(volume["volume_id"])] = str(volume.get("device") or "")
        self._log(guest, f"disk {volume['volume_id']} added")

    async def detach_volume(self, instance: InstanceSpec, volume: dict[str, Any]) -> None:
        await self._op("detach_volume")
        guest = self._guest(instance)
        if guest.disks.pop(str(volume["volume_id"]), None) is not None:
            self._log(guest, f"disk {volume['volume_id']} removed")

    async def extend_volume(self, instance: InstanceSpec, volume: dict[str, Any],
                            new_size: int) -> None:
        await self._op("extend_volume")
        guest = self._guest(instance)
        if str(volume["volume_id"]) not in guest.disks:
            raise DriverError(f"volume {volume['volume_id']} is not attached")
        self._log(guest, f"disk {volume['volume_id']} resized to {new_size} GiB")

    async def pause_volume_io(self, instance: InstanceSpec, volume: dict[str, Any]) -> bool:
        await self._op("pause_volume_io")
        guest = self._guest(instance)
        if guest.state != PowerState.RUNNING:
            return False
        guest.state = PowerState.PAUSED
        self._log(guest, f"disk {volume.get('volume_id')} I/O paused")
        return True

    async def resume_volume_io(self, instance: InstanceSpec, volume: dict[str, Any]) -> None:
        await self._op("resume_volume_io")
        guest = self._guest(instance)
        if guest.state == PowerState.PAUSED:
            guest.state = PowerState.RUNNING
            self._log(guest, f"disk {volume.get('volume_id')} I/O resumed")

    async def list_instances(self) -> list[str]:
        return list(self.guests)

    async def get_available_resource(self) -> HostResources:
        return HostResources(vcpus=self.vcpus, memory_mb=self.memory_mb,
                             local_gb=self.local_gb, hypervisor_type="fake",
                             hypervisor_version=1000, hypervisor_hostname=self.host,
                             cpu_info={"arch": "x86_64", "model": "fake", "vendor": "onestack",
                                       "topology": {"sockets": 1, "cores": self.vcpus,
                                                    "threads": 1}})

    async def get_console_output(self, instance: InstanceSpec) -> str:
        guest = self._guest(instance)
        return "\n".join(guest.console) + "\n"

    async def get_vnc_console(self, instance: InstanceSpec) -> dict[str, Any]:
        """A minimal VNC server (see ``fakevnc``) shared by this host's guests; only a
        running (or paused) guest has a console."""
        guest = self._guest(instance)
        if guest.state not in (PowerState.RUNNING, PowerState.PAUSED):
            raise DriverError(f"instance {guest.uuid} is not running")
        host, port = await self.vnc.start()
        return {"host": host, "port": port}

    async def cleanup_host(self) -> None:
        await self.vnc.stop()

    async def get_diagnostics(self, instance: InstanceSpec) -> dict[str, Any]:
        guest = self._guest(instance)
        # "libvirt" like Nova's own fake driver: clients validate the driver name.
        return {"state": guest.state.name.lower(), "driver": "libvirt",
                "hypervisor": "fake", "hypervisor_os": "fake",
                "num_cpus": int(guest.flavor.get("vcpus", 1)),
                "memory_details": {"maximum": int(guest.flavor.get("memory_mb", 0)), "used": 0},
                "uptime": 1, "config_drive": False, "num_nics": len(guest.nics),
                "num_disks": 1 + len(guest.disks),
                "cpu_details": [], "nic_details": [], "disk_details": []}
