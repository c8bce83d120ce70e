"""Compute quotas: defaults, per-class and per-project limits, usage and checks.

A limit of -1 means unlimited. Checks run inside the caller's write transaction together with
the inserts they guard, so an over-quota request leaves nothing behind.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from onestack.common.errors import Forbidden
from onestack.db.compute import Instance, KeyPair, Quota, QuotaClass, ServerGroup

DEFAULTS: dict[str, int] = {
    "instances": 10,
    "cores": 20,
    "ram": 51200,
    "key_pairs": 100,
    "server_groups": 10,
    "server_group_members": 10,
    "metadata_items": 128,
    "injected_files": 5,
    "injected_file_content_bytes": 10240,
    "injected_file_path_bytes": 255,
    # Network quotas shown before microversion 2.36 (proxied to networking in Nova).
    "fixed_ips": -1,
    "floating_ips": -1,
    "security_groups": -1,
    "security_group_rules": -1,
}
NETWORK_RESOURCES = ("fixed_ips", "floating_ips", "security_groups", "security_group_rules")
INJECTED = ("injected_files", "injected_file_content_bytes", "injected_file_path_bytes")


class OverQuota(Forbidden):
    """403 ``Quota exceeded ...`` (the view renders it as ``forbidden``)."""


def class_limits(s: Session, class_name: str = "default") -> dict[str, int]:
    limits = dict(DEFAULTS)
    for row in s.scalars(select(QuotaClass).where(QuotaClass.class_name == class_name)):
        if row.resource in limits:
            limits[row.resource] = row.hard_limit
    return limits


def project_limits(s: Session, project_id: str, user_id: str | None = None) -> dict[str, int]:
    limits = class_limits(s)
    rows = s.scalars(select(Quota).where(Quota.project_id == project_id,
                                         Quota.user_id == ""))
    for row in rows:
        if row.resource in limits:
            limits[row.resource] = row.hard_limit
    if user_id:
        for row in s.scalars(select(Quota).where(Quota.project_id == project_id,
                                                 Quota.user_id == user_id)):
            if row.resource in limits:
                limits[row.resource] = row.hard_limit
    return limits


def usage(s: Session, project_id: str, user_id: str | None = None) -> dict[str, int]:
    conds = [Instance.project_id == project_id, Instance.deleted.is_(False)]
    if user_id:
        conds.append(Instance.user_id == user_id)
    n, cores, ram = s.execute(
        select(func.count(), func.coalesce(func.sum(Instance.vcpus), 0),
               func.coalesce(func.sum(Instance.memory_mb), 0)).where(*conds)).one()
    groups = s.scalar(select(func.count()).select_from(ServerGroup).where(
        ServerGroup.project_id == project_id)) or 0
    out = {"instances": int(n), "cores": int(cores), "ram": int(ram),
           "server_groups": int(groups)}
    if user_id:
        out["key_pairs"] = int(s.scalar(select(func.count()).select_from(KeyPair).where(
            KeyPair.user_id == user_id)) or 0)
    return out


def check(limits: dict[str, int], used: dict[str, int], wanted: dict[str, int]) -> None:
    """Raise ``OverQuota`` (Nova's message) when ``wanted`` does not fit."""
    over = [r for r, n in wanted.items()
            if limits.get(r, -1) >= 0 and used.get(r, 0) + n > limits[r]]
    if not over:
        return
    over.sort()
    req = ", ".join(f"{r}={wanted[r]}" for r in over) if len(over) > 1 else str(wanted[over[0]])
    if len(over) == 1:
        r = over[0]
        raise OverQuota(f"Quota exceeded for {r}: Requested {wanted[r]}, but already used "
                        f"{used.get(r, 0)} of {limits[r]} {r}")
    raise OverQuota(f"Quota exceeded for {', '.join(over)}: Requested {req}, but already used "
                    + ", ".join(f"{used.get(r, 0)} of {limits[r]} {r}" for r in over))


def set_limits(s: Session, project_id: str, values: dict[str, Any],
               user_id: str | None = None) -> None:
    for resource, value in values.items():
        row = s.get(Quota, (project_id, user_id or "", resource))
        if row is None:
            s.add(Quota(project_id=project_id, user_id=user_id or "", resource=resource,
                        hard_limit=int(value)))
        else:
            row.hard_limit = int(value)


def set_class_limits(s: Session, class_name: str, values: dict[str, Any]) -> None:
    for resource, value in values.items():
        row = s.get(QuotaClass, (class_name, resource))
        if row is None:
            s.add(QuotaClass(class_name=class_name, resource=resource, hard_limit=int(value)))
        else:
            row.hard_limit = int(value)
