"""The hypervisor driver contract.

A driver runs guests on ONE host for the compute agent. Every method is a coroutine (drivers
that block wrap their work in ``asyncio.to_thread``). Instances are described to drivers by a
plain JSON document (``InstanceSpec``, a dict) so a driver never sees database rows:

``{"uuid", "name", "flavor": {"vcpus", "memory_mb", "root_gb", "ephemeral_gb", "swap",
"extra_specs"}, "image": {"id", "path" (local file or None), "properties"}, "key_data",
"user_data", "metadata", "admin_pass", "networks": [...], "config_drive": bool}``.

Image files are resolved by the agent: ``image["path"]`` is the local file of the image's
data (None when the image has none), and for AKI/ARI-style images (``kernel_id`` /
``ramdisk_id`` properties) ``image["kernel_path"]`` / ``image["ramdisk_path"]`` are the local
files of those images; ``image["disk_format"]`` and ``image["checksum"]`` help drivers cache
bases (the QEMU driver falls back to ``DATA/images/<id>`` of the local file store). The
optional ``hostname``, ``key_name``, ``project_id``, ``launch_index``,
``availability_zone`` and ``reservation_id`` feed the config drive (see
``onestack.metadata.content.build_metadata``); ``networks`` are port dicts (``id``,
``mac_address``, ``network_id``, ``mtu``, ``fixed_ips``, ``subnets``) — the QEMU driver
makes tap ``"tap" + id[:11]`` for each. Drivers with a remote console
(``capabilities.supports_remote_console``) offer ``get_vnc_console(instance) -> {"host",
"port"}`` (loopback address for the console proxy, see ``onestack.console``).

Semantics every driver (and the shared driver test battery) follows:

* ``spawn`` creates and starts the guest; on return the guest is RUNNING. It raises
  ``DriverError`` (anything else is treated the same) when the guest cannot be built; the
  agent then cleans up with ``destroy`` and reschedules.
* ``destroy`` is idempotent: destroying an unknown instance succeeds.
* power operations on an instance the driver does not know raise ``InstanceNotFound``.
* ``get_info`` returns the current ``PowerState`` of a guest; ``list_instances`` the uuids
  the driver currently has (the agent reconciles the database against it). A guest
  ``suspend`` saved to disk is ``SHUTDOWN`` (nothing runs; libvirt reports a managed-saved
  domain the same way, and Nova shows power_state 4 for a SUSPENDED server); ``SUSPENDED``
  is only a guest that put itself to sleep (ACPI S3) while its process runs.
* ``power_off(instance, timeout)`` asks the guest to shut down (ACPI) and waits up to
  ``timeout`` s before forcing it off; the agent's stop passes ``compute_shutdown_timeout``.
* ``snapshot`` returns the path of a file holding the disk image (the agent uploads it to the
  image service and deletes the file afterwards).
* ``attach_interface(instance, port)`` / ``detach_interface(instance, port)`` add or remove one
  NIC (``port`` is a port dict as in ``networks``). On a running (or paused) guest the NIC is
  hot-plugged: on return of ``attach_interface`` the guest has the device; ``detach_interface``
  returns once the guest released it (``DriverError`` when it did not within the driver's
  timeout: the NIC stays). On a stopped guest only the next start sees the change. Either
  way the driver's own record of the guest's NICs follows, so later starts keep them.
  Detaching a NIC the guest does not have succeeds.
* ``attach_volume(instance, volume)`` / ``detach_volume(instance, volume)`` do the same for
  one volume's disk. ``volume`` is a block device (``compute/volumes.py``): ``volume_id``,
  ``device``, ``mode`` (``rw``/``ro``) and the volume service's ``connection_info``
  (``{"driver_volume_type": "file", "data": {"path", "format", ...}}`` for file-backed
  volumes); the guest sees the disk with the serial ``volume_id[:20]``
  (``/dev/disk/by-id/virtio-<serial>``). The instance spec's ``block_devices`` lists the
  volumes a guest has when it is spawned. Attaching a volume the guest already has and
  detaching one it does not have succeed. ``extend_volume(instance, volume, new_size)``
  tells a running guest that the volume grew to ``new_size`` GiB (a stopped one sees it
  at its next start). ``pause_volume_io(instance, volume)`` holds the guest's writes to the
  volume, flushed, while the volume service copies it (a snapshot of an attached volume),
  returning whether it paused anything; ``resume_volume_io`` lets them go on.
"""

