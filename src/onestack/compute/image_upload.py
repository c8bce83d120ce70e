"""Storing a file as an image's data through the in-process image manager (the agents'
snapshots, the empty image of a volume-backed server's snapshot)."""

from __future__ import annotations

from typing import Any

from onestack.common.context import RequestContext


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
