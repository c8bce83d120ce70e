"""Identity API: domains and projects (with tags)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.responses import Response

from onestack.api.app import ApiRequest, FastJSON, url_header
from onestack.api.routes import serves
from onestack.common.errors import Forbidden, NotFound, ValidationError
from onestack.identity import schemas, views
from onestack.identity.api_base import IdentityHandler, _body, _bool, _changes, _flag
from onestack.identity.records import ProjectRecord

#: A project's own attributes; any other in a request body is kept in its ``extra``.
_PROJECT_FIELDS = ("name", "description", "enabled", "domain_id", "parent_id", "is_domain",
                   "tags", "options")


class ProjectRoutes(IdentityHandler):
    """Domains and projects (with tags)."""

    # ------------------------------------------------------------------ domains
    @serves("GET", "/v3/domains")
    async def list_domains(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("identity:list_domains")
        domains = await req.run(self.m.list_domains, req.query.get("name"),
                                _bool(req.query.get("enabled"), "enabled"))
        return views.listing(req.base_url, "domains", "domains", views.domain, domains,
                             str(req.request.url.query))

    @serves("POST", "/v3/domains")
    async def create_domain(self, req: ApiRequest) -> Response:
        req.enforce("identity:create_domain")
        body = await _body(req, schemas.DOMAIN_CREATE, "domain")
        extra = {k: v for k, v in body.items()
                 if k not in ("name", "description", "enabled", "id", "tags", "options")}
        d = await req.run(self.m.create_domain, body["name"], body.get("description"),
                          body.get("enabled", True), body.get("id"), extra)
        return FastJSON({"domain": views.domain(req.base_url, d)}, status_code=201)

    @serves("GET", "/v3/domains/{domain_id}")
    async def get_domain(self, req: ApiRequest) -> dict[str, Any]:
        did = req.param("domain_id")
        req.enforce("identity:get_domain", {"target": {"domain": {"id": did}}})
        d = await req.run(self.m.get_domain, did)
        return {"domain": views.domain(req.base_url, d)}

    @serves("PATCH", "/v3/domains/{domain_id}")
    async def update_domain(self, req: ApiRequest) -> dict[str, Any]:
        did = req.param("domain_id")
        req.enforce("identity:update_domain", {"target": {"domain": {"id": did}}})
        body = await _body(req, schemas.DOMAIN_UPDATE, "domain")
        if "id" in body and body["id"] != did:
            raise ValidationError("Cannot change the domain id.")
        d = await req.run(self.m.update_domain, did, body)
        return {"domain": views.domain(req.base_url, d)}

    @serves("DELETE", "/v3/domains/{domain_id}")
    async def delete_domain(self, req: ApiRequest) -> None:
        did = req.param("domain_id")
        req.enforce("identity:delete_domain", {"target": {"domain": {"id": did}}})
        await req.run(self.m.delete_domain, did)
    # ------------------------------------------------------------------ projects
    @serves("GET", "/v3/projects")
    async def list_projects(self, req: ApiRequest) -> dict[str, Any]:
        q = req.query
        filters: dict[str, Any] = {}
        for key in ("name", "domain_id", "parent_id"):
            if q.get(key) is not None:
                filters[key] = q.get(key)
        if q.get("enabled") is not None:
            filters["enabled"] = _bool(q.get("enabled"), "enabled")
        if q.get("is_domain") is not None and _bool(q.get("is_domain"), "is_domain"):
            req.enforce("identity:list_domains")
            domains = await req.run(self.m.list_domains, q.get("name"))
            items = [views.project(req.base_url, await req.run(self.m.get_project_or_domain,
                                                               d.id)) for d in domains]
            return views.collection(req.base_url, "projects", "projects", items)
        for key in ("tags", "tags-any", "not-tags", "not-tags-any"):
            if q.get(key):
                filters[key] = q.get(key).split(",")
        target_domain = filters.get("domain_id") or req.ctx.domain_id
        if not req.allowed("identity:list_projects", {"target": {"domain_id": target_domain}}):
            raise Forbidden("You are not authorized to perform the requested action: "
                            "identity:list_projects.")
        if not req.ctx.is_admin and req.ctx.domain_id and "domain_id" not in filters:
            filters["domain_id"] = req.ctx.domain_id
        projects = await req.run(self.m.list_projects, filters)
        tags = await req.run(self.m.project_tags, [p.id for p in projects])
        return views.collection(req.base_url, "projects", "projects",
                                [views.project(req.base_url, p, tags[p.id]) for p in projects],
                                str(req.request.url.query))

    @serves("POST", "/v3/projects")
    async def create_project(self, req: ApiRequest) -> Response:
        body = await _body(req, schemas.PROJECT_CREATE, "project")
        domain_id = body.get("domain_id")
        parent_id = body.get("parent_id")
        if not domain_id and parent_id:
            parent = await req.run(self.m.get_project_or_domain, parent_id)
            domain_id = parent.domain_id or parent.id
            if parent.domain_id is None:
                parent_id = None
        domain_id = self._scope_domain(req, domain_id)
        if parent_id == domain_id:
            parent_id = None
        req.enforce("identity:create_project", {"target": {"project": {"domain_id": domain_id}}})
        extra = {k: v for k, v in body.items() if k not in _PROJECT_FIELDS}
        p = await req.run(lambda: self.m.create_project(
            body["name"], domain_id, body.get("description"), body.get("enabled", True),
            parent_id, body.get("tags"), body.get("is_domain", False), extra,
            body.get("options")))
        tags = (await req.run(self.m.project_tags, [p.id])).get(p.id, [])
        return FastJSON({"project": views.project(req.base_url, p, tags)}, status_code=201)

    async def _project(self, req: ApiRequest, action: str,
                       lookup: Callable[[str], ProjectRecord]) -> ProjectRecord:
        """The project of the URL (found with ``lookup``), once the caller may do ``action``
        on it."""
        p = await req.run(lookup, req.param("project_id"))
        req.enforce(action, {"target": {"project": {"id": p.id, "domain_id": p.domain_id}}})
        return p

    @serves("GET", "/v3/projects/{project_id}")
    async def get_project(self, req: ApiRequest) -> dict[str, Any]:
        pid = req.param("project_id")
        p = await self._project(req, "identity:get_project", self.m.get_project_or_domain)
        tags = (await req.run(self.m.project_tags, [p.id])).get(p.id, [])
        out = views.project(req.base_url, p, tags)
        if _flag(req, "parents_as_list"):
            parents = await req.run(self.m.project_parents, pid)
            out["parents"] = [{"project": views.project(req.base_url, x)} for x in parents]
        if _flag(req, "parents_as_ids"):
            parents = await req.run(self.m.project_parents, pid)
            nested: Any = None
            for x in reversed(parents):
                nested = {x.id: nested}
            out["parents"] = nested
        if _flag(req, "subtree_as_list"):
            sub = await req.run(self.m.project_subtree, pid)
            out["subtree"] = [{"project": views.project(req.base_url, x)} for x in sub]
        if _flag(req, "subtree_as_ids"):
            sub = await req.run(self.m.project_subtree, pid)
            children: dict[str | None, list[str]] = {}
            for x in sub:
                children.setdefault(x.parent_id, []).append(x.id)

            def tree(node: str) -> Any:
                kids = children.get(node)
                if not kids:
                    return None
                return {k: tree(k) for k in kids}

            out["subtree"] = tree(pid)
        return {"project": out}

    @serves("PATCH", "/v3/projects/{project_id}")
    async def update_project(self, req: ApiRequest) -> dict[str, Any]:
        pid = req.param("project_id")
        await self._project(req, "identity:update_project", self.m.get_project_or_domain)
        body = await _body(req, schemas.PROJECT_UPDATE, "project")
        changes = _changes(body, _PROJECT_FIELDS)
        p = await req.run(self.m.update_project, pid, changes)
        tags = (await req.run(self.m.project_tags, [p.id])).get(p.id, [])
        return {"project": views.project(req.base_url, p, tags)}

    @serves("DELETE", "/v3/projects/{project_id}")
    async def delete_project(self, req: ApiRequest) -> None:
        await self._project(req, "identity:delete_project", self.m.get_project)
        await req.run(self.m.delete_project, req.param("project_id"), _flag(req, "cascade"))

    async def _project_for_tags(self, req: ApiRequest, action: str) -> str:
        await self._project(req, action, self.m.get_project)
        return req.param("project_id")

    @serves("GET", "/v3/projects/{project_id}/tags")
    async def list_tags(self, req: ApiRequest) -> dict[str, Any]:
        pid = await self._project_for_tags(req, "identity:list_project_tags")
        return {"tags": (await req.run(self.m.project_tags, [pid]))[pid]}

    @serves("PUT", "/v3/projects/{project_id}/tags")
    async def put_tags(self, req: ApiRequest) -> dict[str, Any]:
        pid = await self._project_for_tags(req, "identity:update_project_tags")
        body = schemas.validate(schemas.TAGS_PUT, await req.json(), "tags")
        return {"tags": await req.run(self.m.set_project_tags, pid, body["tags"])}

    @serves("DELETE", "/v3/projects/{project_id}/tags")
    async def delete_tags(self, req: ApiRequest) -> None:
        pid = await self._project_for_tags(req, "identity:delete_project_tags")
        await req.run(self.m.set_project_tags, pid, [])

    @serves("GET", "/v3/projects/{project_id}/tags/{tag}")
    async def check_tag(self, req: ApiRequest) -> Response:
        pid = await self._project_for_tags(req, "identity:get_project_tag")
        tag = req.param("tag")
        if tag not in (await req.run(self.m.project_tags, [pid]))[pid]:
            raise NotFound(f"Could not find project tag: {tag}.")
        return Response(status_code=204)

    @serves("PUT", "/v3/projects/{project_id}/tags/{tag}")
    async def add_tag(self, req: ApiRequest) -> Response:
        pid = await self._project_for_tags(req, "identity:create_project_tag")
        tag = req.param("tag")
        schemas.validate(schemas.TAGS_PUT, {"tags": [tag]}, "tags")
        await req.run(self.m.add_project_tag, pid, tag)
        return Response(status_code=201,
                        headers={"Location": url_header(
                            f"{req.base_url}/v3/projects/{pid}/tags/{tag}")})

    @serves("DELETE", "/v3/projects/{project_id}/tags/{tag}")
    async def delete_tag(self, req: ApiRequest) -> None:
        pid = await self._project_for_tags(req, "identity:delete_project_tag")
        await req.run(self.m.delete_project_tag, pid, req.param("tag"))
