"""Block device mappings of a boot request (``block_device_mapping_v2`` and the legacy
``block_device_mapping``), checked as Nova's API checks them, and turned into the server's
block device records (``compute.block_devices``).

What a request may ask for:

* the image on the local root disk (``image`` -> ``local``, boot index 0: the plain boot);
* blank local disks (``blank`` -> ``local``: the flavor's ephemeral and swap disks);
* volumes (destination ``volume``): an existing volume (``volume``), a new volume made from
  an image, a snapshot or nothing (``image``/``snapshot``/``blank``, ``volume_size`` GiB).
  The one with boot index 0 is the root disk: the server is *volume-backed* (its ``image``
  is empty; the image properties come from the image or from the volume's image metadata).

New volumes are made by the agent that builds the server, before the guest starts (Nova's
compute does the same); an existing volume is reserved for the server in the request.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import uuid4

from onestack.common.context import RequestContext
from onestack.common.errors import APIError, BadRequest
from onestack.compute import schemas
from onestack.compute.volumes import ComputeVolumes

_INVALID = "Block Device Mapping is Invalid: "


@dataclass
class BootDisks:
    """The outcome: the image of the boot (None: volume-backed), its properties when the
    root is a volume, and the volume records to keep with the server."""

    image_ref: str | None
    volumes: list[dict[str, Any]] = field(default_factory=list)
    root_properties: dict[str, Any] | None = None
    #: Image whose kernel/ramdisk a volume-backed guest boots with (its root's source).
    boot_image: str | None = None
    min_disk: int = 0

    @property
    def volume_backed(self) -> bool:
        return any(b.get("boot_index") == 0 for b in self.volumes)


def _legacy(bdm: dict[str, Any]) -> dict[str, Any]:
    """A ``block_device_mapping`` (v1) entry in v2 terms."""
    out: dict[str, Any] = {"destination_type": "volume",
                           "device_name": bdm.get("device_name"),
                           "delete_on_termination": bdm.get("delete_on_termination", False),
                           "volume_size": bdm.get("volume_size")}
    if bdm.get("snapshot_id"):
        out.update(source_type="snapshot", uuid=bdm["snapshot_id"])
    elif bdm.get("volume_id"):
        out.update(source_type="volume", uuid=bdm["volume_id"])
    else:
        raise BadRequest(_INVALID + "a legacy mapping needs a volume_id or snapshot_id.")
    if bdm.get("device_name") in ("/dev/vda", "vda"):
        out["boot_index"] = 0
    return out


def image_mappings(image: dict[str, Any]) -> list[dict[str, Any]]:
    """The block device mappings an image carries (a snapshot of a volume-backed server:
    ``block_device_mapping`` with ``bdm_v2``), as request entries; [] for other images."""
    props = image.get("properties") or {}
    raw = props.get("block_device_mapping")
    if not raw or str(props.get("bdm_v2", "")).lower() != "true":
        return []
    try:
        items = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        raise BadRequest(_INVALID + "the image's block_device_mapping is not JSON.") from None
    if not isinstance(items, list):
        raise BadRequest(_INVALID + "the image's block_device_mapping is not a list.")
    out = []
    for item in items[:32]:
        if not isinstance(item, dict) or item.get("source_type") not in ("snapshot",
                                                                          "volume", "blank"):
            continue
        uuid = item.get("snapshot_id") or item.get("volume_id")
        out.append({"source_type": item["source_type"], "destination_type": "volume",
                    "uuid": uuid, "volume_size": item.get("volume_size"),
                    "boot_index": item.get("boot_index"),
                    "device_name": item.get("device_name"),
                    "delete_on_termination": item.get("delete_on_termination", False),
                    "volume_type": item.get("volume_type")})
    return out


def _truth(value: Any) -> bool:
    return value in (True, "True", "true", "TRUE", "1", "yes", "Yes", "on", "On")


def _boot_index(bdm: dict[str, Any]) -> int | None:
    raw = bdm.get("boot_index")
    if raw is None or raw == "":
        return None
    try:
        n = int(raw)
    except (TypeError, ValueError):
        raise BadRequest(_INVALID + f"boot_index {raw!r} is not an integer.") from None
    return n if n >= 0 else None


def parse(ctx: RequestContext, srv: dict[str, Any], image_ref: Any,
          volumes: ComputeVolumes | None,
          image_info: Callable[[str], dict[str, Any]], count: int) -> BootDisks:
    """Check the request's mappings (400 with Nova's messages) and return what to do.
    ``volumes``: the ``ComputeVolumes`` seam or None; ``image_info(id)``: an active
    image's facts (400 when unknown)."""
    entries = [dict(b) for b in srv.get("block_device_mapping_v2") or []]
    entries += [_legacy(b) for b in srv.get("block_device_mapping") or []]
    # An image made of a volume-backed server brings its own mappings; its root replaces
    # the request's image root (what clients send along with imageRef), as in Nova.
    boot_image = image_ref or next((b.get("uuid") for b in entries
                                    if b.get("source_type") == "image"
                                    and _boot_index(b) == 0), None)
    if isinstance(boot_image, str) and schemas.is_uuid(boot_image):
        defined = image_mappings(image_info(boot_image))
        if any(_boot_index(b) == 0 for b in defined):
            entries = [b for b in entries if not (b.get("source_type") == "image"
                                                  and _boot_index(b) == 0)]
            image_ref = None
        entries += defined
    out = BootDisks(image_ref=image_ref or None)
    boot_indexes: list[int] = []
    for bdm in entries:
        src = bdm.get("source_type")
        dst = bdm.get("destination_type") or ("volume" if src in ("volume", "snapshot")
                                               else "local")
        index = _boot_index(bdm)
        if index is not None:
            boot_indexes.append(index)
        if dst == "local":
            if src == "image" and index == 0:
                out.image_ref = out.image_ref or bdm.get("uuid")
                continue
            if src == "blank":
                continue
            raise BadRequest(_INVALID + "Mapping image to local is not supported.")
        if volumes is None:
            raise BadRequest(_INVALID + "volumes are not available in this cloud.")
        uuid = bdm.get("uuid")
        if src != "blank" and not (isinstance(uuid, str) and schemas.is_uuid(uuid)):
            raise BadRequest(_INVALID + f"{src} uuid {uuid!r} is not valid.")
        size = bdm.get("volume_size")
        size = int(size) if size not in (None, "") else None
        record: dict[str, Any] = {
            "bdm_uuid": str(uuid4()), "source_type": src, "destination_type": "volume",
            "uuid": uuid,
            "volume_id": None, "attachment_id": None, "volume_size": size,
            "boot_index": index, "device": bdm.get("device_name") or None,
            "tag": bdm.get("tag"), "volume_type": bdm.get("volume_type"),
            "delete_on_termination": _truth(bdm.get("delete_on_termination", False))}
        if src == "volume":
            if count > 1:
                raise BadRequest("Cannot attach one or more volumes to multiple "
                                 "instances")
            try:
                vol = volumes.get(ctx, uuid)
            except APIError:
                raise BadRequest(_INVALID + f"failed to get volume {uuid}.") from None
            if vol["status"] != "available" and not (vol["multiattach"]
                                                     and vol["status"] == "in-use"):
                raise BadRequest(f"Invalid volume: volume '{uuid}' status must be "
                                 f"'available'. Currently in '{vol['status']}'")
            if index == 0 and not vol.get("bootable", True):
                # Nova's InvalidBDMVolumeNotBootable: the root must be a bootable volume.
                raise BadRequest(f"Block Device {uuid} is not bootable.")
            record["volume_id"] = uuid
            if index == 0:
                out.root_properties = dict(vol.get("image_properties") or {})
                out.boot_image = vol.get("image_id")
        elif src == "snapshot":
            try:
                snap = volumes.get_snapshot(ctx, uuid)
            except APIError:
                raise BadRequest(_INVALID + f"failed to get snapshot {uuid}.") from None
            if snap["status"] != "available":
                raise BadRequest(f"Invalid snapshot: snapshot {uuid} is {snap['status']}.")
            record["volume_size"] = size or snap["size"]
            if index == 0:
                out.root_properties = dict(snap.get("image_properties") or {})
                out.boot_image = snap.get("image_id")
        elif src == "image":
            if not size:
                raise BadRequest(_INVALID + "Images with destination_type 'volume' need "
                                 "to have a non-zero size specified")
            image = image_info(uuid)
            need = max(int(image.get("min_disk") or 0),
                       -(-int(image.get("size") or 0) // (1 << 30)))
            if size < need:
                raise BadRequest(f"Volume is smaller than the minimum size specified in "
                                 f"image metadata. Volume size is {size << 30} bytes, "
                                 f"minimum size is {need << 30} bytes.")
            if index == 0:
                out.root_properties = dict(image.get("properties") or {})
                out.boot_image = uuid
        elif src == "blank":
            if not size:
                raise BadRequest(_INVALID + "blank volumes need a volume_size.")
        else:
            raise BadRequest(_INVALID + f"unknown source_type {src!r}.")
        out.volumes.append(record)
    if len(boot_indexes) != len(set(boot_indexes)):
        raise BadRequest(_INVALID + "Boot sequence for the instance and image/block device "
                         "mapping combination is not valid.")
    if out.volume_backed:
        out.image_ref = None
    elif not out.image_ref:
        if entries:
            raise BadRequest(_INVALID + "Boot sequence for the instance and image/block "
                             "device mapping combination is not valid.")
        raise BadRequest("Missing imageRef attribute")
    return out
