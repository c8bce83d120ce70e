"""Block-storage API routes for the metadata of volumes and snapshots
(``…/{id}/metadata[/{key}]``, the same routes for both)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from starlette.responses import Response

from onestack.api.app import ApiRequest
from onestack.volume.params import _metadata, _obj, _one_item
from onestack.volume.row_changes import SNAPSHOTS, VOLUMES, RowKind, only_key

if TYPE_CHECKING:
    from onestack.volume.api import VolumeAPI
    from onestack.volume.manager import VolumeManager


def add_metadata_routes(api: VolumeAPI) -> None:
    """Register the routes of this module on ``api``."""
    m = api.m
    volume_meta = MetadataRoutes(m, VOLUMES, m.get_volume)
    snapshot_meta = MetadataRoutes(m, SNAPSHOTS, m.get_snapshot)
    r = api.add_route
    for kind, meta in (("volumes", volume_meta), ("snapshots", snapshot_meta)):
        r(f"/v3/{kind}/{{id}}/metadata", meta.show, ["GET"])
        r(f"/v3/{kind}/{{id}}/metadata", meta.add, ["POST"])
        r(f"/v3/{kind}/{{id}}/metadata", meta.replace, ["PUT"])
        r(f"/v3/{kind}/{{id}}/metadata/{{key}}", meta.item, ["GET"])
        r(f"/v3/{kind}/{{id}}/metadata/{{key}}", meta.put_item, ["PUT"])
        r(f"/v3/{kind}/{{id}}/metadata/{{key}}", meta.delete_item, ["DELETE"])


class MetadataRoutes:
    """The ``…/{id}/metadata[/{key}]`` routes of volumes or snapshots (the same in both)."""

    def __init__(self, m: VolumeManager, kind: RowKind[Any], get: Callable[..., Any]) -> None:
        self.m, self.kind, self.get = m, kind, get

    async def _set(self, req: ApiRequest, meta: dict[str, str],
                   replace: bool) -> dict[str, str]:
        """The row's metadata once ``meta`` is merged in (or put in place, ``replace``)."""
        return await req.run(self.m.set_row_metadata, req.ctx, self.kind, req.param("id"),
                             meta, replace)

    async def show(self, req: ApiRequest) -> dict[str, Any]:
        row = await req.run(self.get, req.ctx, req.param("id"))
        req.enforce(self.kind.get_metadata_policy, {"project_id": row.project_id})
        return {"metadata": dict(row.metadata_ or {})}

    async def add(self, req: ApiRequest) -> dict[str, Any]:
        meta = _metadata(_obj(await req.json(), "metadata"))
        return {"metadata": await self._set(req, meta, False)}

    async def replace(self, req: ApiRequest) -> dict[str, Any]:
        meta = _metadata(_obj(await req.json(), "metadata"))
        return {"metadata": await self._set(req, meta, True)}

    async def item(self, req: ApiRequest) -> dict[str, Any]:
        meta = (await self.show(req))["metadata"]
        key = req.param("key")
        return {"meta": only_key(meta, key, f"{self.kind.label} {req.param('id')} has no "
                                            f"metadata with key {key}.")}

    async def put_item(self, req: ApiRequest) -> dict[str, Any]:
        meta = _one_item(_obj(await req.json(), "meta"), req.param("key"), "meta")
        await self._set(req, meta, False)
        return {"meta": meta}

    async def delete_item(self, req: ApiRequest) -> Response:
        await req.run(self.m.delete_row_metadata, req.ctx, self.kind, req.param("id"),
                      req.param("key"))
        return Response(status_code=200)
