"""Compute API (Nova v2.1 + microversions): the composition of the compute service.

``ComputeAPI`` builds one route handler per resource (``api_servers.py``, ``api_boot.py``,
``api_server_meta.py``, ``api_server_info.py``, ``api_interfaces.py``, ``api_actions.py``,
``api_flavors.py`` ... ``api_images.py``, ``network_proxies.py``, ``api_volumes.py``,
``api_volume_proxy.py``) and holds what they share: the manager, the bus, the seams to the
image, network and volume services, and the request helpers of every server route (find the
server, cast or call its host agent, the server document). Routes parse and validate, call
``ComputeManager`` (which owns every state change) and shape the result with ``views``; work
on guests never happens here: the API records intent and casts to the scheduler (new servers,
moves) or to the instance's host agent (``compute.<host>``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from starlette.responses import Response

from onestack.api.app import ApiRequest, FastJSON, Service, add_declared, route
from onestack.api.policy import Policy
from onestack.api.routes import serves
from onestack.api.versions import healthcheck
from onestack.bus.base import Bus, BusError, NoConsumer
from onestack.common.errors import APIError, BadRequest, Conflict, ValidationError
from onestack.compute import views
from onestack.compute.api_actions import ServerActions
from onestack.compute.api_boot import Boot
from onestack.compute.api_consoles import Consoles
from onestack.compute.api_flavors import Flavors
from onestack.compute.api_groups import ServerGroups
from onestack.compute.api_hosts import Hosts
from onestack.compute.api_images import ImageProxy
from onestack.compute.api_interfaces import Interfaces
from onestack.compute.api_keypairs import Keypairs
from onestack.compute.api_quotas import Quotas
from onestack.compute.api_server_info import ServerInfo
from onestack.compute.api_server_meta import ServerMetadata
from onestack.compute.api_server_moves import ServerMoves
from onestack.compute.api_servers import Servers
from onestack.compute.api_usage import Usage
from onestack.compute.api_volume_proxy import VolumeProxyRoutes
from onestack.compute.api_volumes import VolumeAttachmentRoutes
from onestack.compute.images import ComputeImages
from onestack.compute.manager import ComputeManager, InstanceDict
from onestack.compute.microversions import MAX_VERSION, MIN_VERSION, url_project, ver
from onestack.compute.network import ComputeNetwork
from onestack.compute.network_proxies import NetworkProxyRoutes
from onestack.compute.policies import RULES
from onestack.compute.resource_base import ResourceHandler, tgt
from onestack.compute.volumes import ComputeVolumes
from onestack.console.tokens import ConsoleTokenStore

LOG = logging.getLogger(__name__)

FAULT_KINDS = {400: "badRequest", 401: "unauthorized", 403: "forbidden", 404: "itemNotFound",
               405: "badMethod", 406: "HTTPNotAcceptable", 409: "conflictingRequest",
               413: "overLimit", 415: "badMediaType", 429: "overLimit",
               501: "notImplemented", 503: "serviceUnavailable"}
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






class ComputeAPI:
    """Builds the compute service: one handler per resource (each registering its own
    routes), bound to the manager, the bus and the other services' seams; and the request
    helpers every server route shares (``ServerHost`` in ``resource_base.py``)."""

    def __init__(self, manager: ComputeManager, bus: Bus, policy: Policy, auth_uri: str,
                 images: ComputeImages | None = None,
                 console_url: str = "http://127.0.0.1:6080",
                 network: ComputeNetwork | None = None) -> None:
        self.m = manager
        self.bus = bus
        self.images = images
        #: Seam for the network service (Neutron): None means no networking, so only
        #: ``networks: "none"``/``"auto"`` (or omitted) are accepted.
        self.network = network
        #: Seam for the block-storage service (Cinder, ``compute.volumes``); None: no
        #: volumes (attaching one is refused).
        self.volumes: ComputeVolumes | None = None
        self.console_url = console_url
        #: Console token store (``onestack.console.tokens``); None: no remote consoles.
        self.console_tokens: ConsoleTokenStore | None = None
        #: Volume attachment routes (``compute/api_volumes.py``, registered by
        #: ``add_volume_routes``); also where the volume service's events arrive.
        self.volume_routes: VolumeAttachmentRoutes | None = None
        self.service = Service(name="compute", routes=[], fault=nova_fault, policy=policy,
                               auth_uri=auth_uri, request_check=check_url_project)
        self._add_routes()
        #: Server actions (``POST /servers/{id}/action``, ``compute/api_actions.py``); the
        #: handlers of actions that belong to another concept are its providers.
        self.actions = ServerActions(self)
        interfaces = Interfaces(self)
        consoles = Consoles(self)
        network_proxies = NetworkProxyRoutes(self)
        self.actions.providers += [ServerMoves(self), interfaces, consoles,
                                   network_proxies]
        #: One handler per resource, each declaring its routes (``@serves``).
        self.resources: list[ResourceHandler] = [
            Servers(self), Boot(self), self.actions, ServerMetadata(self), ServerInfo(self),
            interfaces, consoles, *(cls(self) for cls in (
                Flavors, Keypairs, Quotas, Hosts, ServerGroups, Usage, ImageProxy)),
            network_proxies]
        add_declared(self.service, *self.resources)

    def add_volume_routes(self) -> None:
        """Volume attachments (``compute/api_volumes.py``) and Nova's volume proxy
        (``compute/api_volume_proxy.py``), once ``volumes`` is set."""
        self.volume_routes = VolumeAttachmentRoutes(self)
        add_declared(self.service, self.volume_routes, VolumeProxyRoutes(self))

    # ------------------------------------------------------------------ helpers
    def _r(self, path: str, handler: Callable[..., Any], methods: list[str],
           public: bool = False) -> None:
        self.service.routes.append(route(self.service, path, handler, methods, public))

    async def find_server(self, req: ApiRequest, rule: str | None = None,
                          deleted_ok: bool = False) -> InstanceDict:
        """The server of the URL (another project's is not found for a non-admin: 404),
        then ``rule`` checked against it (403), as Nova orders them. ``deleted_ok``: a deleted
        server is found too (instance actions from 2.21)."""
        inst = await self.m.db.run(self.m.get_instance, req.ctx, req.param("server_id"),
                                   deleted_ok)
        if rule is not None:
            req.enforce(rule, tgt(req, inst["project_id"], inst["user_id"]))
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
        addrs = (await self.addresses(req, [inst["uuid"]])).get(inst["uuid"], {})
        if v < "2.75":
            # Nova's ``extend_address=False``: no OS-EXT-IPS(-MAC) keys (Tempest's schema
            # of these responses refuses them).
            addrs = views.basic_addresses(addrs)
        doc = self.server_view(req, inst, None, group, addrs)
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

    def server_view(self, req: ApiRequest, inst: InstanceDict,
                     host_status: str | None = None, group: str | None = None,
                     addresses: dict[str, Any] | None = None) -> dict[str, Any]:
        return views.server(inst, req.base_url, ver(req), req.ctx.is_admin, host_status,
                            group, addresses)

    async def addresses(self, req: ApiRequest, uuids: list[str]) -> dict[str, Any]:
        """``addresses`` of the servers, from the network service in one batch."""
        if self.network is None or not uuids:
            return {}
        return dict(await req.run(self.network.addresses, uuids))

    def page_addresses(self, insts: list[InstanceDict]) -> dict[str, Any]:
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

    # ------------------------------------------------------------------ routes
    def _add_routes(self) -> None:
        add_declared(self.service, self)
        self._r("/healthcheck", healthcheck, ["GET"], public=True)

    # ------------------------------------------------------------------ versions
    def _version_doc(self, base: str) -> dict[str, Any]:
        return {"id": "v2.1", "status": "CURRENT", "version": MAX_VERSION,
                "min_version": MIN_VERSION, "updated": VERSION_UPDATED,
                "links": [{"rel": "self", "href": f"{base}/v2.1/"},
                          {"rel": "describedby", "type": "text/html",
                           "href": "http://docs.openstack.org/"}],
                "media-types": [{"base": "application/json",
                                 "type": "application/vnd.openstack.compute+json;version=2.1"}]}

    @serves("GET", "/", public=True)
    async def versions(self, req: ApiRequest) -> Response:
        base = req.base_url
        v2 = {"id": "v2.0", "status": "SUPPORTED", "version": "", "min_version": "",
              "updated": "2011-01-21T11:33:21Z",
              "links": [{"rel": "self", "href": f"{base}/v2/"}]}
        doc = self._version_doc(base)
        doc.pop("media-types")
        doc["links"] = doc["links"][:1]
        return FastJSON({"versions": [v2, doc]}, status_code=300 if False else 200)

    @serves("GET", "/v2", public=True)
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

    @serves("GET", "/v2.1", public=True)
    async def version(self, req: ApiRequest) -> dict[str, Any]:
        return {"version": self._version_doc(req.base_url)}

    # ------------------------------------------------------------------ shared by handlers
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

    async def set_disk_config(self, req: ApiRequest, inst: InstanceDict, args: Any) -> None:
        """``OS-DCF:diskConfig`` of an update, rebuild or resize (Nova's
        ``auto_disk_config``): validated, then recorded."""
        if not isinstance(args, dict) or "OS-DCF:diskConfig" not in args:
            return
        value = args["OS-DCF:diskConfig"]
        if value not in ("AUTO", "MANUAL"):
            raise ValidationError("Invalid input for field/attribute OS-DCF:diskConfig.")
        await req.run(self.m.update_system_metadata, inst["uuid"], disk_config=value)

    async def refresh_nics(self, req: ApiRequest, inst: InstanceDict) -> list[dict[str, Any]]:
        """Refresh the instance's port cache (``system_metadata.networks``, what the
        driver and the metadata service read) after an interface change; returns it."""
        if self.network is None:
            return []
        nics: list[dict[str, Any]] = await req.run(
            self.network.network_info, inst["uuid"],
            inst["system_metadata"].get("nic_order"))
        await req.run(self.m.update_system_metadata, inst["uuid"], networks=nics,
                      port_cache=True)
        return nics
