"""Bringing a compute host's database records and its driver's guests into line: on start
(after a crash or a snapshot load) and periodically (``pool.py`` runs both).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from typing import Any

from onestack.agents.compute_context import AgentContext
from onestack.common.timeutils import utcnow
from onestack.compute import states
from onestack.drivers.hypervisor.base import InstanceNotFound, PowerState

LOG = logging.getLogger(__name__)

#: Task states of operations that simply ended with the process that ran them: on start
#: the task state is cleared and the power state taken from the driver. (Moves, rebuilds and
#: builds are not in here: they have their own recovery.)
_RESTARTED_TASKS = frozenset({
    "powering-off", "powering-on", "rebooting", "reboot_pending", "reboot_started",
    "rebooting_hard", "reboot_pending_hard", "reboot_started_hard", "pausing", "unpausing",
    "suspending", "resuming", "rescuing", "unrescuing", "image_snapshot",
    "image_snapshot_pending", "image_pending_upload", "image_uploading", "image_backup",
    "updating_password"})


class Reconciler:
    """Start-up and periodic reconciliation of one host (a part of ``ComputeAgent``, which
    mixes it in)."""

    #: The agent's shared state (set by ``ComputeAgent``).
    ctx: AgentContext

    async def resume_guests(self) -> int:
        """Start again the guest of every instance recorded ACTIVE and running whose guest
        does not run (after a snapshot load: Nova's ``resume_guests_state_on_host_boot``):
        a guest the driver still knows is powered on, one it does not is spawned from the
        instance's record. Returns how many were started."""
        ctx = self.ctx
        have = set(await ctx.driver.list_instances())
        started = 0
        for inst in await asyncio.to_thread(ctx.m.instances_on_host, ctx.host):
            if (inst["vm_state"] != states.ACTIVE or inst["task_state"] is not None
                    or inst["power_state"] != states.RUNNING):
                continue
            try:
                spec = await ctx.files(ctx.spec(inst))
                if inst["uuid"] in have:
                    if int(await ctx.driver.get_info(spec)) == PowerState.RUNNING:
                        continue
                    await ctx.driver.power_on(spec)
                else:
                    await ctx.driver.spawn(spec)
                started += 1
            except Exception:  # noqa: BLE001 - the reconciliation below records the state
                LOG.exception("could not start the guest of %s again", inst["uuid"])
        return started

    async def reconcile(self, on_start: bool = False) -> dict[str, int]:
        """Bring the database and the driver into line; returns how many guests were
        destroyed and instances deleted, errored and synced.

        * guests the driver has whose instance is deleted (or now elsewhere) are destroyed;
        * instances left ``deleting`` are destroyed and marked deleted (before the next
          step: a delete answered while building wins);
        * instances stuck in BUILD (on start: any; later: older than ``build_timeout``)
          go to ERROR with a fault;
        * instances at rest whose guest is missing or stopped get the driver's power state
          (a guest that stopped by itself leaves the instance SHUTOFF, like Nova).
        """
        ctx = self.ctx
        counts = {"destroyed": 0, "deleted": 0, "errored": 0, "synced": 0}
        guests = await ctx.driver.list_instances()
        if guests:
            gone = await asyncio.to_thread(ctx.m.deleted_on_host, ctx.host, guests)
            for uuid in gone:
                with contextlib.suppress(Exception):
                    await ctx.driver.destroy({"uuid": uuid})
                counts["destroyed"] += 1
        # Pending deletes first: a server whose DELETE was answered while it was building
        # is deleted (allocation and quota freed), not failed into ERROR below.
        have = set(await ctx.driver.list_instances())
        for inst in await asyncio.to_thread(ctx.m.instances_on_host, ctx.host):
            if inst["task_state"] == "deleting" and (on_start or inst["uuid"] not in have):
                with contextlib.suppress(Exception):
                    await ctx.driver.destroy(ctx.spec(inst))
                await asyncio.to_thread(ctx.m.finish_delete, inst["uuid"])
                counts["deleted"] += 1
        horizon = utcnow() if on_start else utcnow() - dt.timedelta(seconds=ctx.build_timeout)
        if on_start and ctx.started_at is not None:
            horizon = ctx.started_at
        counts["errored"] = len(await asyncio.to_thread(ctx.m.fail_stuck_builds, ctx.host,
                                                        horizon))
        for inst in await asyncio.to_thread(ctx.m.instances_on_host, ctx.host):
            # An operation that died with the previous process: the instance is at rest
            # again (Nova's _init_instance); its power state is synced just below.
            if (on_start and inst["task_state"] in _RESTARTED_TASKS
                    and await asyncio.to_thread(ctx.m.finish_task, inst["uuid"],
                                                inst["task_state"], task_state=None)):
                inst["task_state"] = None
            if inst["task_state"] is not None or inst["vm_state"] in (
                    states.BUILDING, states.ERROR, states.SHELVED_OFFLOADED):
                continue
            try:
                power = int(await ctx.driver.get_info(ctx.spec(inst)))
            except InstanceNotFound:
                power = int(PowerState.NOSTATE)
            if power == inst["power_state"]:
                continue
            values: dict[str, Any] = {"power_state": power}
            if inst["vm_state"] == states.ACTIVE and power in (
                    PowerState.NOSTATE, PowerState.SHUTDOWN, PowerState.CRASHED):
                values["vm_state"] = states.STOPPED
            await asyncio.to_thread(ctx.m.finish_task, inst["uuid"], None, **values)
            counts["synced"] += 1
        return counts
