"""Nova's deprecated volume proxy (``os-volumes``, ``os-snapshots``; microversions up to 2.35):
volumes and snapshots of the block-storage service shown in Nova's shape.

The storage half of a create or delete runs after the answer, as the volume service's own API
does; the records are made (and quotas checked) before it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.responses import Response

from onestack.api.app import ApiRequest
from onestack.api.routes import serves
from onestack.common.errors import BadRequest, NotFound, ValidationError
from onestack.common.timeutils import isotime
from onestack.compute import schemas
from onestack.compute.microversions import version_of
from onestack.compute.resource_base import ResourceHandler, ServerHost, tgt
from onestack.compute.volumes import ComputeVolumes
from onestack.tasks import BackgroundWork


def _volume(v: dict[str, Any]) -> dict[str, Any]:
    atts = [{"id": v["id"], "volumeId": v["id"], "serverId": a.get("server_id"),
             "device": a.get("device")} for a in v["attachments"]]
    return {"id": v["id"], "status": v["status"], "size": v["size"],
            "availabilityZone": v["availability_zone"],
            "createdAt": isotime(v["created_at"], subsecond=True),
            "attachments": atts or [{}], "displayName": v["name"],
            "displayDescription": v["description"], "volumeType": v["volume_type"],
            "snapshotId": v["snapshot_id"], "metadata": v["metadata"]}


def _snapshot(s: dict[str, Any]) -> dict[str, Any]:
    return {"id": s["id"], "volumeId": s["volume_id"], "status": s["status"],
            "size": s["size"], "createdAt": isotime(s["created_at"], subsecond=True),
            "displayName": s["name"], "displayDescription": s["description"]}


def _page(req: ApiRequest, items: list[Any]) -> list[Any]:
    q = req.query
    if q.get("offset") is not None:
        items = items[schemas.integer(q.get("offset"), "offset", 0):]
    if q.get("limit") is not None:
        items = items[:schemas.integer(q.get("limit"), "limit", 0)]
    return items


def _opt_text(doc: dict[str, Any], key: str) -> str | None:
    value = doc.get(key)
    if value is not None and (not isinstance(value, str) or len(value) > 255):
        raise ValidationError(f"Invalid input for field/attribute {key}.")
    return value


class VolumeProxyRoutes(ResourceHandler):
    """``/os-volumes`` and ``/os-snapshots`` over the ``ComputeVolumes`` seam."""

    def __init__(self, api: ServerHost) -> None:
        super().__init__(api)
        self._background = BackgroundWork("volume proxy background work")

    def _vols(self, req: ApiRequest, rule: str) -> ComputeVolumes:
        if version_of(req.request.scope) >= "2.36":
            raise NotFound("The resource could not be found.")
        req.enforce(rule, tgt(req))
        if self.api.volumes is None:
            raise NotFound("The resource could not be found.")
        return self.api.volumes

    def _later(self, fn: Any, *args: Any) -> None:
        """Run the storage half of a create or delete in a worker thread, after the answer."""
        self._background.track(asyncio.ensure_future(asyncio.to_thread(fn, *args)))

    # ------------------------------------------------------------------ volumes
    @serves("GET", "/v2.1/os-volumes")
    @serves("GET", "/v2.1/os-volumes/detail")
    async def list_volumes(self, req: ApiRequest) -> dict[str, Any]:
        vols = self._vols(req, "os_compute_api:os-volumes:list")
        rows = await req.run(vols.list_volumes, req.ctx)
        return {"volumes": [_volume(v) for v in _page(req, rows)]}

    @serves("GET", "/v2.1/os-volumes/{id}")
    async def show_volume(self, req: ApiRequest) -> dict[str, Any]:
        vols = self._vols(req, "os_compute_api:os-volumes:show")
        return {"volume": _volume(await req.run(vols.show_volume, req.ctx, req.param("id")))}

    @serves("POST", "/v2.1/os-volumes")
    async def create_volume(self, req: ApiRequest) -> dict[str, Any]:
        vols = self._vols(req, "os_compute_api:os-volumes:create")
        doc = schemas.obj(await req.json(), "volume")
        schemas.only(doc, {"size", "display_name", "display_description", "volume_type",
                           "metadata", "availability_zone", "snapshot_id", "imageRef"},
                     "volume")
        size = doc.get("size")
        if isinstance(size, bool) or not isinstance(size, int | str):
            raise ValidationError("Invalid input for field/attribute size.")
        try:
            n = int(str(size))
        except ValueError:
            raise ValidationError("Invalid input for field/attribute size.") from None
        if n < 1:
            raise ValidationError("Invalid input for field/attribute size. Value: "
                                  f"{size}. {size} is less than the minimum of 1")
        meta = doc.get("metadata") or {}
        if not isinstance(meta, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
            raise ValidationError("Invalid input for field/attribute metadata.")
        snap = _opt_text(doc, "snapshot_id")
        image = _opt_text(doc, "imageRef")
        if image is not None and not schemas.is_uuid(image):
            raise BadRequest(f"Invalid image identifier or unable to access requested "
                             f"image {image}.")
        made = await req.run(vols.begin_create, req.ctx, n, _opt_text(doc, "display_name"),
                             _opt_text(doc, "display_description"),
                             _opt_text(doc, "volume_type"), meta,
                             _opt_text(doc, "availability_zone"), snap, image)
        self._later(vols.finish_create, made["id"], image)
        return {"volume": _volume(made)}

    @serves("DELETE", "/v2.1/os-volumes/{id}")
    async def delete_volume(self, req: ApiRequest) -> Response:
        vols = self._vols(req, "os_compute_api:os-volumes:delete")
        vid = req.param("id")
        await req.run(vols.delete_volume, req.ctx, vid)
        self._later(vols.finish_delete, vid)
        return Response(status_code=202)

    # ------------------------------------------------------------------ snapshots
    @serves("GET", "/v2.1/os-snapshots")
    @serves("GET", "/v2.1/os-snapshots/detail")
    async def list_snapshots(self, req: ApiRequest) -> dict[str, Any]:
        vols = self._vols(req, "os_compute_api:os-volumes:snapshots:list")
        rows = await req.run(vols.list_snapshots, req.ctx)
        return {"snapshots": [_snapshot(s) for s in _page(req, rows)]}

    @serves("GET", "/v2.1/os-snapshots/{id}")
    async def show_snapshot(self, req: ApiRequest) -> dict[str, Any]:
        vols = self._vols(req, "os_compute_api:os-volumes:snapshots:show")
        snap = await req.run(vols.show_snapshot, req.ctx, req.param("id"))
        return {"snapshot": _snapshot(snap)}

    @serves("POST", "/v2.1/os-snapshots")
    async def create_snapshot(self, req: ApiRequest) -> dict[str, Any]:
        vols = self._vols(req, "os_compute_api:os-volumes:snapshots:create")
        doc = schemas.obj(await req.json(), "snapshot")
        schemas.only(doc, {"volume_id", "force", "display_name", "display_description"},
                     "snapshot")
        vid = doc.get("volume_id")
        if not isinstance(vid, str) or not vid:
            raise ValidationError("Invalid input for field/attribute volume_id.")
        force = doc.get("force", False)
        if force not in (True, False, "True", "true", "False", "false"):
            raise ValidationError("Invalid input for field/attribute force.")
        snap = await req.run(vols.begin_snapshot, req.ctx, vid,
                             _opt_text(doc, "display_name"),
                             _opt_text(doc, "display_description"),
                             force in (True, "True", "true"))
        self._later(vols.finish_snapshot, snap["id"])
        return {"snapshot": _snapshot(snap)}

    @serves("DELETE", "/v2.1/os-snapshots/{id}")
    async def delete_snapshot(self, req: ApiRequest) -> Response:
        vols = self._vols(req, "os_compute_api:os-volumes:snapshots:delete")
        sid = req.param("id")
        await req.run(vols.delete_snapshot, req.ctx, sid)
        self._later(vols.finish_delete_snapshot, sid)
        return Response(status_code=202)
