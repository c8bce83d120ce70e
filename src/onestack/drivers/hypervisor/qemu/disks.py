"""The volumes of QEMU guests: their part of the command line and hot-plug over QMP.

A volume reaches the driver as a block device with the volume service's connection info
(``drivers/hypervisor/base.py``). File-backed volumes (``driver_volume_type`` ``file``, or
``nfs`` with the share mounted at ``data.export``) are opened by QEMU directly: one block
node (``-blockdev``/``blockdev-add``: the format driver, ``raw`` or ``qcow2``, over a
``file`` child) and one ``virtio-blk-pci`` device whose serial is ``volume_id[:20]``, so the
guest finds it as ``/dev/disk/by-id/virtio-<serial>`` as on a Nova/libvirt cloud. QEMU ids
follow the volume, so a disk is found again after the agent restarts: node
``vn-<id[:12]>``, device ``vol-<id[:12]>``.

Hot-plug is what libvirt does for Nova's ``attach_volume``: ``blockdev-add`` then
``device_add`` on a free ``pcie-root-port`` (q35; the root bus on ``pc``). Unplug is
``device_del``, waiting until the guest released the device (PCIe hot-plug needs the
guest's cooperation), then ``blockdev-del``. Volumes share the spare root ports with
hot-plugged NICs; the port a volume sits on is kept in the guest's state (``disk_slots``)
and reproduced by every later start.
"""

from __future__ import annotations

import json
import os
from typing import Any

from onestack.drivers.hypervisor.base import DriverError
from onestack.drivers.hypervisor.qemu.qmp import (
    QmpCall,
    QMPError,
    add_device,
    remove_device,
)

#: How long a detach waits for the guest to release the disk (Nova: 8 attempts x 20 s).
DETACH_TIMEOUT = 30.0
_FORMATS = ("raw", "qcow2")


def volume_id(bdm: dict[str, Any]) -> str:
    return str(bdm["volume_id"])


def qemu_ids(bdm: dict[str, Any]) -> tuple[str, str]:
    """(block node name, device id) of a volume's disk."""
    short = volume_id(bdm).replace("-", "")[:12]
    return f"vn-{short}", f"vol-{short}"


def serial(bdm: dict[str, Any]) -> str:
    return volume_id(bdm)[:20]


def blockdev(bdm: dict[str, Any]) -> dict[str, Any]:
    """The ``blockdev-add`` arguments of a volume (``DriverError`` for a connection this
    driver cannot open)."""
    info = bdm.get("connection_info") or {}
    kind = info.get("driver_volume_type")
    data = info.get("data") or {}
    if kind == "file":
        path = data.get("path")
    elif kind == "nfs" and data.get("export") and data.get("name"):
        path = os.path.join(str(data["export"]), str(data["name"]))
    else:
        raise DriverError(f"volume {volume_id(bdm)}: the QEMU driver cannot open "
                          f"'{kind}' volumes")
    if not isinstance(path, str) or not os.path.isabs(path) or not os.path.exists(path):
        raise DriverError(f"volume {volume_id(bdm)}: no file at {path}")
    fmt = str(data.get("format") or "raw")
    if fmt not in _FORMATS:
        raise DriverError(f"volume {volume_id(bdm)}: unknown format {fmt}")
    node, _ = qemu_ids(bdm)
    readonly = bdm.get("mode") == "ro" or data.get("access_mode") == "ro"
    return {"driver": fmt, "node-name": node, "read-only": readonly,
            "discard": "unmap", "cache": {"direct": False, "no-flush": False},
            "file": {"driver": "file", "filename": path, "read-only": readonly}}


def device_args(bdm: dict[str, Any], slot: str) -> dict[str, Any]:
    node, device = qemu_ids(bdm)
    args: dict[str, Any] = {"driver": "virtio-blk-pci", "drive": node, "id": device,
                            "serial": serial(bdm)}
    if bdm.get("multiattach"):
        args["share-rw"] = True  # other guests write the same volume (libvirt <shareable/>)
    if slot:
        args["bus"] = slot
    return args


class GuestDisks:
    """Command line and hot-plug of guests' volumes (see the module docstring)."""

    def __init__(self, detach_timeout: float = DETACH_TIMEOUT) -> None:
        self.detach_timeout = detach_timeout

    @staticmethod
    def argv(bdms: list[dict[str, Any]], slots: dict[str, str]) -> list[str]:
        """The volumes' part of QEMU's command line (each on its recorded slot, if any; a
        root volume, boot index 0, is the first boot device)."""
        out: list[str] = []
        for bdm in bdms:
            args = device_args(bdm, slots.get(volume_id(bdm), ""))
            if bdm.get("boot_index") == 0:  # the root disk of a volume-backed guest
                args["bootindex"] = 1
            dev = ",".join(f"{k}={'on' if v is True else v}" for k, v in args.items()
                           if k != "driver")
            out += ["-blockdev", json.dumps(blockdev(bdm), separators=(",", ":")),
                    "-device", f"{args['driver']},{dev}"]
        return out

    async def hot_add(self, qmp: QmpCall, bdm: dict[str, Any], slot: str) -> None:
        """Give a running QEMU the volume's disk."""
        spec = blockdev(bdm)
        try:
            await qmp("blockdev-add", spec)
        except QMPError as exc:
            raise DriverError(f"QEMU cannot open volume {volume_id(bdm)}: {exc}") from exc
        await add_device(qmp, device_args(bdm, slot),
                         ("blockdev-del", {"node-name": spec["node-name"]}),
                         f"QEMU refused the disk of volume {volume_id(bdm)}")

    async def hot_remove(self, qmp: QmpCall, bdm: dict[str, Any]) -> None:
        """Unplug the volume's disk from a running QEMU; returns once the guest released it
        (``DriverError`` after ``detach_timeout``). A disk QEMU does not have is no error."""
        node, device = qemu_ids(bdm)
        await remove_device(qmp, device, self.detach_timeout, f"volume {volume_id(bdm)}",
                            ("blockdev-del", {"node-name": node}))

    @staticmethod
    async def resize(qmp: QmpCall, bdm: dict[str, Any], new_size_gb: int) -> None:
        """Tell a running QEMU (and so the guest) that the volume's file grew."""
        node, _ = qemu_ids(bdm)
        try:
            await qmp("block_resize", {"node-name": node, "size": int(new_size_gb) << 30})
        except QMPError as exc:
            raise DriverError(f"QEMU could not resize volume {volume_id(bdm)}: "
                              f"{exc}") from exc
