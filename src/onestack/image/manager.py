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
import json
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, delete, exists, false, func, or_, select, true, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from onestack.api.policy import Policy
from onestack.common import pagination
from onestack.common.context import RequestContext
from onestack.common.errors import (
    APIError,
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    PayloadTooLarge,
)
from onestack.common.ids import new_uuid
from onestack.common.limits import LimitSource
from onestack.common.pagination import SortKey
from onestack.common.timeutils import parse_isotime, utcnow
from onestack.db.engine import Database
from onestack.db.image import Image, ImageMember, ImageProperty, ImageTag, ImageTask
from onestack.drivers.imagestore.base import ImageStore, StoredData, StoreError
from onestack.image import fetch, formats, schemas
from onestack.image.locations import ImageLocations, url_locations
from onestack.image.stores import StoreSet

LOG = logging.getLogger(__name__)

SORT_KEYS = ["name", "status", "container_format", "disk_format", "size", "id", "created_at",
             "updated_at", "visibility", "owner", "min_disk", "min_ram", "virtual_size",
             "protected", "os_hidden"]
DEFAULT_SORT = [SortKey("created_at", "desc"), SortKey("id", "desc")]
#: Statuses whose data counts against the project quota.
QUOTA_STATUSES = ("active", "deactivated", "saving", "uploading", "importing")
#: Images whose data is on its way in (Glance's ``image_count_uploading``).
UPLOADING_STATUSES = ("saving", "uploading", "importing")
#: Images whose data sits in the staging area (``image_stage_total``).
STAGED_STATUSES = ("uploading", "importing")
MAX_TAGS = 128
MAX_PROPERTIES = 128
MAX_MEMBERS = 128
IMPORT_METHODS = ["glance-direct"]
#: Metadata a ``glance-download`` import copies from the source image (Glance's default
#: ``extra_properties``): these prefixes and names.
GLANCE_DOWNLOAD_PREFIXES = ("hw_", "trait:", "os_distro", "os_secure_boot",
                            "os_type")
KNOWN_IMPORT_METHODS = {"glance-direct", "web-download", "copy-image", "glance-download"}
TIME_OPS = {"gt", "gte", "lt", "lte", "eq", "neq"}


@dataclass
class ImageInfo:
    """One image as the API shows it (plus what views and policy need)."""

    id: str
    name: str | None
    status: str
    visibility: str
    disk_format: str | None
    container_format: str | None
    size: int | None
    virtual_size: int | None
    checksum: str | None
    os_hash_algo: str | None
    os_hash_value: str | None
    min_disk: int
    min_ram: int
    owner: str | None
    protected: bool
    os_hidden: bool
    created_at: dt.datetime
    updated_at: dt.datetime
    location: str | None
    internal: dict[str, Any]
    tags: list[str] = field(default_factory=list)
    properties: dict[str, str] = field(default_factory=dict)

    @property
    def target(self) -> dict[str, Any]:
        return {"project_id": self.owner or "", "owner": self.owner or "",
                "visibility": self.visibility, "id": self.id}


@dataclass
class MemberInfo:
    image_id: str
    member_id: str
    status: str
    created_at: dt.datetime
    updated_at: dt.datetime


@dataclass
class ListQuery:
    """A parsed ``GET /v2/images``."""

    filters: dict[str, Any]
    properties: dict[str, str]
    sort: list[SortKey]
    limit: int
    marker: str | None


def _info(img: Image, tags: list[str], props: dict[str, str]) -> ImageInfo:
    return ImageInfo(
        id=img.id, name=img.name, status=img.status, visibility=img.visibility,
        disk_format=img.disk_format, container_format=img.container_format, size=img.size,
        virtual_size=img.virtual_size, checksum=img.checksum, os_hash_algo=img.os_hash_algo,
        os_hash_value=img.os_hash_value, min_disk=img.min_disk, min_ram=img.min_ram,
        owner=img.owner, protected=img.protected, os_hidden=img.os_hidden,
        created_at=img.created_at, updated_at=img.updated_at, location=img.location,
        internal=dict(img.internal or {}), tags=sorted(tags), properties=props)


def _sort_column(key: str) -> ColumnElement[Any]:
    col = getattr(Image, key)
    if key in ("name", "disk_format", "container_format", "owner"):
        return func.coalesce(col, "")
    if key in ("size", "virtual_size"):
        return func.coalesce(col, -1)
    return col  # type: ignore[no-any-return]


