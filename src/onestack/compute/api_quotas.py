"""Compute API: limits, quota sets and quota classes (``/limits``, ``/os-quota-sets``, ``/os-quota-
class-sets``)."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from onestack.api.app import ApiRequest
from onestack.api.routes import serves
from onestack.common.errors import ValidationError
from onestack.compute import quotas, schemas
from onestack.compute.microversions import APIVersion, ver
from onestack.compute.resource_base import ResourceHandler
from onestack.compute.resource_base import tgt as _tgt

QUOTA_FIELDS_236 = ("instances", "cores", "ram", "key_pairs", "metadata_items",
                    "injected_files", "injected_file_content_bytes",
                    "injected_file_path_bytes", "server_groups", "server_group_members")


class Quotas(ResourceHandler):
    """Limits, quota sets and quota classes (``/limits``, ``/os-quota-sets``, ``/os-quota-class-
    sets``)."""

    # ================================================================== limits / quotas
    @serves("GET", "/v2.1/limits")
    async def limits(self, req: ApiRequest) -> dict[str, Any]:
        v = ver(req)
        project = req.ctx.project_id or ""
        if req.query.get("tenant_id") and req.query.get("tenant_id") != project:
            req.enforce("os_compute_api:limits:other_project", _tgt(req))
            project = req.query.get("tenant_id")
        lim = await req.run(self.m.quota_limits, project)
        used = await req.run(self.m.quota_usage, project)
        absolute: dict[str, Any] = {
            "maxTotalInstances": lim["instances"], "maxTotalCores": lim["cores"],
            "maxTotalRAMSize": lim["ram"], "maxServerMeta": lim["metadata_items"],
            "maxServerGroups": lim["server_groups"],
            "maxServerGroupMembers": lim["server_group_members"],
            "totalInstancesUsed": used["instances"], "totalCoresUsed": used["cores"],
            "totalRAMUsed": used["ram"], "totalServerGroupsUsed": used["server_groups"],
        }
        if v < "2.57":
            absolute.update({"maxPersonality": lim["injected_files"],
                             "maxPersonalitySize": lim["injected_file_content_bytes"]})
        absolute["maxTotalKeypairs"] = lim["key_pairs"]
        if v < "2.39":
            absolute["maxImageMeta"] = 128
        if v < "2.36":
            absolute.update({"maxSecurityGroups": lim["security_groups"],
                             "maxSecurityGroupRules": lim["security_group_rules"],
                             "maxTotalFloatingIps": lim["floating_ips"],
                             "totalFloatingIpsUsed": 0, "totalSecurityGroupsUsed": 0})
        return {"limits": {"rate": [], "absolute": absolute}}

    def _quota_doc(self, lim: dict[str, int], v: APIVersion, project: str | None,
                   used: dict[str, int] | None = None) -> dict[str, Any]:
        fields = list(QUOTA_FIELDS_236)
        if v < "2.36":
            fields += ["fixed_ips", "floating_ips", "security_groups", "security_group_rules"]
        if v >= "2.57":
            fields = [f for f in fields if f not in quotas.INJECTED]
        out: dict[str, Any] = {}
        for f in fields:
            if used is None:
                out[f] = lim[f]
            else:
                out[f] = {"limit": lim[f], "in_use": used.get(f, 0), "reserved": 0}
        if project is not None:
            out["id"] = project
        return out

    @serves("GET", "/v2.1/os-quota-sets/{project_id}")
    @serves("GET", "/v2.1/os-quota-sets/{project_id}/detail", detail=True)
    async def show_quota(self, req: ApiRequest, detail: bool = False) -> dict[str, Any]:
        """A project's (or a user's) quotas; in detail, with what is in use."""
        project = req.param("project_id")
        req.enforce("os_compute_api:os-quota-sets:" + ("detail" if detail else "show"),
                    _tgt(req, project))
        user = req.query.get("user_id")
        lim = await req.run(self.m.quota_limits, project, user)
        used = None
        if detail:
            used = await req.run(self.m.quota_usage, project, user)
            if user:
                used.setdefault("key_pairs", 0)
            else:
                used["key_pairs"] = 0
        return {"quota_set": self._quota_doc(lim, ver(req), project, used)}

    @serves("GET", "/v2.1/os-quota-sets/{project_id}/defaults")
    async def quota_defaults(self, req: ApiRequest) -> dict[str, Any]:
        lim = await req.run(self.m.quota_defaults)
        return {"quota_set": self._quota_doc(lim, ver(req), req.param("project_id"))}

    @serves("PUT", "/v2.1/os-quota-sets/{project_id}")
    async def update_quota(self, req: ApiRequest) -> dict[str, Any]:
        project = req.param("project_id")
        req.enforce("os_compute_api:os-quota-sets:update", _tgt(req, project))
        v = ver(req)
        body = await req.json()
        qs = schemas.obj(body, "quota_set")
        force = False
        values: dict[str, int] = {}
        allowed = set(self._quota_doc(quotas.DEFAULTS, v, None))
        for k, val in qs.items():
            if k == "force":
                force = schemas.boolean(val, "force")
                continue
            if k not in allowed:
                raise ValidationError(f"Invalid input for field/attribute quota_set. "
                                      f"Additional properties are not allowed ('{k}' was "
                                      "unexpected)")
            values[k] = schemas.integer(val, k, -1, 2 ** 31 - 1)
        user = req.query.get("user_id")
        lim = await req.run(self.m.set_quotas, project, values, user, force)
        return {"quota_set": self._quota_doc(lim, v, None)}

    @serves("DELETE", "/v2.1/os-quota-sets/{project_id}")
    async def delete_quota(self, req: ApiRequest) -> Response:
        project = req.param("project_id")
        req.enforce("os_compute_api:os-quota-sets:delete", _tgt(req, project))
        await req.run(self.m.delete_quotas, project, req.query.get("user_id"))
        return Response(status_code=202)

    @serves("GET", "/v2.1/os-quota-class-sets/{name}")
    async def show_quota_class(self, req: ApiRequest) -> dict[str, Any]:
        name = req.param("name")
        req.enforce("os_compute_api:os-quota-class-sets:show", _tgt(req))
        lim = await req.run(self.m.quota_class, name)
        return {"quota_class_set": self._quota_doc(lim, ver(req), name)}

    @serves("PUT", "/v2.1/os-quota-class-sets/{name}")
    async def update_quota_class(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("os_compute_api:os-quota-class-sets:update", _tgt(req))
        name = req.param("name")
        v = ver(req)
        body = await req.json()
        qs = schemas.obj(body, "quota_class_set")
        allowed = set(self._quota_doc(quotas.DEFAULTS, v, None))
        values = {}
        for k, val in qs.items():
            if k not in allowed:
                raise ValidationError(f"Invalid input for field/attribute quota_class_set. "
                                      f"Additional properties are not allowed ('{k}' was "
                                      "unexpected)")
            values[k] = schemas.integer(val, k, -1, 2 ** 31 - 1)
        lim = await req.run(self.m.set_quota_class, name, values)
        return {"quota_class_set": self._quota_doc(lim, v, None)}
