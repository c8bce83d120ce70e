"""What a crash left: images stuck saving or importing, staged and orphaned data. Part of
``ImageManager`` (``RecoveryStore``)."""

from __future__ import annotations

import os

from sqlalchemy import select, update

from onestack.common.context import RequestContext
from onestack.common.errors import Conflict, Forbidden, NotFound
from onestack.common.timeutils import utcnow
from onestack.db.image import Image, ImageTask
from onestack.image.records import LOG, ImageRecords


class RecoveryStore(ImageRecords):
    """What a crash left: images stuck saving or importing, staged and orphaned data."""

    # ------------------------------------------------------------------ recovery
    def recover(self) -> None:
        """After a restart: roll back interrupted uploads/imports, sweep orphaned data."""
        with self.db.transaction() as s:
            s.execute(update(Image).where(Image.status == "saving").values(
                status="queued", updated_at=utcnow()))
            for img in s.scalars(select(Image).where(Image.status.in_(("uploading",
                                                                        "importing")))):
                staged = (img.internal or {}).get("staged")
                if staged and self.store.local_path(staged["location"]) and os.path.exists(
                        self.store.local_path(staged["location"]) or ""):
                    img.status = "uploading"
                else:
                    internal = dict(img.internal or {})
                    internal.pop("staged", None)
                    img.internal = internal
                    img.status = "queued"
                    img.size = None
            s.execute(update(ImageTask).where(ImageTask.status.in_(("pending", "processing")))
                      .values(status="failure", message="interrupted by a restart",
                              updated_at=utcnow()))
            keep = set()
            for img in s.scalars(select(Image)):
                internal = dict(img.internal or {})
                if internal.get("importing_to"):  # a copy-image cut short
                    internal["failed_import"] = [*internal.get("failed_import", []),
                                                 *internal["importing_to"]]
                    internal["importing_to"] = []
                    img.internal = internal
                keep.update(self.locations(img).values())
                staged = internal.get("staged")
                if staged:
                    keep.add(staged["location"])
        for store in self.stores:
            try:
                removed = store.cleanup(keep)
                if removed:
                    LOG.info("removed %d orphaned image data files from store %s", removed,
                             store.store_id)
            except OSError:
                LOG.warning("cleanup of image store %s failed", store.store_id, exc_info=True)

    def delete_from_store(self, ctx: RequestContext, image_id: str, store_id: str) -> None:
        """``DELETE /v2/stores/{store}/{image}``: drop one copy of an active image's data."""
        self.stores.get(store_id)
        with self.db.transaction() as s:
            img = self.writable_row(ctx, s, image_id, "delete_image_location")
            if img.status != "active":
                raise Conflict(f"Image {image_id} must be active to delete its data from a "
                               f"store (its status is {img.status}).")
            locs = self.locations(img)
            if store_id not in locs:
                raise NotFound(f"Image {image_id} has no data in store {store_id}.")
            if len(locs) == 1:
                raise Forbidden(f"Store {store_id} holds the last copy of image {image_id}; "
                                "delete the image instead.")
            gone = locs.pop(store_id)
            internal = dict(img.internal or {})
            internal["locations"] = locs
            img.internal = internal
            img.location = locs[self.stores.order(locs.keys())[0]]
            self.touch(img)
        self._drop_data(gone)

    def has_images(self, name: str) -> bool:
        with self.db.reader() as s:
            return s.scalar(select(Image.id).where(Image.name == name).limit(1)) is not None
