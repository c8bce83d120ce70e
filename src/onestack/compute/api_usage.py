"""Compute API: usage and records: simple tenant usage, migrations, the extension list and the
usage audit log."""

from __future__ import annotations

import datetime as dt
from typing import Any

from onestack.api.app import ApiRequest
from onestack.api.routes import serves
from onestack.common.errors import BadRequest, NotFound
from onestack.common.timeutils import parse_isotime, utcnow
from onestack.compute import views
from onestack.compute.microversions import ver
from onestack.compute.resource_base import ResourceHandler
from onestack.compute.resource_base import tgt as _tgt

_MIGRATION_HOST_FIELDS = ("source_compute", "source_node", "dest_compute", "dest_node",
                          "dest_host")


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


class Usage(ResourceHandler):
    """Usage and records: simple tenant usage, migrations, the extension list and the usage audit
    log."""

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

    @serves("GET", "/v2.1/os-simple-tenant-usage")
    async def list_usage(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("os_compute_api:os-simple-tenant-usage:list", _tgt(req))
        start, end = self._period(req)
        detailed = req.query.get("detailed", "0").lower() in ("1", "true", "yes")
        reps = await req.run(self.m.usage_report, start, end, None)
        return {"tenant_usages": [self._usage_doc(r, detailed) for r in reps]}

    @serves("GET", "/v2.1/os-simple-tenant-usage/{project_id}")
    async def show_usage(self, req: ApiRequest) -> dict[str, Any]:
        project = req.param("project_id")
        req.enforce("os_compute_api:os-simple-tenant-usage:show", _tgt(req, project))
        start, end = self._period(req)
        reps = await req.run(self.m.usage_report, start, end, project)
        return {"tenant_usage": self._usage_doc(reps[0], True) if reps else {}}

    # ================================================================== migrations
    @serves("GET", "/v2.1/os-migrations")
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

    @serves("GET", "/v2.1/extensions")
    async def extensions(self, req: ApiRequest) -> dict[str, Any]:
        return {"extensions": [_extension(n, a) for n, a in EXTENSIONS]}

    @serves("GET", "/v2.1/extensions/{alias}")
    async def extension(self, req: ApiRequest) -> dict[str, Any]:
        alias = req.param("alias")
        for n, a in EXTENSIONS:
            if a == alias:
                return {"extension": _extension(n, a)}
        raise NotFound("The resource could not be found.")

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

    @serves("GET", "/v2.1/os-instance_usage_audit_log")
    async def audit_log(self, req: ApiRequest) -> dict[str, Any]:
        return {"instance_usage_audit_logs": await self._audit(req, None)}

    @serves("GET", "/v2.1/os-instance_usage_audit_log/{before}")
    async def audit_log_before(self, req: ApiRequest) -> dict[str, Any]:
        try:
            before = parse_isotime(req.param("before").replace(" ", "T"))
        except ValueError:
            raise BadRequest("Invalid timestamp for date "
                             f"{req.param('before')}") from None
        return {"instance_usage_audit_log": await self._audit(req, before)}
