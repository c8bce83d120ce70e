"""Cinder's legacy attach actions (``os-reserve``, ``os-unreserve``, ``os-attach``,
``os-begin_detaching``, ``os-roll_detaching``, ``os-detach``, ``os-force_detach``,
``os-initialize_connection``, ``os-terminate_connection``).

As in Cinder, these record the attach state of a volume; connecting a hypervisor to the data
is the compute service's job (``os-initialize_connection`` hands it the driver's connection
info). Each is a state transition checked against the volume's status, applied in one
transaction by ``VolumeManager.attach_action``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from onestack.common.errors import BadRequest
from onestack.common.timeutils import isotime, utcnow
from onestack.db.volume import Volume


def _status_error(v: Volume, wanted: str, action: str) -> BadRequest:
    return BadRequest(f"Invalid volume: Volume {v.id} status must be {wanted} to {action}, "
                      f"but current status is: {v.status}.")


def reserve(v: Volume) -> None:
    if v.status == "in-use" and v.multiattach:
        v.status = "attaching"
        return
    if v.status != "available":
        raise _status_error(v, "available", "reserve")
    v.status = "attaching"


def unreserve(v: Volume) -> None:
    if v.status != "attaching":
        raise _status_error(v, "attaching", "unreserve")
    v.status = "in-use" if v.attachments else "available"


def attach(args: dict[str, Any]) -> Callable[[Volume], None]:
    server = args.get("instance_uuid")
    host = args.get("host_name")
    if not server and not host:
        raise BadRequest("Invalid request to attach volume to an invalid target")
    device = args.get("mountpoint")
    if not isinstance(device, str) or not device:
        raise BadRequest("Must specify 'mountpoint'")
    mode = args.get("mode", "rw")
    if mode not in ("rw", "ro"):
        raise BadRequest("Invalid request to attach volume with an invalid mode. "
                         "Attaching mode should be 'rw' or 'ro'")

    def run(v: Volume) -> None:
        if v.status not in ("available", "attaching") and not (
                v.multiattach and v.status == "in-use"):
            raise _status_error(v, "available or attaching", "attach")
        readonly = (v.admin_metadata or {}).get("readonly") == "True"
        if readonly and mode == "rw":
            raise BadRequest(f"Invalid volume: Volume {v.id} is read-only; attach it with "
                             "mode 'ro'.")
        v.attachments = [*(v.attachments or []), {
            "id": str(uuid.uuid4()), "server_id": server, "host_name": host,
            "device": device, "attached_at": isotime(utcnow(), subsecond=True),
            "attach_mode": mode}]
        v.status = "in-use"
        v.attach_status = "attached"
    return run


def begin_detaching(v: Volume) -> None:
    if v.status != "in-use":
        raise _status_error(v, "in-use", "begin detaching")
    v.status = "detaching"


def roll_detaching(v: Volume) -> None:
    if v.status == "detaching":
        v.status = "in-use"


def detach(args: dict[str, Any], force: bool = False) -> Callable[[Volume], None]:
    wanted = args.get("attachment_id")

    def run(v: Volume) -> None:
        attachments = list(v.attachments or [])
        if v.status == "maintenance" and not force:
            raise BadRequest(f"Invalid volume: Volume {v.id} is in maintenance.")
        if not attachments:  # nothing to detach: as Cinder, the volume ends available
            v.status, v.attach_status = "available", "detached"
            return
        if wanted is None and len(attachments) > 1:
            raise BadRequest("Invalid volume: Volume has multiple attachments; name the "
                             "attachment_id to detach.")
        keep = [a for a in attachments if wanted is not None and a["id"] != wanted]
        if wanted is not None and len(keep) == len(attachments):
            raise BadRequest(f"Invalid volume: no attachment {wanted} on volume {v.id}.")
        v.attachments = keep
        v.status = "in-use" if keep else "available"
        v.attach_status = "attached" if keep else "detached"
    return run


#: action -> (policy, ``f(args) -> change of the volume``); the request's arguments are
#: checked when ``f`` is called, before the volume is read.
ACTIONS: dict[str, tuple[str, Callable[[dict[str, Any]], Callable[[Volume], None]]]] = {
    "os-reserve": ("volume_extension:volume_actions:reserve", lambda a: reserve),
    "os-unreserve": ("volume_extension:volume_actions:unreserve", lambda a: unreserve),
    "os-attach": ("volume_extension:volume_actions:attach", attach),
    "os-begin_detaching": ("volume_extension:volume_actions:begin_detaching",
                           lambda a: begin_detaching),
    "os-roll_detaching": ("volume_extension:volume_actions:roll_detaching",
                          lambda a: roll_detaching),
    "os-detach": ("volume_extension:volume_actions:detach", detach),
    "os-force_detach": ("volume_extension:volume_admin_actions:force_detach",
                        lambda a: detach(a, force=True)),
}
