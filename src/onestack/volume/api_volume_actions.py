"""Block-storage API routes for volume actions (``/v3/volumes/{id}/action``): extend, bootable
and read-only flags, status reset, force-delete, re-image (3.68), upload to an image, retype,
the volume's image metadata, the attach/detach actions and connections."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.responses import Response

from onestack.api.app import ApiRequest, FastJSON
from onestack.api.routes import serves
from onestack.common.errors import BadRequest, NotFound
from onestack.common.ids import is_uuid
from onestack.common.timeutils import isotime
from onestack.volume import attach_actions as aa
from onestack.volume import reimage
from onestack.volume.api_handler import VolumeHandler
from onestack.volume.manager import VOLUME_STATUSES
from onestack.volume.microversion import version_of
from onestack.volume.params import _action_body, _bool, _metadata, _obj, _size, _text
from onestack.volume.records import VolumeRecord


class VolumeActionRoutes(VolumeHandler):
    """The actions of a volume (``POST /v3/volumes/{id}/action``)."""

    @serves("POST", "/v3/volumes/{id}/action")
    async def volume_action(self, req: ApiRequest) -> Response:
        body = _action_body(await req.json(), "volume")
        (action, arg), = body.items()
        vid = req.param("id")
        if action == "os-extend":
            new = _size(_obj(body, action).get("new_size"), "new_size")
            await req.run(self.m.begin_extend, req.ctx, vid, new,
                          version_of(req.request.scope) >= "3.42")
            self.api.background.track(asyncio.ensure_future(self._extend(vid, new)))
            return Response(status_code=202)
        if action == "os-set_bootable":
            flag = _bool(_obj(body, action).get("bootable"), "bootable")
            await req.run(self.m.set_bootable, req.ctx, vid, flag)
            return Response(status_code=200)
        if action == "os-update_readonly_flag":
            flag = _bool(_obj(body, action).get("readonly"), "readonly")
            await req.run(self.m.set_readonly, req.ctx, vid, flag)
            return Response(status_code=202)
        if action == "os-reset_status":
            args = _obj(body, action)
            status = args.get("status")
            if status not in VOLUME_STATUSES:
                raise BadRequest(f"Invalid input received: '{status}' is not a valid "
                                 "volume status.")
            attach = args.get("attach_status")
            if attach is not None and attach not in ("attached", "detached"):
                raise BadRequest(f"Invalid input received: '{attach}' is not a valid "
                                 "attach status.")
            await req.run(self.m.reset_status, req.ctx, vid, status, attach)
            return Response(status_code=202)
        if action == "os-force_delete":
            return await self.api.delete_later(req, self.m.begin_delete,
                                               self.m.finish_delete, vid, True, True)
        if action == "os-reimage":
            return await self._reimage(req, vid, arg)
        if action == "os-volume_upload_image":
            return await self._upload_image(req, vid, _obj(body, action))
        if action == "os-retype":
            args = _obj(body, action)
            policy = args.get("migration_policy", "never")
            if policy not in ("never", "on-demand"):
                raise BadRequest(f"Invalid input received: migration_policy '{policy}' is "
                                 "not 'never' or 'on-demand'.")
            await req.run(self.m.retype, req.ctx, vid,
                          _text(args.get("new_type"), "new_type", nullable=False), policy)
            return Response(status_code=202)
        if action in ("os-set_image_metadata", "os-unset_image_metadata",
                      "os-show_image_metadata"):
            meta = await self._image_metadata(req, vid, action, arg)
            if action == "os-unset_image_metadata":
                return Response(status_code=200)
            return FastJSON({"metadata": meta})
        if action in aa.ACTIONS:
            args = arg if isinstance(arg, dict) else {}
            if action in ("os-detach", "os-force_detach"):
                await req.run(self.api.guard_nova, req.ctx, vid, args.get("attachment_id"))
            await req.run(self.m.attach_action, req.ctx, vid, action, args)
            return Response(status_code=202)
        if action == "os-initialize_connection":
            v = await self._connector_volume(
                req, vid, "volume_extension:volume_actions:initialize_connection", arg)
            if not v.provider_location:
                raise BadRequest(f"Invalid volume: Volume {vid} has no data yet.")
            info = await req.run(self.m.driver.connection_info, v.provider_location, v.id)
            return FastJSON({"connection_info": info}, status_code=200)
        if action == "os-terminate_connection":
            await self._connector_volume(
                req, vid, "volume_extension:volume_actions:terminate_connection", arg)
            await req.run(self.api.guard_nova, req.ctx, vid, None)
            return Response(status_code=202)
        raise BadRequest(f"There is no such action: {action}")

    async def _connector_volume(self, req: ApiRequest, vid: str, policy: str,
                                arg: Any) -> VolumeRecord:
        """The volume of ``os-initialize_connection`` / ``os-terminate_connection`` once
        ``policy`` allows it and the body names a ``connector``."""
        v = await req.run(self.m.get_volume, req.ctx, vid)
        req.enforce(policy, {"project_id": v.project_id})
        if not isinstance(arg, dict) or not isinstance(arg.get("connector"), dict):
            raise BadRequest("Must specify 'connector'")
        return v

    async def _reimage(self, req: ApiRequest, vid: str, args: Any) -> Response:
        """``os-reimage`` (3.68): the volume's data replaced by an image's disk."""
        if version_of(req.request.scope) < "3.68":
            raise NotFound("There is no such action: os-reimage")
        if not isinstance(args, dict) or set(args) - {"image_id", "reimage_reserved"}:
            raise BadRequest("Invalid input for field/attribute os-reimage: only image_id "
                             "and reimage_reserved are allowed.")
        image_id = args.get("image_id")
        if not isinstance(image_id, str) or not is_uuid(image_id):
            raise BadRequest("Invalid input for field/attribute image_id: a UUID is "
                             "required.")
        reserved = _bool(args.get("reimage_reserved", False), "reimage_reserved")
        if self.m.images is None:
            raise BadRequest("Invalid input received: no image service to re-image from.")
        image = await req.run(self.m.images.volume_image, req.ctx, image_id)
        await req.run(reimage.begin, self.m, req.ctx, vid, image, reserved)
        self.api.later(reimage.finish, self.m, vid, image)
        return Response(status_code=202)

    async def _extend(self, volume_id: str, new_size: int) -> None:
        """Grow the volume, then tell the servers using it (Nova's ``volume-extended``)."""
        servers = await asyncio.to_thread(self.m.finish_extend, volume_id, new_size)
        if servers and self.api.compute_events is not None:
            await self.api.compute_events.volume_extended(volume_id, servers, new_size)

    async def _upload_image(self, req: ApiRequest, vid: str, args: dict[str, Any]
                            ) -> Response:
        """Copy a volume into a new image (raw data; Cinder's ``os-volume_upload_image``)."""
        if self.m.images is None:
            raise BadRequest("Invalid input received: no image service to upload to.")
        name = _text(args.get("image_name"), "image_name", nullable=False) or ""
        disk_format = args.get("disk_format", "raw")
        if disk_format not in ("raw", "qcow2", "vmdk", "vdi", "vhdx"):
            raise BadRequest(f"Invalid input received: disk_format {disk_format} is not "
                             "one of raw, qcow2, vmdk, vdi, vhdx.")
        container = args.get("container_format", "bare")
        if container != "bare":
            raise BadRequest(f"Invalid input received: container_format {container} is "
                             "not supported (bare only).")
        visibility = args.get("visibility", "private")
        protected = _bool(args.get("protected", False), "protected")
        force = _bool(args.get("force", False), "force")
        vol = await req.run(self.m.begin_upload, req.ctx, vid, force)
        try:
            image_id = await req.run(self.m.images.new_image, req.ctx, name, disk_format,
                                     container, str(visibility), protected)
        except Exception:
            await req.run(self.m.end_upload, vid)
            raise
        self.api.later(self.m.finish_upload, vid, image_id, disk_format,
                        self.api.scratch_dir)
        names = await req.run(self.m.type_names)
        return FastJSON({"os-volume_upload_image": {
            "id": vol.id, "updated_at": isotime(vol.updated_at, subsecond=True),
            "status": "uploading", "display_description": vol.description, "size": vol.size,
            "volume_type": {"name": names.get(vol.volume_type_id or "")},
            "image_id": image_id, "container_format": container,
            "disk_format": disk_format, "image_name": name}}, status_code=202)

    async def _image_metadata(self, req: ApiRequest, vid: str, action: str,
                              arg: Any) -> dict[str, str]:
        """``volume_image_metadata``: set keys, unset one, or show it."""
        if action == "os-show_image_metadata":
            v = await req.run(self.m.get_volume, req.ctx, vid)
            req.enforce("volume_extension:volume_image_metadata:show",
                        {"project_id": v.project_id})
            return dict(v.image_metadata or {})
        if not isinstance(arg, dict):
            raise BadRequest(f"Malformed request body: {action} needs an object.")
        if action == "os-set_image_metadata":
            meta = _metadata(arg.get("metadata"))
            out: dict[str, str] = await req.run(self.m.set_image_metadata, req.ctx, vid, meta)
            return out
        key = arg.get("key")
        if not isinstance(key, str) or not key:
            raise BadRequest("Malformed request body: os-unset_image_metadata needs a key.")
        out = await req.run(self.m.unset_image_metadata, req.ctx, vid, key)
        return out
