"""The compute agent: runs guests on one host through a hypervisor driver.

It consumes the bus topic ``compute.<host>``. Each public coroutine method of
``ComputeAgent`` is a bus endpoint taking JSON arguments (instance uuids, flavors, host names).
The endpoints of each kind come from a mixin of their own, all reading one ``AgentContext``
(``compute_context.py``) as ``self.ctx``: builds and deletes (``compute_build.py``), actions
on a guest (``compute_actions.py``), moves between hosts (``compute_moves.py``), calls on a
guest's devices (``compute_devices.py``) and reconciliation (``compute_reconcile.py``). Each reads
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


class ComputeAgent(Builds, Actions, Moves, Devices, Reconciler):
    """Bus endpoint of one compute host (see the module docstring)."""

    def __init__(self, host: str, driver: HypervisorDriver, manager: ComputeManager, bus: Bus,
                 uploader: ImageUploader | None = None, build_timeout: float = 600.0, *,
                 shutdown_timeout: float = 60.0, network: ComputeNetwork | None = None,
                 volumes: ComputeVolumes | None = None,
                 drop_image: Callable[[str], None] | None = None,
                 image_files: Callable[[dict[str, Any]], dict[str, Any]] | None = None
                 ) -> None:
        """The options are those of ``AgentContext``, which documents them."""
        #: What the mixins share (the pool sets its ``faults``).
        self.ctx = AgentContext(host, driver, manager, bus, uploader, build_timeout,
                                shutdown_timeout=shutdown_timeout, network=network,
                                volumes=volumes, drop_image=drop_image,
                                image_files=image_files)

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

    async def ping(self) -> str:
        return self.ctx.host
