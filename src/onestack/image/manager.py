"""Image business logic: the only code that changes image tables and image data.

Status life cycle (Glance's)::

    queued --upload--> saving --ok--> active <--reactivate-- deactivated
       |                  '--fail/disconnect--> queued        ^--deactivate--'
       '--stage--> uploading --import--> importing --ok--> active
                       ^--------- fail ------'

Transitions are conditional UPDATEs (``WHERE status = ...``), so two racing uploads cannot both
win and an image deleted during an upload is noticed when the upload tries to finish. All
methods are blocking; the API runs them in worker threads.
"""

from __future__ import annotations

import datetime as dt
import shutil
from typing import Any

from sqlalchemy import and_, delete, exists, false, func, or_, select, true
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import ColumnElement

from onestack.api.policy import Policy
from onestack.common import pagination
from onestack.common.context import RequestContext
from onestack.common.errors import BadRequest, Conflict, Forbidden, NotFound, PayloadTooLarge
from onestack.common.ids import new_uuid
from onestack.common.limits import LimitSource
from onestack.common.timeutils import parse_isotime, utcnow
from onestack.db.engine import Database
from onestack.db.image import Image, ImageMember, ImageProperty, ImageTag, ImageTask
from onestack.drivers.imagestore.base import ImageStore, StoreError
from onestack.image import fetch, schemas
from onestack.image.imports import ImportStore
from onestack.image.locations import ImageLocations, url_locations
from onestack.image.members import MemberStore
from onestack.image.records import (  # noqa: F401 - records re-exported
    DEFAULT_SORT,
    IMPORT_METHODS,
    LOG,
    MAX_PROPERTIES,
    MAX_TAGS,
    SORT_KEYS,
    TIME_OPS,
    ImageInfo,
    ListQuery,
    MemberInfo,
    _bool_filter,
    _info,
    _int_filter,
    _sort_column,
    _split_in,
)
from onestack.image.recovery import RecoveryStore
from onestack.image.stores import StoreSet
from onestack.image.uploads import UploadStore


