"""Start-up work of the image service: images made from local files (the default images of
a fresh cloud, ``onestack.default_guest``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from onestack.common.context import RequestContext
from onestack.image.manager import ImageManager

LOG = logging.getLogger(__name__)


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
