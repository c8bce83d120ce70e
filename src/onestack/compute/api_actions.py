"""Compute API: the dispatcher of server actions (``POST /servers/{id}/action``) and the
plain ones: reboot, stop/start, pause, suspend, rescue, lock, reset state, console output,
change password, crash dump, images and backups of a server.

Moves (resize, migrate, rebuild, shelve) are in ``api_server_moves.py``, security groups and
fixed IPs in ``api_interfaces.py``, consoles in ``api_consoles.py``, floating IPs in
``network_proxies.py``. Like every route, actions record intent through ``ComputeManager``
and cast the work to the instance's host agent.
"""

from __future__ import annotations

import logging
import secrets
import string
from typing import Any

from starlette.responses import Response

from onestack.api.app import ApiRequest, FastJSON
from onestack.api.routes import serves
from onestack.common.context import RequestContext
from onestack.common.errors import APIError, BadRequest, Conflict, ValidationError
from onestack.compute import block_devices, schemas, states
from onestack.compute.manager import InstanceDict
from onestack.compute.microversions import v_ge, ver
from onestack.compute.policies import ACTION_RULES
from onestack.compute.resource_base import ResourceHandler, ServerHost

LOG = logging.getLogger(__name__)


def admin_password() -> str:
    """A new server's (or a rebuilt or rescued one's) ``adminPass`` (Nova: 12 characters)."""
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(12))


def _image_accepted(req: ApiRequest, image_id: str) -> Response:
    """202 for a server image being made: its id in the body from 2.45, its URL in
    ``Location`` before."""
    if ver(req) >= "2.45":
        return FastJSON({"image_id": image_id}, status_code=202)
    return Response(status_code=202, headers={"Location": f"{req.base_url}/images/{image_id}"})


class ServerActions(ResourceHandler):
    """The dispatcher of ``POST /servers/{id}/action`` and the plain actions (power, state,
    lock, images and backups). Actions of other concepts are found on the other
    ``providers`` (``api_server_moves.py``, ``api_interfaces.py``, ``api_consoles.py``,
    ``network_proxies.py``), which ``ComputeAPI`` adds."""

    def __init__(self, api: ServerHost) -> None:
        super().__init__(api)
        #: Objects whose ``a_<action>`` methods handle actions, searched in order.
        self.providers: list[object] = [self]

    @serves("POST", "/v2.1/servers/{server_id}/action")
    async def server_action(self, req: ApiRequest) -> Response:
        body = await req.json()
        if not isinstance(body, dict) or len(body) != 1:
            raise BadRequest("There is no such action: " + (
                ",".join(body) if isinstance(body, dict) else str(body)))
        (action, args), = body.items()
        handler = _ACTIONS.get(action)
        if handler is None and action not in _PLAIN:
            raise BadRequest(f"There is no such action: {action}")
        inst = await self.api.find_server(req, ACTION_RULES[action])
        if handler is None:
            await self.simple(req, inst, *_PLAIN[action])
            return Response(status_code=202)
        fn = next(getattr(p, handler) for p in self.providers if hasattr(p, handler))
        result = await fn(req, inst, args)
        if isinstance(result, Response):
            return result
        if result is None:
            return Response(status_code=202)
        return FastJSON(result, status_code=200 if action in _OK_200 else 202)

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
        await self.simple(req, inst, "rescue", "rescuing", "rescue_instance",
                           rescue_image=rescue_image)
        return {"adminPass": password}

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
        self._check_imageable(inst, "createImage")
        if any(b.get("boot_index") == 0 for b in block_devices.of(inst)):
            image_id = await self.api.volume_routes.snapshot_server(req, inst, name, meta)
            return _image_accepted(req, image_id)
        inst, image_id = await self._begin_image(req, inst, name, meta, "snapshot",
                                                 "createImage", "image_snapshot")
        await self.api.cast(inst, "snapshot_instance", instance_uuid=inst["uuid"],
                         image_id=image_id)
        return _image_accepted(req, image_id)

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
        self._check_imageable(inst, "createBackup")
        meta = dict(meta, backup_type=btype)
        inst, image_id = await self._begin_image(req, inst, name, meta, "backup",
                                                 "createBackup", "image_backup")
        await req.run(self._rotate_backups, inst, btype, rotation, image_id)
        await self.api.cast(inst, "snapshot_instance", instance_uuid=inst["uuid"],
                         image_id=image_id, task_state="image_backup")
        return _image_accepted(req, image_id)

    def _check_imageable(self, inst: InstanceDict, action: str) -> None:
        """409 unless the server can be imaged by ``action`` (createImage, createBackup)
        now: an image service, and a vm_state that allows it."""
        if self.images is None:
            raise Conflict("The image service is not available.")
        if inst["vm_state"] not in states.ACTION_VM_STATES["createImage"]:
            raise Conflict(f"Cannot '{action}' instance {inst['uuid']} while it is in "
                           f"vm_state {inst['vm_state']}")

    async def _begin_image(self, req: ApiRequest, inst: InstanceDict, name: str,
                           meta: dict[str, str], image_type: str, action: str,
                           task: str) -> tuple[InstanceDict, str]:
        """A new image of the server and ``task`` of ``action`` begun to fill it; the image
        is dropped again when the server refuses the task. The server and the image id."""
        image_id = await req.run(self.new_image, req, inst, name, meta, image_type)
        try:
            inst = await req.run(self.m.begin_task, req.ctx, inst["uuid"], action, task)
        except APIError:
            await req.run(self.drop_image, image_id)
            raise
        return inst, image_id

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
                self.drop_image(old.id)

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

_ACTIONS = {
    "reboot": "a_reboot", "rescue": "a_rescue", "lock": "a_lock", "unlock": "a_unlock",
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
#: Actions that only begin a task and cast it to the host agent: (action recorded, task
#: state, agent method).
_PLAIN = {
    "os-stop": ("stop", "powering-off", "stop_instance"),
    "os-start": ("start", "powering-on", "start_instance"),
    "pause": ("pause", "pausing", "pause_instance"),
    "unpause": ("unpause", "unpausing", "unpause_instance"),
    "suspend": ("suspend", "suspending", "suspend_instance"),
    "resume": ("resume", "resuming", "resume_instance"),
    "unrescue": ("unrescue", "unrescuing", "unrescue_instance"),
}
_OK_200 = {"os-getConsoleOutput", "rescue", "os-getVNCConsole", "os-getSPICEConsole",
           "os-getSerialConsole", "os-getRDPConsole"}
