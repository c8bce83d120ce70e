"""Start-up work of the image service: the default image of a fresh cloud."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from onestack.common.context import RequestContext
from onestack.config import Settings
from onestack.image.manager import ImageManager

LOG = logging.getLogger(__name__)

#: Name the default guest image is registered under (DevStack registers "cirros-...").
DEFAULT_IMAGE_NAME = "onestack-guest"


def find_guest_image(settings: Settings) -> Path | None:
    """The test guest image built by ``tools/`` (a later issue), if one is available.

    Looks for ``DATA/guest/onestack-guest.qcow2``; returns None when there is none.
    """
    candidate = settings.data_dir / "guest" / f"{DEFAULT_IMAGE_NAME}.qcow2"
    return candidate if candidate.is_file() else None


def register_default_image(manager: ImageManager, settings: Settings,
                           path: Path | None = None, owner: str | None = None) -> str | None:
    """Register the default public guest image once; a no-op without a guest image.

    Hook for the compute work: when the guest image builder has produced an image,
    ``onestack up`` uploads it as a public ``bare``/``qcow2`` image named
    ``DEFAULT_IMAGE_NAME`` so ``openstack server create --image`` works out of the box.
    Returns the image id when it registered one, None otherwise.
    """
    path = path or find_guest_image(settings)
    if path is None:
        return None
    if manager.has_images(DEFAULT_IMAGE_NAME):
        return None
    ctx = RequestContext.admin()
    ctx.project_id = owner
    image_id = create_from_file(manager, ctx, {
        "name": DEFAULT_IMAGE_NAME, "disk_format": "qcow2", "container_format": "bare",
        "visibility": "public", "owner": owner}, path)
    LOG.info("registered default image %s from %s", image_id, path)
    return image_id


def create_from_file(manager: ImageManager, ctx: RequestContext, body: dict[str, Any],
                     path: Path) -> str:
    """Create an image from ``body`` and upload ``path`` into it (aborted on any error)."""
    info = manager.create(ctx, body)
    manager.begin_upload(ctx, info.id, False, path.stat().st_size)
    writer = manager.store.begin(info.id)
    try:
        with path.open("rb") as fh:
            while chunk := fh.read(4 << 20):
                writer.write(chunk)
        stored = writer.commit()
    except BaseException:
        writer.abort()
        manager.abort_upload(info.id, False)
        raise
    manager.finish_upload(info.id, stored, False)
    return str(info.id)
