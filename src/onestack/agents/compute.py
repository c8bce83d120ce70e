"""The compute agent: runs guests on one host through a hypervisor driver.

It consumes the bus topic ``compute.<host>``. Each method below is a bus endpoint taking
JSON arguments (instance uuids, flavors, host names). The agent reads the instance from the
database, runs the driver and writes the outcome through ``ComputeManager`` (``finish_task``
only writes when the instance is still in the task state the operation started from, so a
delete that raced an operation wins).

``ComputeAgentPool`` runs many agents (one per fake host) in one process with one shared
heartbeat/reconciliation loop, so ``--fake-hosts 1000`` costs 1000 dict entries, not 1000
timers.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import os
from collections.abc import Callable
from typing import Any

from onestack.bus.base import Bus
from onestack.common.context import RequestContext
from onestack.common.timeutils import utcnow
from onestack.compute import block_devices, states
from onestack.compute.manager import ComputeManager, InstanceDict
from onestack.compute.volumes import release_all
from onestack.drivers.hypervisor.base import (
    DriverError,
    HypervisorDriver,
    InstanceNotFound,
    PowerState,
)
from onestack.faults.rules import FaultTable

LOG = logging.getLogger(__name__)

#: ``upload(image_id, path)``: store a snapshot file as the data of a queued image.
ImageUploader = Callable[[str, str], None]


#: Task states of operations that simply ended with the process that ran them: on start
#: the task state is cleared and the power state taken from the driver. (Moves, rebuilds and
#: builds are not in here: they have their own recovery.)
_RESTARTED_TASKS = frozenset({
    "powering-off", "powering-on", "rebooting", "reboot_pending", "reboot_started",
    "rebooting_hard", "reboot_pending_hard", "reboot_started_hard", "pausing", "unpausing",
    "suspending", "resuming", "rescuing", "unrescuing", "image_snapshot",
    "image_snapshot_pending", "image_pending_upload", "image_uploading", "image_backup",
    "updating_password"})


class ComputeAgent:
    """Bus endpoint of one compute host (see the module docstring)."""

    #: ``resolve(spec image) -> image`` with its local files (``path``, ``kernel_path``,
    #: ``ramdisk_path``, see drivers/hypervisor/imagefiles.py); None: drivers get ids only.
    image_files: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    #: Seconds a stop waits for the guest to shut down cleanly (Nova's shutdown_timeout).
    shutdown_timeout: float = 60.0
    #: The network service seen from compute (``compute/network.py``: ``bind``); None:
    #: guests get no ports.
    network: Any = None
    #: The volume service seen from compute (``compute/volumes.py``); None: no volumes.
    volumes: Any = None
    #: ``drop(image_id)``: delete an image compute made (a shelved server's snapshot once it
    #: runs again); None: kept.
    drop_image: Callable[[str], None] | None = None
    #: The cloud's fault rules (``onestack.faults``): ``build`` rules fail builds here;
    #: None: no fault injection.
    faults: FaultTable | None = None

    def __init__(self, host: str, driver: HypervisorDriver, manager: ComputeManager, bus: Bus,
                 uploader: ImageUploader | None = None, build_timeout: float = 600.0) -> None:
        self.host = host
        self.driver = driver
        self.m = manager
        self.bus = bus
        self.uploader = uploader
        self.build_timeout = build_timeout
        self.started_at: dt.datetime | None = None

    # ------------------------------------------------------------------ lifecycle
    async def register(self) -> None:
        """Report the host's service and capacity (create or refresh the records)."""
        await self.driver.init_host()
        res = await self.driver.get_available_resource()
        caps = dataclasses.asdict(self.driver.capabilities)
        payload = {"vcpus": res.vcpus, "memory_mb": res.memory_mb, "local_gb": res.local_gb,
                   "hypervisor_type": res.hypervisor_type,
                   "hypervisor_version": res.hypervisor_version,
                   "hypervisor_hostname": res.hypervisor_hostname, "host_ip": res.host_ip,
                   "cpu_info": res.cpu_info, "capabilities": caps}
        await asyncio.to_thread(self.m.register_host, self.host, payload)
        self.started_at = utcnow()

    async def _load(self, uuid: str) -> InstanceDict | None:
        try:
            return await self.m.db.run(self.m.get_instance, None, uuid)
        except Exception:  # noqa: BLE001 - deleted meanwhile
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

    async def _files(self, spec: dict[str, Any]) -> dict[str, Any]:
        """``spec`` with the local files of its image resolved (for spawning drivers)."""
        if self.image_files is not None and spec["image"].get("id"):
            spec["image"] = await asyncio.to_thread(self.image_files, spec["image"])
        return spec

    async def _finish(self, uuid: str, expected: Any, event: str, **values: Any) -> bool:
        return bool(await self.m.db.run(self.m.finish_task, uuid, expected, event=event,
                                        **values))

    async def _fail(self, uuid: str, expected: Any, event: str, exc: BaseException,
                    **values: Any) -> None:
        LOG.warning("%s of %s on %s failed: %s", event, uuid, self.host, exc)
        await asyncio.to_thread(self.m.finish_task, uuid, expected, event=event,
                                error=str(exc) or type(exc).__name__, task_state=None,
                                **values)

    async def _bind(self, inst: InstanceDict, host: str | None = None) -> dict[str, Any]:
        """Bind the instance's ports to ``host`` (this one) and record the port cache
        (``system_metadata.networks``); returns ``{"networks": ports}`` for ``spec`` (empty
        when the instance has no ports)."""
        sm = inst["system_metadata"]
        if self.network is None or not (sm.get("port_count") or sm.get("networks")):
            return {}
        nics = await asyncio.to_thread(self.network.bind, inst["uuid"], host or self.host)
        await asyncio.to_thread(self.m.update_system_metadata, inst["uuid"], networks=nics,
                                port_cache=True)
        return {"networks": nics}

    # ------------------------------------------------------------------ build / delete
    async def build_and_run_instance(self, instance_uuid: str, request: dict[str, Any],
                                     tried: list[str], attempt: int) -> None:
        base = request.get("instance")
        if base is not None and attempt == 1:
            # First attempt: the API sent the instance (saves reading it); finish_task below
            # only writes if it is still spawning, and a racing delete is cleaned up.
            if not await self.m.db.run(self.m.spawning_on, instance_uuid, self.host):
                return  # delivered twice (or deleted/failed meanwhile)
            inst: InstanceDict | None = dict(
                base, uuid=instance_uuid, name=(request.get("names") or {}).get(
                    instance_uuid, ""))
        else:
            inst = await self._load(instance_uuid)
            if inst is None or inst["task_state"] != "spawning" or inst["host"] != self.host:
                return
        assert inst is not None
        rule = self.faults.match_build(self.host) if self.faults is not None else None
        if rule is not None:
            # No reschedule: the rule says this build ends in ERROR.
            await self._fail(instance_uuid, "spawning", "compute_build_and_run_instance",
                             RuntimeError(rule.message or f"Build failed: injected fault "
                                          f"(onestack fault rule {rule.id})."),
                             vm_state=states.ERROR)
            return
        if self.volumes is not None and block_devices.of(inst):
            try:
                inst["system_metadata"] = dict(
                    inst["system_metadata"],
                    block_devices=await asyncio.to_thread(self._prepare_volumes, inst))
            except Exception as exc:  # noqa: BLE001 - no reschedule: the volumes are the cause
                await self._fail(instance_uuid, "spawning", "compute_build_and_run_instance",
                                 exc, vm_state=states.ERROR)
                return
        try:
            nics = await self._bind(inst)
            await self.driver.spawn(await self._files(
                self.spec(inst, admin_pass=request.get("admin_pass"), **nics)))
        except Exception as exc:  # noqa: BLE001 - reschedule on any build failure
            LOG.warning("build of %s on %s failed: %s", instance_uuid, self.host, exc)
            if not await asyncio.to_thread(self.m.unplace, instance_uuid, self.host):
                # No longer ours to retry (deleted meanwhile): only its guest goes.
                with contextlib.suppress(Exception):
                    await self._cleanup_if_deleted(instance_uuid)
                return
            with contextlib.suppress(Exception):
                await self.driver.destroy(self.spec(inst))
            await asyncio.to_thread(self.m.record_event, instance_uuid,
                                    "compute_build_and_run_instance", self.host, str(exc))
            await self.bus.cast("scheduler", "reschedule", instance_uuid=instance_uuid,
                                request=request, tried=tried, attempt=attempt,
                                error=str(exc))
            return
        ok = await self._finish(instance_uuid, "spawning", "compute_build_and_run_instance",
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
        vols = self.volumes
        store = block_devices.BlockDevices(self.m)
        uuid = inst["uuid"]
        current = self.m.get_instance(None, uuid)  # the API may have reserved some
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
                device = block_devices.device_name(self.m.get_instance(None, uuid), None)
            info = vols.connect(aid, self.host, device)
            vols.complete(aid)
            store.update(uuid, vid, device=device, connection_info=info,
                         mode=(info.get("data") or {}).get("access_mode", "rw"))
        return block_devices.of(self.m.get_instance(None, uuid))

    async def _cleanup_if_deleted(self, uuid: str) -> None:
        inst = await asyncio.to_thread(self.m.get_instance, None, uuid, True)
        if inst["deleted"] or inst["task_state"] == "deleting":
            with contextlib.suppress(Exception):
                await self.driver.destroy(self.spec(inst))
            if not inst["deleted"]:
                await asyncio.to_thread(self.m.finish_delete, uuid)

    async def terminate_instance(self, instance_uuid: str) -> None:
        inst = await self.m.db.run(self._load_any, instance_uuid)
        if inst is None:
            return
        try:
            await self.driver.destroy(self.spec(inst))
        except Exception as exc:  # noqa: BLE001
            await self._fail(instance_uuid, "deleting", "compute_terminate_instance", exc,
                             vm_state=states.ERROR)
            return
        if self.volumes is not None and block_devices.of(inst):
            await asyncio.to_thread(release_all, self.volumes, instance_uuid,
                                    block_devices.of(inst))
        await self.m.db.run(self.m.finish_delete, instance_uuid)

    def _load_any(self, uuid: str) -> InstanceDict | None:
        try:
            return self.m.get_instance(None, uuid, True)
        except Exception:  # noqa: BLE001
            return None

    # ------------------------------------------------------------------ power
    async def _power(self, uuid: str, task: str, event: str,
                     fn: Callable[[dict[str, Any]], Any], **final: Any) -> None:
        inst = await self._load(uuid)
        if inst is None or inst["task_state"] != task:
            return
        try:
            await fn(self.spec(inst))
        except Exception as exc:  # noqa: BLE001
            await self._fail(uuid, task, event, exc)
            return
        await self._finish(uuid, task, event, task_state=None, **final)

    async def reboot_instance(self, instance_uuid: str, hard: bool) -> None:
        task = "rebooting_hard" if hard else "rebooting"

        async def run(spec: dict[str, Any]) -> None:
            await self.driver.reboot(spec, hard)

        await self._power(instance_uuid, task, "compute_reboot_instance", run,
                          vm_state=states.ACTIVE, power_state=states.RUNNING)

    async def stop_instance(self, instance_uuid: str) -> None:
        async def run(spec: dict[str, Any]) -> None:
            await self.driver.power_off(spec, self.shutdown_timeout)  # clean, then forced

        await self._power(instance_uuid, "powering-off", "compute_stop_instance", run,
                          vm_state=states.STOPPED, power_state=states.SHUTDOWN)

    async def start_instance(self, instance_uuid: str) -> None:
        await self._power(instance_uuid, "powering-on", "compute_start_instance",
                          self.driver.power_on, vm_state=states.ACTIVE,
                          power_state=states.RUNNING)

    async def pause_instance(self, instance_uuid: str) -> None:
        await self._power(instance_uuid, "pausing", "compute_pause_instance",
                          self.driver.pause, vm_state=states.PAUSED,
                          power_state=states.PAUSED_P)

    async def unpause_instance(self, instance_uuid: str) -> None:
        await self._power(instance_uuid, "unpausing", "compute_unpause_instance",
                          self.driver.unpause, vm_state=states.ACTIVE,
                          power_state=states.RUNNING)

    async def suspend_instance(self, instance_uuid: str) -> None:
        await self._power(instance_uuid, "suspending", "compute_suspend_instance",
                          self.driver.suspend, vm_state=states.SUSPENDED,
                          power_state=states.SHUTDOWN)

    async def resume_instance(self, instance_uuid: str) -> None:
        await self._power(instance_uuid, "resuming", "compute_resume_instance",
                          self.driver.resume, vm_state=states.ACTIVE,
                          power_state=states.RUNNING)

    async def rescue_instance(self, instance_uuid: str, rescue_image: str | None) -> None:
        async def run(spec: dict[str, Any]) -> None:
            await self.driver.rescue(spec, (await self._files(
                {"image": {"id": rescue_image}}))["image"])

        await self._power(instance_uuid, "rescuing", "compute_rescue_instance", run,
                          vm_state=states.RESCUED, power_state=states.RUNNING)

    async def unrescue_instance(self, instance_uuid: str) -> None:
        await self._power(instance_uuid, "unrescuing", "compute_unrescue_instance",
                          self.driver.unrescue, vm_state=states.ACTIVE,
                          power_state=states.RUNNING)

    async def rebuild_instance(self, instance_uuid: str, image_ref: str,
                               reimage_volume: str | None = None) -> None:
        """Rebuild the guest; with ``reimage_volume`` (a volume-backed server given a new
        image, 2.93) that root volume is re-imaged between the old guest and the new."""
        inst = await self._load(instance_uuid)
        if inst is None or inst["task_state"] != "rebuilding":
            return
        try:
            await self.driver.destroy(self.spec(inst))
            if reimage_volume:
                if self.volumes is None:
                    raise DriverError("no volume service to re-image the root volume")
                await asyncio.to_thread(self.volumes.reimage, reimage_volume, image_ref)
            await self.driver.spawn(await self._files(self.spec(inst)))
            if inst["vm_state"] == states.STOPPED:
                await self.driver.power_off(self.spec(inst))
        except Exception as exc:  # noqa: BLE001
            await self._fail(instance_uuid, "rebuilding", "compute_rebuild_instance", exc,
                             vm_state=states.ERROR)
            return
        stopped = inst["vm_state"] == states.STOPPED
        await self._finish(instance_uuid, "rebuilding", "compute_rebuild_instance",
                           task_state=None,
                           vm_state=states.STOPPED if stopped else states.ACTIVE,
                           power_state=states.SHUTDOWN if stopped else states.RUNNING,
                           launched_at=utcnow())

    # ------------------------------------------------------------------ images
    async def _snapshot_to(self, inst: InstanceDict, image_id: str) -> None:
        path = await self.driver.snapshot(self.spec(inst))
        try:
            if self.uploader is None:
                raise RuntimeError("no image service to upload the snapshot to")
            await asyncio.to_thread(self.uploader, image_id, path)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)

    async def snapshot_instance(self, instance_uuid: str, image_id: str,
                                task_state: str = "image_snapshot") -> None:
        inst = await self._load(instance_uuid)
        if inst is None or inst["task_state"] != task_state:
            return
        try:
            await self._snapshot_to(inst, image_id)
        except Exception as exc:  # noqa: BLE001
            await self._fail(instance_uuid, task_state, "compute_snapshot_instance", exc)
            return
        await self._finish(instance_uuid, task_state, "compute_snapshot_instance",
                           task_state=None)

    async def shelve_instance(self, instance_uuid: str, image_id: str | None,
                              offload: bool) -> None:
        inst = await self._load(instance_uuid)
        if inst is None or inst["task_state"] != "shelving":
            return
        try:
            await self.driver.power_off(self.spec(inst), self.shutdown_timeout)
            if image_id:
                await self._snapshot_to(inst, image_id)
            if offload:
                await self.driver.destroy(self.spec(inst))
                await asyncio.to_thread(self.m.release, instance_uuid)
        except Exception as exc:  # noqa: BLE001
            await self._fail(instance_uuid, "shelving", "compute_shelve_instance", exc)
            return
        values: dict[str, Any] = {"vm_state": states.SHELVED_OFFLOADED if offload
                                  else states.SHELVED, "power_state": states.SHUTDOWN}
        if offload:
            values.update(host=None, node=None, power_state=states.NOSTATE)
        await self._finish(instance_uuid, "shelving", "compute_shelve_instance",
                           task_state=None, **values)

    async def shelve_offload_instance(self, instance_uuid: str) -> None:
        inst = await self._load(instance_uuid)
        if inst is None or inst["task_state"] != "shelving_offloading":
            return
        with contextlib.suppress(Exception):
            await self.driver.destroy(self.spec(inst))
        await asyncio.to_thread(self.m.release, instance_uuid)
        await self._finish(instance_uuid, "shelving_offloading",
                           "compute_shelve_offload_instance", task_state=None,
                           vm_state=states.SHELVED_OFFLOADED, host=None, node=None,
                           power_state=states.NOSTATE)

    async def unshelve_instance(self, instance_uuid: str, node: str,
                                image_ref: str | None = None) -> None:
        """Start a shelved guest again; an offloaded one is spawned from ``image_ref``, the
        snapshot its shelve took (deleted once the guest runs, as Nova does)."""
        inst = await self._load(instance_uuid)
        if inst is None or inst["task_state"] != "unshelving":
            return
        try:
            if inst["vm_state"] == states.SHELVED and inst["host"] == self.host:
                await self.driver.power_on(self.spec(inst))
            else:
                spec = self.spec(inst, **await self._bind(inst))
                if image_ref:
                    spec["image"] = dict(spec["image"], id=image_ref)
                await self.driver.spawn(await self._files(spec))
        except Exception as exc:  # noqa: BLE001
            await self._fail(instance_uuid, "unshelving", "compute_unshelve_instance", exc)
            return
        await self._finish(instance_uuid, "unshelving", "compute_unshelve_instance",
                           task_state=None, vm_state=states.ACTIVE, host=self.host,
                           node=node, power_state=states.RUNNING)
        shelved = inst["system_metadata"].get("shelved_image_id")
        if shelved and self.drop_image is not None:
            await asyncio.to_thread(self.m.update_system_metadata, instance_uuid,
                                    shelved_image_id=None)
            await asyncio.to_thread(self.drop_image, shelved)

    # ------------------------------------------------------------------ moves
    async def resize_instance(self, instance_uuid: str, migration_uuid: str, dest_host: str,
                              dest_node: str, new_flavor: dict[str, Any]) -> None:
        """Source side of a resize/cold migration."""
        inst = await self._load(instance_uuid)
        if inst is None or inst["task_state"] != "resize_prep":
            return
        try:
            await asyncio.to_thread(self.m.finish_task, instance_uuid, "resize_prep",
                                    task_state="resize_migrating")
            await asyncio.to_thread(self.m.set_migration, migration_uuid, status="migrating")
            await self.driver.migrate_disk_and_power_off(self.spec(inst), dest_host,
                                                         new_flavor)
            if dest_host != self.host:
                await self.driver.destroy(self.spec(inst))
        except Exception as exc:  # noqa: BLE001
            await asyncio.to_thread(self.m.release, migration_uuid)
            await asyncio.to_thread(self.m.set_migration, migration_uuid, status="error")
            await self._fail(instance_uuid, ["resize_prep", "resize_migrating"],
                             "compute_resize_instance", exc)
            return
        await asyncio.to_thread(self.m.set_migration, migration_uuid, status="post-migrating")
        await self._finish(instance_uuid, "resize_migrating", "compute_resize_instance",
                           task_state="resize_migrated")
        try:
            await self.bus.cast(f"compute.{dest_host}", "finish_resize",
                                instance_uuid=instance_uuid, migration_uuid=migration_uuid,
                                dest_node=dest_node, new_flavor=new_flavor)
        except Exception as exc:  # noqa: BLE001 - the destination's agent is gone
            await asyncio.to_thread(self.m.release, migration_uuid)
            await asyncio.to_thread(self.m.set_migration, migration_uuid, status="error")
            await self._fail(instance_uuid, "resize_migrated", "compute_resize_instance", exc,
                             vm_state=states.ERROR)

    async def finish_resize(self, instance_uuid: str, migration_uuid: str, dest_node: str,
                            new_flavor: dict[str, Any]) -> None:
        """Destination side: start the guest with the new flavor; wait for confirmation."""
        inst = await self._load(instance_uuid)
        if inst is None or inst["task_state"] != "resize_migrated":
            return
        was_stopped = inst["system_metadata"].get("old_vm_state") == states.STOPPED
        try:
            await self.driver.finish_migration(
                await self._files(self.spec(inst, flavor=new_flavor,
                                            **await self._bind(inst))), True)
            if was_stopped:
                await self.driver.power_off(self.spec(inst))
        except Exception as exc:  # noqa: BLE001
            await self._fail(instance_uuid, "resize_migrated", "compute_finish_resize", exc,
                             vm_state=states.ERROR)
            return
        await asyncio.to_thread(self.m.set_migration, migration_uuid, status="finished")
        await self._finish(instance_uuid, "resize_migrated", "compute_finish_resize",
                           task_state=None, vm_state=states.RESIZED, host=self.host,
                           node=dest_node, flavor=new_flavor, vcpus=new_flavor["vcpus"],
                           memory_mb=new_flavor["memory_mb"], root_gb=new_flavor["root_gb"],
                           power_state=states.SHUTDOWN if was_stopped else states.RUNNING)

    async def confirm_resize(self, instance_uuid: str, migration_uuid: str,
                             source_host: str) -> None:
        inst = await self._load(instance_uuid)
        if inst is None:
            return
        with contextlib.suppress(Exception):
            await self.driver.confirm_migration(self.spec(inst))
        # The destination claim (held by the migration) becomes the instance's own.
        await asyncio.to_thread(self.m.release, instance_uuid)
        await asyncio.to_thread(self.m.move_allocation, migration_uuid, instance_uuid)
        await asyncio.to_thread(self.m.set_migration, migration_uuid, status="confirmed")
        stopped = inst["system_metadata"].get("old_vm_state") == states.STOPPED
        await self._finish(instance_uuid, [None, "resize_confirming"], "compute_confirm_resize",
                           task_state=None, vm_state=states.STOPPED if stopped
                           else states.ACTIVE, old_flavor=None, new_flavor=None)

    async def revert_resize(self, instance_uuid: str, migration_uuid: str,
                            source_host: str, source_node: str) -> None:
        """Destination side of a revert: drop the guest, hand back to the source."""
        inst = await self._load(instance_uuid)
        if inst is None or inst["task_state"] != "resize_reverting":
            return
        if source_host != self.host:
            with contextlib.suppress(Exception):
                await self.driver.destroy(self.spec(inst))
        await asyncio.to_thread(self.m.release, migration_uuid)
        try:
            await self.bus.cast(f"compute.{source_host}", "finish_revert_resize",
                                instance_uuid=instance_uuid, migration_uuid=migration_uuid,
                                source_node=source_node)
        except Exception as exc:  # noqa: BLE001 - the source's agent is gone
            await self._fail(instance_uuid, "resize_reverting", "compute_revert_resize", exc,
                             vm_state=states.ERROR)

    async def finish_revert_resize(self, instance_uuid: str, migration_uuid: str,
                                   source_node: str) -> None:
        inst = await self._load(instance_uuid)
        if inst is None or inst["task_state"] != "resize_reverting":
            return
        old = inst["old_flavor"] or inst["flavor"]
        stopped = inst["system_metadata"].get("old_vm_state") == states.STOPPED
        try:
            await self.driver.finish_revert_migration(
                await self._files(self.spec(inst, flavor=old, **await self._bind(inst))))
            if stopped:
                await self.driver.power_off(self.spec(inst))
        except Exception as exc:  # noqa: BLE001
            await self._fail(instance_uuid, "resize_reverting", "compute_revert_resize", exc,
                             vm_state=states.ERROR)
            return
        await asyncio.to_thread(self.m.set_migration, migration_uuid, status="reverted")
        await self._finish(instance_uuid, "resize_reverting", "compute_revert_resize",
                           task_state=None, vm_state=states.STOPPED if stopped
                           else states.ACTIVE, host=self.host, node=source_node, flavor=old,
                           vcpus=old["vcpus"], memory_mb=old["memory_mb"],
                           root_gb=old["root_gb"], old_flavor=None, new_flavor=None,
                           power_state=states.SHUTDOWN if stopped else states.RUNNING)

    async def live_migrate(self, instance_uuid: str, migration_uuid: str, dest_host: str,
                           dest_node: str) -> None:
        inst = await self._load(instance_uuid)
        if inst is None or inst["task_state"] != "migrating":
            return
        await asyncio.to_thread(self.m.set_migration, migration_uuid, status="running")
        try:
            await self.driver.live_migrate(self.spec(inst), dest_host)
        except Exception as exc:  # noqa: BLE001
            await asyncio.to_thread(self.m.release, migration_uuid)
            await asyncio.to_thread(self.m.set_migration, migration_uuid, status="error")
            await self._fail(instance_uuid, "migrating", "compute_live_migration", exc)
            return
        with contextlib.suppress(Exception):
            await self._bind(inst, dest_host)
        # The new host's claim (held by the migration) becomes the instance's.
        await asyncio.to_thread(self.m.release, instance_uuid)
        await asyncio.to_thread(self.m.move_allocation, migration_uuid, instance_uuid)
        await asyncio.to_thread(self.m.set_migration, migration_uuid, status="completed")
        await self._finish(instance_uuid, "migrating", "compute_live_migration",
                           task_state=None, host=dest_host, node=dest_node)

    # ------------------------------------------------------------------ calls
    async def get_console_output(self, instance_uuid: str, length: int | None) -> str:
        inst = await self._load(instance_uuid)
        if inst is None:
            return ""
        text = await self.driver.get_console_output(self.spec(inst))
        if length is not None:
            lines = text.splitlines()
            text = "\n".join(lines[-length:] if length > 0 else [])
        return text

    async def get_vnc_console(self, instance_uuid: str) -> dict[str, Any]:
        """Where the guest's VNC server listens: ``{"host", "port"}``, or ``{"error":
        "unavailable"}`` (the driver has no remote console) or ``{"error": "not_ready",
        "message"}`` (the guest has none right now). Asked by the compute API when it makes a
        console token and by the console proxy before it connects."""
        if not self.driver.capabilities.supports_remote_console:
            return {"error": "unavailable"}
        inst = await self._load(instance_uuid)
        if inst is None:
            return {"error": "not_ready", "message": f"Instance {instance_uuid} not found."}
        try:
            info = await self.driver.get_vnc_console(self.spec(inst))
        except Exception as exc:  # noqa: BLE001 - QMP/driver failures: no console now
            if not isinstance(exc, DriverError):
                LOG.warning("VNC console of %s: %s", instance_uuid, exc)
            return {"error": "not_ready", "message": str(exc)}
        return {"host": str(info["host"]), "port": int(info["port"])}

    async def get_diagnostics(self, instance_uuid: str) -> dict[str, Any]:
        inst = await self._load(instance_uuid)
        if inst is None:
            return {}
        return await self.driver.get_diagnostics(self.spec(inst))

    async def attach_interface(self, instance_uuid: str,
                               port: dict[str, Any]) -> dict[str, Any]:
        """Give the guest a NIC on ``port`` (hot-plugged when it runs). Returns ``{}``, or
        ``{"error": message}`` when the driver could not (the API then rolls back)."""
        return await self._nic(instance_uuid, port, self.driver.attach_interface)

    async def detach_interface(self, instance_uuid: str,
                               port: dict[str, Any]) -> dict[str, Any]:
        """Take ``port``'s NIC from the guest; ``{}`` once released, else ``{"error"}``
        (the port then stays attached)."""
        return await self._nic(instance_uuid, port, self.driver.detach_interface)

    async def _nic(self, instance_uuid: str, device: dict[str, Any],
                   fn: Callable[[dict[str, Any], dict[str, Any]], Any]) -> dict[str, Any]:
        """A NIC or disk change of a guest, its failure reported instead of raised."""
        inst = await self._load(instance_uuid)
        if inst is None:
            return {"error": f"Instance {instance_uuid} could not be found."}
        try:
            await fn(self.spec(inst), device)
        except Exception as exc:  # noqa: BLE001 - reported to the API, which rolls back
            LOG.warning("device %s of %s: %s", device.get("id") or device.get("volume_id"),
                        instance_uuid, exc)
            return {"error": str(exc) or type(exc).__name__}
        return {}

    async def attach_volume(self, instance_uuid: str,
                            volume: dict[str, Any]) -> dict[str, Any]:
        """Give the guest the disk of ``volume`` (a block device with its connection info;
        hot-plugged when it runs). ``{}``, or ``{"error": message}`` (the API rolls back)."""
        return await self._nic(instance_uuid, volume, self.driver.attach_volume)

    async def detach_volume(self, instance_uuid: str,
                            volume: dict[str, Any]) -> dict[str, Any]:
        """Take the disk of ``volume`` from the guest; ``{}`` once released, else
        ``{"error"}`` (the volume then stays attached)."""
        return await self._nic(instance_uuid, volume, self.driver.detach_volume)

    async def extend_volume(self, instance_uuid: str, volume: dict[str, Any],
                            new_size: int) -> dict[str, Any]:
        """A volume of the guest grew to ``new_size`` GiB: the guest is told (Nova's
        handling of Cinder's ``volume-extended`` event); ``{}`` or ``{"error"}``."""
        return await self._nic(instance_uuid, volume,
                               lambda spec, vol: self.driver.extend_volume(spec, vol,
                                                                           new_size))

    async def pause_volume_io(self, instance_uuid: str,
                              volume: dict[str, Any]) -> dict[str, Any]:
        """Hold the guest's writes to ``volume`` (a snapshot is being copied):
        ``{"paused": bool}``, ``{"error"}`` when the driver could not."""
        inst = await self._load(instance_uuid)
        if inst is None:
            return {"paused": False}
        try:
            return {"paused": bool(await self.driver.pause_volume_io(self.spec(inst),
                                                                     volume))}
        except Exception as exc:  # noqa: BLE001 - reported: the snapshot goes on without
            LOG.warning("pausing the I/O of %s: %s", instance_uuid, exc)
            return {"error": str(exc) or type(exc).__name__}

    async def resume_volume_io(self, instance_uuid: str,
                               volume: dict[str, Any]) -> dict[str, Any]:
        return await self._nic(instance_uuid, volume, self.driver.resume_volume_io)

    async def ping(self) -> str:
        return self.host

    # ------------------------------------------------------------------ reconciliation
    async def resume_guests(self) -> int:
        """Start again the guest of every instance recorded ACTIVE and running whose guest
        does not run (after a snapshot load: Nova's ``resume_guests_state_on_host_boot``):
        a guest the driver still knows is powered on, one it does not is spawned from the
        instance's record. Returns how many were started."""
        have = set(await self.driver.list_instances())
        started = 0
        for inst in await asyncio.to_thread(self.m.instances_on_host, self.host):
            if (inst["vm_state"] != states.ACTIVE or inst["task_state"] is not None
                    or inst["power_state"] != states.RUNNING):
                continue
            try:
                spec = await self._files(self.spec(inst))
                if inst["uuid"] in have:
                    if int(await self.driver.get_info(spec)) == PowerState.RUNNING:
                        continue
                    await self.driver.power_on(spec)
                else:
                    await self.driver.spawn(spec)
                started += 1
            except Exception:  # noqa: BLE001 - the reconciliation below records the state
                LOG.exception("could not start the guest of %s again", inst["uuid"])
        return started

    async def reconcile(self, on_start: bool = False) -> dict[str, int]:
        """Bring the database and the driver into line (see the module docstring).

        * guests the driver has whose instance is deleted (or now elsewhere) are destroyed;
        * instances left ``deleting`` are destroyed and marked deleted (before the next
          step: a delete answered while building wins);
        * instances stuck in BUILD (on start: any; later: older than ``build_timeout``)
          go to ERROR with a fault;
        * instances at rest whose guest is missing or stopped get the driver's power state
          (a guest that stopped by itself leaves the instance SHUTOFF, like Nova).
        """
        counts = {"destroyed": 0, "deleted": 0, "errored": 0, "synced": 0}
        guests = await self.driver.list_instances()
        if guests:
            gone = await asyncio.to_thread(self.m.deleted_on_host, self.host, guests)
            for uuid in gone:
                with contextlib.suppress(Exception):
                    await self.driver.destroy({"uuid": uuid})
                counts["destroyed"] += 1
        # Pending deletes first: a server whose DELETE was answered while it was building
        # is deleted (allocation and quota freed), not failed into ERROR below.
        have = set(await self.driver.list_instances())
        for inst in await asyncio.to_thread(self.m.instances_on_host, self.host):
            if inst["task_state"] == "deleting" and (on_start or inst["uuid"] not in have):
                with contextlib.suppress(Exception):
                    await self.driver.destroy(self.spec(inst))
                await asyncio.to_thread(self.m.finish_delete, inst["uuid"])
                counts["deleted"] += 1
        horizon = utcnow() if on_start else utcnow() - dt.timedelta(seconds=self.build_timeout)
        if on_start and self.started_at is not None:
            horizon = self.started_at
        counts["errored"] = len(await asyncio.to_thread(self.m.fail_stuck_builds, self.host,
                                                        horizon))
        for inst in await asyncio.to_thread(self.m.instances_on_host, self.host):
            # An operation that died with the previous process: the instance is at rest
            # again (Nova's _init_instance); its power state is synced just below.
            if (on_start and inst["task_state"] in _RESTARTED_TASKS
                    and await asyncio.to_thread(self.m.finish_task, inst["uuid"],
                                                inst["task_state"], task_state=None)):
                inst["task_state"] = None
            if inst["task_state"] is not None or inst["vm_state"] in (
                    states.BUILDING, states.ERROR, states.SHELVED_OFFLOADED):
                continue
            try:
                power = int(await self.driver.get_info(self.spec(inst)))
            except InstanceNotFound:
                power = int(PowerState.NOSTATE)
            if power == inst["power_state"]:
                continue
            values: dict[str, Any] = {"power_state": power}
            if inst["vm_state"] == states.ACTIVE and power in (
                    PowerState.NOSTATE, PowerState.SHUTDOWN, PowerState.CRASHED):
                values["vm_state"] = states.STOPPED
            await asyncio.to_thread(self.m.finish_task, inst["uuid"], None, **values)
            counts["synced"] += 1
        return counts


