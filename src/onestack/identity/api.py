"""Identity API routes (Keystone v3): parse -> manager -> view."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from starlette.responses import Response

from onestack.api.app import ApiRequest, FastJSON, Service, route, url_header
from onestack.api.body import parse_json
from onestack.api.policy import Policy
from onestack.api.versions import healthcheck
from onestack.common.errors import (
    APIError,
    BadRequest,
    Forbidden,
    NotFound,
    Unauthorized,
    ValidationError,
)
from onestack.common.timeutils import parse_isotime, utcnow
from onestack.identity import schemas, views
from onestack.identity.auth import TokenService, ValidToken
from onestack.identity.manager import IdentityManager
from onestack.identity.policies import RULES

VERSION_ID = "v3.14"
VERSION_UPDATED = "2020-04-07T00:00:00Z"
#: ``OpenStack-Identity-Access-Rules`` version a validator must declare to see tokens that
#: carry access rules (Keystone's ``ACCESS_RULES_MIN_VERSION``).
ACCESS_RULES_MIN_VERSION = 1.0
MEDIA = [{"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}]


def keystone_fault(err: APIError) -> tuple[dict[str, Any], str]:
    """Keystone's ``{"error": {"code", "title", "message"}}``."""
    return ({"error": {"code": err.status, "title": err.title, "message": err.message}},
            "application/json")


def _bool(value: str | None, name: str) -> bool | None:
    if value is None:
        return None
    low = value.lower()
    if low in ("true", "1", "yes", "on", ""):
        return True
    if low in ("false", "0", "no", "off"):
        return False
    raise ValidationError(f"Invalid value for {name}: {value}")


def _flag(req: ApiRequest, name: str) -> bool:
    """Keystone's query flags: present (any value but false/0) means on."""
    if not req.request.scope.get("query_string") or name not in req.query:
        return False
    return _bool(req.query.get(name), name) is not False


