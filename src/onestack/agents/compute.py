"""The compute agent: runs guests on one host through a hypervisor driver.

It consumes the bus topic ``compute.<host>``. Each public coroutine method of
``ComputeAgent`` is a bus endpoint taking JSON arguments (instance uuids, flavors, host names);
it hands the work to the collaborator of its kind, all sharing one ``AgentContext``
(``compute_context.py``): builds and deletes (``compute_build.py``), actions on a guest
(``compute_actions.py``), moves between hosts (``compute_moves.py``), calls on a guest's
devices (``compute_devices.py``) and reconciliation (``compute_reconcile.py``). Each reads
the instance from the database, runs the driver and writes the outcome through
``ComputeManager``.

``ComputeAgentPool`` (``pool.py``) registers the agents, serves their topics and runs the
heartbeats and periodic reconciliation.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Any

from onestack.agents.compute_actions import Actions
from onestack.agents.compute_build import Builds
from onestack.agents.compute_context import AgentContext, ImageUploader
from onestack.agents.compute_devices import Devices
from onestack.agents.compute_moves import Moves
from onestack.agents.compute_reconcile import Reconciler
from onestack.bus.base import Bus
from onestack.common.timeutils import utcnow
from onestack.compute.manager import ComputeManager
from onestack.compute.network import ComputeNetwork
from onestack.compute.volumes import ComputeVolumes
from onestack.drivers.hypervisor.base import HypervisorDriver


class ComputeAgent:
    """Bus endpoint of one compute host (see the module docstring)."""

    def __init__(self, host: str, driver: HypervisorDriver, manager: ComputeManager, bus: Bus,
                 uploader: ImageUploader | None = None, build_timeout: float = 600.0, *,
                 shutdown_timeout: float = 60.0, network: ComputeNetwork | None = None,
                 volumes: ComputeVolumes | None = None,
                 drop_image: Callable[[str], None] | None = None,
                 image_files: Callable[[dict[str, Any]], dict[str, Any]] | None = None
                 ) -> None:
        """The options are those of ``AgentContext``, which documents them."""
        #: What the collaborators share (the pool sets its ``faults``).
        self.ctx = AgentContext(host, driver, manager, bus, uploader, build_timeout,
                                shutdown_timeout=shutdown_timeout, network=network,
                                volumes=volumes, drop_image=drop_image,
                                image_files=image_files)
        self._builds = Builds(self.ctx)
        self._actions = Actions(self.ctx)
        self._moves = Moves(self.ctx)
        self._devices = Devices(self.ctx)
        self._reconciler = Reconciler(self.ctx)

    @property
    def host(self) -> str:
        return self.ctx.host

    @property
    def driver(self) -> HypervisorDriver:
        return self.ctx.driver

    # ------------------------------------------------------------------ lifecycle
    async def register(self) -> None:
        """Report the host's service and capacity (create or refresh the records)."""
        ctx = self.ctx
        await ctx.driver.init_host()
        res = await ctx.driver.get_available_resource()
        caps = dataclasses.asdict(ctx.driver.capabilities)
        payload = {"vcpus": res.vcpus, "memory_mb": res.memory_mb, "local_gb": res.local_gb,
                   "hypervisor_type": res.hypervisor_type,
                   "hypervisor_version": res.hypervisor_version,
                   "hypervisor_hostname": res.hypervisor_hostname, "host_ip": res.host_ip,
                   "cpu_info": res.cpu_info, "capabilities": caps}
        await asyncio.to_thread(ctx.m.register_host, ctx.host, payload)
        ctx.started_at = utcnow()

    async def resume_guests(self) -> int:
        return await self._reconciler.resume_guests()

    async def reconcile(self, on_start: bool = False) -> dict[str, int]:
        return await self._reconciler.reconcile(on_start)

    async def ping(self) -> str:
        return self.ctx.host

    # ------------------------------------------------------------------ build / delete
    async def build_and_run_instance(self, instance_uuid: str, request: dict[str, Any],
                                     tried: list[str], attempt: int) -> None:
        await self._builds.build_and_run_instance(instance_uuid, request, tried, attempt)

    async def terminate_instance(self, instance_uuid: str) -> None:
        await self._builds.terminate_instance(instance_uuid)

    # ------------------------------------------------------------------ actions
    async def reboot_instance(self, instance_uuid: str, hard: bool) -> None:
        await self._actions.reboot_instance(instance_uuid, hard)

    async def stop_instance(self, instance_uuid: str) -> None:
        await self._actions.stop_instance(instance_uuid)

    async def start_instance(self, instance_uuid: str) -> None:
        await self._actions.start_instance(instance_uuid)

    async def pause_instance(self, instance_uuid: str) -> None:
        await self._actions.pause_instance(instance_uuid)

    async def unpause_instance(self, instance_uuid: str) -> None:
        await self._actions.unpause_instance(instance_uuid)

    async def suspend_instance(self, instance_uuid: str) -> None:
        await self._actions.suspend_instance(instance_uuid)

    async def resume_instance(self, instance_uuid: str) -> None:
        await self._actions.resume_instance(instance_uuid)

    async def rescue_instance(self, instance_uuid: str, rescue_image: str | None) -> None:
        await self._actions.rescue_instance(instance_uuid, rescue_image)

    async def unrescue_instance(self, instance_uuid: str) -> None:
        await self._actions.unrescue_instance(instance_uuid)

    async def rebuild_instance(self, instance_uuid: str, image_ref: str,
                               reimage_volume: str | None = None) -> None:
        await self._actions.rebuild_instance(instance_uuid, image_ref, reimage_volume)

    async def snapshot_instance(self, instance_uuid: str, image_id: str,
                                task_state: str = "image_snapshot") -> None:
        await self._actions.snapshot_instance(instance_uuid, image_id, task_state)

    async def shelve_instance(self, instance_uuid: str, image_id: str | None,
                              offload: bool) -> None:
        await self._actions.shelve_instance(instance_uuid, image_id, offload)

    async def shelve_offload_instance(self, instance_uuid: str) -> None:
        await self._actions.shelve_offload_instance(instance_uuid)

    async def unshelve_instance(self, instance_uuid: str, node: str,
                                image_ref: str | None = None) -> None:
        await self._actions.unshelve_instance(instance_uuid, node, image_ref)

    # ------------------------------------------------------------------ moves
    async def resize_instance(self, instance_uuid: str, migration_uuid: str, dest_host: str,
                              dest_node: str, new_flavor: dict[str, Any]) -> None:
        await self._moves.resize_instance(instance_uuid, migration_uuid, dest_host, dest_node,
                                          new_flavor)

    async def finish_resize(self, instance_uuid: str, migration_uuid: str, dest_node: str,
                            new_flavor: dict[str, Any]) -> None:
        await self._moves.finish_resize(instance_uuid, migration_uuid, dest_node, new_flavor)

    async def confirm_resize(self, instance_uuid: str, migration_uuid: str,
                             source_host: str) -> None:
        await self._moves.confirm_resize(instance_uuid, migration_uuid, source_host)

    async def revert_resize(self, instance_uuid: str, migration_uuid: str,
                            source_host: str, source_node: str) -> None:
        await self._moves.revert_resize(instance_uuid, migration_uuid, source_host,
                                        source_node)

    async def finish_revert_resize(self, instance_uuid: str, migration_uuid: str,
                                   source_node: str) -> None:
        await self._moves.finish_revert_resize(instance_uuid, migration_uuid, source_node)

    async def live_migrate(self, instance_uuid: str, migration_uuid: str, dest_host: str,
                           dest_node: str) -> None:
        await self._moves.live_migrate(instance_uuid, migration_uuid, dest_host, dest_node)

    # ------------------------------------------------------------------ devices (calls)
    async def get_console_output(self, instance_uuid: str, length: int | None) -> str:
        return await self._devices.get_console_output(instance_uuid, length)

    async def get_vnc_console(self, instance_uuid: str) -> dict[str, Any]:
        return await self._devices.get_vnc_console(instance_uuid)

    async def get_diagnostics(self, instance_uuid: str) -> dict[str, Any]:
        return await self._devices.get_diagnostics(instance_uuid)

    async def attach_interface(self, instance_uuid: str,
                               port: dict[str, Any]) -> dict[str, Any]:
        return await self._devices.attach_interface(instance_uuid, port)

    async def detach_interface(self, instance_uuid: str,
                               port: dict[str, Any]) -> dict[str, Any]:
        return await self._devices.detach_interface(instance_uuid, port)

    async def attach_volume(self, instance_uuid: str,
                            volume: dict[str, Any]) -> dict[str, Any]:
        return await self._devices.attach_volume(instance_uuid, volume)

    async def detach_volume(self, instance_uuid: str,
                            volume: dict[str, Any]) -> dict[str, Any]:
        return await self._devices.detach_volume(instance_uuid, volume)

    async def extend_volume(self, instance_uuid: str, volume: dict[str, Any],
                            new_size: int) -> dict[str, Any]:
        return await self._devices.extend_volume(instance_uuid, volume, new_size)

    async def pause_volume_io(self, instance_uuid: str,
                              volume: dict[str, Any]) -> dict[str, Any]:
        return await self._devices.pause_volume_io(instance_uuid, volume)

    async def resume_volume_io(self, instance_uuid: str,
                               volume: dict[str, Any]) -> dict[str, Any]:
        return await self._devices.resume_volume_io(instance_uuid, volume)
