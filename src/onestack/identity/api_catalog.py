"""Identity API: the catalog: regions, services and endpoints."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from onestack.api.app import ApiRequest, FastJSON
from onestack.api.routes import serves
from onestack.common.errors import ValidationError
from onestack.identity import schemas, views
from onestack.identity.api_base import IdentityHandler, _body, _changes
from onestack.identity.api_members import Member


class CatalogRoutes(IdentityHandler):
    """The catalog: regions, services and endpoints."""

    # ------------------------------------------------------------------ regions
    @serves("GET", "/v3/regions")
    async def list_regions(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("identity:list_regions")
        regions = await req.run(self.m.list_regions, req.query.get("parent_region_id"))
        return views.listing(req.base_url, "regions", "regions", views.region, regions)

    @serves("POST", "/v3/regions")
    async def create_region(self, req: ApiRequest) -> Response:
        req.enforce("identity:create_region")
        body = await _body(req, schemas.REGION_CREATE, "region")
        return await self._store_region(req, body.get("id"), body)

    @serves("PUT", "/v3/regions/{region_id}")
    async def put_region(self, req: ApiRequest) -> Response:
        req.enforce("identity:create_region")
        body = await _body(req, schemas.REGION_CREATE, "region")
        rid = req.param("region_id")
        if body.get("id") not in (None, rid):
            raise ValidationError("The region id in the body must match the URL.")
        return await self._store_region(req, rid, body)

    async def _store_region(self, req: ApiRequest, region_id: str | None,
                            body: dict[str, Any]) -> Response:
        """Create the region of a POST or PUT body (``region_id``: its id, None for a new
        one): 201 with the region."""
        extra = {k: v for k, v in body.items()
                 if k not in ("id", "description", "parent_region_id")}
        region = await req.run(self.m.create_region, region_id, body.get("description"),
                               body.get("parent_region_id"), extra)
        return FastJSON({"region": views.region(req.base_url, region)}, status_code=201)

    # ------------------------------------------------------------------ services
    @serves("GET", "/v3/services")
    async def list_services(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("identity:list_services")
        svcs = await req.run(self.m.list_services, req.query.get("type"),
                             req.query.get("name"))
        return views.listing(req.base_url, "services", "services", views.service, svcs)

    @serves("POST", "/v3/services")
    async def create_service(self, req: ApiRequest) -> Response:
        req.enforce("identity:create_service")
        body = await _body(req, schemas.SERVICE_CREATE, "service")
        extra = {k: v for k, v in body.items()
                 if k not in ("type", "name", "description", "enabled")}
        svc = await req.run(self.m.create_service, body["type"], body.get("name"),
                            body.get("description"), body.get("enabled", True), extra)
        return FastJSON({"service": views.service(req.base_url, svc)}, status_code=201)

    # ------------------------------------------------------------------ endpoints
    @serves("GET", "/v3/endpoints")
    async def list_endpoints(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("identity:list_endpoints")
        q = req.query
        interface = q.get("interface")
        if interface is not None and interface not in ("public", "internal", "admin"):
            raise ValidationError(f"Invalid interface: {interface}")
        eps = await req.run(self.m.list_endpoints, interface, q.get("service_id"),
                            q.get("region_id"))
        return views.listing(req.base_url, "endpoints", "endpoints", views.endpoint, eps)

    @serves("POST", "/v3/endpoints")
    async def create_endpoint(self, req: ApiRequest) -> Response:
        req.enforce("identity:create_endpoint")
        body = await _body(req, schemas.ENDPOINT_CREATE, "endpoint")
        extra = {k: v for k, v in body.items() if k not in (
            "service_id", "interface", "url", "region_id", "region", "enabled")}
        e = await req.run(lambda: self.m.create_endpoint(
            body["service_id"], body["interface"], body["url"], body.get("region_id"),
            body.get("enabled", True), extra, body.get("region")))
        return FastJSON({"endpoint": views.endpoint(req.base_url, e)}, status_code=201)

    # ------------------------------------------------------------------ members
    def members(self) -> tuple[Member, ...]:
        """Show, update and delete of regions, services and endpoints."""
        m = self.m
        return (
            Member("/v3/regions/{region_id}", "region", views.region, m.get_region,
                   m.update_region, m.delete_region, schemas.REGION_UPDATE,
                   lambda body, _id: _changes(body, ("description", "parent_region_id"))),
            Member("/v3/services/{service_id}", "service", views.service, m.get_service,
                   m.update_service, m.delete_service, schemas.SERVICE_UPDATE,
                   lambda body, _id: _changes(body, ("type", "name", "description",
                                                     "enabled"))),
            Member("/v3/endpoints/{endpoint_id}", "endpoint", views.endpoint, m.get_endpoint,
                   m.update_endpoint, m.delete_endpoint, schemas.ENDPOINT_UPDATE,
                   _endpoint_changes))


def _endpoint_changes(body: dict[str, Any], endpoint_id: str) -> dict[str, Any]:
    """An endpoint update's changes: its own fields; a legacy ``region`` (without
    ``region_id``) as the region; the rest under ``extra``."""
    changes = {k: v for k, v in body.items()
               if k in ("service_id", "interface", "url", "region_id", "enabled")}
    if "region" in body and "region_id" not in body:
        changes["region_id"] = body["region"]
        changes["legacy_region"] = True
    extra = {k: v for k, v in body.items() if k not in changes and k != "region"}
    if extra:
        changes["extra"] = extra
    return changes
