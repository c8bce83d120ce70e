"""The storage side of actions on an existing volume: extend (offline, or online at 3.42),
retype, upload to an image (the volume ``uploading`` meanwhile), the bootable and read-only
flags, a status reset, the volume's image metadata and the legacy attach actions
(``attach_actions.py``). Part of ``VolumeManager``."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from onestack.common.context import RequestContext
from onestack.common.errors import BadRequest
from onestack.common.timeutils import utcnow
from onestack.db.volume import Volume
from onestack.drivers.volume.base import VolumeDriver, VolumeDriverError
from onestack.volume import attach_actions, encryption
from onestack.volume.images import ImageSource
from onestack.volume.row_changes import without_key
from onestack.volume.types_quotas import multiattach_type

LOG = logging.getLogger(__name__)


class VolumeActionsMixin:
    """Extend, retype and upload of ``VolumeManager`` (which provides the plumbing declared
    here)."""

    driver: VolumeDriver
    images: ImageSource | None
    write: Callable[..., Any]
    read: Callable[..., Any]
    enforce: Callable[..., None]
    _visible: Callable[..., Any]
    _change: Callable[..., Any]
    _set_status: Callable[[str, str], None]
    check_quota: Callable[..., None]
    find_type: Callable[..., Any]

    # ------------------------------------------------------------------ changes of one volume
    # Each: the volume the caller sees (404 otherwise), the action's policy, the change and
    # a new ``updated_at``, in one transaction (``VolumeManager._change``).
    def set_bootable(self, ctx: RequestContext, volume_id: str, flag: bool) -> None:
        """``os-set_bootable``."""
        def run(v: Volume) -> None:
            v.bootable = flag
        self._change(ctx, Volume, "Volume", volume_id,
                     "volume_extension:volume_actions:set_bootable", run)

    def set_readonly(self, ctx: RequestContext, volume_id: str, flag: bool) -> None:
        """``os-update_readonly_flag``: ``readonly`` in the admin metadata and the metadata."""
        value = "True" if flag else "False"

        def run(v: Volume) -> None:
            v.admin_metadata = {**(v.admin_metadata or {}), "readonly": value}
            v.metadata_ = {**(v.metadata_ or {}), "readonly": value}
        self._change(ctx, Volume, "Volume", volume_id, "volume:update_readonly_flag", run)

    def reset_status(self, ctx: RequestContext, volume_id: str, status: str,
                     attach_status: str | None) -> None:
        """``os-reset_status``: a new status (and attach status, when given)."""
        def run(v: Volume) -> None:
            v.status = status
            if attach_status is not None:
                v.attach_status = attach_status
        self._change(ctx, Volume, "Volume", volume_id,
                     "volume_extension:volume_admin_actions:reset_status", run)

    def set_image_metadata(self, ctx: RequestContext, volume_id: str,
                           metadata: dict[str, str]) -> dict[str, str]:
        """``os-set_image_metadata``: ``metadata`` merged into the volume's image metadata;
        returns the result."""
        def run(v: Volume) -> dict[str, str]:
            v.image_metadata = {**(v.image_metadata or {}), **metadata}
            return dict(v.image_metadata)
        out: dict[str, str] = self._change(ctx, Volume, "Volume", volume_id,
                                           "volume_extension:volume_image_metadata:set", run)
        return out

    def unset_image_metadata(self, ctx: RequestContext, volume_id: str,
                             key: str) -> dict[str, str]:
        """``os-unset_image_metadata``: the volume's image metadata without ``key`` (404
        when it has none such); returns the result."""
        def run(v: Volume) -> dict[str, str]:
            v.image_metadata = without_key(
                v.image_metadata, key, f"Glance metadata for volume {v.id} cannot be found.")
            return dict(v.image_metadata)
        out: dict[str, str] = self._change(ctx, Volume, "Volume", volume_id,
                                           "volume_extension:volume_image_metadata:set", run)
        return out

    def attach_action(self, ctx: RequestContext, volume_id: str, action: str,
                      args: dict[str, Any]) -> None:
        """One of the legacy attach actions (``attach_actions.ACTIONS``, which names its
        policy); ``args`` are checked before the volume is read."""
        policy, make = attach_actions.ACTIONS[action]
        self._change(ctx, Volume, "Volume", volume_id, policy, make(args))

    def begin_extend(self, ctx: RequestContext, volume_id: str, new_size: int,
                     attached_ok: bool = False) -> int:
        """Mark a volume ``extending``; ``attached_ok`` (microversion 3.42+): an
        ``in-use`` volume too (its servers are told once it has grown)."""
        def run(s: Session) -> int:
            vol = self._visible(ctx, s.get(Volume, volume_id), "Volume", volume_id)
            online = attached_ok and vol.status == "in-use"
            self.enforce(ctx, "volume:extend_attached_volume" if online else "volume:extend",
                         vol.project_id)
            if vol.status != "available" and not online:
                wanted = "'available' or 'in-use'" if attached_ok else "'available'"
                raise BadRequest(f"Invalid volume: Volume status must be {wanted} to "
                                 f"extend, currently in '{vol.status}'.")
            if new_size <= vol.size:
                raise BadRequest(f"Invalid input received: New size for extend must be "
                                 f"greater than current size. (current: {vol.size}, "
                                 f"extended: {new_size}).")
            self.check_quota(s, vol.project_id, gigabytes=new_size - vol.size,
                             per_volume=new_size)
            vol.status = "extending"
            vol.updated_at = utcnow()
            return vol.size
        return self.write(run)

    def finish_extend(self, volume_id: str, new_size: int) -> list[str]:
        """Grow the data (blocking); returns the servers the volume is attached to, which
        must be told (Cinder's ``volume-extended`` event to Nova)."""
        vol = self.read(lambda s: s.get(Volume, volume_id))
        if vol is None or not vol.provider_location:
            return []
        try:
            self.driver.extend_volume(vol.provider_location, new_size)
        except VolumeDriverError as exc:
            LOG.warning("volume %s: extend failed: %s", volume_id, exc)
            self._set_status(volume_id, "error_extending")
            return []

        def run(s: Session) -> list[str]:
            row = s.get(Volume, volume_id)
            if row is None:
                return []
            row.size = new_size
            servers = [str(a["server_id"]) for a in row.attachments or []
                       if a.get("server_id") and a.get("attach_status",
                                                       "attached") == "attached"]
            row.status = "in-use" if row.attachments else "available"
            row.updated_at = utcnow()
            return servers
        return self.write(run)

    def retype(self, ctx: RequestContext, volume_id: str, new_type: str,
               migration_policy: str) -> None:
        """Change a volume's type. Every type lives on this one backend, so no data moves
        (a retype ``never`` needing migration cannot happen here)."""
        def run(s: Session) -> None:
            vol = self._visible(ctx, s.get(Volume, volume_id), "Volume", volume_id)
            self.enforce(ctx, "volume_extension:retype", vol.project_id)
            if vol.status not in ("available", "in-use"):
                raise BadRequest(f"Invalid volume: Volume {volume_id} status must be "
                                 f"available or in-use, but current status is: "
                                 f"{vol.status}.")
            vt = self.find_type(s, ctx, new_type)
            if vt.id == vol.volume_type_id:
                raise BadRequest("Invalid input received: Retype requested to the volume's "
                                 "current type.")
            if encryption.encrypted(s, vt.id):
                raise BadRequest("Invalid input received: Retype cannot change encryption "
                                 "requirements (this cloud has no key manager).")
            # Cinder: the new type decides whether the volume is multiattach; a change of
            # that only while nothing is attached.
            shared = multiattach_type(vt)
            if shared != vol.multiattach and vol.status != "available":
                raise BadRequest(f"Invalid input received: type {vt.name} would change "
                                 "whether the volume attaches to several servers, which "
                                 f"only an available volume may (it is {vol.status}).")
            vol.volume_type_id = vt.id
            vol.multiattach = shared
            vol.updated_at = utcnow()
        self.write(run)

    def begin_upload(self, ctx: RequestContext, volume_id: str, force: bool) -> Volume:
        """``os-volume_upload_image``: the volume goes ``uploading`` (back when done)."""
        def run(s: Session) -> Volume:
            vol = self._visible(ctx, s.get(Volume, volume_id), "Volume", volume_id)
            self.enforce(ctx, "volume_extension:volume_actions:upload_image", vol.project_id)
            if vol.status != "available" and not (force and vol.status == "in-use"):
                raise BadRequest(f"Invalid volume: Volume {volume_id} status must be "
                                 f"available or in-use, but current status is: "
                                 f"{vol.status}.")
            vol.admin_metadata = {**(vol.admin_metadata or {}),
                                  "previous_status": vol.status}
            vol.status = "uploading"
            return vol
        return self.write(run)

    def finish_upload(self, volume_id: str, image_id: str, disk_format: str = "raw",
                      scratch: str | None = None) -> None:
        """Copy the volume into the image (blocking): raw data streamed, other formats
        written by the driver to a scratch file first; the image is deleted when the copy
        fails."""
        vol = self.read(lambda s: s.get(Volume, volume_id))
        try:
            if self.images is None or vol is None or not vol.provider_location:
                raise VolumeDriverError(f"volume {volume_id} has no data")
            if disk_format == "raw":
                self.images.upload(image_id, self.driver.read_chunks(vol.provider_location,
                                                                     4 << 20))
            else:
                with tempfile.TemporaryDirectory(dir=scratch) as tmp:
                    out = f"{tmp}/image"
                    self.driver.export_file(vol.provider_location, out, disk_format)

                    def chunks() -> Any:
                        with open(out, "rb") as fh:
                            while piece := fh.read(4 << 20):
                                yield piece
                    self.images.upload(image_id, chunks())
        except Exception as exc:  # noqa: BLE001 - any failure: no half image, volume back
            LOG.warning("upload of volume %s to image %s failed: %s", volume_id, image_id,
                        exc)
            if self.images is not None:
                self.images.discard(image_id)
        self.end_upload(volume_id)

    def end_upload(self, volume_id: str) -> None:
        """The volume back to the status it had before an upload."""
        def done(s: Session) -> None:
            row = s.get(Volume, volume_id)
            if row is not None and row.status == "uploading":
                meta = dict(row.admin_metadata or {})
                row.status = meta.pop("previous_status", "available")
                row.admin_metadata = meta
        self.write(done)
