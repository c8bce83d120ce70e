"""Volume snapshots: their records, the copy of the volume's data (``finish_snapshot``),
deletion, and the actions on one snapshot (their updates and metadata are
``VolumeManager.update_row`` and kin). Part of ``VolumeManager``."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from onestack.common.context import RequestContext
from onestack.common.errors import BadRequest
from onestack.common.timeutils import utcnow
from onestack.db.volume import Snapshot, Volume
from onestack.drivers.volume.base import VolumeDriver, VolumeDriverError
from onestack.volume.records import SnapshotRecord
from onestack.volume.visibility import scoped

LOG = logging.getLogger(__name__)


class SnapshotsMixin:
    """Snapshots of ``VolumeManager`` (which provides the plumbing declared here)."""

    driver: VolumeDriver
    write: Callable[..., Any]
    read: Callable[..., Any]
    enforce: Callable[..., None]
    _visible: Callable[..., Any]
    _change: Callable[..., Any]
    on_row: Callable[..., bool]
    check_quota: Callable[..., None]

    # ------------------------------------------------------------------ changes of one snapshot
    # Each: the snapshot the caller sees (404 otherwise), the action's policy, the change and
    # a new ``updated_at``, in one transaction (``VolumeManager._change``).
    def reset_snapshot_status(self, ctx: RequestContext, snapshot_id: str,
                              status: str) -> None:
        """``os-reset_status`` of a snapshot."""
        def run(snap: Snapshot) -> None:
            snap.status = status
        self._change(ctx, Snapshot, "Snapshot", snapshot_id,
                     "volume_extension:snapshot_admin_actions:reset_status", run)

    def update_snapshot_status(self, ctx: RequestContext, snapshot_id: str, status: Any,
                               progress: Any) -> None:
        """``os-update_snapshot_status``: ``creating`` may go ``available`` or ``error``,
        ``deleting`` may go ``error_deleting`` (400 otherwise); ``progress``, when a string,
        is kept (its first 16 characters)."""
        allowed = {"creating": {"creating", "available", "error"},
                   "deleting": {"deleting", "error_deleting"}}

        def run(snap: Snapshot) -> None:
            if status not in allowed.get(snap.status, set()):
                raise BadRequest(f"Invalid input received: snapshot status update from "
                                 f"{snap.status} to {status} is not allowed.")
            snap.status = status
            if isinstance(progress, str):
                snap.progress = progress[:16]
        self._change(ctx, Snapshot, "Snapshot", snapshot_id,
                     "snapshot_extension:snapshot_actions:update_snapshot_status", run)

    # ------------------------------------------------------------------ lifecycle
    def list_snapshots(self, ctx: RequestContext, all_projects: bool = False
                       ) -> list[SnapshotRecord]:
        def run(s: Session) -> list[Snapshot]:
            q = scoped(select(Snapshot), Snapshot.project_id, ctx, all_projects)
            return list(s.scalars(q.order_by(Snapshot.created_at.desc(), Snapshot.id.desc())))
        return self.read(run)

    def get_snapshot(self, ctx: RequestContext, snapshot_id: str) -> SnapshotRecord:
        return self.read(lambda s: self._visible(ctx, s.get(Snapshot, snapshot_id),
                                                 "Snapshot", snapshot_id))

    def create_snapshot(self, ctx: RequestContext, volume_id: str, name: str | None,
                        description: str | None, force: bool,
                        metadata: dict[str, str], in_use_ok: bool = False) -> SnapshotRecord:
        """Record a snapshot (``finish_snapshot`` copies the data). An ``in-use`` volume
        needs ``force`` (or microversion 3.66+: ``in_use_ok``); its guests' I/O is paused
        while the data is copied (``VolumeAPI``)."""
        def run(s: Session) -> Snapshot:
            vol = self._visible(ctx, s.get(Volume, volume_id), "Volume", volume_id)
            if vol.status != "available" and not ((force or in_use_ok)
                                                  and vol.status == "in-use"):
                wanted = "available or in-use" if in_use_ok else "available"
                raise BadRequest(f"Invalid volume: Volume {volume_id} status must be "
                                 f"{wanted}, but current status is: {vol.status}.")
            self.check_quota(s, vol.project_id, snapshots=1, gigabytes=vol.size)
            snap = Snapshot(id=str(uuid.uuid4()), volume_id=vol.id, project_id=vol.project_id,
                            user_id=ctx.user_id or "", name=name, description=description,
                            size=vol.size, status="creating", progress="0%",
                            metadata_=dict(metadata), created_at=utcnow())
            s.add(snap)
            return snap
        return self.write(run)

    def finish_snapshot(self, snapshot_id: str) -> None:
        snap = self.read(lambda s: s.get(Snapshot, snapshot_id))
        if snap is None:
            return
        vol = self.read(lambda s: s.get(Volume, snap.volume_id))
        try:
            if vol is None or not vol.provider_location:
                raise VolumeDriverError(f"volume {snap.volume_id} has no data")
            loc = self.driver.create_snapshot(snap.id, vol.provider_location)
        except VolumeDriverError as exc:
            LOG.warning("snapshot %s: create failed: %s", snapshot_id, exc)
            self._set_snapshot_status(snapshot_id, "error")
            return
        def done(s: Session, row: Snapshot) -> None:
            row.provider_location = loc
            if row.status == "creating":
                row.status = "available"
                row.progress = "100%"
            row.updated_at = utcnow()
        if not self.on_row(Snapshot, snapshot_id, done):
            self.driver.delete_snapshot(loc)

    def begin_delete_snapshot(self, ctx: RequestContext, snapshot_id: str,
                              force: bool = False) -> None:
        def run(s: Session) -> None:
            snap = self._visible(ctx, s.get(Snapshot, snapshot_id), "Snapshot", snapshot_id)
            self.enforce(ctx, "volume:force_delete_snapshot" if force
                         else "volume:delete_snapshot", snap.project_id)
            if not force and snap.status not in ("available", "error"):
                raise BadRequest(f"Invalid snapshot: Snapshot status must be available or "
                                 f"error (snapshot {snapshot_id} is {snap.status}).")
            snap.status = "deleting"
        self.write(run)

    def finish_delete_snapshot(self, snapshot_id: str) -> None:
        snap = self.read(lambda s: s.get(Snapshot, snapshot_id))
        if snap is None:
            return
        try:
            if snap.provider_location:
                self.driver.delete_snapshot(snap.provider_location)
        except VolumeDriverError as exc:
            LOG.warning("snapshot %s: delete failed: %s", snapshot_id, exc)
            self._set_snapshot_status(snapshot_id, "error_deleting")
            return
        self.on_row(Snapshot, snapshot_id, lambda s, row: s.delete(row))

    def _set_snapshot_status(self, snapshot_id: str, status: str) -> None:
        def run(s: Session, row: Snapshot) -> None:
            row.status = status
        self.on_row(Snapshot, snapshot_id, run)
