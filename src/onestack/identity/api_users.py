"""Identity API: users (passwords, their groups and projects) and groups (membership)."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from onestack.api.app import ApiRequest, FastJSON
from onestack.api.routes import serves
from onestack.common.errors import Forbidden, NotFound, Unauthorized, ValidationError
from onestack.identity import schemas, views
from onestack.identity.api_base import IdentityHandler, _body, _bool, _changes
from onestack.identity.records import UserRecord


class UserRoutes(IdentityHandler):
    """Users (passwords, their groups and projects) and groups (membership)."""

    # ------------------------------------------------------------------ users
    @serves("GET", "/v3/users")
    async def list_users(self, req: ApiRequest) -> dict[str, Any]:
        q = req.query
        filters: dict[str, Any] = {}
        for key in ("name", "domain_id"):
            if q.get(key) is not None:
                filters[key] = q.get(key)
        if q.get("enabled") is not None:
            filters["enabled"] = _bool(q.get("enabled"), "enabled")
        target_domain = filters.get("domain_id") or req.ctx.domain_id
        if not req.allowed("identity:list_users", {"target": {"domain_id": target_domain}}):
            raise Forbidden("You are not authorized to perform the requested action: "
                            "identity:list_users.")
        if not req.ctx.is_admin and req.ctx.domain_id:
            filters["domain_id"] = req.ctx.domain_id
        users = await req.run(self.m.list_users, filters)
        return views.listing(req.base_url, "users", "users", views.user, users,
                             str(req.request.url.query))

    @serves("POST", "/v3/users")
    async def create_user(self, req: ApiRequest) -> Response:
        body = await _body(req, schemas.USER_CREATE, "user")
        domain_id = self._scope_domain(req, body.get("domain_id"))
        req.enforce("identity:create_user", {"target": {"user": {"domain_id": domain_id}}})
        extra = {k: v for k, v in body.items() if k not in (
            "name", "domain_id", "password", "enabled", "default_project_id", "options",
            "federated")}
        if body.get("default_project_id"):
            p = await req.run(self.m.get_project_or_domain, body["default_project_id"])
            if p.domain_id is None:
                raise ValidationError("A domain cannot be a user's default project.")
        u = await req.run(lambda: self.m.create_user(
            body["name"], domain_id, body.get("password"), body.get("enabled", True),
            body.get("default_project_id"), extra, body.get("options")))
        return FastJSON({"user": views.user(req.base_url, u)}, status_code=201)

    async def _user(self, req: ApiRequest, action: str) -> UserRecord:
        """The user of the URL, once the caller may do ``action`` on it."""
        u = await req.run(self.m.get_user, req.param("user_id"))
        req.enforce(action, {"target": {"user": {"id": u.id, "domain_id": u.domain_id}}})
        return u

    @serves("GET", "/v3/users/{user_id}")
    async def get_user(self, req: ApiRequest) -> dict[str, Any]:
        u = await self._user(req, "identity:get_user")
        return {"user": views.user(req.base_url, u)}

    @serves("PATCH", "/v3/users/{user_id}")
    async def update_user(self, req: ApiRequest) -> dict[str, Any]:
        uid = req.param("user_id")
        await self._user(req, "identity:update_user")
        body = await _body(req, schemas.USER_UPDATE, "user")
        changes = _changes(body, ("name", "domain_id", "password", "enabled",
                                  "default_project_id", "options"))
        u = await req.run(self.m.update_user, uid, changes)
        return {"user": views.user(req.base_url, u)}

    @serves("DELETE", "/v3/users/{user_id}")
    async def delete_user(self, req: ApiRequest) -> None:
        await self._user(req, "identity:delete_user")
        await req.run(self.m.delete_user, req.param("user_id"))

    @serves("POST", "/v3/users/{user_id}/password", public=True)
    async def change_password(self, req: ApiRequest) -> None:
        uid = req.param("user_id")
        body = await _body(req, schemas.PASSWORD_CHANGE, "user")
        # Like Keystone, no token is needed: the original password authenticates, so a user
        # whose password has expired can still change it.
        try:
            await req.run(self.m.change_password, uid, body["original_password"],
                          body["password"])
        except NotFound as exc:
            raise Unauthorized("The request you have made requires authentication.") from exc

    @serves("GET", "/v3/users/{user_id}/groups")
    async def user_groups(self, req: ApiRequest) -> dict[str, Any]:
        uid = req.param("user_id")
        await self._user(req, "identity:list_groups_for_user")
        groups = await req.run(self.m.list_groups, {"user_id": uid})
        return views.listing(req.base_url, f"users/{uid}/groups", "groups", views.group, groups)

    @serves("GET", "/v3/users/{user_id}/projects")
    async def user_projects(self, req: ApiRequest) -> dict[str, Any]:
        uid = req.param("user_id")
        await self._user(req, "identity:list_user_projects")
        projects = await req.run(self.m.user_projects, uid)
        if req.query.get("enabled") is not None:
            want = _bool(req.query.get("enabled"), "enabled")
            projects = [p for p in projects if p.enabled == want]
        if req.query.get("name") is not None:
            projects = [p for p in projects if p.name == req.query.get("name")]
        if req.query.get("domain_id") is not None:
            projects = [p for p in projects if p.domain_id == req.query.get("domain_id")]
        tags = await req.run(self.m.project_tags, [p.id for p in projects])
        return views.collection(req.base_url, f"users/{uid}/projects", "projects",
                                [views.project(req.base_url, p, tags[p.id]) for p in projects])
    # ------------------------------------------------------------------ groups
    @serves("GET", "/v3/groups")
    async def list_groups(self, req: ApiRequest) -> dict[str, Any]:
        filters: dict[str, Any] = {}
        for key in ("name", "domain_id"):
            if req.query.get(key) is not None:
                filters[key] = req.query.get(key)
        target_domain = filters.get("domain_id") or req.ctx.domain_id
        if not req.allowed("identity:list_groups", {"target": {"domain_id": target_domain}}):
            raise Forbidden("You are not authorized to perform the requested action: "
                            "identity:list_groups.")
        groups = await req.run(self.m.list_groups, filters)
        return views.listing(req.base_url, "groups", "groups", views.group, groups)

    @serves("POST", "/v3/groups")
    async def create_group(self, req: ApiRequest) -> Response:
        body = await _body(req, schemas.GROUP_CREATE, "group")
        domain_id = self._scope_domain(req, body.get("domain_id"))
        req.enforce("identity:create_group", {"target": {"group": {"domain_id": domain_id}}})
        extra = {k: v for k, v in body.items() if k not in ("name", "domain_id", "description")}
        g = await req.run(self.m.create_group, body["name"], domain_id,
                          body.get("description"), extra)
        return FastJSON({"group": views.group(req.base_url, g)}, status_code=201)

    async def _group(self, req: ApiRequest, action: str) -> str:
        gid = req.param("group_id")
        g = await req.run(self.m.get_group, gid)
        req.enforce(action, {"target": {"group": {"id": g.id, "domain_id": g.domain_id}}})
        return gid

    @serves("GET", "/v3/groups/{group_id}")
    async def get_group(self, req: ApiRequest) -> dict[str, Any]:
        gid = await self._group(req, "identity:get_group")
        return {"group": views.group(req.base_url, await req.run(self.m.get_group, gid))}

    @serves("PATCH", "/v3/groups/{group_id}")
    async def update_group(self, req: ApiRequest) -> dict[str, Any]:
        gid = await self._group(req, "identity:update_group")
        body = await _body(req, schemas.GROUP_UPDATE, "group")
        changes = _changes(body, ("name", "domain_id", "description"))
        g = await req.run(self.m.update_group, gid, changes)
        return {"group": views.group(req.base_url, g)}

    @serves("DELETE", "/v3/groups/{group_id}")
    async def delete_group(self, req: ApiRequest) -> None:
        gid = await self._group(req, "identity:delete_group")
        await req.run(self.m.delete_group, gid)

    @serves("GET", "/v3/groups/{group_id}/users")
    async def group_users(self, req: ApiRequest) -> dict[str, Any]:
        gid = await self._group(req, "identity:list_users_in_group")
        users = await req.run(self.m.group_members, gid)
        return views.listing(req.base_url, f"groups/{gid}/users", "users", views.user, users)

    @serves("GET HEAD", "/v3/groups/{group_id}/users/{user_id}")
    async def check_member(self, req: ApiRequest) -> Response:
        gid = await self._group(req, "identity:check_user_in_group")
        uid = req.param("user_id")
        if not await req.run(self.m.is_member, gid, uid):
            raise NotFound(f"Could not find user: {uid} in group {gid}.")
        return Response(status_code=204)

    @serves("PUT", "/v3/groups/{group_id}/users/{user_id}")
    async def add_member(self, req: ApiRequest) -> None:
        gid = await self._group(req, "identity:add_user_to_group")
        await req.run(self.m.add_member, gid, req.param("user_id"))

    @serves("DELETE", "/v3/groups/{group_id}/users/{user_id}")
    async def remove_member(self, req: ApiRequest) -> None:
        gid = await self._group(req, "identity:remove_user_from_group")
        await req.run(self.m.remove_member, gid, req.param("user_id"))
