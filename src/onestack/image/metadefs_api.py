"""Routes of the metadata-definition catalog (``/v2/metadefs``): parse -> manager -> document."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from starlette.responses import Response

from onestack.api.app import ApiRequest, FastJSON, add_declared
from onestack.api.routes import serves
from onestack.common import pagination
from onestack.common.errors import BadRequest
from onestack.image.metadefs import NS_SORT_KEYS, MetadefManager

if TYPE_CHECKING:
    from onestack.image.api import ImageAPI


def add_metadef_routes(api: ImageAPI) -> None:
    """Register the metadata definitions' routes on ``api`` (its ``metadefs`` manager)."""
    add_declared(api.service, MetadefRoutes(api, api.metadefs))


def _created(doc: Any) -> Response:
    return FastJSON(doc, status_code=201)


class MetadefRoutes:
    """Handlers bound to the image API (for its JSON reader) and a ``MetadefManager``."""

    def __init__(self, api: ImageAPI, manager: MetadefManager) -> None:
        self.api = api
        self.m = manager

    # ------------------------------------------------------------------ shared handler bodies
    async def _create_in(self, req: ApiRequest, create: Callable[..., Any]) -> Response:
        """201 with what ``create(ctx, namespace, body)`` made in the path's namespace."""
        body = await self.api.json_body(req)
        return _created(await req.run(create, req.ctx, req.param("ns"), body))

    async def _show_named(self, req: ApiRequest, get: Callable[..., Any]) -> dict[str, Any]:
        """The document ``get(ctx, namespace, name)`` returns for the path's item."""
        return await req.run(get, req.ctx, req.param("ns"), req.param("name"))  # type: ignore[no-any-return]

    async def _update_named(self, req: ApiRequest, update: Callable[..., Any]
                            ) -> dict[str, Any]:
        """The path's item after ``update(ctx, namespace, name, body)``."""
        body = await self.api.json_body(req)
        return await req.run(update, req.ctx, req.param("ns"), req.param("name"), body)  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ resource types
    @serves("GET", "/v2/metadefs/resource_types")
    async def list_resource_types(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("list_metadef_resource_types", {"project_id": req.ctx.project_id or ""})
        return {"resource_types": await req.run(self.m.list_resource_types, req.ctx)}

    @serves("GET", "/v2/metadefs/namespaces/{ns}/resource_types")
    async def list_associations(self, req: ApiRequest) -> dict[str, Any]:
        docs = await req.run(self.m.list_associations, req.ctx, req.param("ns"))
        return {"resource_type_associations": docs}

    @serves("POST", "/v2/metadefs/namespaces/{ns}/resource_types")
    async def create_association(self, req: ApiRequest) -> Response:
        return await self._create_in(req, self.m.create_association)

    @serves("DELETE", "/v2/metadefs/namespaces/{ns}/resource_types/{name}")
    async def delete_association(self, req: ApiRequest) -> None:
        await req.run(self.m.delete_association, req.ctx, req.param("ns"), req.param("name"))

    # ------------------------------------------------------------------ namespaces
    @serves("GET", "/v2/metadefs/namespaces")
    async def list_namespaces(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("get_metadef_namespaces", {"project_id": req.ctx.project_id or ""})
        q = req.query
        limit = pagination.parse_limit(q, self.api.default_limit, self.api.max_limit)
        sort_key = q.get("sort_key", "created_at")
        if sort_key not in NS_SORT_KEYS:
            raise BadRequest(f"Invalid sort key {sort_key!r}; expected one of "
                             f"{', '.join(NS_SORT_KEYS)}.")
        sort_dir = q.get("sort_dir", "desc")
        if sort_dir not in ("asc", "desc"):
            raise BadRequest(f"Invalid sort direction {sort_dir!r}; expected asc or desc.")
        rts = [t.strip() for t in q.get("resource_types", "").split(",") if t.strip()]
        docs, more = await req.run(self.m.list_namespaces, req.ctx, rts or None,
                                   q.get("visibility"), sort_key, sort_dir, limit,
                                   q.get("marker"))
        out: dict[str, Any] = {"namespaces": docs, "first": "/v2/metadefs/namespaces",
                               "schema": "/v2/schemas/metadefs/namespaces"}
        if more and docs:
            out["next"] = pagination.next_link("/v2/metadefs/namespaces", q,
                                               docs[-1]["namespace"],
                                               limit if "limit" in q else None)
        return out

    @serves("POST", "/v2/metadefs/namespaces")
    async def create_namespace(self, req: ApiRequest) -> Response:
        body = await self.api.json_body(req)
        return _created(await req.run(self.m.create_namespace, req.ctx, body))

    @serves("GET", "/v2/metadefs/namespaces/{ns}")
    async def show_namespace(self, req: ApiRequest) -> dict[str, Any]:
        return await req.run(self.m.get_namespace, req.ctx, req.param("ns"),  # type: ignore[no-any-return]
                             req.query.get("resource_type"))

    @serves("PUT", "/v2/metadefs/namespaces/{ns}")
    async def update_namespace(self, req: ApiRequest) -> dict[str, Any]:
        body = await self.api.json_body(req)
        return await req.run(self.m.update_namespace, req.ctx, req.param("ns"), body)  # type: ignore[no-any-return]

    @serves("DELETE", "/v2/metadefs/namespaces/{ns}")
    async def delete_namespace(self, req: ApiRequest) -> None:
        await req.run(self.m.delete_namespace, req.ctx, req.param("ns"))

    # ------------------------------------------------------------------ objects
    @serves("GET", "/v2/metadefs/namespaces/{ns}/objects")
    async def list_objects(self, req: ApiRequest) -> dict[str, Any]:
        docs = await req.run(self.m.list_objects, req.ctx, req.param("ns"))
        return {"objects": docs, "schema": "v2/schemas/metadefs/objects"}

    @serves("POST", "/v2/metadefs/namespaces/{ns}/objects")
    async def create_object(self, req: ApiRequest) -> Response:
        return await self._create_in(req, self.m.create_object)

    @serves("DELETE", "/v2/metadefs/namespaces/{ns}/objects")
    async def delete_objects(self, req: ApiRequest) -> None:
        await req.run(self.m.delete_all_objects, req.ctx, req.param("ns"))

    @serves("GET", "/v2/metadefs/namespaces/{ns}/objects/{name}")
    async def show_object(self, req: ApiRequest) -> dict[str, Any]:
        return await self._show_named(req, self.m.get_object)

    @serves("PUT", "/v2/metadefs/namespaces/{ns}/objects/{name}")
    async def update_object(self, req: ApiRequest) -> dict[str, Any]:
        return await self._update_named(req, self.m.update_object)

    @serves("DELETE", "/v2/metadefs/namespaces/{ns}/objects/{name}")
    async def delete_object(self, req: ApiRequest) -> None:
        await req.run(self.m.delete_object, req.ctx, req.param("ns"), req.param("name"))

    # ------------------------------------------------------------------ properties
    @serves("GET", "/v2/metadefs/namespaces/{ns}/properties")
    async def list_properties(self, req: ApiRequest) -> dict[str, Any]:
        props = await req.run(self.m.list_properties, req.ctx, req.param("ns"))
        return {"properties": props}

    @serves("POST", "/v2/metadefs/namespaces/{ns}/properties")
    async def create_property(self, req: ApiRequest) -> Response:
        return await self._create_in(req, self.m.create_property)

    @serves("DELETE", "/v2/metadefs/namespaces/{ns}/properties")
    async def delete_properties(self, req: ApiRequest) -> None:
        await req.run(self.m.delete_all_properties, req.ctx, req.param("ns"))

    @serves("GET", "/v2/metadefs/namespaces/{ns}/properties/{name}")
    async def show_property(self, req: ApiRequest) -> dict[str, Any]:
        return await self._show_named(req, self.m.get_property)

    @serves("PUT", "/v2/metadefs/namespaces/{ns}/properties/{name}")
    async def update_property(self, req: ApiRequest) -> dict[str, Any]:
        return await self._update_named(req, self.m.update_property)

    @serves("DELETE", "/v2/metadefs/namespaces/{ns}/properties/{name}")
    async def delete_property(self, req: ApiRequest) -> None:
        await req.run(self.m.delete_property, req.ctx, req.param("ns"), req.param("name"))

    # ------------------------------------------------------------------ tags
    @serves("GET", "/v2/metadefs/namespaces/{ns}/tags")
    async def list_tags(self, req: ApiRequest) -> dict[str, Any]:
        return {"tags": await req.run(self.m.list_tags, req.ctx, req.param("ns"))}

    @serves("POST", "/v2/metadefs/namespaces/{ns}/tags")
    async def create_tags(self, req: ApiRequest) -> Response:
        body = await self.api.json_body(req)
        append = req.headers.get("x-openstack-append", "").strip().lower() in ("true", "1")
        tags = await req.run(self.m.create_tags, req.ctx, req.param("ns"), body, append)
        return _created({"tags": tags})

    @serves("DELETE", "/v2/metadefs/namespaces/{ns}/tags")
    async def delete_tags(self, req: ApiRequest) -> None:
        await req.run(self.m.delete_all_tags, req.ctx, req.param("ns"))

    @serves("GET", "/v2/metadefs/namespaces/{ns}/tags/{name}")
    async def show_tag(self, req: ApiRequest) -> dict[str, Any]:
        return await self._show_named(req, self.m.get_tag)

    @serves("POST", "/v2/metadefs/namespaces/{ns}/tags/{name}")
    async def create_tag(self, req: ApiRequest) -> Response:
        return _created(await req.run(self.m.create_tag, req.ctx, req.param("ns"),
                                      req.param("name")))

    @serves("PUT", "/v2/metadefs/namespaces/{ns}/tags/{name}")
    async def update_tag(self, req: ApiRequest) -> dict[str, Any]:
        return await self._update_named(req, self.m.update_tag)

    @serves("DELETE", "/v2/metadefs/namespaces/{ns}/tags/{name}")
    async def delete_tag(self, req: ApiRequest) -> None:
        await req.run(self.m.delete_tag, req.ctx, req.param("ns"), req.param("name"))
