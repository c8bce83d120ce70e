"""What the volume service needs from the image service (a typed seam): an image a caller
may see, with a local file of its data, to create a volume from."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from onestack.common.context import RequestContext
from onestack.common.errors import BadRequest, NotFound


@dataclass(frozen=True)
class VolumeImage:
    """An active image's facts a volume copies (``volume_image_metadata``) and its data."""

    id: str
    name: str | None
    size: int
    virtual_size: int | None
    disk_format: str
    container_format: str | None
    min_disk: int
    min_ram: int
    checksum: str | None
    path: str
    properties: dict[str, str] = field(default_factory=dict)

    def metadata(self) -> dict[str, str]:
        """Cinder's ``volume_image_metadata`` of a volume made from this image."""
        meta = {"image_id": self.id, "image_name": self.name or "",
                "checksum": self.checksum or "", "disk_format": self.disk_format,
                "container_format": self.container_format or "",
                "min_disk": str(self.min_disk), "min_ram": str(self.min_ram),
                "size": str(self.size)}
        meta.update({k: str(v) for k, v in self.properties.items()})
        return meta

    def check_fits(self, size_gb: int) -> None:
        """400 (Cinder's wording) unless the image's disk and ``min_disk`` fit in a volume
        of ``size_gb``."""
        need = -(-max(self.size, self.virtual_size or 0) // (1 << 30))
        if need > size_gb:
            raise BadRequest(f"Invalid input received: Size of specified image {need} "
                             f"GB is larger than volume size {size_gb} GB.")
        if self.min_disk > size_gb:
            raise BadRequest(f"Invalid input received: Volume size {size_gb} GB cannot "
                             f"be smaller than the image minDisk size {self.min_disk} GB.")


class ImageSource(Protocol):
    def volume_image(self, ctx: RequestContext, image_id: str) -> VolumeImage:
        """The image ``ctx`` may see, active and with local data (404/400 otherwise)."""
        ...

    def boot_snapshot(self, ctx: RequestContext, image_id: str) -> str | None:
        """The volume snapshot a Nova snapshot of a volume-backed server boots from (its
        ``block_device_mapping``'s boot index 0 with source ``snapshot``); None for other
        images (404 when ``ctx`` does not see the image)."""
        ...

    def new_image(self, ctx: RequestContext, name: str, disk_format: str,
                  container_format: str, visibility: str, protected: bool) -> str:
        """A queued image of ``ctx``'s project for a volume's data; its id."""
        ...

    def upload(self, image_id: str, chunks: Iterable[bytes]) -> None:
        """Store the data of a queued image (it becomes active)."""
        ...

    def discard(self, image_id: str) -> None:
        """Delete an image whose upload failed."""
        ...


class LocalImages:
    """``ImageSource`` over the in-process image manager."""

    def __init__(self, images: Any) -> None:
        self.images = images

    def new_image(self, ctx: RequestContext, name: str, disk_format: str,
                  container_format: str, visibility: str, protected: bool) -> str:
        info = self.images.create(ctx, {"name": name, "disk_format": disk_format,
                                        "container_format": container_format,
                                        "visibility": visibility, "protected": protected})
        return str(info.id)

    def upload(self, image_id: str, chunks: Iterable[bytes]) -> None:
        admin = RequestContext.admin()
        self.images.begin_upload(admin, image_id, False, None)
        writer = self.images.store.begin(image_id)
        try:
            for chunk in chunks:
                writer.write(chunk)
            stored = writer.commit()
        except BaseException:
            writer.abort()
            self.images.abort_upload(image_id, False)
            raise
        self.images.finish_upload(image_id, stored, False)

    def discard(self, image_id: str) -> None:
        # Best effort: the image may be gone already.
        with contextlib.suppress(Exception):
            self.images.delete(RequestContext.admin(), image_id)

    def boot_snapshot(self, ctx: RequestContext, image_id: str) -> str | None:
        info = self.images.get(ctx, image_id)  # 404 when not visible
        raw = (info.properties or {}).get("block_device_mapping")
        try:
            mappings = json.loads(raw) if isinstance(raw, str) else raw
        except ValueError:
            return None
        for bdm in mappings if isinstance(mappings, list) else []:
            if isinstance(bdm, dict) and bdm.get("source_type") == "snapshot" and \
                    str(bdm.get("boot_index")) == "0" and bdm.get("snapshot_id"):
                return str(bdm["snapshot_id"])
        return None

    def volume_image(self, ctx: RequestContext, image_id: str) -> VolumeImage:
        info = self.images.get(ctx, image_id)  # 404 when not visible
        if info.status != "active":
            raise BadRequest(f"Invalid image identifier or unable to access requested image: "
                             f"image {image_id} is {info.status}, not active.")
        path = self.images.stores.local_path(info.location) if info.location else None
        if path is None:
            raise NotFound(f"Image {image_id} has no data this volume service can read.")
        return VolumeImage(id=info.id, name=info.name, size=int(info.size or 0),
                           virtual_size=info.virtual_size,
                           disk_format=info.disk_format or "raw",
                           container_format=info.container_format,
                           min_disk=int(info.min_disk or 0), min_ram=int(info.min_ram or 0),
                           checksum=info.checksum, path=path,
                           properties=dict(info.properties or {}))
