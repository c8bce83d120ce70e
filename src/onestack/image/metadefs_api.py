"""Routes of the metadata-definition catalog (``/v2/metadefs``): parse -> manager -> document."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.responses import Response

from onestack.api.app import ApiRequest, FastJSON, Handler, add_declared, route
from onestack.api.routes import serves
from onestack.common import pagination
from onestack.common.context import RequestContext
from onestack.common.errors import BadRequest
from onestack.image.metadefs import NS_SORT_KEYS, MetadefManager

if TYPE_CHECKING:
    from onestack.image.api import ImageAPI


def add_metadef_routes(api: ImageAPI) -> None:
    """Register the metadata definitions' routes on ``api`` (its ``metadefs`` manager)."""
    m = api.metadefs
    add_declared(api.service, MetadefRoutes(api, m))
    kinds = (ItemKind("objects", m.list_objects, m.delete_all_objects, m.get_object,
                      m.update_object, m.delete_object, m.create_object,
                      schema="v2/schemas/metadefs/objects"),
             ItemKind("properties", m.list_properties, m.delete_all_properties, m.get_property,
                      m.update_property, m.delete_property, m.create_property),
             ItemKind("tags", m.list_tags, m.delete_all_tags, m.get_tag, m.update_tag,
                      m.delete_tag))
    for kind in kinds:
        items = ItemRoutes(api, kind)
        for methods, path, handler in items.routes():
            api.service.routes.append(route(api.service, path, handler, methods))


def _created(doc: Any) -> Response:
    return FastJSON(doc, status_code=201)


@dataclass(frozen=True)
class ItemKind:
    """One kind of named item inside a namespace (``objects``, ``properties``, ``tags``): its
    collection's last path segment and the manager calls serving its routes, each taking the
    request context and the namespace's name first."""

    segment: str
    listing: Callable[[RequestContext, str], Any]
    delete_all: Callable[[RequestContext, str], None]
    get: Callable[[RequestContext, str, str], dict[str, Any]]
    update: Callable[[RequestContext, str, str, Any], dict[str, Any]]
    delete: Callable[[RequestContext, str, str], None]
    #: ``create(ctx, namespace, body)``; None where the kind's POST has a handler of its own.
    create: Callable[[RequestContext, str, Any], dict[str, Any]] | None = None
    #: The list document's ``schema`` link, if it has one.
    schema: str | None = None


class ItemRoutes:
    """The routes of one ``ItemKind``: list, create and delete all on
    ``/v2/metadefs/namespaces/{ns}/<segment>``, show, update and delete on ``.../{name}``."""

    def __init__(self, api: ImageAPI, kind: ItemKind) -> None:
        self.api = api
        self.kind = kind

    def routes(self) -> list[tuple[tuple[str, ...], str, Handler]]:
        """``(methods, path, handler)`` of each route, collection first."""
        coll = f"/v2/metadefs/namespaces/{{ns}}/{self.kind.segment}"
        out: list[tuple[tuple[str, ...], str, Handler]] = [(("GET",), coll, self.list_all)]
        if self.kind.create is not None:
            out.append((("POST",), coll, self.create))
        out += [(("DELETE",), coll, self.delete_all),
                (("GET",), coll + "/{name}", self.show),
                (("PUT",), coll + "/{name}", self.update),
                (("DELETE",), coll + "/{name}", self.delete)]
        return out

    async def list_all(self, req: ApiRequest) -> dict[str, Any]:
        doc = {self.kind.segment: await req.run(self.kind.listing, req.ctx, req.param("ns"))}
        if self.kind.schema:
            doc["schema"] = self.kind.schema
        return doc

    async def create(self, req: ApiRequest) -> Response:
        """201 with what the kind's ``create`` made in the path's namespace."""
        assert self.kind.create is not None  # routed only when there is one
        body = await self.api.json_body(req)
        return _created(await req.run(self.kind.create, req.ctx, req.param("ns"), body))

    async def delete_all(self, req: ApiRequest) -> None:
        await req.run(self.kind.delete_all, req.ctx, req.param("ns"))

    async def show(self, req: ApiRequest) -> dict[str, Any]:
        return await req.run(self.kind.get, req.ctx, req.param("ns"), req.param("name"))

    async def update(self, req: ApiRequest) -> dict[str, Any]:
        body = await self.api.json_body(req)
        return await req.run(self.kind.update, req.ctx, req.param("ns"), req.param("name"),
                             body)

    async def delete(self, req: ApiRequest) -> None:
        await req.run(self.kind.delete, req.ctx, req.param("ns"), req.param("name"))


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

    # ------------------------------------------------------------------ tags
    # Tags have two ways in of their own; their other routes are the ``ItemRoutes``'.
    @serves("POST", "/v2/metadefs/namespaces/{ns}/tags")
    async def create_tags(self, req: ApiRequest) -> Response:
        body = await self.api.json_body(req)
        append = req.headers.get("x-openstack-append", "").strip().lower() in ("true", "1")
        tags = await req.run(self.m.create_tags, req.ctx, req.param("ns"), body, append)
        return _created({"tags": tags})

    @serves("POST", "/v2/metadefs/namespaces/{ns}/tags/{name}")
    async def create_tag(self, req: ApiRequest) -> Response:
        return _created(await req.run(self.m.create_tag, req.ctx, req.param("ns"),
                                      req.param("name")))