class ImageManager(MemberStore, UploadStore, ImportStore, RecoveryStore):
    """Owns images: their rows, their data in the store and their status transitions."""

    def __init__(self, db: Database, store: ImageStore, policy: Policy,
                 quota_bytes: int = 0, qemu_img: str | None = None,
                 stores: str = "", url_allow: str = "", show_locations: bool = False,
                 require_format_match: bool = True) -> None:
        self.db = db
        #: Refuse data whose format differs from its disk_format (Glance's
        #: ``require_image_format_match``); safety checks apply either way (formats.py).
        self.require_format_match = require_format_match
        #: The default store (uploads and staging land here unless a store is named).
        self.stores = StoreSet(store, stores, fetch.UrlPolicy(url_allow))
        #: Show and manage ``locations`` (Glance's ``show_multiple_locations``).
        self.show_locations = show_locations
        #: The location operations (``image/locations.py``).
        self.location_ops = ImageLocations(self)
        self.store = self.stores.default
        self.policy = policy
        self.quota_bytes = quota_bytes
        #: Keystone's unified limits as the quota source (None: ``quota_bytes``).
        self.unified_limits: LimitSource | None = None
        self.qemu_img = qemu_img if qemu_img is not None else (shutil.which("qemu-img") or "")

    @property
    def import_methods(self) -> list[str]:
        """Import methods this cloud offers.

        ``copy-image`` needs a second writable store; ``web-download`` and
        ``glance-download`` need places the service may fetch from (``image_url_allow``).
        """
        methods = list(IMPORT_METHODS)
        if self.stores.url_policy.enabled:
            methods += ["web-download", "glance-download"]
        if len(self.stores.writable_ids()) > 1:
            methods.append("copy-image")
        return methods

    def locations(self, img: Image | ImageInfo) -> dict[str, str]:
        """``{store id: location}`` of the image's data."""
        locs = (img.internal or {}).get("locations")
        out: dict[str, str] = {}
        if isinstance(locs, dict) and locs:
            out = dict(locs)
        elif img.location:
            out = {self.stores.store_id_of(img.location): img.location}
        urls = url_locations(img.internal)
        if urls and self.stores.web is not None:
            out.setdefault(self.stores.web.store_id, urls[0]["url"])
        return out

    def store_ids(self, img: Image | ImageInfo) -> list[str]:
        return self.stores.order(self.locations(img).keys())

    # ------------------------------------------------------------------ create / read
    def create(self, ctx: RequestContext, body: dict[str, Any]) -> ImageInfo:
        """``POST /v2/images``: a new queued image from a validated request body."""
        doc = dict(body)
        image_id = doc.pop("id", None)
        for key in list(doc):
            schemas.check_attribute_name(key)
        schemas.validate_image(doc)
        if image_id is not None:
            image_id = schemas.check_uuid(image_id, "image id")
        owner = doc.pop("owner", None) if "owner" in doc else ctx.project_id
        if owner != ctx.project_id and not ctx.is_admin:
            raise Forbidden(f"You are not permitted to create images owned by '{owner}'.")
        visibility = doc.pop("visibility", "shared")
        self._check_visibility(ctx, visibility, owner)
        tags = doc.pop("tags", []) or []
        if len(tags) > MAX_TAGS:
            raise PayloadTooLarge(f"Maximum number of tags exceeded ({MAX_TAGS}).")
        core = {k: doc.pop(k) for k in list(doc) if k in schemas.WRITABLE_CORE}
        props = {k: v for k, v in doc.items()}
        if len(props) > MAX_PROPERTIES:
            raise PayloadTooLarge(f"Maximum number of properties exceeded ({MAX_PROPERTIES}).")
        now = utcnow()
        img = Image(id=image_id or new_uuid(), name=core.get("name"), status="queued",
                    visibility=visibility, disk_format=core.get("disk_format"),
                    container_format=core.get("container_format"),
                    min_disk=core.get("min_disk", 0), min_ram=core.get("min_ram", 0),
                    owner=owner, protected=bool(core.get("protected", False)),
                    os_hidden=bool(core.get("os_hidden", False)), internal={},
                    created_at=now, updated_at=now)
        try:
            with self.db.transaction() as s:
                if s.get(Image, img.id) is not None:
                    raise Conflict(f"An image with identifier {img.id} already exists")
                self._check_count(s, owner, "image_count_total", Image.status != "deleted")
                s.add(img)
                s.flush()
                for t in tags:
                    s.add(ImageTag(image_id=img.id, value=t))
                for k, v in props.items():
                    s.add(ImageProperty(image_id=img.id, name=k, value=v))
                s.flush()
                return _info(img, list(tags), props)
        except IntegrityError:
            raise Conflict(f"An image with identifier {img.id} already exists") from None

    def _check_visibility(self, ctx: RequestContext, visibility: str, owner: str | None) -> None:
        target = {"project_id": owner or "", "owner": owner or ""}
        if visibility == "public" and not self.allowed(ctx, "publicize_image", target):
            raise Forbidden("You are not authorized to complete publicize_image action.")
        if visibility == "community" and not self.allowed(ctx, "communitize_image", target):
            raise Forbidden("You are not authorized to complete communitize_image action.")

    def get(self, ctx: RequestContext, image_id: str) -> ImageInfo:
        with self.db.reader() as s:
            return self._load(s, self._get_row(ctx, s, image_id))

    def get_internal(self, image_id: str) -> ImageInfo | None:
        """An image regardless of tenancy (the cloud's own work)."""
        with self.db.reader() as s:
            img = s.get(Image, image_id)
            return None if img is None else self._load(s, img)

    def boot_info(self, ctx: RequestContext, image_id: str) -> dict[str, Any]:
        """What compute needs to boot from an image ``ctx`` may see (404 otherwise): id,
        name, status, size, min_ram, min_disk and properties, in two or three Core reads
        (a server create asks on every boot)."""
        t, m, p = Image.__table__, ImageMember.__table__, ImageProperty.__table__
        with self.db.connect(readonly=True) as c:
            img = c.execute(select(t.c.id, t.c.name, t.c.status, t.c.visibility, t.c.owner,
                                   t.c.size, t.c.min_ram, t.c.min_disk)
                            .where(t.c.id == image_id)).first()
            visible = img is not None and (
                ctx.is_admin or img.visibility in ("public", "community")
                or (ctx.project_id is not None and img.owner == ctx.project_id)
                or (img.visibility == "shared" and bool(ctx.project_id) and c.execute(
                    select(m.c.status).where(m.c.image_id == image_id,
                                             m.c.member == ctx.project_id)).first()
                    is not None))
            if img is None or not visible:
                raise NotFound(f"No image found with ID {image_id}")
            props = {name: value for name, value in c.execute(
                select(p.c.name, p.c.value).where(p.c.image_id == image_id))}
        return {"id": img.id, "name": img.name, "status": img.status, "size": img.size or 0,
                "min_ram": img.min_ram or 0, "min_disk": img.min_disk or 0,
                "properties": props}
    # ------------------------------------------------------------------ list
    def parse_list_query(self, query: Any, default_limit: int, max_limit: int) -> ListQuery:
        """Turn ``GET /v2/images`` query parameters into a ``ListQuery`` (400 on nonsense)."""
        limit = pagination.parse_limit(query, default_limit, max_limit)
        sort = pagination.parse_sort(query, SORT_KEYS, DEFAULT_SORT, default_dir="desc")
        sort = pagination.with_tiebreak(sort, "id")
        filters: dict[str, Any] = {}
        props: dict[str, str] = {}
        skip = {"limit", "marker", "sort", "sort_key", "sort_dir"}
        for key in dict.fromkeys(query.keys()):
            if key in skip:
                continue
            values = query.getlist(key) if hasattr(query, "getlist") else [query[key]]
            value = values[-1]
            if key == "tag":
                filters["tag"] = values
            elif key in ("name", "id", "status", "disk_format", "container_format"):
                filters[key] = _split_in(value[3:]) if value.startswith("in:") else [value]
            elif key == "owner":
                filters["owner"] = _split_in(value[3:]) if value.startswith("in:") else [value]
            elif key == "visibility":
                if value not in (*schemas.VISIBILITIES, "all"):
                    raise BadRequest(f"Invalid visibility value: {value}")
                filters["visibility"] = value
            elif key == "member_status":
                if value not in (*schemas.MEMBER_STATUSES, "all"):
                    raise BadRequest(f"Invalid status value: {value}")
                filters["member_status"] = value
            elif key in ("size_min", "size_max"):
                filters[key] = _int_filter(value, key)
            elif key == "size":
                filters["size"] = _int_filter(value, key)
            elif key in ("protected", "os_hidden"):
                filters[key] = _bool_filter(value, key)
            elif key in ("created_at", "updated_at"):
                filters[key] = self._time_filter(value, key)
            elif key in ("min_disk", "min_ram"):
                filters[key] = _int_filter(value, key)
            else:
                props[key] = value
        return ListQuery(filters, props, sort, limit, query.get("marker"))

    @staticmethod
    def _time_filter(value: str, name: str) -> tuple[str, dt.datetime]:
        op, sep, rest = value.partition(":")
        if sep and op in TIME_OPS:
            text = rest
        else:
            op, text = "eq", value
        try:
            return op, parse_isotime(text)
        except ValueError:
            raise BadRequest(f"Invalid value for {name}: {value!r}; expected "
                             "[gt|gte|lt|lte|eq|neq:]ISO-8601 time.") from None

    def list(self, ctx: RequestContext, q: ListQuery) -> tuple[list[ImageInfo], bool]:
        """One page of the images ``ctx`` may see; returns (images, more_exist)."""
        f = q.filters
        conds: list[ColumnElement[bool]] = []
        pid = ctx.project_id or ""
        member_status = f.get("member_status", "accepted")
        member_q = select(ImageMember.image_id).where(
            ImageMember.image_id == Image.id, ImageMember.member == pid)
        if member_status != "all":
            member_q = member_q.where(ImageMember.status == member_status)
        shared_with_me = and_(Image.visibility == "shared", exists(member_q))
        own = Image.owner == pid
        vis = f.get("visibility")
        if ctx.is_admin:
            if vis and vis != "all":
                conds.append(Image.visibility == vis)
            if "member_status" in f and member_status != "all":
                conds.append(exists(select(ImageMember.image_id).where(
                    ImageMember.image_id == Image.id, ImageMember.status == member_status)))
        elif vis is None:
            conds.append(or_(own, Image.visibility == "public", shared_with_me))
        elif vis == "public":
            conds.append(Image.visibility == "public")
        elif vis == "private":
            conds.append(and_(own, Image.visibility == "private"))
        elif vis == "shared":
            conds.append(or_(and_(own, Image.visibility == "shared"), shared_with_me))
        elif vis == "community":
            conds.append(Image.visibility == "community")
        else:  # all
            conds.append(or_(own, Image.visibility.in_(("public", "community")),
                             shared_with_me))
        for key in ("name", "id", "status", "disk_format", "container_format", "owner"):
            if key in f:
                col = getattr(Image, key)
                # ``in:`` with nothing after it names no image (openstacksdk sends
                # ``id=in:`` for a server list without image ids): no match, not a 500.
                conds.append(col == f[key][0] if len(f[key]) == 1 else col.in_(f[key]))
        for tag in f.get("tag", []):
            conds.append(exists(select(ImageTag.image_id).where(
                ImageTag.image_id == Image.id, ImageTag.value == tag)))
        if "size_min" in f:
            conds.append(Image.size >= f["size_min"])
        if "size_max" in f:
            conds.append(Image.size <= f["size_max"])
        if "size" in f:
            conds.append(Image.size == f["size"])
        for key in ("min_disk", "min_ram"):
            if key in f:
                conds.append(getattr(Image, key) == f[key])
        if "protected" in f:
            conds.append(Image.protected == (true() if f["protected"] else false()))
        conds.append(Image.os_hidden == (true() if f.get("os_hidden", False) else false()))
        for key in ("created_at", "updated_at"):
            if key in f:
                op, when = f[key]
                col = getattr(Image, key)
                conds.append({"gt": col > when, "gte": col >= when, "lt": col < when,
                              "lte": col <= when, "eq": col == when, "neq": col != when}[op])
        for name, value in q.properties.items():
            conds.append(exists(select(ImageProperty.image_id).where(
                ImageProperty.image_id == Image.id, ImageProperty.name == name,
                ImageProperty.value == value)))
        with self.db.reader() as s:
            stmt = select(Image).where(*conds)
            if q.marker:
                marker = s.get(Image, q.marker)
                if marker is None or not self._can_see(ctx, s, marker):
                    raise BadRequest(f"Invalid marker. Image {q.marker} could not be found.")
                values = {k.key: s.scalar(select(_sort_column(k.key)).where(
                    Image.id == marker.id)) for k in q.sort}
                stmt = stmt.where(pagination.keyset_after(q.sort, _sort_column, values))
            stmt = stmt.order_by(*pagination.order_by(q.sort, _sort_column))
            rows = list(s.scalars(stmt.limit(q.limit + 1))) if q.limit else []
            more = len(rows) > q.limit
            return self._load_many(s, rows[:q.limit]), more
    # ------------------------------------------------------------------ update
    def update(self, ctx: RequestContext, image_id: str,
               changes: list[tuple[str, list[str], Any]]) -> ImageInfo:
        """Apply parsed JSON-patch ``changes`` [(op, path, value)] atomically."""
        if self.show_locations and any(path[0] == "locations" for _o, path, _v in changes):
            with self.db.reader() as s:  # may this caller change it, before reading any URL?
                self.writable_row(ctx, s, image_id)
        sizes = self.location_ops.prepare_location_changes(changes)
        dropped: list[str] = []
        with self.db.transaction() as s:
            img = self.writable_row(ctx, s, image_id)
            info = self._load(s, img)
            doc: dict[str, Any] = {
                "name": img.name, "visibility": img.visibility, "protected": img.protected,
                "os_hidden": img.os_hidden, "min_disk": img.min_disk, "min_ram": img.min_ram,
                "disk_format": img.disk_format, "container_format": img.container_format,
                "tags": list(info.tags), "owner": img.owner}
            props = dict(info.properties)
            for op, path, value in changes:
                if path[0] == "locations" and self.show_locations:
                    self.location_ops.apply_location_change(ctx, img, op, path, value, sizes,
                                                            dropped)
                    continue
                self._apply(ctx, img, doc, props, op, path, value)
            writable = {k: v for k, v in doc.items() if k != "owner" or v is not None}
            schemas.validate_image({**writable, **props})
            if doc["visibility"] != img.visibility:
                self._check_visibility(ctx, doc["visibility"], doc["owner"])
            if doc["owner"] != img.owner and not self.allowed(
                    ctx, "set_image_owner", info.target):
                raise Forbidden("Only administrators may change the owner of an image.")
            for key in ("disk_format", "container_format"):
                if doc[key] != getattr(img, key) and img.status != "queued":
                    raise Forbidden(f"Attribute {key} can be only replaced for a queued image.")
            if len(doc["tags"]) > MAX_TAGS:
                raise PayloadTooLarge(f"Maximum number of tags exceeded ({MAX_TAGS}).")
            if len(props) > MAX_PROPERTIES:
                raise PayloadTooLarge(
                    f"Maximum number of properties exceeded ({MAX_PROPERTIES}).")
            for key in ("name", "visibility", "protected", "os_hidden", "min_disk", "min_ram",
                        "disk_format", "container_format", "owner"):
                setattr(img, key, doc[key])
            tags = list(dict.fromkeys(doc["tags"]))
            if tags != info.tags:
                s.execute(delete(ImageTag).where(ImageTag.image_id == img.id))
                for t in tags:
                    s.add(ImageTag(image_id=img.id, value=t))
            if props != info.properties:
                s.execute(delete(ImageProperty).where(ImageProperty.image_id == img.id))
                for k, v in props.items():
                    s.add(ImageProperty(image_id=img.id, name=k, value=v))
            self.touch(img)
            s.flush()
            result = _info(img, tags, props)
        for loc in dropped:
            self._drop_data(loc)
        return result

    @staticmethod
    def _apply(ctx: RequestContext, img: Image, doc: dict[str, Any], props: dict[str, str],
               op: str, path: list[str], value: Any) -> None:
        name = path[0]
        if name in schemas.RESERVED or name.startswith(schemas.RESERVED_PREFIX):
            raise Forbidden(f"Attribute '{name}' is reserved.")
        if name in schemas.READ_ONLY:
            raise Forbidden(f"Attribute '{name}' is read-only.")
        if len(path) > 1:
            if name == "tags" and len(path) == 2 and op in ("add", "remove"):
                tags = doc["tags"]
                if op == "add":
                    if not isinstance(value, str):
                        raise BadRequest("Tags must be strings.")
                    if value not in tags:
                        tags.append(value)
                    return
                try:
                    del tags[int(path[1])]
                except (ValueError, IndexError):
                    raise BadRequest(f"Invalid path /tags/{path[1]}") from None
                return
            raise BadRequest(f"Invalid JSON pointer for this resource: "
                             f"'/{'/'.join(path)}'")
        if name in schemas.WRITABLE_CORE:
            if op == "remove":
                raise Forbidden(f"Attribute '{name}' cannot be removed.")
            doc[name] = value
            return
        schemas.check_attribute_name(name)
        if op == "add":
            props[name] = value
        elif op == "replace":
            if name not in props:
                raise Conflict(f"Property {name} does not exist.")
            props[name] = value
        else:
            if name not in props:
                raise Conflict(f"Property {name} does not exist.")
            del props[name]
    # ------------------------------------------------------------------ delete
    def delete(self, ctx: RequestContext, image_id: str) -> None:
        """Delete the image, its metadata and its data (403 when protected)."""
        with self.db.transaction() as s:
            img = self.writable_row(ctx, s, image_id, "delete_image")
            if img.protected:
                raise Forbidden(f"Image {image_id} is protected and cannot be deleted.")
            locations = [*self.locations(img).values(),
                         (img.internal or {}).get("staged", {}).get("location")]
            s.execute(delete(ImageTask).where(ImageTask.image_id == image_id))
            s.execute(delete(ImageMember).where(ImageMember.image_id == image_id))
            s.execute(delete(ImageTag).where(ImageTag.image_id == image_id))
            s.execute(delete(ImageProperty).where(ImageProperty.image_id == image_id))
            s.delete(img)
        for loc in locations:
            if loc:
                self._drop_data(loc)

    def _drop_data(self, location: str) -> None:
        try:
            self.stores.delete(location)
        except StoreError:
            LOG.warning("could not delete image data at %s", location, exc_info=True)
    # ------------------------------------------------------------------ status actions
    def deactivate(self, ctx: RequestContext, image_id: str) -> None:
        self._flip_status(ctx, image_id, "deactivate", "active", "deactivated")

    def reactivate(self, ctx: RequestContext, image_id: str) -> None:
        self._flip_status(ctx, image_id, "reactivate", "deactivated", "active")

    def _flip_status(self, ctx: RequestContext, image_id: str, action: str, source: str,
                     target: str) -> None:
        """Move an image from ``source`` to ``target`` status (a no-op when already there)."""
        with self.db.transaction() as s:
            img = self.writable_row(ctx, s, image_id, action)
            if img.status == target:
                return
            if img.status != source:
                raise Forbidden(f"Not allowed to {action} image in status '{img.status}'")
            img.status = target
            self.touch(img)
    # ------------------------------------------------------------------ tags
    def add_tag(self, ctx: RequestContext, image_id: str, tag: str) -> None:
        if not tag or len(tag) > schemas.MAX_TAG_LEN:
            raise BadRequest(f"Tags must be 1 to {schemas.MAX_TAG_LEN} characters long.")
        with self.db.transaction() as s:
            img = self.writable_row(ctx, s, image_id, "add_image_tag")
            if s.get(ImageTag, (image_id, tag)) is not None:
                return
            count = s.scalar(select(func.count()).select_from(ImageTag).where(
                ImageTag.image_id == image_id)) or 0
            if count >= MAX_TAGS:
                raise PayloadTooLarge(f"Maximum number of tags exceeded ({MAX_TAGS}).")
            s.add(ImageTag(image_id=image_id, value=tag))
            self.touch(img)

    def delete_tag(self, ctx: RequestContext, image_id: str, tag: str) -> None:
        with self.db.transaction() as s:
            img = self.writable_row(ctx, s, image_id, "delete_image_tag")
            row = s.get(ImageTag, (image_id, tag))
            if row is None:
                raise NotFound(f"Tag {tag} not found on image {image_id}")
            s.delete(row)
            self.touch(img)
