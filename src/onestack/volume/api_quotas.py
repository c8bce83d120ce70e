"""Block-storage API routes for what a project may use: availability zones, absolute limits
(``limits``) and quota sets (``os-quota-sets``: show with usage, defaults, update, delete)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.responses import Response

from onestack.api.app import ApiRequest
from onestack.api.routes import serves
from onestack.common.errors import BadRequest
from onestack.volume import views
from onestack.volume.params import _bool, _obj

if TYPE_CHECKING:
    from onestack.volume.api import VolumeAPI


class QuotaRoutes:
    """Zones, limits and quota sets."""

    def __init__(self, api: VolumeAPI) -> None:
        self.m = api.m

    @serves("GET", "/v3/os-availability-zone")
    async def availability_zones(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("volume_extension:availability_zone_list",
                    {"project_id": req.ctx.project_id or ""})
        return {"availabilityZoneInfo": [{"zoneName": self.m.availability_zone,
                                          "zoneState": {"available": True}}]}

    @serves("GET", "/v3/limits")
    async def limits(self, req: ApiRequest) -> dict[str, Any]:
        project = req.ctx.project_id or ""
        req.enforce("limits_extension:used_limits", {"project_id": project})
        lim, used = await req.run(self.m.get_quotas, project)
        return views.limits(lim, used)

    @serves("GET", "/v3/os-quota-sets/{project_id}")
    async def show_quotas(self, req: ApiRequest) -> dict[str, Any]:
        project = req.param("project_id")
        req.enforce("volume_extension:quotas:show", {"project_id": project})
        lim, used = await req.run(self.m.get_quotas, project)
        usage = "usage" in req.query and _bool(req.query["usage"], "usage")
        return {"quota_set": views.quota_set(project, lim, used if usage else None)}

    @serves("GET", "/v3/os-quota-sets/{project_id}/defaults")
    async def default_quotas(self, req: ApiRequest) -> dict[str, Any]:
        project = req.param("project_id")
        req.enforce("volume_extension:quotas:show", {"project_id": project})
        return {"quota_set": views.quota_set(project, await req.run(self.m.default_quotas))}

    @serves("PUT", "/v3/os-quota-sets/{project_id}")
    async def update_quotas(self, req: ApiRequest) -> dict[str, Any]:
        project = req.param("project_id")
        req.enforce("volume_extension:quotas:update", {"project_id": project})
        body = _obj(await req.json(), "quota_set")
        values: dict[str, int] = {}
        for k, v in body.items():
            if k in ("id", "tenant_id", "project_id"):
                continue
            try:
                n = int(v) if not isinstance(v, bool) else None
            except (TypeError, ValueError):
                n = None
            if n is None or n < -1 or n > 2**31 - 1:
                raise BadRequest(f"Invalid input received: Quota limit {v} for {k} must be "
                                 "an integer -1 or greater.")
            values[k] = n
        lim = await req.run(self.m.set_quotas, project, values)
        doc = views.quota_set(project, lim)
        doc.pop("id", None)
        return {"quota_set": doc}

    @serves("DELETE", "/v3/os-quota-sets/{project_id}")
    async def delete_quotas(self, req: ApiRequest) -> Response:
        project = req.param("project_id")
        req.enforce("volume_extension:quotas:delete", {"project_id": project})
        await req.run(self.m.delete_quotas, project)
        return Response(status_code=200)
