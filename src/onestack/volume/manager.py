"""Volume business logic: the only code that changes the volume tables.

Every public method takes the caller's ``RequestContext``: a project sees its own volumes and
snapshots (an admin all of them, with ``all_tenants``); another project's are a 404. A create
records the row (``creating``) and the quota in one transaction and returns at once; the
storage work runs afterwards (``finish_*``, in a worker thread) and moves the row to
``available`` or ``error``. ``reconcile`` on start finishes what a crash interrupted: rows left
``creating``/``deleting``/``extending`` follow what the backend holds, and data that no row
names is removed.

This module holds the volumes' own lifecycle (create, delete, their updates) and recovery;
``VolumeManager`` also takes in its mixins: snapshots (``snapshots.py``), the actions on an
existing volume (``volume_actions.py``), user messages (``messages.py``), and volume types
and quotas (``types_quotas.py``).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from onestack.api.policy import Policy
from onestack.common.context import RequestContext
from onestack.common.errors import BadRequest, NotFound
from onestack.common.timeutils import utcnow
from onestack.db.engine import Database
from onestack.db.volume import Group, Snapshot, Transfer, Volume, VolumeType
from onestack.drivers.volume.base import VolumeDriver, VolumeDriverError
from onestack.volume import encryption, reimage
from onestack.volume.images import ImageSource, VolumeImage
from onestack.volume.messages import MessagesMixin
from onestack.volume.row_changes import R, RowKind, _drop_meta, _set_meta, _updated
from onestack.volume.scheduling import unmet
from onestack.volume.snapshots import SnapshotsMixin
from onestack.volume.types_quotas import TypesAndQuotasMixin, multiattach_type
from onestack.volume.visibility import scoped, visible
from onestack.volume.volume_actions import VolumeActionsMixin

LOG = logging.getLogger(__name__)
T = TypeVar("T")
M = TypeVar("M")

#: Statuses from which a volume may be deleted without force (Cinder's).
DELETABLE = {"available", "error", "error_restoring", "error_extending", "error_managing"}
#: Statuses ``os-reset_status`` accepts.
VOLUME_STATUSES = {"creating", "available", "deleting", "error", "error_deleting",
                   "error_managing", "managing", "attaching", "in-use", "detaching",
                   "maintenance", "reserved", "extending", "error_extending",
                   "downloading", "uploading", "retyping", "backing-up", "restoring-backup",
                   "error_restoring"}


def _size_from_source(want: int | None, source_size: int, source: str, kind: str) -> int:
    """The size of a new volume copied from a snapshot or volume of ``source_size`` GiB:
    ``want``, or the source's size when none is asked; 400 when smaller than the source
    (``source`` and ``kind`` name it in the fault, e.g. "the snapshot", "snapshot")."""
    want = want or source_size
    if want < source_size:
        raise BadRequest(f"Invalid input received: Volume size '{want}'GB cannot be smaller "
                         f"than {source} size {source_size}GB. They must be >= original "
                         f"{kind} size.")
    return want


class NoValidBackend(VolumeDriverError):
    """No backend satisfies the request (the volume ends in ``error``)."""


class VolumeManager(VolumeActionsMixin, SnapshotsMixin, MessagesMixin, TypesAndQuotasMixin):
    """Volumes, snapshots, volume types and quotas of the block-storage service."""

    def __init__(self, db: Database, driver: VolumeDriver, policy: Policy,
                 host: str = "onestack", availability_zone: str = "nova",
                 images: ImageSource | None = None) -> None:
        self.db = db
        #: Where volumes made from images read them (None: no image service).
        self.images = images
        #: Set while an operator has disabled the volume service (new volumes then fail).
        self.disabled_reason: str | None = None
        #: ``(session, project) -> (backups, GiB)`` when backups are served.
        self.backup_usage: Callable[[Session, str], tuple[int, int]] | None = None
        self.driver = driver
        self.policy = policy
        self.host = f"{host}@{driver.backend_name}#{driver.backend_name}"
        self.availability_zone = availability_zone

    # ------------------------------------------------------------------ capabilities
    def capabilities(self) -> dict[str, Any]:
        """What this backend reports to the scheduler (Cinder's pool capabilities)."""
        cap = self.driver.capacity()
        return {"volume_backend_name": self.driver.backend_name,
                "pool_name": self.driver.backend_name,
                "storage_protocol": self.driver.protocol, "vendor_name": "Open Source",
                "driver_version": "1.0", "total_capacity_gb": cap.total_gb,
                "free_capacity_gb": cap.free_gb, "provisioned_capacity_gb": cap.provisioned_gb,
                "max_over_subscription_ratio": str(getattr(self.driver, "oversubscription",
                                                           1.0)),
                "thin_provisioning_support": True, "thick_provisioning_support": False,
                "reserved_percentage": 0, "multiattach": True}

    # ------------------------------------------------------------------ plumbing
    # ``write``, ``read``, ``on_row``, ``find_type`` and ``check_quota`` are also the seam of
    # the collaborators built on this manager (attachments, backups, groups, QoS, transfers,
    # encryption types, re-image).
    def write(self, fn: Callable[[Session], T]) -> T:
        """``fn(session)`` in one write transaction (committed when ``fn`` returns, rolled
        back when it raises); what ``fn`` returns."""
        with self.db.transaction() as s:
            return fn(s)

    def read(self, fn: Callable[[Session], T]) -> T:
        """``fn(session)`` in a session for reads (one transaction for a consistent view,
        no write lock); what ``fn`` returns."""
        with self.db.reader() as s:
            return fn(s)

    def on_row(self, model: type[M], rid: str, fn: Callable[[Session, M], None]) -> bool:
        """``fn`` applied, in one transaction, to the row ``rid`` of ``model`` if it still
        exists (a worker's change after the storage work); whether it did."""
        def run(s: Session) -> bool:
            row = s.get(model, rid)
            if row is None:
                return False
            fn(s, row)
            return True
        return self.write(run)

    def enforce(self, ctx: RequestContext, action: str, project_id: str | None) -> None:
        self.policy.enforce(action, ctx.policy_creds(),
                            {"project_id": project_id or "", "user_id": ctx.user_id or ""})

    _visible = staticmethod(visible)

    # ------------------------------------------------------------------ changes of one row
    def _change(self, ctx: RequestContext, model: type[Any], label: str, rid: str,
                action: str, fn: Callable[[Any], T]) -> T:
        """``fn`` applied, in one transaction, to the volume or snapshot ``rid`` the caller
        sees (404 otherwise) once ``action``'s policy allows it; its ``updated_at`` is set."""
        def run(s: Session) -> T:
            row = self._visible(ctx, s.get(model, rid), label, rid)
            self.enforce(ctx, action, row.project_id)
            out = fn(row)
            row.updated_at = utcnow()
            return out
        return self.write(run)

    def volume_action(self, ctx: RequestContext, volume_id: str, action: str,
                      fn: Callable[[Volume], None]) -> None:
        """A synchronous change of one volume after ``action``'s policy."""
        self._change(ctx, Volume, "Volume", volume_id, action, fn)

    def update_row(self, ctx: RequestContext, kind: RowKind[R], rid: str,
                   changes: dict[str, Any]) -> R:
        """The volume or snapshot ``rid`` with a new name, description or metadata."""
        return self._change(ctx, kind.model, kind.label, rid, kind.update_policy,
                            lambda row: _updated(row, changes))

    def set_row_metadata(self, ctx: RequestContext, kind: RowKind[Any], rid: str,
                         metadata: dict[str, str], replace: bool) -> dict[str, str]:
        """``metadata`` merged into (or, with ``replace``, put in place of) the row's."""
        return self._change(ctx, kind.model, kind.label, rid, kind.set_metadata_policy,
                            lambda row: _set_meta(row, metadata, replace))

    def delete_row_metadata(self, ctx: RequestContext, kind: RowKind[Any], rid: str,
                            key: str) -> None:
        """The row's metadata without ``key`` (404 when it has none such)."""
        self._change(ctx, kind.model, kind.label, rid, kind.delete_metadata_policy,
                     lambda row: _drop_meta(row, kind.label, key))

    # ------------------------------------------------------------------ volumes
    def list_volumes(self, ctx: RequestContext, all_projects: bool = False,
                     project_id: str | None = None) -> list[Volume]:
        def run(s: Session) -> list[Volume]:
            q = scoped(select(Volume), Volume.project_id, ctx, all_projects, project_id)
            return list(s.scalars(q.order_by(Volume.created_at.desc(), Volume.id.desc())))
        return self.read(run)

    def get_volume(self, ctx: RequestContext, volume_id: str) -> Volume:
        return self.read(lambda s: self._visible(ctx, s.get(Volume, volume_id), "Volume",
                                                 volume_id))

    def create_volume(self, ctx: RequestContext, size: int | None, name: str | None,
                      description: str | None, volume_type: str | None,
                      metadata: dict[str, str], availability_zone: str | None,
                      snapshot_id: str | None, source_volid: str | None,
                      multiattach: bool, image: VolumeImage | None = None,
                      group_id: str | None = None) -> Volume:
        """Record a new volume (``creating``); ``finish_create`` does the storage work."""
        if availability_zone and availability_zone != self.availability_zone:
            raise BadRequest(f"Availability zone '{availability_zone}' is invalid.")

        def run(s: Session) -> Volume:
            project = ctx.project_id or ""
            want = size
            type_ref = volume_type
            if snapshot_id:
                snap = self._visible(ctx, s.get(Snapshot, snapshot_id), "Snapshot",
                                     snapshot_id)
                if snap.status != "available":
                    raise BadRequest(f"Invalid snapshot: Originating snapshot status must be "
                                     f"one of 'available' values (snapshot {snapshot_id} is "
                                     f"{snap.status}).")
                want = _size_from_source(want, snap.size, "the snapshot", "snapshot")
                src = s.get(Volume, snap.volume_id)
                if type_ref is None and src is not None:
                    type_ref = src.volume_type_id
            if source_volid:
                src = self._visible(ctx, s.get(Volume, source_volid), "Volume", source_volid)
                if src.status not in ("available", "in-use"):
                    raise BadRequest(f"Invalid volume: Source volume status must be one of "
                                     f"'available', 'in-use' ({source_volid} is "
                                     f"{src.status}).")
                want = _size_from_source(want, src.size, "original volume", "volume")
                if type_ref is None:
                    type_ref = src.volume_type_id
            if not want or want < 1:
                raise BadRequest(f"Invalid input received: Volume size '{want}' must be an "
                                 "integer and greater than 0.")
            if image is not None:
                image.check_fits(want)
            vt = self.find_type(s, ctx, type_ref)
            if encryption.encrypted(s, vt.id):
                raise BadRequest(f"Invalid input received: volume type {vt.name} is "
                                 "encrypted, and this cloud has no key manager to keep "
                                 "volume encryption keys.")
            if group_id is not None:
                group = s.get(Group, group_id)
                if group is None or (not ctx.is_admin and group.project_id != project):
                    raise NotFound(f"Group {group_id} could not be found.")
                if vt.id not in (group.volume_type_ids or []):
                    raise BadRequest(f"Invalid input received: volume type {vt.name} is not "
                                     f"one of group {group_id}'s volume types.")
            self.check_quota(s, project, volumes=1, gigabytes=want, per_volume=want)
            shared = multiattach or multiattach_type(vt)
            vol = Volume(id=str(uuid.uuid4()), project_id=project, user_id=ctx.user_id or "",
                         name=name, description=description, size=want, status="creating",
                         attach_status="detached", availability_zone=self.availability_zone,
                         volume_type_id=vt.id, bootable=False, multiattach=shared,
                         snapshot_id=snapshot_id, source_volid=source_volid, host=self.host,
                         metadata_=dict(metadata), admin_metadata={},
                         image_metadata=image.metadata() if image is not None else {},
                         attachments=[], group_id=group_id, created_at=utcnow())
            s.add(vol)
            return vol
        return self.write(run)

    def finish_create(self, volume_id: str, image: VolumeImage | None = None) -> None:
        """The storage work of a create (blocking): the row ends ``available`` or
        ``error``; a volume made from ``image`` is bootable."""
        vol = self.read(lambda s: s.get(Volume, volume_id))
        if vol is None:
            return
        try:
            if self.disabled_reason is not None:
                raise NoValidBackend("the volume service is disabled")
            vt = self.read(lambda s: s.get(VolumeType, vol.volume_type_id or ""))
            missing = unmet(dict(vt.extra_specs or {}) if vt else {}, self.capabilities())
            if missing:
                raise NoValidBackend(f"extra specs {', '.join(sorted(missing))} are not met")
            if image is not None:
                loc = self.driver.create_from_image(vol.id, vol.size, image.path,
                                                    image.disk_format)
            elif vol.snapshot_id:
                snap = self.read(lambda s: s.get(Snapshot, vol.snapshot_id))
                if snap is None or not snap.provider_location:
                    raise VolumeDriverError(f"snapshot {vol.snapshot_id} has no data")
                loc = self.driver.create_from_snapshot(vol.id, vol.size, snap.provider_location)
            elif vol.source_volid:
                src = self.read(lambda s: s.get(Volume, vol.source_volid))
                if src is None or not src.provider_location:
                    raise VolumeDriverError(f"volume {vol.source_volid} has no data")
                loc = self.driver.clone_volume(vol.id, vol.size, src.provider_location)
            else:
                loc = self.driver.create_volume(vol.id, vol.size)
        except NoValidBackend as exc:
            LOG.warning("volume %s: no valid backend: %s", volume_id, exc)
            self._set_status(volume_id, "error")
            self.add_message(vol.project_id, "VOLUME", volume_id, "VOLUME_VOLUME_001_003",
                             "schedule allocate volume:Could not find any available weighted "
                             "backend.")
            return
        except VolumeDriverError as exc:
            LOG.warning("volume %s: create failed: %s", volume_id, exc)
            self._set_status(volume_id, "error")
            self.add_message(vol.project_id, "VOLUME", volume_id, "VOLUME_VOLUME_001_002",
                             "create volume:Could not create volume.")
            return
        def done(s: Session, row: Volume) -> None:
            row.provider_location = loc
            if row.status == "creating":
                row.status = "available"
            if image is not None:
                row.bootable = True
            if vol.source_volid or vol.snapshot_id:
                src_id = vol.source_volid
                if vol.snapshot_id:
                    snap = s.get(Snapshot, vol.snapshot_id)
                    src_id = snap.volume_id if snap is not None else None
                src = s.get(Volume, src_id) if src_id else None
                if src is not None:
                    row.bootable = src.bootable
                    row.image_metadata = dict(src.image_metadata or {})
            row.updated_at = utcnow()
        if not self.on_row(Volume, volume_id, done):  # deleted meanwhile
            self.driver.delete_volume(loc)

    def _set_status(self, volume_id: str, status: str) -> None:
        def run(s: Session, row: Volume) -> None:
            row.status = status
            row.updated_at = utcnow()
        self.on_row(Volume, volume_id, run)

    def begin_delete(self, ctx: RequestContext, volume_id: str, force: bool = False,
                     cascade: bool = False) -> None:
        """Mark a volume ``deleting`` (``finish_delete`` removes its data and row)."""
        def run(s: Session) -> None:
            vol = self._visible(ctx, s.get(Volume, volume_id), "Volume", volume_id)
            self.enforce(ctx, "volume:force_delete" if force else "volume:delete",
                         vol.project_id)
            if vol.attach_status == "attached" or vol.status == "in-use":
                raise BadRequest("Invalid volume: Volume status must be available or error or "
                                 "error_restoring or error_extending or error_managing and "
                                 "must not be migrating, attached, belong to a group, have "
                                 "snapshots or be disassociated from snapshots after volume "
                                 "transfer.")
            if not force and vol.status not in DELETABLE:
                raise BadRequest(f"Invalid volume: Volume status must be available or error "
                                 f"or error_restoring or error_extending or error_managing "
                                 f"and must not be migrating, attached, belong to a group, "
                                 f"have snapshots or be disassociated from snapshots after "
                                 f"volume transfer (volume {volume_id} is {vol.status}).")
            if vol.group_id is not None:
                raise BadRequest(f"Invalid volume: Volume {volume_id} belongs to group "
                                 f"{vol.group_id}; remove it from the group first.")
            snaps = list(s.scalars(select(Snapshot).where(Snapshot.volume_id == vol.id)))
            if snaps and not cascade:
                raise BadRequest("Invalid volume: Volume status must be available or error or "
                                 "error_restoring or error_extending or error_managing and "
                                 "must not be migrating, attached, belong to a group, have "
                                 "snapshots or be disassociated from snapshots after volume "
                                 "transfer.")
            for snap in snaps:
                snap.status = "deleting"
            vol.status = "deleting"
            vol.updated_at = utcnow()
        self.write(run)

    def finish_delete(self, volume_id: str) -> None:
        vol = self.read(lambda s: s.get(Volume, volume_id))
        if vol is None:
            return
        snaps = self.read(lambda s: list(s.scalars(
            select(Snapshot).where(Snapshot.volume_id == volume_id))))
        try:
            for snap in snaps:
                if snap.provider_location:
                    self.driver.delete_snapshot(snap.provider_location)
            if vol.provider_location:
                self.driver.delete_volume(vol.provider_location)
        except VolumeDriverError as exc:
            LOG.warning("volume %s: delete failed: %s", volume_id, exc)
            self._set_status(volume_id, "error_deleting")
            return
        def run(s: Session) -> None:
            for snap in s.scalars(select(Snapshot).where(Snapshot.volume_id == volume_id)):
                s.delete(snap)
            for offer in s.scalars(select(Transfer).where(Transfer.volume_id == volume_id)):
                s.delete(offer)
            row = s.get(Volume, volume_id)
            if row is not None:
                s.delete(row)
        self.write(run)

    # ------------------------------------------------------------------ recovery
    def reconcile(self) -> dict[str, int]:
        """Finish what a crash interrupted (see the module docstring); the counts done."""
        counts = {"created": 0, "failed": 0, "deleted": 0, "extended": 0, "orphans": 0}
        vols = self.read(lambda s: list(s.scalars(select(Volume))))
        snaps = self.read(lambda s: list(s.scalars(select(Snapshot))))
        for vol in vols:
            if vol.status == "creating":
                loc = f"volume-{vol.id}"
                if self.driver.exists(loc):
                    def done(s: Session, vid: str = vol.id, loc: str = loc) -> None:
                        row = s.get(Volume, vid)
                        if row is not None:
                            row.provider_location = loc
                            row.status = "available"
                    self.write(done)
                    counts["created"] += 1
                else:
                    self._set_status(vol.id, "error")
                    counts["failed"] += 1
            elif vol.status == "downloading":
                reimage.reconcile(self, vol.id)
                counts["failed"] += 1
            elif vol.status == "deleting":
                self.finish_delete(vol.id)
                counts["deleted"] += 1
            elif (vol.status == "extending" and vol.provider_location
                  and self.driver.exists(vol.provider_location)):
                real = self.driver.size_gb(vol.provider_location)

                def fix(s: Session, vid: str = vol.id, size: int = real) -> None:
                    row = s.get(Volume, vid)
                    if row is not None:
                        row.size = max(row.size, size)
                        row.status = "available"
                self.write(fix)
                counts["extended"] += 1
        for snap in snaps:
            if snap.status == "creating":
                self.finish_snapshot(snap.id)
            elif snap.status == "deleting":
                self.finish_delete_snapshot(snap.id)
        named = self.read(lambda s: {
            *(loc for (loc,) in s.execute(select(Volume.provider_location)) if loc),
            *(f"volume-{vid}" for (vid,) in s.execute(select(Volume.id))),
            *(loc for (loc,) in s.execute(select(Snapshot.provider_location)) if loc),
            *(f"snapshot-{sid}" for (sid,) in s.execute(select(Snapshot.id)))})
        for loc in self.driver.locations() - named:
            if loc.startswith("snapshot-"):
                self.driver.delete_snapshot(loc)
            else:
                self.driver.delete_volume(loc)
            counts["orphans"] += 1
        return counts
