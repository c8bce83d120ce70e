"""Server actions that keep a guest on its host: power (reboot, stop, start, pause, suspend,
rescue and their reverses), rebuild, snapshot and shelve/unshelve.

Each runs only while the instance is in the task state its API call set, and records the
outcome through ``AgentContext.finish``/``fail``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable
from typing import Any

from onestack.agents.compute_context import AgentContext
from onestack.common.timeutils import utcnow
from onestack.compute import states
from onestack.compute.manager import InstanceDict
from onestack.drivers.hypervisor.base import DriverError, HypervisorDriver, InstanceSpec


async def _power(ctx: AgentContext, uuid: str, task: str, event: str,
                 fn: Callable[[dict[str, Any]], Any], **final: Any) -> None:
    """Run the driver call ``fn`` on the guest of ``uuid`` while it is in ``task``, then record
    ``final`` (or the failure) with ``event``."""
    inst = await ctx.load(uuid)
    if inst is None or inst["task_state"] != task:
        return
    try:
        await fn(ctx.spec(inst))
    except Exception as exc:  # noqa: BLE001
        await ctx.fail(uuid, task, event, exc)
        return
    await ctx.finish(uuid, task, event, task_state=None, **final)


class _OneCall:
    """An action endpoint of ``Actions`` that is one driver call on the guest: it runs, through
    ``_power``, the call that ``pick`` takes from the driver while the instance is in
    ``task`` and then records ``vm_state`` and ``power_state``. Its event is ``compute_``
    followed by the name it is bound to in the class."""

    def __init__(self, task: str,
                 pick: Callable[[HypervisorDriver], Callable[[InstanceSpec], Awaitable[None]]],
                 vm_state: str, power_state: int) -> None:
        self.task = task
        self.pick = pick
        self.vm_state = vm_state
        self.power_state = power_state
        self.event = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.event = f"compute_{name}"

    def __get__(self, actions: Actions, owner: type | None = None
                ) -> Callable[[str], Awaitable[None]]:
        async def endpoint(instance_uuid: str) -> None:
            await _power(actions.ctx, instance_uuid, self.task, self.event,
                         self.pick(actions.ctx.driver), vm_state=self.vm_state,
                         power_state=self.power_state)
        return endpoint


class Actions:
    """Power, rebuild, snapshot and shelve operations of one host's guests (a part of
    ``ComputeAgent``, which mixes it in)."""

    #: The agent's shared state (set by ``ComputeAgent``).
    ctx: AgentContext

    # ------------------------------------------------------------------ power
    async def reboot_instance(self, instance_uuid: str, hard: bool) -> None:
        task = "rebooting_hard" if hard else "rebooting"

        async def run(spec: dict[str, Any]) -> None:
            await self.ctx.driver.reboot(spec, hard)

        await _power(self.ctx, instance_uuid, task, "compute_reboot_instance", run,
                     vm_state=states.ACTIVE, power_state=states.RUNNING)

    async def stop_instance(self, instance_uuid: str) -> None:
        async def run(spec: dict[str, Any]) -> None:
            await self.ctx.driver.power_off(spec, self.ctx.shutdown_timeout)  # clean, then forced

        await _power(self.ctx, instance_uuid, "powering-off", "compute_stop_instance", run,
                     vm_state=states.STOPPED, power_state=states.SHUTDOWN)

    # The actions that are one driver call on the guest: (task state, driver call, vm state
    # and power state once done); each is the endpoint of its name, event ``compute_<name>``.
    start_instance = _OneCall("powering-on", lambda d: d.power_on, states.ACTIVE, states.RUNNING)
    pause_instance = _OneCall("pausing", lambda d: d.pause, states.PAUSED, states.PAUSED_P)
    unpause_instance = _OneCall("unpausing", lambda d: d.unpause, states.ACTIVE, states.RUNNING)
    suspend_instance = _OneCall("suspending", lambda d: d.suspend, states.SUSPENDED,
                                states.SHUTDOWN)
    resume_instance = _OneCall("resuming", lambda d: d.resume, states.ACTIVE, states.RUNNING)
    unrescue_instance = _OneCall("unrescuing", lambda d: d.unrescue, states.ACTIVE,
                                 states.RUNNING)

    async def rescue_instance(self, instance_uuid: str, rescue_image: str | None) -> None:
        async def run(spec: dict[str, Any]) -> None:
            await self.ctx.driver.rescue(spec, (await self.ctx.files(
                {"image": {"id": rescue_image}}))["image"])

        await _power(self.ctx, instance_uuid, "rescuing", "compute_rescue_instance", run,
                     vm_state=states.RESCUED, power_state=states.RUNNING)

    # ------------------------------------------------------------------ rebuild
    async def rebuild_instance(self, instance_uuid: str, image_ref: str,
                               reimage_volume: str | None = None) -> None:
        """Rebuild the guest; with ``reimage_volume`` (a volume-backed server given a new
        image, 2.93) that root volume is re-imaged between the old guest and the new."""
        ctx = self.ctx
        inst = await ctx.load(instance_uuid)
        if inst is None or inst["task_state"] != "rebuilding":
            return
        try:
            await ctx.driver.destroy(ctx.spec(inst))
            if reimage_volume:
                if ctx.volumes is None:
                    raise DriverError("no volume service to re-image the root volume")
                await asyncio.to_thread(ctx.volumes.reimage, reimage_volume, image_ref)
            await ctx.driver.spawn(await ctx.files(ctx.spec(inst)))
            if inst["vm_state"] == states.STOPPED:
                await ctx.driver.power_off(ctx.spec(inst))
        except Exception as exc:  # noqa: BLE001
            await ctx.fail(instance_uuid, "rebuilding", "compute_rebuild_instance", exc,
                           vm_state=states.ERROR)
            return
        stopped = inst["vm_state"] == states.STOPPED
        await ctx.finish(instance_uuid, "rebuilding", "compute_rebuild_instance",
                         task_state=None,
                         vm_state=states.STOPPED if stopped else states.ACTIVE,
                         power_state=states.SHUTDOWN if stopped else states.RUNNING,
                         launched_at=utcnow())

    # ------------------------------------------------------------------ images
    async def _snapshot_to(self, inst: InstanceDict, image_id: str) -> None:
        path = await self.ctx.driver.snapshot(self.ctx.spec(inst))
        try:
            if self.ctx.uploader is None:
                raise RuntimeError("no image service to upload the snapshot to")
            await asyncio.to_thread(self.ctx.uploader, image_id, path)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)

    async def snapshot_instance(self, instance_uuid: str, image_id: str,
                                task_state: str = "image_snapshot") -> None:
        ctx = self.ctx
        inst = await ctx.load(instance_uuid)
        if inst is None or inst["task_state"] != task_state:
            return
        try:
            await self._snapshot_to(inst, image_id)
        except Exception as exc:  # noqa: BLE001
            await ctx.fail(instance_uuid, task_state, "compute_snapshot_instance", exc)
            return
        await ctx.finish(instance_uuid, task_state, "compute_snapshot_instance",
                         task_state=None)

    async def shelve_instance(self, instance_uuid: str, image_id: str | None,
                              offload: bool) -> None:
        ctx = self.ctx
        inst = await ctx.load(instance_uuid)
        if inst is None or inst["task_state"] != "shelving":
            return
        try:
            await ctx.driver.power_off(ctx.spec(inst), ctx.shutdown_timeout)
            if image_id:
                await self._snapshot_to(inst, image_id)
            if offload:
                await ctx.driver.destroy(ctx.spec(inst))
                await asyncio.to_thread(ctx.m.release, instance_uuid)
        except Exception as exc:  # noqa: BLE001
            await ctx.fail(instance_uuid, "shelving", "compute_shelve_instance", exc)
            return
        values: dict[str, Any] = {"vm_state": states.SHELVED_OFFLOADED if offload
                                  else states.SHELVED, "power_state": states.SHUTDOWN}
        if offload:
            values.update(host=None, node=None, power_state=states.NOSTATE)
        await ctx.finish(instance_uuid, "shelving", "compute_shelve_instance",
                         task_state=None, **values)

    async def shelve_offload_instance(self, instance_uuid: str) -> None:
        ctx = self.ctx
        inst = await ctx.load(instance_uuid)
        if inst is None or inst["task_state"] != "shelving_offloading":
            return
        with contextlib.suppress(Exception):
            await ctx.driver.destroy(ctx.spec(inst))
        await asyncio.to_thread(ctx.m.release, instance_uuid)
        await ctx.finish(instance_uuid, "shelving_offloading",
                         "compute_shelve_offload_instance", task_state=None,
                         vm_state=states.SHELVED_OFFLOADED, host=None, node=None,
                         power_state=states.NOSTATE)

    async def unshelve_instance(self, instance_uuid: str, node: str,
                                image_ref: str | None = None) -> None:
        """Start a shelved guest again; an offloaded one is spawned from ``image_ref``, the
        snapshot its shelve took (deleted once the guest runs, as Nova does)."""
        ctx = self.ctx
        inst = await ctx.load(instance_uuid)
        if inst is None or inst["task_state"] != "unshelving":
            return
        try:
            if inst["vm_state"] == states.SHELVED and inst["host"] == ctx.host:
                await ctx.driver.power_on(ctx.spec(inst))
            else:
                spec = ctx.spec(inst, **await ctx.bind(inst))
                if image_ref:
                    spec["image"] = dict(spec["image"], id=image_ref)
                await ctx.driver.spawn(await ctx.files(spec))
        except Exception as exc:  # noqa: BLE001
            await ctx.fail(instance_uuid, "unshelving", "compute_unshelve_instance", exc)
            return
        await ctx.finish(instance_uuid, "unshelving", "compute_unshelve_instance",
                         task_state=None, vm_state=states.ACTIVE, host=ctx.host,
                         node=node, power_state=states.RUNNING)
        shelved = inst["system_metadata"].get("shelved_image_id")
        if shelved and ctx.drop_image is not None:
            await asyncio.to_thread(ctx.m.update_system_metadata, instance_uuid,
                                    shelved_image_id=None)
            await asyncio.to_thread(ctx.drop_image, shelved)
