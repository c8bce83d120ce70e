"""A server's volumes as compute records them (Nova's block device mappings).

Each server keeps its volume mappings in ``system_metadata["block_devices"]`` (shape in
``compute.volumes``). Every change is one write transaction that re-reads the row under a
row lock, so concurrent attaches to one server never lose each other's mapping. Device
names follow Nova's libvirt driver: ``/dev/vda`` is the root disk, then the flavor's
ephemeral and swap disks, then each volume takes the next free ``/dev/vdX``.
"""

from __future__ import annotations

import re
import string
import uuid
from collections.abc import Callable
from typing import Any

from onestack.common.errors import BadRequest, NotFound
from onestack.compute.store import ManagerState
from onestack.db.compute import Instance

KEY = "block_devices"
_DEVICE = re.compile(r"^/dev/(x?[a-z]d|vd|sd|hd)([a-z]{1,2})$")


def of(inst: dict[str, Any]) -> list[dict[str, Any]]:
    """The block devices of an instance dict."""
    return [dict(b) for b in (inst.get("system_metadata") or {}).get(KEY) or []]


def find(inst: dict[str, Any], volume_id: str) -> dict[str, Any] | None:
    return next((b for b in of(inst) if b.get("volume_id") == volume_id), None)


def root(inst: dict[str, Any]) -> dict[str, Any] | None:
    """The root volume's block device of a volume-backed server (None: image-backed)."""
    return next((b for b in of(inst) if b.get("boot_index") in (0, "0")
                 and b.get("volume_id")), None)


def _letters() -> list[str]:
    one = list(string.ascii_lowercase)
    return one + [a + b for a in one for b in one]


def device_name(inst: dict[str, Any], wanted: Any) -> str:
    """The device a new volume of ``inst`` gets: ``wanted`` when given, valid and free,
    else the next free ``/dev/vdX`` (400 for a malformed or taken name, as Nova)."""
    flavor = inst.get("flavor") or {}
    used = {"/dev/vda"}
    extra = [n for n in ("ephemeral_gb", "swap") if flavor.get(n)]
    for n in range(len(extra)):
        used.add(f"/dev/vd{'bc'[n]}")
    used |= {b["device"] for b in of(inst) if b.get("device")}
    if wanted is not None:
        if not isinstance(wanted, str) or not _DEVICE.match(wanted):
            raise BadRequest(f"The supplied device path ({wanted}) is invalid.")
        if wanted in used:
            raise BadRequest(f"The supplied device path ({wanted}) is in use.")
        return wanted
    for letters in _letters():
        name = f"/dev/vd{letters}"
        if name not in used:
            return name
    raise BadRequest("No free disk device names for prefix 'vd'")


class BlockDevices:
    """Changes of servers' block device records (``manager``: the compute manager, for its
    transactions)."""

    def __init__(self, manager: ManagerState) -> None:
        self.m = manager

    def _change(self, instance_uuid: str,
                fn: Callable[[list[dict[str, Any]]], list[dict[str, Any]]]) -> None:
        with self.m.write() as s:
            row = s.get(Instance, instance_uuid, with_for_update=True)
            if row is None:
                raise NotFound(f"Instance {instance_uuid} could not be found.")
            sm = dict(row.system_metadata or {})
            sm[KEY] = fn([dict(b) for b in sm.get(KEY) or []])
            row.system_metadata = sm

    def add(self, instance_uuid: str, bdm: dict[str, Any]) -> dict[str, Any]:
        """Record a volume of the server (400 when its device name was taken meanwhile)."""
        bdm = {"bdm_uuid": str(uuid.uuid4()), "boot_index": None, "tag": None,
               "delete_on_termination": False, **bdm}

        def fn(bdms: list[dict[str, Any]]) -> list[dict[str, Any]]:
            if any(b.get("device") == bdm["device"] for b in bdms):
                raise BadRequest(f"The supplied device path ({bdm['device']}) is in use.")
            if any(b.get("volume_id") == bdm["volume_id"] for b in bdms):
                raise BadRequest(f"Invalid volume: volume {bdm['volume_id']} is already "
                                 "attached to this server.")
            return [*bdms, bdm]
        self._change(instance_uuid, fn)
        return bdm

    def update(self, instance_uuid: str, which: str, by: str = "volume_id",
               **changes: Any) -> None:
        """Change the record whose ``by`` field is ``which`` (the volume id, or the
        ``bdm_uuid`` of a volume not made yet)."""
        def hit(b: dict[str, Any]) -> bool:
            return bool(b.get(by) == which)
        self._change(instance_uuid, lambda bdms: [
            {**b, **changes} if hit(b) else b for b in bdms])

    def remove(self, instance_uuid: str, volume_id: str) -> None:
        self._change(instance_uuid, lambda bdms: [
            b for b in bdms if b.get("volume_id") != volume_id])
