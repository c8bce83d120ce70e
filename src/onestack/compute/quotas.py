"""Compute quotas: defaults, per-class and per-project limits, usage and checks.

A limit of -1 means unlimited. Checks run inside the caller's write transaction together with
the inserts they guard, so an over-quota request leaves nothing behind.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from onestack.common.errors import Forbidden
from onestack.common.limits import LimitSource
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


#: Nova's unified-limits resource names -> the os-quota-sets names used here.
UNIFIED_NAMES = {
    "servers": "instances", "class:VCPU": "cores", "class:MEMORY_MB": "ram",
    "server_metadata_items": "metadata_items", "server_injected_files": "injected_files",
    "server_injected_file_content_bytes": "injected_file_content_bytes",
    "server_injected_file_path_bytes": "injected_file_path_bytes",
    "server_key_pairs": "key_pairs", "server_groups": "server_groups",
    "server_group_members": "server_group_members",
}
#: Resources that must have a registered limit under unified limits (Nova's default
#: ``unified_limits_resource_strategy = require`` with ``servers``): without one, none may
#: be created. Any other resource without one is unlimited.
UNIFIED_REQUIRED = ("instances",)


class OverQuota(Forbidden):
    """403 ``Quota exceeded ...`` (the view renders it as ``forbidden``)."""


def class_limits(s: Session | Connection, class_name: str = "default") -> dict[str, int]:
    qc = QuotaClass.__table__
    limits = dict(DEFAULTS)
    for resource, hard in s.execute(select(qc.c.resource, qc.c.hard_limit).where(
            qc.c.class_name == class_name)):
        if resource in limits:
            limits[resource] = hard
    return limits


def project_limits(s: Session | Connection, project_id: str,
                   user_id: str | None = None, unified: LimitSource | None = None
                   ) -> dict[str, int]:
    """Class defaults, then the project's limits, then the user's (one query each); with
    ``unified``, the project's unified limits instead (they have no per-user values)."""
    if unified is not None:
        found = unified.for_project(s, project_id)
        limits = {r: -1 for r in DEFAULTS}
        for r in NETWORK_RESOURCES:
            limits[r] = DEFAULTS[r]
        for r in UNIFIED_REQUIRED:
            limits[r] = 0
        for name, value in found.items():
            if name in UNIFIED_NAMES:
                limits[UNIFIED_NAMES[name]] = value
        return limits
    q = Quota.__table__
    limits = class_limits(s)
    users = ["", user_id] if user_id else [""]
    rows = sorted(s.execute(select(q.c.user_id, q.c.resource, q.c.hard_limit).where(
        q.c.project_id == project_id, q.c.user_id.in_(users))), key=lambda r: r[0] != "")
    for _user, resource, hard in rows:
        if resource in limits:
            limits[resource] = hard
    return limits


def usage(s: Session | Connection, project_id: str, user_id: str | None = None,
          groups: bool = True) -> dict[str, int]:
    """What a project (or one of its users) uses; ``groups=False`` skips counting server
    groups (not needed to check a boot)."""
    i = Instance.__table__
    conds = [i.c.project_id == project_id, i.c.deleted.is_(False)]
    if user_id:
        conds.append(i.c.user_id == user_id)
    n, cores, ram = s.execute(
        select(func.count(), func.coalesce(func.sum(i.c.vcpus), 0),
               func.coalesce(func.sum(i.c.memory_mb), 0)).where(*conds)).one()
    out = {"instances": int(n), "cores": int(cores), "ram": int(ram)}
    if groups:
        sg = ServerGroup.__table__
        out["server_groups"] = int(s.execute(select(func.count()).select_from(sg).where(
            sg.c.project_id == project_id)).scalar() or 0)
    if user_id:
        kp = KeyPair.__table__
        out["key_pairs"] = int(s.execute(select(func.count()).select_from(kp).where(
            kp.c.user_id == user_id)).scalar() or 0)
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


def instances_that_fit(limits: dict[str, int], used: dict[str, int], flavor: dict[str, Any],
                       min_count: int, max_count: int, cap: int) -> int:
    """How many of ``min_count``..``max_count`` instances of ``flavor`` to create: the most
    that fit every limit (computed, not searched: ``max_count`` may be 2**63), at most
    ``cap`` per request. Raises ``OverQuota`` with Nova's message when not even
    ``min_count`` fit (Nova's ``check_num_instances_quota``)."""
    per = {"instances": 1, "cores": int(flavor["vcpus"]), "ram": int(flavor["memory_mb"])}
    allowed = max_count
    headroom: dict[str, int] = {}
    for r, each in per.items():
        limit = limits.get(r, -1)
        if limit < 0:
            continue
        headroom[r] = max(0, limit - used.get(r, 0))
        if each > 0:
            allowed = min(allowed, headroom[r] // each)
    if allowed >= min_count:
        if min_count > cap:
            raise OverQuota(f"Quota exceeded for instances: Requested {min_count}, but at "
                            f"most {cap} instances can be created in one request")
        return min(allowed, cap)
    over = sorted(r for r, each in per.items() if r in headroom and max_count * each > headroom[r])
    wanted = f"{min_count}" if min_count == max_count else f"{min_count}-{max_count}"
    requested = {"instances": wanted, "cores": max_count * per["cores"],
                 "ram": max_count * per["ram"]}
    raise OverQuota("Quota exceeded for {}: Requested {}, but already used {} of {} {}".format(
        ", ".join(over), ", ".join(str(requested[r]) for r in over),
        ", ".join(str(used.get(r, 0)) for r in over),
        ", ".join(str(limits[r]) for r in over), ", ".join(over)))


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
