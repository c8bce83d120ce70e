"""Volume attachments, Cinder's new-style attach flow (API 3.27+, complete at 3.44).

An attachment records that a consumer (a server, named by ``instance_uuid``) uses a volume.
Its life, as Nova drives it:

1. ``create`` without a connector *reserves*: the attachment is ``reserved`` and so is the
   volume (a multiattach volume already ``in-use`` stays so);
2. ``update`` with the consumer host's connector hands out the backend's connection info
   (what the hypervisor opens); the attachment and the volume are ``attaching``;
3. ``complete`` (``os-complete``) marks it ``attached``; the volume is ``in-use``;
4. ``delete`` removes it; the volume is ``available`` again once no attachment is left.

``create`` with a connector does 1 and 2 at once. Attachments are kept in the volume's row
(``Volume.attachments``, one dict each), so every step is one transaction on that row and a
process killed between steps leaves a state the next step (or a delete) accepts. The volume's
own view lists only ``attached`` ones, as Cinder does; the legacy ``os-attach`` actions
(``attach_actions.py``) write entries of the same shape.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from onestack.common.context import RequestContext
from onestack.common.errors import BadRequest, NotFound
from onestack.common.timeutils import isotime, utcnow
from onestack.db.volume import Volume
from onestack.volume.manager import VolumeManager
from onestack.volume.visibility import scoped, visible

T = TypeVar("T")

#: Volume statuses from which a new attachment may be reserved.
RESERVABLE = {"available", "reserved"}


@dataclass(frozen=True)
class AttachmentView:
    """One attachment and the volume it belongs to (what the API shows)."""

    volume_id: str
    project_id: str
    data: dict[str, Any]


def attached(a: dict[str, Any]) -> bool:
    """Whether an attachment entry is complete (legacy entries have no status: they are)."""
    return a.get("attach_status", "attached") == "attached"


#: Volume statuses that follow the attachments (others, e.g. ``backing-up``, are kept).
_ATTACH_STATUSES = {"available", "reserved", "attaching", "in-use", "detaching"}


def _settle(v: Volume) -> None:
    """The volume's status and attach status from its attachments."""
    entries = list(v.attachments or [])
    if any(attached(a) for a in entries):
        status, v.attach_status = "in-use", "attached"
    elif any(a.get("attach_status") == "attaching" for a in entries):
        status, v.attach_status = "attaching", "attaching"
    elif entries:
        status, v.attach_status = "reserved", "reserved"
    else:
        status, v.attach_status = "available", "detached"
    if v.status in _ATTACH_STATUSES:
        v.status = status


