"""The image service's records and rules every image store shares: what the API gets back
(``ImageInfo``, ``MemberInfo``, ``TaskRecord``, ``ListQuery``), list filters, limits, and
the row helpers (``ImageRecords``: policy checks, visible and writable rows)."""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from onestack.api.policy import Policy
from onestack.common.context import RequestContext
from onestack.common.errors import BadRequest, Forbidden, NotFound
from onestack.common.ids import new_uuid
from onestack.common.pagination import SortKey
from onestack.common.timeutils import utcnow
from onestack.db.engine import Database
from onestack.db.image import Image, ImageMember, ImageProperty, ImageTag, ImageTask
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
#: How long an image task is kept after it was created.
TASK_TTL = dt.timedelta(hours=48)


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


class TaskRecord(Protocol):
    """An image task as its view reads it (the stored row as it is; no conversion)."""

    id: str
    type: str
    status: str
    owner: str | None
    image_id: str
    request_id: str | None
    user_id: str | None
    input: dict[str, Any]
    result: dict[str, Any] | None
    message: str
    created_at: dt.datetime
    updated_at: dt.datetime
    expires_at: dt.datetime | None


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


def new_task(ctx: RequestContext, img: Image, task_type: str, request_id: str,
             now: dt.datetime, task_input: dict[str, Any]) -> ImageTask:
    """A new ``processing`` task of ``task_type`` on ``img`` for the caller ``ctx``."""
    return ImageTask(id=new_uuid(), image_id=img.id, type=task_type, status="processing",
                     owner=img.owner, user_id=ctx.user_id, request_id=request_id,
                     input=task_input, result=None, message="", created_at=now,
                     updated_at=now, expires_at=now + TASK_TTL)


def finish_task(s: Session, task_id: str, status: str, message: str,
                result: dict[str, Any] | None) -> None:
    """The task ``task_id`` ended with ``status``, ``message`` and ``result`` (nothing when
    it is gone), written in the caller's session ``s``."""
    task = s.get(ImageTask, task_id)
    if task is not None:
        task.status = status
        task.message = message
        task.result = result
        task.updated_at = utcnow()


def _limit_child() -> None:  # pragma: no cover - runs in the child
    """Resource limits for ``qemu-img`` on untrusted data (as Nova/Glance do)."""
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
    resource.setrlimit(resource.RLIMIT_CPU, (30, 30))


UploadHook = Callable[[str], None]


class ImageRecords:
    """Policy checks and rows (``ImageManager`` sets ``db``, ``policy``, ``stores`` ...)."""

    db: Database
    policy: Policy
    stores: StoreSet

    # ------------------------------------------------------------------ helpers
    def allowed(self, ctx: RequestContext, action: str, target: Mapping[str, Any]) -> bool:
        """Whether ``action``'s policy lets ``ctx`` act on ``target``."""
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

    def writable_row(self, ctx: RequestContext, s: Session, image_id: str,
                     action: str = "modify_image") -> Image:
        """The image row ``ctx`` sees, read in ``s`` (404 otherwise), once ``action`` is
        allowed on it (403 otherwise)."""
        img = self._get_row(ctx, s, image_id)
        target = {"project_id": img.owner or "", "owner": img.owner or "",
                  "visibility": img.visibility, "id": img.id}
        if not self.allowed(ctx, action, target):
            raise Forbidden(f"You are not authorized to {action.replace('_', ' ')} "
                            f"image {image_id}.")
        return img

    def touch(self, img: Image) -> None:
        """``img``'s ``updated_at`` set to now (a change of the image)."""
        img.updated_at = utcnow()
