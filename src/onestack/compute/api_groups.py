"""Compute API: server groups (``/os-server-groups``)."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from onestack.api.app import ApiRequest
from onestack.api.routes import serves
from onestack.common.errors import BadRequest, ValidationError
from onestack.compute import schemas, views
from onestack.compute.microversions import ver
from onestack.compute.resource_base import ResourceHandler
from onestack.compute.resource_base import tgt as _tgt


class ServerGroups(ResourceHandler):
    """Server groups (``/os-server-groups``)."""

    # ================================================================== server groups
    @serves("GET", "/v2.1/os-server-groups")
    async def list_groups(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("os_compute_api:os-server-groups:index", _tgt(req))
        q = req.query
        all_projects = q.get("all_projects", "").lower() in ("true", "1", "yes", "on", "")
        all_projects = all_projects and "all_projects" in q
        if all_projects:
            req.enforce("os_compute_api:os-server-groups:index:all_projects", _tgt(req))
        limit = schemas.integer(q.get("limit"), "limit", 0) if q.get("limit") else None
        offset = schemas.integer(q.get("offset"), "offset", 0) if q.get("offset") else 0
        groups = await req.run(self.m.list_groups, req.ctx, all_projects, limit, offset)
        return {"server_groups": [views.server_group(g, ver(req)) for g in groups]}

    @serves("POST", "/v2.1/os-server-groups")
    async def create_group(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("os_compute_api:os-server-groups:create", _tgt(req))
        v = ver(req)
        body = await req.json()
        g = schemas.obj(body, "server_group")
        name = schemas.name(g.get("name"), "name")
        allowed = ["affinity", "anti-affinity"]
        if v >= "2.15":
            allowed += ["soft-affinity", "soft-anti-affinity"]
        rules: dict[str, Any] = {}
        if v >= "2.64":
            schemas.only(g, {"name", "policy", "rules"}, "server_group")
            policy = g.get("policy")
            if policy not in allowed:
                raise ValidationError(f"Invalid input for field/attribute policy. Value: "
                                      f"{policy}.")
            raw_rules = g.get("rules") or {}
            if not isinstance(raw_rules, dict):
                raise ValidationError("Invalid input for field/attribute rules.")
            if raw_rules:
                if policy != "anti-affinity" or set(raw_rules) - {"max_server_per_host"}:
                    raise BadRequest("Only anti-affinity policy supports the "
                                     "max_server_per_host rule.")
                rules["max_server_per_host"] = schemas.integer(
                    raw_rules["max_server_per_host"], "max_server_per_host", 1)
        else:
            schemas.only(g, {"name", "policies"}, "server_group")
            policies = g.get("policies")
            if (not isinstance(policies, list) or len(policies) != 1
                    or policies[0] not in allowed):
                raise ValidationError(f"Invalid input for field/attribute policies. Value: "
                                      f"{policies}.")
            policy = policies[0]
        group = await req.run(self.m.create_group, req.ctx, name, policy, rules)
        return {"server_group": views.server_group(group, v)}

    @serves("GET", "/v2.1/os-server-groups/{group_id}")
    async def show_group(self, req: ApiRequest) -> dict[str, Any]:
        g = await req.run(self.m.get_group, req.ctx, req.param("group_id"))
        req.enforce("os_compute_api:os-server-groups:show", _tgt(req, g["project_id"]))
        return {"server_group": views.server_group(g, ver(req))}

    @serves("DELETE", "/v2.1/os-server-groups/{group_id}")
    async def delete_group(self, req: ApiRequest) -> Response:
        # Found first (another project's group is a 404), then authorized, as Nova does.
        g = await req.run(self.m.get_group, req.ctx, req.param("group_id"))
        req.enforce("os_compute_api:os-server-groups:delete", _tgt(req, g["project_id"]))
        await req.run(self.m.delete_group, req.ctx, req.param("group_id"))
        return Response(status_code=204)
