"""Server groups (affinity and anti-affinity policies, their members), part of
``ComputeManager``."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from onestack.common.context import RequestContext
from onestack.common.errors import NotFound
from onestack.common.ids import new_uuid
from onestack.common.timeutils import utcnow
from onestack.compute import quotas
from onestack.compute.store import ManagerState
from onestack.db.compute import ServerGroup, ServerGroupMember


class GroupStore(ManagerState):
    """Server groups and their members."""

    # ================================================================== server groups
    @staticmethod
    def _group_dict(s: Session, g: ServerGroup) -> dict[str, Any]:
        members = sorted(s.scalars(select(ServerGroupMember.instance_uuid).where(
            ServerGroupMember.group_uuid == g.uuid)))
        return {"id": g.uuid, "name": g.name, "project_id": g.project_id,
                "user_id": g.user_id, "policy": g.policy, "rules": dict(g.rules or {}),
                "members": members}

    def create_group(self, ctx: RequestContext, name: str, policy: str,
                     rules: dict[str, Any]) -> dict[str, Any]:
        with self.write() as s:
            limits = quotas.project_limits(s, ctx.project_id or "", ctx.user_id,
                                           self.unified_limits)
            used = quotas.usage(s, ctx.project_id or "")
            quotas.check(limits, used, {"server_groups": 1})
            g = ServerGroup(uuid=new_uuid(), name=name, project_id=ctx.project_id or "",
                            user_id=ctx.user_id or "", policy=policy, rules=rules,
                            created_at=utcnow())
            s.add(g)
            s.flush()
            return self._group_dict(s, g)

    def list_groups(self, ctx: RequestContext, all_projects: bool, limit: int | None,
                    offset: int) -> list[dict[str, Any]]:
        with self.db.reader() as s:
            q = select(ServerGroup).order_by(ServerGroup.created_at, ServerGroup.uuid)
            if not (all_projects and ctx.is_admin):
                q = q.where(ServerGroup.project_id == (ctx.project_id or ""))
            q = q.offset(offset)
            if limit is not None:
                q = q.limit(limit)
            return [self._group_dict(s, g) for g in s.scalars(q)]

    def get_group(self, ctx: RequestContext, uuid: str) -> dict[str, Any]:
        with self.db.reader() as s:
            g = s.get(ServerGroup, uuid)
            if g is None or (not ctx.is_admin and g.project_id != ctx.project_id):
                raise NotFound(f"Instance group {uuid} could not be found.")
            return self._group_dict(s, g)

    def delete_group(self, ctx: RequestContext, uuid: str) -> None:
        with self.write() as s:
            g = s.get(ServerGroup, uuid)
            if g is None or (not ctx.is_admin and g.project_id != ctx.project_id):
                raise NotFound(f"Instance group {uuid} could not be found.")
            s.execute(delete(ServerGroupMember).where(ServerGroupMember.group_uuid == uuid))
            s.delete(g)

    def group_of(self, uuid: str) -> str | None:
        with self.db.reader() as s:
            return s.scalar(select(ServerGroupMember.group_uuid).where(
                ServerGroupMember.instance_uuid == uuid))
