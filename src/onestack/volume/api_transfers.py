"""Block-storage API routes for volume transfers (``os-volume-transfer``, and
``volume-transfers`` from 3.55)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.responses import Response

from onestack.api.app import ApiRequest, FastJSON
from onestack.api.routes import serves
from onestack.common.errors import BadRequest
from onestack.common.timeutils import isotime
from onestack.volume.microversion import version_of
from onestack.volume.params import _bool, _obj, _text
from onestack.volume.records import TransferRecord
from onestack.volume.transfers import Transfers

if TYPE_CHECKING:
    from onestack.volume.api import VolumeAPI


class TransferRoutes:
    """Volume transfers between projects."""

    def __init__(self, api: VolumeAPI) -> None:
        self.t = Transfers(api.m)

    @staticmethod
    def _summary(req: ApiRequest, t: TransferRecord) -> dict[str, Any]:
        href = f"{req.base_url}/v3/{t.project_id}/os-volume-transfer/{t.id}"
        return {"id": t.id, "name": t.name, "volume_id": t.volume_id,
                "links": [{"href": href, "rel": "self"}, {"href": href, "rel": "bookmark"}]}

    def _view(self, req: ApiRequest, t: TransferRecord) -> dict[str, Any]:
        doc = {**self._summary(req, t), "created_at": isotime(t.created_at, subsecond=True)}
        ver = version_of(req.request.scope)
        if ver >= "3.55":
            doc["no_snapshots"] = t.no_snapshots
        if ver >= "3.57":
            doc.update(source_project_id=t.project_id, destination_project_id=None,
                       accepted=False)
        return doc

    @serves("GET", "/v3/os-volume-transfer")
    @serves("GET", "/v3/volume-transfers")
    async def list(self, req: ApiRequest) -> dict[str, Any]:
        rows = await req.run(self.t.list, req.ctx, "all_tenants" in req.query)
        return {"transfers": [self._summary(req, t) for t in rows]}

    @serves("GET", "/v3/os-volume-transfer/detail")
    @serves("GET", "/v3/volume-transfers/detail")
    async def list_detail(self, req: ApiRequest) -> dict[str, Any]:
        rows = await req.run(self.t.list, req.ctx, "all_tenants" in req.query)
        return {"transfers": [self._view(req, t) for t in rows]}

    @serves("POST", "/v3/os-volume-transfer")
    @serves("POST", "/v3/volume-transfers")
    async def create(self, req: ApiRequest) -> Response:
        body = _obj(await req.json(), "transfer")
        vid = _text(body.get("volume_id"), "volume_id", nullable=False)
        no_snaps = False
        if "no_snapshots" in body:
            if version_of(req.request.scope) < "3.55":
                raise BadRequest("Invalid input received: no_snapshots needs 3.55.")
            no_snaps = _bool(body["no_snapshots"], "no_snapshots")
        t, key = await req.run(self.t.create, req.ctx, vid or "",
                               _text(body.get("name"), "name"), no_snaps)
        return FastJSON({"transfer": {**self._view(req, t), "auth_key": key}},
                        status_code=202)

    @serves("GET", "/v3/os-volume-transfer/{id}")
    @serves("GET", "/v3/volume-transfers/{id}")
    async def show(self, req: ApiRequest) -> dict[str, Any]:
        t = await req.run(self.t.get, req.ctx, req.param("id"))
        return {"transfer": self._view(req, t)}

    @serves("DELETE", "/v3/os-volume-transfer/{id}")
    @serves("DELETE", "/v3/volume-transfers/{id}")
    async def delete(self, req: ApiRequest) -> Response:
        await req.run(self.t.delete, req.ctx, req.param("id"))
        return Response(status_code=202)

    @serves("POST", "/v3/os-volume-transfer/{id}/accept")
    @serves("POST", "/v3/volume-transfers/{id}/accept")
    async def accept(self, req: ApiRequest) -> Response:
        body = _obj(await req.json(), "accept")
        key = _text(body.get("auth_key"), "auth_key", nullable=False) or ""
        t = await req.run(self.t.accept, req.ctx, req.param("id"), key)
        return FastJSON({"transfer": self._summary(req, t)}, status_code=202)