class Attachments:
    """The attachments of every volume (see the module docstring)."""

    def __init__(self, manager: VolumeManager) -> None:
        self.m = manager

    # ------------------------------------------------------------------ reading
    def _find(self, s: Session, ctx: RequestContext | None, attachment_id: str
              ) -> tuple[Volume, dict[str, Any]]:
        """The volume holding ``attachment_id`` and the entry (404 otherwise)."""
        q = select(Volume).where(Volume.attach_status != "detached")
        if ctx is not None and not ctx.is_admin:
            q = q.where(Volume.project_id == (ctx.project_id or ""))
        for v in s.scalars(q):
            for a in v.attachments or []:
                if a.get("id") == attachment_id:
                    return v, a
        raise NotFound(f"VolumeAttachment {attachment_id} could not be found.")

    def get(self, ctx: RequestContext, attachment_id: str) -> AttachmentView:
        def run(s: Session) -> AttachmentView:
            v, a = self._find(s, ctx, attachment_id)
            return AttachmentView(v.id, v.project_id, dict(a))
        return self.m.read(run)

    def list(self, ctx: RequestContext, all_projects: bool = False,
             filters: dict[str, str] | None = None) -> list[AttachmentView]:
        """Attachments of the caller's volumes (every project's for an admin asking for
        ``all_tenants``), filtered by ``volume_id``, ``instance_id``, ``status`` and
        ``project_id`` (admin)."""
        filters = filters or {}

        def run(s: Session) -> list[AttachmentView]:
            q = scoped(select(Volume).where(Volume.attach_status != "detached"),
                       Volume.project_id, ctx, all_projects, filters.get("project_id"))
            if filters.get("volume_id"):
                q = q.where(Volume.id == filters["volume_id"])
            out = []
            for v in s.scalars(q.order_by(Volume.created_at.desc(), Volume.id.desc())):
                for a in v.attachments or []:
                    if filters.get("instance_id") and a.get("server_id") != filters[
                            "instance_id"]:
                        continue
                    if filters.get("status") and a.get("attach_status",
                                                        "attached") != filters["status"]:
                        continue
                    out.append(AttachmentView(v.id, v.project_id, dict(a)))
            return out
        return self.m.read(run)

    # ------------------------------------------------------------------ the flow
    def _connection(self, v: Volume, a: dict[str, Any]) -> dict[str, Any]:
        if not v.provider_location:
            raise BadRequest(f"Invalid volume: Volume {v.id} has no data yet.")
        info = self.m.driver.connection_info(v.provider_location, v.id)
        info = {**info, "attachment_id": a["id"]}
        info["data"] = {**info.get("data", {}), "access_mode": a.get("attach_mode", "rw")}
        return info

    def create(self, ctx: RequestContext, volume_id: str, instance_uuid: str | None,
               connector: dict[str, Any] | None = None, mode: str = "rw"
               ) -> AttachmentView:
        """Reserve the volume for ``instance_uuid`` (and connect when a connector is
        given)."""
        def run(s: Session) -> AttachmentView:
            v = visible(ctx, s.get(Volume, volume_id), "Volume", volume_id)
            self.m.enforce(ctx, "volume:attachment_create", v.project_id)
            entries = list(v.attachments or [])
            shared = v.multiattach and v.status in ("in-use", "attaching", "reserved")
            if v.status not in RESERVABLE and not shared:
                raise BadRequest(f"Invalid volume: Volume {v.id} status must be available "
                                 f"or downloading to reserve, but the current status is "
                                 f"{v.status}.")
            if entries and not v.multiattach:
                raise BadRequest(f"Invalid volume: Volume {v.id} is already attached and "
                                 "is not multiattach.")
            if instance_uuid and any(a.get("server_id") == instance_uuid for a in entries):
                raise BadRequest(f"Invalid volume: Volume {v.id} is already attached to "
                                 f"instance {instance_uuid}.")
            readonly = (v.admin_metadata or {}).get("readonly") == "True"
            a: dict[str, Any] = {
                "id": str(uuid.uuid4()), "server_id": instance_uuid, "host_name": None,
                "device": None, "attached_at": None, "detached_at": None,
                "attach_mode": "ro" if readonly else mode, "attach_status": "reserved",
                "connector": None}
            if connector is not None:
                self._connect(v, a, connector)
            v.attachments = [*entries, a]
            _settle(v)
            v.updated_at = utcnow()
            return self._view(v, a)
        return self.m.write(run)

    def _connect(self, v: Volume, a: dict[str, Any], connector: dict[str, Any]) -> None:
        info = self._connection(v, a)  # raises before anything changes
        a["connector"] = connector
        a["host_name"] = connector.get("host") if isinstance(connector.get("host"),
                                                             str) else None
        if isinstance(connector.get("mountpoint"), str):
            a["device"] = connector["mountpoint"]
        if connector.get("mode") in ("rw", "ro"):
            a["attach_mode"] = connector["mode"]
        if a.get("attach_status") != "attached":
            a["attach_status"] = "attaching"
        a["connection_info"] = info

    def _on_entry(self, ctx: RequestContext | None, attachment_id: str, action: str,
                  fn: Callable[[Volume, dict[str, Any]], T]) -> T:
        """``fn(volume, entry)`` in one transaction; the entry is written back."""
        def run(s: Session) -> T:
            v, found = self._find(s, ctx, attachment_id)
            if ctx is not None:
                self.m.enforce(ctx, action, v.project_id)
            a = dict(found)
            out = fn(v, a)
            v.attachments = [a if e.get("id") == attachment_id else e
                             for e in v.attachments or []]
            _settle(v)
            v.updated_at = utcnow()
            return out
        return self.m.write(run)

    def update(self, ctx: RequestContext | None, attachment_id: str,
               connector: dict[str, Any]) -> AttachmentView:
        """Connect the attachment for the host described by ``connector``."""
        def fn(v: Volume, a: dict[str, Any]) -> AttachmentView:
            if v.status in ("maintenance", "error", "deleting"):
                raise BadRequest(f"Invalid volume: Volume {v.id} is {v.status}.")
            self._connect(v, a, connector)
            return AttachmentView(v.id, v.project_id, a)
        view = self._on_entry(ctx, attachment_id, "volume:attachment_update", fn)
        return AttachmentView(view.volume_id, view.project_id, dict(view.data))

    def complete(self, ctx: RequestContext | None, attachment_id: str) -> None:
        """Mark a connected attachment ``attached`` (``os-complete``)."""
        def fn(v: Volume, a: dict[str, Any]) -> None:
            if a.get("attach_status") not in ("attaching", "attached"):
                raise BadRequest(f"Invalid volume attachment: attachment {attachment_id} "
                                 "has no connection yet (update it with a connector "
                                 "first).")
            a["attach_status"] = "attached"
            a["attached_at"] = a.get("attached_at") or isotime(utcnow(), subsecond=True)
        self._on_entry(ctx, attachment_id, "volume:attachment_complete", fn)

    def set_device(self, attachment_id: str, device: str | None) -> None:
        """Record the device name the consumer gave the volume (compute's mountpoint)."""
        def fn(v: Volume, a: dict[str, Any]) -> None:
            a["device"] = device
        self._on_entry(None, attachment_id, "", fn)

    def delete(self, ctx: RequestContext | None, attachment_id: str) -> list[AttachmentView]:
        """Remove the attachment; returns the volume's remaining attachments."""
        def run(s: Session) -> list[AttachmentView]:
            v, _a = self._find(s, ctx, attachment_id)
            if ctx is not None:
                self.m.enforce(ctx, "volume:attachment_delete", v.project_id)
            v.attachments = [e for e in v.attachments or [] if e.get("id") != attachment_id]
            _settle(v)
            v.updated_at = utcnow()
            return [self._view(v, e) for e in v.attachments]
        return self.m.write(run)

    @staticmethod
    def _view(v: Volume, a: dict[str, Any]) -> AttachmentView:
        return AttachmentView(v.id, v.project_id, dict(a))


def attachment_view(view: AttachmentView, detail: bool) -> dict[str, Any]:
    """Cinder's attachment summary (id, status, instance, volume_id) or detail."""
    a = view.data
    doc: dict[str, Any] = {"id": a["id"], "status": a.get("attach_status", "attached"),
                           "instance": a.get("server_id"), "volume_id": view.volume_id}
    if detail:
        doc.update(attached_at=a.get("attached_at"), detached_at=a.get("detached_at"),
                   attach_mode=a.get("attach_mode", "rw"),
                   connection_info=a.get("connection_info"))
    return doc
