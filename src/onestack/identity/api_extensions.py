"""Identity API routes for Keystone's extensions: OS-TRUST, OS-EC2, OS-OAUTH1 consumers,
OS-EP-FILTER endpoint groups, policies and domain configuration."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.responses import Response

from onestack.api.app import ApiRequest, FastJSON
from onestack.api.routes import serves
from onestack.common.errors import BadRequest, Forbidden, NotFound, ValidationError
from onestack.common.timeutils import isotime
from onestack.identity import schemas, views
from onestack.identity.api_base import _body, _expires_at
from onestack.identity.api_members import Member, body_as_is
from onestack.identity.documents import DOMAIN_CONFIG_DEFAULTS, DocumentStore
from onestack.identity.records import DocumentRecord, TrustRecord

if TYPE_CHECKING:
    from onestack.identity.api import IdentityAPI

TRUST_CREATE = {
    "type": "object",
    "properties": {
        "trustor_user_id": {"type": "string", "minLength": 1, "maxLength": 64},
        "trustee_user_id": {"type": "string", "minLength": 1, "maxLength": 64},
        "impersonation": {"type": "boolean"},
        "project_id": {"type": ["string", "null"], "maxLength": 64},
        # Keystone's: each role named by exactly one of id or name, both strings.
        "roles": {"type": "array", "items": {
            "type": "object",
            "properties": {"id": {"type": "string", "minLength": 1, "maxLength": 64},
                           "name": {"type": "string", "minLength": 1, "maxLength": 255}},
            "minProperties": 1, "maxProperties": 1, "additionalProperties": False}},
        "expires_at": {"type": ["string", "null"], "maxLength": 64},
        "remaining_uses": {"type": ["integer", "null"], "minimum": 1},
        "allow_redelegation": {"type": ["boolean", "null"]},
        "redelegation_count": {"type": ["integer", "null"], "minimum": 0},
    },
    "required": ["trustor_user_id", "trustee_user_id", "impersonation"],
    "additionalProperties": True,
}
POLICY_CREATE = {"type": "object", "properties": {
    "blob": {"type": "string"}, "type": {"type": "string", "maxLength": 255}},
    "required": ["blob", "type"], "additionalProperties": True}
POLICY_UPDATE = {"type": "object", "properties": {
    "blob": {"type": "string"}, "type": {"type": "string", "maxLength": 255}},
    "minProperties": 1, "additionalProperties": True}
CONSUMER = {"type": "object", "properties": {"description": {"type": ["string", "null"]}},
            "additionalProperties": True}
_FILTER_KEYS = ("interface", "service_id", "region_id")
ENDPOINT_GROUP_CREATE = {"type": "object", "properties": {
    "name": {"type": "string", "minLength": 1, "maxLength": 255},
    "description": {"type": ["string", "null"]},
    "filters": {"type": "object", "minProperties": 1,
                "properties": {k: {"type": "string"} for k in _FILTER_KEYS},
                "additionalProperties": False}},
    "required": ["name", "filters"], "additionalProperties": False}
ENDPOINT_GROUP_UPDATE = {**ENDPOINT_GROUP_CREATE, "required": [], "minProperties": 1}


class ExtensionRoutes:
    """Trusts, OAuth1 consumers, endpoint groups, policies, domain configs and EC2
    credentials."""

    def __init__(self, api: IdentityAPI) -> None:
        self.api = api
        self.m = api.m
        self.trusts = api.tokens.trusts
        self.docs = DocumentStore(api.m)

    # ------------------------------------------------------------------ trusts
    def _trust_view(self, base: str, t: TrustRecord) -> dict[str, Any]:
        roles = []
        for rid in t.roles or []:
            try:
                role = self.m.get_role(rid)
            except NotFound:
                continue
            roles.append({"id": role.id, "name": role.name,
                          "links": {"self": f"{base}/v3/roles/{role.id}"}})
        return {
            **(t.extra or {}), "id": t.id, "trustor_user_id": t.trustor_user_id,
            "trustee_user_id": t.trustee_user_id, "project_id": t.project_id,
            "impersonation": t.impersonation,
            "expires_at": isotime(t.expires_at, subsecond=True),
            "remaining_uses": t.remaining_uses, "allow_redelegation": t.allow_redelegation,
            "redelegation_count": t.redelegation_count, "roles": roles,
            "roles_links": {"self": f"{base}/v3/OS-TRUST/trusts/{t.id}/roles",
                            "previous": None, "next": None},
            "links": {"self": f"{base}/v3/OS-TRUST/trusts/{t.id}"},
        }

    @serves("POST", "/v3/OS-TRUST/trusts")
    async def create_trust(self, req: ApiRequest) -> Response:
        body = await _body(req, TRUST_CREATE, "trust")
        if body["trustor_user_id"] != req.ctx.user_id:
            raise Forbidden("The authenticated user should match the trustor.")
        if req.ctx.app_cred_id and req.ctx.extra.get("app_cred_restricted", True):
            raise Forbidden("Using a restricted application credential to create a trust is "
                            "not allowed.")
        expires = _expires_at(body)
        t = await req.run(lambda: self.trusts.create(
            body["trustor_user_id"], body["trustee_user_id"], body.get("project_id"),
            body.get("roles") or [], body["impersonation"], expires,
            body.get("remaining_uses"), bool(body.get("allow_redelegation"))))
        return FastJSON({"trust": self._trust_view(req.base_url, t)}, status_code=201)

    @serves("GET", "/v3/OS-TRUST/trusts")
    async def list_trusts(self, req: ApiRequest) -> dict[str, Any]:
        trustor = req.query.get("trustor_user_id")
        trustee = req.query.get("trustee_user_id")
        privileged = req.ctx.is_admin or (req.ctx.system_scope == "all"
                                          and "reader" in req.ctx.roles)
        if not privileged and not (trustor == req.ctx.user_id or trustee == req.ctx.user_id):
            raise Forbidden("You are not authorized to perform the requested action: "
                            "identity:list_trusts.")
        trusts = await req.run(self.trusts.list, trustor, trustee)
        return views.listing(req.base_url, "OS-TRUST/trusts", "trusts", self._trust_view, trusts)

    async def _visible_trust(self, req: ApiRequest) -> TrustRecord:
        t: TrustRecord = await req.run(self.trusts.get, req.param("trust_id"))
        if not (req.ctx.is_admin or req.ctx.user_id in (t.trustor_user_id,
                                                         t.trustee_user_id)):
            raise NotFound(f"Could not find trust: {t.id}.")
        return t

    @serves("GET", "/v3/OS-TRUST/trusts/{trust_id}")
    async def get_trust(self, req: ApiRequest) -> dict[str, Any]:
        t = await self._visible_trust(req)
        return {"trust": self._trust_view(req.base_url, t)}

    @serves("DELETE", "/v3/OS-TRUST/trusts/{trust_id}")
    async def delete_trust(self, req: ApiRequest) -> None:
        t = await self._visible_trust(req)
        if not (req.ctx.is_admin or req.ctx.user_id == t.trustor_user_id):
            raise Forbidden("Only the trustor may delete a trust.")
        await req.run(self.trusts.delete, t.id)

    @serves("GET", "/v3/OS-TRUST/trusts/{trust_id}/roles")
    async def trust_roles(self, req: ApiRequest) -> dict[str, Any]:
        t = await self._visible_trust(req)
        view = self._trust_view(req.base_url, t)
        return {"roles": view["roles"], "links": view["roles_links"]}

    async def _trust_role(self, req: ApiRequest) -> dict[str, Any]:
        t = await self._visible_trust(req)
        rid = req.param("role_id")
        for role in self._trust_view(req.base_url, t)["roles"]:
            if role["id"] == rid:
                return role
        raise NotFound(f"Could not find role: {rid}.")

    @serves("GET", "/v3/OS-TRUST/trusts/{trust_id}/roles/{role_id}")
    async def trust_role(self, req: ApiRequest) -> dict[str, Any]:
        return {"role": await self._trust_role(req)}

    @serves("HEAD", "/v3/OS-TRUST/trusts/{trust_id}/roles/{role_id}")
    async def check_trust_role(self, req: ApiRequest) -> Response:
        await self._trust_role(req)
        return Response(status_code=200)

    # ------------------------------------------------------------------ EC2
    def _ec2_view(self, base: str, item: dict[str, Any]) -> dict[str, Any]:
        return {**item, "links": {"self": f"{base}/v3/users/{item['user_id']}/credentials/"
                                          f"OS-EC2/{item['access']}"}}

    def _own(self, req: ApiRequest) -> str:
        uid = req.param("user_id")
        if not (req.ctx.is_admin or req.ctx.user_id == uid):
            raise Forbidden("You are not authorized to perform the requested action: "
                            "identity:ec2_credentials.")
        return uid

    @serves("POST", "/v3/users/{user_id}/credentials/OS-EC2")
    async def create_ec2(self, req: ApiRequest) -> Response:
        uid = self._own(req)
        ctx = req.ctx
        if ctx.app_cred_id and ctx.extra.get("app_cred_restricted", True):
            raise Forbidden("You are not authorized to perform the requested action: Using "
                            "method 'application_credential' is not allowed for managing "
                            "additional application credentials.")
        body = await req.json()
        if not isinstance(body, dict) or not isinstance(body.get("tenant_id"), str):
            raise ValidationError("Expecting to find tenant_id in request body.")
        if ctx.app_cred_id and body["tenant_id"] != ctx.project_id:
            # A delegated token reaches no further than its own project (Keystone).
            raise Forbidden("You are not authorized to perform the requested action: EC2 "
                            "credential project does not match the project scope of the "
                            "delegated token.")
        item = await req.run(self.docs.create_ec2, uid, body["tenant_id"])
        return FastJSON({"credential": self._ec2_view(req.base_url, item)}, status_code=201)

    @serves("GET", "/v3/users/{user_id}/credentials/OS-EC2")
    async def list_ec2(self, req: ApiRequest) -> dict[str, Any]:
        uid = self._own(req)
        items = await req.run(self.docs.list_ec2, uid)
        return views.listing(req.base_url, f"users/{uid}/credentials/OS-EC2", "credentials",
                             self._ec2_view, items)

    @serves("GET", "/v3/users/{user_id}/credentials/OS-EC2/{access}")
    async def get_ec2(self, req: ApiRequest) -> dict[str, Any]:
        uid = self._own(req)
        item = await req.run(self.docs.get_ec2, uid, req.param("access"))
        return {"credential": self._ec2_view(req.base_url, item)}

    @serves("DELETE", "/v3/users/{user_id}/credentials/OS-EC2/{access}")
    async def delete_ec2(self, req: ApiRequest) -> None:
        uid = self._own(req)
        await req.run(self.docs.delete_ec2, uid, req.param("access"))

    # ------------------------------------------------------------------ members
    def members(self) -> tuple[Member, ...]:
        """Show, update and delete of policies, OAuth1 consumers and endpoint groups."""
        d = self.docs
        return (
            Member("/v3/policies/{policy_id}", "policy", self._policy_view, d.get_policy,
                   d.update_policy, d.delete_policy, POLICY_UPDATE, _without_id),
            Member("/v3/OS-OAUTH1/consumers/{consumer_id}", "consumer", self._consumer_view,
                   d.get_consumer, d.update_consumer, d.delete_consumer, CONSUMER,
                   _same_consumer),
            Member("/v3/OS-EP-FILTER/endpoint_groups/{group_id}", "endpoint_group",
                   self._group_view, d.get_endpoint_group, d.update_endpoint_group,
                   d.delete_endpoint_group, ENDPOINT_GROUP_UPDATE, body_as_is))

    # ------------------------------------------------------------------ policies
    def _policy_view(self, base: str, d: DocumentRecord) -> dict[str, Any]:
        return {**d.data, "id": d.id, "links": {"self": f"{base}/v3/policies/{d.id}"}}

    @serves("GET", "/v3/policies")
    async def list_policies(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("identity:list_policies")
        docs = await req.run(self.docs.list_policies, req.query.get("type"))
        return views.listing(req.base_url, "policies", "policies", self._policy_view, docs)

    @serves("POST", "/v3/policies")
    async def create_policy(self, req: ApiRequest) -> Response:
        req.enforce("identity:create_policy")
        body = await _body(req, POLICY_CREATE, "policy")
        extra = {k: v for k, v in body.items() if k not in ("blob", "type", "id")}
        d = await req.run(self.docs.create_policy, body["blob"], body["type"], extra)
        return FastJSON({"policy": self._policy_view(req.base_url, d)}, status_code=201)

    # ------------------------------------------------------------------ consumers
    def _consumer_view(self, base: str, d: DocumentRecord, secret: str | None = None
                       ) -> dict[str, Any]:
        data = {k: v for k, v in d.data.items() if k != "secret_hash"}
        out = {**data, "id": d.id, "links": {"self": f"{base}/v3/OS-OAUTH1/consumers/{d.id}"}}
        if secret is not None:
            out["secret"] = secret
        return out

    @serves("GET", "/v3/OS-OAUTH1/consumers")
    async def list_consumers(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("identity:list_consumers")
        docs = await req.run(self.docs.list_consumers)
        return views.listing(req.base_url, "OS-OAUTH1/consumers", "consumers", self._consumer_view,
                             docs)

    @serves("POST", "/v3/OS-OAUTH1/consumers")
    async def create_consumer(self, req: ApiRequest) -> Response:
        req.enforce("identity:create_consumer")
        body = await _body(req, CONSUMER, "consumer")
        extra = {k: v for k, v in body.items() if k not in ("description", "id", "secret")}
        d, secret = await req.run(self.docs.create_consumer, body.get("description"), extra)
        return FastJSON({"consumer": self._consumer_view(req.base_url, d, secret)},
                        status_code=201)

    # ------------------------------------------------------------------ endpoint groups
    def _group_view(self, base: str, d: DocumentRecord) -> dict[str, Any]:
        return {**d.data, "id": d.id,
                "links": {"self": f"{base}/v3/OS-EP-FILTER/endpoint_groups/{d.id}"}}

    @serves("GET", "/v3/OS-EP-FILTER/endpoint_groups")
    async def list_endpoint_groups(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("identity:list_endpoint_groups")
        docs = await req.run(self.docs.list_endpoint_groups, req.query.get("name"))
        return views.listing(req.base_url, "OS-EP-FILTER/endpoint_groups", "endpoint_groups",
                             self._group_view, docs)

    @serves("POST", "/v3/OS-EP-FILTER/endpoint_groups")
    async def create_endpoint_group(self, req: ApiRequest) -> Response:
        req.enforce("identity:create_endpoint_group")
        body = await _body(req, ENDPOINT_GROUP_CREATE, "endpoint_group")
        d = await req.run(self.docs.create_endpoint_group, body["name"], body["filters"],
                          body.get("description"))
        return FastJSON({"endpoint_group": self._group_view(req.base_url, d)},
                        status_code=201)

    @serves("HEAD", "/v3/OS-EP-FILTER/endpoint_groups/{group_id}")
    async def check_endpoint_group(self, req: ApiRequest) -> Response:
        req.enforce("identity:get_endpoint_group")
        await req.run(self.docs.get_endpoint_group, req.param("group_id"))
        return Response(status_code=200)

    @serves("GET", "/v3/OS-EP-FILTER/endpoint_groups/{group_id}/endpoints")
    async def endpoint_group_endpoints(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("identity:list_endpoints_associated_with_endpoint_group")
        eps = await req.run(self.docs.endpoints_in_group, req.param("group_id"))
        return views.listing(req.base_url, "OS-EP-FILTER/endpoint_groups/"
                             + req.param("group_id") + "/endpoints", "endpoints",
                             views.endpoint, eps)

    # ------------------------------------------------------------------ domain config
    @serves("GET", "/v3/domains/config/default")
    @serves("GET", "/v3/domains/config/{group}/default")
    @serves("GET", "/v3/domains/config/{group}/{option}/default")
    async def default_config(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("identity:get_domain_config_default")
        group = req.path_params.get("group")
        option = req.path_params.get("option")
        if group is None:
            return {"config": DOMAIN_CONFIG_DEFAULTS}
        if group not in DOMAIN_CONFIG_DEFAULTS:
            raise Forbidden(f"Group {group} is not supported for domain specific "
                            "configurations.")
        if option is None:
            return {"config": {group: DOMAIN_CONFIG_DEFAULTS[group]}}
        if option not in DOMAIN_CONFIG_DEFAULTS[group]:
            raise Forbidden(f"Option {option} in group {group} is not supported for domain "
                            "specific configurations.")
        return {"config": {option: DOMAIN_CONFIG_DEFAULTS[group][option]}}

    @serves("GET", "/v3/domains/{domain_id}/config")
    @serves("GET", "/v3/domains/{domain_id}/config/{group}")
    @serves("GET", "/v3/domains/{domain_id}/config/{group}/{option}")
    async def get_config(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("identity:get_domain_config")
        config = await req.run(self.docs.get_domain_config, req.param("domain_id"))
        group = req.path_params.get("group")
        option = req.path_params.get("option")
        if group is None:
            return {"config": config}
        if group not in config:
            raise NotFound(f"Could not find group {group} in domain config.")
        if option is None:
            return {"config": {group: config[group]}}
        if option not in config[group]:
            raise NotFound(f"Could not find option {option} in group {group}.")
        return {"config": {option: config[group][option]}}

    @serves("PUT", "/v3/domains/{domain_id}/config")
    async def put_config(self, req: ApiRequest) -> Response:
        req.enforce("identity:create_domain_config")
        config = schemas.body_of(await req.json(), "config")
        result, created = await req.run(self.docs.create_domain_config,
                                        req.param("domain_id"), config)
        return FastJSON({"config": result}, status_code=201 if created else 200)

    @serves("PATCH", "/v3/domains/{domain_id}/config")
    @serves("PATCH", "/v3/domains/{domain_id}/config/{group}")
    @serves("PATCH", "/v3/domains/{domain_id}/config/{group}/{option}")
    async def patch_config(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("identity:update_domain_config")
        config = schemas.body_of(await req.json(), "config")
        result = await req.run(self.docs.update_domain_config, req.param("domain_id"), config,
                               req.path_params.get("group"), req.path_params.get("option"))
        return {"config": result}

    @serves("DELETE", "/v3/domains/{domain_id}/config")
    @serves("DELETE", "/v3/domains/{domain_id}/config/{group}")
    @serves("DELETE", "/v3/domains/{domain_id}/config/{group}/{option}")
    async def delete_config(self, req: ApiRequest) -> None:
        req.enforce("identity:delete_domain_config")
        await req.run(self.docs.delete_domain_config, req.param("domain_id"),
                      req.path_params.get("group"), req.path_params.get("option"))


def _without_id(body: dict[str, Any], member_id: str) -> dict[str, Any]:
    """An update's changes: the body without an ``id`` it may carry."""
    body.pop("id", None)
    return body


def _same_consumer(body: dict[str, Any], consumer_id: str) -> dict[str, Any]:
    """A consumer update's changes: 400 when the body names another consumer."""
    if "id" in body and body["id"] != consumer_id:
        raise BadRequest("Cannot change consumer id.")
    return _without_id(body, consumer_id)
