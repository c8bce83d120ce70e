"""The volume service's view of the image service, in process (``volume.images``'s
``ImageSource`` over the image manager): an image's data as a local file to create a volume
from, new images for a volume's data, and the volume snapshot a server snapshot boots from."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable

from onestack.common.context import RequestContext
from onestack.common.errors import BadRequest, NotFound
from onestack.image.manager import ImageManager
from onestack.volume.images import VolumeImage


class LocalImages:
    """``ImageSource`` over the in-process image manager."""

    def __init__(self, images: ImageManager) -> None:
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
