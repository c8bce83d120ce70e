"""Compute API: server actions (``POST /servers/{id}/action``: reboot, stop/start, pause,
suspend, rescue, lock, resize/migrate, rebuild, shelve, images and backups, security groups,
fixed IPs, consoles) and console tokens.

``ServerActions`` is built by ``ComputeAPI`` (``api.py``) and reaches the manager, the bus
and the other services' seams through it (typed by ``ActionHost``); like every route there
it records intent through ``ComputeManager`` and casts the work to the instance's host
agent.
"""

from __future__ import annotations

import logging
import secrets
import string
from typing import TYPE_CHECKING, Any, Protocol

from starlette.responses import Response

from onestack.api.app import ApiRequest, FastJSON
from onestack.bus.base import BusError, RemoteError
from onestack.common.context import RequestContext
from onestack.common.errors import (
    APIError,
    BadRequest,
    Conflict,
    NotFound,
    Unauthorized,
    ValidationError,
)
from onestack.compute import block_devices, schemas, states
from onestack.compute.image_upload import image_dropper
from onestack.compute.microversions import APIVersion, v_ge, ver
from onestack.compute.policies import ACTION_RULES

if TYPE_CHECKING:
    from onestack.compute.manager import ComputeManager, InstanceDict

LOG = logging.getLogger(__name__)


def admin_password() -> str:
    """A new server's (or a rebuilt or rescued one's) ``adminPass`` (Nova: 12 characters)."""
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(12))


class ActionHost(Protocol):
    """What the action handlers need from the compute API that builds them (``ComputeAPI``):
    its collaborators and the request helpers every server route shares."""

    m: ComputeManager
    bus: Any
    images: Any
    network: Any
    volumes: Any
    volume_routes: Any
    console_tokens: Any
    console_url: str

    @staticmethod
    def tgt(req: ApiRequest, project_id: str | None = None,
            user_id: str | None = None) -> dict[str, Any]: ...

    @staticmethod
    def project_ctx(project_id: str) -> Any: ...

    async def find_server(self, req: ApiRequest, rule: str | None = None,
                          deleted_ok: bool = False) -> InstanceDict: ...

    async def cast(self, inst: InstanceDict, method: str, **kwargs: Any) -> None: ...

    async def call(self, inst: InstanceDict, method: str, timeout: float = 30,
                   **kwargs: Any) -> Any: ...

    async def action_view(self, req: ApiRequest, inst: InstanceDict,
                          rebuild: bool = False) -> dict[str, Any]: ...

    def image_info(self, req: ApiRequest, image_id: str) -> dict[str, Any]: ...

    async def set_disk_config(self, req: ApiRequest, inst: InstanceDict,
                              args: Any) -> None: ...

    async def refresh_nics(self, req: ApiRequest,
                           inst: InstanceDict) -> list[dict[str, Any]]: ...


