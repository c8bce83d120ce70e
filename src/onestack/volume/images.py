"""What the volume service needs from the image service (a typed seam): an image a caller
may see, with a local file of its data, to create a volume from."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from onestack.common.context import RequestContext
from onestack.common.errors import BadRequest


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
    """The image service as the volume service uses it (in process: ``image/for_volume``'s
    ``LocalImages``)."""

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