def _split_in(value: str) -> list[str]:
    """Values of an ``in:a,b,"c,d"`` filter."""
    out: list[str] = []
    for m in re.finditer(r'\s*(?:"((?:[^"\\]|\\.)*)"|([^,]*))\s*(?:,|$)', value):
        if m.group(0) == "" and m.end() >= len(value):
            break
        item = m.group(1) if m.group(1) is not None else m.group(2)
        out.append(item.replace('\\"', '"') if m.group(1) is not None else item.strip())
        if m.end() >= len(value):
            break
    return out


def _bool_filter(value: str, name: str) -> bool:
    low = value.strip().lower()
    if low in ("true", "1", "yes", "on"):
        return True
    if low in ("false", "0", "no", "off"):
        return False
    raise BadRequest(f"Invalid value for {name}: {value!r}; expected a boolean.")


def _int_filter(value: str, name: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise BadRequest(f"Invalid value for {name}: {value!r}; expected an integer.") from None


class ImageManager:
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

    # ------------------------------------------------------------------ helpers
    def _allowed(self, ctx: RequestContext, action: str, target: Mapping[str, Any]) -> bool:
        return self.policy.check(action, ctx.policy_creds(), target)

    def _enforce(self, ctx: RequestContext, action: str, target: Mapping[str, Any]) -> None:
        self.policy.enforce(action, ctx.policy_creds(), target)

    @staticmethod
    def _load(s: Session, img: Image) -> ImageInfo:
        tags = list(s.scalars(select(ImageTag.value).where(ImageTag.image_id == img.id)))
        props = {p.name: p.value for p in
                 s.scalars(select(ImageProperty).where(ImageProperty.image_id == img.id))}
        return _info(img, tags, props)

    @staticmethod
    def _load_many(s: Session, imgs: list[Image]) -> list[ImageInfo]:
        ids = [i.id for i in imgs]
        tags: dict[str, list[str]] = {i: [] for i in ids}
        props: dict[str, dict[str, str]] = {i: {} for i in ids}
        if ids:
            for image_id, value in s.execute(
                    select(ImageTag.image_id, ImageTag.value).where(ImageTag.image_id.in_(ids))):
                tags[image_id].append(value)
            for p in s.scalars(select(ImageProperty).where(ImageProperty.image_id.in_(ids))):
                props[p.image_id][p.name] = p.value
        return [_info(i, tags[i.id], props[i.id]) for i in imgs]

    @staticmethod
    def _can_see(ctx: RequestContext, s: Session, img: Image) -> bool:
        if ctx.is_admin or img.visibility in ("public", "community"):
            return True
        if ctx.project_id is not None and img.owner == ctx.project_id:
            return True
        if img.visibility == "shared" and ctx.project_id:
            return s.scalar(select(ImageMember.status).where(
                ImageMember.image_id == img.id, ImageMember.member == ctx.project_id)) is not None
        return False

    def _get_row(self, ctx: RequestContext, s: Session, image_id: str) -> Image:
        img = s.get(Image, image_id)
        if img is None or not self._can_see(ctx, s, img):
            raise NotFound(f"No image found with ID {image_id}")
        return img

    def _writable_row(self, ctx: RequestContext, s: Session, image_id: str,
                      action: str = "modify_image") -> Image:
        img = self._get_row(ctx, s, image_id)
        target = {"project_id": img.owner or "", "owner": img.owner or "",
                  "visibility": img.visibility, "id": img.id}
        if not self._allowed(ctx, action, target):
            raise Forbidden(f"You are not authorized to {action.replace('_', ' ')} "
                            f"image {image_id}.")
        return img

    def _touch(self, img: Image) -> None:
        img.updated_at = utcnow()

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
        if visibility == "public" and not self._allowed(ctx, "publicize_image", target):
            raise Forbidden("You are not authorized to complete publicize_image action.")
        if visibility == "community" and not self._allowed(ctx, "communitize_image", target):
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
                conds.append(col.in_(f[key]) if len(f[key]) > 1 else col == f[key][0])
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
                self._writable_row(ctx, s, image_id)
        sizes = self.location_ops.prepare_location_changes(changes)
        dropped: list[str] = []
        with self.db.transaction() as s:
            img = self._writable_row(ctx, s, image_id)
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
            if doc["owner"] != img.owner and not self._allowed(
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
            self._touch(img)
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
            img = self._writable_row(ctx, s, image_id, "delete_image")
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
        with self.db.transaction() as s:
            img = self._writable_row(ctx, s, image_id, "deactivate")
            if img.status == "deactivated":
                return
            if img.status != "active":
                raise Forbidden(f"Not allowed to deactivate image in status '{img.status}'")
            img.status = "deactivated"
            self._touch(img)

    def reactivate(self, ctx: RequestContext, image_id: str) -> None:
        with self.db.transaction() as s:
            img = self._writable_row(ctx, s, image_id, "reactivate")
            if img.status == "active":
                return
            if img.status != "deactivated":
                raise Forbidden(f"Not allowed to reactivate image in status '{img.status}'")
            img.status = "active"
            self._touch(img)

    # ------------------------------------------------------------------ tags
    def add_tag(self, ctx: RequestContext, image_id: str, tag: str) -> None:
        if not tag or len(tag) > schemas.MAX_TAG_LEN:
            raise BadRequest(f"Tags must be 1 to {schemas.MAX_TAG_LEN} characters long.")
        with self.db.transaction() as s:
            img = self._writable_row(ctx, s, image_id, "add_image_tag")
            if s.get(ImageTag, (image_id, tag)) is not None:
                return
            count = s.scalar(select(func.count()).select_from(ImageTag).where(
                ImageTag.image_id == image_id)) or 0
            if count >= MAX_TAGS:
                raise PayloadTooLarge(f"Maximum number of tags exceeded ({MAX_TAGS}).")
            s.add(ImageTag(image_id=image_id, value=tag))
            self._touch(img)

    def delete_tag(self, ctx: RequestContext, image_id: str, tag: str) -> None:
        with self.db.transaction() as s:
            img = self._writable_row(ctx, s, image_id, "delete_image_tag")
            row = s.get(ImageTag, (image_id, tag))
            if row is None:
                raise NotFound(f"Tag {tag} not found on image {image_id}")
            s.delete(row)
            self._touch(img)

    # ------------------------------------------------------------------ members
    def _member_image(self, ctx: RequestContext, s: Session, image_id: str) -> Image:
        img = self._get_row(ctx, s, image_id)
        if img.visibility != "shared":
            raise Forbidden(f"Only shared images have members (image {image_id} is "
                            f"{img.visibility}).")
        return img

    @staticmethod
    def _member(row: ImageMember) -> MemberInfo:
        return MemberInfo(row.image_id, row.member, row.status, row.created_at, row.updated_at)

    def add_member(self, ctx: RequestContext, image_id: str, member_id: str) -> MemberInfo:
        if not isinstance(member_id, str) or not member_id or len(member_id) > 64:
            raise BadRequest("member must be a project id (1 to 64 characters).")
        with self.db.transaction() as s:
            img = self._member_image(ctx, s, image_id)
            target = {"project_id": img.owner or "", "member_id": member_id}
            if not self._allowed(ctx, "add_member", target):
                raise Forbidden("You are not authorized to share this image.")
            if s.get(ImageMember, (image_id, member_id)) is not None:
                raise Conflict(f"The member {member_id} is already a member of image "
                               f"{image_id}.")
            count = s.scalar(select(func.count()).select_from(ImageMember).where(
                ImageMember.image_id == image_id)) or 0
            if count >= MAX_MEMBERS:
                raise PayloadTooLarge(f"Maximum number of image members exceeded "
                                      f"({MAX_MEMBERS}).")
            now = utcnow()
            row = ImageMember(image_id=image_id, member=member_id, status="pending",
                              created_at=now, updated_at=now)
            s.add(row)
            s.flush()
            return self._member(row)

    def list_members(self, ctx: RequestContext, image_id: str) -> list[MemberInfo]:
        with self.db.reader() as s:
            img = self._member_image(ctx, s, image_id)
            stmt = select(ImageMember).where(ImageMember.image_id == image_id)
            if not ctx.is_admin and img.owner != ctx.project_id:
                stmt = stmt.where(ImageMember.member == (ctx.project_id or ""))
            return [self._member(r) for r in s.scalars(stmt.order_by(ImageMember.created_at))]

    def get_member(self, ctx: RequestContext, image_id: str, member_id: str) -> MemberInfo:
        with self.db.reader() as s:
            img = self._member_image(ctx, s, image_id)
            row = s.get(ImageMember, (image_id, member_id))
            if row is None or (not ctx.is_admin and img.owner != ctx.project_id
                               and member_id != ctx.project_id):
                raise NotFound(f"{member_id} is not a member of image {image_id}.")
            return self._member(row)

    def update_member(self, ctx: RequestContext, image_id: str, member_id: str,
                      status: Any) -> MemberInfo:
        with self.db.transaction() as s:
            img = self._member_image(ctx, s, image_id)
            row = s.get(ImageMember, (image_id, member_id))
            if row is None or (not ctx.is_admin and img.owner != ctx.project_id
                               and member_id != ctx.project_id):
                raise NotFound(f"{member_id} is not a member of image {image_id}.")
            if status not in schemas.MEMBER_STATUSES:
                raise BadRequest(f"Invalid status: {status!r}; expected one of "
                                 f"{', '.join(schemas.MEMBER_STATUSES)}.")
            if not self._allowed(ctx, "modify_member",
                                 {"project_id": img.owner or "", "member_id": member_id}):
                raise Forbidden("Only the member may change its membership status.")
            row.status = status
            row.updated_at = utcnow()
            s.flush()
            return self._member(row)

    def delete_member(self, ctx: RequestContext, image_id: str, member_id: str) -> None:
        with self.db.transaction() as s:
            img = self._member_image(ctx, s, image_id)
            row = s.get(ImageMember, (image_id, member_id))
            if row is None or (not ctx.is_admin and img.owner != ctx.project_id
                               and member_id != ctx.project_id):
                raise NotFound(f"{member_id} is not a member of image {image_id}.")
            if not self._allowed(ctx, "delete_member",
                                 {"project_id": img.owner or "", "member_id": member_id}):
                raise Forbidden("Only the image owner may remove members.")
            s.delete(row)

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
            img = self._writable_row(ctx, s, image_id,
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
            self._touch(img)
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
                self._touch(img)
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
            img = self._writable_row(ctx, s, image_id, "import_image")
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
            self._touch(img)
            task = ImageTask(id=new_uuid(), image_id=image_id, type="api_image_import",
                             status="processing", owner=img.owner, user_id=ctx.user_id,
                             request_id=request_id,
                             input={"image_id": image_id, "import_req": body,
                                    "backend": targets},
                             result=None, message="", created_at=now, updated_at=now,
                             expires_at=now + dt.timedelta(hours=48))
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
            self._touch(row)
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
            self._touch(row)

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
                self._finish_task(s, task_id, "success", "",
                                  {"image_id": image_id, "stores": done,
                                   "failed_stores": failed})
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
                    self._touch(row)
                elif row is not None:
                    internal = dict(row.internal or {})
                    internal["importing_to"] = []
                    row.internal = internal
                self._finish_task(s, task_id, "failure", message, None)
        finally:
            if staged_doc and glance_direct:
                self._drop_data(staged_doc["location"])

    @staticmethod
    def _finish_task(s: Session, task_id: str, status: str, message: str,
                     result: dict[str, Any] | None) -> None:
        task = s.get(ImageTask, task_id)
        if task is not None:
            task.status = status
            task.message = message
            task.result = result
            task.updated_at = utcnow()

    def list_tasks(self, ctx: RequestContext, image_id: str) -> list[ImageTask]:
        with self.db.reader() as s:
            self._get_row(ctx, s, image_id)
            return list(s.scalars(select(ImageTask).where(ImageTask.image_id == image_id)
                                  .order_by(ImageTask.created_at)))

    def all_tasks(self, ctx: RequestContext) -> list[ImageTask]:
        with self.db.reader() as s:
            stmt = select(ImageTask).order_by(ImageTask.created_at.desc())
            if not ctx.is_admin:
                stmt = stmt.where(ImageTask.owner == (ctx.project_id or ""))
            return list(s.scalars(stmt.limit(1000)))

    def get_task(self, ctx: RequestContext, task_id: str) -> ImageTask:
        with self.db.reader() as s:
            task = s.get(ImageTask, task_id)
            if task is None or (not ctx.is_admin and task.owner != ctx.project_id):
                raise NotFound(f"Task with the given id {task_id} not found")
            return task

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
            img = self._writable_row(ctx, s, image_id, "delete_image_location")
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
            self._touch(img)
        self._drop_data(gone)

    def has_images(self, name: str) -> bool:
        with self.db.reader() as s:
            return s.scalar(select(Image.id).where(Image.name == name).limit(1)) is not None


def _limit_child() -> None:  # pragma: no cover - runs in the child
    """Resource limits for ``qemu-img`` on untrusted data (as Nova/Glance do)."""
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
    resource.setrlimit(resource.RLIMIT_CPU, (30, 30))


UploadHook = Callable[[str], None]
