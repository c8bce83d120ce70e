"""Volume types (Cinder's ``types``): the default type, visibility, extra specs, private
types' project access, and quotas (Cinder's defaults, the default class, per project). Part of
``VolumeManager``."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from onestack.common.context import RequestContext
from onestack.common.errors import BadRequest, Conflict, NotFound, PayloadTooLarge
from onestack.common.limits import LimitSource
from onestack.common.timeutils import utcnow
from onestack.db.volume import Snapshot, Volume, VolumeQuota, VolumeType, VolumeTypeEncryption
from onestack.volume.records import VolumeTypeRecord
from onestack.volume.row_changes import check_name_free, without_key

if TYPE_CHECKING:
    from collections.abc import Callable

DEFAULT_TYPE = "__DEFAULT__"
#: Cinder's quota defaults (``[DEFAULT] quota_*``); -1 is unlimited.
QUOTA_DEFAULTS = {"volumes": 10, "snapshots": 10, "gigabytes": 1000, "backups": 10,
                  "backup_gigabytes": 1000, "per_volume_gigabytes": -1, "groups": 10}


def multiattach_type(vt: VolumeType) -> bool:
    """A type whose volumes attach to several servers at once (Cinder: the extra spec
    ``multiattach="<is> True"``)."""
    spec = str((vt.extra_specs or {}).get("multiattach", "")).strip().lower()
    return spec in ("<is> true", "true")


class OverQuota(PayloadTooLarge):
    """413: a quota would be exceeded (Cinder's fault renders it ``overLimit``)."""


class TypesAndQuotasMixin:
    """Volume types and quotas of ``VolumeManager`` (which provides ``write``/``read``)."""

    write: Callable[..., Any]
    read: Callable[..., Any]
    backup_usage: Callable[[Session, str], tuple[int, int]] | None
    #: Keystone's unified limits of the ``block-storage`` service, when configured
    #: (``volume_unified_limits``); None: os-quota-sets.
    unified_limits: LimitSource | None = None

    # ------------------------------------------------------------------ types
    def ensure_default_type(self) -> None:
        """Cinder's ``__DEFAULT__`` type, created once."""
        def run(s: Session) -> None:
            if s.scalar(select(VolumeType.id).where(VolumeType.name == DEFAULT_TYPE)) is None:
                s.add(VolumeType(id=str(uuid.uuid4()), name=DEFAULT_TYPE,
                                 description="Default Volume Type", is_public=True,
                                 extra_specs={}, projects=[], created_at=utcnow()))
        self.write(run)

    @staticmethod
    def _type_visible(ctx: RequestContext, vt: VolumeType) -> bool:
        return ctx.is_admin or vt.is_public or (ctx.project_id or "") in (vt.projects or [])

    def find_type(self, s: Session, ctx: RequestContext, ref: str | None) -> VolumeType:
        """A type by id or name; none (or an empty name, as Cinder) is the default."""
        if not ref:
            vt = s.scalar(select(VolumeType).where(VolumeType.name == DEFAULT_TYPE))
        else:
            vt = s.get(VolumeType, ref) or s.scalar(
                select(VolumeType).where(VolumeType.name == ref))
        if vt is None or not self._type_visible(ctx, vt):
            raise NotFound(f"Volume type with name {ref} could not be found.")
        return vt

    def list_types(self, ctx: RequestContext, is_public: str | None = None
                   ) -> list[VolumeTypeRecord]:
        def run(s: Session) -> list[VolumeType]:
            rows = list(s.scalars(select(VolumeType).order_by(VolumeType.name)))
            rows = [r for r in rows if self._type_visible(ctx, r)]
            if ctx.is_admin and is_public is not None and is_public.lower() != "none":
                want = is_public.lower() in ("true", "1", "yes")
                rows = [r for r in rows if r.is_public == want]
            elif not ctx.is_admin:
                rows = [r for r in rows if r.is_public
                        or (ctx.project_id or "") in (r.projects or [])]
            return rows
        return self.read(run)

    def get_type(self, ctx: RequestContext, type_id: str) -> VolumeTypeRecord:
        def run(s: Session) -> VolumeType:
            if type_id == "default":
                return self.find_type(s, ctx, None)
            vt = s.get(VolumeType, type_id)
            if vt is None or not self._type_visible(ctx, vt):
                raise NotFound(f"Volume type {type_id} could not be found.")
            return vt
        return self.read(run)

    def create_type(self, name: str, description: str | None, is_public: bool,
                    extra_specs: dict[str, str]) -> VolumeTypeRecord:
        def run(s: Session) -> VolumeType:
            check_name_free(s, VolumeType, name, "Volume Type")
            vt = VolumeType(id=str(uuid.uuid4()), name=name, description=description,
                            is_public=is_public, extra_specs=dict(extra_specs), projects=[],
                            created_at=utcnow())
            s.add(vt)
            return vt
        return self.write(run)

    def update_type(self, type_id: str, changes: dict[str, Any]) -> VolumeTypeRecord:
        def run(s: Session) -> VolumeType:
            vt = s.get(VolumeType, type_id)
            if vt is None:
                raise NotFound(f"Volume type {type_id} could not be found.")
            if "name" in changes and changes["name"] != vt.name:
                if vt.name == DEFAULT_TYPE:
                    raise BadRequest("The default volume type cannot be renamed.")
                check_name_free(s, VolumeType, changes["name"], "Volume Type")
                vt.name = changes["name"]
            if "description" in changes:
                vt.description = changes["description"]
            if "is_public" in changes:
                vt.is_public = bool(changes["is_public"])
            return vt
        return self.write(run)

    def delete_type(self, type_id: str) -> None:
        def run(s: Session) -> None:
            vt = s.get(VolumeType, type_id)
            if vt is None:
                raise NotFound(f"Volume type {type_id} could not be found.")
            if vt.name == DEFAULT_TYPE:
                raise BadRequest("The default volume type cannot be deleted.")
            if s.scalar(select(Volume.id).where(Volume.volume_type_id == vt.id).limit(1)):
                raise BadRequest("Target volume type is still in use.")
            enc = s.get(VolumeTypeEncryption, vt.id)
            if enc is not None:
                s.delete(enc)
            s.delete(vt)
        self.write(run)

    def set_extra_specs(self, type_id: str, specs: dict[str, str],
                        replace: bool = False) -> dict[str, str]:
        def run(s: Session) -> dict[str, str]:
            vt = s.get(VolumeType, type_id)
            if vt is None:
                raise NotFound(f"Volume type {type_id} could not be found.")
            if s.scalar(select(Volume.id).where(Volume.volume_type_id == vt.id).limit(1)):
                raise BadRequest("Volume Type is currently in use.")
            vt.extra_specs = dict(specs) if replace else {**(vt.extra_specs or {}), **specs}
            return dict(vt.extra_specs)
        return self.write(run)

    def delete_extra_spec(self, type_id: str, key: str) -> None:
        def run(s: Session) -> None:
            vt = s.get(VolumeType, type_id)
            if vt is None:
                raise NotFound(f"Volume type {type_id} could not be found.")
            vt.extra_specs = without_key(
                vt.extra_specs, key, f"Volume Type {type_id} has no extra specs with key {key}.")
        self.write(run)

    def set_type_access(self, type_id: str, project_id: str, add: bool) -> None:
        def run(s: Session) -> None:
            vt = s.get(VolumeType, type_id)
            if vt is None:
                raise NotFound(f"Volume type {type_id} could not be found.")
            if vt.is_public:
                raise BadRequest("Invalid volume type: Type access modification is not "
                                 "applicable to public volume type.")
            projects = list(vt.projects or [])
            if add:
                if project_id in projects:
                    raise Conflict(f"Volume type access for {type_id} / {project_id} "
                                   "combination already exists.")
                projects.append(project_id)
            else:
                if project_id not in projects:
                    raise NotFound(f"Volume type access not found for {type_id} / "
                                   f"{project_id} combination.")
                projects.remove(project_id)
            vt.projects = projects
        self.write(run)

    def type_names(self) -> dict[str, str]:
        return self.read(lambda s: {r.id: r.name for r in s.scalars(select(VolumeType))})


    # ------------------------------------------------------------------ quotas
    def quota_limits(self, s: Session, project_id: str) -> dict[str, int]:
        """Cinder's defaults, then the ``default`` quota class (stored as project ``""``),
        then the project's own limits; with ``unified_limits``, the project's unified
        limits instead (unregistered resources unlimited)."""
        limits = dict(QUOTA_DEFAULTS)
        for name in s.scalars(select(VolumeType.name)):
            for res in ("volumes", "gigabytes", "snapshots"):
                limits[f"{res}_{name}"] = -1
        if self.unified_limits is not None:
            found = self.unified_limits.for_project(s, project_id)
            return {k: found.get(k, -1) for k in limits}
        rows = sorted(s.scalars(select(VolumeQuota).where(
            VolumeQuota.project_id.in_(["", project_id]))), key=lambda q: q.project_id != "")
        for q in rows:
            if q.resource in limits:
                limits[q.resource] = q.hard_limit
        return limits

    def host_usage(self) -> dict[str, dict[str, int]]:
        """Per project and in all (``(total)``): volumes and snapshots and their GiB."""
        def run(s: Session) -> dict[str, dict[str, int]]:
            out: dict[str, dict[str, int]] = {}
            zero = {"volumes": 0, "gigabytes": 0, "snapshots": 0, "snapshot_gigabytes": 0}
            for project, n, gb in s.execute(select(
                    Volume.project_id, func.count(), func.coalesce(func.sum(Volume.size), 0))
                    .group_by(Volume.project_id)):
                out.setdefault(project, dict(zero)).update(volumes=int(n), gigabytes=int(gb))
            for project, n, gb in s.execute(select(
                    Snapshot.project_id, func.count(),
                    func.coalesce(func.sum(Snapshot.size), 0)).group_by(Snapshot.project_id)):
                out.setdefault(project, dict(zero)).update(snapshots=int(n),
                                                           snapshot_gigabytes=int(gb))
            total = {k: sum(t[k] for t in out.values()) for k in zero}
            return {"(total)": total, **out}
        return self.read(run)

    def quota_usage(self, s: Session, project_id: str) -> dict[str, int]:
        n, gb = s.execute(select(func.count(), func.coalesce(func.sum(Volume.size), 0)).where(
            Volume.project_id == project_id)).one()
        sn, sgb = s.execute(select(func.count(), func.coalesce(func.sum(Snapshot.size), 0))
                            .where(Snapshot.project_id == project_id)).one()
        bn, bgb = self.backup_usage(s, project_id) if self.backup_usage else (0, 0)
        return {"volumes": int(n), "gigabytes": int(gb) + int(sgb), "snapshots": int(sn),
                "backups": bn, "backup_gigabytes": bgb, "groups": 0}

    def check_quota(self, s: Session, project_id: str, volumes: int = 0, snapshots: int = 0,
                    gigabytes: int = 0, per_volume: int | None = None) -> None:
        """``OverQuota`` (413, Cinder's texts) when ``volumes``, ``snapshots`` and
        ``gigabytes`` more would exceed ``project_id``'s limits, or a new volume of
        ``per_volume`` GiB its per-volume limit; read in the caller's session ``s``."""
        limits = self.quota_limits(s, project_id)
        if per_volume is not None and 0 <= limits["per_volume_gigabytes"] < per_volume:
            raise OverQuota(f"VolumeSizeExceedsLimit: Requested volume size {per_volume}G is "
                            f"larger than maximum allowed limit "
                            f"{limits['per_volume_gigabytes']}G.")
        used = self.quota_usage(s, project_id)
        if 0 <= limits["gigabytes"] < used["gigabytes"] + gigabytes:
            what = "snapshot" if snapshots else "volume"
            raise OverQuota(f"VolumeSizeExceedsAvailableQuota: Requested {what} or snapshot "
                            f"exceeds allowed gigabytes quota. Requested {gigabytes}G, quota "
                            f"is {limits['gigabytes']}G and {used['gigabytes']}G has been "
                            "consumed.")
        if volumes and 0 <= limits["volumes"] < used["volumes"] + volumes:
            raise OverQuota(f"VolumeLimitExceeded: Maximum number of volumes allowed "
                            f"({limits['volumes']}) exceeded for quota 'volumes'.")
        if snapshots and 0 <= limits["snapshots"] < used["snapshots"] + snapshots:
            raise OverQuota(f"SnapshotLimitExceeded: Maximum number of snapshots allowed "
                            f"({limits['snapshots']}) exceeded")

    def get_quotas(self, project_id: str) -> tuple[dict[str, int], dict[str, int]]:
        return self.read(lambda s: (self.quota_limits(s, project_id),
                                    self.quota_usage(s, project_id)))

    def default_quotas(self) -> dict[str, int]:
        return self.read(lambda s: self.quota_limits(s, ""))

    def set_quotas(self, project_id: str, values: dict[str, int]) -> dict[str, int]:
        def run(s: Session) -> dict[str, int]:
            known = self.quota_limits(s, project_id)
            for k in values:
                if k not in known:
                    raise BadRequest(f"Bad key(s) in quota set: {k}")
            for k, v in values.items():
                row = s.get(VolumeQuota, (project_id, k))
                if row is None:
                    s.add(VolumeQuota(project_id=project_id, resource=k, hard_limit=v))
                else:
                    row.hard_limit = v
            s.flush()
            return self.quota_limits(s, project_id)
        return self.write(run)

    def delete_quotas(self, project_id: str) -> None:
        def run(s: Session) -> None:
            for q in s.scalars(select(VolumeQuota).where(VolumeQuota.project_id == project_id)):
                s.delete(q)
        self.write(run)

