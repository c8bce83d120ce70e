"""What the compute API's route handlers share: ``ServerHost``, the typed face of the
``ComputeAPI`` that builds them (its collaborators and the request helpers every server route
uses), and ``ResourceHandler``, the base class of one resource's routes (``api_servers.py``,
``api_boot.py``, ``api_server_meta.py``, ``api_interfaces.py``, ``api_server_info.py``,
``api_actions.py``, ``api_flavors.py``, ``api_keypairs.py``, ``api_quotas.py``,
``api_hosts.py``, ``api_groups.py``, ``api_usage.py``, ``api_images.py``,
``network_proxies.py``).

The other services are reached only through their seams: ``ComputeImages``
(``compute/images.py``), ``ComputeNetwork`` (``compute/network.py``) and ``ComputeVolumes``
(``compute/volumes.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from onestack.api.app import ApiRequest
from onestack.bus.base import Bus
from onestack.common.context import RequestContext
from onestack.common.errors import APIError, BadRequest, Conflict, Forbidden
from onestack.compute.images import ComputeImages, image_dropper
from onestack.compute.manager import ComputeManager, InstanceDict
from onestack.compute.network import ComputeNetwork
from onestack.compute.volumes import ComputeVolumes

if TYPE_CHECKING:
    from onestack.console.tokens import ConsoleTokenStore

class VolumeEvents(Protocol):
    """What server routes ask of the volume attachment routes (``api_volumes.py``)."""

    async def snapshot_server(self, req: ApiRequest, inst: InstanceDict, name: str,
                              meta: dict[str, str]) -> str:
        """Snapshot a volume-backed server: its volumes' snapshots and an image naming
        them; returns the image id."""
        ...

    async def volume_extended(self, volume_id: str, servers: list[str],
                              new_size: int) -> None:
        """A volume the servers use has grown (Cinder's ``volume-extended`` event)."""
        ...


class ServerHost(Protocol):
    """What route handlers need from the compute API that builds them (``ComputeAPI``)."""

    m: ComputeManager
    bus: Bus
    images: ComputeImages | None
    network: ComputeNetwork | None
    volumes: ComputeVolumes | None
    volume_routes: VolumeEvents | None
    console_tokens: ConsoleTokenStore | None
    console_url: str

    async def find_server(self, req: ApiRequest, rule: str | None = None,
                          deleted_ok: bool = False) -> InstanceDict: ...

    async def cast(self, inst: InstanceDict, method: str, **kwargs: Any) -> None: ...

    async def call(self, inst: InstanceDict, method: str, timeout: float = 30,
                   **kwargs: Any) -> Any: ...

    async def action_view(self, req: ApiRequest, inst: InstanceDict,
                          rebuild: bool = False) -> dict[str, Any]: ...

    def server_view(self, req: ApiRequest, inst: InstanceDict,
                    host_status: str | None = None, group: str | None = None,
                    addresses: dict[str, Any] | None = None) -> dict[str, Any]: ...

    async def addresses(self, req: ApiRequest, uuids: list[str]) -> dict[str, Any]: ...

    def page_addresses(self, insts: list[InstanceDict]) -> dict[str, Any]: ...

    def image_info(self, req: ApiRequest, image_id: str) -> dict[str, Any]: ...

    async def set_disk_config(self, req: ApiRequest, inst: InstanceDict,
                              args: Any) -> None: ...

    async def refresh_nics(self, req: ApiRequest,
                           inst: InstanceDict) -> list[dict[str, Any]]: ...


class ResourceHandler:
    """Base of one resource's route handlers; each declares its routes with ``@serves``
    (``api/routes.py``) and ``ComputeAPI`` adds them."""

    def __init__(self, api: ServerHost) -> None:
        self.api = api

    # The collaborators, read from the API (some are set after it is built).
    @property
    def m(self) -> ComputeManager:
        return self.api.m

    @property
    def bus(self) -> Bus:
        return self.api.bus

    @property
    def images(self) -> ComputeImages | None:
        return self.api.images

    @property
    def network(self) -> ComputeNetwork | None:
        return self.api.network

    @property
    def volumes(self) -> ComputeVolumes | None:
        return self.api.volumes

    async def find_server(self, req: ApiRequest, rule: str | None = None,
                          deleted_ok: bool = False) -> InstanceDict:
        return await self.api.find_server(req, rule, deleted_ok)

    # Work several handlers share.
    async def simple(self, req: ApiRequest, inst: InstanceDict, action: str, task: str,
                     method: str, record: str | None = None, **kwargs: Any) -> None:
        """Begin ``task`` of ``action`` (409 unless the server allows it) and cast
        ``method`` to its host agent."""
        inst = await req.run(self.m.begin_task, req.ctx, inst["uuid"], action, task,
                             None, (None,), True, record)
        await self.api.cast(inst, method, instance_uuid=inst["uuid"], **kwargs)

    async def record_done(self, req: ApiRequest, inst: InstanceDict, action: str) -> None:
        """An action done at once (a device attached or detached): the instance action and
        its successful compute event (Nova's ``compute_<action>``, which Tempest's waiters
        read)."""
        await req.run(self.m.record_action, req.ctx, inst["uuid"], action)
        await req.run(self.m.record_event, inst["uuid"], f"compute_{action}", inst["host"],
                      None)

    def new_image(self, req: ApiRequest, inst: InstanceDict, name: str,
                  meta: dict[str, str], image_type: str) -> str:
        """A queued image of the server (snapshot, backup, shelve) in its project, with the
        properties of the image it was booted from; 400 when the image service refuses."""
        if self.images is None:
            raise Conflict("The image service is not available.")
        ctx = req.ctx
        props = {k: str(val) for k, val in (inst["system_metadata"].get("image_properties")
                                            or {}).items()
                 if k not in ("image_type", "instance_uuid", "base_image_ref")}
        props.update({"image_type": image_type, "instance_uuid": inst["uuid"],
                      "base_image_ref": inst["image_ref"] or "", "user_id": ctx.user_id or "",
                      "owner_user_name": ctx.user_name or "",
                      "owner_project_name": ctx.project_name or ""})
        props.update(meta)
        body: dict[str, Any] = {"name": name, "disk_format": "qcow2",
                                "container_format": "bare", "visibility": "private", **props}
        admin = RequestContext.admin()
        admin.project_id = inst["project_id"]
        body["owner"] = inst["project_id"]
        try:
            info = self.images.create(admin, body)
        except APIError as exc:
            raise BadRequest(f"Cannot create the image: {exc.message}") from None
        return str(info.id)

    def drop_image(self, image_id: str) -> None:
        """Delete an image made for the server (best effort, as the agents drop theirs)."""
        if self.images is not None:
            image_dropper(self.images)(image_id)


def tgt(req: ApiRequest, project_id: str | None = None,
        user_id: str | None = None) -> dict[str, Any]:
    """The policy target of a request about ``project_id`` (default: the caller's)."""
    return {"project_id": project_id or req.ctx.project_id or "",
            "user_id": user_id or req.ctx.user_id or ""}


def project_ctx(project_id: str) -> RequestContext:
    """An admin context acting in ``project_id`` (ports made for another project's server)."""
    ctx = RequestContext.admin()
    ctx.project_id = project_id
    return ctx


def preserved(inst: InstanceDict) -> list[str]:
    """The user's ports the server was given (kept, only detached, when it goes)."""
    return list(inst["system_metadata"].get("preserve_ports") or [])


def external_attach(req: ApiRequest, net_id: str) -> None:
    """Nova's ``network:attach_external_network`` (admins): 403 otherwise."""
    if not req.allowed("network:attach_external_network", tgt(req)):
        raise Forbidden(f"It is not allowed to create an interface on external network "
                        f"{net_id}")
