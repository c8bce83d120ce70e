"""Flavors of the compute service: the DevStack set made on first start, CRUD, extra specs
and project access (``FlavorStore``, part of ``ComputeManager``)."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session

from onestack.common.context import RequestContext
from onestack.common.errors import BadRequest, Conflict, NotFound
from onestack.common.ids import new_uuid
from onestack.common.timeutils import utcnow
from onestack.compute.store import ManagerState
from onestack.db.compute import Flavor, FlavorAccess

T = TypeVar("T")

#: The flavors a fresh DevStack has (id, name, ram MB, disk GB, vcpus): Nova's classic m1
#: set, Tempest's m1.nano/m1.micro, and DevStack's own small set (``cirros256``, ``ds*``),
#: which DevStack creates with the ``hw_rng:allowed`` extra spec.
DEFAULT_FLAVORS = [
    ("1", "m1.tiny", 512, 1, 1),
    ("2", "m1.small", 2048, 20, 1),
    ("3", "m1.medium", 4096, 40, 2),
    ("4", "m1.large", 8192, 80, 4),
    ("5", "m1.xlarge", 16384, 160, 8),
    ("42", "m1.nano", 128, 1, 1),
    ("84", "m1.micro", 192, 1, 1),
    ("c1", "cirros256", 256, 1, 1),
    ("d1", "ds512M", 512, 5, 1),
    ("d2", "ds1G", 1024, 10, 1),
    ("d3", "ds2G", 2048, 10, 2),
    ("d4", "ds4G", 4096, 20, 4),
]
_DEVSTACK_SPECS = {"hw_rng:allowed": "True"}


def _flavor_dict(f: Any, access: list[str] | None = None) -> dict[str, Any]:
    return {"id": f.flavorid, "internal_id": f.id, "name": f.name, "memory_mb": f.memory_mb,
            "vcpus": f.vcpus, "root_gb": f.root_gb, "ephemeral_gb": f.ephemeral_gb,
            "swap": f.swap, "rxtx_factor": f.rxtx_factor, "is_public": f.is_public,
            "disabled": f.disabled, "description": f.description,
            "extra_specs": dict(f.extra_specs or {})}


class FlavorStore(ManagerState):
    """Flavor records (mixed into ``ComputeManager``)."""

    # ================================================================== flavors
    def ensure_default_flavors(self) -> None:
        """Create DevStack's default flavors on a fresh cloud (idempotent)."""
        with self.write() as s:
            if s.scalar(select(func.count()).select_from(Flavor)):
                return
            now = utcnow()
            for fid, name, ram, disk, vcpus in DEFAULT_FLAVORS:
                s.add(Flavor(flavorid=fid, name=name, memory_mb=ram, root_gb=disk,
                             vcpus=vcpus, ephemeral_gb=0, swap=0, rxtx_factor=1.0,
                             is_public=True, disabled=False,
                             extra_specs=dict(_DEVSTACK_SPECS) if fid[0] in "cd" else {},
                             created_at=now))

    def get_flavor(self, ctx: RequestContext | None, flavorid: str) -> dict[str, Any]:
        """A flavor by its public id (404 when unknown or not accessible)."""
        fl, fa = Flavor.__table__, FlavorAccess.__table__
        with self.db.connect(readonly=True) as c:
            f = c.execute(select(fl).where(fl.c.flavorid == flavorid)).first()
            if f is None or (ctx is not None and not f.is_public and not ctx.is_admin
                             and c.execute(select(fa.c.project_id).where(
                                 fa.c.flavor_id == f.id,
                                 fa.c.project_id == (ctx.project_id or ""))).first() is None):
                raise NotFound(f"Flavor {flavorid} could not be found.")
            return _flavor_dict(f)

    def list_flavors(self, ctx: RequestContext, is_public: bool | None, min_ram: int | None,
                     min_disk: int | None, sort_key: str, sort_dir: str, limit: int | None,
                     marker: str | None) -> list[dict[str, Any]]:
        with self.db.reader() as s:
            q = select(Flavor).where(Flavor.disabled.is_(False))
            if ctx.is_admin:
                if is_public is not None:
                    q = q.where(Flavor.is_public.is_(is_public))
            else:
                access = select(FlavorAccess.flavor_id).where(
                    FlavorAccess.project_id == (ctx.project_id or ""))
                if is_public is None or is_public:
                    q = q.where(or_(Flavor.is_public.is_(True), Flavor.id.in_(access)))
                else:
                    q = q.where(Flavor.is_public.is_(False), Flavor.id.in_(access))
            if min_ram is not None:
                q = q.where(Flavor.memory_mb >= min_ram)
            if min_disk is not None:
                q = q.where(Flavor.root_gb >= min_disk)
            col = {"flavorid": Flavor.flavorid, "name": Flavor.name,
                   "memory_mb": Flavor.memory_mb, "vcpus": Flavor.vcpus,
                   "root_gb": Flavor.root_gb, "swap": Flavor.swap, "id": Flavor.id,
                   "ephemeral_gb": Flavor.ephemeral_gb, "rxtx_factor": Flavor.rxtx_factor,
                   "created_at": Flavor.created_at, "description": Flavor.description,
                   "disabled": Flavor.disabled, "is_public": Flavor.is_public}.get(sort_key)
            if col is None:
                raise BadRequest(f"Invalid sort_key {sort_key}")
            order = [col.asc() if sort_dir == "asc" else col.desc(),
                     Flavor.id.asc() if sort_dir == "asc" else Flavor.id.desc()]
            q = q.order_by(*order)
            rows = list(s.scalars(q))
            if marker is not None:
                ids = [r.flavorid for r in rows]
                if marker not in ids:
                    raise BadRequest(f"marker [{marker}] not found")
                rows = rows[ids.index(marker) + 1:]
            if limit is not None:
                rows = rows[:limit]
            return [_flavor_dict(r) for r in rows]

    def create_flavor(self, body: dict[str, Any]) -> dict[str, Any]:
        with self.write() as s:
            fid = body.get("id") or new_uuid()
            if s.scalar(select(Flavor.id).where(Flavor.flavorid == fid)) is not None:
                raise Conflict(f"Flavor with ID {fid} already exists.")
            if s.scalar(select(Flavor.id).where(Flavor.name == body["name"])) is not None:
                raise Conflict(f"Flavor with name {body['name']} already exists.")
            f = Flavor(flavorid=fid, name=body["name"], memory_mb=body["ram"],
                       vcpus=body["vcpus"], root_gb=body["disk"],
                       ephemeral_gb=body.get("OS-FLV-EXT-DATA:ephemeral", 0),
                       swap=body.get("swap", 0) or 0,
                       rxtx_factor=body.get("rxtx_factor", 1.0),
                       is_public=body.get("os-flavor-access:is_public", True),
                       description=body.get("description"), disabled=False,
                       extra_specs={}, created_at=utcnow())
            s.add(f)
            s.flush()
            return _flavor_dict(f)

    def _flavor_row(self, s: Session, flavorid: str) -> Flavor:
        f = s.scalar(select(Flavor).where(Flavor.flavorid == flavorid))
        if f is None:
            raise NotFound(f"Flavor {flavorid} could not be found.")
        return f

    def update_flavor(self, flavorid: str, description: str | None) -> dict[str, Any]:
        with self.write() as s:
            f = self._flavor_row(s, flavorid)
            f.description = description
            f.updated_at = utcnow()
            return _flavor_dict(f)

    def delete_flavor(self, flavorid: str) -> None:
        with self.write() as s:
            f = self._flavor_row(s, flavorid)
            s.execute(delete(FlavorAccess).where(FlavorAccess.flavor_id == f.id))
            s.delete(f)

    def set_extra_specs(self, flavorid: str, specs: dict[str, str],
                        replace_all: bool = False) -> dict[str, str]:
        with self.write() as s:
            f = self._flavor_row(s, flavorid)
            cur = {} if replace_all else dict(f.extra_specs or {})
            cur.update(specs)
            f.extra_specs = cur
            f.updated_at = utcnow()
            return cur

    def delete_extra_spec(self, flavorid: str, key: str) -> None:
        with self.write() as s:
            f = self._flavor_row(s, flavorid)
            cur = dict(f.extra_specs or {})
            if key not in cur:
                raise NotFound(f"Flavor {flavorid} has no extra specs with key {key}.")
            del cur[key]
            f.extra_specs = cur

    def flavor_access(self, flavorid: str) -> list[str]:
        with self.db.reader() as s:
            f = self._flavor_row(s, flavorid)
            if f.is_public:
                raise NotFound("Access list not available for public flavors.")
            return sorted(s.scalars(select(FlavorAccess.project_id).where(
                FlavorAccess.flavor_id == f.id)))

    def add_flavor_access(self, flavorid: str, project_id: str) -> list[str]:
        with self.write() as s:
            f = self._flavor_row(s, flavorid)
            if f.is_public:
                raise Conflict("Can not add access to a public flavor.")
            if s.get(FlavorAccess, (f.id, project_id)) is not None:
                raise Conflict(f"Flavor access already exists for flavor {flavorid} and "
                               f"project {project_id} combination.")
            s.add(FlavorAccess(flavor_id=f.id, project_id=project_id))
        return self.flavor_access(flavorid)

    def remove_flavor_access(self, flavorid: str, project_id: str) -> list[str]:
        with self.write() as s:
            f = self._flavor_row(s, flavorid)
            if f.is_public:
                raise Conflict("Can not remove access from a public flavor.")
            row = s.get(FlavorAccess, (f.id, project_id))
            if row is None:
                raise NotFound(f"Flavor access not found for {flavorid} / {project_id} "
                               "combination.")
            s.delete(row)
        return self.flavor_access(flavorid)
