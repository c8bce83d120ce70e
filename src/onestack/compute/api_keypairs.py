"""Compute API: key pairs (``/os-keypairs``)."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from onestack.api.app import ApiRequest, FastJSON
from onestack.api.routes import serves
from onestack.common.errors import ValidationError
from onestack.common.pagination import next_link
from onestack.compute import schemas, views
from onestack.compute.microversions import ver
from onestack.compute.resource_base import ResourceHandler


class Keypairs(ResourceHandler):
    """Key pairs (``/os-keypairs``)."""

    # ================================================================== keypairs
    def _kp_user(self, req: ApiRequest, user_id: Any, action: str) -> str:
        """The keypairs' owner (another user's only for an admin, from 2.10) once
        ``os_compute_api:os-keypairs:<action>`` allows it (keypairs belong to users: Nova
        asks no project role)."""
        user = req.ctx.user_id or ""
        if user_id and user_id != req.ctx.user_id and ver(req) >= "2.10":
            user = str(user_id)
        req.enforce(f"os_compute_api:os-keypairs:{action}",
                    {"project_id": req.ctx.project_id or "", "user_id": user})
        return user

    @serves("GET", "/v2.1/os-keypairs")
    async def list_keypairs(self, req: ApiRequest) -> dict[str, Any]:
        v = ver(req)
        user = self._kp_user(req, req.query.get("user_id"), "index")
        limit = marker = None
        if v >= "2.35":
            if req.query.get("limit") is not None:
                limit = schemas.integer(req.query.get("limit"), "limit", 0)
            marker = req.query.get("marker")
        kps = await req.run(self.m.list_keypairs, user, limit, marker)
        out: dict[str, Any] = {"keypairs": [{"keypair": views.keypair(k, v)} for k in kps]}
        if limit and len(kps) == limit:
            out["keypairs_links"] = [{"rel": "next", "href": next_link(
                req.base_url + req.request.url.path, req.query, kps[-1]["name"], limit)}]
        return out

    @serves("POST", "/v2.1/os-keypairs")
    async def create_keypair(self, req: ApiRequest) -> Response:
        v = ver(req)
        body = await req.json()
        kp = schemas.obj(body, "keypair")
        schemas.only_as_of(kp, v, {"name", "public_key"}, {"type": "2.2", "user_id": "2.10"},
                           "keypair")
        name = kp.get("name")
        if not isinstance(name, str) or not 1 <= len(name) <= 255 or \
                (v < "2.92" and not schemas.KEYPAIR_NAME.match(name)) or not name.strip():
            raise ValidationError("Keypair data is invalid: Keypair name contains unsafe "
                                  "characters")
        public_key = kp.get("public_key")
        if v >= "2.92" and public_key is None:
            raise ValidationError("Invalid input for field/attribute keypair. 'public_key' is "
                                  "a required property")
        if public_key is not None and not isinstance(public_key, str):
            raise ValidationError("Invalid input for field/attribute public_key.")
        ktype = kp.get("type", "ssh")
        if ktype not in ("ssh", "x509"):
            raise ValidationError("Invalid input for field/attribute type.")
        user = self._kp_user(req, kp.get("user_id"), "create")
        created = await req.run(self.m.create_keypair, req.ctx, user, name, public_key, ktype)
        doc = views.keypair(created, v, created=True)
        return FastJSON({"keypair": doc}, status_code=201 if v >= "2.2" else 200)

    @serves("GET", "/v2.1/os-keypairs/{name}")
    async def show_keypair(self, req: ApiRequest) -> dict[str, Any]:
        user = self._kp_user(req, req.query.get("user_id"), "show")
        kp = await req.run(self.m.get_keypair, user, req.param("name"))
        return {"keypair": views.keypair(kp, ver(req), full=True)}

    @serves("DELETE", "/v2.1/os-keypairs/{name}")
    async def delete_keypair(self, req: ApiRequest) -> Response:
        user = self._kp_user(req, req.query.get("user_id"), "delete")
        await req.run(self.m.delete_keypair, user, req.param("name"))
        return Response(status_code=204 if ver(req) >= "2.2" else 202)