class IdentityAPI:
    """Builds the identity service: its routes bound to a manager and token service."""

    def __init__(self, manager: IdentityManager, tokens: TokenService, policy: Policy,
                 auth_uri: str) -> None:
        self.m = manager
        self.tokens = tokens
        self.service = Service(name="identity", routes=[], fault=keystone_fault,
                               policy=policy, auth_uri=auth_uri)
        self._add_routes()

    # ------------------------------------------------------------------ helpers
    def _r(self, path: str, handler: Callable[..., Any], methods: list[str],
           public: bool = False) -> None:
        self.service.routes.append(route(self.service, path, handler, methods, public))

    def _scope_domain(self, req: ApiRequest, explicit: str | None) -> str:
        if explicit:
            return explicit
        if req.ctx.domain_id:
            return req.ctx.domain_id
        return "default"

    def _role_names(self, ids: list[str]) -> list[dict[str, Any]]:
        out = []
        for rid in ids:
            try:
                r = self.m.get_role(rid)
                out.append({"id": r.id, "name": r.name,
                            "domain_id": None if r.domain_id == "<<null>>" else r.domain_id})
            except NotFound:
                continue
        return out

    # ------------------------------------------------------------------ routes
    def _add_routes(self) -> None:  # noqa: PLR0915 - a table of routes
        r = self._r
        # the hot paths first: routes are matched in order
        r("/v3/auth/tokens", self.check_token_head, ["HEAD"])
        r("/v3/auth/tokens", self.validate_token, ["GET"])
        r("/v3/auth/tokens", self.issue_token, ["POST"], public=True)
        r("/", self.versions, ["GET"], public=True)
        r("/v3", self.version, ["GET"], public=True)
        r("/v3/", self.version, ["GET"], public=True)
        r("/healthcheck", healthcheck, ["GET"], public=True)
        r("/v3/auth/tokens", self.revoke_token, ["DELETE"])
        r("/v3/auth/catalog", self.auth_catalog, ["GET"])
        r("/v3/auth/projects", self.auth_projects, ["GET"])
        r("/v3/auth/domains", self.auth_domains, ["GET"])
        r("/v3/auth/system", self.auth_system, ["GET"])
        r("/v3/auth/tokens/OS-PKI/revoked", self.pki_revoked, ["GET"])
        r("/v3/OS-REVOKE/events", self.revoke_events, ["GET"])
        # domains
        r("/v3/domains", self.list_domains, ["GET"])
        r("/v3/domains", self.create_domain, ["POST"])
        r("/v3/domains/{domain_id}", self.get_domain, ["GET"])
        r("/v3/domains/{domain_id}", self.update_domain, ["PATCH"])
        r("/v3/domains/{domain_id}", self.delete_domain, ["DELETE"])
        # projects
        r("/v3/projects", self.list_projects, ["GET"])
        r("/v3/projects", self.create_project, ["POST"])
        r("/v3/projects/{project_id}", self.get_project, ["GET"])
        r("/v3/projects/{project_id}", self.update_project, ["PATCH"])
        r("/v3/projects/{project_id}", self.delete_project, ["DELETE"])
        r("/v3/projects/{project_id}/tags", self.list_tags, ["GET"])
        r("/v3/projects/{project_id}/tags", self.put_tags, ["PUT"])
        r("/v3/projects/{project_id}/tags", self.delete_tags, ["DELETE"])
        r("/v3/projects/{project_id}/tags/{tag}", self.check_tag, ["GET"])
        r("/v3/projects/{project_id}/tags/{tag}", self.add_tag, ["PUT"])
        r("/v3/projects/{project_id}/tags/{tag}", self.delete_tag, ["DELETE"])
        # users
        r("/v3/users", self.list_users, ["GET"])
        r("/v3/users", self.create_user, ["POST"])
        r("/v3/users/{user_id}", self.get_user, ["GET"])
        r("/v3/users/{user_id}", self.update_user, ["PATCH"])
        r("/v3/users/{user_id}", self.delete_user, ["DELETE"])
        r("/v3/users/{user_id}/password", self.change_password, ["POST"], public=True)
        r("/v3/users/{user_id}/groups", self.user_groups, ["GET"])
        r("/v3/users/{user_id}/projects", self.user_projects, ["GET"])
        r("/v3/users/{user_id}/application_credentials", self.list_app_creds, ["GET"])
        r("/v3/users/{user_id}/application_credentials", self.create_app_cred, ["POST"])
        r("/v3/users/{user_id}/application_credentials/{app_cred_id}", self.get_app_cred,
          ["GET"])
        r("/v3/users/{user_id}/application_credentials/{app_cred_id}", self.delete_app_cred,
          ["DELETE"])
        r("/v3/users/{user_id}/access_rules", self.list_access_rules, ["GET"])
        r("/v3/users/{user_id}/access_rules/{rule_id}", self.get_access_rule, ["GET"])
        r("/v3/users/{user_id}/access_rules/{rule_id}", self.delete_access_rule, ["DELETE"])
        # groups
        r("/v3/groups", self.list_groups, ["GET"])
        r("/v3/groups", self.create_group, ["POST"])
        r("/v3/groups/{group_id}", self.get_group, ["GET"])
        r("/v3/groups/{group_id}", self.update_group, ["PATCH"])
        r("/v3/groups/{group_id}", self.delete_group, ["DELETE"])
        r("/v3/groups/{group_id}/users", self.group_users, ["GET"])
        r("/v3/groups/{group_id}/users/{user_id}", self.check_member, ["GET", "HEAD"])
        r("/v3/groups/{group_id}/users/{user_id}", self.add_member, ["PUT"])
        r("/v3/groups/{group_id}/users/{user_id}", self.remove_member, ["DELETE"])
        # roles
        r("/v3/roles", self.list_roles, ["GET"])
        r("/v3/roles", self.create_role, ["POST"])
        r("/v3/roles/{role_id}", self.get_role, ["GET"])
        r("/v3/roles/{role_id}", self.update_role, ["PATCH"])
        r("/v3/roles/{role_id}", self.delete_role, ["DELETE"])
        r("/v3/roles/{prior_id}/implies", self.list_implies, ["GET"])
        r("/v3/roles/{prior_id}/implies/{implied_id}", self.check_implied, ["HEAD"])
        r("/v3/roles/{prior_id}/implies/{implied_id}", self.get_implied, ["GET"])
        r("/v3/roles/{prior_id}/implies/{implied_id}", self.create_implied, ["PUT"])
        r("/v3/roles/{prior_id}/implies/{implied_id}", self.delete_implied, ["DELETE"])
        r("/v3/role_inferences", self.role_inferences, ["GET"])
        r("/v3/role_assignments", self.role_assignments, ["GET"])
        # grants
        for target in ("projects", "domains"):
            for actor in ("users", "groups"):
                base = f"/v3/{target}/{{target_id}}/{actor}/{{actor_id}}/roles"
                r(base, self._grant_list(target, actor, False), ["GET"])
                r(base + "/{role_id}", self._grant_check(target, actor, False), ["GET", "HEAD"])
                r(base + "/{role_id}", self._grant_put(target, actor, False), ["PUT"])
                r(base + "/{role_id}", self._grant_delete(target, actor, False), ["DELETE"])
                inh = (f"/v3/OS-INHERIT/{target}/{{target_id}}/{actor}/{{actor_id}}/roles")
                r(inh + "/inherited_to_projects", self._grant_list(target, actor, True),
                  ["GET"])
                r(inh + "/{role_id}/inherited_to_projects",
                  self._grant_check(target, actor, True), ["GET", "HEAD"])
                r(inh + "/{role_id}/inherited_to_projects",
                  self._grant_put(target, actor, True), ["PUT"])
                r(inh + "/{role_id}/inherited_to_projects",
                  self._grant_delete(target, actor, True), ["DELETE"])
        for actor in ("users", "groups"):
            base = f"/v3/system/{actor}/{{actor_id}}/roles"
            r(base, self._grant_list("system", actor, False), ["GET"])
            r(base + "/{role_id}", self._grant_check("system", actor, False), ["GET", "HEAD"])
            r(base + "/{role_id}", self._grant_put("system", actor, False), ["PUT"])
            r(base + "/{role_id}", self._grant_delete("system", actor, False), ["DELETE"])
        # catalog
        r("/v3/regions", self.list_regions, ["GET"])
        r("/v3/regions", self.create_region, ["POST"])
        r("/v3/regions/{region_id}", self.get_region, ["GET"])
        r("/v3/regions/{region_id}", self.put_region, ["PUT"])
        r("/v3/regions/{region_id}", self.update_region, ["PATCH"])
        r("/v3/regions/{region_id}", self.delete_region, ["DELETE"])
        r("/v3/services", self.list_services, ["GET"])
        r("/v3/services", self.create_service, ["POST"])
        r("/v3/services/{service_id}", self.get_service, ["GET"])
        r("/v3/services/{service_id}", self.update_service, ["PATCH"])
        r("/v3/services/{service_id}", self.delete_service, ["DELETE"])
        r("/v3/endpoints", self.list_endpoints, ["GET"])
        r("/v3/endpoints", self.create_endpoint, ["POST"])
        r("/v3/endpoints/{endpoint_id}", self.get_endpoint, ["GET"])
        r("/v3/endpoints/{endpoint_id}", self.update_endpoint, ["PATCH"])
        r("/v3/endpoints/{endpoint_id}", self.delete_endpoint, ["DELETE"])
        # credentials
        r("/v3/credentials", self.list_credentials, ["GET"])
        r("/v3/credentials", self.create_credential, ["POST"])
        r("/v3/credentials/{credential_id}", self.get_credential, ["GET"])
        r("/v3/credentials/{credential_id}", self.update_credential, ["PATCH"])
        r("/v3/credentials/{credential_id}", self.delete_credential, ["DELETE"])
        # The OS-* extensions' and unified limits' routes are added by ``identity.service``
        # (their own modules).

    # ------------------------------------------------------------------ versions
    def _version_doc(self, req: ApiRequest) -> dict[str, Any]:
        return {"id": VERSION_ID, "status": "stable", "updated": VERSION_UPDATED,
                "links": [{"rel": "self", "href": f"{req.base_url}/v3/"}],
                "media-types": MEDIA}

    async def versions(self, req: ApiRequest) -> Response:
        return FastJSON({"versions": {"values": [self._version_doc(req)]}}, status_code=300)

    async def version(self, req: ApiRequest) -> dict[str, Any]:
        return {"version": self._version_doc(req)}

    # ------------------------------------------------------------------ tokens
    async def issue_token(self, req: ApiRequest) -> Response:
        body = await req.json()
        auth = schemas.body_of(body, "auth")
        if not isinstance(auth, dict):
            raise ValidationError("Expecting to find auth in request body.")
        valid: ValidToken = await self.tokens.authenticate_async(auth, req.ctx)
        body = self.tokens.document_bytes(valid, with_catalog=not _flag(req, "nocatalog"))
        return Response(body, status_code=201, media_type="application/json",
                        headers={"X-Subject-Token": valid.token_id})

    async def _subject(self, req: ApiRequest) -> ValidToken:
        subject = req.headers.get("x-subject-token")
        if not subject:
            raise NotFound("Could not find token.")
        allow_expired = _flag(req, "allow_expired")
        if allow_expired:
            req.enforce("identity:validate_token", {"target": {"token": {
                "user_id": req.ctx.user_id}}})
        valid = await self.tokens.validate_async(subject, subject=True,
                                                 allow_expired=allow_expired)
        return valid

    @staticmethod
    def _check_access_rules_support(req: ApiRequest, valid: ValidToken) -> None:
        """A token limited by access rules is shown only to a validator that says it
        enforces them (``OpenStack-Identity-Access-Rules: 1.0`` or later, as
        keystonemiddleware sends); to any other it does not exist, as in Keystone."""
        if valid.access_rules is None:
            return
        try:
            supported = float(req.headers.get("openstack-identity-access-rules", "0"))
        except ValueError:
            supported = 0.0
        if not supported >= ACCESS_RULES_MIN_VERSION:
            raise NotFound("Could not find token.", kind="TokenNotFound")

    async def validate_token(self, req: ApiRequest) -> Response:
        valid = await self._subject(req)
        self._check_access_rules_support(req, valid)
        req.enforce("identity:validate_token",
                    {"target": {"token": {"user_id": valid.user.id}}})
        body = self.tokens.document_bytes(valid, with_catalog=not _flag(req, "nocatalog"))
        return Response(body, media_type="application/json",
                        headers={"X-Subject-Token": valid.token_id})

    async def check_token_head(self, req: ApiRequest) -> Response:
        valid = await self._subject(req)
        self._check_access_rules_support(req, valid)
        req.enforce("identity:check_token", {"target": {"token": {"user_id": valid.user.id}}})
        return Response(status_code=200, headers={"X-Subject-Token": valid.token_id})

    async def revoke_token(self, req: ApiRequest) -> None:
        valid = await self._subject(req)
        req.enforce("identity:revoke_token", {"target": {"token": {"user_id": valid.user.id}}})
        await req.run(self.tokens.revoke_token, valid)

    async def _caller(self, req: ApiRequest) -> ValidToken:
        assert req.ctx.token is not None
        return await self.tokens.validate_async(req.ctx.token)

    async def auth_catalog(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("identity:get_auth_catalog")
        valid = await self._caller(req)
        if not valid.data.scope_type:
            raise Forbidden("A scoped token is required to get the service catalog.")
        return {"catalog": self.tokens.scoped_catalog(valid),
                "links": views.links(req.base_url, "auth/catalog")}

    async def auth_projects(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("identity:get_auth_projects")
        projects = await req.run(self.m.user_projects, req.ctx.user_id)
        tags = await req.run(self.m.project_tags, [p.id for p in projects])
        items = [views.project(req.base_url, p, tags[p.id]) for p in projects
                 if p.enabled and self._domain_enabled(p.domain_id)]
        return views.collection(req.base_url, "auth/projects", "projects", items)

    def _domain_enabled(self, domain_id: str) -> bool:
        info = self.m.domain_info(domain_id)
        return bool(info and info.enabled)

    async def auth_domains(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("identity:get_auth_domains")
        domains = await req.run(self.m.user_domains, req.ctx.user_id)
        items = [views.domain(req.base_url, d) for d in domains if d.enabled]
        return views.collection(req.base_url, "auth/domains", "domains", items)

    async def auth_system(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("identity:get_auth_system")
        roles = await req.run(self.m.effective_roles, req.ctx.user_id, None, None, True)
        system = [{"all": True}] if roles else []
        return {"system": system,
                "links": views.links(req.base_url, "auth/system")}

    async def pki_revoked(self, req: ApiRequest) -> None:
        raise APIError("PKI tokens are not supported.", status=410)

    async def revoke_events(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("identity:revocation_list")
        since = req.query.get("since")
        ts = None
        if since:
            try:
                from onestack.common.timeutils import to_timestamp
                ts = to_timestamp(parse_isotime(since))
            except ValueError as exc:
                raise BadRequest("Invalid since parameter.") from exc
        rows = await req.run(self.m.list_revocations, ts)
        from onestack.common.timeutils import from_timestamp, isotime
        events = []
        for row in rows:
            ev: dict[str, Any] = {"issued_before": isotime(from_timestamp(row.issued_before),
                                                           subsecond=True)}
            for key in ("user_id", "project_id", "domain_id", "audit_id", "audit_chain_id"):
                if getattr(row, key) is not None:
                    ev[key] = getattr(row, key)
            events.append(ev)
        return {"events": events, "links": views.links(req.base_url, "OS-REVOKE/events")}

    # ------------------------------------------------------------------ domains
    async def list_domains(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("identity:list_domains")
        domains = await req.run(self.m.list_domains, req.query.get("name"),
                                _bool(req.query.get("enabled"), "enabled"))
        return views.collection(req.base_url, "domains", "domains",
                                [views.domain(req.base_url, d) for d in domains],
                                str(req.request.url.query))

    async def create_domain(self, req: ApiRequest) -> Response:
        req.enforce("identity:create_domain")
        body = schemas.validate(schemas.DOMAIN_CREATE,
                                schemas.body_of(await req.json(), "domain"), "domain")
        extra = {k: v for k, v in body.items()
                 if k not in ("name", "description", "enabled", "id", "tags", "options")}
        d = await req.run(self.m.create_domain, body["name"], body.get("description"),
                          body.get("enabled", True), body.get("id"), extra)
        return FastJSON({"domain": views.domain(req.base_url, d)}, status_code=201)

    async def get_domain(self, req: ApiRequest) -> dict[str, Any]:
        did = req.param("domain_id")
        req.enforce("identity:get_domain", {"target": {"domain": {"id": did}}})
        d = await req.run(self.m.get_domain, did)
        return {"domain": views.domain(req.base_url, d)}

    async def update_domain(self, req: ApiRequest) -> dict[str, Any]:
        did = req.param("domain_id")
        req.enforce("identity:update_domain", {"target": {"domain": {"id": did}}})
        body = schemas.validate(schemas.DOMAIN_UPDATE,
                                schemas.body_of(await req.json(), "domain"), "domain")
        if "id" in body and body["id"] != did:
            raise ValidationError("Cannot change the domain id.")
        d = await req.run(self.m.update_domain, did, body)
        return {"domain": views.domain(req.base_url, d)}

    async def delete_domain(self, req: ApiRequest) -> None:
        did = req.param("domain_id")
        req.enforce("identity:delete_domain", {"target": {"domain": {"id": did}}})
        await req.run(self.m.delete_domain, did)

    # ------------------------------------------------------------------ projects
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

    async def create_project(self, req: ApiRequest) -> Response:
        body = schemas.validate(schemas.PROJECT_CREATE,
                                schemas.body_of(await req.json(), "project"), "project")
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
        extra = {k: v for k, v in body.items() if k not in (
            "name", "description", "enabled", "domain_id", "parent_id", "is_domain", "tags",
            "options")}
        p = await req.run(lambda: self.m.create_project(
            body["name"], domain_id, body.get("description"), body.get("enabled", True),
            parent_id, body.get("tags"), body.get("is_domain", False), extra,
            body.get("options")))
        tags = (await req.run(self.m.project_tags, [p.id])).get(p.id, [])
        return FastJSON({"project": views.project(req.base_url, p, tags)}, status_code=201)

    async def get_project(self, req: ApiRequest) -> dict[str, Any]:
        pid = req.param("project_id")
        p = await req.run(self.m.get_project_or_domain, pid)
        req.enforce("identity:get_project", {"target": {"project": {
            "id": p.id, "domain_id": p.domain_id}}})
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

    async def update_project(self, req: ApiRequest) -> dict[str, Any]:
        pid = req.param("project_id")
        p = await req.run(self.m.get_project_or_domain, pid)
        req.enforce("identity:update_project", {"target": {"project": {
            "id": p.id, "domain_id": p.domain_id}}})
        body = schemas.validate(schemas.PROJECT_UPDATE,
                                schemas.body_of(await req.json(), "project"), "project")
        changes = dict(body)
        extra = {k: v for k, v in body.items() if k not in (
            "name", "description", "enabled", "domain_id", "parent_id", "is_domain", "tags",
            "options")}
        for k in extra:
            changes.pop(k)
        if extra:
            changes["extra"] = extra
        p = await req.run(self.m.update_project, pid, changes)
        tags = (await req.run(self.m.project_tags, [p.id])).get(p.id, [])
        return {"project": views.project(req.base_url, p, tags)}

    async def delete_project(self, req: ApiRequest) -> None:
        pid = req.param("project_id")
        p = await req.run(self.m.get_project, pid)
        req.enforce("identity:delete_project", {"target": {"project": {
            "id": p.id, "domain_id": p.domain_id}}})
        await req.run(self.m.delete_project, pid, _flag(req, "cascade"))

    async def _project_for_tags(self, req: ApiRequest, action: str) -> str:
        pid = req.param("project_id")
        p = await req.run(self.m.get_project, pid)
        req.enforce(action, {"target": {"project": {"id": p.id, "domain_id": p.domain_id}}})
        return pid

    async def list_tags(self, req: ApiRequest) -> dict[str, Any]:
        pid = await self._project_for_tags(req, "identity:list_project_tags")
        return {"tags": (await req.run(self.m.project_tags, [pid]))[pid]}

    async def put_tags(self, req: ApiRequest) -> dict[str, Any]:
        pid = await self._project_for_tags(req, "identity:update_project_tags")
        body = schemas.validate(schemas.TAGS_PUT, await req.json(), "tags")
        return {"tags": await req.run(self.m.set_project_tags, pid, body["tags"])}

    async def delete_tags(self, req: ApiRequest) -> None:
        pid = await self._project_for_tags(req, "identity:delete_project_tags")
        await req.run(self.m.set_project_tags, pid, [])

    async def check_tag(self, req: ApiRequest) -> Response:
        pid = await self._project_for_tags(req, "identity:get_project_tag")
        tag = req.param("tag")
        if tag not in (await req.run(self.m.project_tags, [pid]))[pid]:
            raise NotFound(f"Could not find project tag: {tag}.")
        return Response(status_code=204)

    async def add_tag(self, req: ApiRequest) -> Response:
        pid = await self._project_for_tags(req, "identity:create_project_tag")
        tag = req.param("tag")
        schemas.validate(schemas.TAGS_PUT, {"tags": [tag]}, "tags")
        await req.run(self.m.add_project_tag, pid, tag)
        return Response(status_code=201,
                        headers={"Location": url_header(
                            f"{req.base_url}/v3/projects/{pid}/tags/{tag}")})

    async def delete_tag(self, req: ApiRequest) -> None:
        pid = await self._project_for_tags(req, "identity:delete_project_tag")
        await req.run(self.m.delete_project_tag, pid, req.param("tag"))

    # ------------------------------------------------------------------ users
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
        return views.collection(req.base_url, "users", "users",
                                [views.user(req.base_url, u) for u in users],
                                str(req.request.url.query))

    async def create_user(self, req: ApiRequest) -> Response:
        body = schemas.validate(schemas.USER_CREATE,
                                schemas.body_of(await req.json(), "user"), "user")
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

    async def get_user(self, req: ApiRequest) -> dict[str, Any]:
        uid = req.param("user_id")
        u = await req.run(self.m.get_user, uid)
        req.enforce("identity:get_user", {"target": {"user": {"id": u.id,
                                                              "domain_id": u.domain_id}}})
        return {"user": views.user(req.base_url, u)}

    async def update_user(self, req: ApiRequest) -> dict[str, Any]:
        uid = req.param("user_id")
        u = await req.run(self.m.get_user, uid)
        req.enforce("identity:update_user", {"target": {"user": {"id": u.id,
                                                                 "domain_id": u.domain_id}}})
        body = schemas.validate(schemas.USER_UPDATE,
                                schemas.body_of(await req.json(), "user"), "user")
        changes = {k: v for k, v in body.items() if k in (
            "name", "domain_id", "password", "enabled", "default_project_id", "options")}
        extra = {k: v for k, v in body.items() if k not in changes}
        if extra:
            changes["extra"] = extra
        u = await req.run(self.m.update_user, uid, changes)
        return {"user": views.user(req.base_url, u)}

    async def delete_user(self, req: ApiRequest) -> None:
        uid = req.param("user_id")
        u = await req.run(self.m.get_user, uid)
        req.enforce("identity:delete_user", {"target": {"user": {"id": u.id,
                                                                 "domain_id": u.domain_id}}})
        await req.run(self.m.delete_user, uid)

    async def change_password(self, req: ApiRequest) -> None:
        uid = req.param("user_id")
        body = schemas.validate(schemas.PASSWORD_CHANGE,
                                schemas.body_of(await req.json(), "user"), "user")
        # Like Keystone, no token is needed: the original password authenticates, so a user
        # whose password has expired can still change it.
        try:
            await req.run(self.m.change_password, uid, body["original_password"],
                          body["password"])
        except NotFound as exc:
            raise Unauthorized("The request you have made requires authentication.") from exc

    async def user_groups(self, req: ApiRequest) -> dict[str, Any]:
        uid = req.param("user_id")
        u = await req.run(self.m.get_user, uid)
        req.enforce("identity:list_groups_for_user", {"target": {"user": {
            "id": u.id, "domain_id": u.domain_id}}})
        groups = await req.run(self.m.list_groups, {"user_id": uid})
        return views.collection(req.base_url, f"users/{uid}/groups", "groups",
                                [views.group(req.base_url, g) for g in groups])

    async def user_projects(self, req: ApiRequest) -> dict[str, Any]:
        uid = req.param("user_id")
        u = await req.run(self.m.get_user, uid)
        req.enforce("identity:list_user_projects", {"target": {"user": {
            "id": u.id, "domain_id": u.domain_id}}})
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

    # ------------------------------------------------------------------ app credentials
    async def _own_user(self, req: ApiRequest, action: str) -> str:
        uid = req.param("user_id")
        req.enforce(action, {"target": {"user": {"id": uid}}})
        await req.run(self.m.get_user, uid)
        return uid

    async def list_app_creds(self, req: ApiRequest) -> dict[str, Any]:
        uid = await self._own_user(req, "identity:list_application_credentials")
        creds = await req.run(self.m.list_app_creds, uid, req.query.get("name"))
        items = [views.app_cred(req.base_url, a, self._role_names(a.roles or []))
                 for a in creds]
        return views.collection(req.base_url, f"users/{uid}/application_credentials",
                                "application_credentials", items)

    async def create_app_cred(self, req: ApiRequest) -> Response:
        uid = await self._own_user(req, "identity:create_application_credential")
        body = schemas.validate(schemas.APP_CRED_CREATE,
                                schemas.body_of(await req.json(), "application_credential"),
                                "application_credential")
        ctx = req.ctx
        if ctx.app_cred_id and ctx.extra.get("app_cred_restricted", True):
            raise Forbidden("Using a restricted application credential to create another "
                            "application credential is not allowed.")
        if not ctx.project_id:
            raise Forbidden("A project-scoped token is required to create an application "
                            "credential.")
        role_ids: list[str] = []
        held = {r for r in ctx.role_ids}
        by_name = dict(zip(ctx.roles, ctx.role_ids, strict=False))
        for ref in body.get("roles") or [{"id": rid} for rid in ctx.role_ids]:
            rid = ref.get("id") or by_name.get(ref.get("name", ""))
            if rid is None or rid not in held:
                raise Forbidden(f"Cannot create an application credential with a role the "
                                f"user does not hold on the project: "
                                f"{ref.get('id') or ref.get('name')}.")
            if rid not in role_ids:
                role_ids.append(rid)
        expires = None
        if body.get("expires_at"):
            try:
                expires = parse_isotime(body["expires_at"])
            except ValueError as exc:
                raise ValidationError("Invalid input for field 'expires_at'.") from exc
            if expires <= utcnow():
                raise ValidationError("The expiration time of an application credential must "
                                      "be in the future.")
        secret = body.get("secret") or secrets.token_urlsafe(64)
        rules = [dict(rule) for rule in body.get("access_rules") or []]
        ac = await req.run(lambda: self.m.create_app_cred(
            uid, ctx.project_id, body["name"], secret, body.get("description"), expires,
            bool(body.get("unrestricted")), role_ids, None, rules))
        return FastJSON({"application_credential": views.app_cred(
            req.base_url, ac, self._role_names(role_ids), secret)}, status_code=201)

    async def get_app_cred(self, req: ApiRequest) -> dict[str, Any]:
        uid = await self._own_user(req, "identity:get_application_credential")
        ac = await req.run(self.m.get_app_cred, req.param("app_cred_id"), uid)
        return {"application_credential": views.app_cred(
            req.base_url, ac, self._role_names(ac.roles or []))}

    async def delete_app_cred(self, req: ApiRequest) -> None:
        uid = await self._own_user(req, "identity:delete_application_credential")
        ctx = req.ctx
        if ctx.app_cred_id and ctx.extra.get("app_cred_restricted", True):
            raise Forbidden("A restricted application credential cannot delete application "
                            "credentials.")
        await req.run(self.m.delete_app_cred, req.param("app_cred_id"), uid)

    async def list_access_rules(self, req: ApiRequest) -> dict[str, Any]:
        uid = await self._own_user(req, "identity:list_access_rules")
        rules = await req.run(self.m.list_access_rules, uid)
        return views.collection(req.base_url, f"users/{uid}/access_rules", "access_rules",
                                [views.access_rule(req.base_url, r) for r in rules])

    async def get_access_rule(self, req: ApiRequest) -> dict[str, Any]:
        uid = await self._own_user(req, "identity:get_access_rule")
        r = await req.run(self.m.get_access_rule, uid, req.param("rule_id"))
        return {"access_rule": views.access_rule(req.base_url, r)}

    async def delete_access_rule(self, req: ApiRequest) -> None:
        uid = await self._own_user(req, "identity:delete_access_rule")
        await req.run(self.m.delete_access_rule, uid, req.param("rule_id"))

    # ------------------------------------------------------------------ groups
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
        return views.collection(req.base_url, "groups", "groups",
                                [views.group(req.base_url, g) for g in groups])

    async def create_group(self, req: ApiRequest) -> Response:
        body = schemas.validate(schemas.GROUP_CREATE,
                                schemas.body_of(await req.json(), "group"), "group")
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

    async def get_group(self, req: ApiRequest) -> dict[str, Any]:
        gid = await self._group(req, "identity:get_group")
        return {"group": views.group(req.base_url, await req.run(self.m.get_group, gid))}

    async def update_group(self, req: ApiRequest) -> dict[str, Any]:
        gid = await self._group(req, "identity:update_group")
        body = schemas.validate(schemas.GROUP_UPDATE,
                                schemas.body_of(await req.json(), "group"), "group")
        changes = {k: v for k, v in body.items() if k in ("name", "domain_id", "description")}
        extra = {k: v for k, v in body.items() if k not in changes}
        if extra:
            changes["extra"] = extra
        g = await req.run(self.m.update_group, gid, changes)
        return {"group": views.group(req.base_url, g)}

    async def delete_group(self, req: ApiRequest) -> None:
        gid = await self._group(req, "identity:delete_group")
        await req.run(self.m.delete_group, gid)

    async def group_users(self, req: ApiRequest) -> dict[str, Any]:
        gid = await self._group(req, "identity:list_users_in_group")
        users = await req.run(self.m.group_members, gid)
        return views.collection(req.base_url, f"groups/{gid}/users", "users",
                                [views.user(req.base_url, u) for u in users])

    async def check_member(self, req: ApiRequest) -> Response:
        gid = await self._group(req, "identity:check_user_in_group")
        uid = req.param("user_id")
        if not await req.run(self.m.is_member, gid, uid):
            raise NotFound(f"Could not find user: {uid} in group {gid}.")
        return Response(status_code=204)

    async def add_member(self, req: ApiRequest) -> None:
        gid = await self._group(req, "identity:add_user_to_group")
        await req.run(self.m.add_member, gid, req.param("user_id"))

    async def remove_member(self, req: ApiRequest) -> None:
        gid = await self._group(req, "identity:remove_user_from_group")
        await req.run(self.m.remove_member, gid, req.param("user_id"))

    # ------------------------------------------------------------------ roles
    async def list_roles(self, req: ApiRequest) -> dict[str, Any]:
        domain_id = req.query.get("domain_id")
        action = "identity:list_domain_roles" if domain_id else "identity:list_roles"
        req.enforce(action, {"target": {"domain_id": domain_id}})
        roles = await req.run(self.m.list_roles, req.query.get("name"), domain_id)
        return views.collection(req.base_url, "roles", "roles",
                                [views.role(req.base_url, r) for r in roles],
                                str(req.request.url.query))

    async def create_role(self, req: ApiRequest) -> Response:
        body = schemas.validate(schemas.ROLE_CREATE,
                                schemas.body_of(await req.json(), "role"), "role")
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

    async def get_role(self, req: ApiRequest) -> dict[str, Any]:
        role = await self._role(req, "identity:get_role", "identity:get_domain_role")
        return {"role": views.role(req.base_url, role)}

    async def update_role(self, req: ApiRequest) -> dict[str, Any]:
        await self._role(req, "identity:update_role", "identity:update_domain_role")
        body = schemas.validate(schemas.ROLE_UPDATE,
                                schemas.body_of(await req.json(), "role"), "role")
        changes = {k: v for k, v in body.items()
                   if k in ("name", "domain_id", "description", "options")}
        extra = {k: v for k, v in body.items() if k not in changes}
        if extra:
            changes["extra"] = extra
        role = await req.run(self.m.update_role, req.param("role_id"), changes)
        return {"role": views.role(req.base_url, role)}

    async def delete_role(self, req: ApiRequest) -> None:
        await self._role(req, "identity:delete_role", "identity:delete_domain_role")
        await req.run(self.m.delete_role, req.param("role_id"))

    async def list_implies(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("identity:list_implied_roles")
        rows = await req.run(self.m.list_implied_roles, req.param("prior_id"))
        prior, implies = rows[0]
        return {"role_inference": views.implied(req.base_url, prior, implies),
                "links": {"self": f"{req.base_url}/v3/roles/{prior.id}/implies"}}

    async def get_implied(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("identity:get_implied_role")
        prior, implied = await req.run(self.m.get_implied_role, req.param("prior_id"),
                                       req.param("implied_id"))
        return {"role_inference": {"prior_role": views.role_ref(req.base_url, prior),
                                   "implies": views.role_ref(req.base_url, implied)},
                "links": {"self": f"{req.base_url}/v3/roles/{prior.id}/implies/{implied.id}"}}

    async def check_implied(self, req: ApiRequest) -> Response:
        req.enforce("identity:check_implied_role")
        await req.run(self.m.get_implied_role, req.param("prior_id"), req.param("implied_id"))
        return Response(status_code=204)

    async def create_implied(self, req: ApiRequest) -> Response:
        req.enforce("identity:create_implied_role")
        prior, implied = await req.run(self.m.create_implied_role, req.param("prior_id"),
                                       req.param("implied_id"))
        return FastJSON(
            {"role_inference": {"prior_role": views.role_ref(req.base_url, prior),
                                "implies": views.role_ref(req.base_url, implied)},
             "links": {"self": f"{req.base_url}/v3/roles/{prior.id}/implies/{implied.id}"}},
            status_code=201)

    async def delete_implied(self, req: ApiRequest) -> None:
        req.enforce("identity:delete_implied_role")
        await req.run(self.m.delete_implied_role, req.param("prior_id"),
                      req.param("implied_id"))

    async def role_inferences(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("identity:list_role_inference_rules")
        rows = await req.run(self.m.list_implied_roles, None)
        return {"role_inferences": [views.implied(req.base_url, p, imp) for p, imp in rows],
                "links": {"self": f"{req.base_url}/v3/role_inferences"}}

    # ------------------------------------------------------------------ grants
    def _grant_kwargs(self, req: ApiRequest, target: str, actor: str, inherited: bool
                      ) -> dict[str, Any]:
        kw: dict[str, Any] = {"inherited": inherited}
        if target == "projects":
            kw["project_id"] = req.param("target_id")
        elif target == "domains":
            kw["domain_id"] = req.param("target_id")
        else:
            kw["system"] = "all"
        kw["user_id" if actor == "users" else "group_id"] = req.param("actor_id")
        return kw

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

    def _grant_list(self, target: str, actor: str, inherited: bool) -> Callable[..., Any]:
        async def handler(req: ApiRequest) -> dict[str, Any]:
            dom = await self._grant_target_domain(req, target)
            req.enforce(self._grant_action(target, actor, "list"),
                        {"target": {"domain_id": dom}})
            roles = await req.run(lambda: self.m.list_grants(
                **self._grant_kwargs(req, target, actor, inherited)))
            return views.collection(req.base_url, req.request.url.path[4:], "roles",
                                    [views.role(req.base_url, r) for r in roles])

        handler.__name__ = f"list_grants_{target}_{actor}"
        return handler

    def _grant_check(self, target: str, actor: str, inherited: bool) -> Callable[..., Any]:
        async def handler(req: ApiRequest) -> Response:
            dom = await self._grant_target_domain(req, target)
            req.enforce(self._grant_action(target, actor, "check"),
                        {"target": {"domain_id": dom}})
            await req.run(lambda: self.m.check_grant(
                req.param("role_id"), **self._grant_kwargs(req, target, actor, inherited)))
            return Response(status_code=204)

        handler.__name__ = f"check_grant_{target}_{actor}"
        return handler

    def _grant_put(self, target: str, actor: str, inherited: bool) -> Callable[..., Any]:
        async def handler(req: ApiRequest) -> None:
            dom = await self._grant_target_domain(req, target)
            req.enforce(self._grant_action(target, actor, "create"),
                        {"target": {"domain_id": dom}})
            await req.run(lambda: self.m.create_grant(
                req.param("role_id"), **self._grant_kwargs(req, target, actor, inherited)))

        handler.__name__ = f"create_grant_{target}_{actor}"
        return handler

    def _grant_delete(self, target: str, actor: str, inherited: bool) -> Callable[..., Any]:
        async def handler(req: ApiRequest) -> None:
            dom = await self._grant_target_domain(req, target)
            req.enforce(self._grant_action(target, actor, "revoke"),
                        {"target": {"domain_id": dom}})
            await req.run(lambda: self.m.delete_grant(
                req.param("role_id"), **self._grant_kwargs(req, target, actor, inherited)))

        handler.__name__ = f"delete_grant_{target}_{actor}"
        return handler

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

    # ------------------------------------------------------------------ regions
    async def list_regions(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("identity:list_regions")
        regions = await req.run(self.m.list_regions, req.query.get("parent_region_id"))
        return views.collection(req.base_url, "regions", "regions",
                                [views.region(req.base_url, r) for r in regions])

    async def create_region(self, req: ApiRequest) -> Response:
        req.enforce("identity:create_region")
        body = schemas.validate(schemas.REGION_CREATE,
                                schemas.body_of(await req.json(), "region"), "region")
        extra = {k: v for k, v in body.items()
                 if k not in ("id", "description", "parent_region_id")}
        region = await req.run(self.m.create_region, body.get("id"), body.get("description"),
                               body.get("parent_region_id"), extra)
        return FastJSON({"region": views.region(req.base_url, region)}, status_code=201)

    async def put_region(self, req: ApiRequest) -> Response:
        req.enforce("identity:create_region")
        body = schemas.validate(schemas.REGION_CREATE,
                                schemas.body_of(await req.json(), "region"), "region")
        rid = req.param("region_id")
        if body.get("id") not in (None, rid):
            raise ValidationError("The region id in the body must match the URL.")
        extra = {k: v for k, v in body.items()
                 if k not in ("id", "description", "parent_region_id")}
        region = await req.run(self.m.create_region, rid, body.get("description"),
                               body.get("parent_region_id"), extra)
        return FastJSON({"region": views.region(req.base_url, region)}, status_code=201)

    async def get_region(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("identity:get_region")
        region = await req.run(self.m.get_region, req.param("region_id"))
        return {"region": views.region(req.base_url, region)}

    async def update_region(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("identity:update_region")
        body = schemas.validate(schemas.REGION_UPDATE,
                                schemas.body_of(await req.json(), "region"), "region")
        changes = {k: v for k, v in body.items() if k in ("description", "parent_region_id")}
        extra = {k: v for k, v in body.items() if k not in changes}
        if extra:
            changes["extra"] = extra
        region = await req.run(self.m.update_region, req.param("region_id"), changes)
        return {"region": views.region(req.base_url, region)}

    async def delete_region(self, req: ApiRequest) -> None:
        req.enforce("identity:delete_region")
        await req.run(self.m.delete_region, req.param("region_id"))

    # ------------------------------------------------------------------ services
    async def list_services(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("identity:list_services")
        svcs = await req.run(self.m.list_services, req.query.get("type"),
                             req.query.get("name"))
        return views.collection(req.base_url, "services", "services",
                                [views.service(req.base_url, s) for s in svcs])

    async def create_service(self, req: ApiRequest) -> Response:
        req.enforce("identity:create_service")
        body = schemas.validate(schemas.SERVICE_CREATE,
                                schemas.body_of(await req.json(), "service"), "service")
        extra = {k: v for k, v in body.items()
                 if k not in ("type", "name", "description", "enabled")}
        svc = await req.run(self.m.create_service, body["type"], body.get("name"),
                            body.get("description"), body.get("enabled", True), extra)
        return FastJSON({"service": views.service(req.base_url, svc)}, status_code=201)

    async def get_service(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("identity:get_service")
        svc = await req.run(self.m.get_service, req.param("service_id"))
        return {"service": views.service(req.base_url, svc)}

    async def update_service(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("identity:update_service")
        body = schemas.validate(schemas.SERVICE_UPDATE,
                                schemas.body_of(await req.json(), "service"), "service")
        changes = {k: v for k, v in body.items()
                   if k in ("type", "name", "description", "enabled")}
        extra = {k: v for k, v in body.items() if k not in changes}
        if extra:
            changes["extra"] = extra
        svc = await req.run(self.m.update_service, req.param("service_id"), changes)
        return {"service": views.service(req.base_url, svc)}

    async def delete_service(self, req: ApiRequest) -> None:
        req.enforce("identity:delete_service")
        await req.run(self.m.delete_service, req.param("service_id"))

    # ------------------------------------------------------------------ endpoints
    async def list_endpoints(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("identity:list_endpoints")
        q = req.query
        interface = q.get("interface")
        if interface is not None and interface not in ("public", "internal", "admin"):
            raise ValidationError(f"Invalid interface: {interface}")
        eps = await req.run(self.m.list_endpoints, interface, q.get("service_id"),
                            q.get("region_id"))
        return views.collection(req.base_url, "endpoints", "endpoints",
                                [views.endpoint(req.base_url, e) for e in eps])

    async def create_endpoint(self, req: ApiRequest) -> Response:
        req.enforce("identity:create_endpoint")
        body = schemas.validate(schemas.ENDPOINT_CREATE,
                                schemas.body_of(await req.json(), "endpoint"), "endpoint")
        extra = {k: v for k, v in body.items() if k not in (
            "service_id", "interface", "url", "region_id", "region", "enabled")}
        e = await req.run(lambda: self.m.create_endpoint(
            body["service_id"], body["interface"], body["url"], body.get("region_id"),
            body.get("enabled", True), extra, body.get("region")))
        return FastJSON({"endpoint": views.endpoint(req.base_url, e)}, status_code=201)

    async def get_endpoint(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("identity:get_endpoint")
        e = await req.run(self.m.get_endpoint, req.param("endpoint_id"))
        return {"endpoint": views.endpoint(req.base_url, e)}

    async def update_endpoint(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("identity:update_endpoint")
        body = schemas.validate(schemas.ENDPOINT_UPDATE,
                                schemas.body_of(await req.json(), "endpoint"), "endpoint")
        changes = {k: v for k, v in body.items()
                   if k in ("service_id", "interface", "url", "region_id", "enabled")}
        if "region" in body and "region_id" not in body:
            changes["region_id"] = body["region"]
            changes["legacy_region"] = True
        extra = {k: v for k, v in body.items() if k not in changes and k != "region"}
        if extra:
            changes["extra"] = extra
        e = await req.run(self.m.update_endpoint, req.param("endpoint_id"), changes)
        return {"endpoint": views.endpoint(req.base_url, e)}

    async def delete_endpoint(self, req: ApiRequest) -> None:
        req.enforce("identity:delete_endpoint")
        await req.run(self.m.delete_endpoint, req.param("endpoint_id"))

    # ------------------------------------------------------------------ credentials
    async def list_credentials(self, req: ApiRequest) -> dict[str, Any]:
        user_id = req.query.get("user_id")
        if not req.ctx.is_admin:
            if user_id not in (None, req.ctx.user_id):
                return views.collection(req.base_url, "credentials", "credentials", [])
            user_id = req.ctx.user_id
        req.enforce("identity:list_credentials",
                    {"target": {"credential": {"user_id": user_id}}})
        creds = await req.run(self.m.list_credentials, user_id, req.query.get("type"))
        items = [views.credential(req.base_url, c, self.m.credential_blob(c)) for c in creds]
        return views.collection(req.base_url, "credentials", "credentials", items)

    async def create_credential(self, req: ApiRequest) -> Response:
        body = schemas.validate(schemas.CREDENTIAL_CREATE,
                                schemas.body_of(await req.json(), "credential"), "credential")
        req.enforce("identity:create_credential",
                    {"target": {"credential": {"user_id": body["user_id"]}}})
        cid = None
        if body["type"] == "ec2":
            try:
                blob = parse_json(body["blob"])
                access = blob["access"]
            except (BadRequest, KeyError, TypeError) as exc:
                raise ValidationError("Invalid blob in credential") from exc
            if not body.get("project_id"):
                raise ValidationError("Invalid blob in credential: project_id is required "
                                      "for ec2 credentials.")
            import hashlib
            cid = hashlib.sha256(str(access).encode()).hexdigest()
        extra = {k: v for k, v in body.items()
                 if k not in ("blob", "project_id", "type", "user_id", "id")}
        c = await req.run(lambda: self.m.create_credential(
            body["user_id"], body["type"], body["blob"], body.get("project_id"), cid, extra))
        return FastJSON({"credential": views.credential(req.base_url, c, body["blob"])},
                        status_code=201)

    async def _credential(self, req: ApiRequest, action: str) -> Any:
        c = await req.run(self.m.get_credential, req.param("credential_id"))
        if not req.allowed(action, {"target": {"credential": {"user_id": c.user_id}}}):
            raise NotFound(f"Could not find credential: {c.id}.")
        return c

    async def get_credential(self, req: ApiRequest) -> dict[str, Any]:
        c = await self._credential(req, "identity:get_credential")
        return {"credential": views.credential(req.base_url, c, self.m.credential_blob(c))}

    async def update_credential(self, req: ApiRequest) -> dict[str, Any]:
        await self._credential(req, "identity:update_credential")
        body = schemas.validate(schemas.CREDENTIAL_UPDATE,
                                schemas.body_of(await req.json(), "credential"), "credential")
        changes = {k: v for k, v in body.items()
                   if k in ("blob", "project_id", "type", "user_id")}
        extra = {k: v for k, v in body.items() if k not in changes}
        if extra:
            changes["extra"] = extra
        c = await req.run(self.m.update_credential, req.param("credential_id"), changes)
        return {"credential": views.credential(req.base_url, c, self.m.credential_blob(c))}

    async def delete_credential(self, req: ApiRequest) -> None:
        await self._credential(req, "identity:delete_credential")
        await req.run(self.m.delete_credential, req.param("credential_id"))


def build_policy(override_file: str | None) -> Policy:
    return Policy(RULES, override_file or None)
