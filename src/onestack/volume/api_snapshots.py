"""Block-storage API routes for snapshots: list, detail, create (the copy taken with the
guests' I/O paused), show, update, delete and the snapshot actions (reset-status,
update-snapshot-status, force-delete)."""

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
from onestack.volume.params import _action_body, _bool, _metadata, _obj, _text, _updates
from onestack.volume.records import SnapshotRecord
from onestack.volume.row_changes import SNAPSHOTS


class SnapshotRoutes(VolumeHandler):
    """Snapshots (``/v3/snapshots``) and their actions."""

    def _snap_doc(self, req: ApiRequest, s: SnapshotRecord, extended: bool = True
                  ) -> dict[str, Any]:
        return {"snapshot": views.snapshot(req.base_url, s, version_of(req.request.scope),
                                           extended)}

    @serves("GET", "/v3/snapshots")
    @serves("GET", "/v3/snapshots/detail")
    async def list_snapshots(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("volume:get_all_snapshots", {"project_id": req.ctx.project_id or ""})
        rows = await req.run(self.m.list_snapshots, req.ctx, sees_all_projects(req))
        for key in ("name", "status", "volume_id"):
            if key in req.query:
                rows = [s for s in rows if getattr(s, key) == req.query[key]]
        links: dict[str, Any] = {}
        rows = sorted_page(req, rows, ("created_at", "updated_at", "id", "name", "size",
                                       "status"), self.api.max_limit, links)
        ver = version_of(req.request.scope)
        detail = req.request.url.path.endswith("/detail")
        return with_count(req, {"snapshots": [
            views.snapshot(req.base_url, s, ver, detail) for s in rows]}, len(rows), links)

    @serves("GET", "/v3/snapshots/{id}")
    async def show_snapshot(self, req: ApiRequest) -> dict[str, Any]:
        s = await req.run(self.m.get_snapshot, req.ctx, req.param("id"))
        req.enforce("volume:get_snapshot", {"project_id": s.project_id})
        return self._snap_doc(req, s)

    @serves("POST", "/v3/snapshots")
    async def create_snapshot(self, req: ApiRequest) -> Response:
        body = _obj(await req.json(), "snapshot")
        req.enforce("volume:create_snapshot", {"project_id": req.ctx.project_id or ""})
        vid = body.get("volume_id")
        if not isinstance(vid, str) or not vid:
            raise NotFound(f"Volume {vid} could not be found.")
        s = await req.run(
            self.m.create_snapshot, req.ctx, vid,
            _text(body.get("name", body.get("display_name")), "name"),
            _text(body.get("description", body.get("display_description")), "description"),
            _bool(body.get("force", False), "force"), _metadata(body.get("metadata")),
            version_of(req.request.scope) >= "3.66")
        self.api.copy_quiesced(vid, self.m.finish_snapshot, s.id)
        return FastJSON(self._snap_doc(req, s, extended=False), status_code=202)

    @serves("PUT", "/v3/snapshots/{id}")
    async def update_snapshot(self, req: ApiRequest) -> dict[str, Any]:
        changes = _updates(_obj(await req.json(), "snapshot"), "snapshot")
        s = await req.run(self.m.update_row, req.ctx, SNAPSHOTS, req.param("id"), changes)
        return self._snap_doc(req, s, extended=False)

    @serves("DELETE", "/v3/snapshots/{id}")
    async def delete_snapshot(self, req: ApiRequest) -> Response:
        return await self.api.delete_later(req, self.m.begin_delete_snapshot,
                                           self.m.finish_delete_snapshot, req.param("id"),
                                           False)

    @serves("POST", "/v3/snapshots/{id}/action")
    async def snapshot_action(self, req: ApiRequest) -> Response:
        body = _action_body(await req.json(), "snapshot")
        sid = req.param("id")
        if "os-reset_status" in body:
            status = _obj(body, "os-reset_status").get("status")
            if status not in ("creating", "available", "deleting", "error",
                              "error_deleting"):
                raise BadRequest(f"Invalid input received: '{status}' is not a valid "
                                 "snapshot status.")
            await req.run(self.m.reset_snapshot_status, req.ctx, sid, status)
            return Response(status_code=202)
        if "os-update_snapshot_status" in body:
            args = _obj(body, "os-update_snapshot_status")
            await req.run(self.m.update_snapshot_status, req.ctx, sid, args.get("status"),
                          args.get("progress"))
            return Response(status_code=202)
        if "os-force_delete" in body:
            return await self.api.delete_later(req, self.m.begin_delete_snapshot,
                                               self.m.finish_delete_snapshot, sid, True)
        raise BadRequest(f"There is no such action: {next(iter(body))}")
