"""Block-storage API routes for discovery and the operator: extensions, services, hosts,
backend capabilities, scheduler pools and quota classes."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from onestack.api.app import ApiRequest
from onestack.api.routes import serves
from onestack.common.errors import BadRequest, NotFound
from onestack.common.timeutils import isotime, utcnow
from onestack.volume import views
from onestack.volume.api_handler import VolumeHandler
from onestack.volume.microversion import version_of
from onestack.volume.records import MessageRecord

EXTENSIONS = [("AvailabilityZones", "os-availability-zone"), ("Quotas", "os-quota-sets"),
              ("QuotaClasses", "os-quota-class-sets"), ("Types", "types"),
              ("TypesManage", "types-manage"), ("TypeAccess", "os-volume-type-access"),
              ("ExtendedSnapshotAttributes", "os-extended-snapshot-attributes"),
              ("VolumeActions", "os-volume-actions"), ("AdminActions", "os-admin-actions"),
              ("VolumeTenantAttribute", "os-vol-tenant-attr"),
              ("VolumeHostAttribute", "os-vol-host-attr"), ("Hosts", "os-hosts"),
              ("Services", "os-services"), ("SchedulerStats", "scheduler-stats"),
              ("Capabilities", "capabilities"), ("UsedLimits", "os-used-limits")]


class AdminRoutes(VolumeHandler):
    """Extensions, services, hosts, pools, capabilities, quota classes and messages."""

    def _admin(self, req: ApiRequest, action: str) -> None:
        req.enforce(action, {"project_id": req.ctx.project_id or ""})

    def _service_hosts(self) -> tuple[str, str]:
        """(the scheduler's host, the volume service's ``host@backend``)."""
        backend = self.m.host.split("#", 1)[0]
        return backend.split("@", 1)[0], backend

    @serves("GET", "/v3/extensions")
    async def extensions(self, req: ApiRequest) -> dict[str, Any]:
        return {"extensions": [{"name": n, "alias": a, "description": f"{n} support.",
                                "updated": "2023-01-01T00:00:00+00:00", "links": []}
                               for n, a in EXTENSIONS]}

    @serves("GET", "/v3/os-services")
    async def services(self, req: ApiRequest) -> dict[str, Any]:
        self._admin(req, "volume_extension:services:index")
        scheduler, backend = self._service_hosts()
        # Both run inside this process: up, and reporting now.
        now = isotime(utcnow())
        off = self.m.disabled_reason
        items = [{"binary": "cinder-scheduler", "host": scheduler,
                  "zone": self.m.availability_zone, "status": "enabled", "state": "up",
                  "updated_at": now, "disabled_reason": None},
                 {"binary": "cinder-volume", "host": backend,
                  "zone": self.m.availability_zone,
                  "status": "disabled" if off is not None else "enabled", "state": "up",
                  "updated_at": now, "disabled_reason": off or None}]
        if "binary" in req.query:
            items = [i for i in items if i["binary"] == req.query["binary"]]
        if "host" in req.query:
            want = req.query["host"]
            items = [i for i in items if i["host"] == want or i["host"].startswith(want + "@")]
        return {"services": items}

    @serves("PUT", "/v3/os-services/{action}")
    async def service_action(self, req: ApiRequest) -> dict[str, Any]:
        """``enable``, ``disable``, ``disable-log-reason`` (the volume service: a disabled
        one takes no new volumes, which then end in ``error``, as with no valid backend;
        kept in memory), ``freeze``/``thaw`` (replication only: refused)."""
        self._admin(req, "volume_extension:services:update")
        action = req.param("action")
        body = await req.json()
        if not isinstance(body, dict):
            raise BadRequest("Missing request body.")
        scheduler, backend = self._service_hosts()
        host = body.get("host")
        if action in ("freeze", "thaw"):
            if host not in (backend, scheduler):
                raise BadRequest(f"Invalid input received: host {host} is not a volume "
                                 "backend of this cloud.")
            raise BadRequest(f"Invalid input received: {action} applies to replicated "
                             "backends; this backend is not replicated.")
        if action not in ("enable", "disable", "disable-log-reason"):
            raise NotFound("The resource could not be found.")
        binary = body.get("binary", "cinder-volume")
        if (binary, host) not in (("cinder-volume", backend), ("cinder-scheduler", scheduler)):
            raise NotFound(f"Service {binary} on host {host} could not be found.")
        reason = body.get("disabled_reason")
        if action == "disable-log-reason" and (
                not isinstance(reason, str) or not reason.strip() or len(reason) > 255):
            raise BadRequest("Disabled reason contains invalid characters or is too long")
        disabled = action != "enable"
        if binary == "cinder-volume":
            self.m.disabled_reason = (reason or "") if disabled else None
        return {"host": host, "binary": binary, "status": "disabled" if disabled else "enabled",
                "disabled": disabled, "disabled_reason": reason if disabled else None}

    @serves("GET", "/v3/os-hosts")
    async def hosts(self, req: ApiRequest) -> dict[str, Any]:
        self._admin(req, "volume_extension:hosts")
        scheduler, backend = self._service_hosts()
        now = isotime(utcnow())
        return {"hosts": [
            {"service": binary, "host_name": host, "zone": self.m.availability_zone,
             "service-status": "available", "service-state": "enabled", "last-update": now}
            for binary, host in (("cinder-scheduler", scheduler), ("cinder-volume", backend))]}

    @serves("GET", "/v3/os-hosts/{host}")
    async def host(self, req: ApiRequest) -> dict[str, Any]:
        self._admin(req, "volume_extension:hosts")
        name = req.param("host")
        scheduler, backend = self._service_hosts()
        if name not in (scheduler, backend):
            raise NotFound(f"Host {name} could not be found.")
        totals = await req.run(self.m.host_usage)
        rows = [{"resource": {"host": name, "project": project,
                              "volume_count": str(t["volumes"]),
                              "total_volume_gb": str(t["gigabytes"]),
                              "snapshot_count": str(t["snapshots"]),
                              "total_snapshot_gb": str(t["snapshot_gigabytes"])}}
                for project, t in totals.items()]
        return {"host": rows}

    @serves("GET", "/v3/capabilities/{host}")
    async def capabilities(self, req: ApiRequest) -> dict[str, Any]:
        self._admin(req, "volume_extension:capabilities")
        name = req.param("host")
        _, backend = self._service_hosts()
        if name not in (backend, self.m.host):
            raise NotFound(f"Host {name} could not be found.")
        d = self.m.driver
        return {"namespace": f"OS::Storage::Capabilities::{backend}",
                "vendor_name": "Open Source", "volume_backend_name": d.backend_name,
                "pool_name": None, "driver_version": "1.0", "storage_protocol": d.protocol,
                "display_name": None, "description": None, "visibility": None,
                "replication_targets": [],
                "properties": {"thin_provisioning": {
                    "title": "Thin Provisioning", "type": "boolean",
                    "description": "Sets thin provisioning."}}}

    @serves("GET", "/v3/scheduler-stats/get_pools")
    async def pools(self, req: ApiRequest) -> dict[str, Any]:
        self._admin(req, "scheduler_extension:scheduler_stats:get_pools")
        pool: dict[str, Any] = {"name": self.m.host}
        detail = req.query.get("detail", "false").lower() in ("true", "1", "yes")
        if detail:
            caps = await req.run(self.m.capabilities)
            pool["capabilities"] = {**caps, "timestamp": isotime(utcnow())}
        return {"pools": [pool]}

    # ------------------------------------------------------------------ user messages
    def _message(self, req: ApiRequest, m: MessageRecord) -> dict[str, Any]:
        href = f"{req.base_url}/v3/{m.project_id}/messages/{m.id}"
        return {"id": m.id, "message_level": "ERROR", "event_id": m.event_id,
                "user_message": m.message, "request_id": m.request_id,
                "resource_type": m.resource_type, "resource_uuid": m.resource_uuid,
                "created_at": isotime(m.created_at, subsecond=True),
                "guaranteed_until": isotime(m.expires_at, subsecond=True),
                "links": [{"href": href, "rel": "self"}, {"href": href, "rel": "bookmark"}]}

    @staticmethod
    def _since_3_3(req: ApiRequest) -> None:
        if version_of(req.request.scope) < "3.3":
            raise NotFound("The resource could not be found.")

    @serves("GET", "/v3/messages")
    async def list_messages(self, req: ApiRequest) -> dict[str, Any]:
        self._since_3_3(req)
        req.enforce("message:get_all", {"project_id": req.ctx.project_id or ""})
        rows = await req.run(self.m.list_messages, req.ctx)
        for key in ("resource_uuid", "resource_type", "event_id"):
            if key in req.query:
                rows = [m for m in rows if getattr(m, key) == req.query[key]]
        return {"messages": [self._message(req, m) for m in rows]}

    @serves("GET", "/v3/messages/{id}")
    async def show_message(self, req: ApiRequest) -> dict[str, Any]:
        self._since_3_3(req)
        m = await req.run(self.m.get_message, req.ctx, req.param("id"))
        req.enforce("message:get", {"project_id": m.project_id})
        return {"message": self._message(req, m)}

    @serves("DELETE", "/v3/messages/{id}")
    async def delete_message(self, req: ApiRequest) -> Response:
        self._since_3_3(req)
        await req.run(self.m.delete_message, req.ctx, req.param("id"))
        return Response(status_code=204)

    @serves("GET", "/v3/os-quota-class-sets/{name}")
    async def show_quota_class(self, req: ApiRequest) -> dict[str, Any]:
        self._admin(req, "volume_extension:quota_classes")
        limits = await req.run(self.m.default_quotas)
        doc = views.quota_set(req.param("name"), limits)
        return {"quota_class_set": doc}

    @serves("PUT", "/v3/os-quota-class-sets/{name}")
    async def update_quota_class(self, req: ApiRequest) -> dict[str, Any]:
        self._admin(req, "volume_extension:quota_classes:update")
        if req.param("name") != "default":
            raise BadRequest("Only the 'default' quota class is used by this cloud.")
        body = await req.json()
        if not isinstance(body, dict) or not isinstance(body.get("quota_class_set"), dict):
            raise BadRequest("Missing required element 'quota_class_set' in request body.")
        values: dict[str, int] = {}
        for k, v in body["quota_class_set"].items():
            if k in ("id", "class_name"):
                continue
            n = v if isinstance(v, int) and not isinstance(v, bool) else None
            if n is None:
                try:
                    n = int(str(v))
                except ValueError:
                    n = None
            if n is None or n < -1 or n > 2**31 - 1:
                raise BadRequest(f"Invalid input received: Quota class limit {v} for {k} "
                                 "must be an integer -1 or greater.")
            values[k] = n
        limits = await req.run(self.m.set_quotas, "", values)
        doc = views.quota_set("default", limits)
        doc.pop("id", None)
        return {"quota_class_set": doc}
