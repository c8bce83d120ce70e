"""Migration records (resize, cold and live migration, evacuation): created when a move
begins, updated by the agents as it goes, listed by the API; part of ``ComputeManager``."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update

from onestack.common.ids import new_uuid
from onestack.common.timeutils import utcnow
from onestack.compute.store import ManagerState
from onestack.db.compute import Migration

InstanceDict = dict[str, Any]


class MigrationStore(ManagerState):
    """Migrations of instances."""

    # ================================================================== migrations
    def create_migration(self, inst: InstanceDict, dest: str | None, dest_node: str | None,
                         mtype: str, new_flavor: int | None = None) -> dict[str, Any]:
        """Record a migration; ``new_flavor`` is the new flavor's internal id (Nova shows
        ``old/new_instance_type_id`` as the flavors' integer ids)."""
        with self.write() as s:
            m = Migration(uuid=new_uuid(), instance_uuid=inst["uuid"],
                          project_id=inst["project_id"], user_id=inst["user_id"],
                          source_compute=inst["host"], source_node=inst["node"],
                          dest_compute=dest, dest_node=dest_node,
                          old_flavor_id=_opt_str(inst["flavor"].get("internal_id")),
                          new_flavor_id=_opt_str(new_flavor),
                          migration_type=mtype, status="pre-migrating", created_at=utcnow())
            s.add(m)
            s.flush()
            return _migration_dict(m)

    def set_migration(self, uuid: str, **values: Any) -> None:
        with self.write() as s:
            values["updated_at"] = utcnow()
            s.execute(update(Migration).where(Migration.uuid == uuid).values(**values))

    def latest_migration(self, instance_uuid: str) -> dict[str, Any] | None:
        with self.db.reader() as s:
            m = s.scalar(select(Migration).where(Migration.instance_uuid == instance_uuid)
                         .order_by(Migration.id.desc()).limit(1))
            return None if m is None else _migration_dict(m)

    def list_migrations(self, instance_uuid: str | None = None,
                        project_id: str | None = None) -> list[dict[str, Any]]:
        with self.db.reader() as s:
            q = select(Migration).order_by(Migration.id.desc())
            if instance_uuid:
                q = q.where(Migration.instance_uuid == instance_uuid)
            if project_id:
                q = q.where(Migration.project_id == project_id)
            return [_migration_dict(m) for m in s.scalars(q)]


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _migration_dict(m: Migration) -> dict[str, Any]:
    return {"id": m.id, "uuid": m.uuid, "instance_uuid": m.instance_uuid,
            "project_id": m.project_id, "user_id": m.user_id,
            "source_compute": m.source_compute, "dest_compute": m.dest_compute,
            "source_node": m.source_node, "dest_node": m.dest_node,
            "old_instance_type_id": m.old_flavor_id, "new_instance_type_id": m.new_flavor_id,
            "migration_type": m.migration_type, "status": m.status,
            "created_at": m.created_at, "updated_at": m.updated_at}
