"""Calls on a guest's devices, answered to the API: its consoles (serial log, VNC), its
diagnostics, and NICs and disks hot-plugged into it.

A device change that fails is reported (``{"error": message}``), not raised: the API then
rolls its side back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from onestack.agents.compute_context import AgentContext
from onestack.drivers.hypervisor.base import DriverError

LOG = logging.getLogger(__name__)


class Devices:
    """Consoles, diagnostics, NICs and disks of one host's guests (a part of ``ComputeAgent``,
    which mixes it in)."""

    #: The agent's shared state (set by ``ComputeAgent``).
    ctx: AgentContext

    # ------------------------------------------------------------------ consoles
    async def get_console_output(self, instance_uuid: str, length: int | None) -> str:
        inst = await self.ctx.load(instance_uuid)
        if inst is None:
            return ""
        text = await self.ctx.driver.get_console_output(self.ctx.spec(inst))
        if length is not None:
            lines = text.splitlines()
            text = "\n".join(lines[-length:] if length > 0 else [])
        return text

    async def get_vnc_console(self, instance_uuid: str) -> dict[str, Any]:
        """Where the guest's VNC server listens: ``{"host", "port"}``, or ``{"error":
        "unavailable"}`` (the driver has no remote console) or ``{"error": "not_ready",
        "message"}`` (the guest has none right now). Asked by the compute API when it makes a
        console token and by the console proxy before it connects."""
        driver = self.ctx.driver
        if not driver.capabilities.supports_remote_console:
            return {"error": "unavailable"}
        inst = await self.ctx.load(instance_uuid)
        if inst is None:
            return {"error": "not_ready", "message": f"Instance {instance_uuid} not found."}
        try:
            info = await driver.get_vnc_console(self.ctx.spec(inst))
        except Exception as exc:  # noqa: BLE001 - QMP/driver failures: no console now
            if not isinstance(exc, DriverError):
                LOG.warning("VNC console of %s: %s", instance_uuid, exc)
            return {"error": "not_ready", "message": str(exc)}
        return {"host": str(info["host"]), "port": int(info["port"])}

    async def get_diagnostics(self, instance_uuid: str) -> dict[str, Any]:
        inst = await self.ctx.load(instance_uuid)
        if inst is None:
            return {}
        return await self.ctx.driver.get_diagnostics(self.ctx.spec(inst))

    # ------------------------------------------------------------------ NICs and disks
    async def attach_interface(self, instance_uuid: str,
                               port: dict[str, Any]) -> dict[str, Any]:
        """Give the guest a NIC on ``port`` (hot-plugged when it runs). Returns ``{}``, or
        ``{"error": message}`` when the driver could not (the API then rolls back)."""
        return await self._change(instance_uuid, port, self.ctx.driver.attach_interface)

    async def detach_interface(self, instance_uuid: str,
                               port: dict[str, Any]) -> dict[str, Any]:
        """Take ``port``'s NIC from the guest; ``{}`` once released, else ``{"error"}``
        (the port then stays attached)."""
        return await self._change(instance_uuid, port, self.ctx.driver.detach_interface)

    async def attach_volume(self, instance_uuid: str,
                            volume: dict[str, Any]) -> dict[str, Any]:
        """Give the guest the disk of ``volume`` (a block device with its connection info;
        hot-plugged when it runs). ``{}``, or ``{"error": message}`` (the API rolls back)."""
        return await self._change(instance_uuid, volume, self.ctx.driver.attach_volume)

    async def detach_volume(self, instance_uuid: str,
                            volume: dict[str, Any]) -> dict[str, Any]:
        """Take the disk of ``volume`` from the guest; ``{}`` once released, else
        ``{"error"}`` (the volume then stays attached)."""
        return await self._change(instance_uuid, volume, self.ctx.driver.detach_volume)

    async def extend_volume(self, instance_uuid: str, volume: dict[str, Any],
                            new_size: int) -> dict[str, Any]:
        """A volume of the guest grew to ``new_size`` GiB: the guest is told (Nova's
        handling of Cinder's ``volume-extended`` event); ``{}`` or ``{"error"}``."""
        return await self._change(instance_uuid, volume,
                                  lambda spec, vol: self.ctx.driver.extend_volume(spec, vol,
                                                                                  new_size))

    async def pause_volume_io(self, instance_uuid: str,
                              volume: dict[str, Any]) -> dict[str, Any]:
        """Hold the guest's writes to ``volume`` (a snapshot is being copied):
        ``{"paused": bool}``, ``{"error"}`` when the driver could not."""
        inst = await self.ctx.load(instance_uuid)
        if inst is None:
            return {"paused": False}
        try:
            return {"paused": bool(await self.ctx.driver.pause_volume_io(self.ctx.spec(inst),
                                                                         volume))}
        except Exception as exc:  # noqa: BLE001 - reported: the snapshot goes on without
            LOG.warning("pausing the I/O of %s: %s", instance_uuid, exc)
            return {"error": str(exc) or type(exc).__name__}

    async def resume_volume_io(self, instance_uuid: str,
                               volume: dict[str, Any]) -> dict[str, Any]:
        return await self._change(instance_uuid, volume, self.ctx.driver.resume_volume_io)

    async def _change(self, instance_uuid: str, device: dict[str, Any],
                      fn: Callable[[dict[str, Any], dict[str, Any]], Any]) -> dict[str, Any]:
        """A NIC or disk change of a guest, its failure reported instead of raised."""
        inst = await self.ctx.load(instance_uuid)
        if inst is None:
            return {"error": f"Instance {instance_uuid} could not be found."}
        try:
            await fn(self.ctx.spec(inst), device)
        except Exception as exc:  # noqa: BLE001 - reported to the API, which rolls back
            LOG.warning("device %s of %s: %s", device.get("id") or device.get("volume_id"),
                        instance_uuid, exc)
            return {"error": str(exc) or type(exc).__name__}
        return {}
