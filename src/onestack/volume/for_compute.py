"""The volume service as compute sees it, in process: ``LocalVolumes`` implements compute's
``ComputeVolumes`` protocol (``onestack.compute.volumes``: Nova's calls to Cinder, new-style
attachments) over this package's manager and attachments, with Nova's wording of errors.
``onestack up`` gives it to compute (``bootstrap.py``); a compute host elsewhere would be
given an HTTP client of ``/v3/attachments`` with the same methods instead."""

from __future__ import annotations

import contextlib
import logging
import platform
from collections.abc import Iterator
from typing import Any

from onestack.common.context import RequestContext
from onestack.common.errors import APIError, BadRequest, NotFound
from onestack.volume import reimage
from onestack.volume.attachments import Attachments
from onestack.volume.manager import VolumeManager

LOG = logging.getLogger(__name__)


def connector(host: str, device: str | None = None) -> dict[str, Any]:
    """What os-brick's connector tells Cinder about a compute host."""
    out: dict[str, Any] = {"host": host, "platform": platform.machine(), "os_type": "linux",
                           "multipath": False, "initiator": None, "ip": "127.0.0.1"}
    if device:
        out["mountpoint"] = device
    return out


def volume_error(exc: APIError) -> APIError:
    """A volume service error worded as Nova reports it (400 ``Invalid volume``)."""
    if exc.status == 404:
        return exc
    if exc.status == 400 and not exc.message.startswith("Invalid volume"):
        return BadRequest(f"Invalid volume: {exc.message}")
    return BadRequest(exc.message) if exc.status < 500 else exc


@contextlib.contextmanager
def _not_found_as(what: str, rid: str) -> Iterator[None]:
    """Any 404 inside reworded as Nova says it: ``{what} {rid} could not be found.``"""
    try:
        yield
    except NotFound:
        raise NotFound(f"{what} {rid} could not be found.") from None


