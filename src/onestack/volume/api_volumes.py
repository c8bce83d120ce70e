"""Block-storage API routes for volumes themselves: list (with filters and paging), detail,
summary (3.12), create (blank, from an image, snapshot or volume), show, update and delete."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from onestack.api.app import ApiRequest, FastJSON
from onestack.api.routes import serves
from onestack.common.errors import BadRequest, NotFound
from onestack.volume import views
from onestack.volume.api_handler import VolumeHandler
from onestack.volume.api_listing import sees_all_projects, sorted_page, with_count
from onestack.volume.microversion import version_of
from onestack.volume.params import _bool, _metadata, _obj, _size, _text, _updates
from onestack.volume.records import VolumeRecord
from onestack.volume.row_changes import VOLUMES

VOLUME_SORT_KEYS = ("created_at", "updated_at", "id", "name", "size", "status",
                    "availability_zone", "bootable")


class VolumeRoutes(VolumeHandler):
    """Volumes: list, show, create, update, delete (``/v3/volumes``)."""

    def _filtered(self, req: ApiRequest, rows: list[VolumeRecord], links: dict[str, Any]
                  ) -> list[VolumeRecord]:
        q = req.query
        if "name" in q:
            rows = [v for v in rows if v.name == q["name"]]
        if "status" in q:
            rows = [v for v in rows if v.status == q["status"]]
        if "availability_zone" in q:
            rows = [v for v in rows if v.availability_zone == q["availability_zone"]]
        if "bootable" in q:
            want = _bool(q["bootable"], "bootable")
            rows = [v for v in rows if v.bootable == want]
        if "metadata" in q:
            import ast
            import json
            try:
                meta = json.loads(q["metadata"])
            except ValueError:
                try:
                    meta = ast.literal_eval(q["metadata"])
                except (ValueError, SyntaxError):
                    raise BadRequest("Invalid filter: metadata must be a JSON object.") \
                        from None
            if not isinstance(meta, dict):
                raise BadRequest("Invalid filter: metadata must be a JSON object.")
            rows = [v for v in rows if all((v.metadata_ or {}).get(k) == val
                                           for k, val in meta.items())]
        return sorted_page(req, rows, VOLUME_SORT_KEYS, self.api.max_limit, links)

    async def _volume_rows(self, req: ApiRequest, links: dict[str, Any]) -> list[VolumeRecord]:
        req.enforce("volume:get_all", {"project_id": req.ctx.project_id or ""})
        all_projects = sees_all_projects(req)
        rows = await req.run(self.m.list_volumes, req.ctx, all_projects,
                             req.query.get("project_id"))
        return self._filtered(req, rows, links)

    @serves("GET", "/v3/volumes")
    async def list_volumes(self, req: ApiRequest) -> dict[str, Any]:
        links: dict[str, Any] = {}
        rows = await self._volume_rows(req, links)
        return with_count(req, {"volumes": [views.volume_summary(req.base_url, v)
                                            for v in rows]}, len(rows), links)

    @serves("GET", "/v3/volumes/detail")
    async def list_volumes_detail(self, req: ApiRequest) -> dict[str, Any]:
        links: dict[str, Any] = {}
        rows = await self._volume_rows(req, links)
        names = await req.run(self.m.type_names)
        ver = version_of(req.request.scope)
        return with_count(req, {"volumes": [
            views.volume(req.base_url, v, req.ctx, ver, names) for v in rows]}, len(rows),
            links)

    @serves("GET", "/v3/volumes/summary")
    async def volume_summary(self, req: ApiRequest) -> dict[str, Any]:
        """Counts and GiB of the volumes listed (3.12; their metadata values at 3.36)."""
        if version_of(req.request.scope) < "3.12":
            raise NotFound("Volume summary could not be found.")
        rows = await self._volume_rows(req, {})
        doc: dict[str, Any] = {"total_size": sum(v.size for v in rows),
                               "total_count": len(rows)}
        if version_of(req.request.scope) >= "3.36":
            meta: dict[str, list[str]] = {}
            for v in rows:
                for k, val in (v.metadata_ or {}).items():
                    if val not in meta.setdefault(k, []):
                        meta[k].append(val)
            doc["metadata"] = meta
        return {"volume-summary": doc}

    async def _volume_doc(self, req: ApiRequest, v: VolumeRecord, extended: bool = True
                          ) -> dict[str, Any]:
        names = await req.run(self.m.type_names)
        return {"volume": views.volume(req.base_url, v, req.ctx,
                                       version_of(req.request.scope), names, extended)}

    @serves("GET", "/v3/volumes/{id}")
    async def show_volume(self, req: ApiRequest) -> dict[str, Any]:
        v = await req.run(self.m.get_volume, req.ctx, req.param("id"))
        req.enforce("volume:get", {"project_id": v.project_id})
        return await self._volume_doc(req, v)

    @serves("POST", "/v3/volumes")
    async def create_volume(self, req: ApiRequest) -> Response:
        body = _obj(await req.json(), "volume")
        req.enforce("volume:create", {"project_id": req.ctx.project_id or ""})
        if body.get("backup_id"):
            raise BadRequest("Invalid input received: volumes from backups are not "
                             "supported by this cloud yet.")
        image = None
        image_ref = body.get("imageRef", body.get("image_id"))
        snapshot_id = _text(body.get("snapshot_id"), "snapshot_id")
        if image_ref is not None:
            if self.m.images is None:
                raise BadRequest("Invalid input received: no image service to create a "
                                 "volume from.")
            image_ref = _text(image_ref, "imageRef", nullable=False) or ""
            # 3.46: Nova's snapshot of a volume-backed server (an image without data whose
            # block device mapping names volume snapshots) gives the boot snapshot's copy.
            boot_snapshot = None
            if version_of(req.request.scope) >= "3.46":
                boot_snapshot = await req.run(self.m.images.boot_snapshot, req.ctx,
                                              image_ref)
            if boot_snapshot is not None:
                try:
                    await req.run(self.m.get_snapshot, req.ctx, boot_snapshot)
                except NotFound:
                    raise NotFound(f"Nova specific image is found, but boot volume "
                                   f"snapshot id:{boot_snapshot} not found.") from None
                snapshot_id = boot_snapshot
            else:
                image = await req.run(self.m.images.volume_image, req.ctx, image_ref)
        size = _size(body["size"]) if body.get("size") is not None else None
        if size is None and not (snapshot_id or body.get("source_volid")):
            raise BadRequest("Invalid input for field/attribute size. Value: None. None is "
                             "not of type 'integer', 'string'")
        vtype = body.get("volume_type")
        group_id = None
        if body.get("group_id") is not None:
            if version_of(req.request.scope) < "3.13":
                raise BadRequest("Invalid input received: group_id needs microversion 3.13.")
            group_id = _text(body["group_id"], "group_id", nullable=False)
        v = await req.run(
            self.m.create_volume, req.ctx, size,
            _text(body.get("name", body.get("display_name")), "name"),
            _text(body.get("description", body.get("display_description")), "description"),
            _text(vtype, "volume_type"), _metadata(body.get("metadata")),
            _text(body.get("availability_zone"), "availability_zone"),
            snapshot_id, _text(body.get("source_volid"), "source_volid"),
            _bool(body.get("multiattach", False), "multiattach"), image, group_id)
        self.api.later(self.m.finish_create, v.id, image)
        return FastJSON(await self._volume_doc(req, v, extended=False), status_code=202)

    @serves("PUT", "/v3/volumes/{id}")
    async def update_volume(self, req: ApiRequest) -> dict[str, Any]:
        changes = _updates(_obj(await req.json(), "volume"), "volume")
        v = await req.run(self.m.update_row, req.ctx, VOLUMES, req.param("id"), changes)
        return await self._volume_doc(req, v, extended=False)

    @serves("DELETE", "/v3/volumes/{id}")
    async def delete_volume(self, req: ApiRequest) -> Response:
        vid = req.param("id")
        cascade = _bool(req.query.get("cascade", "false"), "cascade")
        force = "force" in req.query and _bool(req.query["force"], "force")
        return await self.api.delete_later(req, self.m.begin_delete, self.m.finish_delete,
                                           vid, force, cascade)
