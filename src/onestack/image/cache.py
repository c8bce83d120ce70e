"""The image cache (Glance's ``/v2/cache`` API): local copies of image data.

Admins queue an active image (``PUT /v2/cache/{id}``, 202); a worker thread copies its data
from whichever store holds it (a slower file store, or a URL location of the ``web`` store)
into ``DATA/images/cache/<id>``, through a temporary file that is renamed once the copy's md5
matches the image's checksum. Downloads are then served from the cached copy (``hits``
counts them). ``GET /v2/cache`` lists ``cached_images`` and ``queued_images``;
``DELETE /v2/cache/{id}`` drops one image from both; ``DELETE /v2/cache`` clears the cache,
the queue or both (header ``x-image-cache-clear-target``: ``cache``, ``queue``, ``both``).
Deleting an image drops its cached copy (a copy in another API process goes when that process
next lists its cache). Hit counts and access times live in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from onestack.api.routes import serves
from onestack.common.errors import BadRequest, NotFound
from onestack.drivers.imagestore.base import FileSlice, StoreError

if TYPE_CHECKING:
    from onestack.api.app import ApiRequest
    from onestack.image.manager import ImageManager

LOG = logging.getLogger(__name__)
CLEAR_TARGETS = ("both", "cache", "queue")


class ImageCache:
    """Cached copies of image data under ``root`` and the queue of images to cache."""

    def __init__(self, manager: ImageManager, root: Path) -> None:
        self.m = manager
        self.root = Path(root)
        self.tmp = self.root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True, mode=0o700)
        for leftover in self.tmp.iterdir():  # copies cut short by a restart
            leftover.unlink(missing_ok=True)
        self._lock = threading.Lock()
        self._queued: dict[str, None] = {}
        self._hits: dict[str, int] = {}
        self._accessed: dict[str, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ data
    def _path(self, image_id: str) -> Path | None:
        if not image_id or "/" in image_id or image_id.startswith("."):
            return None
        return self.root / image_id

    def cached_ids(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if p.is_file())

    def open(self, image_id: str, offset: int, length: int,
             chunk_size: int) -> Iterator[bytes] | None:
        """The cached data of ``image_id`` (counting a hit), or None when not cached."""
        path = self._path(image_id)
        try:
            fh = open(path, "rb", buffering=0) if path else None  # noqa: SIM115
        except FileNotFoundError:
            return None
        if fh is None:
            return None
        with self._lock:
            self._hits[image_id] = self._hits.get(image_id, 0) + 1
            self._accessed[image_id] = time.time()

        return FileSlice(fh, offset, length, chunk_size)

    def fill(self, image_id: str) -> None:
        """Copy one queued image into the cache (worker thread); failures are logged."""
        try:
            info = self.m.get_internal(image_id)
            path = self._path(image_id)
            if info is None or info.status != "active" or not info.location or path is None:
                return
            tmp = self.tmp / f"{image_id}.{secrets.token_hex(6)}"
            md5 = hashlib.md5(usedforsecurity=False)
            try:
                with open(tmp, "xb", buffering=0) as out:
                    for chunk in self.m.stores.open(info.location, chunk_size=4 << 20):
                        md5.update(chunk)
                        out.write(chunk)
                    os.fsync(out.fileno())
                if info.checksum and md5.hexdigest() != info.checksum:
                    raise StoreError("cached copy does not match the image checksum")
                with self._lock:
                    if image_id not in self._queued:  # dequeued or cleared meanwhile
                        return
                    os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
        except (StoreError, OSError) as exc:
            LOG.warning("caching image %s failed: %s", image_id, exc)
        finally:
            with self._lock:
                self._queued.pop(image_id, None)

    def forget(self, image_id: str) -> None:
        """Drop ``image_id`` from the cache and the queue (idempotent)."""
        with self._lock:
            self._queued.pop(image_id, None)
            self._hits.pop(image_id, None)
            self._accessed.pop(image_id, None)
            path = self._path(image_id)
            if path is not None:
                with contextlib.suppress(OSError):
                    path.unlink(missing_ok=True)

    # ------------------------------------------------------------------ API
    @serves("GET", "/v2/cache")
    async def list(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("cache_list", {"project_id": req.ctx.project_id or ""})
        return await run_in_threadpool(self._list)

    def _list(self) -> dict[str, Any]:
        cached = []
        for image_id in self.cached_ids():
            if self.m.get_internal(image_id) is None:  # deleted through another process
                self.forget(image_id)
                continue
            try:
                st = (self.root / image_id).stat()
            except FileNotFoundError:
                continue
            with self._lock:
                cached.append({"image_id": image_id, "hits": self._hits.get(image_id, 0),
                               "last_accessed": self._accessed.get(image_id, 0.0),
                               "last_modified": st.st_mtime, "size": st.st_size})
        with self._lock:
            queued = list(self._queued)
        return {"cached_images": cached, "queued_images": queued}

    @serves("PUT", "/v2/cache/{image_id}")
    async def queue(self, req: ApiRequest) -> Response:
        req.enforce("cache_image", {"project_id": req.ctx.project_id or ""})
        image_id = req.param("image_id")
        info = await req.run(self.m.get_internal, image_id)
        if info is None:
            raise NotFound(f"No image found with ID {image_id}")
        if info.status != "active":
            raise BadRequest(f"Only active images can be cached (image {image_id} is "
                             f"{info.status}).")
        with self._lock:
            already = image_id in self._queued
            self._queued[image_id] = None
        if not already and not (self.root / image_id).exists():
            task = asyncio.create_task(run_in_threadpool(self.fill, image_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            with self._lock:
                if not already:
                    self._queued.pop(image_id, None)
        return Response(status_code=202)

    @serves("DELETE", "/v2/cache/{image_id}")
    async def delete(self, req: ApiRequest) -> None:
        req.enforce("cache_delete", {"project_id": req.ctx.project_id or ""})
        await run_in_threadpool(self.forget, req.param("image_id"))

    @serves("DELETE", "/v2/cache")
    async def clear(self, req: ApiRequest) -> None:
        req.enforce("cache_delete", {"project_id": req.ctx.project_id or ""})
        target = req.headers.get("x-image-cache-clear-target", "").strip().lower() or "both"
        if target not in CLEAR_TARGETS:
            raise BadRequest(f"Invalid x-image-cache-clear-target {target!r}; use one of "
                             f"{', '.join(CLEAR_TARGETS)}.")
        await run_in_threadpool(self._clear, target)

    def _clear(self, target: str) -> None:
        with self._lock:
            if target in ("both", "queue"):
                self._queued.clear()
            ids = self.cached_ids() if target in ("both", "cache") else []
        for image_id in ids:
            self.forget(image_id)
