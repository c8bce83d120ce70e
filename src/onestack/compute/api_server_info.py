"""Compute API: what else is known of a server: instance actions, diagnostics, the
password the guest posted, remote consoles, live migrations in progress, topology; and the
external events other services send (``/os-server-external-events``)."""

from __future__ import annotations

import logging
from typing import Any

from starlette.responses import Response

from onestack.api.app import ApiRequest, FastJSON
from onestack.api.routes import serves
from onestack.common.context import RequestContext
from onestack.common.errors import BadRequest, Conflict, NotFound, ValidationError
from onestack.compute import block_devices, schemas, states, views
from onestack.compute.microversions import ver
from onestack.compute.resource_base import ResourceHandler, tgt

LOG = logging.getLogger(__name__)

#: The fields of Nova's standard server diagnostics (microversion 2.48).
_DIAGNOSTICS_KEYS = frozenset({
    "state", "driver", "hypervisor", "hypervisor_os", "uptime", "config_drive", "num_cpus",
    "num_nics", "num_disks", "cpu_details", "nic_details", "disk_details", "memory_details"})


class ServerInfo(ResourceHandler):
    """A server's action log, diagnostics, password, consoles, migrations; external events."""

    @serves("GET", "/v2.1/servers/{server_id}/os-instance-actions")
    async def list_actions(self, req: ApiRequest) -> dict[str, Any]:
        v = ver(req)
        await self.find_server(req, "os_compute_api:os-instance-actions:list", v >= "2.21")
        actions = await req.run(self.m.instance_actions, req.ctx, req.param("server_id"))
        q = req.query
        if v >= "2.58":
            if q.get("changes-since"):
                since = schemas.time_filter(q.get("changes-since"), "changes-since")
                actions = [a for a in actions if a["updated_at"] >= since]
            if q.get("changes-before") and v >= "2.66":
                before = schemas.time_filter(q.get("changes-before"), "changes-before")
                actions = [a for a in actions if a["updated_at"] <= before]
            if q.get("marker"):
                ids = [a["request_id"] for a in actions]
                if q.get("marker") not in ids:
                    raise BadRequest(f"Marker {q.get('marker')} could not be found.")
                actions = actions[ids.index(q.get("marker")) + 1:]
            if q.get("limit") is not None:
                actions = actions[:schemas.integer(q.get("limit"), "limit", 0)]
        return {"instanceActions": [views.instance_action(a, v, False, req.ctx.is_admin)
                                    for a in actions]}

    @serves("GET", "/v2.1/servers/{server_id}/os-instance-actions/{request_id}")
    async def show_action(self, req: ApiRequest) -> dict[str, Any]:
        v = ver(req)
        await self.find_server(req, "os_compute_api:os-instance-actions:show", v >= "2.21")
        a = await req.run(self.m.instance_action, req.ctx, req.param("server_id"),
                          req.param("request_id"))
        return {"instanceAction": views.instance_action(a, v, True, req.ctx.is_admin)}

    @serves("GET", "/v2.1/servers/{server_id}/diagnostics")
    async def diagnostics(self, req: ApiRequest) -> dict[str, Any]:
        inst = await self.find_server(req, "os_compute_api:os-server-diagnostics")
        if inst["vm_state"] == states.BUILDING or not inst["host"]:
            raise Conflict(f"Cannot 'get_diagnostics' instance {inst['uuid']} while it is in "
                           f"vm_state {inst['vm_state']}")
        diag = await self.api.call(inst, "get_diagnostics", instance_uuid=inst["uuid"])
        if ver(req) < "2.48":
            return {"cpu0_time": 0, "memory": diag.get("memory_details", {}).get("maximum", 0)}
        # Nova's standard diagnostics model only (drivers may report more, e.g. the accel).
        return {k: v for k, v in diag.items() if k in _DIAGNOSTICS_KEYS}

    @serves("GET", "/v2.1/servers/{server_id}/os-server-password")
    async def get_password(self, req: ApiRequest) -> dict[str, Any]:
        inst = await self.find_server(req, "os_compute_api:os-server-password:show")
        # What the guest posted to the metadata service (encrypted by the guest, as in Nova).
        return {"password": str((inst.get("system_metadata") or {}).get("password") or "")}

    @serves("DELETE", "/v2.1/servers/{server_id}/os-server-password")
    async def clear_password(self, req: ApiRequest) -> Response:
        inst = await self.find_server(req, "os_compute_api:os-server-password:clear")
        await req.run(self.m.update_system_metadata, inst["uuid"], password="")
        return Response(status_code=204)

    @serves("GET", "/v2.1/servers/{server_id}/migrations")
    async def server_migrations(self, req: ApiRequest) -> dict[str, Any]:
        inst = await self.find_server(req, "os_compute_api:servers:migrations:index")
        migs = await req.run(self.m.list_migrations, inst["uuid"])
        live = [mg for mg in migs if mg["migration_type"] == "live-migration"
                and mg["status"] in ("queued", "preparing", "running", "post-migrating")]
        return {"migrations": [views.migration(mg, ver(req), req.base_url) for mg in live]}

    @serves("POST", "/v2.1/os-server-external-events")
    async def external_events(self, req: ApiRequest) -> Response:
        req.enforce("os_compute_api:os-server-external-events:create", tgt(req))
        body = await req.json()
        events = body.get("events") if isinstance(body, dict) else None
        if not isinstance(events, list) or not events:
            raise ValidationError("Invalid input for field/attribute events.")
        out = []
        found = False
        for ev in events:
            if not isinstance(ev, dict) or not isinstance(ev.get("name"), str) or \
                    not isinstance(ev.get("server_uuid"), str):
                raise ValidationError("Invalid input for field/attribute events.")
            doc = dict(ev)
            doc.setdefault("status", "completed")
            try:
                inst = await req.run(self.m.get_instance, None, ev["server_uuid"])
                doc["code"] = 200
                found = True
            except NotFound:
                doc["code"] = 404
                inst = None
            if inst is not None and ev["name"] == "volume-extended" and \
                    isinstance(ev.get("tag"), str):
                bdm = block_devices.find(inst, ev["tag"])
                if bdm is not None and self.volumes is not None:
                    vol = await req.run(self.volumes.get, RequestContext.admin(), ev["tag"])
                    await self.api.volume_routes.volume_extended(ev["tag"], [inst["uuid"]],
                                                             int(vol["size"]))
            out.append(doc)
        return FastJSON({"events": out}, status_code=200 if found else 404)

    @serves("GET", "/v2.1/servers/{server_id}/topology")
    async def topology(self, req: ApiRequest) -> dict[str, Any]:
        if ver(req) < "2.78":
            raise NotFound("The resource could not be found.")
        await self.find_server(req, "compute:server:topology:index")
        return {"nodes": [], "pagesize_kb": None}

