"""Compute API: the operator's view of hosts: availability zones, hypervisors, services, aggregates
and the old ``os-hosts`` (<= 2.42)."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from onestack.api.app import ApiRequest
from onestack.api.routes import serves
from onestack.common.errors import APIError, BadRequest, NotFound, ValidationError
from onestack.common.timeutils import utcnow
from onestack.compute import schemas, views
from onestack.compute.microversions import ver
from onestack.compute.resource_base import ResourceHandler
from onestack.compute.resource_base import tgt as _tgt


class Hosts(ResourceHandler):
    """The operator's view of hosts: availability zones, hypervisors, services, aggregates and the
    old ``os-hosts`` (<= 2.42)."""

    # ================================================================== zones
    @serves("GET", "/v2.1/os-availability-zone")
    async def list_zones(self, req: ApiRequest) -> dict[str, Any]:
        zones = await req.run(self.m.availability_zones)
        return {"availabilityZoneInfo": [
            {"zoneName": z["name"], "zoneState": {"available": z["available"]}, "hosts": None}
            for z in zones if z["name"] != "internal"]}

    @serves("GET", "/v2.1/os-availability-zone/detail")
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

    @serves("GET", "/v2.1/os-hypervisors")
    @serves("GET", "/v2.1/os-hypervisors/detail", detail=True)
    async def list_hypervisors(self, req: ApiRequest, detail: bool = False) -> dict[str, Any]:
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

    async def _node(self, req: ApiRequest, hid: str) -> dict[str, Any]:
        nodes = await req.run(self.m.list_nodes)
        for n in nodes:
            if (ver(req) >= "2.53" and n["uuid"] == hid) or (
                    ver(req) < "2.53" and str(n["id"]) == hid):
                return n
        if ver(req) >= "2.53" and not schemas.is_uuid(hid):
            raise BadRequest(f"Invalid uuid {hid}")
        raise NotFound(f"Hypervisor with ID '{hid}' could not be found.")

    @serves("GET", "/v2.1/os-hypervisors/{hid}")
    async def show_hypervisor(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("os_compute_api:os-hypervisors", _tgt(req))
        n = await self._node(req, req.param("hid"))
        servers = None
        if ver(req) >= "2.53" and req.query.get("with_servers", "").lower() in ("true", "1"):
            servers = await req.run(self.m.instances_on_host, n["host"])
        return {"hypervisor": views.hypervisor(n, ver(req), True, self._node_up(n), servers)}

    @serves("GET", "/v2.1/os-hypervisors/{hid}/uptime")
    async def hypervisor_uptime(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("os_compute_api:os-hypervisors", _tgt(req))
        if ver(req) >= "2.88":
            raise NotFound("The resource could not be found.")
        n = await self._node(req, req.param("hid"))
        doc = views.hypervisor(n, ver(req), False, self._node_up(n))
        doc["uptime"] = " 00:00:00 up 1 day,  0:00,  1 user,  load average: 0.00, 0.00, 0.00"
        return {"hypervisor": doc}

    @serves("GET", "/v2.1/os-hypervisors/{name}/search")
    @serves("GET", "/v2.1/os-hypervisors/{name}/servers", servers=True)
    async def hypervisors_named(self, req: ApiRequest, servers: bool = False
                                ) -> dict[str, Any]:
        """The hypervisors whose name contains ``name`` (before 2.53), with their servers on
        ``/servers``."""
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
            on_host = await req.run(self.m.instances_on_host, n["host"]) if servers else None
            doc = views.hypervisor(n, ver(req), False, self._node_up(n), on_host)
            if servers and not on_host:
                doc.pop("servers")
            out.append(doc)
        return {"hypervisors": out}

    @serves("GET", "/v2.1/os-hypervisors/statistics")
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
    @serves("GET", "/v2.1/os-services")
    async def list_services(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("os_compute_api:os-services", _tgt(req))
        svcs = await req.run(self.m.list_services, req.query.get("host"),
                             req.query.get("binary"))
        now = utcnow()
        return {"services": [views.service(s, ver(req), self.m.service_up(s, now))
                             for s in svcs]}

    @serves("PUT", "/v2.1/os-services/{service_id}")
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

    @serves("DELETE", "/v2.1/os-services/{service_id}")
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
    @serves("GET", "/v2.1/os-aggregates")
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

    @staticmethod
    async def _aggregate_body(req: ApiRequest) -> dict[str, Any]:
        """The ``aggregate`` of a create or update body (400 on other keys), once the policy
        allows the request."""
        req.enforce("os_compute_api:os-aggregates", _tgt(req))
        body = await req.json()
        a = schemas.obj(body, "aggregate")
        schemas.only(a, {"name", "availability_zone"}, "aggregate")
        return a

    @serves("POST", "/v2.1/os-aggregates")
    async def create_aggregate(self, req: ApiRequest) -> dict[str, Any]:
        a = await self._aggregate_body(req)
        name = schemas.name(a.get("name"), "name")
        agg = await req.run(self.m.create_aggregate, name, self._az(a.get("availability_zone")))
        doc = views.aggregate(agg, ver(req))
        doc.pop("hosts")
        doc.pop("metadata")
        return {"aggregate": doc}

    @serves("GET", "/v2.1/os-aggregates/{agg_id}")
    async def show_aggregate(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("os_compute_api:os-aggregates", _tgt(req))
        agg = await req.run(self.m.get_aggregate, req.param("agg_id"))
        return {"aggregate": views.aggregate(agg, ver(req))}

    @serves("PUT", "/v2.1/os-aggregates/{agg_id}")
    async def update_aggregate(self, req: ApiRequest) -> dict[str, Any]:
        a = await self._aggregate_body(req)
        if not a:
            raise ValidationError("Invalid input for field/attribute aggregate.")
        name = schemas.name(a["name"]) if "name" in a else None
        agg = await req.run(self.m.update_aggregate, req.param("agg_id"), name,
                            self._az(a.get("availability_zone")), "availability_zone" in a)
        return {"aggregate": views.aggregate(agg, ver(req))}

    @serves("DELETE", "/v2.1/os-aggregates/{agg_id}")
    async def delete_aggregate(self, req: ApiRequest) -> Response:
        req.enforce("os_compute_api:os-aggregates", _tgt(req))
        await req.run(self.m.delete_aggregate, req.param("agg_id"))
        return Response(status_code=200)

    @serves("POST", "/v2.1/os-aggregates/{agg_id}/action")
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

    # ================================================================== os-hosts (<= 2.42)
    def _hosts_allowed(self, req: ApiRequest) -> None:
        if ver(req) > "2.42":
            raise NotFound("The resource could not be found.")
        req.enforce("os_compute_api:os-hosts", _tgt(req))

    @serves("GET", "/v2.1/os-hosts")
    async def list_hosts(self, req: ApiRequest) -> dict[str, Any]:
        self._hosts_allowed(req)
        svcs = await req.run(self.m.list_services)
        zone = req.query.get("zone")
        out = [{"host_name": s["host"], "service": s["binary"].removeprefix("nova-"),
                "zone": s["zone"]} for s in svcs]
        if zone:
            out = [h for h in out if h["zone"] == zone]
        return {"hosts": out}

    @serves("GET", "/v2.1/os-hosts/{host}")
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

    @serves("PUT", "/v2.1/os-hosts/{host}")
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

    @serves("GET", "/v2.1/os-hosts/{host}/{action}")
    async def host_power_action(self, req: ApiRequest) -> dict[str, Any]:
        self._hosts_allowed(req)
        host = req.param("host")
        if req.param("action") not in ("startup", "shutdown", "reboot"):
            raise NotFound("The resource could not be found.")
        svcs = await req.run(self.m.list_services, host, "nova-compute")
        if not svcs:
            raise NotFound(f"Compute host {host} could not be found.")
        raise APIError("Virt driver does not implement host power management.", status=501)
