"""Block-storage API routes for QoS specs (``qos-specs``; admin only)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.responses import Response

from onestack.api.app import ApiRequest
from onestack.api.routes import serves
from onestack.common.errors import BadRequest
from onestack.volume.params import _bool, _metadata, _obj
from onestack.volume.qos import Qos
from onestack.volume.records import QosSpecsRecord

if TYPE_CHECKING:
    from onestack.volume.api import VolumeAPI


class QosRoutes:
    """QoS specs and their associations with volume types."""

    def __init__(self, api: VolumeAPI) -> None:
        self.q = Qos(api.m)

    @staticmethod
    def _admin(req: ApiRequest, action: str) -> None:
        req.enforce(f"volume_extension:qos_specs_manage:{action}",
                    {"project_id": req.ctx.project_id or ""})

    @staticmethod
    def _view(q: QosSpecsRecord) -> dict[str, Any]:
        return {"id": q.id, "name": q.name, "consumer": q.consumer,
                "specs": dict(q.specs or {})}

    def _links(self, req: ApiRequest, q: QosSpecsRecord) -> list[dict[str, str]]:
        href = f"{req.base_url}/v3/{req.ctx.project_id}/qos-specs/{q.id}"
        return [{"href": href, "rel": "self"}, {"href": href, "rel": "bookmark"}]

    @serves("GET", "/v3/qos-specs")
    async def list(self, req: ApiRequest) -> dict[str, Any]:
        self._admin(req, "get_all")
        return {"qos_specs": [self._view(q) for q in await req.run(self.q.list)]}

    @serves("GET", "/v3/qos-specs/{id}")
    async def show(self, req: ApiRequest) -> dict[str, Any]:
        self._admin(req, "get")
        q = await req.run(self.q.get, req.param("id"))
        return {"qos_specs": self._view(q), "links": self._links(req, q)}

    @serves("POST", "/v3/qos-specs")
    async def create(self, req: ApiRequest) -> dict[str, Any]:
        self._admin(req, "create")
        body = dict(_obj(await req.json(), "qos_specs"))
        name = body.pop("name", None)
        if not isinstance(name, str) or not name.strip() or len(name) > 255:
            raise BadRequest("Invalid input received: QoS specs need a name of 1-255 "
                             "characters.")
        consumer = body.pop("consumer", "back-end")
        specs = _metadata(body, "qos_specs")
        q = await req.run(self.q.create, name, consumer, specs)
        return {"qos_specs": self._view(q), "links": self._links(req, q)}

    @serves("PUT", "/v3/qos-specs/{id}")
    async def set_keys(self, req: ApiRequest) -> dict[str, Any]:
        self._admin(req, "update")
        specs = _metadata(_obj(await req.json(), "qos_specs"), "qos_specs")
        await req.run(self.q.set_keys, req.param("id"), specs)
        return {"qos_specs": specs}

    @serves("DELETE", "/v3/qos-specs/{id}")
    async def delete(self, req: ApiRequest) -> Response:
        self._admin(req, "delete")
        force = _bool(req.query.get("force", "false"), "force")
        await req.run(self.q.delete, req.param("id"), force)
        return Response(status_code=202)

    @serves("PUT", "/v3/qos-specs/{id}/delete_keys")
    async def delete_keys(self, req: ApiRequest) -> Response:
        self._admin(req, "update")
        body = await req.json()
        keys = body.get("keys") if isinstance(body, dict) else None
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise BadRequest("Missing required element 'keys' in request body.")
        await req.run(self.q.delete_keys, req.param("id"), keys)
        return Response(status_code=202)

    @serves("GET", "/v3/qos-specs/{id}/associations")
    async def associations(self, req: ApiRequest) -> dict[str, Any]:
        self._admin(req, "get")
        types = await req.run(self.q.associations, req.param("id"))
        return {"qos_associations": [{"association_type": "volume_type", "name": t.name,
                                      "id": t.id} for t in types]}

    def _type_id(self, req: ApiRequest) -> str:
        tid = req.query.get("vol_type_id")
        if not tid:
            raise BadRequest("Invalid input received: vol_type_id is required.")
        return tid

    @serves("GET", "/v3/qos-specs/{id}/associate")
    async def associate(self, req: ApiRequest) -> Response:
        self._admin(req, "update")
        await req.run(self.q.associate, req.param("id"), self._type_id(req), True)
        return Response(status_code=202)

    @serves("GET", "/v3/qos-specs/{id}/disassociate")
    async def disassociate(self, req: ApiRequest) -> Response:
        self._admin(req, "update")
        await req.run(self.q.associate, req.param("id"), self._type_id(req), False)
        return Response(status_code=202)

    @serves("GET", "/v3/qos-specs/{id}/disassociate_all")
    async def disassociate_all(self, req: ApiRequest) -> Response:
        self._admin(req, "update")
        await req.run(self.q.associate, req.param("id"), None, False)
        return Response(status_code=202)
