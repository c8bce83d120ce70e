"""Generic volume groups (Cinder 3.11-3.20): group types with specs, groups of volumes of
given volume types, group snapshots (a snapshot of every volume of the group, taken in one
go) and groups made from a group snapshot or another group. The file backend needs no
group-level work: a group is bookkeeping over its volumes, whose data the driver keeps."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import InstrumentedAttribute, Session

from onestack.common.context import RequestContext
from onestack.common.errors import BadRequest, NotFound
from onestack.common.timeutils import utcnow
from onestack.db.volume import Group, GroupSnapshot, GroupType, Snapshot, Volume
from onestack.volume.manager import VolumeManager
from onestack.volume.row_changes import check_name_free, without_key
from onestack.volume.visibility import scoped, visible

DEFAULT_GROUP_TYPE = "default_group_type"


class Groups:
    def __init__(self, manager: VolumeManager) -> None:
        self.m = manager

    # ------------------------------------------------------------------ group types
    def ensure_default_type(self) -> None:
        def run(s: Session) -> None:
            if s.scalar(select(GroupType.id).where(GroupType.name == DEFAULT_GROUP_TYPE)) \
                    is None:
                s.add(GroupType(id=str(uuid.uuid4()), name=DEFAULT_GROUP_TYPE,
                                description="Default group type", is_public=True,
                                group_specs={}, created_at=utcnow()))
        self.m.write(run)

    def _type(self, s: Session, ref: str) -> GroupType:
        if ref == "default":
            gt = s.scalar(select(GroupType).where(GroupType.name == DEFAULT_GROUP_TYPE))
        else:
            gt = s.get(GroupType, ref) or s.scalar(select(GroupType).where(
                GroupType.name == ref))
        if gt is None:
            raise NotFound(f"Group type {ref} could not be found.")
        return gt

    def list_types(self, ctx: RequestContext) -> list[GroupType]:
        return self.m.read(lambda s: [t for t in s.scalars(
            select(GroupType).order_by(GroupType.name)) if t.is_public or ctx.is_admin])

    def get_type(self, ref: str) -> GroupType:
        return self.m.read(lambda s: self._type(s, ref))

    def create_type(self, name: str, description: str | None, is_public: bool,
                    specs: dict[str, str]) -> GroupType:
        def run(s: Session) -> GroupType:
            check_name_free(s, GroupType, name, "Group Type")
            gt = GroupType(id=str(uuid.uuid4()), name=name, description=description,
                           is_public=is_public, group_specs=dict(specs), created_at=utcnow())
            s.add(gt)
            return gt
        return self.m.write(run)

    def update_type(self, ref: str, changes: dict[str, Any]) -> GroupType:
        def run(s: Session) -> GroupType:
            gt = self._type(s, ref)
            if "name" in changes and changes["name"] != gt.name:
                check_name_free(s, GroupType, changes["name"], "Group Type")
                gt.name = changes["name"]
            for key in ("description", "is_public"):
                if key in changes:
                    setattr(gt, key, changes[key])
            return gt
        return self.m.write(run)

    def delete_type(self, ref: str) -> None:
        def run(s: Session) -> None:
            gt = self._type(s, ref)
            if gt.name == DEFAULT_GROUP_TYPE:
                raise BadRequest("The default group type cannot be deleted.")
            if s.scalar(select(Group.id).where(Group.group_type_id == gt.id).limit(1)):
                raise BadRequest(f"Group Type {gt.id} deletion is not allowed with groups "
                                 "present with the type.")
            s.delete(gt)
        self.m.write(run)

    def set_specs(self, ref: str, specs: dict[str, str]) -> dict[str, str]:
        def run(s: Session) -> dict[str, str]:
            gt = self._type(s, ref)
            gt.group_specs = {**(gt.group_specs or {}), **specs}
            return dict(gt.group_specs)
        return self.m.write(run)

    def delete_spec(self, ref: str, key: str) -> None:
        def run(s: Session) -> None:
            gt = self._type(s, ref)
            gt.group_specs = without_key(gt.group_specs, key,
                                         f"Group Type {ref} has no specs with key {key}.")
        self.m.write(run)

    # ------------------------------------------------------------------ groups
    def _group(self, ctx: RequestContext, s: Session, group_id: str) -> Group:
        return visible(ctx, s.get(Group, group_id), "Group", group_id)

    def list(self, ctx: RequestContext, all_projects: bool) -> list[Group]:
        def run(s: Session) -> list[Group]:
            return list(s.scalars(scoped(select(Group).order_by(Group.created_at.desc()),
                                         Group.project_id, ctx, all_projects)))
        return self.m.read(run)

    def get(self, ctx: RequestContext, group_id: str) -> tuple[Group, list[str]]:
        def run(s: Session) -> tuple[Group, list[str]]:
            g = self._group(ctx, s, group_id)
            vols = [v for (v,) in s.execute(select(Volume.id).where(Volume.group_id == g.id))]
            return g, vols
        return self.m.read(run)

    def create(self, ctx: RequestContext, name: str | None, description: str | None,
               group_type: str, volume_types: list[str],
               availability_zone: str | None) -> Group:
        def run(s: Session) -> Group:
            gt = self._type(s, group_type)
            if not volume_types:
                raise BadRequest("Invalid input received: a group needs volume types.")
            ids = [self.m.find_type(s, ctx, t).id for t in volume_types]
            g = Group(id=str(uuid.uuid4()), project_id=ctx.project_id or "",
                      user_id=ctx.user_id or "", name=name, description=description,
                      status="available", group_type_id=gt.id, volume_type_ids=ids,
                      availability_zone=availability_zone or self.m.availability_zone,
                      created_at=utcnow())
            s.add(g)
            return g
        return self.m.write(run)

    def update(self, ctx: RequestContext, group_id: str, name: Any, description: Any,
               add: list[str], remove: list[str]) -> None:
        def run(s: Session) -> None:
            g = self._group(ctx, s, group_id)
            if g.status != "available":
                raise BadRequest(f"Invalid group: Group {group_id} status must be available.")
            if name is not None:
                g.name = name
            if description is not None:
                g.description = description
            for vid in add:
                v = visible(ctx, s.get(Volume, vid), "Volume", vid)
                if v.group_id not in (None, g.id):
                    raise BadRequest(f"Invalid volume: Volume {vid} belongs to another group.")
                if v.volume_type_id not in (g.volume_type_ids or []):
                    raise BadRequest(f"Invalid volume: Volume {vid}'s type is not one of the "
                                     "group's volume types.")
                if v.status not in ("available", "in-use"):
                    raise BadRequest(f"Invalid volume: Volume {vid} status must be available "
                                     "or in-use.")
                v.group_id = g.id
            for vid in remove:
                v = s.get(Volume, vid)
                if v is None or v.group_id != g.id:
                    raise BadRequest(f"Invalid volume: Volume {vid} is not in group "
                                     f"{group_id}.")
                v.group_id = None
        self.m.write(run)

    def delete(self, ctx: RequestContext, group_id: str, delete_volumes: bool) -> list[str]:
        """Delete a group (with its volumes when asked); the volumes to finish deleting."""
        def run(s: Session) -> list[str]:
            g = self._group(ctx, s, group_id)
            vols = list(s.scalars(select(Volume).where(Volume.group_id == g.id)))
            if vols and not delete_volumes:
                raise BadRequest(f"Invalid group: Group {group_id} still contains volumes; "
                                 "delete-volumes is required to delete it.")
            if s.scalar(select(GroupSnapshot.id).where(GroupSnapshot.group_id == g.id)
                        .limit(1)):
                raise BadRequest(f"Invalid group: Group {group_id} has group snapshots.")
            for v in vols:
                if v.attach_status == "attached":
                    raise BadRequest(f"Invalid volume: Volume {v.id} is attached.")
                for snap in s.scalars(select(Snapshot).where(Snapshot.volume_id == v.id)):
                    snap.status = "deleting"
                v.status = "deleting"
            s.delete(g)
            return [v.id for v in vols]
        return self.m.write(run)

    def reset_status(self, ctx: RequestContext, group_id: str, status: str) -> None:
        def run(s: Session) -> None:
            self._group(ctx, s, group_id).status = status
        self.m.write(run)

    # ------------------------------------------------------------------ group snapshots
    def _gsnap(self, ctx: RequestContext, s: Session, gs_id: str) -> GroupSnapshot:
        return visible(ctx, s.get(GroupSnapshot, gs_id), "GroupSnapshot", gs_id)

    def list_snapshots(self, ctx: RequestContext, all_projects: bool) -> list[GroupSnapshot]:
        def run(s: Session) -> list[GroupSnapshot]:
            q = scoped(select(GroupSnapshot).order_by(GroupSnapshot.created_at.desc()),
                       GroupSnapshot.project_id, ctx, all_projects)
            return list(s.scalars(q))
        return self.m.read(run)

    def get_snapshot(self, ctx: RequestContext, gs_id: str) -> GroupSnapshot:
        return self.m.read(lambda s: self._gsnap(ctx, s, gs_id))

    def create_snapshot(self, ctx: RequestContext, group_id: str, name: str | None,
                        description: str | None) -> tuple[GroupSnapshot, list[str]]:
        """The group snapshot and the member snapshots to finish."""
        def run(s: Session) -> tuple[GroupSnapshot, list[str]]:
            g = self._group(ctx, s, group_id)
            if g.status != "available":
                raise BadRequest(f"Invalid group: Group {group_id} status must be available.")
            vols = list(s.scalars(select(Volume).where(Volume.group_id == g.id)))
            for v in vols:
                if v.status != "available":
                    raise BadRequest(f"Invalid volume: Volume {v.id} status must be "
                                     "available.")
            gs = GroupSnapshot(id=str(uuid.uuid4()), project_id=g.project_id, group_id=g.id,
                               group_type_id=g.group_type_id, name=name,
                               description=description,
                               status="creating" if vols else "available",
                               created_at=utcnow())
            s.add(gs)
            snaps = []
            for v in vols:
                snap = Snapshot(id=str(uuid.uuid4()), volume_id=v.id, project_id=v.project_id,
                                user_id=ctx.user_id or "", name=f"snapshot-{gs.id}",
                                description=None, size=v.size, status="creating",
                                progress="0%", metadata_={}, group_snapshot_id=gs.id,
                                created_at=utcnow())
                s.add(snap)
                snaps.append(snap.id)
            return gs, snaps
        return self.m.write(run)

    def finish_snapshot(self, gs_id: str, snapshot_ids: list[str]) -> None:
        for sid in snapshot_ids:
            self.m.finish_snapshot(sid)
        self._settle(GroupSnapshot, gs_id, Snapshot.status, Snapshot.group_snapshot_id)

    def _settle(self, model: type[Group | GroupSnapshot], rid: str,
                member_status: InstrumentedAttribute[str],
                member_of: InstrumentedAttribute[str | None]) -> None:
        """The group or group snapshot ``rid`` once its members' storage work is done:
        ``error`` if any member is, else ``available`` (nothing if it is gone)."""
        def run(s: Session, row: Group | GroupSnapshot) -> None:
            states = set(s.execute(select(member_status).where(member_of == rid)).scalars())
            row.status = "error" if "error" in states else "available"
        self.m.on_row(model, rid, run)

    def delete_snapshot(self, ctx: RequestContext, gs_id: str) -> list[str]:
        def run(s: Session) -> list[str]:
            gs = self._gsnap(ctx, s, gs_id)
            if gs.status not in ("available", "error"):
                raise BadRequest(f"Invalid group snapshot: status must be available or error "
                                 f"(it is {gs.status}).")
            snaps = list(s.scalars(select(Snapshot).where(Snapshot.group_snapshot_id == gs.id)))
            for snap in snaps:
                snap.status = "deleting"
            s.delete(gs)
            return [snap.id for snap in snaps]
        return self.m.write(run)

    def reset_snapshot_status(self, ctx: RequestContext, gs_id: str, status: str) -> None:
        def run(s: Session) -> None:
            self._gsnap(ctx, s, gs_id).status = status
        self.m.write(run)

    # ------------------------------------------------------------------ from a source
    def create_from_source(self, ctx: RequestContext, name: str | None,
                           description: str | None, group_snapshot_id: str | None,
                           source_group_id: str | None) -> tuple[Group, list[str]]:
        """A new group whose volumes come from a group snapshot's snapshots or clone a
        group's volumes; the new volumes to finish creating."""
        if bool(group_snapshot_id) == bool(source_group_id):
            raise BadRequest("Invalid input received: name exactly one of group_snapshot_id "
                             "and source_group_id.")
        def run(s: Session) -> tuple[Group, list[tuple[str, int, str, str | None,
                                                        str | None]]]:
            if group_snapshot_id:
                gs = self._gsnap(ctx, s, group_snapshot_id)
                src_group = s.get(Group, gs.group_id)
                sources = [(sn.volume_id, sn.size, sn.id) for sn in s.scalars(
                    select(Snapshot).where(Snapshot.group_snapshot_id == gs.id))]
                gt, vts = gs.group_type_id, (src_group.volume_type_ids if src_group else [])
            else:
                src = self._group(ctx, s, str(source_group_id))
                sources = [(v.id, v.size, "") for v in s.scalars(
                    select(Volume).where(Volume.group_id == src.id))]
                gt, vts = src.group_type_id, src.volume_type_ids
            g = Group(id=str(uuid.uuid4()), project_id=ctx.project_id or "",
                      user_id=ctx.user_id or "", name=name, description=description,
                      status="creating", group_type_id=gt, volume_type_ids=list(vts or []),
                      availability_zone=self.m.availability_zone,
                      group_snapshot_id=group_snapshot_id, source_group_id=source_group_id,
                      created_at=utcnow())
            s.add(g)
            plan = []
            for vol_id, size, snap_id in sources:
                src_vol = s.get(Volume, vol_id)
                plan.append((vol_id, size, snap_id,
                             src_vol.volume_type_id if src_vol else None,
                             src_vol.name if src_vol else None))
            return g, plan
        g, plan = self.m.write(run)
        new_ids = []
        for vol_id, size, snap_id, vtype, vname in plan:
            vol = self.m.create_volume(ctx, size, vname, None, vtype, {}, None,
                                       snap_id or None, None if snap_id else vol_id, False)

            def join(s: Session, vid: str = vol.id) -> None:
                row = s.get(Volume, vid)
                if row is not None:
                    row.group_id = g.id
            self.m.write(join)
            new_ids.append(vol.id)
        return g, new_ids

    def finish_from_source(self, group_id: str, volume_ids: list[str]) -> None:
        for vid in volume_ids:
            self.m.finish_create(vid)
        self._settle(Group, group_id, Volume.status, Volume.group_id)