class ServerActions:
    """The server action handlers (``a_<action>``) and their dispatcher."""

    def __init__(self, api: ActionHost) -> None:
        self.api = api

    # The collaborators the handlers use, read from the API (set up after it is built).
    @property
    def m(self) -> ComputeManager:
        return self.api.m

    @property
    def bus(self) -> Any:
        return self.api.bus

    @property
    def images(self) -> Any:
        return self.api.images

    @property
    def network(self) -> Any:
        return self.api.network

    @property
    def volumes(self) -> Any:
        return self.api.volumes

    @property
    def volume_routes(self) -> Any:
        return self.api.volume_routes

    @property
    def console_tokens(self) -> Any:
        return self.api.console_tokens

    @property
    def console_url(self) -> str:
        return self.api.console_url

    async def server_action(self, req: ApiRequest) -> Response:
        body = await req.json()
        if not isinstance(body, dict) or len(body) != 1:
            raise BadRequest("There is no such action: " + (
                ",".join(body) if isinstance(body, dict) else str(body)))
        (action, args), = body.items()
        handler = _ACTIONS.get(action)
        if handler is None:
            raise BadRequest(f"There is no such action: {action}")
        inst = await self.api.find_server(req, ACTION_RULES[action])
        # Floating IP actions are Nova's network proxies (``network_proxies.py``).
        fn = getattr(self, handler, None) or getattr(self.api, handler)
        result = await fn(req, inst, args)
        if isinstance(result, Response):
            return result
        if result is None:
            return Response(status_code=202)
        return FastJSON(result, status_code=200 if action in _OK_200 else 202)

    async def _simple(self, req: ApiRequest, inst: InstanceDict, action: str, task: str,
                      method: str, record: str | None = None, **kwargs: Any) -> None:
        inst = await req.run(self.m.begin_task, req.ctx, inst["uuid"], action, task,
                             None, (None,), True, record)
        await self.api.cast(inst, method, instance_uuid=inst["uuid"], **kwargs)

    async def a_reboot(self, req: ApiRequest, inst: InstanceDict, args: Any) -> None:
        if not isinstance(args, dict) or str(args.get("type", "")).upper() not in ("SOFT",
                                                                                  "HARD"):
            raise ValidationError("Invalid input for field/attribute type.")
        hard = str(args["type"]).upper() == "HARD"
        vms = states.ALLOW_HARD_REBOOT if hard else states.ALLOW_SOFT_REBOOT
        tasks: tuple[str | None, ...] = (None, "rebooting", "reboot_pending",
                                         "reboot_started") if hard else (None,)
        inst = await req.run(self.m.begin_task, req.ctx, inst["uuid"], "reboot",
                             "rebooting_hard" if hard else "rebooting", vms, tasks, True)
        await self.api.cast(inst, "reboot_instance", instance_uuid=inst["uuid"], hard=hard)

    async def a_stop(self, req: ApiRequest, inst: InstanceDict, args: Any) -> None:
        await self._simple(req, inst, "stop", "powering-off", "stop_instance")

    async def a_start(self, req: ApiRequest, inst: InstanceDict, args: Any) -> None:
        await self._simple(req, inst, "start", "powering-on", "start_instance")

    async def a_pause(self, req: ApiRequest, inst: InstanceDict, args: Any) -> None:
        await self._simple(req, inst, "pause", "pausing", "pause_instance")

    async def a_unpause(self, req: ApiRequest, inst: InstanceDict, args: Any) -> None:
        await self._simple(req, inst, "unpause", "unpausing", "unpause_instance")

    async def a_suspend(self, req: ApiRequest, inst: InstanceDict, args: Any) -> None:
        await self._simple(req, inst, "suspend", "suspending", "suspend_instance")

    async def a_resume(self, req: ApiRequest, inst: InstanceDict, args: Any) -> None:
        await self._simple(req, inst, "resume", "resuming", "resume_instance")

    async def a_rescue(self, req: ApiRequest, inst: InstanceDict, args: Any) -> dict[str, Any]:
        args = args or {}
        if not isinstance(args, dict):
            raise ValidationError("Invalid input for field/attribute rescue.")
        rescue_image = args.get("rescue_image_ref")
        props = dict(inst["system_metadata"].get("image_properties") or {})
        if rescue_image is not None:
            props = (await req.run(self.api.image_info, req, schemas.ref_id(
                rescue_image, "rescue_image_ref")))["properties"]
        # Nova: a volume-backed server is rescued from 2.87 only, with a rescue image that
        # says where its disk goes (stable device rescue: hw_rescue_bus/hw_rescue_device).
        if block_devices.root(inst) is not None and not (
                v_ge(req, "2.87") and "hw_rescue_bus" in props
                and "hw_rescue_device" in props):
            raise BadRequest(f"Instance {inst['uuid']} cannot be rescued: Cannot rescue a "
                             "volume-backed instance")
        password = args.get("adminPass") or admin_password()
        await self._simple(req, inst, "rescue", "rescuing", "rescue_instance",
                           rescue_image=rescue_image)
        return {"adminPass": password}

    async def a_unrescue(self, req: ApiRequest, inst: InstanceDict, args: Any) -> None:
        await self._simple(req, inst, "unrescue", "unrescuing", "unrescue_instance")

    async def a_lock(self, req: ApiRequest, inst: InstanceDict, args: Any) -> None:
        reason = None
        if isinstance(args, dict) and "locked_reason" in args:
            if ver(req) < "2.73":
                raise ValidationError("Invalid input for field/attribute lock. Additional "
                                      "properties are not allowed")
            reason = args["locked_reason"]
            if reason is not None and (not isinstance(reason, str) or len(reason) > 255):
                raise ValidationError("Invalid input for field/attribute locked_reason.")
        await req.run(self.m.lock, req.ctx, inst["uuid"], reason)

    async def a_unlock(self, req: ApiRequest, inst: InstanceDict, args: Any) -> None:
        await req.run(self.m.unlock, req.ctx, inst["uuid"])

    async def a_reset_state(self, req: ApiRequest, inst: InstanceDict, args: Any) -> None:
        st = args.get("state") if isinstance(args, dict) else None
        if st not in ("active", "error"):
            raise ValidationError("Invalid input for field/attribute state.")
        await req.run(self.m.reset_state, req.ctx, inst["uuid"], st)

    async def a_reset_network(self, req: ApiRequest, inst: InstanceDict, args: Any) -> None:
        """Nothing to inject: the network service configures guests (authorized above)."""

    async def a_console_output(self, req: ApiRequest, inst: InstanceDict,
                               args: Any) -> dict[str, Any]:
        length = None
        if isinstance(args, dict) and args.get("length") is not None:
            length = schemas.integer(args["length"], "length", -1)
            if length == -1:
                length = None
        if inst["vm_state"] in (states.BUILDING,) or not inst["host"]:
            raise Conflict(f"Instance {inst['uuid']} is not ready yet.")
        out = await self.api.call(inst, "get_console_output", instance_uuid=inst["uuid"],
                               length=length)
        return {"output": out}

    async def a_create_image(self, req: ApiRequest, inst: InstanceDict,
                             args: Any) -> Response:
        if not isinstance(args, dict):
            raise ValidationError("Invalid input for field/attribute createImage.")
        name = schemas.name(args.get("name"), "name")
        meta = schemas.metadata(args.get("metadata", {}))
        if self.images is None:
            raise Conflict("The image service is not available.")
        if inst["vm_state"] not in states.ACTION_VM_STATES["createImage"]:
            raise Conflict(f"Cannot 'createImage' instance {inst['uuid']} while it is in "
                           f"vm_state {inst['vm_state']}")
        if any(b.get("boot_index") == 0 for b in block_devices.of(inst)):
            image_id = await self.volume_routes.snapshot_server(req, inst, name, meta)
            if ver(req) >= "2.45":
                return FastJSON({"image_id": image_id}, status_code=202)
            return Response(status_code=202,
                            headers={"Location": f"{req.base_url}/images/{image_id}"})
        image_id = await req.run(self.new_image, req, inst, name, meta, "snapshot")
        try:
            inst = await req.run(self.m.begin_task, req.ctx, inst["uuid"], "createImage",
                                 "image_snapshot")
        except APIError:
            await req.run(self._drop_image, image_id)
            raise
        await self.api.cast(inst, "snapshot_instance", instance_uuid=inst["uuid"],
                         image_id=image_id)
        location = f"{req.base_url}/images/{image_id}"
        if ver(req) >= "2.45":
            return FastJSON({"image_id": image_id}, status_code=202)
        return Response(status_code=202, headers={"Location": location})

    async def a_create_backup(self, req: ApiRequest, inst: InstanceDict,
                              args: Any) -> Response:
        if not isinstance(args, dict):
            raise ValidationError("Invalid input for field/attribute createBackup.")
        name = schemas.name(args.get("name"), "name")
        btype = args.get("backup_type")
        if not isinstance(btype, str) or not btype:
            raise ValidationError("Invalid input for field/attribute backup_type.")
        rotation = schemas.integer(args.get("rotation"), "rotation", 0)
        meta = schemas.metadata(args.get("metadata", {}))
        if self.images is None:
            raise Conflict("The image service is not available.")
        if inst["vm_state"] not in states.ACTION_VM_STATES["createImage"]:
            raise Conflict(f"Cannot 'createBackup' instance {inst['uuid']} while it is in "
                           f"vm_state {inst['vm_state']}")
        meta = dict(meta, backup_type=btype)
        image_id = await req.run(self.new_image, req, inst, name, meta, "backup")
        try:
            inst = await req.run(self.m.begin_task, req.ctx, inst["uuid"], "createBackup",
                                 "image_backup")
        except APIError:
            await req.run(self._drop_image, image_id)
            raise
        await req.run(self._rotate_backups, inst, btype, rotation, image_id)
        await self.api.cast(inst, "snapshot_instance", instance_uuid=inst["uuid"],
                         image_id=image_id, task_state="image_backup")
        if ver(req) >= "2.45":
            return FastJSON({"image_id": image_id}, status_code=202)
        return Response(status_code=202,
                        headers={"Location": f"{req.base_url}/images/{image_id}"})

    def _rotate_backups(self, inst: InstanceDict, btype: str, rotation: int,
                        keep: str) -> None:
        """Keep only the newest ``rotation`` backups of this type (the new one included)."""
        admin = RequestContext.admin()
        q = self.images.parse_list_query({}, 1000, 1000)  # type: ignore[union-attr]
        imgs, _ = self.images.list(admin, q)  # type: ignore[union-attr]
        backups = sorted((i for i in imgs if i.properties.get("instance_uuid") == inst["uuid"]
                          and i.properties.get("image_type") == "backup"
                          and i.properties.get("backup_type") == btype),
                         key=lambda i: i.created_at, reverse=True)
        for old in backups[max(rotation, 1 if keep else 0):]:
            if old.id != keep:
                self._drop_image(old.id)

    def new_image(self, req: ApiRequest, inst: InstanceDict, name: str,
                   meta: dict[str, str], image_type: str) -> str:
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
            info = self.images.create(admin, body)  # type: ignore[union-attr]
        except APIError as exc:
            raise BadRequest(f"Cannot create the image: {exc.message}") from None
        return str(info.id)

    def _drop_image(self, image_id: str) -> None:
        image_dropper(self.images)(image_id)  # best effort, as the agents drop theirs

    async def a_resize(self, req: ApiRequest, inst: InstanceDict, args: Any) -> None:
        if not isinstance(args, dict) or "flavorRef" not in args:
            raise ValidationError("Invalid input for field/attribute resize.")
        fid = schemas.ref_id(args["flavorRef"], "flavorRef")
        try:
            flavor = await req.run(self.m.get_flavor, req.ctx, fid)
        except NotFound:
            raise BadRequest(f"Flavor {fid} could not be found.") from None
        if flavor["id"] == inst["flavor"]["id"]:
            raise BadRequest("When resizing, instances must change flavor!")
        # A volume-backed server's root disk is its volume: the flavor's disk size does not
        # apply to it (Nova).
        if block_devices.root(inst) is None:
            if flavor["root_gb"] == 0 and inst["flavor"]["root_gb"] != 0:
                raise BadRequest("Resize to zero disk flavor is not allowed.")
            if flavor["root_gb"] < inst["flavor"]["root_gb"]:
                raise BadRequest("Resize error: Unable to resize disk down.")
        used = await req.run(self.m.quota_usage, inst["project_id"])
        limits = await req.run(self.m.quota_limits, inst["project_id"])
        from onestack.compute import quotas

        quotas.check(limits, used, {
            "cores": max(0, flavor["vcpus"] - inst["flavor"]["vcpus"]),
            "ram": max(0, flavor["memory_mb"] - inst["flavor"]["memory_mb"])})
        if args.get("OS-DCF:diskConfig") not in (None, "AUTO", "MANUAL"):
            raise ValidationError("Invalid input for field/attribute OS-DCF:diskConfig.")
        await self._move(req, inst, "resize", flavor)
        await self.api.set_disk_config(req, inst, args)

    async def a_migrate(self, req: ApiRequest, inst: InstanceDict, args: Any) -> None:
        host = None
        # Nova validates the body from 2.56 only (``null`` or an object with an optional
        # host); before, whatever the action carries is ignored (Tempest sends ``{}``).
        if args is not None and ver(req) >= "2.56":
            if not isinstance(args, dict):
                raise ValidationError(f"Invalid input for field/attribute migrate. "
                                      f"Value: {args}. {args!r} is not of type 'object', "
                                      f"'null'")
            schemas.only(args, {"host"}, "migrate")
            host = schemas.host_or_null(args.get("host"))
        if host is not None:
            req.enforce("os_compute_api:os-migrate-server:migrate:host",
                        self.api.tgt(req, inst["project_id"]))
        await self._move(req, inst, "migrate", inst["flavor"], host)

    async def _move(self, req: ApiRequest, inst: InstanceDict, action: str,
                    flavor: dict[str, Any], host: str | None = None) -> None:
        sm = dict(inst["system_metadata"], old_vm_state=inst["vm_state"])
        inst = await req.run(self.m.begin_task, req.ctx, inst["uuid"], action, "resize_prep",
                             None, (None,), True, None,
                             {"old_flavor": inst["flavor"], "new_flavor": flavor,
                              "system_metadata": sm})
        mig = await req.run(self.m.create_migration, inst, None, None,
                            "resize" if action == "resize" else "migration",
                            flavor.get("internal_id"))
        ignore = [] if action == "resize" else [inst["host"]]
        try:
            dest = await self.bus.call("scheduler", "select_destination",
                                       instance_uuid=inst["uuid"], consumer=mig["uuid"],
                                       flavor=flavor,
                                       request={"host": host,
                                                "availability_zone": inst["availability_zone"]},
                                       ignore_hosts=ignore)
        except (RemoteError, BusError) as exc:
            await req.run(self.m.set_migration, mig["uuid"], status="error")
            await req.run(self.m.finish_task, inst["uuid"], "resize_prep", None,
                          task_state=None, old_flavor=None, new_flavor=None)
            msg = exc.message if isinstance(exc, RemoteError) else str(exc)
            raise BadRequest(f"No valid host was found. {msg}") from None
        await req.run(self.m.set_migration, mig["uuid"], dest_compute=dest["host"],
                      dest_node=dest["node"])
        await self.api.cast(inst, "resize_instance", instance_uuid=inst["uuid"],
                         migration_uuid=mig["uuid"], dest_host=dest["host"],
                         dest_node=dest["node"], new_flavor=flavor)

    async def a_confirm_resize(self, req: ApiRequest, inst: InstanceDict,
                               args: Any) -> Response:
        mig = await req.run(self.m.latest_migration, inst["uuid"])
        if inst["vm_state"] != states.RESIZED or mig is None or mig["status"] != "finished":
            raise Conflict(f"Cannot 'confirmResize' instance {inst['uuid']} while it is in "
                           f"vm_state {inst['vm_state']}")
        inst = await req.run(self.m.begin_task, req.ctx, inst["uuid"], "confirmResize",
                             "resize_confirming")
        await req.run(self.m.set_migration, mig["uuid"], status="confirming")
        await self.api.cast(inst, "confirm_resize", instance_uuid=inst["uuid"],
                         migration_uuid=mig["uuid"], source_host=mig["source_compute"])
        return Response(status_code=204)

    async def a_revert_resize(self, req: ApiRequest, inst: InstanceDict, args: Any) -> None:
        mig = await req.run(self.m.latest_migration, inst["uuid"])
        if inst["vm_state"] != states.RESIZED or mig is None or mig["status"] != "finished":
            raise Conflict(f"Cannot 'revertResize' instance {inst['uuid']} while it is in "
                           f"vm_state {inst['vm_state']}")
        inst = await req.run(self.m.begin_task, req.ctx, inst["uuid"], "revertResize",
                             "resize_reverting")
        await req.run(self.m.set_migration, mig["uuid"], status="reverting")
        await self.api.cast(inst, "revert_resize", instance_uuid=inst["uuid"],
                         migration_uuid=mig["uuid"], source_host=mig["source_compute"],
                         source_node=mig["source_node"])

    async def a_live_migrate(self, req: ApiRequest, inst: InstanceDict, args: Any) -> None:
        # Validated before any state change: a bad body leaves the server as it was.
        host = schemas.live_migrate(args, ver(req))
        if host is not None:
            req.enforce("os_compute_api:os-migrate-server:migrate_live:host",
                        self.api.tgt(req, inst["project_id"]))
        inst = await req.run(self.m.begin_task, req.ctx, inst["uuid"], "os-migrateLive",
                             "migrating", None, (None,), True, "live-migration")
        mig = await req.run(self.m.create_migration, inst, host, None, "live-migration")
        try:
            dest = await self.bus.call("scheduler", "select_destination",
                                       instance_uuid=inst["uuid"], consumer=mig["uuid"],
                                       flavor=inst["flavor"], request={"host": host},
                                       ignore_hosts=[inst["host"]])
        except (RemoteError, BusError):
            await req.run(self.m.set_migration, mig["uuid"], status="error")
            await req.run(self.m.finish_task, inst["uuid"], "migrating", None,
                          task_state=None)
            if host:
                raise BadRequest(f"Compute service of {host} is unavailable at this "
                                 "time.") from None
            raise BadRequest("No valid host was found.") from None
        await req.run(self.m.set_migration, mig["uuid"], dest_compute=dest["host"],
                      dest_node=dest["node"])
        await self.api.cast(inst, "live_migrate", instance_uuid=inst["uuid"],
                         migration_uuid=mig["uuid"], dest_host=dest["host"],
                         dest_node=dest["node"])

    async def a_rebuild(self, req: ApiRequest, inst: InstanceDict, args: Any) -> Response:
        v = ver(req)
        if not isinstance(args, dict) or "imageRef" not in args:
            raise ValidationError("Invalid input for field/attribute rebuild.")
        image_id = schemas.ref_id(args["imageRef"], "imageRef")
        if not schemas.is_uuid(image_id):
            raise BadRequest(f"Invalid imageRef provided. Image {image_id} could not be "
                             "found.")
        image = await req.run(self.api.image_info, req, image_id)
        extra: dict[str, Any] = {"image_ref": image_id}
        reimage = await self._volume_backed_rebuild(req, inst, image, v)
        if block_devices.root(inst) is not None:
            # An empty image_ref marks a volume-backed server (Nova keeps it so).
            extra.pop("image_ref")
        if "name" in args:
            extra["display_name"] = schemas.name(args["name"])
        if "metadata" in args:
            extra["meta"] = schemas.metadata(args["metadata"])
        if "description" in args and v >= "2.19":
            extra["display_description"] = args["description"]
        if "key_name" in args and v >= "2.54":
            if args["key_name"] is None:
                extra.update(key_name=None, key_data=None)
            else:
                try:
                    kp = await req.run(self.m.get_keypair, req.ctx.user_id or "",
                                       args["key_name"])
                except NotFound:
                    raise BadRequest("Invalid key_name provided.") from None
                extra.update(key_name=kp["name"], key_data=kp["public_key"])
        if "user_data" in args and v >= "2.57":
            extra["user_data"] = (schemas.user_data(args["user_data"])
                                  if args["user_data"] is not None else None)
        for field, col, fn in (("accessIPv4", "access_ip_v4", schemas.ipv4),
                               ("accessIPv6", "access_ip_v6", schemas.ipv6)):
            if args.get(field):
                extra[col] = fn(args[field], field)
        sm = dict(inst["system_metadata"], image_properties=image["properties"])
        if reimage:
            sm["boot_image"] = image_id
        if "OS-DCF:diskConfig" in args:
            if args["OS-DCF:diskConfig"] not in ("AUTO", "MANUAL"):
                raise ValidationError("Invalid input for field/attribute OS-DCF:diskConfig.")
            sm["disk_config"] = args["OS-DCF:diskConfig"]
        extra["system_metadata"] = sm
        password = args.get("adminPass") or admin_password()
        inst = await req.run(self.m.begin_task, req.ctx, inst["uuid"], "rebuild",
                             "rebuilding", None, (None,), True, None, extra)
        await self.api.cast(inst, "rebuild_instance", instance_uuid=inst["uuid"],
                         image_ref=image_id, reimage_volume=reimage)
        doc = await self.api.action_view(req, inst, rebuild=True)
        doc["adminPass"] = password
        return FastJSON({"server": doc}, status_code=202)

    async def _volume_backed_rebuild(self, req: ApiRequest, inst: InstanceDict,
                                     image: dict[str, Any], v: APIVersion) -> str | None:
        """Nova's rules for rebuilding a volume-backed server: the image in its root volume
        again (a plain rebuild), or, from 2.93, a new image written into the root volume
        (returns that volume's id: the agent re-images it); otherwise 400."""
        bdm = block_devices.root(inst)
        if bdm is None or self.volumes is None:
            return None
        vol = await req.run(self.volumes.get, RequestContext.admin(), bdm["volume_id"])
        if vol.get("image_id") == image["id"]:
            return None
        if v < "2.93":
            raise BadRequest(f"Image {image['id']} is unacceptable: Unable to rebuild with a "
                             "different image for a volume-backed server.")
        if len(vol.get("attachments") or []) > 1:
            raise Conflict("Cannot re-image a volume which is attached to more than one "
                           "server.")
        need = max(int(image.get("min_disk") or 0),
                   -(-int(image.get("size") or 0) // (1 << 30)))
        if need > int(vol["size"]):
            raise BadRequest(f"Volume is smaller than the minimum size specified in image "
                             f"metadata. Volume size is {int(vol['size']) << 30} bytes, "
                             f"minimum size is {need << 30} bytes.")
        return str(vol["id"])

    async def a_shelve(self, req: ApiRequest, inst: InstanceDict, args: Any) -> None:
        image_id = None
        # A volume-backed server keeps its disks in its volumes: no snapshot image (Nova).
        if self.images is not None and block_devices.root(inst) is None:
            image_id = await req.run(self.new_image, req, inst, f"{inst['name']}-shelved", {},
                                     "snapshot")
        sm = dict(inst["system_metadata"], shelved_image_id=image_id)
        try:
            inst = await req.run(self.m.begin_task, req.ctx, inst["uuid"], "shelve",
                                 "shelving", None, (None,), True, None,
                                 {"system_metadata": sm})
        except APIError:
            if image_id:
                await req.run(self._drop_image, image_id)
            raise
        await self.api.cast(inst, "shelve_instance", instance_uuid=inst["uuid"],
                            image_id=image_id, offload=True)

    async def a_shelve_offload(self, req: ApiRequest, inst: InstanceDict, args: Any) -> None:
        await self._simple(req, inst, "shelveOffload", "shelving_offloading",
                           "shelve_offload_instance")

    async def a_unshelve(self, req: ApiRequest, inst: InstanceDict, args: Any) -> None:
        az = None
        host = None
        if isinstance(args, dict) and v_ge(req, "2.77"):
            az = args.get("availability_zone")
            if v_ge(req, "2.91") and args.get("host"):
                req.enforce("os_compute_api:os-shelve:unshelve_to_host",
                            self.api.tgt(req, inst["project_id"]))
                host = args["host"]
                if inst["vm_state"] != states.SHELVED_OFFLOADED:
                    raise Conflict(f"Cannot 'unshelve' instance {inst['uuid']} to a host "
                                   f"while it is in vm_state {inst['vm_state']}")
        inst = await req.run(self.m.begin_task, req.ctx, inst["uuid"], "unshelve",
                             "unshelving")
        if inst["vm_state"] == states.SHELVED and inst["host"]:
            await self.api.cast(inst, "unshelve_instance", instance_uuid=inst["uuid"],
                             node=inst["node"])
            return
        try:
            dest = await self.bus.call("scheduler", "select_destination",
                                       instance_uuid=inst["uuid"], consumer=inst["uuid"],
                                       flavor=inst["flavor"],
                                       request={"availability_zone": az
                                                or inst["availability_zone"], "host": host},
                                       ignore_hosts=[])
        except (RemoteError, BusError):
            await req.run(self.m.finish_task, inst["uuid"], "unshelving", None,
                          task_state=None)
            raise BadRequest("No valid host was found.") from None
        await req.run(self.m.set_instance, inst["uuid"], host=dest["host"], node=dest["node"])
        # The guest comes back from the snapshot taken at shelve time (Nova bug 1257594);
        # the agent deletes that image once the guest runs.
        await self.bus.cast(f"compute.{dest['host']}", "unshelve_instance",
                            instance_uuid=inst["uuid"], node=dest["node"],
                            image_ref=inst["system_metadata"].get("shelved_image_id"))

    async def a_force_delete(self, req: ApiRequest, inst: InstanceDict, args: Any) -> None:
        raise Conflict(f"Cannot 'forceDelete' instance {inst['uuid']} while it is in vm_state "
                       f"{inst['vm_state']}")

    async def a_restore(self, req: ApiRequest, inst: InstanceDict, args: Any) -> None:
        raise Conflict(f"Cannot 'restore' instance {inst['uuid']} while it is in vm_state "
                       f"{inst['vm_state']}")

    async def a_change_password(self, req: ApiRequest, inst: InstanceDict, args: Any) -> None:
        if not isinstance(args, dict) or not isinstance(args.get("adminPass"), str):
            raise ValidationError("Invalid input for field/attribute changePassword.")
        if inst["vm_state"] != states.ACTIVE:
            raise Conflict(f"Cannot 'changePassword' instance {inst['uuid']} while it is in "
                           f"vm_state {inst['vm_state']}")

    async def a_trigger_crash_dump(self, req: ApiRequest, inst: InstanceDict,
                                   args: Any) -> None:
        if ver(req) < "2.17":
            raise BadRequest("There is no such action: trigger_crash_dump")
        if inst["vm_state"] not in states.ACTION_VM_STATES["trigger_crash_dump"]:
            raise Conflict(f"Cannot 'trigger_crash_dump' instance {inst['uuid']} while it is "
                           f"in vm_state {inst['vm_state']}")

    async def a_add_security_group(self, req: ApiRequest, inst: InstanceDict,
                                   args: Any) -> None:
        await self._security_group(req, inst, args, True)

    async def a_remove_security_group(self, req: ApiRequest, inst: InstanceDict,
                                      args: Any) -> None:
        await self._security_group(req, inst, args, False)

    async def _security_group(self, req: ApiRequest, inst: InstanceDict, args: Any,
                              add: bool) -> None:
        """Membership is recorded on the instance and, with networking, applied to every
        port of the server (without it only the ``default`` group exists)."""
        name = args.get("name") if isinstance(args, dict) else None
        if not isinstance(name, str) or not name.strip():
            raise BadRequest("Security group name cannot be empty")
        groups = list(inst["system_metadata"].get("security_groups") or [])
        if self.network is not None:
            ctx = self.api.project_ctx(inst["project_id"])
            try:
                await req.run(self.network.security_group_ids, ctx, [name])
            except BadRequest:
                raise NotFound(f"Security group {name} not found for project "
                               f"{inst['project_id']}.") from None
        if add:
            if name != "default" and self.network is None:
                raise NotFound(f"Security group {name} not found for project "
                               f"{inst['project_id']}.")
            if name in groups:
                raise BadRequest(f"Security group {name} is already associated with the "
                                 f"instance {inst['uuid']}")
            groups.append(name)
        else:
            if name not in groups:
                if name != "default" and self.network is None:
                    raise NotFound(f"Security group {name} not found for project "
                                   f"{inst['project_id']}.")
                raise BadRequest(f"Security group {name} not associated with the instance "
                                 f"{inst['uuid']}")
            groups.remove(name)
        if self.network is not None:
            ids = await req.run(self.network.security_group_ids,
                                self.api.project_ctx(inst["project_id"]), groups)
            await req.run(self.network.set_security_groups, inst["uuid"], ids)
        await req.run(self.m.update_system_metadata, inst["uuid"], security_groups=groups)

    async def a_add_fixed_ip(self, req: ApiRequest, inst: InstanceDict, args: Any) -> None:
        """``addFixedIp``: one more address on the server's port on the network. Nova
        removed it in 2.44; it is accepted at every microversion because openstacksdk (so
        ``openstack server remove fixed ip``) sends these actions at its newest one."""
        net_id = args.get("networkId") if isinstance(args, dict) else None
        if not isinstance(net_id, str | int) or not str(net_id):
            raise ValidationError("Invalid input for field/attribute networkId.")
        if self.network is None:
            raise BadRequest(f"Error: Network could not be found for instance "
                             f"{inst['uuid']}.")
        await req.run(self.network.add_fixed_ip, inst["uuid"], str(net_id))
        await self.api.refresh_nics(req, inst)

    async def a_remove_fixed_ip(self, req: ApiRequest, inst: InstanceDict,
                                args: Any) -> None:
        """``removeFixedIp`` (see ``a_add_fixed_ip`` on microversions)."""
        address = args.get("address") if isinstance(args, dict) else None
        if not isinstance(address, str) or not address:
            raise ValidationError("Invalid input for field/attribute address.")
        if self.network is None:
            raise BadRequest(f"Instance {inst['uuid']} has no fixed IP '{address}'.")
        await req.run(self.network.remove_fixed_ip, inst["uuid"], address)
        await self.api.refresh_nics(req, inst)

    async def a_deprecated_console(self, req: ApiRequest, inst: InstanceDict,
                                   args: Any) -> dict[str, Any]:
        ctype = args.get("type") if isinstance(args, dict) else None
        if ctype not in ("novnc", "xvpvnc", "spice-html5", "rdp-html5", "serial"):
            raise BadRequest("Invalid console type specified")
        return {"console": {"type": ctype, "url": await self.new_console_url(req, inst, ctype)}}

    async def new_console_url(self, req: ApiRequest, inst: InstanceDict, ctype: str) -> str:
        """A console URL with a new token (``inst`` was loaded through the tenancy-checked
        manager, so the caller may see it). Only ``novnc`` exists: other types, and drivers
        without a remote console, answer 400 "Unavailable console type" as Nova does."""
        unavailable = BadRequest(f"Unavailable console type {ctype}.")
        if ctype != "novnc" or self.console_tokens is None:
            raise unavailable
        if inst["vm_state"] != states.ACTIVE or not inst["host"]:
            raise Conflict(f"Instance {inst['uuid']} is not ready yet.")
        info = await self.api.call(inst, "get_vnc_console", instance_uuid=inst["uuid"])
        if not isinstance(info, dict) or info.get("error") == "unavailable":
            raise unavailable
        if "port" not in info:
            raise Conflict(f"Instance {inst['uuid']} is not ready yet.")
        token, _ = await req.run(self.console_tokens.create, inst["uuid"], ctype,
                                 str(info["host"]), int(info["port"]), inst["host"])
        # noVNC >= 1.1 takes the WebSocket path (with the token) from ``path``.
        return f"{self.console_url}/vnc_lite.html?path=%3Ftoken%3D{token}"

    async def show_console_token(self, req: ApiRequest) -> dict[str, Any]:
        """``GET /os-console-auth-tokens/{token}`` (admin): what a console token connects
        to. Unknown or expired tokens: 404; before 2.31 only RDP tokens were shown."""
        req.enforce("os_compute_api:os-console-auth-tokens", self.api.tgt(req))
        conn = None
        if self.console_tokens is not None:
            conn = await req.run(self.console_tokens.validate, req.param("console_token"))
        if conn is None:
            raise NotFound("Token not found")
        if ver(req) < "2.31" and conn.console_type != "rdp-html5":
            raise Unauthorized("The requested console type details are not accessible")
        doc = {"instance_uuid": conn.instance_uuid, "host": conn.host, "port": conn.port,
               "internal_access_path": conn.internal_access_path}
        if ver(req) >= "2.99":
            doc["tls_port"] = None
        return {"console": doc}

_ACTIONS = {
    "reboot": "a_reboot", "os-stop": "a_stop", "os-start": "a_start", "pause": "a_pause",
    "unpause": "a_unpause", "suspend": "a_suspend", "resume": "a_resume",
    "rescue": "a_rescue", "unrescue": "a_unrescue", "lock": "a_lock", "unlock": "a_unlock",
    "os-resetState": "a_reset_state", "resetNetwork": "a_reset_network",
    "injectNetworkInfo": "a_reset_network",
    "os-getConsoleOutput": "a_console_output", "createImage": "a_create_image",
    "resize": "a_resize", "confirmResize": "a_confirm_resize",
    "revertResize": "a_revert_resize", "migrate": "a_migrate",
    "os-migrateLive": "a_live_migrate", "rebuild": "a_rebuild", "shelve": "a_shelve",
    "shelveOffload": "a_shelve_offload", "unshelve": "a_unshelve",
    "forceDelete": "a_force_delete", "restore": "a_restore",
    "changePassword": "a_change_password", "trigger_crash_dump": "a_trigger_crash_dump",
    "addSecurityGroup": "a_add_security_group",
    "addFloatingIp": "a_add_floating_ip", "removeFloatingIp": "a_remove_floating_ip",
    "addFixedIp": "a_add_fixed_ip", "removeFixedIp": "a_remove_fixed_ip",
    "removeSecurityGroup": "a_remove_security_group", "createBackup": "a_create_backup",
    "os-getVNCConsole": "a_deprecated_console", "os-getSPICEConsole": "a_deprecated_console",
    "os-getSerialConsole": "a_deprecated_console",
    "os-getRDPConsole": "a_deprecated_console",
}
_OK_200 = {"os-getConsoleOutput", "rescue", "os-getVNCConsole", "os-getSPICEConsole",
           "os-getSerialConsole", "os-getRDPConsole"}
