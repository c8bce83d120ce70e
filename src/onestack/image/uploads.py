"""Image data coming in: uploads (streamed, hashed, inspected, quota-checked) and staging, and
activation. Part of ``ImageManager`` (``UploadStore``)."""

from __future__ import annotations

import json
import subprocess
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from onestack.common.context import RequestContext
from onestack.common.errors import APIError, BadRequest, Conflict, NotFound, PayloadTooLarge
from onestack.common.timeutils import utcnow
from onestack.db.image import Image
from onestack.drivers.imagestore.base import StoredData
from onestack.image import formats
from onestack.image.records import (
    QUOTA_STATUSES,
    STAGED_STATUSES,
    UPLOADING_STATUSES,
    ImageInfo,
    ImageRecords,
    _limit_child,
)


class UploadStore(ImageRecords):
    """Image data coming in: uploads (streamed, hashed, inspected, quota-checked) and staging, and
    activation."""

    # ------------------------------------------------------------------ upload
    def usage(self, owner: str | None) -> int:
        """Bytes of image data ``owner`` holds (the quota's measure)."""
        with self.db.reader() as s:
            stored = s.scalar(select(func.coalesce(func.sum(Image.size), 0)).where(
                Image.owner == owner, Image.status.in_(QUOTA_STATUSES))) or 0
        return int(stored)

    def limit_bytes(self, owner: str | None, s: Session | None = None) -> int:
        """Bytes of image data ``owner`` may hold (-1: unlimited): ``quota_bytes``, or with
        ``unified_limits`` the project's ``image_size_total`` (MiB), as Glance's
        ``use_keystone_limits`` (a resource without a registered limit allows nothing)."""
        if self.unified_limits is None:
            return self.quota_bytes if self.quota_bytes > 0 else -1
        if s is None:
            with self.db.reader() as r:
                found = self.unified_limits.for_project(r, owner or "")
        else:
            found = self.unified_limits.for_project(s, owner or "")
        mib = found.get("image_size_total", 0)
        return -1 if mib < 0 else mib * 1024 * 1024

    def unified_usage(self, owner: str | None) -> dict[str, dict[str, int]]:
        """``/v2/info/usage``: each of Glance's four limits (-1: unlimited) and its usage."""
        with self.db.reader() as s:
            found = (self.unified_limits.for_project(s, owner or "")
                     if self.unified_limits is not None else None)

            def limit(name: str) -> int:
                if found is None:
                    return -1
                value = found.get(name, 0)
                return value * 1024 * 1024 if value > 0 and name.endswith("_total") \
                    and name != "image_count_total" else value
            count = (select(func.count()).select_from(Image)
                     .where(Image.owner == owner))
            staged = select(func.coalesce(func.sum(Image.size), 0)).where(
                Image.owner == owner, Image.status.in_(STAGED_STATUSES))
            return {
                "image_size_total": {"limit": self.limit_bytes(owner, s),
                                     "usage": self.usage(owner)},
                "image_stage_total": {"limit": limit("image_stage_total"),
                                      "usage": int(s.scalar(staged) or 0)},
                "image_count_total": {"limit": limit("image_count_total"),
                                      "usage": int(s.scalar(count.where(
                                          Image.status != "deleted")) or 0)},
                "image_count_uploading": {"limit": limit("image_count_uploading"),
                                          "usage": int(s.scalar(count.where(
                                              Image.status.in_(UPLOADING_STATUSES))) or 0)}}

    def _check_count(self, s: Session, owner: str | None, resource: str, where: Any) -> None:
        """Glance's ``use_keystone_limits`` count limits (``image_count_total``,
        ``image_count_uploading``): one more must fit (a resource without a registered
        limit allows none); 413 otherwise."""
        if self.unified_limits is None:
            return
        limit = self.unified_limits.for_project(s, owner or "").get(resource, 0)
        if limit < 0:
            return
        used = int(s.scalar(select(func.count()).select_from(Image).where(
            Image.owner == owner, where)) or 0)
        if used + 1 > limit:
            raise PayloadTooLarge(f"Resource {resource} is over limit of {limit} due to "
                                  f"current usage {used} and delta 1")

    def _check_staged(self, s: Session, owner: str | None, length: int | None) -> None:
        """``image_stage_total`` (MiB) of data staged for import."""
        if self.unified_limits is None:
            return
        mib = self.unified_limits.for_project(s, owner or "").get("image_stage_total", 0)
        if mib < 0:
            return
        used = int(s.scalar(select(func.coalesce(func.sum(Image.size), 0)).where(
            Image.owner == owner, Image.status.in_(STAGED_STATUSES))) or 0)
        if used + (length or 0) > mib * 1024 * 1024 or (mib == 0 and length is None):
            raise PayloadTooLarge(f"Resource image_stage_total is over limit of {mib} MiB "
                                  f"due to current usage {used} bytes")

    def quota_left(self, owner: str | None) -> int | None:
        """Bytes ``owner`` may still store (None: unlimited)."""
        limit = self.limit_bytes(owner)
        if limit < 0:
            return None
        return max(0, limit - self.usage(owner))

    def begin_upload(self, ctx: RequestContext, image_id: str, staging: bool,
                     length: int | None) -> tuple[ImageInfo, int | None]:
        """Move the image to ``saving`` (or ``uploading`` for stage) before data arrives.

        Returns the image and the quota left (None: unlimited). 409 when the image is not
        queued, 400 when its formats are unset, 413 when ``length`` exceeds the quota.
        """
        with self.db.transaction() as s:
            img = self.writable_row(ctx, s, image_id,
                                    "stage_image" if staging else "upload_image")
            if img.status != "queued":
                raise Conflict(f"Image status transition from {img.status} to "
                               f"{'uploading' if staging else 'saving'} is not allowed")
            if not staging and (img.disk_format is None or img.container_format is None):
                raise BadRequest("Properties disk_format, container_format must be set prior "
                                 "to saving data.")
            self._check_count(s, img.owner, "image_count_uploading",
                              Image.status.in_(UPLOADING_STATUSES))
            if staging:
                self._check_staged(s, img.owner, length)
            left = None
            limit = self.limit_bytes(img.owner, s)
            if limit >= 0:
                used = s.scalar(select(func.coalesce(func.sum(Image.size), 0)).where(
                    Image.owner == img.owner, Image.status.in_(QUOTA_STATUSES))) or 0
                left = max(0, limit - int(used))
                if length is not None and length > left:
                    raise PayloadTooLarge(
                        f"Denying attempt to upload image because it exceeds the quota: The "
                        f"size of the data {length} will exceed the limit. {left} bytes "
                        "remaining.")
            img.status = "uploading" if staging else "saving"
            self.touch(img)
            s.flush()
            return self._load(s, img), left

    def abort_upload(self, image_id: str, staging: bool) -> None:
        """Return an image whose upload failed to ``queued`` (no data is kept)."""
        with self.db.transaction() as s:
            s.execute(update(Image).where(
                Image.id == image_id,
                Image.status == ("uploading" if staging else "saving")).values(
                status="queued", updated_at=utcnow()))

    def finish_upload(self, image_id: str, stored: StoredData, staging: bool,
                      store_id: str | None = None,
                      verdict: formats.Verdict | None = None) -> ImageInfo:
        """Record uploaded (or staged) data; the image becomes active (or stays uploading).

        ``verdict``: the format inspection of the data as it arrived (API uploads); its
        virtual size is used when it has one. If the image was deleted or changed status
        meanwhile the data is dropped and 409/404 raised, so no orphaned data survives.
        """
        virtual_size = None
        if verdict is not None:
            virtual_size = verdict.virtual_size
        if not staging and virtual_size is None:
            virtual_size = self.inspect(stored, image_id)
        try:
            with self.db.transaction() as s:
                img = s.get(Image, image_id)
                expected = "uploading" if staging else "saving"
                if img is None:
                    raise NotFound(f"Image {image_id} was deleted during the upload.")
                if img.status != expected:
                    raise Conflict(f"Image {image_id} changed status to {img.status} during "
                                   "the upload.")
                if staging:
                    internal = dict(img.internal or {})
                    internal["staged"] = {"location": stored.location, "size": stored.size,
                                          "md5": stored.md5, "sha512": stored.sha512}
                    img.internal = internal
                    img.size = stored.size
                else:
                    self._activate(img, stored, virtual_size, store_id or self.stores.default_id)
                self.touch(img)
                s.flush()
                return self._load(s, img)
        except APIError:
            self._drop_data(stored.location)
            raise

    @staticmethod
    def _activate(img: Image, stored: StoredData, virtual_size: int | None,
                  store_id: str) -> None:
        internal = dict(img.internal or {})
        internal["locations"] = {store_id: stored.location}
        img.internal = internal
        img.location = stored.location
        img.size = stored.size
        img.checksum = stored.md5
        img.os_hash_algo = "sha512"
        img.os_hash_value = stored.sha512
        img.virtual_size = virtual_size
        img.status = "active"

    def format_inspector(self, info: ImageInfo) -> formats.Inspector:
        """An inspector for data arriving for ``info`` (formats.py)."""
        return formats.Inspector(info.disk_format or "", info.container_format,
                                 self.require_format_match)

    def check_format(self, stored: StoredData, disk_format: str | None,
                     container_format: str | None) -> formats.Verdict:
        """Inspect stored (staged) data against ``disk_format``: reads its first MiB and its
        last bytes only; raises ``FormatRefused`` (415) as Glance does."""
        def read(offset: int, length: int) -> bytes:
            return b"".join(self.stores.open(stored.location, offset, length, 1 << 20))

        return formats.inspect_stored(read, stored.size, disk_format or "", container_format,
                                      self.require_format_match)

    def inspect(self, stored: StoredData, image_id: str,
                disk_format: str | None = None) -> int | None:
        """The virtual size of the data (``qemu-img info``), or None when unknown.

        Raw and ISO data are their own virtual size. A qcow2 image naming a backing file or
        an external data file is refused (400): it could make a hypervisor read host files.
        """
        if disk_format is None:
            info = self.get_internal(image_id)
            disk_format = info.disk_format if info else None
        if disk_format in ("raw", "iso"):
            return stored.size
        fmt = {"qcow2": "qcow2", "vmdk": "vmdk", "vdi": "vdi", "vhd": "vpc",
               "vhdx": "vhdx", "ploop": "parallels"}.get(disk_format or "")
        path = self.stores.local_path(stored.location)
        if not fmt or not path or not self.qemu_img:
            return None
        try:
            res = subprocess.run(
                [self.qemu_img, "info", "--output=json", "-f", fmt, path],
                capture_output=True, text=True, timeout=30, preexec_fn=_limit_child)
        except (OSError, subprocess.TimeoutExpired):
            return None
        if res.returncode != 0:
            return None
        try:
            data = json.loads(res.stdout)
        except ValueError:
            return None
        if fmt == "qcow2" and (data.get("backing-filename") or
                               (data.get("format-specific", {}).get("data", {})
                                .get("data-file"))):
            self._drop_data(stored.location)
            raise BadRequest("Image data is a qcow2 file with a backing file or external data "
                             "file; such images are not accepted.")
        value = data.get("virtual-size")
        return int(value) if isinstance(value, int) else None
