"""Identity API: versions and tokens: issue (password, token, application credential, TOTP-less),
validate, revoke, the auth/* listings and revocation events."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from onestack.api.app import ApiRequest, FastJSON
from onestack.api.routes import serves
from onestack.common.errors import APIError, BadRequest, Forbidden, NotFound, ValidationError
from onestack.common.timeutils import parse_isotime
from onestack.identity import schemas, views
from onestack.identity.api_base import (
    ACCESS_RULES_MIN_VERSION,
    MEDIA,
    VERSION_ID,
    VERSION_UPDATED,
    IdentityHandler,
    _flag,
)
from onestack.identity.auth import ValidToken


class TokenRoutes(IdentityHandler):
    """Versions and tokens: issue (password, token, application credential, TOTP-less), validate,
    revoke, the auth/* listings and revocation events."""

    # ------------------------------------------------------------------ tokens
    # Declared first: routes are tried in the order declared, and these are the hot paths.
    @serves("POST", "/v3/auth/tokens", public=True)
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

    @serves("GET", "/v3/auth/tokens")
    async def validate_token(self, req: ApiRequest) -> Response:
        valid = await self._subject(req)
        self._check_access_rules_support(req, valid)
        req.enforce("identity:validate_token",
                    {"target": {"token": {"user_id": valid.user.id}}})
        body = self.tokens.document_bytes(valid, with_catalog=not _flag(req, "nocatalog"))
        return Response(body, media_type="application/json",
                        headers={"X-Subject-Token": valid.token_id})

    @serves("HEAD", "/v3/auth/tokens")
    async def check_token_head(self, req: ApiRequest) -> Response:
        valid = await self._subject(req)
        self._check_access_rules_support(req, valid)
        req.enforce("identity:check_token", {"target": {"token": {"user_id": valid.user.id}}})
        return Response(status_code=200, headers={"X-Subject-Token": valid.token_id})

    @serves("DELETE", "/v3/auth/tokens")
    async def revoke_token(self, req: ApiRequest) -> None:
        valid = await self._subject(req)
        req.enforce("identity:revoke_token", {"target": {"token": {"user_id": valid.user.id}}})
        await req.run(self.tokens.revoke_token, valid)

    # ------------------------------------------------------------------ versions
    def _version_doc(self, req: ApiRequest) -> dict[str, Any]:
        return {"id": VERSION_ID, "status": "stable", "updated": VERSION_UPDATED,
                "links": [{"rel": "self", "href": f"{req.base_url}/v3/"}],
                "media-types": MEDIA}

    @serves("GET", "/", public=True)
    async def versions(self, req: ApiRequest) -> Response:
        return FastJSON({"versions": {"values": [self._version_doc(req)]}}, status_code=300)

    @serves("GET", "/v3", public=True)
    @serves("GET", "/v3/", public=True)
    async def version(self, req: ApiRequest) -> dict[str, Any]:
        return {"version": self._version_doc(req)}

    # ------------------------------------------------------------------ the caller's token
    async def _caller(self, req: ApiRequest) -> ValidToken:
        assert req.ctx.token is not None
        return await self.tokens.validate_async(req.ctx.token)

    @serves("GET", "/v3/auth/catalog")
    async def auth_catalog(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("identity:get_auth_catalog")
        valid = await self._caller(req)
        if not valid.data.scope_type:
            raise Forbidden("A scoped token is required to get the service catalog.")
        return {"catalog": self.tokens.scoped_catalog(valid),
                "links": views.links(req.base_url, "auth/catalog")}

    @serves("GET", "/v3/auth/projects")
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

    @serves("GET", "/v3/auth/domains")
    async def auth_domains(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("identity:get_auth_domains")
        domains = await req.run(self.m.user_domains, req.ctx.user_id)
        items = [views.domain(req.base_url, d) for d in domains if d.enabled]
        return views.collection(req.base_url, "auth/domains", "domains", items)

    @serves("GET", "/v3/auth/system")
    async def auth_system(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("identity:get_auth_system")
        roles = await req.run(self.m.effective_roles, req.ctx.user_id, None, None, True)
        system = [{"all": True}] if roles else []
        return {"system": system,
                "links": views.links(req.base_url, "auth/system")}

    @serves("GET", "/v3/auth/tokens/OS-PKI/revoked")
    async def pki_revoked(self, req: ApiRequest) -> None:
        raise APIError("PKI tokens are not supported.", status=410)

    @serves("GET", "/v3/OS-REVOKE/events")
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
