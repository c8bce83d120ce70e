"""Compute API (Nova v2.1 + microversions): servers and server actions.

Routes parse and validate, call ``ComputeManager`` (which owns every state change) and shape
the result with ``views``. Work on guests never happens here: the API records intent and casts
to the scheduler (new servers, moves) or to the instance's host agent (``compute.<host>``).
Flavors, keypairs, quotas, hosts, groups, usage and the image proxy live in a module each
(``api_flavors.py`` ... ``api_images.py``); server actions in ``api_actions.py``.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

from starlette.responses import Response

from onestack.api.app import ApiRequest, FastJSON, Service, route, url_header
from onestack.api.bulk import json_response, run_bulk
from onestack.api.policy import Policy
from onestack.api.versions import healthcheck
from onestack.bus.base import Bus, BusError, NoConsumer
from onestack.common.context import RequestContext
from onestack.common.errors import (
    APIError,
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    ValidationError,
)
from onestack.common.ids import new_uuid
from onestack.common.pagination import next_link
from onestack.common.timeutils import parse_isotime
from onestack.compute import block_devices, boot_volumes, schemas, server_schemas, states, views
from onestack.compute.api_actions import ServerActions, admin_password
from onestack.compute.api_flavors import Flavors
from onestack.compute.api_groups import ServerGroups
from onestack.compute.api_hosts import Hosts
from onestack.compute.api_images import ImageProxy
from onestack.compute.api_keypairs import Keypairs
from onestack.compute.api_quotas import Quotas
from onestack.compute.api_usage import Usage
from onestack.compute.manager import ComputeManager, InstanceDict
from onestack.compute.microversions import (
    MAX_VERSION,
    MIN_VERSION,
    APIVersion,
    url_project,
    ver,
)
from onestack.compute.network_proxies import NetworkProxyRoutes, nova_group
from onestack.compute.policies import RULES
from onestack.compute.volumes import release_all

LOG = logging.getLogger(__name__)

FAULT_KINDS = {400: "badRequest", 401: "unauthorized", 403: "forbidden", 404: "itemNotFound",
               405: "badMethod", 406: "HTTPNotAcceptable", 409: "conflictingRequest",
               413: "overLimit", 415: "badMediaType", 429: "overLimit",
               501: "notImplemented", 503: "serviceUnavailable"}
MAX_LIMIT = 1000
#: How long an interface attach/detach waits for the compute host (hot-plug, guest release).
NIC_TIMEOUT = 90
VERSION_UPDATED = "2013-07-23T11:33:21Z"


def nova_fault(err: APIError) -> tuple[dict[str, Any], str]:
    """Nova's ``{"itemNotFound": {"code": 404, "message": ...}}``."""
    kind = FAULT_KINDS.get(err.status, "computeFault")
    return {kind: {"code": err.status, "message": err.message}}, "application/json"


def check_url_project(req: ApiRequest) -> None:
    """A ``/v2.1/{project_id}/...`` URL must name the token's own project (Nova: 400)."""
    project = url_project(req.request.scope)
    if project is not None and project != req.ctx.project_id:
        raise BadRequest(f"Malformed request URL: URL's project_id '{project}' doesn't match "
                         f"Context's project_id '{req.ctx.project_id}'")


def build_policy(policy_file: str | None) -> Policy:
    return Policy(RULES, policy_file, denied="Policy doesn't allow {action} to be performed.")


def _parse_time(value: str, field: str) -> dt.datetime:
    try:
        return parse_isotime(value)
    except ValueError:
        raise BadRequest(f"Invalid filter field: {field}.") from None


#: The fields of Nova's standard server diagnostics (microversion 2.48).
_DIAGNOSTICS_KEYS = frozenset({
    "state", "driver", "hypervisor", "hypervisor_os", "uptime", "config_drive", "num_cpus",
    "num_nics", "num_disks", "cpu_details", "nic_details", "disk_details", "memory_details"})


def _has_ports(inst: InstanceDict) -> bool:
    """Whether the server ever had ports (at boot or attached since): servers that never
    had any cost no network lookup on show and delete."""
    sm = inst["system_metadata"]
    return bool(sm.get("port_count") or sm.get("port_cache") or sm.get("networks")
                or sm.get("preserve_ports"))


