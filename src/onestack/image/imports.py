"""Interoperable image import: glance-direct, web-download, copy-image and glance-download tasks.
Part of ``ImageManager`` (``ImportStore``)."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select

from onestack.common.context import RequestContext
from onestack.common.errors import (
    APIError,
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    PayloadTooLarge,
)
from onestack.common.timeutils import utcnow
from onestack.db.image import Image, ImageProperty, ImageTask
from onestack.drivers.imagestore.base import StoredData, StoreError
from onestack.image import fetch, schemas
from onestack.image.records import (
    GLANCE_DOWNLOAD_PREFIXES,
    KNOWN_IMPORT_METHODS,
    LOG,
    ImageRecords,
    TaskRecord,
    finish_task,
    new_task,
)


class ImportStore(ImageRecords):
    """Interoperable image import: glance-direct, web-download, copy-image and glance-download
    tasks."""

    # ------------------------------------------------------------------ import
    def _import_targets(self, body: dict[str, Any], header_store: str | None) -> list[str]:
        """Store ids an import request names (``stores``, ``all_stores``, the header)."""
        stores = body.get("stores")
        all_stores = body.get("all_stores", False)
        if not isinstance(all_stores, bool):
            raise BadRequest("'all_stores' must be a boolean.")
        if not isinstance(body.get("all_stores_must_succeed", True), bool):
            raise BadRequest("'all_stores_must_succeed' must be a boolean.")
        if stores is not None:
            if all_stores:
                raise BadRequest("'stores' and 'all_stores' cannot be given together.")
            if not isinstance(stores, list) or not stores or not all(
                    isinstance(x, str) for x in stores):
                raise BadRequest("'stores' must be a non-empty list of store ids.")
            for sid in stores:
                self.stores.get(sid)
            return self.stores.order(set(stores))
        if all_stores:
            return self.stores.writable_ids()
        if header_store:
            self.stores.get(header_store)
            return [header_store]
        return [self.stores.default_id]

    def start_import(self, ctx: RequestContext, image_id: str, body: dict[str, Any],
                     request_id: str, header_store: str | None = None) -> str:
        """Validate an import request, record the targets and a task; returns the task id.

        ``glance-direct`` moves a staged image to ``importing``; ``copy-image`` copies an
        active image's data into more stores (the image stays active).
        """
        method = body.get("method")
        name = method.get("name") if isinstance(method, dict) else None
        if not isinstance(name, str):
            raise BadRequest("Import request requires a 'method' object with a 'name'.")
        if name in ("web-download", "glance-download") and not \
                self.stores.url_policy.enabled:
            raise BadRequest(f"Import method '{name}' is not available: this cloud does not "
                             "fetch image data from other networks (its operator allowed no "
                             "place, image_url_allow). Upload the data (PUT "
                             "/v2/images/{id}/file) or stage it and use 'glance-direct'.")
        if name not in self.import_methods:
            known = "known but not enabled" if name in KNOWN_IMPORT_METHODS else "unknown"
            raise BadRequest(f"Import method '{name}' is {known}; available: "
                             f"{', '.join(self.import_methods)}.")
        assert isinstance(method, dict)
        if name == "web-download":
            self.location_ops.check_url(method.get("uri"))
        elif name == "glance-download":
            src = method.get("glance_image_id")
            try:
                schemas.check_uuid(src, "glance_image_id")
            except APIError:
                raise BadRequest(f"The glance_image_id {src!r}: image id does not look like a "
                                 "UUID.") from None
            for key in ("glance_region", "glance_service_interface"):
                if not isinstance(method.get(key, ""), str):
                    raise BadRequest(f"'{key}' must be a string.")
        targets = self._import_targets(body, header_store)
        now = utcnow()
        with self.db.transaction() as s:
            img = self.writable_row(ctx, s, image_id, "import_image")
            if name in ("web-download", "glance-download"):
                if img.status != "queued":
                    raise Conflict(f"Image {image_id} must be queued to import data with "
                                   f"'{name}' (its status is {img.status}).")
                if name == "web-download" and (img.disk_format is None or
                                               img.container_format is None):
                    raise BadRequest("Properties disk_format, container_format must be set "
                                     "prior to importing data.")
                img.status = "importing"
                internal = dict(img.internal or {})
            elif name == "copy-image":
                if not ctx.is_admin and img.owner != ctx.project_id:
                    raise Forbidden("Only the image owner or an administrator may copy an "
                                    "image to other stores.")
                if img.status != "active":
                    raise Conflict(f"Image {image_id} must be active to be copied (its status "
                                   f"is {img.status}).")
                internal = dict(img.internal or {})
                if internal.get("importing_to"):
                    raise Conflict(f"Image {image_id} is already being copied to "
                                   f"{','.join(internal['importing_to'])}.")
                have = set(self.locations(img))
                targets = [t for t in targets if t not in have]
            else:
                if img.status != "uploading" or not (img.internal or {}).get("staged"):
                    raise Conflict(f"Image {image_id} needs to be staged before "
                                   f"'glance-direct' can be used (its status is "
                                   f"{img.status}).")
                if img.disk_format is None or img.container_format is None:
                    raise BadRequest("Properties disk_format, container_format must be set "
                                     "prior to importing data.")
                img.status = "importing"
                internal = dict(img.internal or {})
            internal["importing_to"] = targets
            internal["failed_import"] = []
            img.internal = internal
            self.touch(img)
            task = new_task(ctx, img, "api_image_import", request_id, now,
                            {"image_id": image_id, "import_req": body, "backend": targets})
            s.add(task)
            return task.id

    def _copy_into(self, source: str, store_id: str, image_id: str) -> StoredData:
        """Copy the data at ``source`` into store ``store_id`` (verified by its md5)."""
        store = self.stores.get(store_id)
        writer = store.begin(image_id)
        try:
            for chunk in self.stores.open(source, chunk_size=4 << 20):
                writer.write(chunk)
            return writer.commit()
        except BaseException:
            writer.abort()
            raise

    def _import_one(self, image_id: str, store_id: str, stored: StoredData,
                    must_succeed: bool, virtual_size: int | None, glance_direct: bool,
                    last: bool = True) -> bool:
        """Record data now in ``store_id``; False when the image went away meanwhile.

        An importing image turns active with its last store when every store must succeed
        (as Glance does), else with its first.
        """
        with self.db.transaction() as s:
            row = s.get(Image, image_id)
            ok_status = ("importing", "active") if glance_direct else ("active",
                                                                       "deactivated")
            if row is None or row.status not in ok_status:
                self._drop_data(stored.location)
                return False
            if stored.md5 != (row.checksum or stored.md5):
                self._drop_data(stored.location)
                raise StoreError(f"copy into {store_id} does not match the image checksum")
            internal = dict(row.internal or {})
            if row.status == "importing":
                locs = dict(internal.get("locations") or {})  # stores done so far
            else:
                locs = self.locations(row)
            locs[store_id] = stored.location
            if row.status == "importing" and (last or not must_succeed):
                self._activate(row, stored, virtual_size, store_id)
                internal = dict(row.internal or {})
            internal["locations"] = locs
            internal["importing_to"] = [t for t in internal.get("importing_to", [])
                                        if t != store_id]
            row.location = locs[self.stores.order(locs.keys())[0]]
            row.internal = internal
            self.touch(row)
            return True

    def _import_failed(self, image_id: str, store_id: str) -> None:
        with self.db.transaction() as s:
            row = s.get(Image, image_id)
            if row is None:
                return
            internal = dict(row.internal or {})
            internal["importing_to"] = [t for t in internal.get("importing_to", [])
                                        if t != store_id]
            internal["failed_import"] = [*internal.get("failed_import", []), store_id]
            row.internal = internal
            self.touch(row)

    def _remote_image_url(self, region: str | None, interface: str, image_id: str) -> str:
        """``glance-download``: the source image's URL at the catalog's image endpoint."""
        from onestack.db.identity import Endpoint
        from onestack.db.identity import Service as CatalogService

        with self.db.reader() as s:
            stmt = select(Endpoint.url).join(
                CatalogService, CatalogService.id == Endpoint.service_id).where(
                CatalogService.type == "image", CatalogService.enabled.is_(True),
                Endpoint.enabled.is_(True), Endpoint.interface == interface)
            if region:
                stmt = stmt.where(Endpoint.region_id == region)
            url = s.scalar(stmt.limit(1))
        if not url:
            raise StoreError(f"no {interface} image endpoint in region {region!r}")
        return f"{url.rstrip('/')}/v2/images/{image_id}"

    def _download(self, image_id: str, owner: str | None, method: dict[str, Any],
                  token: str | None) -> tuple[StoredData, dict[str, Any]]:
        """Fetch ``web-download``/``glance-download`` data into the staging area.

        Returns the staged data and, for ``glance-download``, the source image's attributes
        to copy (formats and the properties Glance copies by default). Every URL passes the
        allow-list again here; the quota is enforced while the data streams.
        """
        extra: dict[str, Any] = {}
        headers: dict[str, str] = {}
        expected_md5 = None
        if method.get("name") == "glance-download":
            url = self._remote_image_url(method.get("glance_region"),
                                         method.get("glance_service_interface") or "public",
                                         method["glance_image_id"])
            headers = {"X-Auth-Token": token or "", "Accept": "application/json"}
            raw = b""
            for piece in fetch.stream(self.location_ops.check_url(url), headers=headers):
                raw += piece
                if len(raw) > 1 << 20:
                    raise StoreError("the source image's description is too large")
            try:
                src = json.loads(raw)
            except ValueError:
                raise StoreError("the source image service answered no JSON") from None
            if not isinstance(src, dict) or src.get("status") != "active":
                raise StoreError("the source image is not active")
            expected_md5 = src.get("checksum")
            extra = {k: v for k, v in src.items() if isinstance(v, str) and (
                k.startswith(GLANCE_DOWNLOAD_PREFIXES))}
            extra["disk_format"] = src.get("disk_format")
            extra["container_format"] = src.get("container_format")
            target = self.location_ops.check_url(url + "/file")
            headers = {"X-Auth-Token": token or ""}
        else:
            target = self.location_ops.check_url(method.get("uri"))
        left = self.quota_left(owner)
        writer = self.stores.staging.begin(image_id, staging=True)
        try:
            for chunk in fetch.stream(target, headers=headers, chunk_size=4 << 20):
                writer.write(chunk)
                if left is not None and writer.size > left:
                    raise PayloadTooLarge(f"The image data exceeds the quota of "
                                          f"{self.limit_bytes(owner)} bytes.")
            stored = writer.commit()
        except BaseException:
            writer.abort()
            raise
        if expected_md5 and stored.md5 != expected_md5:
            self._drop_data(stored.location)
            raise StoreError("the downloaded data does not match the source checksum")
        return stored, extra

    def _adopt(self, image_id: str, extra: dict[str, Any]) -> str | None:
        """Give an importing image the attributes of its ``glance-download`` source."""
        with self.db.transaction() as s:
            img = s.get(Image, image_id)
            if img is None or img.status != "importing":
                raise Conflict("image was deleted or changed during the import")
            known = {"disk_format": schemas.DISK_FORMATS,
                     "container_format": schemas.CONTAINER_FORMATS}
            for key, allowed in known.items():
                if extra.get(key) in allowed:
                    setattr(img, key, extra[key])
            for key, value in extra.items():
                if key in ("disk_format", "container_format"):
                    continue
                row = s.get(ImageProperty, (image_id, key))
                if row is None:
                    s.add(ImageProperty(image_id=image_id, name=key, value=value))
                else:
                    row.value = value
            return img.disk_format

    def run_import(self, task_id: str, token: str | None = None) -> None:
        """Carry out an import task: data into every target store, then activate.

        ``token`` (kept in memory only) authenticates ``glance-download`` at the source.
        """
        with self.db.reader() as s:
            task = s.get(ImageTask, task_id)
            if task is None:
                return
            image_id = task.image_id
            img = s.get(Image, image_id)
            staged_doc = (img.internal or {}).get("staged") if img else None
            disk_format = img.disk_format if img else None
            container_format = img.container_format if img else None
            req = dict(task.input.get("import_req") or {})
            targets = list(task.input.get("backend") or [])
            source = self.locations(img) if img else {}
        method = (req.get("method") or {}).get("name")
        must_succeed = bool(req.get("all_stores_must_succeed", True))
        glance_direct = method != "copy-image"
        done: list[str] = []
        failed: list[str] = []
        try:
            if img is not None and method in ("web-download", "glance-download"):
                fetched, extra = self._download(image_id, img.owner, req["method"], token)
                staged_doc = {"location": fetched.location, "size": fetched.size,
                              "md5": fetched.md5, "sha512": fetched.sha512}
                if extra:
                    disk_format = self._adopt(image_id, extra)
            if img is None or (glance_direct and not staged_doc):
                raise NotFound("image or staged data disappeared")
            if glance_direct:
                assert staged_doc is not None
                src_loc = staged_doc["location"]
                staged = StoredData(**staged_doc)
                # Glance inspects staged data when it is imported, not when it is staged.
                verdict = self.check_format(staged, disk_format, container_format)
                virtual_size = verdict.virtual_size
                if virtual_size is None:
                    virtual_size = self.inspect(staged, image_id, disk_format)
            else:
                src_loc = source[self.stores.order(source.keys())[0]]
                virtual_size = img.virtual_size
            # The default store takes the staged file by rename, so it goes last.
            ordered = sorted(targets, key=lambda t: t == self.stores.staging.store_id)
            for sid in ordered:
                try:
                    if glance_direct and sid == self.stores.staging.store_id:
                        stored = self.stores.staging.promote(staged, image_id)
                        staged_doc = None
                    else:
                        stored = self._copy_into(src_loc, sid, image_id)
                    if not self._import_one(image_id, sid, stored, must_succeed,
                                            virtual_size, glance_direct,
                                            last=sid == ordered[-1]):
                        raise Conflict("image was deleted or changed during the import")
                    done.append(sid)
                except (StoreError, OSError) as exc:
                    LOG.warning("import of image %s into store %s failed: %s", image_id,
                                sid, exc)
                    failed.append(sid)
                    self._import_failed(image_id, sid)
                    if must_succeed:
                        raise
            if glance_direct and not done:
                raise StoreError("the data could not be imported into any store")
            with self.db.transaction() as s:
                row = s.get(Image, image_id)
                if row is not None:
                    internal = dict(row.internal or {})
                    internal.pop("staged", None)
                    row.internal = internal
                finish_task(s, task_id, "success", "",
                            {"image_id": image_id, "stores": done, "failed_stores": failed})
        except (APIError, StoreError, OSError, ValueError, TypeError) as exc:
            message = getattr(exc, "message", None) or str(exc)
            LOG.warning("import of image %s failed: %s", image_id, message)
            with self.db.transaction() as s:
                row = s.get(Image, image_id)
                if row is not None and glance_direct and row.status in ("importing",
                                                                        "active"):
                    internal = dict(row.internal or {})
                    for loc in self.locations(row).values():
                        self._drop_data(loc)
                    internal.pop("staged", None)
                    internal.pop("locations", None)
                    internal["importing_to"] = []
                    internal["failed_import"] = sorted(set(internal.get("failed_import", []))
                                                       | set(targets) - set(done)
                                                       | set(failed))
                    row.internal = internal
                    row.status = "queued"
                    row.location = None
                    row.size = None
                    row.checksum = row.os_hash_algo = row.os_hash_value = None
                    row.virtual_size = None
                    self.touch(row)
                elif row is not None:
                    internal = dict(row.internal or {})
                    internal["importing_to"] = []
                    row.internal = internal
                finish_task(s, task_id, "failure", message, None)
        finally:
            if staged_doc and glance_direct:
                self._drop_data(staged_doc["location"])

    def list_tasks(self, ctx: RequestContext, image_id: str) -> list[TaskRecord]:
        with self.db.reader() as s:
            self._get_row(ctx, s, image_id)
            return list(s.scalars(select(ImageTask).where(ImageTask.image_id == image_id)
                                  .order_by(ImageTask.created_at)))

    def all_tasks(self, ctx: RequestContext) -> list[TaskRecord]:
        with self.db.reader() as s:
            stmt = select(ImageTask).order_by(ImageTask.created_at.desc())
            if not ctx.is_admin:
                stmt = stmt.where(ImageTask.owner == (ctx.project_id or ""))
            return list(s.scalars(stmt.limit(1000)))

    def get_task(self, ctx: RequestContext, task_id: str) -> TaskRecord:
        with self.db.reader() as s:
            task = s.get(ImageTask, task_id)
            if task is None or (not ctx.is_admin and task.owner != ctx.project_id):
                raise NotFound(f"Task with the given id {task_id} not found")
            return task
