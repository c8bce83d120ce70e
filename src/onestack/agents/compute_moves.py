"""Moves of a guest between hosts: resize and cold migration (source, destination, confirm,
revert) and live migration.

The two hosts' agents hand a move on to each other over the bus (``finish_resize``,
``finish_revert_resize``); the migration record holds the destination's claim until the move
is confirmed (then it becomes the instance's) or fails (then it is released).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from onestack.agents.compute_context import AgentContext
from onestack.compute import states
from onestack.compute.manager import InstanceDict


def _was_stopped(inst: InstanceDict) -> bool:
    """Whether the guest was stopped when its resize or migration began."""
    return bool(inst["system_metadata"].get("old_vm_state") == states.STOPPED)


def _started_values(inst: InstanceDict, host: str, node: str,
                    flavor: dict[str, Any]) -> dict[str, Any]:
    """The instance's values once a move has started its guest on ``host``/``node`` with
    ``flavor`` (and stopped it again when it was stopped before)."""
    return {"task_state": None, "host": host, "node": node, "flavor": flavor,
            "vcpus": flavor["vcpus"], "memory_mb": flavor["memory_mb"],
            "root_gb": flavor["root_gb"],
            "power_state": states.SHUTDOWN if _was_stopped(inst) else states.RUNNING}


class Moves:
    """Resize, cold and live migration of one host's guests, either end of the move (a part
    of ``ComputeAgent``, which mixes it in)."""

    #: The agent's shared state (set by ``ComputeAgent``).
    ctx: AgentContext

    async def _start_moved(self, inst: InstanceDict, flavor: dict[str, Any],
                           start: Callable[[dict[str, Any]], Awaitable[None]],
                           expected: str, event: str) -> bool:
        """Start the guest of a move with ``flavor`` through the driver call ``start`` (and
        power it off again when it was stopped before); whether that worked -- on a failure
        the instance is put in ERROR."""
        ctx = self.ctx
        try:
            await start(await ctx.files(ctx.spec(inst, flavor=flavor, **await ctx.bind(inst))))
            if _was_stopped(inst):
                await ctx.driver.power_off(ctx.spec(inst))
        except Exception as exc:  # noqa: BLE001
            await ctx.fail(inst["uuid"], expected, event, exc, vm_state=states.ERROR)
            return False
        return True

    async def resize_instance(self, instance_uuid: str, migration_uuid: str, dest_host: str,
                              dest_node: str, new_flavor: dict[str, Any]) -> None:
        """Source side of a resize/cold migration."""
        ctx = self.ctx
        inst = await ctx.load(instance_uuid)
        if inst is None or inst["task_state"] != "resize_prep":
            return
        try:
            await asyncio.to_thread(ctx.m.finish_task, instance_uuid, "resize_prep",
                                    task_state="resize_migrating")
            await asyncio.to_thread(ctx.m.set_migration, migration_uuid, status="migrating")
            await ctx.driver.migrate_disk_and_power_off(ctx.spec(inst), dest_host,
                                                        new_flavor)
            if dest_host != ctx.host:
                await ctx.driver.destroy(ctx.spec(inst))
        except Exception as exc:  # noqa: BLE001
            await asyncio.to_thread(ctx.m.release, migration_uuid)
            await asyncio.to_thread(ctx.m.set_migration, migration_uuid, status="error")
            await ctx.fail(instance_uuid, ["resize_prep", "resize_migrating"],
                           "compute_resize_instance", exc)
            return
        await asyncio.to_thread(ctx.m.set_migration, migration_uuid, status="post-migrating")
        await ctx.finish(instance_uuid, "resize_migrating", "compute_resize_instance",
                         task_state="resize_migrated")
        try:
            await ctx.bus.cast(f"compute.{dest_host}", "finish_resize",
                               instance_uuid=instance_uuid, migration_uuid=migration_uuid,
                               dest_node=dest_node, new_flavor=new_flavor)
        except Exception as exc:  # noqa: BLE001 - the destination's agent is gone
            await asyncio.to_thread(ctx.m.release, migration_uuid)
            await asyncio.to_thread(ctx.m.set_migration, migration_uuid, status="error")
            await ctx.fail(instance_uuid, "resize_migrated", "compute_resize_instance", exc,
                           vm_state=states.ERROR)

    async def finish_resize(self, instance_uuid: str, migration_uuid: str, dest_node: str,
                            new_flavor: dict[str, Any]) -> None:
        """Destination side: start the guest with the new flavor; wait for confirmation."""
        ctx = self.ctx
        inst = await ctx.load(instance_uuid)
        if inst is None or inst["task_state"] != "resize_migrated":
            return
        if not await self._start_moved(
                inst, new_flavor, lambda spec: ctx.driver.finish_migration(spec, True),
                "resize_migrated", "compute_finish_resize"):
            return
        await asyncio.to_thread(ctx.m.set_migration, migration_uuid, status="finished")
        await ctx.finish(instance_uuid, "resize_migrated", "compute_finish_resize",
                         vm_state=states.RESIZED,
                         **_started_values(inst, ctx.host, dest_node, new_flavor))

    async def confirm_resize(self, instance_uuid: str, migration_uuid: str,
                             source_host: str) -> None:
        ctx = self.ctx
        inst = await ctx.load(instance_uuid)
        if inst is None:
            return
        with contextlib.suppress(Exception):
            await ctx.driver.confirm_migration(ctx.spec(inst))
        # The destination claim (held by the migration) becomes the instance's own.
        await asyncio.to_thread(ctx.m.release, instance_uuid)
        await asyncio.to_thread(ctx.m.move_allocation, migration_uuid, instance_uuid)
        await asyncio.to_thread(ctx.m.set_migration, migration_uuid, status="confirmed")
        await ctx.finish(instance_uuid, [None, "resize_confirming"], "compute_confirm_resize",
                         task_state=None,
                         vm_state=states.STOPPED if _was_stopped(inst) else states.ACTIVE,
                         old_flavor=None, new_flavor=None)

    async def revert_resize(self, instance_uuid: str, migration_uuid: str,
                            source_host: str, source_node: str) -> None:
        """Destination side of a revert: drop the guest, hand back to the source."""
        ctx = self.ctx
        inst = await ctx.load(instance_uuid)
        if inst is None or inst["task_state"] != "resize_reverting":
            return
        if source_host != ctx.host:
            with contextlib.suppress(Exception):
                await ctx.driver.destroy(ctx.spec(inst))
        await asyncio.to_thread(ctx.m.release, migration_uuid)
        try:
            await ctx.bus.cast(f"compute.{source_host}", "finish_revert_resize",
                               instance_uuid=instance_uuid, migration_uuid=migration_uuid,
                               source_node=source_node)
        except Exception as exc:  # noqa: BLE001 - the source's agent is gone
            await ctx.fail(instance_uuid, "resize_reverting", "compute_revert_resize", exc,
                           vm_state=states.ERROR)

    async def finish_revert_resize(self, instance_uuid: str, migration_uuid: str,
                                   source_node: str) -> None:
        """Source side of a revert: start the guest again with its old flavor."""
        ctx = self.ctx
        inst = await ctx.load(instance_uuid)
        if inst is None or inst["task_state"] != "resize_reverting":
            return
        old = inst["old_flavor"] or inst["flavor"]
        if not await self._start_moved(inst, old, ctx.driver.finish_revert_migration,
                                       "resize_reverting", "compute_revert_resize"):
            return
        await asyncio.to_thread(ctx.m.set_migration, migration_uuid, status="reverted")
        await ctx.finish(instance_uuid, "resize_reverting", "compute_revert_resize",
                         vm_state=states.STOPPED if _was_stopped(inst) else states.ACTIVE,
                         old_flavor=None, new_flavor=None,
                         **_started_values(inst, ctx.host, source_node, old))

    async def live_migrate(self, instance_uuid: str, migration_uuid: str, dest_host: str,
                           dest_node: str) -> None:
        ctx = self.ctx
        inst = await ctx.load(instance_uuid)
        if inst is None or inst["task_state"] != "migrating":
            return
        await asyncio.to_thread(ctx.m.set_migration, migration_uuid, status="running")
        try:
            await ctx.driver.live_migrate(ctx.spec(inst), dest_host)
        except Exception as exc:  # noqa: BLE001
            await asyncio.to_thread(ctx.m.release, migration_uuid)
            await asyncio.to_thread(ctx.m.set_migration, migration_uuid, status="error")
            await ctx.fail(instance_uuid, "migrating", "compute_live_migration", exc)
            return
        with contextlib.suppress(Exception):
            await ctx.bind(inst, dest_host)
        # The new host's claim (held by the migration) becomes the instance's.
        await asyncio.to_thread(ctx.m.release, instance_uuid)
        await asyncio.to_thread(ctx.m.move_allocation, migration_uuid, instance_uuid)
        await asyncio.to_thread(ctx.m.set_migration, migration_uuid, status="completed")
        await ctx.finish(instance_uuid, "migrating", "compute_live_migration",
                         task_state=None, host=dest_host, node=dest_node)
