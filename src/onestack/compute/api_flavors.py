"""Compute API: flavors and their extra specs and access (``/flavors``)."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from onestack.api.app import ApiRequest
from onestack.api.routes import serves
from onestack.common.errors import BadRequest, NotFound, ValidationError
from onestack.common.pagination import next_link
from onestack.compute import schemas, views
from onestack.compute.microversions import ver
from onestack.compute.resource_base import ResourceHandler
from onestack.compute.resource_base import tgt as _tgt


class Flavors(ResourceHandler):
    """Flavors and their extra specs and access (``/flavors``)."""

    # ================================================================== flavors
    @serves("GET", "/v2.1/flavors")
    @serves("GET", "/v2.1/flavors/detail", detail=True)
    async def list_flavors(self, req: ApiRequest, detail: bool = False) -> dict[str, Any]:
        q = req.query
        is_public: bool | None = True
        raw = q.get("is_public")
        if raw is not None:
            low = raw.lower()
            if low == "none":
                is_public = None
            elif low in ("true", "t", "1", "yes", "y", "on"):
                is_public = True
            elif low in ("false", "f", "0", "no", "n", "off"):
                is_public = False
            else:
                raise BadRequest(f"Invalid is_public filter [{raw}]")
        elif req.ctx.is_admin:
            is_public = None
        min_ram = schemas.integer(q.get("minRam"), "minRam", 0) if q.get("minRam") else None
        min_disk = (schemas.integer(q.get("minDisk"), "minDisk", 0) if q.get("minDisk")
                    else None)
        limit = schemas.integer(q.get("limit"), "limit", 0) if q.get("limit") else None
        sort_key = q.get("sort_key", "flavorid")
        sort_dir = q.get("sort_dir", "asc").lower()
        if sort_dir not in ("asc", "desc"):
            raise BadRequest(f"Invalid sort_dir {sort_dir}")
        flavors = await req.run(self.m.list_flavors, req.ctx, is_public, min_ram, min_disk,
                                sort_key, sort_dir, limit, q.get("marker"))
        v = ver(req)
        out: dict[str, Any] = {"flavors": [views.flavor(f, req.base_url, v, detail)
                                           for f in flavors]}
        if limit and len(flavors) == limit:
            out["flavors_links"] = [{"rel": "next", "href": next_link(
                req.base_url + req.request.url.path, q, flavors[-1]["id"], limit)}]
        return out

    @serves("GET", "/v2.1/flavors/{flavor_id}")
    async def show_flavor(self, req: ApiRequest) -> dict[str, Any]:
        f = await req.run(self.m.get_flavor, req.ctx, req.param("flavor_id"))
        return {"flavor": views.flavor(f, req.base_url, ver(req))}

    @serves("POST", "/v2.1/flavors")
    async def create_flavor(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("os_compute_api:os-flavor-manage:create", _tgt(req))
        v = ver(req)
        body = await req.json()
        f = schemas.obj(body, "flavor")
        schemas.only_as_of(f, v, {"name", "id", "ram", "vcpus", "disk",
                                  "OS-FLV-EXT-DATA:ephemeral", "swap", "rxtx_factor",
                                  "os-flavor-access:is_public"}, {"description": "2.55"},
                           "flavor")
        name = schemas.name(f.get("name"), "name").strip()
        fid = f.get("id")
        if isinstance(fid, int) and not isinstance(fid, bool):
            fid = str(fid)
        if fid is not None and (not isinstance(fid, str) or not fid.strip()
                                or len(fid) > 255 or fid != fid.strip()):
            raise ValidationError(f"Invalid input for field/attribute id. Value: {fid}.")
        doc = {"name": name, "id": fid,
               "ram": schemas.integer(f.get("ram"), "ram", 1, 2 ** 31 - 1),
               "vcpus": schemas.integer(f.get("vcpus"), "vcpus", 1, 2 ** 31 - 1),
               "disk": schemas.integer(f.get("disk"), "disk", 0, 2 ** 31 - 1),
               "OS-FLV-EXT-DATA:ephemeral": schemas.integer(
                   f.get("OS-FLV-EXT-DATA:ephemeral", 0), "OS-FLV-EXT-DATA:ephemeral", 0,
                   2 ** 31 - 1),
               "swap": schemas.integer(f.get("swap", 0) if f.get("swap") != "" else 0,
                                       "swap", 0, 2 ** 31 - 1),
               "os-flavor-access:is_public": schemas.boolean(
                   f.get("os-flavor-access:is_public", True), "os-flavor-access:is_public"),
               "description": f.get("description")}
        rx = f.get("rxtx_factor", 1.0)
        if isinstance(rx, bool) or not isinstance(rx, int | float | str):
            raise ValidationError("Invalid input for field/attribute rxtx_factor.")
        try:
            rxf = float(rx)
        except ValueError:
            raise ValidationError("Invalid input for field/attribute rxtx_factor.") from None
        if rxf <= 0:
            raise ValidationError("Invalid input for field/attribute rxtx_factor.")
        doc["rxtx_factor"] = rxf
        if doc["description"] is not None and (not isinstance(doc["description"], str)
                                               or len(doc["description"]) > 65535):
            raise ValidationError("Invalid input for field/attribute description.")
        created = await req.run(self.m.create_flavor, doc)
        return {"flavor": views.flavor(created, req.base_url, v)}

    @serves("PUT", "/v2.1/flavors/{flavor_id}")
    async def update_flavor(self, req: ApiRequest) -> dict[str, Any]:
        v = ver(req)
        if v < "2.55":
            raise BadRequest("The method is not allowed for the requested URL.", status=405)
        req.enforce("os_compute_api:os-flavor-manage:update", _tgt(req))
        body = await req.json()
        f = schemas.obj(body, "flavor")
        schemas.only(f, {"description"}, "flavor")
        if "description" not in f:
            raise ValidationError("Invalid input for field/attribute flavor. 'description' is "
                                  "a required property")
        d = f["description"]
        if d is not None and (not isinstance(d, str) or len(d) > 65535):
            raise ValidationError("Invalid input for field/attribute description.")
        out = await req.run(self.m.update_flavor, req.param("flavor_id"), d)
        return {"flavor": views.flavor(out, req.base_url, v)}

    @serves("DELETE", "/v2.1/flavors/{flavor_id}")
    async def delete_flavor(self, req: ApiRequest) -> Response:
        req.enforce("os_compute_api:os-flavor-manage:delete", _tgt(req))
        await req.run(self.m.delete_flavor, req.param("flavor_id"))
        return Response(status_code=202)

    @serves("GET", "/v2.1/flavors/{flavor_id}/os-flavor-access")
    async def flavor_access(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("os_compute_api:os-flavor-access", _tgt(req))
        fid = req.param("flavor_id")
        projects = await req.run(self.m.flavor_access, fid)
        return {"flavor_access": [{"flavor_id": fid, "tenant_id": p} for p in projects]}

    @serves("POST", "/v2.1/flavors/{flavor_id}/action")
    async def flavor_action(self, req: ApiRequest) -> dict[str, Any]:
        body = await req.json()
        fid = req.param("flavor_id")
        key = next((k for k in ("addTenantAccess", "removeTenantAccess")
                    if isinstance(body, dict) and k in body), None)
        if key is None:
            raise BadRequest("There is no such action")
        add = key == "addTenantAccess"
        req.enforce("os_compute_api:os-flavor-access:"
                    + ("add_tenant_access" if add else "remove_tenant_access"), _tgt(req))
        tenant = schemas.obj(body, key).get("tenant")
        if not isinstance(tenant, str) or not tenant:
            raise ValidationError("Invalid input for field/attribute tenant.")
        change = self.m.add_flavor_access if add else self.m.remove_flavor_access
        projects = await req.run(change, fid, tenant)
        return {"flavor_access": [{"flavor_id": fid, "tenant_id": p} for p in projects]}

    @serves("GET", "/v2.1/flavors/{flavor_id}/os-extra_specs")
    async def list_specs(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("os_compute_api:os-flavor-extra-specs:index", _tgt(req))
        f = await req.run(self.m.get_flavor, req.ctx, req.param("flavor_id"))
        return {"extra_specs": f["extra_specs"]}

    @staticmethod
    def _specs(value: Any) -> dict[str, str]:
        if not isinstance(value, dict) or not value:
            raise ValidationError("Invalid input for field/attribute extra_specs.")
        out = {}
        for k, v in value.items():
            if not isinstance(k, str) or not 1 <= len(k) <= 255:
                raise ValidationError(f"Invalid input for field/attribute extra_specs. Key "
                                      f"{k!r} is invalid")
            if isinstance(v, bool):
                v = str(v)
            if isinstance(v, int | float):
                v = str(v)
            if not isinstance(v, str) or len(v) > 255:
                raise ValidationError(f"Invalid input for field/attribute {k}. Value: {v}.")
            out[k] = v
        return out

    @serves("POST", "/v2.1/flavors/{flavor_id}/os-extra_specs")
    async def create_specs(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("os_compute_api:os-flavor-extra-specs:create", _tgt(req))
        body = await req.json()
        if not isinstance(body, dict) or "extra_specs" not in body:
            raise ValidationError("Invalid input for field/attribute extra_specs.")
        specs = self._specs(body["extra_specs"])
        await req.run(self.m.set_extra_specs, req.param("flavor_id"), specs)
        return {"extra_specs": specs}

    @serves("GET", "/v2.1/flavors/{flavor_id}/os-extra_specs/{key}")
    async def show_spec(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("os_compute_api:os-flavor-extra-specs:show", _tgt(req))
        f = await req.run(self.m.get_flavor, req.ctx, req.param("flavor_id"))
        key = req.param("key")
        if key not in f["extra_specs"]:
            raise NotFound(f"Flavor {req.param('flavor_id')} has no extra specs with key "
                           f"{key}.")
        return {key: f["extra_specs"][key]}

    @serves("PUT", "/v2.1/flavors/{flavor_id}/os-extra_specs/{key}")
    async def update_spec(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("os_compute_api:os-flavor-extra-specs:update", _tgt(req))
        body = await req.json()
        specs = self._specs(body)
        key = req.param("key")
        if len(specs) > 1:
            raise BadRequest("Request body contains too many items")
        if key not in specs:
            raise BadRequest("Request body and URI mismatch")
        await req.run(self.m.set_extra_specs, req.param("flavor_id"), specs)
        return specs

    @serves("DELETE", "/v2.1/flavors/{flavor_id}/os-extra_specs/{key}")
    async def delete_spec(self, req: ApiRequest) -> Response:
        req.enforce("os_compute_api:os-flavor-extra-specs:delete", _tgt(req))
        await req.run(self.m.delete_extra_spec, req.param("flavor_id"), req.param("key"))
        return Response(status_code=200)
