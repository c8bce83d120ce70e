"""What every operation of a compute agent shares: its host, driver, services, and how it reads
and writes instance records.

An ``AgentContext`` is made by ``ComputeAgent`` and read by each of its mixins
(builds, actions, moves, devices, reconciliation). Writes go through ``ComputeManager``:
``finish`` only writes when the instance is still in the task state the operation started
from, so a delete that raced an operation wins.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

from onestack.bus.base import Bus
from onestack.compute import block_devices
from onestack.compute.manager import ComputeManager, InstanceDict
from onestack.compute.network import ComputeNetwork
from onestack.compute.volumes import ComputeVolumes
from onestack.drivers.hypervisor.base import HypervisorDriver
from onestack.faults.rules import FaultTable

LOG = logging.getLogger(__name__)

#: ``upload(image_id, path)``: store a snapshot file as the data of a queued image.
ImageUploader = Callable[[str, str], None]


@dataclasses.dataclass
class AgentContext:
    """The state the mixins of a compute agent share (see the module docstring)."""

    host: str
    driver: HypervisorDriver
    m: ComputeManager
    bus: Bus
    uploader: ImageUploader | None = None
    #: Seconds a build may take before reconciliation fails it.
    build_timeout: float = 600.0
    #: Seconds a stop waits for the guest to shut down cleanly (Nova's shutdown_timeout).
    shutdown_timeout: float = 60.0
    #: The network service seen from compute (``compute/network.py``: ``bind``); None:
    #: guests get no ports.
    network: ComputeNetwork | None = None
    #: The volume service seen from compute (``compute/volumes.py``); None: no volumes.
    volumes: ComputeVolumes | None = None
    #: ``drop(image_id)``: delete an image compute made (a shelved server's snapshot once it
    #: runs again); None: kept.
    drop_image: Callable[[str], None] | None = None
    #: ``resolve(spec image) -> image`` with its local files (``path``, ``kernel_path``,
    #: ``ramdisk_path``, see drivers/hypervisor/imagefiles.py); None: drivers get ids only.
    image_files: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    #: The cloud's fault rules (``onestack.faults``): ``build`` rules fail builds here;
    #: None: no fault injection.
    faults: FaultTable | None = None
    #: When the agent registered (reconciliation on start fails builds older than this).
    started_at: dt.datetime | None = None

    async def load(self, uuid: str) -> InstanceDict | None:
        """The instance, or None when it is deleted (or was meanwhile)."""
        try:
            return await self.m.db.run(self.m.get_instance, None, uuid)
        except Exception:  # noqa: BLE001 - deleted meanwhile
            return None

    def load_any(self, uuid: str) -> InstanceDict | None:
        """The instance even when deleted; None when there is no such record (blocking)."""
        try:
            return self.m.get_instance(None, uuid, True)
        except Exception:  # noqa: BLE001
            return None

    @staticmethod
    def spec(inst: InstanceDict, **extra: Any) -> dict[str, Any]:
        """The driver's view of an instance (see drivers/hypervisor/base.py)."""
        return {"uuid": inst["uuid"], "name": inst["name"], "flavor": inst["flavor"],
                # A volume-backed guest boots with the kernel of its root's image, if any.
                "image": {"id": inst["image_ref"] or inst["system_metadata"].get(
                    "boot_image"),
                          "properties": inst["system_metadata"].get("image_properties", {})},
                "key_data": inst["key_data"], "user_data": inst["user_data"],
                "metadata": inst["metadata"], "config_drive": bool(inst["config_drive"]),
                "networks": inst["system_metadata"].get("networks", []),
                "block_devices": block_devices.of(inst),
                "admin_pass": None, **extra}

    async def files(self, spec: dict[str, Any]) -> dict[str, Any]:
        """``spec`` with the local files of its image resolved (for spawning drivers)."""
        if self.image_files is not None and spec["image"].get("id"):
            spec["image"] = await asyncio.to_thread(self.image_files, spec["image"])
        return spec

    async def finish(self, uuid: str, expected: Any, event: str, **values: Any) -> bool:
        """Record an operation's outcome if the instance is still in task state
        ``expected``; whether it was."""
        return bool(await self.m.db.run(self.m.finish_task, uuid, expected, event=event,
                                        **values))

    async def fail(self, uuid: str, expected: Any, event: str, exc: BaseException,
                   **values: Any) -> None:
        """Record that an operation failed with ``exc`` (its task state cleared)."""
        LOG.warning("%s of %s on %s failed: %s", event, uuid, self.host, exc)
        await asyncio.to_thread(self.m.finish_task, uuid, expected, event=event,
                                error=str(exc) or type(exc).__name__, task_state=None,
                                **values)

    async def bind(self, inst: InstanceDict, host: str | None = None) -> dict[str, Any]:
        """Bind the instance's ports to ``host`` (this one) and record the port cache
        (``system_metadata.networks``); returns ``{"networks": ports}`` for ``spec`` (empty
        when the instance has no ports)."""
        sm = inst["system_metadata"]
        if self.network is None or not (sm.get("port_count") or sm.get("networks")):
            return {}
        nics = await asyncio.to_thread(self.network.bind, inst["uuid"], host or self.host,
                                       sm.get("nic_order"))
        await asyncio.to_thread(self.m.update_system_metadata, inst["uuid"], networks=nics,
                                port_cache=True)
        return {"networks": nics}