class ComputeAgentPool:
    """Runs one or many agents in this process: bus consumers plus one periodic loop."""

    def __init__(self, agents: list[ComputeAgent], manager: ComputeManager, bus: Bus,
                 heartbeat_interval: float = 10.0, reconcile_interval: float = 60.0) -> None:
        self.agents = agents
        self.m = manager
        self.bus = bus
        self.heartbeat_interval = heartbeat_interval
        self.reconcile_interval = reconcile_interval
        self._task: asyncio.Task[None] | None = None
        #: ``host_down`` rules stop the heartbeats of the hosts they hold down.
        self.faults: FaultTable | None = None
        #: Start the guests of running instances again on start (after a snapshot load).
        self.resume_guests = False

    def set_faults(self, table: FaultTable | None) -> None:
        """Apply ``table``'s rules to these agents (``build`` and ``host_down``)."""
        self.faults = table
        for agent in self.agents:
            agent.faults = table

    async def start(self) -> None:
        for agent in self.agents:
            await agent.register()
            await self.bus.serve(f"compute.{agent.host}", agent)
        if self.resume_guests:
            started = 0
            for agent in self.agents:
                started += await agent.resume_guests()
            LOG.info("started %d guests again", started)
        for agent in self.agents:
            try:
                await agent.reconcile(on_start=True)
            except Exception:  # noqa: BLE001
                LOG.exception("reconciliation of %s failed", agent.host)
        self._task = asyncio.create_task(self._periodic())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for agent in self.agents:
            try:
                await agent.driver.cleanup_host()
            except Exception:  # noqa: BLE001 - stopping anyway
                LOG.exception("driver cleanup of %s failed", agent.host)

    async def _periodic(self) -> None:
        last_reconcile = asyncio.get_running_loop().time()
        hosts = [a.host for a in self.agents]
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            try:
                down = self.faults.hosts_down(hosts) if self.faults is not None else set()
                if down:
                    # A host held down by a fault rule reports nothing and reads down at
                    # once (its messages are dropped by the fault bus).
                    await asyncio.to_thread(self.m.report_down, sorted(down))
                await asyncio.to_thread(self.m.heartbeat,
                                        [h for h in hosts if h not in down] if down else hosts)
                now = asyncio.get_running_loop().time()
                if now - last_reconcile >= self.reconcile_interval:
                    last_reconcile = now
                    for agent in self.agents:
                        await agent.reconcile()
            except Exception:  # noqa: BLE001 - keep reporting
                LOG.exception("compute periodic task failed")
