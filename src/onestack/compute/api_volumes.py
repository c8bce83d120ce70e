"""Compute API routes for a server's volumes (``os-volume_attachments``).

Attach, as Nova does it with new-style Cinder attachments: the API reserves the volume (an
attachment), records the block device (``compute.block_devices``), connects the attachment
for the server's host, asks that host's agent to give the guest the disk (hot-plugged when it
runs, at its next start otherwise), then completes the attachment (the volume is ``in-use``).
Detach reverses it: ``detaching``, the guest lets go of the disk, the attachment is deleted
(the volume is ``available``). Unlike Nova the API waits for the agent, so a failure is
answered (409) and rolled back instead of leaving an instance fault.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import tempfile
from typing import Any

from starlette.responses import Response

from onestack.api.app import ApiRequest
from onestack.api.routes import serves
from onestack.common.errors import APIError, BadRequest, Conflict, NotFound, ValidationError
from onestack.compute import block_devices, schemas, states
from onestack.compute.images import image_uploader
from onestack.compute.manager import InstanceDict
from onestack.compute.microversions import version_of
from onestack.compute.resource_base import ResourceHandler, ServerHost, project_ctx
from onestack.compute.volumes import ComputeVolumes

LOG = logging.getLogger(__name__)

#: How long the API waits for an agent to attach or detach a disk.
VOLUME_TIMEOUT = 90
#: States in which a server's volumes may change (Nova's ``check_instance_state``).
_STATES = (states.ACTIVE, states.PAUSED, states.STOPPED, states.RESIZED,
           states.SOFT_DELETED, states.SHELVED, states.SHELVED_OFFLOADED)


def _view(req: ApiRequest, inst: InstanceDict, bdm: dict[str, Any],
          created: bool = False) -> dict[str, Any]:
    v = version_of(req.request.scope)
    doc: dict[str, Any] = {"id": bdm["volume_id"], "serverId": inst["uuid"],
                           "volumeId": bdm["volume_id"], "device": bdm.get("device")}
    if v >= "2.70":
        doc["tag"] = bdm.get("tag")
    if v >= "2.79":
        doc["delete_on_termination"] = bool(bdm.get("delete_on_termination"))
    if v >= "2.89" and not created:
        del doc["id"]
        doc["attachment_id"] = bdm.get("attachment_id")
        doc["bdm_uuid"] = bdm.get("bdm_uuid")
    return doc


class VolumeAttachmentRoutes(ResourceHandler):
    """``/servers/{id}/os-volume_attachments`` over the ``ComputeVolumes`` seam."""

    def __init__(self, api: ServerHost) -> None:
        super().__init__(api)
        self.bdms = block_devices.BlockDevices(api.m)
        self._locks: dict[str, asyncio.Lock] = {}

    @property
    def volumes(self) -> ComputeVolumes:
        if self.api.volumes is None:
            raise BadRequest("Volume service is not available in this cloud.")
        return self.api.volumes

    def _lock(self, uuid: str) -> asyncio.Lock:
        return self._locks.setdefault(uuid, asyncio.Lock())

    @staticmethod
    def _check_state(inst: InstanceDict, action: str) -> None:
        if inst["locked"]:
            raise Conflict(f"Instance {inst['uuid']} is locked")
        if inst["vm_state"] not in _STATES or inst["task_state"] is not None:
            raise Conflict(f"Cannot '{action}' instance {inst['uuid']} while it is in "
                           f"vm_state {inst['vm_state']}")

    @staticmethod
    def _volume_id(req: ApiRequest) -> str:
        vid = req.param("volume_id")
        if not schemas.is_uuid(vid):
            raise NotFound(f"volume_id not found: {vid}")
        return vid

    # ------------------------------------------------------------------ reading
    @serves("GET", "/v2.1/servers/{server_id}/os-volume_attachments")
    async def list(self, req: ApiRequest) -> dict[str, Any]:
        inst = await self.api.find_server(req, "os_compute_api:os-volumes-attachments:index")
        bdms = block_devices.of(inst)
        q = req.query
        if q.get("offset") is not None:
            bdms = bdms[schemas.integer(q.get("offset"), "offset", 0):]
        if q.get("limit") is not None:
            bdms = bdms[:schemas.integer(q.get("limit"), "limit", 0)]
        return {"volumeAttachments": [_view(req, inst, b) for b in bdms]}

    @serves("GET", "/v2.1/servers/{server_id}/os-volume_attachments/{volume_id}")
    async def show(self, req: ApiRequest) -> dict[str, Any]:
        inst = await self.api.find_server(req, "os_compute_api:os-volumes-attachments:show")
        vid = self._volume_id(req)
        bdm = block_devices.find(inst, vid)
        if bdm is None:
            raise NotFound(f"Instance {inst['uuid']} is not attached.")
        return {"volumeAttachment": _view(req, inst, bdm)}

    # ------------------------------------------------------------------ attach
    @staticmethod
    def _attach_body(req: ApiRequest, body: Any) -> dict[str, Any]:
        v = version_of(req.request.scope)
        att = schemas.obj(body, "volumeAttachment")
        schemas.only_as_of(att, v, {"volumeId", "device"},
                           {"tag": "2.49", "delete_on_termination": "2.79"}, "volumeAttachment")
        vid = att.get("volumeId")
        if not isinstance(vid, str) or not schemas.is_uuid(vid):
            raise ValidationError("Invalid input for field/attribute volumeId.")
        tag = att.get("tag")
        if tag is not None and (not isinstance(tag, str) or not 0 < len(tag) <= 60
                                or "/" in tag or "," in tag):
            raise ValidationError("Invalid input for field/attribute tag.")
        if "delete_on_termination" in att and not isinstance(att["delete_on_termination"],
                                                             bool):
            raise ValidationError("Invalid input for field/attribute delete_on_termination.")
        device = att.get("device")
        if device is not None and (not isinstance(device, str) or len(device) > 255):
            raise ValidationError("Invalid input for field/attribute device.")
        return att

    @serves("POST", "/v2.1/servers/{server_id}/os-volume_attachments")
    async def attach(self, req: ApiRequest) -> dict[str, Any]:
        api = self.api
        inst = await api.find_server(req, "os_compute_api:os-volumes-attachments:create")
        att = self._attach_body(req, await req.json())
        vols = self.volumes
        vid = att["volumeId"]
        async with self._lock(inst["uuid"]):
            inst = await api.m.db.run(api.m.get_instance, req.ctx, inst["uuid"])
            self._check_state(inst, "attach_volume")
            volume = await req.run(vols.get, req.ctx, vid)
            if block_devices.find(inst, vid) is not None or any(
                    a.get("server_id") == inst["uuid"] for a in volume["attachments"]):
                raise BadRequest(f"Invalid volume: volume {vid} is already attached to "
                                 f"server {inst['uuid']}.")
            if volume["multiattach"] and version_of(req.request.scope) < "2.60":
                raise BadRequest("Multiattach volumes are only supported starting with "
                                 "compute API version 2.60.")
            device = block_devices.device_name(inst, att.get("device"))
            attachment_id = await req.run(vols.reserve, req.ctx, vid, inst["uuid"])
            try:
                bdm = await req.run(self.bdms.add, inst["uuid"], {
                    "volume_id": vid, "attachment_id": attachment_id, "device": device,
                    "tag": att.get("tag"), "multiattach": bool(volume["multiattach"]),
                    "delete_on_termination": bool(att.get("delete_on_termination"))})
            except BaseException:
                await req.run(vols.release, attachment_id)
                raise
            try:
                bdm = await self._connect_guest(req, inst, bdm)
            except BaseException:
                await req.run(self.bdms.remove, inst["uuid"], vid)
                await req.run(vols.release, attachment_id)
                raise
            await self.record_done(req, inst, "attach_volume")
        return {"volumeAttachment": _view(req, inst, bdm, created=True)}

    async def _connect_guest(self, req: ApiRequest, inst: InstanceDict,
                             bdm: dict[str, Any]) -> dict[str, Any]:
        """Connect the attachment for the server's host and hand the disk to the guest."""
        vols = self.volumes
        host = inst["host"] or ""
        info = await req.run(vols.connect, bdm["attachment_id"], host, bdm["device"])
        bdm = {**bdm, "connection_info": info,
               "mode": (info.get("data") or {}).get("access_mode", "rw")}
        if inst["host"] and inst["vm_state"] != states.SHELVED_OFFLOADED:
            res = await self._agent(inst, "attach_volume", bdm)
            if res.get("error"):
                raise Conflict(f"Failed to attach volume {bdm['volume_id']} to "
                               f"{inst['uuid']}: {res['error']}")
        await req.run(self.bdms.update, inst["uuid"], bdm["volume_id"],
                      connection_info=info, mode=bdm["mode"])
        await req.run(vols.complete, bdm["attachment_id"])
        return bdm

    async def _agent(self, inst: InstanceDict, method: str,
                     bdm: dict[str, Any]) -> dict[str, Any]:
        try:
            res = await self.api.call(inst, method, timeout=VOLUME_TIMEOUT,
                                       instance_uuid=inst["uuid"], volume=bdm)
        except Conflict as exc:
            return {"error": exc.message}
        return res if isinstance(res, dict) else {}

    # ------------------------------------------------------------------ server snapshots
    async def snapshot_server(self, req: ApiRequest, inst: InstanceDict, name: str,
                              meta: dict[str, str]) -> str:
        """``createImage`` of a volume-backed server (Nova's ``snapshot_volume_backed``): a
        snapshot of each of its volumes, taken with the guest's I/O paused, and an image
        without data whose ``block_device_mapping`` boots a new server from them."""
        vols = self.volumes
        api = self.api
        bdms = [b for b in block_devices.of(inst) if b.get("volume_id")]
        ctx = project_ctx(inst["project_id"])
        paused = False
        if inst["host"] and inst["vm_state"] != states.SHELVED_OFFLOADED and bdms:
            paused = bool((await self._agent(inst, "pause_volume_io", bdms[0])).get("paused"))
        mappings = []
        try:
            for b in bdms:
                snap = await req.run(vols.begin_snapshot, ctx, b["volume_id"],
                                     f"snapshot for {name}", None, True)
                await req.run(vols.finish_snapshot, snap["id"])
                mappings.append({
                    "source_type": "snapshot", "destination_type": "volume",
                    "snapshot_id": snap["id"], "volume_size": snap["size"],
                    "boot_index": b.get("boot_index"), "device_name": b.get("device"),
                    "delete_on_termination": bool(b.get("delete_on_termination")),
                    "tag": b.get("tag"), "volume_type": None, "disk_bus": "virtio",
                    "device_type": "disk", "no_device": None, "guest_format": None})
        finally:
            if paused:
                await self._agent(inst, "resume_volume_io", bdms[0])
        extra = {**meta, "block_device_mapping": json.dumps(mappings), "bdm_v2": "True",
                 "root_device_name": "/dev/vda"}
        image_id = await req.run(self.new_image, req, inst, name, extra,
                                 "snapshot")
        await req.run(self._empty_upload, image_id)
        await req.run(api.m.record_action, req.ctx, inst["uuid"], "createImage")
        return str(image_id)

    def _empty_upload(self, image_id: str) -> None:
        """The image of a volume-backed server holds no data: it is made active, empty."""
        with tempfile.NamedTemporaryFile(prefix="onestack-empty-") as fh:
            image_uploader(self.api.images)(image_id, fh.name)

    # ------------------------------------------------------------------ events
    def uses_volume(self, server_id: str, volume_id: str) -> bool:
        """Whether the server has the volume attached (compute's record; blocking)."""
        try:
            inst = self.api.m.get_instance(None, server_id)
        except NotFound:
            return False
        return block_devices.find(inst, volume_id) is not None

    async def volume_extended(self, volume_id: str, servers: list[str],
                              new_size: int) -> None:
        """A volume of these servers grew (Cinder's ``volume-extended`` event): each
        running guest is told the new size of the disk (its host's agent resizes it)."""
        api = self.api
        for uuid in servers:
            try:
                inst = await api.m.db.run(api.m.get_instance, None, uuid)
            except NotFound:
                continue
            bdm = block_devices.find(inst, volume_id)
            if bdm is None or not inst["host"] or \
                    inst["vm_state"] == states.SHELVED_OFFLOADED:
                continue
            # An instance action with the outcome as its event, as Nova records it.
            ctx = project_ctx(inst["project_id"])
            ctx.user_id = inst["user_id"]  # the action is the server owner's (never None)
            await api.m.db.run(api.m.record_action, ctx, uuid, "extend_volume")
            try:
                res = await api.call(inst, "extend_volume",
                                      timeout=VOLUME_TIMEOUT, instance_uuid=uuid,
                                      volume=bdm, new_size=new_size)
            except Conflict as exc:  # the guest sees the size at its next start
                res = {"error": exc.message}
            error = res.get("error") if isinstance(res, dict) else None
            if error:
                LOG.warning("could not tell %s that volume %s grew: %s", uuid, volume_id,
                            error)
            await api.m.db.run(api.m.record_event, uuid, "compute_extend_volume",
                               inst["host"], error)

    async def pause_io(self, volume_id: str, servers: list[str]) -> list[str]:
        """Pause the disk I/O of the running guests using the volume (a snapshot of it is
        being taken); returns the servers paused (``resume_io`` them afterwards)."""
        paused = []
        for uuid in servers:
            inst = await self._running_with(uuid, volume_id)
            if inst is None:
                continue
            res = await self._agent(inst, "pause_volume_io",
                                    block_devices.find(inst, volume_id) or {})
            if res.get("paused"):
                paused.append(uuid)
        return paused

    async def resume_io(self, volume_id: str, servers: list[str]) -> None:
        for uuid in servers:
            inst = await self._running_with(uuid, volume_id)
            if inst is not None:
                await self._agent(inst, "resume_volume_io",
                                  block_devices.find(inst, volume_id) or {})

    async def _running_with(self, uuid: str, volume_id: str) -> InstanceDict | None:
        try:
            inst = await self.api.m.db.run(self.api.m.get_instance, None, uuid)
        except NotFound:
            return None
        if not inst["host"] or inst["vm_state"] == states.SHELVED_OFFLOADED or \
                block_devices.find(inst, volume_id) is None:
            return None
        return inst

    # ------------------------------------------------------------------ update / detach
    @serves("PUT", "/v2.1/servers/{server_id}/os-volume_attachments/{volume_id}")
    async def update(self, req: ApiRequest) -> Response:
        api = self.api
        vid = self._volume_id(req)
        body = await req.json()
        att = schemas.obj(body, "volumeAttachment")
        v = version_of(req.request.scope)
        schemas.only_as_of(att, v, {"volumeId", "device"},
                           dict.fromkeys(("id", "serverId", "tag", "delete_on_termination"),
                                         "2.85"), "volumeAttachment")
        new = att.get("volumeId")
        if not isinstance(new, str) or not schemas.is_uuid(new):
            raise ValidationError("Invalid input for field/attribute volumeId.")
        # Nova checks the swap policy alone for a swap, the update policy otherwise.
        inst = await api.find_server(req, "os_compute_api:os-volumes-attachments:" + (
            "swap" if new != vid else "update"))
        if new != vid:
            # Nova's checks before a swap (404 for an unknown volume, or one the server
            # does not have); the swap itself, which only Cinder's volume migration asks
            # for (service role), is not done by this cloud.
            await req.run(self.volumes.get, req.ctx, vid)
            await req.run(self.volumes.get, req.ctx, new)
            if block_devices.find(inst, vid) is None:
                raise NotFound(f"volume_id not found: {vid}")
            raise Conflict("Swapping the volume of a server is not supported by this "
                           "cloud's hypervisor driver.")
        if v < "2.85":
            raise BadRequest("The volume was not changed: volumeId names the attached "
                             "volume (updating an attachment needs microversion 2.85).")
        async with self._lock(inst["uuid"]):
            inst = await api.m.db.run(api.m.get_instance, req.ctx, inst["uuid"])
            bdm = block_devices.find(inst, vid)
            if bdm is None:
                raise NotFound(f"volume_id not found: {vid}")
            for key, have in (("id", vid), ("serverId", inst["uuid"]),
                              ("device", bdm.get("device")), ("tag", bdm.get("tag"))):
                if key in att and att[key] != have:
                    raise BadRequest(f"Updating '{key}' of a volume attachment is not "
                                     "supported.")
            if "delete_on_termination" in att:
                dot = att["delete_on_termination"]
                if not isinstance(dot, bool):
                    raise ValidationError("Invalid input for field/attribute "
                                          "delete_on_termination.")
                await req.run(self.bdms.update, inst["uuid"], vid, delete_on_termination=dot)
        return Response(status_code=202)

    @serves("DELETE", "/v2.1/servers/{server_id}/os-volume_attachments/{volume_id}")
    async def detach(self, req: ApiRequest) -> Response:
        api = self.api
        inst = await api.find_server(req, "os_compute_api:os-volumes-attachments:delete")
        vid = self._volume_id(req)
        vols = self.volumes
        async with self._lock(inst["uuid"]):
            inst = await api.m.db.run(api.m.get_instance, req.ctx, inst["uuid"])
            self._check_state(inst, "detach_volume")
            await req.run(vols.get, req.ctx, vid)  # 404 for an unknown volume
            bdm = block_devices.find(inst, vid)
            if bdm is None:
                raise NotFound(f"volume_id not found: {vid}")
            if bdm.get("boot_index") == 0:
                raise BadRequest("Cannot detach a root device volume")
            await req.run(vols.begin_detaching, vid)
            if inst["host"] and inst["vm_state"] != states.SHELVED_OFFLOADED:
                res = await self._agent(inst, "detach_volume", bdm)
                if res.get("error"):
                    await req.run(vols.roll_detaching, vid)
                    raise Conflict(f"Failed to detach volume {vid} from {inst['uuid']}: "
                                   f"{res['error']}")
            with contextlib.suppress(APIError):  # removed meanwhile (a force detach)
                await req.run(vols.release, bdm["attachment_id"])
            await req.run(self.bdms.remove, inst["uuid"], vid)
            await self.record_done(req, inst, "detach_volume")
        return Response(status_code=202)
