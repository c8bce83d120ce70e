"""Block-storage API routes for volume types: types, their extra specs and project access
(Cinder's ``types``, ``types-manage``, ``os-volume-type-access``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.responses import Response

from onestack.api.app import ApiRequest
from onestack.api.routes import serves
from onestack.common.errors import BadRequest, NotFound
from onestack.volume import encryption, views
from onestack.volume.encryption import EncryptionTypes
from onestack.volume.params import _bool, _metadata, _obj, _one_item, _text, type_changes
from onestack.volume.row_changes import only_key

if TYPE_CHECKING:
    from onestack.volume.api import VolumeAPI


class TypeRoutes:
    """Volume types, their extra specs, access and encryption types."""

    def __init__(self, api: VolumeAPI) -> None:
        self.m = api.m
        self.enc = EncryptionTypes(api.m)

    @serves("GET", "/v3/types")
    async def list_types(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("volume_extension:type_get_all", {"project_id": req.ctx.project_id or ""})
        rows = await req.run(self.m.list_types, req.ctx, req.query.get("is_public"))
        return {"volume_types": [views.volume_type(t, req.ctx.is_admin) for t in rows]}

    @serves("GET", "/v3/types/{id}")
    async def show_type(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("volume_extension:type_get", {"project_id": req.ctx.project_id or ""})
        t = await req.run(self.m.get_type, req.ctx, req.param("id"))
        return {"volume_type": views.volume_type(t, req.ctx.is_admin)}

    def _admin(self, req: ApiRequest, action: str = "volume_extension:types_manage") -> None:
        req.enforce(action, {"project_id": req.ctx.project_id or ""})

    @serves("POST", "/v3/types")
    async def create_type(self, req: ApiRequest) -> dict[str, Any]:
        self._admin(req)
        body = _obj(await req.json(), "volume_type")
        name = _text(body.get("name"), "name", nullable=False) or ""
        if not name.strip():
            raise BadRequest("Invalid input for field/attribute name: a volume type needs a "
                             "name.")
        public = _bool(body.get("os-volume-type-access:is_public",
                                body.get("is_public", True)), "is_public")
        t = await req.run(self.m.create_type, name, _text(body.get("description"),
                                                          "description"),
                          public, _metadata(body.get("extra_specs"), "extra_specs"))
        return {"volume_type": views.volume_type(t, True, "create")}

    @serves("PUT", "/v3/types/{id}")
    async def update_type(self, req: ApiRequest) -> dict[str, Any]:
        self._admin(req)
        body = _obj(await req.json(), "volume_type")
        changes = type_changes(body)
        if not changes:
            raise BadRequest("Invalid input received: a volume type update needs a name, a "
                             "description or is_public.")
        t = await req.run(self.m.update_type, req.param("id"), changes)
        return {"volume_type": views.volume_type(t, True, "update")}

    @serves("DELETE", "/v3/types/{id}")
    async def delete_type(self, req: ApiRequest) -> Response:
        self._admin(req)
        await req.run(self.m.delete_type, req.param("id"))
        return Response(status_code=202)

    @serves("POST", "/v3/types/{id}/action")
    async def type_action(self, req: ApiRequest) -> Response:
        body = await req.json()
        for action, add in (("addProjectAccess", True), ("removeProjectAccess", False)):
            if isinstance(body, dict) and action in body:
                self._admin(req, f"volume_extension:volume_type_access:{action}")
                project = _obj(body, action).get("project")
                if not isinstance(project, str) or not project:
                    raise BadRequest("Access list requires a project.")
                await req.run(self.m.set_type_access, req.param("id"), project, add)
                return Response(status_code=202)
        raise BadRequest("There is no such action.")

    @serves("GET", "/v3/types/{id}/os-volume-type-access")
    async def type_access(self, req: ApiRequest) -> dict[str, Any]:
        self._admin(req, "volume_extension:volume_type_access")
        t = await req.run(self.m.get_type, req.ctx, req.param("id"))
        if t.is_public:
            raise NotFound("Access list not available for public volume types.")
        return {"volume_type_access": [{"volume_type_id": t.id, "project_id": p}
                                       for p in t.projects or []]}

    @serves("GET", "/v3/types/{id}/extra_specs")
    async def extra_specs(self, req: ApiRequest) -> dict[str, Any]:
        self._admin(req, "volume_extension:access_types_extra_specs")
        t = await req.run(self.m.get_type, req.ctx, req.param("id"))
        return {"extra_specs": dict(t.extra_specs or {})}

    @serves("POST", "/v3/types/{id}/extra_specs")
    async def add_extra_specs(self, req: ApiRequest) -> dict[str, Any]:
        self._admin(req)
        specs = _metadata(_obj(await req.json(), "extra_specs"), "extra_specs")
        await req.run(self.m.set_extra_specs, req.param("id"), specs)
        return {"extra_specs": specs}

    @serves("GET", "/v3/types/{id}/extra_specs/{key}")
    async def extra_spec(self, req: ApiRequest) -> dict[str, Any]:
        specs = (await self.extra_specs(req))["extra_specs"]
        key = req.param("key")
        return only_key(specs, key, f"Volume Type {req.param('id')} has no extra specs with "
                                    f"key {key}.")

    @serves("PUT", "/v3/types/{id}/extra_specs/{key}")
    async def put_extra_spec(self, req: ApiRequest) -> dict[str, Any]:
        self._admin(req)
        spec = _one_item(await req.json(), req.param("key"), "extra_specs")
        await req.run(self.m.set_extra_specs, req.param("id"), spec)
        return spec

    @serves("DELETE", "/v3/types/{id}/extra_specs/{key}")
    async def delete_extra_spec(self, req: ApiRequest) -> Response:
        self._admin(req)
        await req.run(self.m.delete_extra_spec, req.param("id"), req.param("key"))
        return Response(status_code=202)


    # ------------------------------------------------------------------ encryption
    @serves("GET", "/v3/types/{id}/encryption")
    async def show_encryption(self, req: ApiRequest) -> dict[str, Any]:
        self._admin(req, "volume_extension:volume_type_encryption:get")
        return await req.run(self.enc.get, req.param("id"))

    @serves("POST", "/v3/types/{id}/encryption")
    async def create_encryption(self, req: ApiRequest) -> dict[str, Any]:
        self._admin(req, "volume_extension:volume_type_encryption:create")
        spec = encryption.parse(await req.json(), create=True)
        return {"encryption": await req.run(self.enc.create, req.param("id"), spec)}

    @serves("GET", "/v3/types/{id}/encryption/{key}")
    async def encryption_item(self, req: ApiRequest) -> dict[str, Any]:
        self._admin(req, "volume_extension:volume_type_encryption:get")
        spec = await req.run(self.enc.get, req.param("id"))
        return only_key(spec, req.param("key"), f"Volume type encryption for type "
                                                f"{req.param('id')} does not exist.")

    @serves("PUT", "/v3/types/{id}/encryption/{key}")
    async def update_encryption(self, req: ApiRequest) -> dict[str, Any]:
        self._admin(req, "volume_extension:volume_type_encryption:update")
        spec = encryption.parse(await req.json(), create=False)
        await req.run(self.enc.update, req.param("id"), req.param("key"), spec)
        return {"encryption": spec}

    @serves("DELETE", "/v3/types/{id}/encryption/{key}")
    async def delete_encryption(self, req: ApiRequest) -> Response:
        self._admin(req, "volume_extension:volume_type_encryption:delete")
        await req.run(self.enc.delete, req.param("id"), req.param("key"))
        return Response(status_code=202)
