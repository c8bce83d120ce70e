"""Storing a file as an image's data through the in-process image manager (the agents'
snapshots, the empty image of a volume-backed server's snapshot)."""

from __future__ import annotations

import logging
from typing import Any

from onestack.common.context import RequestContext

LOG = logging.getLogger(__name__)


def image_uploader(images: Any) -> Any:
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


def image_dropper(images: Any) -> Any:
    """``drop(image_id)`` deleting an image compute made (best effort: gone already is fine,
    a failure is logged)."""

    def drop(image_id: str) -> None:
        try:
            images.delete(RequestContext.admin(), image_id)
        except Exception as exc:  # noqa: BLE001 - the image may be gone or in use
            LOG.warning("image %s could not be deleted: %s", image_id, exc)

    return drop
