"""Identity API: application credentials (with access rules) and credentials."""

from __future__ import annotations

import secrets
from typing import Any

from starlette.responses import Response

from onestack.api.app import ApiRequest, FastJSON
from onestack.api.body import parse_json
from onestack.api.routes import serves
from onestack.common.errors import BadRequest, Forbidden, NotFound, ValidationError
from onestack.common.timeutils import utcnow
from onestack.identity import schemas, views
from onestack.identity.api_base import IdentityHandler, _body, _changes, _expires_at


class CredentialRoutes(IdentityHandler):
    """Application credentials (with access rules) and credentials."""

    # ------------------------------------------------------------------ app credentials
    async def _own_user(self, req: ApiRequest, action: str) -> str:
        uid = req.param("user_id")
        req.enforce(action, {"target": {"user": {"id": uid}}})
        await req.run(self.m.get_user, uid)
        return uid

    @serves("GET", "/v3/users/{user_id}/application_credentials")
    async def list_app_creds(self, req: ApiRequest) -> dict[str, Any]:
        uid = await self._own_user(req, "identity:list_application_credentials")
        creds = await req.run(self.m.list_app_creds, uid, req.query.get("name"))
        items = [views.app_cred(req.base_url, a, self._role_names(a.roles or []))
                 for a in creds]
        return views.collection(req.base_url, f"users/{uid}/application_credentials",
                                "application_credentials", items)

    @serves("POST", "/v3/users/{user_id}/application_credentials")
    async def create_app_cred(self, req: ApiRequest) -> Response:
        uid = await self._own_user(req, "identity:create_application_credential")
        body = await _body(req, schemas.APP_CRED_CREATE, "application_credential")
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
        expires = _expires_at(body)
        if expires is not None and expires <= utcnow():
            raise ValidationError("The expiration time of an application credential must be "
                                  "in the future.")
        secret = body.get("secret") or secrets.token_urlsafe(64)
        rules = [dict(rule) for rule in body.get("access_rules") or []]
        ac = await req.run(lambda: self.m.create_app_cred(
            uid, ctx.project_id, body["name"], secret, body.get("description"), expires,
            bool(body.get("unrestricted")), role_ids, None, rules))
        return FastJSON({"application_credential": views.app_cred(
            req.base_url, ac, self._role_names(role_ids), secret)}, status_code=201)

    @serves("GET", "/v3/users/{user_id}/application_credentials/{app_cred_id}")
    async def get_app_cred(self, req: ApiRequest) -> dict[str, Any]:
        uid = await self._own_user(req, "identity:get_application_credential")
        ac = await req.run(self.m.get_app_cred, req.param("app_cred_id"), uid)
        return {"application_credential": views.app_cred(
            req.base_url, ac, self._role_names(ac.roles or []))}

    @serves("DELETE", "/v3/users/{user_id}/application_credentials/{app_cred_id}")
    async def delete_app_cred(self, req: ApiRequest) -> None:
        uid = await self._own_user(req, "identity:delete_application_credential")
        ctx = req.ctx
        if ctx.app_cred_id and ctx.extra.get("app_cred_restricted", True):
            raise Forbidden("A restricted application credential cannot delete application "
                            "credentials.")
        await req.run(self.m.delete_app_cred, req.param("app_cred_id"), uid)

    @serves("GET", "/v3/users/{user_id}/access_rules")
    async def list_access_rules(self, req: ApiRequest) -> dict[str, Any]:
        uid = await self._own_user(req, "identity:list_access_rules")
        rules = await req.run(self.m.list_access_rules, uid)
        return views.listing(req.base_url, f"users/{uid}/access_rules", "access_rules",
                             views.access_rule, rules)

    @serves("GET", "/v3/users/{user_id}/access_rules/{rule_id}")
    async def get_access_rule(self, req: ApiRequest) -> dict[str, Any]:
        uid = await self._own_user(req, "identity:get_access_rule")
        r = await req.run(self.m.get_access_rule, uid, req.param("rule_id"))
        return {"access_rule": views.access_rule(req.base_url, r)}

    @serves("DELETE", "/v3/users/{user_id}/access_rules/{rule_id}")
    async def delete_access_rule(self, req: ApiRequest) -> None:
        uid = await self._own_user(req, "identity:delete_access_rule")
        await req.run(self.m.delete_access_rule, uid, req.param("rule_id"))
    # ------------------------------------------------------------------ credentials
    @serves("GET", "/v3/credentials")
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

    @serves("POST", "/v3/credentials")
    async def create_credential(self, req: ApiRequest) -> Response:
        body = await _body(req, schemas.CREDENTIAL_CREATE, "credential")
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

    @serves("GET", "/v3/credentials/{credential_id}")
    async def get_credential(self, req: ApiRequest) -> dict[str, Any]:
        c = await self._credential(req, "identity:get_credential")
        return {"credential": views.credential(req.base_url, c, self.m.credential_blob(c))}

    @serves("PATCH", "/v3/credentials/{credential_id}")
    async def update_credential(self, req: ApiRequest) -> dict[str, Any]:
        await self._credential(req, "identity:update_credential")
        body = await _body(req, schemas.CREDENTIAL_UPDATE, "credential")
        changes = _changes(body, ("blob", "project_id", "type", "user_id"))
        c = await req.run(self.m.update_credential, req.param("credential_id"), changes)
        return {"credential": views.credential(req.base_url, c, self.m.credential_blob(c))}

    @serves("DELETE", "/v3/credentials/{credential_id}")
    async def delete_credential(self, req: ApiRequest) -> None:
        await self._credential(req, "identity:delete_credential")
        await req.run(self.m.delete_credential, req.param("credential_id"))
