"""Builds and deletes of guests on a compute host.

A build prepares the server's volumes, binds its ports and spawns the guest; a failed spawn
unplaces the instance and sends it back to the scheduler (``reschedule``), unless a fault rule
or its volumes failed it (ERROR, no reschedule). A server deleted while it was being built
loses its guest as soon as the build notices.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from onestack.agents.compute_context import AgentContext
from onestack.common.context import RequestContext
from onestack.common.timeutils import utcnow
from onestack.compute import block_devices, states
from onestack.compute.boot_request import BootRequest
from onestack.compute.manager import InstanceDict
from onestack.compute.volumes import release_all
from onestack.drivers.hypervisor.base import DriverError

LOG = logging.getLogger(__name__)


class Builds:
    """``build_and_run_instance`` and ``terminate_instance`` of one host (a part of
    ``ComputeAgent``, which mixes it in)."""

    #: The agent's shared state (set by ``ComputeAgent``).
    ctx: AgentContext

    async def build_and_run_instance(self, instance_uuid: str, request: dict[str, Any],
                                     tried: list[str], attempt: int) -> None:
        ctx = self.ctx
        boot = BootRequest.from_wire(request)
        base = boot.instance
        if base is not None and attempt == 1:
            # First attempt: the API sent the instance (saves reading it); finish below
            # only writes if it is still spawning, and a racing delete is cleaned up.
            if not await ctx.m.db.run(ctx.m.spawning_on, instance_uuid, ctx.host):
                return  # delivered twice (or deleted/failed meanwhile)
            inst: InstanceDict | None = dict(
                base, uuid=instance_uuid, name=boot.names.get(
                    instance_uuid, ""))
        else:
            inst = await ctx.load(instance_uuid)
            if inst is None or inst["task_state"] != "spawning" or inst["host"] != ctx.host:
                return
        assert inst is not None
        rule = ctx.faults.match_build(ctx.host) if ctx.faults is not None else None
        if rule is not None:
            # No reschedule: the rule says this build ends in ERROR.
            await ctx.fail(instance_uuid, "spawning", "compute_build_and_run_instance",
                           RuntimeError(rule.message or f"Build failed: injected fault "
                                        f"(onestack fault rule {rule.id})."),
                           vm_state=states.ERROR)
            return
        if ctx.volumes is not None and block_devices.of(inst):
            try:
                inst["system_metadata"] = dict(
                    inst["system_metadata"],
                    block_devices=await asyncio.to_thread(self._prepare_volumes, inst))
            except Exception as exc:  # noqa: BLE001 - no reschedule: the volumes are the cause
                await ctx.fail(instance_uuid, "spawning", "compute_build_and_run_instance",
                               exc, vm_state=states.ERROR)
                return
        try:
            nics = await ctx.bind(inst)
            await ctx.driver.spawn(await ctx.files(
                ctx.spec(inst, admin_pass=boot.admin_pass, **nics)))
        except Exception as exc:  # noqa: BLE001 - reschedule on any build failure
            LOG.warning("build of %s on %s failed: %s", instance_uuid, ctx.host, exc)
            if not await asyncio.to_thread(ctx.m.unplace, instance_uuid, ctx.host):
                # No longer ours to retry (deleted meanwhile): only its guest goes.
                with contextlib.suppress(Exception):
                    await self._cleanup_if_deleted(instance_uuid)
                return
            with contextlib.suppress(Exception):
                await ctx.driver.destroy(ctx.spec(inst))
            await asyncio.to_thread(ctx.m.record_event, instance_uuid,
                                    "compute_build_and_run_instance", ctx.host, str(exc))
            await ctx.bus.cast("scheduler", "reschedule", instance_uuid=instance_uuid,
                               request=boot.to_wire(), tried=tried, attempt=attempt,
                               error=str(exc))
            return
        ok = await ctx.finish(instance_uuid, "spawning", "compute_build_and_run_instance",
                              vm_state=states.ACTIVE, task_state=None,
                              power_state=states.RUNNING, launched_at=utcnow(),
                              progress=100)
        if not ok:
            # Deleted while spawning: the guest must not outlive its record.
            await self._cleanup_if_deleted(instance_uuid)

    def _prepare_volumes(self, inst: InstanceDict) -> list[dict[str, Any]]:
        """The server's volumes ready for its guest (Nova's ``_prep_block_device``): new
        ones made (from an image, a snapshot or empty), each reserved, connected for this
        host and completed; returns the block devices as recorded (blocking)."""
        m, vols = self.ctx.m, self.ctx.volumes
        store = block_devices.BlockDevices(m)
        uuid = inst["uuid"]
        current = m.get_instance(None, uuid)  # the API may have reserved some
        for bdm in block_devices.of(current):
            vid = bdm.get("volume_id")
            if not vid:
                src = bdm.get("source_type")
                made = vols.create(inst["project_id"], inst["user_id"],
                                   int(bdm.get("volume_size") or 1),
                                   f"{inst['name'] or uuid}-{src}-volume",
                                   image_id=bdm["uuid"] if src == "image" else None,
                                   snapshot_id=bdm["uuid"] if src == "snapshot" else None,
                                   volume_type=bdm.get("volume_type"))
                vid = made["id"]
                store.update(uuid, bdm["bdm_uuid"], by="bdm_uuid", volume_id=vid)
                if made["status"] != "available":
                    raise DriverError(f"Volume {vid} did not finish being created: its "
                                      f"status is {made['status']}.")
            aid = bdm.get("attachment_id")
            if not aid:
                aid = vols.reserve(RequestContext.admin(), vid, uuid)
                store.update(uuid, vid, attachment_id=aid)
            device = bdm.get("device")
            if bdm.get("boot_index") == 0:
                device = "/dev/vda"
            elif not device:
                device = block_devices.device_name(m.get_instance(None, uuid), None)
            info = vols.connect(aid, self.ctx.host, device)
            vols.complete(aid)
            store.update(uuid, vid, device=device, connection_info=info,
                         mode=(info.get("data") or {}).get("access_mode", "rw"))
        return block_devices.of(m.get_instance(None, uuid))

    async def _cleanup_if_deleted(self, uuid: str) -> None:
        ctx = self.ctx
        inst = await asyncio.to_thread(ctx.m.get_instance, None, uuid, True)
        if inst["deleted"] or inst["task_state"] == "deleting":
            with contextlib.suppress(Exception):
                await ctx.driver.destroy(ctx.spec(inst))
            if not inst["deleted"]:
                await asyncio.to_thread(ctx.m.finish_delete, uuid)

    async def terminate_instance(self, instance_uuid: str) -> None:
        ctx = self.ctx
        inst = await ctx.m.db.run(ctx.load_any, instance_uuid)
        if inst is None:
            return
        try:
            await ctx.driver.destroy(ctx.spec(inst))
        except Exception as exc:  # noqa: BLE001
            await ctx.fail(instance_uuid, "deleting", "compute_terminate_instance", exc,
                           vm_state=states.ERROR)
            return
        if ctx.volumes is not None and block_devices.of(inst):
            await asyncio.to_thread(release_all, ctx.volumes, instance_uuid,
                                    block_devices.of(inst))
        await ctx.m.db.run(ctx.m.finish_delete, instance_uuid)
