"""Compute quotas as stored (project and user limits, quota classes, what is in use) and the
usage report of ``os-simple-tenant-usage``, part of ``ComputeManager``; the rules
themselves are in ``quotas.py``."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import delete, or_, select

from onestack.common.errors import BadRequest
from onestack.common.timeutils import utcnow
from onestack.compute import quotas
from onestack.compute.store import ManagerState
from onestack.db.compute import Instance, Quota


class QuotaStore(ManagerState):
    """Quota limits and usage of projects and users; quota classes; usage reports."""

    # ================================================================== quotas
    def quota_limits(self, project_id: str, user_id: str | None = None) -> dict[str, int]:
        with self.db.reader() as s:
            return quotas.project_limits(s, project_id, user_id, self.unified_limits)

    def quota_usage(self, project_id: str, user_id: str | None = None) -> dict[str, int]:
        with self.db.reader() as s:
            return quotas.usage(s, project_id, user_id)

    def quota_defaults(self) -> dict[str, int]:
        with self.db.reader() as s:
            return quotas.class_limits(s)

    def set_quotas(self, project_id: str, values: dict[str, Any], user_id: str | None,
                   force: bool) -> dict[str, int]:
        with self.write() as s:
            if not force:
                used = quotas.usage(s, project_id, user_id)
                for r, v in values.items():
                    if int(v) >= 0 and used.get(r, 0) > int(v):
                        raise BadRequest(f"Quota limit {v} for {r} must be greater than or "
                                         f"equal to already used and reserved {used[r]}.")
            quotas.set_limits(s, project_id, values, user_id)
        return self.quota_limits(project_id, user_id)

    def delete_quotas(self, project_id: str, user_id: str | None) -> None:
        with self.write() as s:
            q = delete(Quota).where(Quota.project_id == project_id)
            if user_id:
                q = q.where(Quota.user_id == user_id)
            s.execute(q)

    def quota_class(self, name: str) -> dict[str, int]:
        with self.db.reader() as s:
            return quotas.class_limits(s, name)

    def set_quota_class(self, name: str, values: dict[str, Any]) -> dict[str, int]:
        with self.write() as s:
            quotas.set_class_limits(s, name, values)
        return self.quota_class(name)

    # ================================================================== usage
    def usage_report(self, start: dt.datetime, end: dt.datetime,
                     project_id: str | None) -> list[dict[str, Any]]:
        """Per-project server usage between ``start`` and ``end`` (simple-tenant-usage)."""
        with self.db.reader() as s:
            q = select(Instance).where(
                Instance.created_at < end,
                or_(Instance.terminated_at.is_(None), Instance.terminated_at > start))
            if project_id:
                q = q.where(Instance.project_id == project_id)
            rows = list(s.scalars(q.order_by(Instance.created_at)))
        out: dict[str, dict[str, Any]] = {}
        now = utcnow()
        for r in rows:
            begin = max(r.launched_at or r.created_at, start)
            stop = min(r.terminated_at or now, end)
            hours = max(0.0, (stop - begin).total_seconds() / 3600.0)
            rep = out.setdefault(r.project_id, {
                "tenant_id": r.project_id, "total_hours": 0.0, "total_local_gb_usage": 0.0,
                "total_memory_mb_usage": 0.0, "total_vcpus_usage": 0.0,
                "start": start, "stop": end, "server_usages": []})
            rep["total_hours"] += hours
            rep["total_local_gb_usage"] += hours * r.root_gb
            rep["total_memory_mb_usage"] += hours * r.memory_mb
            rep["total_vcpus_usage"] += hours * r.vcpus
            rep["server_usages"].append({
                "instance_id": r.uuid, "name": r.display_name, "hours": hours,
                "memory_mb": r.memory_mb, "local_gb": r.root_gb, "vcpus": r.vcpus,
                "tenant_id": r.project_id, "flavor": (r.flavor or {}).get("name"),
                "started_at": r.launched_at or r.created_at, "ended_at": r.terminated_at,
                "state": "terminated" if r.deleted else r.vm_state,
                "uptime": int((now - (r.launched_at or r.created_at)).total_seconds())})
        return list(out.values())