from __future__ import annotations

import abc
import enum
from dataclasses import dataclass, field
from typing import Any

InstanceSpec = dict[str, Any]


class PowerState(enum.IntEnum):
    """Nova's power states (the numbers clients show as ``OS-EXT-STS:power_state``)."""

    NOSTATE = 0
    RUNNING = 1
    PAUSED = 3
    SHUTDOWN = 4
    CRASHED = 6
    SUSPENDED = 7


class DriverError(Exception):
    """A driver operation failed; the message is safe to show in an instance fault."""


class InstanceNotFound(DriverError):
    """The driver has no such instance."""


@dataclass
class HostResources:
    """What a host offers (reported to the compute node record / placement inventory)."""

    vcpus: int
    memory_mb: int
    local_gb: int
    hypervisor_type: str
    hypervisor_version: int
    hypervisor_hostname: str
    host_ip: str = "127.0.0.1"
    cpu_info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Capabilities:
    """What a driver can do; the API refuses (409/400) what the host's driver cannot."""

    supports_pause: bool = True
    supports_suspend: bool = True
    supports_rescue: bool = True
    supports_snapshot: bool = True
    supports_resize: bool = True
    supports_live_migration: bool = True
    supports_console_output: bool = True
    supports_remote_console: bool = False


class HypervisorDriver(abc.ABC):
    """Base class of hypervisor drivers (see the module docstring for the semantics)."""

    #: Name reported as ``hypervisor_type``.
    hypervisor_type = "unknown"
    capabilities = Capabilities()

    def __init__(self, host: str) -> None:
        self.host = host

    async def init_host(self) -> None:
        """Prepare the host (called once when the agent starts)."""
        return None

    @abc.abstractmethod
    async def spawn(self, instance: InstanceSpec) -> None:
        """Create and start the guest (RUNNING on return)."""

    @abc.abstractmethod
    async def destroy(self, instance: InstanceSpec) -> None:
        """Stop the guest and delete its disks (idempotent)."""

    @abc.abstractmethod
    async def reboot(self, instance: InstanceSpec, hard: bool) -> None:
        """Restart the guest (``hard``: reset instead of an ACPI restart)."""

    @abc.abstractmethod
    async def power_off(self, instance: InstanceSpec, timeout: float = 0) -> None:
        """Stop the guest (clean shutdown within ``timeout`` s, then forced)."""

    @abc.abstractmethod
    async def power_on(self, instance: InstanceSpec) -> None:
        """Start a stopped guest."""

    async def pause(self, instance: InstanceSpec) -> None:
        """Freeze the guest's vCPUs in memory."""
        raise DriverError("pause is not supported by this driver")

    async def unpause(self, instance: InstanceSpec) -> None:
        """Resume a paused guest."""
        raise DriverError("unpause is not supported by this driver")

    async def suspend(self, instance: InstanceSpec) -> None:
        """Save the guest's memory to disk and stop it."""
        raise DriverError("suspend is not supported by this driver")

    async def resume(self, instance: InstanceSpec) -> None:
        """Restore a suspended guest."""
        raise DriverError("resume is not supported by this driver")

    async def rescue(self, instance: InstanceSpec, rescue_image: dict[str, Any]) -> None:
        """Boot the guest from ``rescue_image`` with its own disk attached second."""
        raise DriverError("rescue is not supported by this driver")

    async def unrescue(self, instance: InstanceSpec) -> None:
        """Boot the guest from its own disk again."""
        raise DriverError("unrescue is not supported by this driver")

    async def migrate_disk_and_power_off(self, instance: InstanceSpec, dest_host: str,
                                         new_flavor: dict[str, Any]) -> None:
        """Resize/migrate, source side: stop the guest and hand its disk over."""
        return None

    async def finish_migration(self, instance: InstanceSpec, resize_instance: bool) -> None:
        """Resize/migrate, destination side: start the guest with the new flavor."""
        await self.spawn(instance)

    async def finish_revert_migration(self, instance: InstanceSpec) -> None:
        """Revert a resize: restart the guest with its old flavor on the source."""
        await self.spawn(instance)

    async def confirm_migration(self, instance: InstanceSpec) -> None:
        """Confirm a resize: drop what the source kept for a revert."""
        return None

    async def live_migrate(self, instance: InstanceSpec, dest_host: str) -> None:
        """Move a running guest to ``dest_host``."""
        raise DriverError("live migration is not supported by this driver")

    @abc.abstractmethod
    async def snapshot(self, instance: InstanceSpec) -> str:
        """Write the guest's disk image to a file; return its path."""

    @abc.abstractmethod
    async def get_info(self, instance: InstanceSpec) -> PowerState:
        """The guest's power state (``InstanceNotFound`` when unknown)."""

    @abc.abstractmethod
    async def list_instances(self) -> list[str]:
        """The uuids of every guest this driver has on the host."""

    @abc.abstractmethod
    async def get_available_resource(self) -> HostResources:
        """The host's capacity."""

    async def attach_interface(self, instance: InstanceSpec, port: dict[str, Any]) -> None:
        """Give the guest one more NIC on ``port`` (hot-plugged when it runs)."""
        raise DriverError("attaching interfaces is not supported by this driver")

    async def detach_interface(self, instance: InstanceSpec, port: dict[str, Any]) -> None:
        """Take the NIC of ``port`` from the guest (hot-unplugged when it runs)."""
        raise DriverError("detaching interfaces is not supported by this driver")

    async def attach_volume(self, instance: InstanceSpec, volume: dict[str, Any]) -> None:
        """Give the guest the disk of ``volume`` (hot-plugged when it runs)."""
        raise DriverError("attaching volumes is not supported by this driver")

    async def detach_volume(self, instance: InstanceSpec, volume: dict[str, Any]) -> None:
        """Take the disk of ``volume`` from the guest (hot-unplugged when it runs)."""
        raise DriverError("detaching volumes is not supported by this driver")

    async def extend_volume(self, instance: InstanceSpec, volume: dict[str, Any],
                            new_size: int) -> None:
        """Tell the guest that ``volume`` grew to ``new_size`` GiB."""
        raise DriverError("extending attached volumes is not supported by this driver")

    async def pause_volume_io(self, instance: InstanceSpec, volume: dict[str, Any]) -> bool:
        """Hold (flushed) the guest's writes to ``volume``; whether anything was paused."""
        return False

    async def resume_volume_io(self, instance: InstanceSpec, volume: dict[str, Any]) -> None:
        """Let the writes paused by ``pause_volume_io`` go on."""
        return None

    async def get_console_output(self, instance: InstanceSpec) -> str:
        """The guest's serial console log."""
        raise DriverError("console output is not supported by this driver")

    async def get_vnc_console(self, instance: InstanceSpec) -> dict[str, Any]:
        """Where the guest's VNC server listens, ``{"host", "port"}`` (a loopback address
        the console proxy connects to). Drivers with ``supports_remote_console`` implement
        it; it raises ``DriverError`` when the guest has no console right now."""
        raise DriverError("remote consoles are not supported by this driver")

    async def cleanup_host(self) -> None:
        """Release what the driver holds in this process (the agent is stopping). Guests
        keep running."""
        return None

    async def get_diagnostics(self, instance: InstanceSpec) -> dict[str, Any]:
        """Driver-specific diagnostics of a guest."""
        return {}
