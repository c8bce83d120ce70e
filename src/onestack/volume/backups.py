"""Volume backups (Cinder's ``backups``): full and incremental copies of a volume into the
directory backup store, restores into a new or an existing volume, and backup records to
export and import. A create or restore is recorded first and finished in a worker thread
(``finish_*``); the volume waits ``backing-up`` or ``restoring-backup`` meanwhile."""

from __future__ import annotations

import base64
import json
import logging
import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from onestack.common.context import RequestContext
from onestack.common.errors import BadRequest
from onestack.common.timeutils import isotime, parse_isotime, utcnow
from onestack.db.volume import Backup, Snapshot, Volume
from onestack.drivers.volume.base import GiB, VolumeDriverError
from onestack.volume.backup_store import BackupError, DirectoryBackupStore
from onestack.volume.manager import VolumeManager
from onestack.volume.types_quotas import OverQuota
from onestack.volume.visibility import scoped, visible

LOG = logging.getLogger(__name__)
#: The backup service named in exported records. The directory store keeps Cinder's POSIX
#: backup driver's name: clients (Tempest among them) expect a ``cinder.backup.drivers``
#: name there.
SERVICE = "cinder.backup.drivers.posix"


class Backups:
    def __init__(self, manager: VolumeManager, store: DirectoryBackupStore) -> None:
        self.m = manager
        self.store = store

    def _visible(self, ctx: RequestContext, s: Session, backup_id: str) -> Backup:
        return visible(ctx, s.get(Backup, backup_id), "Backup", backup_id)

    @staticmethod
    def has_dependents(s: Session, backup_id: str) -> bool:
        return s.scalar(select(Backup.id).where(Backup.parent_id == backup_id).limit(1)) \
            is not None

    # ------------------------------------------------------------------ reads
    def list(self, ctx: RequestContext, all_projects: bool) -> list[tuple[Backup, bool]]:
        def run(s: Session) -> list[tuple[Backup, bool]]:
            q = scoped(select(Backup).order_by(Backup.created_at.desc(), Backup.id.desc()),
                       Backup.project_id, ctx, all_projects)
            rows = list(s.scalars(q))
            parents = {p for (p,) in s.execute(select(Backup.parent_id).where(
                Backup.parent_id.is_not(None)))}
            return [(b, b.id in parents) for b in rows]
        return self.m.read(run)

    def get(self, ctx: RequestContext, backup_id: str) -> tuple[Backup, bool]:
        def run(s: Session) -> tuple[Backup, bool]:
            b = self._visible(ctx, s, backup_id)
            self.m.enforce(ctx, "backup:get", b.project_id)
            return b, self.has_dependents(s, b.id)
        return self.m.read(run)

    def usage(self, s: Session, project_id: str) -> tuple[int, int]:
        n, gb = s.execute(select(func.count(), func.coalesce(func.sum(Backup.size), 0)).where(
            Backup.project_id == project_id)).one()
        return int(n), int(gb)

    # ------------------------------------------------------------------ create
    def create(self, ctx: RequestContext, volume_id: str, name: str | None,
               description: str | None, incremental: bool, force: bool,
               container: str | None, metadata: dict[str, str],
               snapshot_id: str | None = None) -> Backup:
        """Record a backup of the volume, or of one of its snapshots (``snapshot_id``:
        the volume may then be in use); ``finish_create`` copies the data."""
        def run(s: Session) -> Backup:
            vol = visible(ctx, s.get(Volume, volume_id), "Volume", volume_id)
            self.m.enforce(ctx, "backup:create", vol.project_id)
            snap = None
            if snapshot_id is not None:
                snap = visible(ctx, s.get(Snapshot, snapshot_id), "Snapshot", snapshot_id)
                if snap.volume_id != vol.id:
                    raise BadRequest(f"Invalid snapshot: snapshot {snapshot_id} is not a "
                                     f"snapshot of volume {vol.id}.")
                if snap.status != "available":
                    raise BadRequest(f"Invalid snapshot: Snapshot to be backed up must be "
                                     f"available, but the current status is "
                                     f"\"{snap.status}\".")
                if vol.status not in ("available", "in-use"):
                    raise BadRequest(f"Invalid volume: Volume to be backed up must be "
                                     f"available or in-use, but the current status is "
                                     f"\"{vol.status}\".")
            elif vol.status != "available" and not (force and vol.status == "in-use"):
                raise BadRequest(f"Invalid volume: Volume to be backed up must be available "
                                 f"or in-use, but the current status is \"{vol.status}\".")
            parent = None
            if incremental:
                parent = s.scalar(select(Backup).where(
                    Backup.volume_id == vol.id, Backup.status == "available")
                    .order_by(Backup.created_at.desc()).limit(1))
                if parent is None:
                    raise BadRequest("Invalid backup: No backups available to do an "
                                     "incremental backup.")
            limits = self.m.quota_limits(s, vol.project_id)
            n, gb = self.usage(s, vol.project_id)
            if 0 <= limits["backups"] < n + 1:
                raise OverQuota(f"BackupLimitExceeded: Maximum number of backups allowed "
                                f"({limits['backups']}) exceeded")
            if 0 <= limits["backup_gigabytes"] < gb + vol.size:
                raise OverQuota(f"VolumeBackupSizeExceedsAvailableQuota: Requested backup "
                                f"exceeds allowed Backup gigabytes quota. Requested "
                                f"{vol.size}G, quota is {limits['backup_gigabytes']}G and "
                                f"{gb}G has been consumed.")
            b = Backup(id=str(uuid.uuid4()), volume_id=vol.id, project_id=vol.project_id,
                       user_id=ctx.user_id or "", name=name, description=description,
                       status="creating", size=vol.size, object_count=0,
                       container=container or "volumebackups",
                       parent_id=parent.id if parent else None,
                       availability_zone=vol.availability_zone, metadata_=dict(metadata),
                       created_at=utcnow())
            b.service_metadata = b.id
            if snap is not None:
                b.snapshot_id, b.size = snap.id, snap.size
                snap.status = "backing-up"
            else:
                vol.admin_metadata = {**(vol.admin_metadata or {}),
                                      "previous_status": vol.status}
                vol.status = "backing-up"
            s.add(b)
            return b
        return self.m.write(run)

    def _volume_back(self, s: Session, volume_id: str) -> None:
        vol = s.get(Volume, volume_id)
        if vol is not None and vol.status in ("backing-up", "restoring-backup"):
            meta = dict(vol.admin_metadata or {})
            vol.status = meta.pop("previous_status", "available")
            vol.admin_metadata = meta

    def finish_create(self, backup_id: str) -> None:
        b = self.m.read(lambda s: s.get(Backup, backup_id))
        if b is None:
            return
        vol = self.m.read(lambda s: s.get(Volume, b.volume_id))
        snap = self.m.read(
            lambda s: s.get(Snapshot, b.snapshot_id)) if b.snapshot_id else None
        try:
            source = snap if b.snapshot_id else vol
            if vol is None or source is None or not source.provider_location:
                raise VolumeDriverError(f"volume {b.volume_id} has no data")
            parent = self.m.read(
                lambda s: s.get(Backup, b.parent_id)) if b.parent_id else None
            count = self.store.write(
                b.id, self.m.driver.read_chunks(source.provider_location,
                                                self.store.chunk_size),
                source.size * GiB, (parent.service_metadata or parent.id) if parent else None,
                {"metadata": dict(vol.metadata_ or {}), "bootable": vol.bootable,
                 "image_metadata": dict(vol.image_metadata or {})})
            status, reason = "available", None
        except (VolumeDriverError, BackupError, OSError) as exc:
            LOG.warning("backup %s failed: %s", backup_id, exc)
            count, status, reason = 0, "error", str(exc)[:255]

        def done(s: Session) -> None:
            row = s.get(Backup, backup_id)
            if row is not None:
                row.status, row.object_count, row.fail_reason = status, count, reason
                row.data_timestamp = snap.created_at if snap is not None else row.created_at
                row.updated_at = utcnow()
            if b.snapshot_id:
                snap_row = s.get(Snapshot, b.snapshot_id)
                if snap_row is not None and snap_row.status == "backing-up":
                    snap_row.status = "available"
            else:
                self._volume_back(s, b.volume_id)
        self.m.write(done)

    # ------------------------------------------------------------------ changes
    def update(self, ctx: RequestContext, backup_id: str, changes: dict[str, Any]) -> Backup:
        def run(s: Session) -> Backup:
            b = self._visible(ctx, s, backup_id)
            self.m.enforce(ctx, "backup:update", b.project_id)
            for key in ("name", "description"):
                if key in changes:
                    setattr(b, key, changes[key])
            if "metadata" in changes:
                b.metadata_ = dict(changes["metadata"])
            b.updated_at = utcnow()
            return b
        return self.m.write(run)

    def begin_delete(self, ctx: RequestContext, backup_id: str, force: bool) -> None:
        def run(s: Session) -> None:
            b = self._visible(ctx, s, backup_id)
            self.m.enforce(ctx, "backup:backup-force_delete" if force else "backup:delete",
                           b.project_id)
            if not force and b.status not in ("available", "error"):
                raise BadRequest(f"Invalid backup: Backup status must be available or error "
                                 f"(backup {backup_id} is {b.status}).")
            if self.has_dependents(s, b.id):
                raise BadRequest("Invalid backup: Incremental backups exist for this backup.")
            b.status = "deleting"
        self.m.write(run)

    def finish_delete(self, backup_id: str) -> None:
        def run(s: Session) -> str | None:
            row = s.get(Backup, backup_id)
            if row is None:
                return None
            data = row.service_metadata
            s.delete(row)
            s.flush()
            shared = s.scalar(select(Backup.id).where(Backup.service_metadata == data)
                              .limit(1))
            return None if shared else data
        data = self.m.write(run)
        if data:  # no other record (an imported one) uses the data
            self.store.delete(data)

    def reset_status(self, ctx: RequestContext, backup_id: str, status: str) -> None:
        if status not in ("available", "error"):
            raise BadRequest(f"Invalid input received: backup status {status} is not "
                             "'available' or 'error'.")

        def run(s: Session) -> None:
            b = self._visible(ctx, s, backup_id)
            self.m.enforce(ctx, "backup:backup-reset_status", b.project_id)
            b.status = status
        self.m.write(run)

    # ------------------------------------------------------------------ restore
    def begin_restore(self, ctx: RequestContext, backup_id: str, volume_id: str | None,
                      name: str | None) -> tuple[Backup, Volume]:
        """The target volume (a new one when ``volume_id`` is None) goes
        ``restoring-backup``."""
        target = volume_id
        if target is None:
            b, _ = self.get(ctx, backup_id)
            vol = self.m.create_volume(ctx, b.size, name or f"restore_backup_{b.id}", None,
                                       None, {}, None, None, None, False)
            self.m.finish_create(vol.id)
            target = vol.id

        def run(s: Session) -> tuple[Backup, Volume]:
            b = self._visible(ctx, s, backup_id)
            self.m.enforce(ctx, "backup:restore", b.project_id)
            if b.status != "available":
                raise BadRequest(f"Invalid backup: Backup status must be available (backup "
                                 f"{backup_id} is {b.status}).")
            vol = visible(ctx, s.get(Volume, target), "Volume", str(target))
            if vol.status != "available":
                raise BadRequest(f"Invalid volume: Volume to be restored to must be "
                                 f"available (volume {vol.id} is {vol.status}).")
            if vol.size < b.size:
                raise BadRequest(f"Invalid volume: volume size {vol.size}GB cannot be smaller "
                                 f"than the backup size {b.size}GB.")
            b.status = "restoring"
            vol.admin_metadata = {**(vol.admin_metadata or {}), "previous_status": "available"}
            vol.status = "restoring-backup"
            return b, vol
        return self.m.write(run)

    def finish_restore(self, backup_id: str, volume_id: str) -> None:
        vol = self.m.read(lambda s: s.get(Volume, volume_id))
        ok = True
        facts: dict[str, Any] = {}
        try:
            if vol is None or not vol.provider_location:
                raise VolumeDriverError(f"volume {volume_id} has no data")
            b = self.m.read(lambda s: s.get(Backup, backup_id))
            data = (b.service_metadata if b is not None else None) or backup_id
            zeros = self.store.zero_ranges(data)
            self.m.driver.write_chunks(vol.provider_location, (
                (off, b"\0" * n) for off, n in zeros))
            self.m.driver.write_chunks(vol.provider_location, self.store.read(data))
            facts = self.store.volume_facts(data)
        except (VolumeDriverError, BackupError, OSError) as exc:
            LOG.warning("restore of backup %s failed: %s", backup_id, exc)
            ok = False

        def done(s: Session) -> None:
            b = s.get(Backup, backup_id)
            if b is not None:
                b.status = "available"
            v = s.get(Volume, volume_id)
            if v is not None:
                meta = dict(v.admin_metadata or {})
                meta.pop("previous_status", None)
                v.admin_metadata = meta
                v.status = "available" if ok else "error_restoring"
                if ok:  # the source volume's metadata comes back with its data (Cinder's)
                    v.metadata_ = {**(v.metadata_ or {}), **(facts.get("metadata") or {})}
                    v.bootable = bool(facts.get("bootable", v.bootable))
                    if facts.get("image_metadata"):
                        v.image_metadata = dict(facts["image_metadata"])
        self.m.write(done)

    # ------------------------------------------------------------------ recovery
    def reconcile(self) -> None:
        """After a crash: backups left ``creating`` whose data is whole become available,
        else error (their volume or snapshot is back to its status); ``deleting`` ones are
        finished; ``restoring`` ones go back to available
        (their target volume to ``error_restoring``); data no row names is removed."""
        def run(s: Session) -> set[str]:
            for b in s.scalars(select(Backup).where(Backup.status.in_(
                    ("creating", "restoring", "deleting")))):
                if b.status == "creating":
                    b.status = "available" if self.store.exists(b.service_metadata or b.id) \
                        else "error"
                    self._volume_back(s, b.volume_id)
                elif b.status == "restoring":
                    b.status = "available"
                elif b.status == "deleting":
                    s.delete(b)
            for v in s.scalars(select(Volume).where(Volume.status == "restoring-backup")):
                v.status = "error_restoring"
            for snap in s.scalars(select(Snapshot).where(Snapshot.status == "backing-up")):
                snap.status = "available"  # its backup was settled just above
            s.flush()
            return {d for (bid, d) in s.execute(select(Backup.id, Backup.service_metadata))
                    for d in (d or bid,)}
        known = self.m.write(run)
        for orphan in self.store.ids() - known:
            self.store.delete(orphan)

    # ------------------------------------------------------------------ records
    def export_record(self, ctx: RequestContext, backup_id: str) -> dict[str, str]:
        b, _ = self.get(ctx, backup_id)
        if b.status != "available":
            raise BadRequest(f"Invalid backup: Backup status must be available (backup "
                             f"{backup_id} is {b.status}).")
        record = {"id": b.id, "volume_id": b.volume_id, "name": b.name,
                  "description": b.description, "size": b.size,
                  "object_count": b.object_count, "container": b.container,
                  "parent_id": b.parent_id, "availability_zone": b.availability_zone,
                  "metadata": b.metadata_ or {}, "created_at": isotime(b.created_at),
                  "service_metadata": b.service_metadata or b.id}
        url = base64.b64encode(json.dumps(record).encode()).decode()
        return {"backup_service": SERVICE, "backup_url": url}

    def import_record(self, ctx: RequestContext, service: str, url: str) -> Backup:
        if service != SERVICE:
            raise BadRequest(f"Invalid input received: backup service {service} is not "
                             "this cloud's.")
        try:
            record = json.loads(base64.b64decode(url.encode(), validate=True))
            bid = str(uuid.UUID(str(record["id"])))
        except (ValueError, KeyError, TypeError):
            raise BadRequest("Invalid input received: the backup record cannot be "
                             "decoded.") from None

        def run(s: Session) -> Backup:
            data = str(record.get("service_metadata") or bid)
            if "/" in data or data.startswith("."):
                raise BadRequest("Invalid input received: the backup record names no data "
                                 "of this cloud.")
            existing = s.get(Backup, bid)
            if existing is not None and existing.status != "deleted":
                raise BadRequest(f"Invalid backup: Backup {bid} already exists.")
            b = Backup(id=bid, volume_id=str(record.get("volume_id") or ""),
                       project_id=ctx.project_id or "", user_id=ctx.user_id or "",
                       name=record.get("name"), description=record.get("description"),
                       status="available" if self.store.exists(data) else "error",
                       size=int(record.get("size") or 0),
                       object_count=int(record.get("object_count") or 0),
                       container=record.get("container"), parent_id=record.get("parent_id"),
                       availability_zone=record.get("availability_zone") or "nova",
                       metadata_=dict(record.get("metadata") or {}),
                       data_timestamp=parse_isotime(record["created_at"])
                       if record.get("created_at") else None, created_at=utcnow())
            b.service_metadata = data
            s.add(b)
            return b
        return self.m.write(run)
