"""Compute API: flavors, keypairs, limits/quotas, zones, hosts, aggregates, groups, usage.

``ResourceRoutes`` is mixed into ``ComputeAPI`` (``api.py``); it expects ``self.m`` (the
manager), ``self.images`` and ``self._r`` (route registration).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from starlette.responses import Response

from onestack.api.app import ApiRequest, FastJSON
from onestack.common.errors import (
    APIError,
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    ValidationError,
)
from onestack.common.pagination import next_link
from onestack.common.timeutils import parse_isotime, utcnow
from onestack.compute import quotas, schemas, views
from onestack.compute.manager import ComputeManager
from onestack.compute.microversions import APIVersion, ver

_MIGRATION_HOST_FIELDS = ("source_compute", "source_node", "dest_compute", "dest_node",
                          "dest_host")


def _tgt(req: ApiRequest, project_id: str | None = None) -> dict[str, Any]:
    return {"project_id": project_id or req.ctx.project_id or "",
            "user_id": req.ctx.user_id or ""}


QUOTA_FIELDS_236 = ("instances", "cores", "ram", "key_pairs", "metadata_items",
                    "injected_files", "injected_file_content_bytes",
                    "injected_file_path_bytes", "server_groups", "server_group_members")


#: The v2.1 API's extension list (frozen in Nova; clients only read names/aliases).
EXTENSIONS = [
    ("AccessIPs", "os-access-ips"), ("AdminActions", "os-admin-actions"),
    ("AdminPassword", "os-admin-password"), ("Aggregates", "os-aggregates"),
    ("AvailabilityZone", "os-availability-zone"), ("ConfigDrive", "os-config-drive"),
    ("ConsoleOutput", "os-console-output"), ("Consoles", "os-consoles"),
    ("RemoteConsoles", "os-remote-consoles"),
    ("CreateBackup", "os-create-backup"), ("DeferredDelete", "os-deferred-delete"),
    ("DiskConfig", "os-disk-config"), ("ExtendedAvailabilityZone", "OS-EXT-AZ"),
    ("ExtendedServerAttributes", "OS-EXT-SRV-ATTR"), ("ExtendedStatus", "OS-EXT-STS"),
    ("ExtendedVolumes", "os-extended-volumes"), ("Extensions", "extensions"),
    ("FlavorAccess", "os-flavor-access"), ("FlavorExtraSpecs", "os-flavor-extra-specs"),
    ("FlavorManage", "os-flavor-manage"), ("FlavorRxtx", "os-flavor-rxtx"),
    ("Flavors", "flavors"), ("Hosts", "os-hosts"), ("Hypervisors", "os-hypervisors"),
    ("ImageMetadata", "image-metadata"), ("ImageSize", "image-size"), ("Images", "images"),
    ("InstanceActions", "os-instance-actions"), ("Keypairs", "os-keypairs"),
    ("Limits", "limits"), ("LockServer", "os-lock-server"),
    ("MigrateServer", "os-migrate-server"), ("Migrations", "os-migrations"),
    ("PauseServer", "os-pause-server"), ("QuotaClasses", "os-quota-class-sets"),
    ("Quotas", "os-quota-sets"), ("Rescue", "os-rescue"),
    ("SchedulerHints", "os-scheduler-hints"), ("ServerDiagnostics", "os-server-diagnostics"),
    ("ServerExternalEvents", "os-server-external-events"),
    ("ServerGroups", "os-server-groups"), ("ServerMetadata", "server-metadata"),
    ("ServerUsage", "OS-SRV-USG"), ("Servers", "servers"), ("Services", "os-services"),
    ("Shelve", "os-shelve"), ("SimpleTenantUsage", "os-simple-tenant-usage"),
    ("SuspendServer", "os-suspend-server"),
]


def _extension(name: str, alias: str) -> dict[str, Any]:
    return {"name": name, "alias": alias, "namespace": f"http://docs.openstack.org/compute/ext/"
            f"{alias}/api/v1.1", "description": f"{name} support.",
            "updated": "2014-12-03T00:00:00Z", "links": []}


class ResourceRoutes:
    """Handlers of the non-server compute resources (see the module docstring)."""

    m: ComputeManager
    images: Any

    def _r(self, path: str, handler: Any, methods: list[str], public: bool = False) -> None:
        raise NotImplementedError

    def add_resource_routes(self) -> None:
        r = self._r
        p = "/v2.1"
        r(p + "/flavors", self.list_flavors, ["GET"])
        r(p + "/flavors/detail", self.list_flavors_detail, ["GET"])
        r(p + "/flavors", self.create_flavor, ["POST"])
        r(p + "/flavors/{flavor_id}", self.show_flavor, ["GET"])
        r(p + "/flavors/{flavor_id}", self.update_flavor, ["PUT"])
        r(p + "/flavors/{flavor_id}", self.delete_flavor, ["DELETE"])
        r(p + "/flavors/{flavor_id}/action", self.flavor_action, ["POST"])
        r(p + "/flavors/{flavor_id}/os-flavor-access", self.flavor_access, ["GET"])
        r(p + "/flavors/{flavor_id}/os-extra_specs", self.list_specs, ["GET"])
        r(p + "/flavors/{flavor_id}/os-extra_specs", self.create_specs, ["POST"])
        r(p + "/flavors/{flavor_id}/os-extra_specs/{key}", self.show_spec, ["GET"])
        r(p + "/flavors/{flavor_id}/os-extra_specs/{key}", self.update_spec, ["PUT"])
        r(p + "/flavors/{flavor_id}/os-extra_specs/{key}", self.delete_spec, ["DELETE"])
        r(p + "/os-keypairs", self.list_keypairs, ["GET"])
        r(p + "/os-keypairs", self.create_keypair, ["POST"])
        r(p + "/os-keypairs/{name}", self.show_keypair, ["GET"])
        r(p + "/os-keypairs/{name}", self.delete_keypair, ["DELETE"])
        r(p + "/limits", self.limits, ["GET"])
        r(p + "/os-quota-sets/{project_id}", self.show_quota, ["GET"])
        r(p + "/os-quota-sets/{project_id}/detail", self.show_quota_detail, ["GET"])
        r(p + "/os-quota-sets/{project_id}/defaults", self.quota_defaults, ["GET"])
        r(p + "/os-quota-sets/{project_id}", self.update_quota, ["PUT"])
        r(p + "/os-quota-sets/{project_id}", self.delete_quota, ["DELETE"])
        r(p + "/os-quota-class-sets/{name}", self.show_quota_class, ["GET"])
        r(p + "/os-quota-class-sets/{name}", self.update_quota_class, ["PUT"])
        r(p + "/os-availability-zone", self.list_zones, ["GET"])
        r(p + "/os-availability-zone/detail", self.list_zones_detail, ["GET"])
        r(p + "/os-hypervisors", self.list_hypervisors, ["GET"])
        r(p + "/os-hypervisors/detail", self.list_hypervisors_detail, ["GET"])
        r(p + "/os-hypervisors/statistics", self.hypervisor_stats, ["GET"])
        r(p + "/os-hypervisors/{hid}", self.show_hypervisor, ["GET"])
        r(p + "/os-hypervisors/{hid}/uptime", self.hypervisor_uptime, ["GET"])
        r(p + "/os-hypervisors/{name}/search", self.hypervisor_search, ["GET"])
        r(p + "/os-hypervisors/{name}/servers", self.hypervisor_servers, ["GET"])
        r(p + "/os-services", self.list_services, ["GET"])
        r(p + "/os-services/{service_id}", self.update_service, ["PUT"])
        r(p + "/os-services/{service_id}", self.delete_service, ["DELETE"])
        r(p + "/os-aggregates", self.list_aggregates, ["GET"])
        r(p + "/os-aggregates", self.create_aggregate, ["POST"])
        r(p + "/os-aggregates/{agg_id}", self.show_aggregate, ["GET"])
        r(p + "/os-aggregates/{agg_id}", self.update_aggregate, ["PUT"])
        r(p + "/os-aggregates/{agg_id}", self.delete_aggregate, ["DELETE"])
        r(p + "/os-aggregates/{agg_id}/action", self.aggregate_action, ["POST"])
        r(p + "/os-server-groups", self.list_groups, ["GET"])
        r(p + "/os-server-groups", self.create_group, ["POST"])
        r(p + "/os-server-groups/{group_id}", self.show_group, ["GET"])
        r(p + "/os-server-groups/{group_id}", self.delete_group, ["DELETE"])
        r(p + "/os-simple-tenant-usage", self.list_usage, ["GET"])
        r(p + "/os-simple-tenant-usage/{project_id}", self.show_usage, ["GET"])
        r(p + "/os-migrations", self.list_migrations, ["GET"])
        r(p + "/extensions", self.extensions, ["GET"])
        r(p + "/extensions/{alias}", self.extension, ["GET"])
        r(p + "/images", self.list_images, ["GET"])
        r(p + "/images/detail", self.list_images_detail, ["GET"])
        r(p + "/images/{image_id}", self.show_image, ["GET"])
        r(p + "/images/{image_id}", self.delete_image, ["DELETE"])
        r(p + "/images/{image_id}/metadata", self.image_metadata, ["GET"])
        r(p + "/images/{image_id}/metadata", self.set_image_metadata, ["PUT", "POST"])
        r(p + "/images/{image_id}/metadata/{key}", self.image_meta_item, ["GET"])
        r(p + "/images/{image_id}/metadata/{key}", self.set_image_meta_item, ["PUT"])
        r(p + "/images/{image_id}/metadata/{key}", self.delete_image_meta_item, ["DELETE"])
        r(p + "/os-hosts", self.list_hosts, ["GET"])
        r(p + "/os-hosts/{host}", self.show_host, ["GET"])
        r(p + "/os-hosts/{host}", self.update_host, ["PUT"])
        r(p + "/os-hosts/{host}/{action}", self.host_power_action, ["GET"])
        r(p + "/os-instance_usage_audit_log", self.audit_log, ["GET"])
        r(p + "/os-instance_usage_audit_log/{before}", self.audit_log_before, ["GET"])

    # ================================================================== flavors
    async def _flavors(self, req: ApiRequest, detail: bool) -> dict[str, Any]:
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

    async def list_flavors(self, req: ApiRequest) -> dict[str, Any]:
        return await self._flavors(req, False)

    async def list_flavors_detail(self, req: ApiRequest) -> dict[str, Any]:
        return await self._flavors(req, True)

    async def show_flavor(self, req: ApiRequest) -> dict[str, Any]:
        f = await req.run(self.m.get_flavor, req.ctx, req.param("flavor_id"))
        return {"flavor": views.flavor(f, req.base_url, ver(req))}

    async def create_flavor(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("os_compute_api:os-flavor-manage:create", _tgt(req))
        v = ver(req)
        body = await req.json()
        f = schemas.obj(body, "flavor")
        allowed = {"name", "id", "ram", "vcpus", "disk", "OS-FLV-EXT-DATA:ephemeral", "swap",
                   "rxtx_factor", "os-flavor-access:is_public"}
        if v >= "2.55":
            allowed.add("description")
        schemas.only(f, allowed, "flavor")
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

    async def delete_flavor(self, req: ApiRequest) -> Response:
        req.enforce("os_compute_api:os-flavor-manage:delete", _tgt(req))
        await req.run(self.m.delete_flavor, req.param("flavor_id"))
        return Response(status_code=202)

    async def flavor_access(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("os_compute_api:os-flavor-access", _tgt(req))
        fid = req.param("flavor_id")
        projects = await req.run(self.m.flavor_access, fid)
        return {"flavor_access": [{"flavor_id": fid, "tenant_id": p} for p in projects]}

    async def flavor_action(self, req: ApiRequest) -> dict[str, Any]:
        body = await req.json()
        fid = req.param("flavor_id")
        if isinstance(body, dict) and "addTenantAccess" in body:
            req.enforce("os_compute_api:os-flavor-access:add_tenant_access", _tgt(req))
            tenant = schemas.obj(body, "addTenantAccess").get("tenant")
            if not isinstance(tenant, str) or not tenant:
                raise ValidationError("Invalid input for field/attribute tenant.")
            projects = await req.run(self.m.add_flavor_access, fid, tenant)
        elif isinstance(body, dict) and "removeTenantAccess" in body:
            req.enforce("os_compute_api:os-flavor-access:remove_tenant_access", _tgt(req))
            tenant = schemas.obj(body, "removeTenantAccess").get("tenant")
            if not isinstance(tenant, str) or not tenant:
                raise ValidationError("Invalid input for field/attribute tenant.")
            projects = await req.run(self.m.remove_flavor_access, fid, tenant)
        else:
            raise BadRequest("There is no such action")
        return {"flavor_access": [{"flavor_id": fid, "tenant_id": p} for p in projects]}

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

    async def create_specs(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("os_compute_api:os-flavor-extra-specs:create", _tgt(req))
        body = await req.json()
        if not isinstance(body, dict) or "extra_specs" not in body:
            raise ValidationError("Invalid input for field/attribute extra_specs.")
        specs = self._specs(body["extra_specs"])
        await req.run(self.m.set_extra_specs, req.param("flavor_id"), specs)
        return {"extra_specs": specs}

    async def show_spec(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("os_compute_api:os-flavor-extra-specs:show", _tgt(req))
        f = await req.run(self.m.get_flavor, req.ctx, req.param("flavor_id"))
        key = req.param("key")
        if key not in f["extra_specs"]:
            raise NotFound(f"Flavor {req.param('flavor_id')} has no extra specs with key "
                           f"{key}.")
        return {key: f["extra_specs"][key]}

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

    async def delete_spec(self, req: ApiRequest) -> Response:
        req.enforce("os_compute_api:os-flavor-extra-specs:delete", _tgt(req))
        await req.run(self.m.delete_extra_spec, req.param("flavor_id"), req.param("key"))
        return Response(status_code=200)

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

    async def create_keypair(self, req: ApiRequest) -> Response:
        v = ver(req)
        body = await req.json()
        kp = schemas.obj(body, "keypair")
        allowed = {"name", "public_key"}
        if v >= "2.2":
            allowed.add("type")
        if v >= "2.10":
            allowed.add("user_id")
        schemas.only(kp, allowed, "keypair")
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

    async def show_keypair(self, req: ApiRequest) -> dict[str, Any]:
        user = self._kp_user(req, req.query.get("user_id"), "show")
        kp = await req.run(self.m.get_keypair, user, req.param("name"))
        return {"keypair": views.keypair(kp, ver(req), full=True)}

    async def delete_keypair(self, req: ApiRequest) -> Response:
        user = self._kp_user(req, req.query.get("user_id"), "delete")
        await req.run(self.m.delete_keypair, user, req.param("name"))
        return Response(status_code=204 if ver(req) >= "2.2" else 202)

    # ================================================================== limits / quotas
    async def limits(self, req: ApiRequest) -> dict[str, Any]:
        v = ver(req)
        project = req.ctx.project_id or ""
        if req.query.get("tenant_id") and req.query.get("tenant_id") != project:
            req.enforce("os_compute_api:limits:other_project", _tgt(req))
            project = req.query.get("tenant_id")
        lim = await req.run(self.m.quota_limits, project)
        used = await req.run(self.m.quota_usage, project)
        absolute: dict[str, Any] = {
            "maxTotalInstances": lim["instances"], "maxTotalCores": lim["cores"],
            "maxTotalRAMSize": lim["ram"], "maxServerMeta": lim["metadata_items"],
            "maxServerGroups": lim["server_groups"],
            "maxServerGroupMembers": lim["server_group_members"],
            "totalInstancesUsed": used["instances"], "totalCoresUsed": used["cores"],
            "totalRAMUsed": used["ram"], "totalServerGroupsUsed": used["server_groups"],
        }
        if v < "2.57":
            absolute.update({"maxPersonality": lim["injected_files"],
                             "maxPersonalitySize": lim["injected_file_content_bytes"]})
        absolute["maxTotalKeypairs"] = lim["key_pairs"]
        if v < "2.39":
            absolute["maxImageMeta"] = 128
        if v < "2.36":
            absolute.update({"maxSecurityGroups": lim["security_groups"],
                             "maxSecurityGroupRules": lim["security_group_rules"],
                             "maxTotalFloatingIps": lim["floating_ips"],
                             "totalFloatingIpsUsed": 0, "totalSecurityGroupsUsed": 0})
        return {"limits": {"rate": [], "absolute": absolute}}

    def _quota_doc(self, lim: dict[str, int], v: APIVersion, project: str | None,
                   used: dict[str, int] | None = None) -> dict[str, Any]:
        fields = list(QUOTA_FIELDS_236)
        if v < "2.36":
            fields += ["fixed_ips", "floating_ips", "security_groups", "security_group_rules"]
        if v >= "2.57":
            fields = [f for f in fields if f not in quotas.INJECTED]
        out: dict[str, Any] = {}
        for f in fields:
            if used is None:
                out[f] = lim[f]
            else:
                out[f] = {"limit": lim[f], "in_use": used.get(f, 0), "reserved": 0}
        if project is not None:
            out["id"] = project
        return out

    async def show_quota(self, req: ApiRequest) -> dict[str, Any]:
        project = req.param("project_id")
        req.enforce("os_compute_api:os-quota-sets:show", _tgt(req, project))
        user = req.query.get("user_id")
        lim = await req.run(self.m.quota_limits, project, user)
        return {"quota_set": self._quota_doc(lim, ver(req), project)}

    async def show_quota_detail(self, req: ApiRequest) -> dict[str, Any]:
        project = req.param("project_id")
        req.enforce("os_compute_api:os-quota-sets:detail", _tgt(req, project))
        user = req.query.get("user_id")
        lim = await req.run(self.m.quota_limits, project, user)
        used = await req.run(self.m.quota_usage, project, user)
        if user:
            used.setdefault("key_pairs", 0)
        else:
            used["key_pairs"] = 0
        return {"quota_set": self._quota_doc(lim, ver(req), project, used)}

    async def quota_defaults(self, req: ApiRequest) -> dict[str, Any]:
        lim = await req.run(self.m.quota_defaults)
        return {"quota_set": self._quota_doc(lim, ver(req), req.param("project_id"))}

    async def update_quota(self, req: ApiRequest) -> dict[str, Any]:
        project = req.param("project_id")
        req.enforce("os_compute_api:os-quota-sets:update", _tgt(req, project))
        v = ver(req)
        body = await req.json()
        qs = schemas.obj(body, "quota_set")
        force = False
        values: dict[str, int] = {}
        allowed = set(self._quota_doc(quotas.DEFAULTS, v, None))
        for k, val in qs.items():
            if k == "force":
                force = schemas.boolean(val, "force")
                continue
            if k not in allowed:
                raise ValidationError(f"Invalid input for field/attribute quota_set. "
                                      f"Additional properties are not allowed ('{k}' was "
                                      "unexpected)")
            values[k] = schemas.integer(val, k, -1, 2 ** 31 - 1)
        user = req.query.get("user_id")
        lim = await req.run(self.m.set_quotas, project, values, user, force)
        return {"quota_set": self._quota_doc(lim, v, None)}

    async def delete_quota(self, req: ApiRequest) -> Response:
        project = req.param("project_id")
        req.enforce("os_compute_api:os-quota-sets:delete", _tgt(req, project))
        await req.run(self.m.delete_quotas, project, req.query.get("user_id"))
        return Response(status_code=202)

    async def show_quota_class(self, req: ApiRequest) -> dict[str, Any]:
        name = req.param("name")
        req.enforce("os_compute_api:os-quota-class-sets:show", _tgt(req))
        lim = await req.run(self.m.quota_class, name)
        return {"quota_class_set": self._quota_doc(lim, ver(req), name)}

    async def update_quota_class(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("os_compute_api:os-quota-class-sets:update", _tgt(req))
        name = req.param("name")
        v = ver(req)
        body = await req.json()
        qs = schemas.obj(body, "quota_class_set")
        allowed = set(self._quota_doc(quotas.DEFAULTS, v, None))
        values = {}
        for k, val in qs.items():
            if k not in allowed:
                raise ValidationError(f"Invalid input for field/attribute quota_class_set. "
                                      f"Additional properties are not allowed ('{k}' was "
                                      "unexpected)")
            values[k] = schemas.integer(val, k, -1, 2 ** 31 - 1)
        lim = await req.run(self.m.set_quota_class, name, values)
        return {"quota_class_set": self._quota_doc(lim, v, None)}

    # ================================================================== zones
    async def list_zones(self, req: ApiRequest) -> dict[str, Any]:
        zones = await req.run(self.m.availability_zones)
        return {"availabilityZoneInfo": [
            {"zoneName": z["name"], "zoneState": {"available": z["available"]}, "hosts": None}
            for z in zones if z["name"] != "internal"]}

    async def list_zones_detail(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("os_compute_api:os-availability-zone:detail", _tgt(req))
        zones = await req.run(self.m.availability_zones)
        out = []
        for z in zones:
            hosts = {h: {b: {"available": s["available"], "active": s["active"],
                             "updated_at": views.nova_time(s["updated_at"])}
                         for b, s in svcs.items()} for h, svcs in z["hosts"].items()}
            out.append({"zoneName": z["name"], "zoneState": {"available": z["available"]},
                        "hosts": hosts or None})
        return {"availabilityZoneInfo": out}

    # ================================================================== hypervisors
    def _node_up(self, n: dict[str, Any]) -> bool:
        return n.get("service") is not None and self.m.service_up(n["service"])

    async def _hypervisors(self, req: ApiRequest, detail: bool) -> dict[str, Any]:
        req.enforce("os_compute_api:os-hypervisors", _tgt(req))
        v = ver(req)
        nodes = await req.run(self.m.list_nodes)
        q = req.query
        if v >= "2.53":
            pattern = q.get("hypervisor_hostname_pattern")
            if pattern is not None:
                nodes = [n for n in nodes if pattern in n["hypervisor_hostname"]]
                if not nodes:
                    raise NotFound(f"No hypervisor matching '{pattern}' could be found.")
            marker = q.get("marker")
            if marker is not None:
                ids = [n["uuid"] for n in nodes]
                if marker not in ids:
                    raise BadRequest(f"marker [{marker}] not found")
                nodes = nodes[ids.index(marker) + 1:]
            if q.get("limit") is not None:
                nodes = nodes[:schemas.integer(q.get("limit"), "limit", 0)]
            with_servers = q.get("with_servers", "false").lower() in ("true", "1", "yes")
        else:
            with_servers = False
        out = []
        for n in nodes:
            servers = None
            if with_servers:
                servers = await req.run(self.m.instances_on_host, n["host"])
            out.append(views.hypervisor(n, v, detail, self._node_up(n), servers))
        return {"hypervisors": out}

    async def list_hypervisors(self, req: ApiRequest) -> dict[str, Any]:
        return await self._hypervisors(req, False)

    async def list_hypervisors_detail(self, req: ApiRequest) -> dict[str, Any]:
        return await self._hypervisors(req, True)

    async def _node(self, req: ApiRequest, hid: str) -> dict[str, Any]:
        nodes = await req.run(self.m.list_nodes)
        for n in nodes:
            if (ver(req) >= "2.53" and n["uuid"] == hid) or (
                    ver(req) < "2.53" and str(n["id"]) == hid):
                return n
        if ver(req) >= "2.53" and not schemas.is_uuid(hid):
            raise BadRequest(f"Invalid uuid {hid}")
        raise NotFound(f"Hypervisor with ID '{hid}' could not be found.")

    async def show_hypervisor(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("os_compute_api:os-hypervisors", _tgt(req))
        n = await self._node(req, req.param("hid"))
        servers = None
        if ver(req) >= "2.53" and req.query.get("with_servers", "").lower() in ("true", "1"):
            servers = await req.run(self.m.instances_on_host, n["host"])
        return {"hypervisor": views.hypervisor(n, ver(req), True, self._node_up(n), servers)}

    async def hypervisor_uptime(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("os_compute_api:os-hypervisors", _tgt(req))
        if ver(req) >= "2.88":
            raise NotFound("The resource could not be found.")
        n = await self._node(req, req.param("hid"))
        doc = views.hypervisor(n, ver(req), False, self._node_up(n))
        doc["uptime"] = " 00:00:00 up 1 day,  0:00,  1 user,  load average: 0.00, 0.00, 0.00"
        return {"hypervisor": doc}

    async def hypervisor_search(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("os_compute_api:os-hypervisors", _tgt(req))
        if ver(req) >= "2.53":
            raise NotFound("The resource could not be found.")
        name = req.param("name")
        nodes = [n for n in await req.run(self.m.list_nodes)
                 if name in n["hypervisor_hostname"]]
        if not nodes:
            raise NotFound(f"No hypervisor matching '{name}' could be found.")
        return {"hypervisors": [views.hypervisor(n, ver(req), False, self._node_up(n))
                                for n in nodes]}

    async def hypervisor_servers(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("os_compute_api:os-hypervisors", _tgt(req))
        if ver(req) >= "2.53":
            raise NotFound("The resource could not be found.")
        name = req.param("name")
        nodes = [n for n in await req.run(self.m.list_nodes)
                 if name in n["hypervisor_hostname"]]
        if not nodes:
            raise NotFound(f"No hypervisor matching '{name}' could be found.")
        out = []
        for n in nodes:
            servers = await req.run(self.m.instances_on_host, n["host"])
            doc = views.hypervisor(n, ver(req), False, self._node_up(n), servers)
            if not servers:
                doc.pop("servers")
            out.append(doc)
        return {"hypervisors": out}

    async def hypervisor_stats(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("os_compute_api:os-hypervisors", _tgt(req))
        if ver(req) >= "2.88":
            raise NotFound("The resource could not be found.")
        nodes = await req.run(self.m.list_nodes)
        keys = ("vcpus", "memory_mb", "local_gb", "vcpus_used", "memory_mb_used",
                "local_gb_used", "running_vms")
        stats = {k: sum(n[k] for n in nodes) for k in keys}
        stats.update({"count": len(nodes), "current_workload": 0,
                      "free_ram_mb": stats["memory_mb"] - stats["memory_mb_used"],
                      "free_disk_gb": stats["local_gb"] - stats["local_gb_used"],
                      "disk_available_least": stats["local_gb"] - stats["local_gb_used"]})
        return {"hypervisor_statistics": stats}

    # ================================================================== services
    async def list_services(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("os_compute_api:os-services", _tgt(req))
        svcs = await req.run(self.m.list_services, req.query.get("host"),
                             req.query.get("binary"))
        now = utcnow()
        return {"services": [views.service(s, ver(req), self.m.service_up(s, now))
                             for s in svcs]}

    async def update_service(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("os_compute_api:os-services", _tgt(req))
        v = ver(req)
        body = await req.json()
        if not isinstance(body, dict):
            raise ValidationError("Invalid input for field/attribute service.")
        sid = req.param("service_id")
        if v >= "2.53":
            if not schemas.is_uuid(sid):
                raise BadRequest(f"Invalid uuid {sid}")
            schemas.only(body, {"status", "disabled_reason", "forced_down"}, "service")
            values: dict[str, Any] = {}
            if "status" in body:
                if body["status"] not in ("enabled", "disabled"):
                    raise ValidationError("Invalid input for field/attribute status.")
                values["disabled"] = body["status"] == "disabled"
                values["disabled_reason"] = body.get("disabled_reason") if \
                    values["disabled"] else None
            elif "disabled_reason" in body:
                raise BadRequest("Specifying 'disabled_reason' with status 'enabled' is "
                                 "invalid.")
            if "forced_down" in body:
                values["forced_down"] = schemas.boolean(body["forced_down"], "forced_down")
            if not values:
                raise BadRequest("No updates were requested. Fields 'status' or "
                                 "'forced_down' should be specified.")
            svc = await req.run(self.m.update_service, sid, None, None, values)
            return {"service": views.service(svc, v, self.m.service_up(svc))}
        host = body.get("host")
        binary = body.get("binary")
        if not isinstance(host, str) or not isinstance(binary, str):
            raise ValidationError("Invalid input for field/attribute service.")
        values = {}
        if sid == "enable":
            values = {"disabled": False, "disabled_reason": None}
        elif sid in ("disable", "disable-log-reason"):
            values = {"disabled": True}
            if sid == "disable-log-reason":
                reason = body.get("disabled_reason")
                if not isinstance(reason, str) or not reason.strip() or len(reason) > 255:
                    raise BadRequest("The string containing the reason for disabling the "
                                     "service contains invalid characters or is too long.")
                values["disabled_reason"] = reason
        elif sid == "force-down" and v >= "2.11":
            values = {"forced_down": schemas.boolean(body.get("forced_down"), "forced_down")}
        else:
            raise NotFound("Unknown action")
        svc = await req.run(self.m.update_service, None, host, binary, values)
        out: dict[str, Any] = {"host": host, "binary": binary}
        if "disabled" in values:
            out["status"] = "disabled" if svc["disabled"] else "enabled"
        if "disabled_reason" in values:
            out["disabled_reason"] = svc["disabled_reason"]
        if "forced_down" in values:
            out["forced_down"] = svc["forced_down"]
        return {"service": out}

    async def delete_service(self, req: ApiRequest) -> Response:
        req.enforce("os_compute_api:os-services", _tgt(req))
        sid = req.param("service_id")
        if ver(req) >= "2.53" and not schemas.is_uuid(sid):
            raise BadRequest(f"Invalid uuid {sid}")
        if ver(req) < "2.53" and not sid.isdigit():
            raise BadRequest(f"Invalid service id {sid}")
        await req.run(self.m.delete_service, sid)
        return Response(status_code=204)

    # ================================================================== aggregates
    async def list_aggregates(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("os_compute_api:os-aggregates", _tgt(req))
        aggs = await req.run(self.m.list_aggregates)
        return {"aggregates": [views.aggregate(a, ver(req)) for a in aggs]}

    @staticmethod
    def _az(value: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str) or not 1 <= len(value) <= 255 or not value.strip():
            raise ValidationError(f"Invalid input for field/attribute availability_zone. "
                                  f"Value: {value}.")
        return value

    async def create_aggregate(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("os_compute_api:os-aggregates", _tgt(req))
        body = await req.json()
        a = schemas.obj(body, "aggregate")
        schemas.only(a, {"name", "availability_zone"}, "aggregate")
        name = schemas.name(a.get("name"), "name")
        agg = await req.run(self.m.create_aggregate, name, self._az(a.get("availability_zone")))
        doc = views.aggregate(agg, ver(req))
        doc.pop("hosts")
        doc.pop("metadata")
        return {"aggregate": doc}

    async def show_aggregate(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("os_compute_api:os-aggregates", _tgt(req))
        agg = await req.run(self.m.get_aggregate, req.param("agg_id"))
        return {"aggregate": views.aggregate(agg, ver(req))}

    async def update_aggregate(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("os_compute_api:os-aggregates", _tgt(req))
        body = await req.json()
        a = schemas.obj(body, "aggregate")
        schemas.only(a, {"name", "availability_zone"}, "aggregate")
        if not a:
            raise ValidationError("Invalid input for field/attribute aggregate.")
        name = schemas.name(a["name"]) if "name" in a else None
        agg = await req.run(self.m.update_aggregate, req.param("agg_id"), name,
                            self._az(a.get("availability_zone")), "availability_zone" in a)
        return {"aggregate": views.aggregate(agg, ver(req))}

    async def delete_aggregate(self, req: ApiRequest) -> Response:
        req.enforce("os_compute_api:os-aggregates", _tgt(req))
        await req.run(self.m.delete_aggregate, req.param("agg_id"))
        return Response(status_code=200)

    async def aggregate_action(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("os_compute_api:os-aggregates", _tgt(req))
        body = await req.json()
        agg_id = req.param("agg_id")
        if not isinstance(body, dict) or len(body) != 1:
            raise ValidationError("Invalid input for field/attribute aggregate action.")
        (action, args), = body.items()
        if action in ("add_host", "remove_host"):
            if not isinstance(args, dict) or not isinstance(args.get("host"), str):
                raise ValidationError("Invalid input for field/attribute host.")
            agg = await req.run(self.m.aggregate_host, agg_id, args["host"],
                                action == "add_host")
        elif action == "set_metadata":
            if not isinstance(args, dict) or not isinstance(args.get("metadata"), dict):
                raise ValidationError("Invalid input for field/attribute metadata.")
            meta = args["metadata"]
            for k, val in meta.items():
                if not 1 <= len(k) <= 255 or (val is not None and (
                        not isinstance(val, str | int | float) or len(str(val)) > 255)):
                    raise ValidationError(f"Invalid input for field/attribute {k}.")
            if "availability_zone" in meta and meta["availability_zone"] is not None:
                self._az(meta["availability_zone"])
            agg = await req.run(self.m.aggregate_metadata, agg_id, meta)
        else:
            raise ValidationError(f"Invalid input for field/attribute {action}.")
        return {"aggregate": views.aggregate(agg, ver(req))}

    # ================================================================== server groups
    async def list_groups(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("os_compute_api:os-server-groups:index", _tgt(req))
        q = req.query
        all_projects = q.get("all_projects", "").lower() in ("true", "1", "yes", "on", "")
        all_projects = all_projects and "all_projects" in q
        if all_projects:
            req.enforce("os_compute_api:os-server-groups:index:all_projects", _tgt(req))
        limit = schemas.integer(q.get("limit"), "limit", 0) if q.get("limit") else None
        offset = schemas.integer(q.get("offset"), "offset", 0) if q.get("offset") else 0
        groups = await req.run(self.m.list_groups, req.ctx, all_projects, limit, offset)
        return {"server_groups": [views.server_group(g, ver(req)) for g in groups]}

    async def create_group(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("os_compute_api:os-server-groups:create", _tgt(req))
        v = ver(req)
        body = await req.json()
        g = schemas.obj(body, "server_group")
        name = schemas.name(g.get("name"), "name")
        allowed = ["affinity", "anti-affinity"]
        if v >= "2.15":
            allowed += ["soft-affinity", "soft-anti-affinity"]
        rules: dict[str, Any] = {}
        if v >= "2.64":
            schemas.only(g, {"name", "policy", "rules"}, "server_group")
            policy = g.get("policy")
            if policy not in allowed:
                raise ValidationError(f"Invalid input for field/attribute policy. Value: "
                                      f"{policy}.")
            raw_rules = g.get("rules") or {}
            if not isinstance(raw_rules, dict):
                raise ValidationError("Invalid input for field/attribute rules.")
            if raw_rules:
                if policy != "anti-affinity" or set(raw_rules) - {"max_server_per_host"}:
                    raise BadRequest("Only anti-affinity policy supports the "
                                     "max_server_per_host rule.")
                rules["max_server_per_host"] = schemas.integer(
                    raw_rules["max_server_per_host"], "max_server_per_host", 1)
        else:
            schemas.only(g, {"name", "policies"}, "server_group")
            policies = g.get("policies")
            if (not isinstance(policies, list) or len(policies) != 1
                    or policies[0] not in allowed):
                raise ValidationError(f"Invalid input for field/attribute policies. Value: "
                                      f"{policies}.")
            policy = policies[0]
        group = await req.run(self.m.create_group, req.ctx, name, policy, rules)
        return {"server_group": views.server_group(group, v)}

    async def show_group(self, req: ApiRequest) -> dict[str, Any]:
        g = await req.run(self.m.get_group, req.ctx, req.param("group_id"))
        req.enforce("os_compute_api:os-server-groups:show", _tgt(req, g["project_id"]))
        return {"server_group": views.server_group(g, ver(req))}

    async def delete_group(self, req: ApiRequest) -> Response:
        # Found first (another project's group is a 404), then authorized, as Nova does.
        g = await req.run(self.m.get_group, req.ctx, req.param("group_id"))
        req.enforce("os_compute_api:os-server-groups:delete", _tgt(req, g["project_id"]))
        await req.run(self.m.delete_group, req.ctx, req.param("group_id"))
        return Response(status_code=204)

    # ================================================================== usage
    def _period(self, req: ApiRequest) -> tuple[dt.datetime, dt.datetime]:
        q = req.query
        now = utcnow()
        try:
            start = parse_isotime(q["start"]) if q.get("start") else now - dt.timedelta(
                days=30)
            end = parse_isotime(q["end"]) if q.get("end") else now
        except ValueError:
            raise BadRequest("Invalid start time. The start time cannot occur after the end "
                             "time.") from None
        if start > end:
            raise BadRequest("Invalid start time. The start time cannot occur after the end "
                             "time.")
        return start, end

    @staticmethod
    def _usage_doc(rep: dict[str, Any], detailed: bool) -> dict[str, Any]:
        out = {k: v for k, v in rep.items() if k != "server_usages"}
        out["start"] = views.nova_time(rep["start"])
        out["stop"] = views.nova_time(rep["stop"])
        if detailed:
            out["server_usages"] = [dict(s, started_at=views.nova_time(s["started_at"]),
                                         ended_at=views.nova_time(s["ended_at"]))
                                    for s in rep["server_usages"]]
        return out

    async def list_usage(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("os_compute_api:os-simple-tenant-usage:list", _tgt(req))
        start, end = self._period(req)
        detailed = req.query.get("detailed", "0").lower() in ("1", "true", "yes")
        reps = await req.run(self.m.usage_report, start, end, None)
        return {"tenant_usages": [self._usage_doc(r, detailed) for r in reps]}

    async def show_usage(self, req: ApiRequest) -> dict[str, Any]:
        project = req.param("project_id")
        req.enforce("os_compute_api:os-simple-tenant-usage:show", _tgt(req, project))
        start, end = self._period(req)
        reps = await req.run(self.m.usage_report, start, end, project)
        return {"tenant_usage": self._usage_doc(reps[0], True) if reps else {}}

    # ================================================================== migrations
    async def list_migrations(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("os_compute_api:os-migrations:index", _tgt(req))
        project = req.query.get("project_id")
        if not project or project != req.ctx.project_id:
            # Nova: a project manager lists its own project's migrations only (asked for
            # with ?project_id=<own>); all or another project's need this rule.
            req.enforce("os_compute_api:os-migrations:index:all_projects", _tgt(req))
        migs = await req.run(self.m.list_migrations, req.query.get("instance_uuid"),
                             project)
        mtype = req.query.get("migration_type")
        if mtype:
            migs = [mg for mg in migs if mg["migration_type"] == mtype]
        status = req.query.get("status")
        if status:
            migs = [mg for mg in migs if mg["status"] == status]
        docs = [views.migration(mg, ver(req), req.base_url) for mg in migs]
        if not req.allowed("os_compute_api:os-migrations:index:host", _tgt(req)):
            # A project manager does not learn the cloud's hosts (Nova blanks them).
            for doc in docs:
                doc.update(dict.fromkeys(_MIGRATION_HOST_FIELDS))
        return {"migrations": docs}

    async def extensions(self, req: ApiRequest) -> dict[str, Any]:
        return {"extensions": [_extension(n, a) for n, a in EXTENSIONS]}

    async def extension(self, req: ApiRequest) -> dict[str, Any]:
        alias = req.param("alias")
        for n, a in EXTENSIONS:
            if a == alias:
                return {"extension": _extension(n, a)}
        raise NotFound("The resource could not be found.")

    # ================================================================== images (proxy)
    def _image_doc(self, img: Any, base: str, detail: bool) -> dict[str, Any]:
        doc: dict[str, Any] = {"id": img.id, "name": img.name,
                               "links": [{"rel": "self", "href": f"{base}/v2.1/images/{img.id}"},
                                         {"rel": "bookmark",
                                          "href": f"{base}/images/{img.id}"}]}
        if detail:
            status = {"active": "ACTIVE", "queued": "SAVING", "saving": "SAVING",
                      "deleted": "DELETED", "killed": "ERROR"}.get(img.status, "UNKNOWN")
            doc.update({"status": status, "progress": 100 if status == "ACTIVE" else 25,
                        "minDisk": img.min_disk, "minRam": img.min_ram,
                        "created": views.isotime(img.created_at),
                        "updated": views.isotime(img.updated_at),
                        "metadata": dict(img.properties), "OS-EXT-IMG-SIZE:size": img.size})
            if img.properties.get("instance_uuid"):
                sid = img.properties["instance_uuid"]
                doc["server"] = {"id": sid, "links": [
                    {"rel": "self", "href": f"{base}/v2.1/servers/{sid}"},
                    {"rel": "bookmark", "href": f"{base}/servers/{sid}"}]}
        return doc

    async def _images(self, req: ApiRequest, detail: bool) -> dict[str, Any]:
        if ver(req) > "2.35" or self.images is None:
            raise NotFound("The resource could not be found.")
        q = await req.run(self.images.parse_list_query, {}, 1000, 1000)
        imgs, _ = await req.run(self.images.list, req.ctx, q)
        f = req.query
        imgs = sorted(imgs, key=lambda i: (i.created_at, i.id), reverse=True)
        if f.get("name"):
            imgs = [i for i in imgs if i.name == f.get("name")]
        if f.get("status"):
            wanted = f.get("status").upper()
            imgs = [i for i in imgs if self._image_doc(i, "", True)["status"] == wanted]
        if f.get("server"):
            sid = f.get("server").rstrip("/").rsplit("/", 1)[-1]
            imgs = [i for i in imgs if i.properties.get("instance_uuid") == sid]
        if f.get("type"):
            imgs = [i for i in imgs if i.properties.get("image_type") == f.get("type")]
        if f.get("changes-since"):
            try:
                since = parse_isotime(f.get("changes-since"))
            except ValueError:
                raise BadRequest("Invalid changes-since value") from None
            imgs = [i for i in imgs if i.updated_at >= since]
        if f.get("minRam"):
            imgs = [i for i in imgs if i.min_ram >= schemas.integer(f.get("minRam"), "minRam")]
        if f.get("minDisk"):
            imgs = [i for i in imgs if i.min_disk >= schemas.integer(f.get("minDisk"),
                                                                      "minDisk")]
        if f.get("marker"):
            ids = [i.id for i in imgs]
            if f.get("marker") not in ids:
                raise BadRequest(f"marker [{f.get('marker')}] not found")
            imgs = imgs[ids.index(f.get("marker")) + 1:]
        if f.get("limit"):
            imgs = imgs[:schemas.integer(f.get("limit"), "limit", 0)]
        return {"images": [self._image_doc(i, req.base_url, detail) for i in imgs]}

    async def list_images(self, req: ApiRequest) -> dict[str, Any]:
        return await self._images(req, False)

    async def list_images_detail(self, req: ApiRequest) -> dict[str, Any]:
        return await self._images(req, True)

    async def show_image(self, req: ApiRequest) -> dict[str, Any]:
        if ver(req) > "2.35" or self.images is None:
            raise NotFound("The resource could not be found.")
        try:
            img = await req.run(self.images.get, req.ctx, req.param("image_id"))
        except Exception:  # noqa: BLE001 - any lookup failure is "not found" here
            raise NotFound("Image not found.") from None
        return {"image": self._image_doc(img, req.base_url, True)}

    async def delete_image(self, req: ApiRequest) -> Response:
        if ver(req) > "2.35" or self.images is None:
            raise NotFound("The resource could not be found.")
        try:
            await req.run(self.images.delete, req.ctx, req.param("image_id"))
        except Conflict:
            raise
        except Exception:  # noqa: BLE001
            raise NotFound("Image not found.") from None
        return Response(status_code=204)

    # ================================================================== image metadata
    async def _proxy_image(self, req: ApiRequest) -> Any:
        if ver(req) > "2.35" or self.images is None:
            raise NotFound("The resource could not be found.")
        try:
            return await req.run(self.images.get, req.ctx, req.param("image_id"))
        except Exception:  # noqa: BLE001
            raise NotFound("Image not found.") from None

    async def image_metadata(self, req: ApiRequest) -> dict[str, Any]:
        img = await self._proxy_image(req)
        return {"metadata": dict(img.properties)}

    async def _patch_image(self, req: ApiRequest, img: Any,
                           changes: list[tuple[str, list[str], Any]]) -> Any:
        try:
            return await req.run(self.images.update, req.ctx, img.id, changes)
        except (Forbidden, NotFound):
            raise
        except Exception as exc:  # noqa: BLE001 - image-side validation
            raise BadRequest(str(exc)) from None

    async def set_image_metadata(self, req: ApiRequest) -> dict[str, Any]:
        img = await self._proxy_image(req)
        body = await req.json()
        meta = schemas.metadata(schemas.obj(body, "metadata"))
        changes: list[tuple[str, list[str], Any]] = []
        if req.method == "PUT":
            changes += [("remove", [k], None) for k in img.properties if k not in meta]
        changes += [("add", [k], v) for k, v in meta.items()]
        out = await self._patch_image(req, img, changes)
        return {"metadata": dict(out.properties)}

    async def image_meta_item(self, req: ApiRequest) -> dict[str, Any]:
        img = await self._proxy_image(req)
        key = req.param("key")
        if key not in img.properties:
            raise NotFound("Image not found.")
        return {"meta": {key: img.properties[key]}}

    async def set_image_meta_item(self, req: ApiRequest) -> dict[str, Any]:
        img = await self._proxy_image(req)
        body = await req.json()
        meta = schemas.metadata(schemas.obj(body, "meta"), "meta")
        key = req.param("key")
        if len(meta) != 1 or key not in meta:
            raise BadRequest("Request body and URI mismatch")
        await self._patch_image(req, img, [("add", [key], meta[key])])
        return {"meta": meta}

    async def delete_image_meta_item(self, req: ApiRequest) -> Response:
        img = await self._proxy_image(req)
        key = req.param("key")
        if key not in img.properties:
            raise NotFound("Image not found.")
        await self._patch_image(req, img, [("remove", [key], None)])
        return Response(status_code=204)

    # ================================================================== os-hosts (<= 2.42)
    def _hosts_allowed(self, req: ApiRequest) -> None:
        if ver(req) > "2.42":
            raise NotFound("The resource could not be found.")
        req.enforce("os_compute_api:os-hosts", _tgt(req))

    async def list_hosts(self, req: ApiRequest) -> dict[str, Any]:
        self._hosts_allowed(req)
        svcs = await req.run(self.m.list_services)
        zone = req.query.get("zone")
        out = [{"host_name": s["host"], "service": s["binary"].removeprefix("nova-"),
                "zone": s["zone"]} for s in svcs]
        if zone:
            out = [h for h in out if h["zone"] == zone]
        return {"hosts": out}

    async def show_host(self, req: ApiRequest) -> dict[str, Any]:
        self._hosts_allowed(req)
        host = req.param("host")
        nodes = [n for n in await req.run(self.m.list_nodes) if n["host"] == host]
        if not nodes:
            raise NotFound(f"Compute host {host} could not be found.")
        n = nodes[0]
        insts = await req.run(self.m.instances_on_host, host)
        rows = [{"resource": {"host": host, "project": "(total)", "cpu": n["vcpus"],
                              "memory_mb": n["memory_mb"], "disk_gb": n["local_gb"]}},
                {"resource": {"host": host, "project": "(used_now)", "cpu": n["vcpus_used"],
                              "memory_mb": n["memory_mb_used"],
                              "disk_gb": n["local_gb_used"]}},
                {"resource": {"host": host, "project": "(used_max)",
                              "cpu": sum(i["vcpus"] for i in insts),
                              "memory_mb": sum(i["memory_mb"] for i in insts),
                              "disk_gb": sum(i["root_gb"] for i in insts)}}]
        by_project: dict[str, dict[str, Any]] = {}
        for i in insts:
            r = by_project.setdefault(i["project_id"], {"host": host, "project": i["project_id"],
                                                        "cpu": 0, "memory_mb": 0,
                                                        "disk_gb": 0})
            r["cpu"] += i["vcpus"]
            r["memory_mb"] += i["memory_mb"]
            r["disk_gb"] += i["root_gb"]
        rows += [{"resource": r} for r in by_project.values()]
        return {"host": rows}

    async def update_host(self, req: ApiRequest) -> dict[str, Any]:
        self._hosts_allowed(req)
        host = req.param("host")
        body = await req.json()
        if not isinstance(body, dict) or not body or set(body) - {"status",
                                                                  "maintenance_mode"}:
            raise ValidationError("Invalid input for field/attribute host update.")
        status = body.get("status")
        if status is not None and status not in ("enable", "disable"):
            raise ValidationError(f"Invalid input for field/attribute status. Value: {status}.")
        maint = body.get("maintenance_mode")
        if maint is not None and maint not in ("enable", "disable"):
            raise ValidationError(f"Invalid input for field/attribute maintenance_mode. "
                                  f"Value: {maint}.")
        if status is None and maint is None:
            raise BadRequest("'status' or 'maintenance_mode' needed for host update")
        svcs = await req.run(self.m.list_services, host, "nova-compute")
        if not svcs:
            raise NotFound(f"Compute host {host} could not be found.")
        out: dict[str, Any] = {"host": host}
        if maint is not None:
            raise APIError("Virt driver does not implement host maintenance mode.",
                           status=501)
        if status is not None:
            await req.run(self.m.update_service, None, host, "nova-compute",
                          {"disabled": status == "disable"})
            out["status"] = "enabled" if status == "enable" else "disabled"
        return {"host": out}

    async def host_power_action(self, req: ApiRequest) -> dict[str, Any]:
        self._hosts_allowed(req)
        host = req.param("host")
        if req.param("action") not in ("startup", "shutdown", "reboot"):
            raise NotFound("The resource could not be found.")
        svcs = await req.run(self.m.list_services, host, "nova-compute")
        if not svcs:
            raise NotFound(f"Compute host {host} could not be found.")
        raise APIError("Virt driver does not implement host power management.", status=501)

    # ================================================================== usage audit log
    async def _audit(self, req: ApiRequest, before: dt.datetime | None) -> dict[str, Any]:
        req.enforce("os_compute_api:os-instance-usage-audit-log", _tgt(req))
        hosts = [s["host"] for s in await req.run(self.m.list_services, None, "nova-compute")]
        end = before or utcnow()
        begin = end - dt.timedelta(days=30)
        return {"hosts_not_run": hosts, "log": {}, "num_hosts": len(hosts),
                "num_hosts_done": 0, "num_hosts_not_run": len(hosts), "num_hosts_running": 0,
                "overall_status": f"0 of {len(hosts)} hosts done. 0 errors.",
                "period_beginning": views.nova_time(begin),
                "period_ending": views.nova_time(end), "total_errors": 0,
                "total_instances": 0}

    async def audit_log(self, req: ApiRequest) -> dict[str, Any]:
        return {"instance_usage_audit_logs": await self._audit(req, None)}

    async def audit_log_before(self, req: ApiRequest) -> dict[str, Any]:
        try:
            before = parse_isotime(req.param("before").replace(" ", "T"))
        except ValueError:
            raise BadRequest("Invalid timestamp for date "
                             f"{req.param('before')}") from None
        return {"instance_usage_audit_log": await self._audit(req, before)}