class ComputeAPI(NetworkProxyRoutes):
    """Builds the compute service: routes bound to the manager, bus and image service."""

    def __init__(self, manager: ComputeManager, bus: Bus, policy: Policy, auth_uri: str,
                 images: Any | None = None, console_url: str = "http://127.0.0.1:6080",
                 network: Any | None = None) -> None:
        self.m = manager
        self.bus = bus
        self.images = images
        #: Seam for the network service (Neutron): None means no networking, so only
        #: ``networks: "none"``/``"auto"`` (or omitted) are accepted.
        self.network = network
        #: Seam for the block-storage service (Cinder, ``compute.volumes``); None: no
        #: volumes (attaching one is refused).
        self.volumes: Any = None
        self.console_url = console_url
        #: Console token store (``onestack.console.tokens``); None: no remote consoles.
        self.console_tokens: Any = None
        self.service = Service(name="compute", routes=[], fault=nova_fault, policy=policy,
                               auth_uri=auth_uri, request_check=check_url_project)
        #: Server actions (``POST /servers/{id}/action``, ``compute/api_actions.py``).
        self.actions = ServerActions(self)
        self._add_routes()
        #: One handler per resource beside servers, each registering its own routes.
        self.resources = [cls(self) for cls in (Flavors, Keypairs, Quotas, Hosts,
                                                   ServerGroups, Usage, ImageProxy)]
        for handler in self.resources:
            handler.add_routes(self._r)
        self.add_network_proxy_routes()
        #: Volume attachment routes (``compute/api_volumes.py``, registered by
        #: ``compute.setup``); also where the volume service's events arrive.
        self.volume_routes: Any = None

    # ------------------------------------------------------------------ helpers
    def _r(self, path: str, handler: Callable[..., Any], methods: list[str],
           public: bool = False) -> None:
        self.service.routes.append(route(self.service, path, handler, methods, public))

    @staticmethod
    def tgt(req: ApiRequest, project_id: str | None = None,
            user_id: str | None = None) -> dict[str, Any]:
        return {"project_id": project_id or req.ctx.project_id or "",
                "user_id": user_id or req.ctx.user_id or ""}

    async def find_server(self, req: ApiRequest, rule: str | None = None,
                          deleted_ok: bool = False) -> InstanceDict:
        """The server of the URL (another project's is not found for a non-admin: 404),
        then ``rule`` checked against it (403), as Nova orders them. ``deleted_ok``: a deleted
        server is found too (instance actions from 2.21)."""
        inst = await self.m.db.run(self.m.get_instance, req.ctx, req.param("server_id"),
                                   deleted_ok)
        if rule is not None:
            req.enforce(rule, self.tgt(req, inst["project_id"], inst["user_id"]))
        return inst

    async def cast(self, inst: InstanceDict, method: str, **kwargs: Any) -> None:
        """Cast to the instance's host agent (a down in-process host: nothing listens)."""
        if not inst["host"]:
            raise Conflict(f"Instance {inst['uuid']} is not assigned to a host.")
        try:
            await self.bus.cast(f"compute.{inst['host']}", method, **kwargs)
        except NoConsumer:
            LOG.warning("no compute agent for host %s; %s of %s not delivered",
                        inst["host"], method, inst["uuid"])
            raise Conflict(f"Compute host {inst['host']} could not be found.") from None

    async def call(self, inst: InstanceDict, method: str, timeout: float = 30,
                   **kwargs: Any) -> Any:
        if not inst["host"]:
            raise Conflict(f"Instance {inst['uuid']} is not ready yet.")
        try:
            return await self.bus.call(f"compute.{inst['host']}", method, timeout=timeout,
                                        **kwargs)
        except (NoConsumer, BusError) as exc:
            raise Conflict(f"Compute host {inst['host']} is not available: {exc}") from None

    async def action_view(self, req: ApiRequest, inst: InstanceDict,
                          rebuild: bool = False) -> dict[str, Any]:
        """The server document of update/rebuild responses (before 2.75 a reduced one)."""
        v = ver(req)
        group = None
        if v >= "2.75":
            group = await req.run(self.m.group_of, inst["uuid"]) or ""
        addrs = (await self._addresses(req, [inst["uuid"]])).get(inst["uuid"], {})
        if v < "2.75":
            # Nova's ``extend_address=False``: no OS-EXT-IPS(-MAC) keys (Tempest's schema
            # of these responses refuses them).
            addrs = views.basic_addresses(addrs)
        doc = self._server_view(req, inst, None, group, addrs)
        if v < "2.75":
            for key in list(doc):
                if key.startswith(("OS-EXT-", "OS-SRV-USG:")) or key in (
                        "config_drive", "os-extended-volumes:volumes_attached",
                        "security_groups", "host_status", "server_groups", "key_name"):
                    doc.pop(key)
            if rebuild and v >= "2.54":
                doc["key_name"] = inst["key_name"]
        if rebuild and v >= "2.57":
            doc.pop("OS-EXT-SRV-ATTR:user_data", None)
            doc["user_data"] = inst["user_data"]
        return doc

    def _server_view(self, req: ApiRequest, inst: InstanceDict,
                     host_status: str | None = None, group: str | None = None,
                     addresses: dict[str, Any] | None = None) -> dict[str, Any]:
        return views.server(inst, req.base_url, ver(req), req.ctx.is_admin, host_status,
                            group, addresses)

    async def _addresses(self, req: ApiRequest, uuids: list[str]) -> dict[str, Any]:
        """``addresses`` of the servers, from the network service in one batch."""
        if self.network is None or not uuids:
            return {}
        return dict(await req.run(self.network.addresses, uuids))

    def _page_addresses(self, insts: list[InstanceDict]) -> dict[str, Any]:
        """``addresses`` of a list page: port caches + live floating IPs (one batch);
        servers that never had ports cost nothing (blocking)."""
        if self.network is None:
            return {}
        caches: dict[str, Any] = {}
        for i in insts:
            sm = i["system_metadata"]
            if sm.get("port_cache"):
                caches[i["uuid"]] = list(sm.get("networks") or [])
            elif sm.get("port_count"):
                caches[i["uuid"]] = None
        if not caches:
            return {}
        return dict(self.network.cached_addresses(caches))

    def _preserved(self, inst: InstanceDict) -> list[str]:
        return list(inst["system_metadata"].get("preserve_ports") or [])

    # ------------------------------------------------------------------ routes
    def _add_routes(self) -> None:
        r = self._r
        r("/", self.versions, ["GET"], public=True)
        r("/v2.1", self.version, ["GET"], public=True)
        r("/v2", self.version_v2, ["GET"], public=True)
        r("/healthcheck", healthcheck, ["GET"], public=True)
        p = "/v2.1"
        r(p + "/servers", self.list_servers, ["GET"])
        r(p + "/servers/detail", self.list_servers_detail, ["GET"])
        r(p + "/servers", self.create_server, ["POST"])
        r(p + "/servers/{server_id}", self.show_server, ["GET"])
        r(p + "/servers/{server_id}", self.update_server, ["PUT"])
        r(p + "/servers/{server_id}", self.delete_server, ["DELETE"])
        r(p + "/servers/{server_id}/action", self.actions.server_action, ["POST"])
        r(p + "/servers/{server_id}/metadata", self.get_metadata, ["GET"])
        r(p + "/servers/{server_id}/metadata", self.replace_metadata, ["PUT"])
        r(p + "/servers/{server_id}/metadata", self.update_metadata, ["POST"])
        r(p + "/servers/{server_id}/metadata/{key}", self.get_meta_item, ["GET"])
        r(p + "/servers/{server_id}/metadata/{key}", self.set_meta_item, ["PUT"])
        r(p + "/servers/{server_id}/metadata/{key}", self.delete_meta_item, ["DELETE"])
        r(p + "/servers/{server_id}/tags", self.list_tags, ["GET"])
        r(p + "/servers/{server_id}/tags", self.replace_tags, ["PUT"])
        r(p + "/servers/{server_id}/tags", self.delete_tags, ["DELETE"])
        r(p + "/servers/{server_id}/tags/{tag}", self.check_tag, ["GET"])
        r(p + "/servers/{server_id}/tags/{tag}", self.add_tag, ["PUT"])
        r(p + "/servers/{server_id}/tags/{tag}", self.delete_tag, ["DELETE"])
        r(p + "/servers/{server_id}/os-instance-actions", self.list_actions, ["GET"])
        r(p + "/servers/{server_id}/os-instance-actions/{request_id}", self.show_action,
          ["GET"])
        r(p + "/servers/{server_id}/ips", self.list_ips, ["GET"])
        r(p + "/servers/{server_id}/ips/{network}", self.show_ips, ["GET"])
        r(p + "/servers/{server_id}/diagnostics", self.diagnostics, ["GET"])
        r(p + "/servers/{server_id}/os-server-password", self.get_password, ["GET"])
        r(p + "/servers/{server_id}/os-server-password", self.clear_password, ["DELETE"])
        r(p + "/servers/{server_id}/remote-consoles", self.remote_console, ["POST"])
        r(p + "/servers/{server_id}/os-interface", self.list_interfaces, ["GET"])
        r(p + "/servers/{server_id}/os-interface", self.attach_interface, ["POST"])
        r(p + "/servers/{server_id}/os-interface/{port_id}", self.show_interface, ["GET"])
        r(p + "/servers/{server_id}/os-interface/{port_id}", self.detach_interface,
          ["DELETE"])
        r(p + "/servers/{server_id}/os-security-groups", self.server_sgs, ["GET"])
        r(p + "/servers/{server_id}/migrations", self.server_migrations, ["GET"])
        r(p + "/servers/{server_id}/topology", self.topology, ["GET"])
        r(p + "/os-server-external-events", self.external_events, ["POST"])
        r(p + "/os-console-auth-tokens/{console_token}", self.actions.show_console_token,
          ["GET"])

    # ------------------------------------------------------------------ versions
    def _version_doc(self, base: str) -> dict[str, Any]:
        return {"id": "v2.1", "status": "CURRENT", "version": MAX_VERSION,
                "min_version": MIN_VERSION, "updated": VERSION_UPDATED,
                "links": [{"rel": "self", "href": f"{base}/v2.1/"},
                          {"rel": "describedby", "type": "text/html",
                           "href": "http://docs.openstack.org/"}],
                "media-types": [{"base": "application/json",
                                 "type": "application/vnd.openstack.compute+json;version=2.1"}]}

    async def versions(self, req: ApiRequest) -> Response:
        base = req.base_url
        v2 = {"id": "v2.0", "status": "SUPPORTED", "version": "", "min_version": "",
              "updated": "2011-01-21T11:33:21Z",
              "links": [{"rel": "self", "href": f"{base}/v2/"}]}
        doc = self._version_doc(base)
        doc.pop("media-types")
        doc["links"] = doc["links"][:1]
        return FastJSON({"versions": [v2, doc]}, status_code=300 if False else 200)

    async def version_v2(self, req: ApiRequest) -> dict[str, Any]:
        base = req.base_url
        return {"version": {
            "id": "v2.0", "status": "SUPPORTED", "version": "", "min_version": "",
            "updated": "2011-01-21T11:33:21Z",
            "links": [{"rel": "self", "href": f"{base}/v2/"},
                      {"rel": "describedby", "type": "text/html",
                       "href": "http://docs.openstack.org/"}],
            "media-types": [{"base": "application/json",
                             "type": "application/vnd.openstack.compute+json;version=2"}]}}

    async def version(self, req: ApiRequest) -> dict[str, Any]:
        return {"version": self._version_doc(req.base_url)}

    # ------------------------------------------------------------------ list / show
    def _list_filters(self, req: ApiRequest, v: APIVersion, detail: bool = True
                      ) -> dict[str, Any]:
        q = req.query
        ctx = req.ctx
        filters: dict[str, Any] = {"project_id": ctx.project_id or ""}
        all_tenants = q.get("all_tenants")
        if all_tenants is not None and all_tenants.lower() not in ("0", "false", "off", "no"):
            req.enforce("os_compute_api:servers:detail:get_all_tenants" if detail
                        else "os_compute_api:servers:index:get_all_tenants", self.tgt(req))
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
            filters["changes-since"] = _parse_time(q.get("changes-since"), "changes-since")
        if q.get("changes-before") is not None and v >= "2.66":
            filters["changes-before"] = _parse_time(q.get("changes-before"), "changes-before")
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
        from onestack.compute.manager import INSTANCE_SORT_KEYS

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

    async def _list(self, req: ApiRequest, detail: bool) -> Response:
        v = ver(req)
        req.enforce("os_compute_api:servers:detail" if detail
                    else "os_compute_api:servers:index", self.tgt(req))
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
            addrs = self._page_addresses(insts)
            for i in insts:
                if v >= "2.16" and req.ctx.is_admin:
                    host_status = "UP" if i["host"] else ""
                servers.append(self._server_view(req, i, host_status, None,
                                                 addrs.get(i["uuid"], {})))
        else:
            servers = [views.server_brief(i, req.base_url) for i in insts]
        out: dict[str, Any] = {"servers": servers}
        if insts and len(insts) == limit:
            path = req.base_url + req.request.url.path
            out["servers_links"] = [{"rel": "next", "href": next_link(
                path, req.query, insts[-1]["uuid"], limit)}]
        return json_response(out)

    async def list_servers(self, req: ApiRequest) -> Response:
        return await self._list(req, False)

    async def list_servers_detail(self, req: ApiRequest) -> Response:
        return await self._list(req, True)

    async def show_server(self, req: ApiRequest) -> dict[str, Any]:
        inst, group_uuid = await self.m.db.run(self.m.show_instance, req.ctx,
                                         req.param("server_id"))
        req.enforce("os_compute_api:servers:show", self.tgt(req, inst["project_id"]))
        v = ver(req)
        host_status = None
        if v >= "2.16" and req.ctx.is_admin:
            host_status = "UP" if inst["host"] else ""
        group = (group_uuid or "") if v >= "2.71" else None
        addrs = await self._addresses(req, [inst["uuid"]]) if _has_ports(inst) else {}
        return {"server": self._server_view(req, inst, host_status, group,
                                            addrs.get(inst["uuid"], {}))}

    # ------------------------------------------------------------------ create
    def image_info(self, req: ApiRequest, image_id: str) -> dict[str, Any]:
        if self.images is None:
            return {"id": image_id, "properties": {}, "min_ram": 0, "min_disk": 0, "size": 0}
        try:
            img = self.images.boot_info(req.ctx, image_id)
        except APIError:
            raise BadRequest(f"Image {image_id} could not be found.") from None
        if img.pop("status") != "active":
            raise BadRequest(f"Image {image_id} is not active.")
        return img

    def _prepare(self, req: ApiRequest, srv: dict[str, Any], hints: dict[str, Any],
                 v: APIVersion) -> tuple[dict[str, Any], dict[str, Any]]:
        """Validate a create request; returns (instance spec, scheduler request)."""
        ctx = req.ctx
        name = schemas.name(srv.get("name"), "name")
        flavor_ref = srv.get("flavorRef")
        if flavor_ref is None:
            raise ValidationError("Invalid input for field/attribute server. 'flavorRef' is a "
                                  "required property")
        fid = schemas.ref_id(flavor_ref, "flavorRef")
        try:
            flavor = self.m.get_flavor(ctx, fid)
        except NotFound:
            raise BadRequest(f"Flavor {fid} could not be found.") from None
        if flavor["disabled"]:
            raise BadRequest(f"Flavor {fid} could not be found.")
        seen: dict[str, dict[str, Any]] = {}  # one image lookup per image and request

        def image_info(iid: str) -> dict[str, Any]:
            if iid not in seen:
                seen[iid] = self.image_info(req, iid)
            return dict(seen[iid])
        disks = boot_volumes.parse(ctx, srv, srv.get("imageRef"), self.volumes, image_info,
                                   schemas.integer(srv.get("max_count", 1), "max_count", 1))
        if disks.volume_backed:
            image_id = ""
            image = {"properties": disks.root_properties or {}}
        else:
            image_id = schemas.ref_id(disks.image_ref, "imageRef")
            if not schemas.is_uuid(image_id):
                raise BadRequest(f"Invalid imageRef provided. Image {image_id} could not "
                                 "be found.")
            image = image_info(image_id)
            if image["min_ram"] and flavor["memory_mb"] < image["min_ram"]:
                raise BadRequest("Flavor's memory is too small for requested image.")
            if image["min_disk"] and flavor["root_gb"] and \
                    flavor["root_gb"] < image["min_disk"]:
                raise BadRequest("Flavor's disk is too small for requested image.")
            if flavor["root_gb"] and image["size"] > flavor["root_gb"] * 1024 ** 3:
                raise BadRequest("Flavor's disk is too small for requested image.")
            if not flavor["root_gb"] and not req.allowed(
                    "os_compute_api:servers:create:zero_disk_flavor",
                    {"project_id": ctx.project_id or ""}):
                raise Forbidden("Only volume-backed servers are allowed for flavors with "
                                "zero disk.")
        networks = srv.get("networks")
        requested_networks: list[dict[str, Any]] = []
        if v >= "2.37" and networks is None:
            raise ValidationError("Invalid input for field/attribute server. 'networks' is a "
                                  "required property")
        if isinstance(networks, str):
            if networks not in ("none", "auto") or v < "2.37":
                raise ValidationError(f"Invalid input for field/attribute networks. Value: "
                                      f"{networks}.")
        elif isinstance(networks, list):
            for net in networks:
                if not isinstance(net, dict):
                    raise ValidationError("Invalid input for field/attribute networks.")
                for key in ("uuid", "port", "fixed_ip"):
                    if net.get(key) is not None and not isinstance(net[key], str):
                        raise ValidationError(f"Invalid input for field/attribute {key}.")
                if self.network is None:
                    if net.get("port"):
                        raise BadRequest(f"Port {net['port']} could not be found.")
                    raise BadRequest(f"Network {net.get('uuid')} could not be found.")
                requested_networks.append(net)
        elif networks is not None:
            raise ValidationError("Invalid input for field/attribute networks.")
        key_data = None
        key_name = srv.get("key_name")
        if key_name is not None:
            if not isinstance(key_name, str):
                raise ValidationError("Invalid input for field/attribute key_name.")
            try:
                key_data = self.m.get_keypair(ctx.user_id or "", key_name)["public_key"]
            except NotFound:
                raise BadRequest("Invalid key_name provided.") from None
        # The metadata_items quota is checked with the others when the rows are written.
        meta = schemas.metadata(srv.get("metadata", {}))
        personality = srv.get("personality")
        if personality is not None:
            if v >= "2.57":
                raise ValidationError("Invalid input for field/attribute server. Additional "
                                      "properties are not allowed ('personality' was "
                                      "unexpected)")
            if not isinstance(personality, list):
                raise ValidationError("Invalid input for field/attribute personality.")
            limits = self.m.quota_limits(ctx.project_id or "", ctx.user_id)
            if 0 <= limits["injected_files"] < len(personality):
                raise Forbidden("Personality file limit exceeded")
            for f in personality:
                if not isinstance(f, dict) or "path" not in f:
                    raise ValidationError("Invalid input for field/attribute personality.")
                if len(str(f["path"])) > limits["injected_file_path_bytes"] >= 0:
                    raise Forbidden("Personality file path exceeds maximum "
                                    f"{limits['injected_file_path_bytes']}")
                try:
                    content = base64.b64decode(f.get("contents", ""), validate=True)
                except Exception:  # noqa: BLE001
                    raise BadRequest("Personality content for "
                                     f"{f['path']} cannot be decoded") from None
                if len(content) > limits["injected_file_content_bytes"] >= 0:
                    raise Forbidden("Personality file content exceeds maximum "
                                    f"{limits['injected_file_content_bytes']}")
        user_data = srv.get("user_data")
        if user_data is not None:
            user_data = schemas.user_data(user_data)
        az = srv.get("availability_zone")
        if az is not None:
            if not isinstance(az, str) or not az:
                raise ValidationError("Invalid input for field/attribute availability_zone.")
            zone = az.split(":", 1)[0]
            if ":" in az:
                req.enforce("os_compute_api:servers:create:forced_host", self.tgt(req))
            if zone:
                known = {z["name"] for z in self.m.availability_zones()
                         if z["name"] != "internal"}
                if zone not in known:
                    raise BadRequest("The requested availability zone is not available")
        req_host = srv.get("host")
        req_node = srv.get("hypervisor_hostname")
        if (req_host or req_node) and v >= "2.74":
            req.enforce("os_compute_api:servers:create:requested_destination", self.tgt(req))
            if req_host and not any(n["host"] == req_host for n in self.m.list_nodes()):
                raise BadRequest(f"Compute host {req_host} could not be found.")
            if req_node and self.m.node_by_name(req_node) is None:
                raise BadRequest(f"Compute host {req_node} could not be found.")
        sgs = srv.get("security_groups")
        sg_names = ["default"]
        if sgs is not None:
            if not isinstance(sgs, list):
                raise ValidationError("Invalid input for field/attribute security_groups.")
            sg_names = []
            for sg in sgs:
                if not isinstance(sg, dict) or not isinstance(sg.get("name"), str):
                    raise ValidationError("Invalid input for field/attribute security_groups.")
                if sg["name"] != "default" and self.network is None:
                    raise BadRequest(f"Security group {sg['name']} not found for project "
                                     f"{ctx.project_id}.")
                if sg["name"] not in sg_names:
                    sg_names.append(sg["name"])
        if isinstance(networks, str) and networks == "none":
            sg_names = sg_names if sgs is not None else []
        group = None
        if hints:
            if not isinstance(hints, dict):
                raise ValidationError("Invalid input for field/attribute os:scheduler_hints.")
            group = hints.get("group")
            if group is not None:
                if not schemas.is_uuid(group):
                    raise ValidationError(f"Invalid input for field/attribute group. Value: "
                                          f"{group}.")
                try:
                    self.m.get_group(ctx, group)
                except NotFound:
                    raise BadRequest(f"Instance group {group} could not be found.") from None
        tags = []
        if srv.get("tags") is not None:
            if v < "2.52":
                raise ValidationError("Invalid input for field/attribute server. Additional "
                                      "properties are not allowed ('tags' was unexpected)")
            tags = schemas.tags(srv["tags"])
        description = srv.get("description")
        if description is not None:
            if v < "2.19":
                raise ValidationError("Invalid input for field/attribute server. Additional "
                                      "properties are not allowed ('description' was "
                                      "unexpected)")
            if not isinstance(description, str) or len(description) > 255:
                raise ValidationError("Invalid input for field/attribute description.")
        hostname = srv.get("hostname")
        if hostname is not None and v < "2.90":
            raise ValidationError("Invalid input for field/attribute server. Additional "
                                  "properties are not allowed ('hostname' was unexpected)")
        ipv4 = srv.get("accessIPv4")
        ipv6 = srv.get("accessIPv6")
        if ipv4 is not None and ipv4 != "":
            ipv4 = schemas.ipv4(ipv4, "accessIPv4")
        if ipv6 is not None and ipv6 != "":
            ipv6 = schemas.ipv6(ipv6, "accessIPv6")
        config_drive = srv.get("config_drive")
        if config_drive is not None and not isinstance(config_drive, bool | str):
            raise ValidationError("Invalid input for field/attribute config_drive.")
        disk_config = srv.get("OS-DCF:diskConfig", "MANUAL")
        if disk_config not in ("AUTO", "MANUAL"):
            raise ValidationError("Invalid input for field/attribute OS-DCF:diskConfig.")
        admin_pass = srv.get("adminPass")
        if admin_pass is not None and not isinstance(admin_pass, str):
            raise ValidationError("Invalid input for field/attribute adminPass.")
        spec = {"name": name, "flavor": flavor, "image_ref": image_id,
                "key_name": key_name, "key_data": key_data, "user_data": user_data,
                "metadata": meta, "availability_zone": (az.split(":", 1)[0] or None)
                if az else None,
                "config_drive": bool(config_drive) and config_drive not in ("", "False"),
                "tags": tags, "access_ip_v4": ipv4 or None, "access_ip_v6": ipv6 or None,
                "description": description, "hostname": hostname, "group": group,
                "system_metadata": {"image_properties": image["properties"],
                                    "security_groups": sg_names, "disk_config": disk_config,
                                    "requested_networks": requested_networks,
                                    "networks": [], "preserve_ports": [],
                                    "requested_az": az.split(":", 1)[0] or None
                                    if az else None,
                                    "scheduler_hints": dict(hints or {})}}
        if disks.volumes:
            spec["system_metadata"]["block_devices"] = disks.volumes
        if disks.boot_image:
            spec["system_metadata"]["boot_image"] = disks.boot_image
        request = {"availability_zone": az, "image_properties": image["properties"],
                   "group": group, "hints": {k: v2 for k, v2 in (hints or {}).items()
                                             if k != "group"},
                   "host": req_host, "hypervisor_hostname": req_node}
        return spec, request

    async def create_server(self, req: ApiRequest) -> Response:
        v = ver(req)
        req.enforce("os_compute_api:servers:create", self.tgt(req))
        body = await req.json()
        srv = schemas.obj(body, "server")
        server_schemas.check_create(body, v.minor)
        hints = body.get("os:scheduler_hints") or body.get("OS-SCH-HNT:scheduler_hints") or {}
        min_count = schemas.integer(srv.get("min_count", 1), "min_count", 1)
        max_count = schemas.integer(srv.get("max_count", min_count), "max_count", 1)
        if min_count > max_count:
            raise BadRequest("min_count must be <= max_count")
        spec, request = await self.m.db.run(self._prepare, req, srv, hints, v)
        # Kept with the instance (Nova's RequestSpec) so a boot whose scheduling was lost
        # in a crash can be scheduled again (compute/recovery.py).
        spec["system_metadata"]["schedule_request"] = {
            k: val for k, val in request.items() if k != "image_properties"}
        plan: list[dict[str, Any]] = []
        sg_ids: list[str] | None = None
        if self.network is not None:
            plan, sg_ids = await self.m.db.run(self._plan_network, req, srv, spec, max_count)
        admin_pass = srv.get("adminPass") or admin_password()
        request["admin_pass"] = admin_pass
        insts = await self.m.db.run(self.m.create_instances, req.ctx, spec, max_count,
                                    min_count)
        if spec["system_metadata"].get("block_devices"):
            # The user's volumes are reserved for the server before the 202 (as Nova).
            try:
                await req.run(self._reserve_volumes, req.ctx, insts[0]["uuid"],
                              spec["system_metadata"]["block_devices"])
            except BaseException:
                await req.run(self.m.purge_instances, [i["uuid"] for i in insts])
                raise
        if plan:
            # Ports are made in the request, before the 202: a failure leaves nothing.
            try:
                await req.run(self._allocate_all, req.ctx, insts, plan, sg_ids)
            except BaseException:
                await req.run(self._release_reserved, insts[0]["uuid"])
                await req.run(self.m.purge_instances, [i["uuid"] for i in insts])
                raise
        first = insts[0]
        # What the scheduler and the agent need, so neither has to read the rows back.
        request["instance"] = {
            "flavor": spec["flavor"], "project_id": first["project_id"],
            "user_id": first["user_id"], "image_ref": first["image_ref"],
            "key_data": first["key_data"], "user_data": first["user_data"],
            "metadata": first["metadata"], "config_drive": first["config_drive"],
            "system_metadata": first["system_metadata"]}
        request["names"] = {i["uuid"]: i["name"] for i in insts}
        await self.bus.cast("scheduler", "build_instances",
                            instance_uuids=[i["uuid"] for i in insts], request=request)
        if srv.get("return_reservation_id") in (True, "True", "true"):
            return FastJSON({"reservation_id": insts[0]["reservation_id"]}, status_code=202)
        first = insts[0]
        doc: dict[str, Any] = {"id": first["uuid"],
                               "links": views.links(req.base_url, "servers", first["uuid"]),
                               "OS-DCF:diskConfig": spec["system_metadata"]["disk_config"]}
        if spec["system_metadata"]["security_groups"]:
            doc["security_groups"] = [{"name": n} for n in
                                      spec["system_metadata"]["security_groups"]]
        doc["adminPass"] = admin_pass
        return FastJSON({"server": doc}, status_code=202,
                        headers={"Location": doc["links"][0]["href"]})

    def _reserve_volumes(self, ctx: Any, uuid: str, bdms: list[dict[str, Any]]) -> None:
        """Reserve the existing volumes a boot names (all or none)."""
        done: list[str] = []
        store = block_devices.BlockDevices(self.m)
        try:
            for bdm in bdms:
                if bdm.get("volume_id") and not bdm.get("attachment_id"):
                    aid = self.volumes.reserve(ctx, bdm["volume_id"], uuid)
                    done.append(aid)
                    store.update(uuid, bdm["volume_id"], attachment_id=aid)
        except BaseException:
            for aid in done:
                self.volumes.release(aid)
            raise

    def _release_reserved(self, uuid: str) -> None:
        inst = self.m.get_instance(None, uuid)
        for bdm in block_devices.of(inst):
            if bdm.get("attachment_id"):
                self.volumes.release(bdm["attachment_id"])

    def _plan_network(self, req: ApiRequest, srv: dict[str, Any], spec: dict[str, Any],
                      count: int) -> tuple[list[dict[str, Any]], list[str] | None]:
        """Validate ``networks``/``security_groups`` with the network service (Nova's
        400/409 rules, see ``compute/network.py``); records the user's ports to keep."""
        assert self.network is not None
        sm = spec["system_metadata"]
        plan = self.network.plan_networks(req.ctx, srv.get("networks"), count)
        for entry in plan:
            if entry.get("external"):
                self._external_attach(req, entry["network_id"])
        names = sm["security_groups"]
        sg_ids = None
        if plan or srv.get("security_groups") is not None:
            sg_ids = self.network.security_group_ids(req.ctx, names or ["default"])
        sm["preserve_ports"] = [e["port_id"] for e in plan if e.get("port_id")]
        sm["port_count"] = len(plan)
        return plan, sg_ids

    @staticmethod
    def _external_attach(req: ApiRequest, net_id: str) -> None:
        """Nova's ``network:attach_external_network`` (admins): 403 otherwise."""
        if not req.allowed("network:attach_external_network", ComputeAPI.tgt(req)):
            raise Forbidden(f"It is not allowed to create an interface on external network "
                            f"{net_id}")

    def _allocate_all(self, ctx: Any, insts: list[InstanceDict], plan: list[dict[str, Any]],
                      sg_ids: list[str] | None) -> None:
        """Ports for every new instance, all or nothing."""
        assert self.network is not None
        done: list[str] = []
        try:
            for inst in insts:
                self.network.allocate(ctx, inst["uuid"], plan, sg_ids)
                done.append(inst["uuid"])
        except BaseException:
            preserve = [e["port_id"] for e in plan if e.get("port_id")]
            for uuid in done:
                try:
                    self.network.deallocate(uuid, preserve)
                except Exception:  # noqa: BLE001 - keep rolling back, then re-raise
                    LOG.exception("could not release the ports of %s", uuid)
            raise

    # ------------------------------------------------------------------ update / delete
    async def update_server(self, req: ApiRequest) -> dict[str, Any]:
        v = ver(req)
        inst = await self.find_server(req, "os_compute_api:servers:update")
        body = await req.json()
        srv = schemas.obj(body, "server")
        allowed = {"name", "accessIPv4", "accessIPv6", "OS-DCF:diskConfig"}
        if v >= "2.19":
            allowed.add("description")
        if v >= "2.90":
            allowed.add("hostname")
        schemas.only(srv, allowed, "server")
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
        await self.set_disk_config(req, inst, srv)
        inst = await req.run(self.m.update_instance, req.ctx, inst["uuid"], values)
        return {"server": await self.action_view(req, inst)}

    async def set_disk_config(self, req: ApiRequest, inst: InstanceDict, args: Any) -> None:
        """``OS-DCF:diskConfig`` of an update, rebuild or resize (Nova's
        ``auto_disk_config``): validated, then recorded."""
        if not isinstance(args, dict) or "OS-DCF:diskConfig" not in args:
            return
        value = args["OS-DCF:diskConfig"]
        if value not in ("AUTO", "MANUAL"):
            raise ValidationError("Invalid input for field/attribute OS-DCF:diskConfig.")
        await req.run(self.m.update_system_metadata, inst["uuid"], disk_config=value)

    async def delete_server(self, req: ApiRequest) -> Response:
        def authorize(inst: InstanceDict) -> None:
            req.enforce("os_compute_api:servers:delete", self.tgt(req, inst["project_id"]))

        await self._delete(req, req.param("server_id"), authorize=authorize)
        return Response(status_code=204)

    async def _delete(self, req: ApiRequest, uuid: str, force: bool = False,
                      authorize: Callable[[InstanceDict], None] | None = None) -> None:
        inst, on_host = await self.m.db.run(self.m.begin_delete, req.ctx, uuid, force,
                                            authorize)
        if self.network is not None and _has_ports(inst):
            # Ports compute made are deleted, the user's ports detached (they survive).
            try:
                await req.run(self.network.deallocate, uuid, self._preserved(inst))
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

    # ------------------------------------------------------------------ sub-resources
    async def get_metadata(self, req: ApiRequest) -> dict[str, Any]:
        inst = await self.find_server(req, "os_compute_api:server-metadata:index")
        return {"metadata": inst["metadata"]}

    async def _set_meta(self, req: ApiRequest, replace: bool) -> dict[str, Any]:
        inst = await self.find_server(req, "os_compute_api:server-metadata:update_all" if replace
                                else "os_compute_api:server-metadata:create")
        body = await req.json()
        meta = schemas.metadata(schemas.obj(body, "metadata"))
        out = await req.run(self.m.set_metadata, req.ctx, inst["uuid"], meta, replace)
        return {"metadata": out}

    async def replace_metadata(self, req: ApiRequest) -> dict[str, Any]:
        return await self._set_meta(req, True)

    async def update_metadata(self, req: ApiRequest) -> dict[str, Any]:
        return await self._set_meta(req, False)

    async def get_meta_item(self, req: ApiRequest) -> dict[str, Any]:
        inst = await self.find_server(req, "os_compute_api:server-metadata:show")
        key = req.param("key")
        if key not in inst["metadata"]:
            raise NotFound("Metadata item was not found")
        return {"meta": {key: inst["metadata"][key]}}

    async def set_meta_item(self, req: ApiRequest) -> dict[str, Any]:
        inst = await self.find_server(req, "os_compute_api:server-metadata:update")
        body = await req.json()
        meta = schemas.metadata(schemas.obj(body, "meta"), "meta")
        key = req.param("key")
        if len(meta) != 1:
            raise BadRequest("Request body contains too many items")
        if key not in meta:
            raise BadRequest("Request body and URI mismatch")
        await req.run(self.m.set_metadata, req.ctx, inst["uuid"], meta, False)
        return {"meta": meta}

    async def delete_meta_item(self, req: ApiRequest) -> Response:
        inst = await self.find_server(req, "os_compute_api:server-metadata:delete")
        await req.run(self.m.delete_metadata, req.ctx, inst["uuid"], req.param("key"))
        return Response(status_code=204)

    def _tags_allowed(self, req: ApiRequest) -> None:
        if ver(req) < "2.26":
            raise NotFound("The resource could not be found.")

    async def list_tags(self, req: ApiRequest) -> dict[str, Any]:
        self._tags_allowed(req)
        inst = await self.find_server(req, "os_compute_api:os-server-tags:index")
        return {"tags": inst["tags"]}

    async def replace_tags(self, req: ApiRequest) -> dict[str, Any]:
        self._tags_allowed(req)
        inst = await self.find_server(req, "os_compute_api:os-server-tags:update_all")
        body = await req.json()
        if not isinstance(body, dict) or "tags" not in body:
            raise ValidationError("Invalid input for field/attribute tags.")
        tags = schemas.tags(body["tags"])
        self._tag_state(inst)
        return {"tags": await req.run(self.m.set_tags, req.ctx, inst["uuid"], tags)}

    @staticmethod
    def _tag_state(inst: InstanceDict) -> None:
        if inst["vm_state"] not in (states.ACTIVE, states.PAUSED, states.SUSPENDED,
                                    states.STOPPED, states.SHELVED, states.SHELVED_OFFLOADED,
                                    states.BUILDING, states.ERROR, states.RESCUED,
                                    states.RESIZED):
            raise Conflict(f"Cannot 'update tags' instance {inst['uuid']} while it is in "
                           f"vm_state {inst['vm_state']}")

    async def delete_tags(self, req: ApiRequest) -> Response:
        self._tags_allowed(req)
        inst = await self.find_server(req, "os_compute_api:os-server-tags:delete_all")
        self._tag_state(inst)
        await req.run(self.m.set_tags, req.ctx, inst["uuid"], [])
        return Response(status_code=204)

    async def check_tag(self, req: ApiRequest) -> Response:
        self._tags_allowed(req)
        inst = await self.find_server(req, "os_compute_api:os-server-tags:show")
        if req.param("tag") not in inst["tags"]:
            raise NotFound(f"Tag {req.param('tag')} not found")
        return Response(status_code=204)

    async def add_tag(self, req: ApiRequest) -> Response:
        self._tags_allowed(req)
        inst = await self.find_server(req, "os_compute_api:os-server-tags:update")
        tag = schemas.tag(req.param("tag"))
        self._tag_state(inst)
        existed = tag in inst["tags"]
        await req.run(self.m.set_tags, req.ctx, inst["uuid"], None, tag)
        loc = f"{req.base_url}/v2.1/servers/{inst['uuid']}/tags/{tag}"
        return Response(status_code=204 if existed else 201,
                        headers={"Location": url_header(loc)})

    async def delete_tag(self, req: ApiRequest) -> Response:
        self._tags_allowed(req)
        inst = await self.find_server(req, "os_compute_api:os-server-tags:delete")
        self._tag_state(inst)
        await req.run(self.m.set_tags, req.ctx, inst["uuid"], None, None, req.param("tag"))
        return Response(status_code=204)

    async def list_actions(self, req: ApiRequest) -> dict[str, Any]:
        v = ver(req)
        await self.find_server(req, "os_compute_api:os-instance-actions:list", v >= "2.21")
        actions = await req.run(self.m.instance_actions, req.ctx, req.param("server_id"))
        q = req.query
        if v >= "2.58":
            if q.get("changes-since"):
                since = _parse_time(q.get("changes-since"), "changes-since")
                actions = [a for a in actions if a["updated_at"] >= since]
            if q.get("changes-before") and v >= "2.66":
                before = _parse_time(q.get("changes-before"), "changes-before")
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

    async def show_action(self, req: ApiRequest) -> dict[str, Any]:
        v = ver(req)
        await self.find_server(req, "os_compute_api:os-instance-actions:show", v >= "2.21")
        a = await req.run(self.m.instance_action, req.ctx, req.param("server_id"),
                          req.param("request_id"))
        return {"instanceAction": views.instance_action(a, v, True, req.ctx.is_admin)}

    async def _basic_ips(self, req: ApiRequest, rule: str) -> dict[str, list[dict[str, Any]]]:
        inst = await self.find_server(req, rule)
        addrs = (await self._addresses(req, [inst["uuid"]])).get(inst["uuid"], {})
        return {net: [{"version": a["version"], "addr": a["addr"]} for a in entries]
                for net, entries in addrs.items()}

    async def list_ips(self, req: ApiRequest) -> dict[str, Any]:
        return {"addresses": await self._basic_ips(req, "os_compute_api:ips:index")}

    async def show_ips(self, req: ApiRequest) -> dict[str, Any]:
        addrs = await self._basic_ips(req, "os_compute_api:ips:show")
        net = req.param("network")
        if net not in addrs:
            raise NotFound("Instance is not a member of specified network")
        return {net: addrs[net]}

    async def diagnostics(self, req: ApiRequest) -> dict[str, Any]:
        inst = await self.find_server(req, "os_compute_api:os-server-diagnostics")
        if inst["vm_state"] == states.BUILDING or not inst["host"]:
            raise Conflict(f"Cannot 'get_diagnostics' instance {inst['uuid']} while it is in "
                           f"vm_state {inst['vm_state']}")
        diag = await self.call(inst, "get_diagnostics", instance_uuid=inst["uuid"])
        if ver(req) < "2.48":
            return {"cpu0_time": 0, "memory": diag.get("memory_details", {}).get("maximum", 0)}
        # Nova's standard diagnostics model only (drivers may report more, e.g. the accel).
        return {k: v for k, v in diag.items() if k in _DIAGNOSTICS_KEYS}

    async def get_password(self, req: ApiRequest) -> dict[str, Any]:
        inst = await self.find_server(req, "os_compute_api:os-server-password:show")
        # What the guest posted to the metadata service (encrypted by the guest, as in Nova).
        return {"password": str((inst.get("system_metadata") or {}).get("password") or "")}

    async def clear_password(self, req: ApiRequest) -> Response:
        inst = await self.find_server(req, "os_compute_api:os-server-password:clear")
        await req.run(self.m.update_system_metadata, inst["uuid"], password="")
        return Response(status_code=204)

    async def remote_console(self, req: ApiRequest) -> dict[str, Any]:
        if ver(req) < "2.6":
            raise NotFound("The resource could not be found.")
        inst = await self.find_server(req, "os_compute_api:os-remote-consoles")
        body = await req.json()
        rc = schemas.obj(body, "remote_console")
        protocol = rc.get("protocol")
        ctype = rc.get("type")
        valid = {"vnc": ("novnc", "xvpvnc"), "spice": ("spice-html5",),
                 "rdp": ("rdp-html5",), "serial": ("serial",), "mks": ("webmks",)}
        if protocol not in valid or ctype not in valid[protocol]:
            raise ValidationError("Invalid input for field/attribute remote_console.")
        url = await self.actions.new_console_url(req, inst, ctype)
        return {"remote_console": {"protocol": protocol, "type": ctype, "url": url}}

    async def list_interfaces(self, req: ApiRequest) -> dict[str, Any]:
        inst = await self.find_server(req, "os_compute_api:os-attach-interfaces:list")
        if self.network is None:
            return {"interfaceAttachments": []}
        ports = await req.run(self.network.interfaces, inst["uuid"])
        return {"interfaceAttachments": [self._iface(req, p) for p in ports]}

    def _iface(self, req: ApiRequest, port: dict[str, Any]) -> dict[str, Any]:
        from onestack.compute.network import interface_view

        doc = interface_view(port)
        if ver(req) >= "2.70":
            doc["tag"] = None
        return doc

    async def show_interface(self, req: ApiRequest) -> dict[str, Any]:
        inst = await self.find_server(req, "os_compute_api:os-attach-interfaces:show")
        port_id = req.param("port_id")
        ports = ([] if self.network is None
                 else await req.run(self.network.interfaces, inst["uuid"]))
        for p in ports:
            if p["id"] == port_id:
                return {"interfaceAttachment": self._iface(req, p)}
        raise NotFound(f"Port {port_id} is not attached")

    def _iface_state(self, inst: InstanceDict, action: str) -> None:
        if inst["locked"]:
            raise Conflict(f"Instance {inst['uuid']} is locked")
        if inst["vm_state"] not in (states.ACTIVE, states.PAUSED, states.STOPPED) or \
                inst["task_state"] is not None:
            raise Conflict(f"Cannot '{action}' instance {inst['uuid']} while it is in "
                           f"vm_state {inst['vm_state']}")

    async def attach_interface(self, req: ApiRequest) -> dict[str, Any]:
        inst = await self.find_server(req, "os_compute_api:os-attach-interfaces:create")
        if self.network is None:
            raise BadRequest("Network service is not available in this cloud.")
        body = await req.json()
        att = schemas.obj(body, "interfaceAttachment") if isinstance(body, dict) and \
            "interfaceAttachment" in body else {}
        schemas.only(att, {"net_id", "port_id", "fixed_ips", "tag"}, "interfaceAttachment")
        net_id = att.get("net_id")
        port_id = att.get("port_id")
        fixed = att.get("fixed_ips")
        for key, val in (("net_id", net_id), ("port_id", port_id)):
            if val is not None and (not isinstance(val, str) or not schemas.is_uuid(val)):
                raise ValidationError(f"Invalid input for field/attribute {key}.")
        if fixed is not None:
            if not isinstance(fixed, list) or len(fixed) != 1 or not isinstance(
                    fixed[0], dict) or not isinstance(fixed[0].get("ip_address"), str):
                raise ValidationError("Invalid input for field/attribute fixed_ips.")
            schemas.ipv4(fixed[0]["ip_address"], "ip_address") if ":" not in \
                fixed[0]["ip_address"] else schemas.ipv6(fixed[0]["ip_address"], "ip_address")
        if net_id and port_id:
            raise BadRequest("Must not input both network_id and port_id")
        if fixed and not net_id:
            raise BadRequest("Must input network_id when request IP address")
        self._iface_state(inst, "attach_interface")
        if net_id and not req.ctx.is_admin and await req.run(self.network.is_external,
                                                             req.ctx, net_id):
            self._external_attach(req, net_id)
        sg_ids = None
        names = inst["system_metadata"].get("security_groups") or []
        if not port_id:
            ctx = req.ctx if req.ctx.project_id == inst["project_id"] else \
                self.project_ctx(inst["project_id"])
            sg_ids = await req.run(self._sg_ids_quiet, ctx, names or ["default"])
        else:
            ctx = req.ctx
        port = await req.run(self.network.attach_interface, ctx, inst["uuid"], net_id,
                             port_id, fixed, inst["host"], sg_ids)
        nics = await self.refresh_nics(req, inst)
        if inst["host"]:
            # The guest gets the NIC now (hot-plug) or at its next start; a failure
            # undoes the port's attachment.
            nic = next((n for n in nics if n.get("id") == port["id"]), {"id": port["id"]})
            try:
                res = await self.call(inst, "attach_interface", timeout=NIC_TIMEOUT,
                                       instance_uuid=inst["uuid"], port=nic)
            except Conflict as exc:
                res = {"error": exc.message}
            if isinstance(res, dict) and res.get("error"):
                await req.run(self.network.detach_interface, inst["uuid"], port["id"],
                              bool(port_id))
                await self.refresh_nics(req, inst)
                raise Conflict(f"Failed to attach network adapter device to "
                               f"{inst['uuid']}: {res['error']}")
        await req.run(self.m.record_action, req.ctx, inst["uuid"], "attach_interface")
        if port_id:
            keep = self._preserved(inst) + [port["id"]]
            await req.run(self.m.update_system_metadata, inst["uuid"], preserve_ports=keep)
        return {"interfaceAttachment": self._iface(req, port)}

    @staticmethod
    def project_ctx(project_id: str) -> Any:
        ctx = RequestContext.admin()
        ctx.project_id = project_id
        return ctx

    def _sg_ids_quiet(self, ctx: Any, names: list[str]) -> list[str] | None:
        assert self.network is not None
        try:
            return list(self.network.security_group_ids(ctx, names))
        except APIError:
            return None

    async def refresh_nics(self, req: ApiRequest, inst: InstanceDict) -> list[dict[str, Any]]:
        """Refresh the instance's port cache (``system_metadata.networks``, what the
        driver and the metadata service read) after an interface change; returns it."""
        if self.network is None:
            return []
        nics: list[dict[str, Any]] = await req.run(self.network.network_info, inst["uuid"])
        await req.run(self.m.update_system_metadata, inst["uuid"], networks=nics,
                      port_cache=True)
        return nics

    async def detach_interface(self, req: ApiRequest) -> Response:
        inst = await self.find_server(req, "os_compute_api:os-attach-interfaces:delete")
        port_id = req.param("port_id")
        if self.network is None:
            raise NotFound(f"Port {port_id} is not attached")
        self._iface_state(inst, "detach_interface")
        attached = {p["id"]: p for p in await req.run(self.network.interfaces, inst["uuid"])}
        if port_id not in attached:
            raise NotFound(f"Port {port_id} is not attached")
        if inst["host"]:
            # The guest lets go of the NIC first; if it does not, the port stays attached.
            nics = inst["system_metadata"].get("networks") or []
            nic = next((n for n in nics if n.get("id") == port_id), {"id": port_id})
            try:
                res = await self.call(inst, "detach_interface", timeout=NIC_TIMEOUT,
                                       instance_uuid=inst["uuid"], port=nic)
            except Conflict as exc:
                res = {"error": exc.message}
            if isinstance(res, dict) and res.get("error"):
                raise Conflict(f"Failed to detach network adapter device from "
                               f"{inst['uuid']}: {res['error']}")
        preserve = self._preserved(inst)
        await req.run(self.network.detach_interface, inst["uuid"], port_id,
                      port_id in preserve)
        await req.run(self.m.record_action, req.ctx, inst["uuid"], "detach_interface")
        if port_id in preserve:
            await req.run(self.m.update_system_metadata, inst["uuid"],
                          preserve_ports=[p for p in preserve if p != port_id])
        await self.refresh_nics(req, inst)
        return Response(status_code=202)

    async def server_sgs(self, req: ApiRequest) -> dict[str, Any]:
        inst = await self.find_server(req, "os_compute_api:os-security-groups:list")
        if self.network is not None:
            groups = await req.run(self.network.security_groups_of, inst["uuid"])
            if groups:
                known = {g["id"]: g for g in groups}
                return {"security_groups": sorted(
                    (nova_group(g, known) for g in groups),
                    key=lambda g: (g["tenant_id"], g["name"]))}
        return {"security_groups": [
            {"name": n, "id": new_uuid(), "description": "", "rules": [],
             "tenant_id": inst["project_id"]}
            for n in inst["system_metadata"].get("security_groups") or []]}

    async def server_migrations(self, req: ApiRequest) -> dict[str, Any]:
        inst = await self.find_server(req, "os_compute_api:servers:migrations:index")
        migs = await req.run(self.m.list_migrations, inst["uuid"])
        live = [mg for mg in migs if mg["migration_type"] == "live-migration"
                and mg["status"] in ("queued", "preparing", "running", "post-migrating")]
        return {"migrations": [views.migration(mg, ver(req), req.base_url) for mg in live]}

    async def external_events(self, req: ApiRequest) -> Response:
        req.enforce("os_compute_api:os-server-external-events:create", self.tgt(req))
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
                    await self.volume_routes.volume_extended(ev["tag"], [inst["uuid"]],
                                                             int(vol["size"]))
            out.append(doc)
        return FastJSON({"events": out}, status_code=200 if found else 404)

    async def topology(self, req: ApiRequest) -> dict[str, Any]:
        if ver(req) < "2.78":
            raise NotFound("The resource could not be found.")
        await self.find_server(req, "compute:server:topology:index")
        return {"nodes": [], "pagesize_kb": None}


_TASK_FOR_STATUS = {
    "REBOOT": ["rebooting", "reboot_pending", "reboot_started"],
    "HARD_REBOOT": ["rebooting_hard", "reboot_pending_hard", "reboot_started_hard"],
    "RESIZE": ["resize_prep", "resize_migrating", "resize_migrated", "resize_finish"],
    "MIGRATING": ["migrating"],
    "REBUILD": ["rebuilding", "rebuild_block_device_mapping", "rebuild_spawning"],
}

