"""Identity API: roles, implied roles, grants and role assignments."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from starlette.responses import Response

from onestack.api.app import ApiRequest, FastJSON
from onestack.api.routes import serves
from onestack.identity import schemas, views
from onestack.identity.api_base import IdentityHandler, _body, _changes
from onestack.identity.records import Grant


class RoleRoutes(IdentityHandler):
    """Roles, implied roles, grants and role assignments."""

    # ------------------------------------------------------------------ roles
    @serves("GET", "/v3/roles")
    async def list_roles(self, req: ApiRequest) -> dict[str, Any]:
        domain_id = req.query.get("domain_id")
        action = "identity:list_domain_roles" if domain_id else "identity:list_roles"
        req.enforce(action, {"target": {"domain_id": domain_id}})
        roles = await req.run(self.m.list_roles, req.query.get("name"), domain_id)
        return views.listing(req.base_url, "roles", "roles", views.role, roles,
                             str(req.request.url.query))

    @serves("POST", "/v3/roles")
    async def create_role(self, req: ApiRequest) -> Response:
        body = await _body(req, schemas.ROLE_CREATE, "role")
        domain_id = body.get("domain_id")
        req.enforce("identity:create_domain_role" if domain_id else "identity:create_role",
                    {"target": {"domain_id": domain_id}})
        extra = {k: v for k, v in body.items() if k not in (
            "name", "domain_id", "description", "options")}
        role = await req.run(lambda: self.m.create_role(
            body["name"], domain_id, body.get("description"), None, body.get("options"),
            extra))
        return FastJSON({"role": views.role(req.base_url, role)}, status_code=201)

    async def _role(self, req: ApiRequest, action: str, domain_action: str,
                    key: str = "role_id") -> Any:
        role = await req.run(self.m.get_role, req.param(key))
        dom = None if role.domain_id == "<<null>>" else role.domain_id
        req.enforce(domain_action if dom else action, {"target": {"domain_id": dom}})
        return role

    @serves("GET", "/v3/roles/{role_id}")
    async def get_role(self, req: ApiRequest) -> dict[str, Any]:
        role = await self._role(req, "identity:get_role", "identity:get_domain_role")
        return {"role": views.role(req.base_url, role)}

    @serves("PATCH", "/v3/roles/{role_id}")
    async def update_role(self, req: ApiRequest) -> dict[str, Any]:
        await self._role(req, "identity:update_role", "identity:update_domain_role")
        body = await _body(req, schemas.ROLE_UPDATE, "role")
        changes = _changes(body, ("name", "domain_id", "description", "options"))
        role = await req.run(self.m.update_role, req.param("role_id"), changes)
        return {"role": views.role(req.base_url, role)}

    @serves("DELETE", "/v3/roles/{role_id}")
    async def delete_role(self, req: ApiRequest) -> None:
        await self._role(req, "identity:delete_role", "identity:delete_domain_role")
        await req.run(self.m.delete_role, req.param("role_id"))

    @serves("GET", "/v3/roles/{prior_id}/implies")
    async def list_implies(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("identity:list_implied_roles")
        rows = await req.run(self.m.list_implied_roles, req.param("prior_id"))
        prior, implies = rows[0]
        return {"role_inference": views.implied(req.base_url, prior, implies),
                "links": {"self": f"{req.base_url}/v3/roles/{prior.id}/implies"}}

    @serves("GET", "/v3/roles/{prior_id}/implies/{implied_id}")
    async def get_implied(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("identity:get_implied_role")
        prior, implied = await req.run(self.m.get_implied_role, req.param("prior_id"),
                                       req.param("implied_id"))
        return views.inference(req.base_url, prior, implied)

    @serves("HEAD", "/v3/roles/{prior_id}/implies/{implied_id}")
    async def check_implied(self, req: ApiRequest) -> Response:
        req.enforce("identity:check_implied_role")
        await req.run(self.m.get_implied_role, req.param("prior_id"), req.param("implied_id"))
        return Response(status_code=204)

    @serves("PUT", "/v3/roles/{prior_id}/implies/{implied_id}")
    async def create_implied(self, req: ApiRequest) -> Response:
        req.enforce("identity:create_implied_role")
        prior, implied = await req.run(self.m.create_implied_role, req.param("prior_id"),
                                       req.param("implied_id"))
        return FastJSON(views.inference(req.base_url, prior, implied), status_code=201)

    @serves("DELETE", "/v3/roles/{prior_id}/implies/{implied_id}")
    async def delete_implied(self, req: ApiRequest) -> None:
        req.enforce("identity:delete_implied_role")
        await req.run(self.m.delete_implied_role, req.param("prior_id"),
                      req.param("implied_id"))

    @serves("GET", "/v3/role_inferences")
    async def role_inferences(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("identity:list_role_inference_rules")
        rows = await req.run(self.m.list_implied_roles, None)
        return {"role_inferences": [views.implied(req.base_url, p, imp) for p, imp in rows],
                "links": {"self": f"{req.base_url}/v3/role_inferences"}}
    # ------------------------------------------------------------------ grants
    def _grant(self, req: ApiRequest, target: str, actor: str, inherited: bool) -> Grant:
        """The grant the path names: its actor (``users``/``groups``) and target
        (``projects``/``domains``/``system``)."""
        actor_id = req.param("actor_id")
        target_id = None if target == "system" else req.param("target_id")
        return Grant(user_id=actor_id if actor == "users" else None,
                     group_id=actor_id if actor == "groups" else None,
                     project_id=target_id if target == "projects" else None,
                     domain_id=target_id if target == "domains" else None,
                     system="all" if target == "system" else None, inherited=inherited)

    def _grant_action(self, target: str, actor: str, verb: str) -> str:
        if target == "system":
            kind = "user" if actor == "users" else "group"
            names = {"list": "list_system_grants_for_", "check": "check_system_grant_for_",
                     "create": "create_system_grant_for_", "revoke": "revoke_system_grant_for_"}
            return "identity:" + names[verb] + kind
        return {"list": "identity:list_grants", "check": "identity:check_grant",
                "create": "identity:create_grant", "revoke": "identity:revoke_grant"}[verb]

    async def _grant_target_domain(self, req: ApiRequest, target: str) -> str | None:
        if target == "domains":
            return req.param("target_id")
        if target == "projects":
            p = await req.run(self.m.get_project, req.param("target_id"))
            return p.domain_id
        return None

    async def _enforce_grant(self, req: ApiRequest, target: str, actor: str, verb: str
                             ) -> None:
        """Check the caller may ``verb`` (list, check, create, revoke) grants of ``actor`` on
        ``target``, against the domain of the grant's target."""
        dom = await self._grant_target_domain(req, target)
        req.enforce(self._grant_action(target, actor, verb), {"target": {"domain_id": dom}})

    def grant_list(self, target: str, actor: str, inherited: bool) -> Callable[..., Any]:
        async def handler(req: ApiRequest) -> dict[str, Any]:
            await self._enforce_grant(req, target, actor, "list")
            roles = await req.run(self.m.list_grants,
                                  self._grant(req, target, actor, inherited))
            return views.listing(req.base_url, req.request.url.path[4:], "roles", views.role, roles)

        handler.__name__ = f"list_grants_{target}_{actor}"
        return handler

    def grant_check(self, target: str, actor: str, inherited: bool) -> Callable[..., Any]:
        return self._grant_handler("check", "check_grant", self.m.check_grant, target, actor,
                                   inherited)

    def grant_put(self, target: str, actor: str, inherited: bool) -> Callable[..., Any]:
        return self._grant_handler("create", "create_grant", self.m.create_grant, target,
                                   actor, inherited)

    def grant_delete(self, target: str, actor: str, inherited: bool) -> Callable[..., Any]:
        return self._grant_handler("revoke", "delete_grant", self.m.delete_grant, target,
                                   actor, inherited)

    def _grant_handler(self, verb: str, name: str, call: Callable[[str, Grant], None], target: str,
                       actor: str, inherited: bool) -> Callable[..., Any]:
        """The handler (``<name>_<target>_<actor>``) that checks, creates or revokes
        (``verb``) the path's role grant of ``actor`` on ``target`` through ``call``: 204."""
        async def handler(req: ApiRequest) -> None:
            await self._enforce_grant(req, target, actor, verb)
            await req.run(call, req.param("role_id"), self._grant(req, target, actor, inherited))

        handler.__name__ = f"{name}_{target}_{actor}"
        return handler

    @serves("GET", "/v3/role_assignments")
    async def role_assignments(self, req: ApiRequest) -> dict[str, Any]:
        from onestack.identity.assignments import list_role_assignments

        q = req.query
        scope_domain = q.get("scope.domain.id")
        req.enforce("identity:list_role_assignments", {"target": {"domain_id": scope_domain}})
        items = await req.run(list_role_assignments, self.m, req.base_url, q)
        return {"role_assignments": items,
                "links": {"self": f"{req.base_url}/v3/role_assignments"
                          + (f"?{urlencode(list(q.multi_items()))}" if q else ""),
                          "previous": None, "next": None}}
