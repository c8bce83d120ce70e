"""The seam between compute and the image service (Glance): ``ComputeImages`` is all that
compute asks of it (boot information, Nova's image proxy, storing snapshot data), and the two
closures the agents get (``image_uploader``, ``image_dropper``).

``onestack up`` passes the in-process ``onestack.image.manager.ImageManager``, which has these
methods; a compute host without the image service's database would pass an HTTP
implementation (``/v2/images``) of the same protocol.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from onestack.common.context import RequestContext
from onestack.drivers.imagestore.base import StoredData

if TYPE_CHECKING:
    from onestack.image.records import ListQuery

LOG = logging.getLogger(__name__)


class ImageView(Protocol):
    """The image fields compute reads (``ImageInfo`` of the image service)."""

    id: str
    name: str | None
    status: str
    size: int | None
    min_ram: int
    min_disk: int
    properties: dict[str, Any]
    created_at: dt.datetime
    updated_at: dt.datetime


class ImageWriter(Protocol):
    """Writing one image's data (the image store's writer)."""

    def write(self, chunk: bytes) -> None: ...

    def commit(self) -> StoredData: ...

    def abort(self) -> None: ...


class ImageData(Protocol):
    """Where image data is written."""

    def begin(self, image_id: str, staging: bool = False) -> ImageWriter: ...


class ComputeImages(Protocol):
    """What the compute API and agents need of the image service (see module docstring)."""

    store: ImageData

    def boot_info(self, ctx: RequestContext, image_id: str) -> dict[str, Any]:
        """id, name, status, size, min_ram, min_disk and properties of an image ``ctx``
        may see (404 otherwise)."""
        ...

    def create(self, ctx: RequestContext, body: dict[str, Any]) -> ImageView:
        """A new queued image (snapshots and backups of servers)."""
        ...

    def get(self, ctx: RequestContext, image_id: str) -> ImageView: ...

    def parse_list_query(self, query: Mapping[str, str], default_limit: int,
                         max_limit: int) -> ListQuery: ...

    def list(self, ctx: RequestContext, q: ListQuery) -> tuple[list[ImageView], bool]: ...

    def update(self, ctx: RequestContext, image_id: str,
               changes: list[tuple[str, list[str], Any]]) -> ImageView: ...

    def delete(self, ctx: RequestContext, image_id: str) -> None: ...

    def begin_upload(self, ctx: RequestContext, image_id: str, staging: bool,
                     length: int | None) -> tuple[ImageView, int | None]: ...

    def finish_upload(self, image_id: str, stored: StoredData, staging: bool) -> ImageView: ...

    def abort_upload(self, image_id: str, staging: bool) -> None: ...


def image_uploader(images: ComputeImages) -> Callable[[str, str], None]:
    """``upload(image_id, path)`` storing a snapshot file through the image manager."""

    def upload(image_id: str, path: str) -> None:
        ctx = RequestContext.admin()
        images.begin_upload(ctx, image_id, False, None)
        writer = images.store.begin(image_id)
        try:
            with open(path, "rb") as fh:
                while chunk := fh.read(4 << 20):
                    writer.write(chunk)
            stored = writer.commit()
        except BaseException:
            writer.abort()
            images.abort_upload(image_id, False)
            raise
        images.finish_upload(image_id, stored, False)

    return upload


def image_dropper(images: ComputeImages) -> Callable[[str], None]:
    """``drop(image_id)`` deleting an image compute made (best effort: gone already is fine,
    a failure is logged)."""

    def drop(image_id: str) -> None:
        try:
            images.delete(RequestContext.admin(), image_id)
        except Exception as exc:  # noqa: BLE001 - the image may be gone or in use
            LOG.warning("image %s could not be deleted: %s", image_id, exc)

    return drop