class LocalVolumes:
    """``ComputeVolumes`` over the in-process volume manager and attachments."""

    def __init__(self, manager: VolumeManager, attachments: Attachments) -> None:
        self.m = manager
        self.a = attachments

    def get(self, ctx: RequestContext, volume_id: str) -> dict[str, Any]:
        with _not_found_as("Volume", volume_id):
            v = self.m.get_volume(ctx, volume_id)
        return self._volume(v)

    @staticmethod
    def _volume(v: Any) -> dict[str, Any]:
        return {"id": v.id, "status": v.status, "size": v.size, "project_id": v.project_id,
                "multiattach": v.multiattach, "bootable": v.bootable,
                "attachments": [dict(a) for a in v.attachments or []],
                **_image_facts(v.image_metadata)}

    def get_snapshot(self, ctx: RequestContext, snapshot_id: str) -> dict[str, Any]:
        """A snapshot the caller sees, with the image metadata of its volume."""
        with _not_found_as("Snapshot", snapshot_id):
            snap = self.m.get_snapshot(ctx, snapshot_id)
        meta: dict[str, str] = {}
        with contextlib.suppress(NotFound):
            meta = dict(self.m.get_volume(RequestContext.admin(), snap.volume_id)
                        .image_metadata or {})
        return {"id": snap.id, "status": snap.status, "size": snap.size,
                **_image_facts(meta)}

    def create(self, project_id: str, user_id: str, size: int, name: str,
               image_id: str | None = None, snapshot_id: str | None = None,
               volume_type: str | None = None) -> dict[str, Any]:
        """A new volume of the project (from an image, a snapshot or empty), made before
        returning (blocking): its facts, ``status`` ``available`` or ``error``."""
        ctx = RequestContext.admin()
        ctx.project_id, ctx.user_id = project_id, user_id
        made = self.begin_create(ctx, size, name, None, volume_type, {}, None, snapshot_id,
                                 image_id)
        self.finish_create(made["id"], image_id)
        return self._volume(self.m.get_volume(ctx, made["id"]))

    # ------------------------------------------------------------------ os-volumes proxy
    def begin_create(self, ctx: RequestContext, size: int | None, name: str | None,
                     description: str | None, volume_type: str | None,
                     metadata: dict[str, str], availability_zone: str | None,
                     snapshot_id: str | None, image_id: str | None) -> dict[str, Any]:
        """Record a new volume of ``ctx``'s project (``creating``); ``finish_create`` makes
        its data."""
        try:
            image = None
            if image_id:
                if self.m.images is None:
                    raise BadRequest("no image service to create a volume from")
                image = self.m.images.volume_image(ctx, image_id)
            v = self.m.create_volume(ctx, size, name, description, volume_type, metadata,
                                     availability_zone, snapshot_id, None, False, image)
        except APIError as exc:
            raise volume_error(exc) if exc.status != 403 else exc from None
        return self.describe(v)

    def finish_create(self, volume_id: str, image_id: str | None = None) -> None:
        """The storage work of a create (blocking; the volume ends available or error)."""
        image = None
        if image_id and self.m.images is not None:
            with contextlib.suppress(APIError):
                image = self.m.images.volume_image(RequestContext.admin(), image_id)
        self.m.finish_create(volume_id, image)

    def describe(self, v: Any) -> dict[str, Any]:
        """A volume in neutral terms (what Nova's volume proxy shows)."""
        names = self.m.type_names()
        return {"id": v.id, "status": v.status, "size": v.size, "name": v.name,
                "description": v.description, "availability_zone": v.availability_zone,
                "created_at": v.created_at, "snapshot_id": v.snapshot_id,
                "volume_type": names.get(v.volume_type_id or ""),
                "metadata": dict(v.metadata_ or {}),
                "attachments": [dict(a) for a in v.attachments or []
                                if a.get("attach_status", "attached") == "attached"]}

    def list_volumes(self, ctx: RequestContext) -> list[dict[str, Any]]:
        return [self.describe(v) for v in self.m.list_volumes(ctx)]

    def show_volume(self, ctx: RequestContext, volume_id: str) -> dict[str, Any]:
        with _not_found_as("Volume", volume_id):
            return self.describe(self.m.get_volume(ctx, volume_id))

    def delete_volume(self, ctx: RequestContext, volume_id: str) -> None:
        """Begin deleting the caller's volume (``finish_delete`` removes its data)."""
        with _not_found_as("Volume", volume_id):
            self.m.begin_delete(ctx, volume_id)

    def finish_delete(self, volume_id: str) -> None:
        self.m.finish_delete(volume_id)

    @staticmethod
    def describe_snapshot(s: Any) -> dict[str, Any]:
        return {"id": s.id, "volume_id": s.volume_id, "status": s.status, "size": s.size,
                "created_at": s.created_at, "name": s.name, "description": s.description}

    def list_snapshots(self, ctx: RequestContext) -> list[dict[str, Any]]:
        return [self.describe_snapshot(s) for s in self.m.list_snapshots(ctx)]

    def show_snapshot(self, ctx: RequestContext, snapshot_id: str) -> dict[str, Any]:
        with _not_found_as("Snapshot", snapshot_id):
            return self.describe_snapshot(self.m.get_snapshot(ctx, snapshot_id))

    def begin_snapshot(self, ctx: RequestContext, volume_id: str, name: str | None,
                       description: str | None, force: bool) -> dict[str, Any]:
        try:
            snap = self.m.create_snapshot(ctx, volume_id, name, description, force, {})
        except NotFound:
            raise NotFound(f"Volume {volume_id} could not be found.") from None
        except APIError as exc:
            raise volume_error(exc) if exc.status != 403 else exc from None
        return self.describe_snapshot(snap)

    def finish_snapshot(self, snapshot_id: str) -> None:
        self.m.finish_snapshot(snapshot_id)

    def delete_snapshot(self, ctx: RequestContext, snapshot_id: str) -> None:
        with _not_found_as("Snapshot", snapshot_id):
            self.m.begin_delete_snapshot(ctx, snapshot_id)

    def finish_delete_snapshot(self, snapshot_id: str) -> None:
        self.m.finish_delete_snapshot(snapshot_id)

    def reserve(self, ctx: RequestContext, volume_id: str, instance_uuid: str) -> str:
        try:
            view = self.a.create(ctx, volume_id, instance_uuid)
        except NotFound:
            raise NotFound(f"Volume {volume_id} could not be found.") from None
        except APIError as exc:
            raise volume_error(exc) from None
        return str(view.data["id"])

    def connect(self, attachment_id: str, host: str, device: str) -> dict[str, Any]:
        try:
            view = self.a.update(None, attachment_id, connector(host, device))
        except APIError as exc:
            raise volume_error(exc) from None
        return dict(view.data["connection_info"])

    def complete(self, attachment_id: str) -> None:
        self.a.complete(None, attachment_id)

    def release(self, attachment_id: str) -> None:
        with contextlib.suppress(NotFound):  # already gone
            self.a.delete(None, attachment_id)

    def reimage(self, volume_id: str, image_id: str) -> None:
        if self.m.images is None:
            raise BadRequest("no image service to re-image from")
        image = self.m.images.volume_image(RequestContext.admin(), image_id)

        def begin(v: Any) -> None:
            image.check_fits(v.size)
            reimage.mark(v)
        self.m.volume_action(RequestContext.admin(), volume_id, "volume:update", begin)
        if not reimage.finish(self.m, volume_id, image):
            raise BadRequest(f"Volume {volume_id} could not be re-imaged with image "
                             f"{image_id}.")

    def _volume_action(self, volume_id: str, fn: Any) -> None:
        ctx = RequestContext.admin()
        with contextlib.suppress(NotFound):
            self.m.volume_action(ctx, volume_id, "volume:update", fn)

    def begin_detaching(self, volume_id: str) -> None:
        def fn(v: Any) -> None:
            if v.status == "in-use":
                v.status = "detaching"
        self._volume_action(volume_id, fn)

    def roll_detaching(self, volume_id: str) -> None:
        def fn(v: Any) -> None:
            if v.status == "detaching":
                v.status = "in-use"
        self._volume_action(volume_id, fn)

    def delete(self, volume_id: str) -> None:
        """Delete a volume its server took with it (``delete_on_termination``)."""
        ctx = RequestContext.admin()
        try:
            self.m.begin_delete(ctx, volume_id)
        except NotFound:
            return
        self.m.finish_delete(volume_id)

    def attached_servers(self) -> set[str]:
        views = self.a.list(RequestContext.admin(), all_projects=True)
        return {str(v.data["server_id"]) for v in views if v.data.get("server_id")}


#: ``volume_image_metadata`` keys that describe the image itself, not its properties.
_IMAGE_FIELDS = {"image_id", "image_name", "checksum", "size", "min_disk", "min_ram",
                 "disk_format", "container_format"}


def _image_facts(meta: dict[str, str] | None) -> dict[str, Any]:
    """The image a volume was made from (``image_id``) and that image's properties (what a
    guest booted from the volume is configured by)."""
    meta = dict(meta or {})
    return {"image_id": meta.get("image_id"),
            "image_properties": {k: v for k, v in meta.items() if k not in _IMAGE_FIELDS}}
