"""Compute API: servers themselves: list (Nova's filters, sorting, paging; pages
rendered off the event loop), show, update and delete (ports released, the host agent told
or, when it is gone, the delete finished here)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from starlette.responses import Response

from onestack.api.app import ApiRequest
from onestack.api.bulk import json_response, run_bulk
from onestack.api.routes import serves
from onestack.bus.base import NoConsumer
from onestack.common.errors import BadRequest, ValidationError
from onestack.common.pagination import next_link
from onestack.compute import block_devices, schemas, states, views
from onestack.compute.manager import INSTANCE_SORT_KEYS, InstanceDict
from onestack.compute.microversions import APIVersion, ver
from onestack.compute.resource_base import ResourceHandler, preserved, tgt
from onestack.compute.volumes import release_all

LOG = logging.getLogger(__name__)

MAX_LIMIT = 1000

_TASK_FOR_STATUS = {
    "REBOOT": ["rebooting", "reboot_pending", "reboot_started"],
    "HARD_REBOOT": ["rebooting_hard", "reboot_pending_hard", "reboot_started_hard"],
    "RESIZE": ["resize_prep", "resize_migrating", "resize_migrated", "resize_finish"],
    "MIGRATING": ["migrating"],
    "REBUILD": ["rebuilding", "rebuild_block_device_mapping", "rebuild_spawning"],
}


def _has_ports(inst: InstanceDict) -> bool:
    """Whether the server ever had ports (at boot or attached since): servers that never
    had any cost no network lookup on show and delete."""
    sm = inst["system_metadata"]
    return bool(sm.get("port_count") or sm.get("port_cache") or sm.get("networks")
                or sm.get("preserve_ports"))


class Servers(ResourceHandler):
    """List, show, update and delete servers."""

    def _list_filters(self, req: ApiRequest, v: APIVersion, detail: bool = True
                      ) -> dict[str, Any]:
        q = req.query
        ctx = req.ctx
        filters: dict[str, Any] = {"project_id": ctx.project_id or ""}
        all_tenants = q.get("all_tenants")
        if all_tenants is not None and all_tenants.lower() not in ("0", "false", "off", "no"):
            req.enforce("os_compute_api:servers:detail:get_all_tenants" if detail
                        else "os_compute_api:servers:index:get_all_tenants", tgt(req))
            filters["project_id"] = None
        admin = ctx.is_admin
        if admin:
            # As in Nova, project_id/tenant_id narrow an all_tenants listing only; without
            # all_tenants an admin lists its own project's servers.
            pid = q.get("project_id") or q.get("tenant_id")
            if pid and filters["project_id"] is None:
                filters["project_id"] = pid
        if "status" in q:
            wanted: list[str] = []
            for st in q.getlist("status"):
                st = st.upper()
                if st == "DELETED":
                    filters["deleted"] = True
                    wanted.append(states.DELETED)
                    continue
                if st == "SOFT_DELETED":
                    wanted.append(states.SOFT_DELETED)
                    continue
                vms = states.STATUS_VM_STATES.get(st)
                if vms is None:
                    if admin:
                        raise BadRequest(f"Invalid server status: {st}")
                    continue
                wanted.extend(vms)
                if st in ("REBOOT", "HARD_REBOOT", "RESIZE", "MIGRATING", "REBUILD"):
                    filters["task_state"] = [k for k in _TASK_FOR_STATUS.get(st, [])]
            filters["status"] = wanted or ["__none__"]
        for key in ("image", "key_name", "reservation_id", "availability_zone", "uuid"):
            if q.get(key) is not None:
                filters[key] = q.get(key)
        if q.get("flavor") is not None:
            filters["flavor"] = q.get("flavor")
        if q.get("name") is not None:
            filters["name"] = q.get("name")
        if q.get("ip") is not None:
            filters["ip"] = q.get("ip")
        if q.get("ip6") is not None and v >= "2.5":
            filters["ip6"] = q.get("ip6")
        if admin:
            for key in ("host", "node", "user_id", "task_state", "power_state",
                        "launch_index", "access_ip_v4", "access_ip_v6", "hostname"):
                alias = {"access_ip_v4": "access_ip_v4"}.get(key, key)
                if q.get(alias) is not None:
                    filters[key] = q.get(alias)
            if "vm_state" in q:
                filters["vm_state"] = q.getlist("vm_state")
            if q.get("deleted") is not None:
                filters["deleted"] = q.get("deleted").lower() in ("true", "1", "yes", "on")
        elif v >= "2.83" and q.get("user_id") is not None:
            filters["user_id"] = q.get("user_id")
        if q.get("changes-since") is not None:
            filters["changes-since"] = schemas.time_filter(q.get("changes-since"), "changes-since")
        if q.get("changes-before") is not None and v >= "2.66":
            filters["changes-before"] = schemas.time_filter(q.get("changes-before"),
                                                            "changes-before")
            if ("changes-since" in filters
                    and filters["changes-before"] < filters["changes-since"]):
                raise BadRequest("The value of changes-since must be less than or equal to "
                                 "changes-before.")
        if "changes-since" in filters or "changes-before" in filters:
            filters.setdefault("deleted", True)
            if filters["deleted"] is True and "status" not in filters:
                filters["deleted"] = True
        if v >= "2.26":
            for key in ("tags", "tags-any", "not-tags", "not-tags-any"):
                if q.get(key):
                    filters[key] = [t for t in q.get(key).split(",") if t]
        if v >= "2.73" and q.get("locked") is not None:
            val = q.get("locked").lower()
            if val not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
                raise BadRequest(f"Invalid value for locked: {q.get('locked')}")
            filters["locked"] = val in ("true", "1", "yes", "on")
        if "power_state" in filters:
            try:
                filters["power_state"] = int(filters["power_state"])
            except ValueError:
                filters.pop("power_state")
        if "launch_index" in filters:
            try:
                filters["launch_index"] = int(filters["launch_index"])
            except ValueError:
                filters.pop("launch_index")
        return filters

    def _sort(self, req: ApiRequest) -> list[tuple[str, str]]:
        keys = req.query.getlist("sort_key")
        dirs = req.query.getlist("sort_dir")


        if not keys:
            return [("created_at", (dirs[0] if dirs else "desc").lower())]
        out = []
        for i, k in enumerate(keys):
            if k not in INSTANCE_SORT_KEYS:
                raise BadRequest(f"Invalid sort_key {k}")
            d = (dirs[i] if i < len(dirs) else (dirs[-1] if dirs else "desc")).lower()
            if d not in ("asc", "desc"):
                raise BadRequest(f"Invalid sort_dir {d}")
            if not req.ctx.is_admin and k in ("host", "node"):
                raise BadRequest(f"Invalid sort_key {k}")
            out.append((k, d))
        return out

    @serves("GET", "/v2.1/servers")
    @serves("GET", "/v2.1/servers/detail", detail=True)
    async def list_servers(self, req: ApiRequest, detail: bool = False) -> Response:
        v = ver(req)
        req.enforce("os_compute_api:servers:detail" if detail
                    else "os_compute_api:servers:index", tgt(req))
        filters = self._list_filters(req, v, detail)
        limit = None
        if req.query.get("limit") is not None:
            limit = schemas.integer(req.query.get("limit"), "limit", 0)
        limit = MAX_LIMIT if limit is None else min(limit, MAX_LIMIT)
        marker = req.query.get("marker")
        sort = self._sort(req)
        if self.network is not None and ("ip" in filters or "ip6" in filters):
            found: set[str] | None = None
            for key, version in (("ip", 4), ("ip6", 6)):
                pattern = filters.pop(key, None)
                if pattern is not None:
                    hits = set(await req.run(self.network.instances_by_ip, pattern, version))
                    found = hits if found is None else found & hits
            if filters.get("uuid") is not None:
                found = {u for u in found or () if u == filters["uuid"]}
            filters["uuid"] = sorted(found or ())
        # The page — query, shaping, JSON — is bulk work: off the loop (api/bulk.py).
        return await run_bulk(self._list_page, req, detail, filters, sort, limit, marker)

    def _list_page(self, req: ApiRequest, detail: bool, filters: dict[str, Any],
                   sort: list[tuple[str, str]], limit: int, marker: str | None) -> Response:
        """One page of ``GET /servers[/detail]``, rendered (blocking; bulk pool)."""
        v = ver(req)
        insts = self.m.list_instances(req.ctx, filters, sort, limit, marker)
        if detail:
            host_status = None
            servers = []
            addrs = self.api.page_addresses(insts)
            for i in insts:
                if v >= "2.16" and req.ctx.is_admin:
                    host_status = "UP" if i["host"] else ""
                servers.append(self.api.server_view(req, i, host_status, None,
                                                 addrs.get(i["uuid"], {})))
        else:
            servers = [views.server_brief(i, req.base_url) for i in insts]
        out: dict[str, Any] = {"servers": servers}
        if insts and len(insts) == limit:
            path = req.base_url + req.request.url.path
            out["servers_links"] = [{"rel": "next", "href": next_link(
                path, req.query, insts[-1]["uuid"], limit)}]
        return json_response(out)

    @serves("GET", "/v2.1/servers/{server_id}")
    async def show_server(self, req: ApiRequest) -> dict[str, Any]:
        inst, group_uuid = await self.m.db.run(self.m.show_instance, req.ctx,
                                         req.param("server_id"))
        req.enforce("os_compute_api:servers:show", tgt(req, inst["project_id"]))
        v = ver(req)
        host_status = None
        if v >= "2.16" and req.ctx.is_admin:
            host_status = "UP" if inst["host"] else ""
        group = (group_uuid or "") if v >= "2.71" else None
        addrs = await self.api.addresses(req, [inst["uuid"]]) if _has_ports(inst) else {}
        return {"server": self.api.server_view(req, inst, host_status, group,
                                            addrs.get(inst["uuid"], {}))}

    @serves("PUT", "/v2.1/servers/{server_id}")
    async def update_server(self, req: ApiRequest) -> dict[str, Any]:
        v = ver(req)
        inst = await self.find_server(req, "os_compute_api:servers:update")
        body = await req.json()
        srv = schemas.obj(body, "server")
        schemas.only_as_of(srv, v, {"name", "accessIPv4", "accessIPv6", "OS-DCF:diskConfig"},
                           {"description": "2.19", "hostname": "2.90"}, "server")
        values: dict[str, Any] = {}
        if "name" in srv:
            values["display_name"] = schemas.name(srv["name"])
        if "description" in srv:
            d = srv["description"]
            if d is not None and (not isinstance(d, str) or len(d) > 255):
                raise ValidationError("Invalid input for field/attribute description.")
            values["display_description"] = d
        if "accessIPv4" in srv:
            values["access_ip_v4"] = (schemas.ipv4(srv["accessIPv4"], "accessIPv4")
                                      if srv["accessIPv4"] else None)
        if "accessIPv6" in srv:
            values["access_ip_v6"] = (schemas.ipv6(srv["accessIPv6"], "accessIPv6")
                                      if srv["accessIPv6"] else None)
        if "hostname" in srv:
            values["hostname"] = schemas.name(srv["hostname"], "hostname")
        await self.api.set_disk_config(req, inst, srv)
        inst = await req.run(self.m.update_instance, req.ctx, inst["uuid"], values)
        return {"server": await self.api.action_view(req, inst)}

    @serves("DELETE", "/v2.1/servers/{server_id}")
    async def delete_server(self, req: ApiRequest) -> Response:
        def authorize(inst: InstanceDict) -> None:
            req.enforce("os_compute_api:servers:delete", tgt(req, inst["project_id"]))

        await self._delete(req, req.param("server_id"), authorize=authorize)
        return Response(status_code=204)

    async def _delete(self, req: ApiRequest, uuid: str, force: bool = False,
                      authorize: Callable[[InstanceDict], None] | None = None) -> None:
        inst, on_host = await self.m.db.run(self.m.begin_delete, req.ctx, uuid, force,
                                            authorize)
        if self.network is not None and _has_ports(inst):
            # Ports compute made are deleted, the user's ports detached (they survive).
            try:
                await req.run(self.network.deallocate, uuid, preserved(inst))
            except Exception:  # noqa: BLE001 - the delete itself has been recorded
                LOG.exception("could not release the ports of %s", uuid)
        if not on_host:
            await self._release_volumes(req, inst)
            return
        try:
            await self.bus.cast(f"compute.{inst['host']}", "terminate_instance",
                                instance_uuid=uuid)
        except NoConsumer:
            # The host's agent is gone (in-process): delete locally, like Nova does for an
            # instance whose compute service is down. Its reconciliation cleans the guest.
            await self._release_volumes(req, inst)
            await req.run(self.m.finish_delete, uuid)

    async def _release_volumes(self, req: ApiRequest, inst: InstanceDict) -> None:
        """A server deleted without its host: its volumes are released here."""
        bdms = block_devices.of(inst)
        if self.volumes is not None and bdms:
            await req.run(release_all, self.volumes, inst["uuid"], bdms)

