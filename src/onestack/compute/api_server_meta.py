"""Compute API: a server's metadata and tags (``/servers/{id}/metadata``,
``/servers/{id}/tags``, tags from 2.26)."""

from __future__ import annotations

import logging
from typing import Any

from starlette.responses import Response

from onestack.api.app import ApiRequest, url_header
from onestack.api.routes import serves
from onestack.common.errors import BadRequest, Conflict, NotFound, ValidationError
from onestack.compute import schemas, states
from onestack.compute.manager import InstanceDict
from onestack.compute.microversions import ver
from onestack.compute.resource_base import ResourceHandler

LOG = logging.getLogger(__name__)


class ServerMetadata(ResourceHandler):
    """A server's metadata items and tags."""

    @serves("GET", "/v2.1/servers/{server_id}/metadata")
    async def get_metadata(self, req: ApiRequest) -> dict[str, Any]:
        inst = await self.find_server(req, "os_compute_api:server-metadata:index")
        return {"metadata": inst["metadata"]}

    @serves("PUT", "/v2.1/servers/{server_id}/metadata", replace=True)
    @serves("POST", "/v2.1/servers/{server_id}/metadata")
    async def set_metadata(self, req: ApiRequest, replace: bool = False) -> dict[str, Any]:
        rule = "update_all" if replace else "create"
        inst = await self.find_server(req, f"os_compute_api:server-metadata:{rule}")
        body = await req.json()
        meta = schemas.metadata(schemas.obj(body, "metadata"))
        out = await req.run(self.m.set_metadata, req.ctx, inst["uuid"], meta, replace)
        return {"metadata": out}

    @serves("GET", "/v2.1/servers/{server_id}/metadata/{key}")
    async def get_meta_item(self, req: ApiRequest) -> dict[str, Any]:
        inst = await self.find_server(req, "os_compute_api:server-metadata:show")
        key = req.param("key")
        if key not in inst["metadata"]:
            raise NotFound("Metadata item was not found")
        return {"meta": {key: inst["metadata"][key]}}

    @serves("PUT", "/v2.1/servers/{server_id}/metadata/{key}")
    async def set_meta_item(self, req: ApiRequest) -> dict[str, Any]:
        inst = await self.find_server(req, "os_compute_api:server-metadata:update")
        body = await req.json()
        meta = schemas.metadata(schemas.obj(body, "meta"), "meta")
        key = req.param("key")
        if len(meta) != 1:
            raise BadRequest("Request body contains too many items")
        if key not in meta:
            raise BadRequest("Request body and URI mismatch")
        await req.run(self.m.set_metadata, req.ctx, inst["uuid"], meta, False)
        return {"meta": meta}

    @serves("DELETE", "/v2.1/servers/{server_id}/metadata/{key}")
    async def delete_meta_item(self, req: ApiRequest) -> Response:
        inst = await self.find_server(req, "os_compute_api:server-metadata:delete")
        await req.run(self.m.delete_metadata, req.ctx, inst["uuid"], req.param("key"))
        return Response(status_code=204)

    def _tags_allowed(self, req: ApiRequest) -> None:
        if ver(req) < "2.26":
            raise NotFound("The resource could not be found.")

    @serves("GET", "/v2.1/servers/{server_id}/tags")
    async def list_tags(self, req: ApiRequest) -> dict[str, Any]:
        self._tags_allowed(req)
        inst = await self.find_server(req, "os_compute_api:os-server-tags:index")
        return {"tags": inst["tags"]}

    @serves("PUT", "/v2.1/servers/{server_id}/tags")
    async def replace_tags(self, req: ApiRequest) -> dict[str, Any]:
        self._tags_allowed(req)
        inst = await self.find_server(req, "os_compute_api:os-server-tags:update_all")
        body = await req.json()
        if not isinstance(body, dict) or "tags" not in body:
            raise ValidationError("Invalid input for field/attribute tags.")
        tags = schemas.tags(body["tags"])
        self._tag_state(inst)
        return {"tags": await req.run(self.m.set_tags, req.ctx, inst["uuid"], tags)}

    @staticmethod
    def _tag_state(inst: InstanceDict) -> None:
        if inst["vm_state"] not in (states.ACTIVE, states.PAUSED, states.SUSPENDED,
                                    states.STOPPED, states.SHELVED, states.SHELVED_OFFLOADED,
                                    states.BUILDING, states.ERROR, states.RESCUED,
                                    states.RESIZED):
            raise Conflict(f"Cannot 'update tags' instance {inst['uuid']} while it is in "
                           f"vm_state {inst['vm_state']}")

    @serves("DELETE", "/v2.1/servers/{server_id}/tags")
    async def delete_tags(self, req: ApiRequest) -> Response:
        self._tags_allowed(req)
        inst = await self.find_server(req, "os_compute_api:os-server-tags:delete_all")
        self._tag_state(inst)
        await req.run(self.m.set_tags, req.ctx, inst["uuid"], [])
        return Response(status_code=204)

    @serves("GET", "/v2.1/servers/{server_id}/tags/{tag}")
    async def check_tag(self, req: ApiRequest) -> Response:
        self._tags_allowed(req)
        inst = await self.find_server(req, "os_compute_api:os-server-tags:show")
        if req.param("tag") not in inst["tags"]:
            raise NotFound(f"Tag {req.param('tag')} not found")
        return Response(status_code=204)

    @serves("PUT", "/v2.1/servers/{server_id}/tags/{tag}")
    async def add_tag(self, req: ApiRequest) -> Response:
        self._tags_allowed(req)
        inst = await self.find_server(req, "os_compute_api:os-server-tags:update")
        tag = schemas.tag(req.param("tag"))
        self._tag_state(inst)
        existed = tag in inst["tags"]
        await req.run(self.m.set_tags, req.ctx, inst["uuid"], None, tag)
        loc = f"{req.base_url}/v2.1/servers/{inst['uuid']}/tags/{tag}"
        return Response(status_code=204 if existed else 201,
                        headers={"Location": url_header(loc)})

    @serves("DELETE", "/v2.1/servers/{server_id}/tags/{tag}")
    async def delete_tag(self, req: ApiRequest) -> Response:
        self._tags_allowed(req)
        inst = await self.find_server(req, "os_compute_api:os-server-tags:delete")
        self._tag_state(inst)
        await req.run(self.m.set_tags, req.ctx, inst["uuid"], None, None, req.param("tag"))
        return Response(status_code=204)

