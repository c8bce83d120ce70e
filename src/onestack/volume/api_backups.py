"""Block-storage API routes for backups (``backups``: create, list, show, update at 3.9,
delete, restore, reset-status, force-delete, export and import of records)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.responses import Response

from onestack.api.app import ApiRequest, FastJSON
from onestack.api.routes import serves
from onestack.common.errors import BadRequest, NotFound
from onestack.common.timeutils import isotime
from onestack.volume.backups import Backups
from onestack.volume.microversion import version_of
from onestack.volume.params import _bool, _metadata, _obj, _text
from onestack.volume.records import BackupRecord

if TYPE_CHECKING:
    from onestack.volume.api import VolumeAPI


class BackupRoutes:
    """Backups (``/v3/backups``): restore, export and import of records, actions."""

    def __init__(self, api: VolumeAPI, backups: Backups) -> None:
        self.api = api
        self.b = backups

    @staticmethod
    def _summary(req: ApiRequest, b: BackupRecord) -> dict[str, Any]:
        href = f"{req.base_url}/v3/{b.project_id}/backups/{b.id}"
        doc: dict[str, Any] = {"id": b.id, "name": b.name, "links": [
            {"href": href, "rel": "self"}, {"href": href, "rel": "bookmark"}]}
        if version_of(req.request.scope) >= "3.43":
            doc["metadata"] = dict(b.metadata_ or {})
        return doc

    def _view(self, req: ApiRequest, b: BackupRecord, dependents: bool) -> dict[str, Any]:
        doc = {**self._summary(req, b), "status": b.status, "object_count": b.object_count,
               "container": b.container, "description": b.description,
               "availability_zone": b.availability_zone,
               "created_at": isotime(b.created_at, subsecond=True),
               "updated_at": isotime(b.updated_at, subsecond=True),
               "has_dependent_backups": dependents, "volume_id": b.volume_id,
               "fail_reason": b.fail_reason, "size": b.size,
               "is_incremental": b.parent_id is not None,
               "data_timestamp": isotime(b.data_timestamp, subsecond=True),
               "snapshot_id": b.snapshot_id}
        ver = version_of(req.request.scope)
        if ver >= "3.18" and req.ctx.is_admin:
            doc["os-backup-project-attr:project_id"] = b.project_id
        if ver >= "3.56":
            doc["user_id"] = b.user_id
        return doc

    def _all(self, req: ApiRequest) -> bool:
        raw = req.query.get("all_tenants")
        return raw is not None and (raw == "" or _bool(raw, "all_tenants"))

    def _filter(self, req: ApiRequest, rows: list[tuple[BackupRecord, bool]]
                ) -> list[tuple[BackupRecord, bool]]:
        for key in ("name", "status", "volume_id"):
            if key in req.query:
                rows = [(b, d) for b, d in rows if getattr(b, key) == req.query[key]]
        return rows

    @serves("GET", "/v3/backups")
    async def list(self, req: ApiRequest) -> dict[str, Any]:
        rows = self._filter(req, await req.run(self.b.list, req.ctx, self._all(req)))
        return {"backups": [self._summary(req, b) for b, _ in rows]}

    @serves("GET", "/v3/backups/detail")
    async def list_detail(self, req: ApiRequest) -> dict[str, Any]:
        rows = self._filter(req, await req.run(self.b.list, req.ctx, self._all(req)))
        return {"backups": [self._view(req, b, d) for b, d in rows]}

    @serves("GET", "/v3/backups/{id}")
    async def show(self, req: ApiRequest) -> dict[str, Any]:
        b, dependents = await req.run(self.b.get, req.ctx, req.param("id"))
        return {"backup": self._view(req, b, dependents)}

    @serves("POST", "/v3/backups")
    async def create(self, req: ApiRequest) -> Response:
        body = _obj(await req.json(), "backup")
        vid = _text(body.get("volume_id"), "volume_id", nullable=False) or ""
        b = await req.run(
            self.b.create, req.ctx, vid, _text(body.get("name"), "name"),
            _text(body.get("description"), "description"),
            _bool(body.get("incremental", False), "incremental"),
            _bool(body.get("force", False), "force"),
            _text(body.get("container"), "container"), _metadata(body.get("metadata")),
            _text(body.get("snapshot_id"), "snapshot_id"))
        # A backup of the volume itself while it is attached is one point in time: its
        # guests pause their I/O during the copy, as for a snapshot.
        self.api.copy_quiesced(None if b.snapshot_id else vid, self.b.finish_create, b.id)
        return FastJSON({"backup": self._summary(req, b)}, status_code=202)

    @serves("PUT", "/v3/backups/{id}")
    async def update(self, req: ApiRequest) -> dict[str, Any]:
        if version_of(req.request.scope) < "3.9":
            raise NotFound("The resource could not be found.")
        body = _obj(await req.json(), "backup")
        changes: dict[str, Any] = {}
        for key in ("name", "description"):
            if key in body:
                changes[key] = _text(body[key], key)
        if "metadata" in body:
            changes["metadata"] = _metadata(body["metadata"])
        b = await req.run(self.b.update, req.ctx, req.param("id"), changes)
        return {"backup": self._summary(req, b)}

    @serves("DELETE", "/v3/backups/{id}")
    async def delete(self, req: ApiRequest) -> Response:
        return await self.api.delete_later(req, self.b.begin_delete, self.b.finish_delete,
                                           req.param("id"), False)

    @serves("POST", "/v3/backups/{id}/restore")
    async def restore(self, req: ApiRequest) -> Response:
        body = _obj(await req.json(), "restore")
        vid = _text(body.get("volume_id"), "volume_id")
        b, vol = await req.run(self.b.begin_restore, req.ctx, req.param("id"), vid,
                               _text(body.get("name"), "name"))
        self.api.later(self.b.finish_restore, b.id, vol.id)
        return FastJSON({"restore": {"backup_id": b.id, "volume_id": vol.id,
                                     "volume_name": vol.name}}, status_code=202)

    @serves("POST", "/v3/backups/{id}/action")
    async def action(self, req: ApiRequest) -> Response:
        body = await req.json()
        bid = req.param("id")
        if isinstance(body, dict) and "os-reset_status" in body:
            status = _obj(body, "os-reset_status").get("status")
            await req.run(self.b.reset_status, req.ctx, bid, str(status))
            return Response(status_code=202)
        if isinstance(body, dict) and "os-force_delete" in body:
            return await self.api.delete_later(req, self.b.begin_delete,
                                               self.b.finish_delete, bid, True)
        raise BadRequest("There is no such action.")

    @serves("GET", "/v3/backups/{id}/export_record")
    async def export_record(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("backup:export-import", {"project_id": req.ctx.project_id or ""})
        return {"backup-record": await req.run(self.b.export_record, req.ctx,
                                               req.param("id"))}

    @serves("POST", "/v3/backups/import_record")
    async def import_record(self, req: ApiRequest) -> Response:
        req.enforce("backup:export-import", {"project_id": req.ctx.project_id or ""})
        body = _obj(await req.json(), "backup-record")
        b = await req.run(self.b.import_record, req.ctx,
                          _text(body.get("backup_service"), "backup_service",
                                nullable=False) or "",
                          str(body.get("backup_url") or ""))
        return FastJSON({"backup": self._summary(req, b)}, status_code=201)
