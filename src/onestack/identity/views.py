"""Response shaping for the identity API (Keystone v3 documents)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from onestack.common.timeutils import isotime
from onestack.identity.records import (
    NULL_DOMAIN,
    AccessRuleRecord,
    AppCredRecord,
    CredentialRecord,
    DomainRecord,
    EndpointRecord,
    GroupRecord,
    ProjectRecord,
    RegionRecord,
    RoleRecord,
    ServiceRecord,
    UserRecord,
)


def _link(base: str, path: str) -> dict[str, str]:
    return {"self": f"{base}/v3/{path}"}


def links(base: str, path: str, query: str = "") -> dict[str, Any]:
    """A collection's ``links`` (Keystone does not paginate: previous/next are null)."""
    self_link = f"{base}/v3/{path}" + (f"?{query}" if query else "")
    return {"self": self_link, "previous": None, "next": None}


def collection(base: str, path: str, key: str, items: list[dict[str, Any]],
               query: str = "") -> dict[str, Any]:
    return {key: items, "links": links(base, path, query)}


_Row = TypeVar("_Row")


def listing(base: str, path: str, key: str, view: Callable[[str, _Row], dict[str, Any]],
            rows: Iterable[_Row], query: str = "") -> dict[str, Any]:
    """The collection ``key`` at ``path`` of every row shaped by ``view(base, row)``."""
    return collection(base, path, key, [view(base, r) for r in rows], query)


def domain(base: str, d: DomainRecord) -> dict[str, Any]:
    out = {**(d.extra or {}), "id": d.id, "name": d.name, "description": d.description or "",
           "enabled": d.enabled, "tags": [], "options": {}, "links": _link(base, f"domains/{d.id}")}
    return out


def project(base: str, p: ProjectRecord, tags: list[str] | None = None) -> dict[str, Any]:
    is_domain = p.domain_id is None
    out = {
        **(p.extra or {}),
        "id": p.id,
        "name": p.name,
        "domain_id": p.domain_id,
        "description": p.description or "",
        "enabled": p.enabled,
        "parent_id": p.parent_id if not is_domain else None,
        "is_domain": is_domain,
        "tags": tags or [],
        "options": dict(p.options or {}),
        "links": _link(base, f"projects/{p.id}"),
    }
    if not is_domain and p.parent_id is None:
        out["parent_id"] = p.domain_id
    return out


def user(base: str, u: UserRecord) -> dict[str, Any]:
    out: dict[str, Any] = {**(u.extra or {})}
    out.update({
        "id": u.id,
        "name": u.name,
        "domain_id": u.domain_id,
        "enabled": u.enabled,
        "password_expires_at": isotime(u.password_expires_at, subsecond=True),
        "options": dict(u.options or {}),
        "links": _link(base, f"users/{u.id}"),
    })
    if u.default_project_id:
        out["default_project_id"] = u.default_project_id
    return out


def group(base: str, g: GroupRecord) -> dict[str, Any]:
    return {**(g.extra or {}), "id": g.id, "name": g.name, "domain_id": g.domain_id,
            "description": g.description or "", "links": _link(base, f"groups/{g.id}")}


def role(base: str, r: RoleRecord) -> dict[str, Any]:
    return {**(r.extra or {}), "id": r.id, "name": r.name,
            "domain_id": None if r.domain_id == NULL_DOMAIN else r.domain_id,
            "description": r.description, "options": dict(r.options or {}),
            "links": _link(base, f"roles/{r.id}")}


def role_ref(base: str, r: RoleRecord) -> dict[str, Any]:
    out = {"id": r.id, "name": r.name, "links": _link(base, f"roles/{r.id}")}
    if r.domain_id != NULL_DOMAIN:
        out["domain_id"] = r.domain_id
    return out


def implied(base: str, prior: RoleRecord, implies: list[RoleRecord]) -> dict[str, Any]:
    return {
        "prior_role": role_ref(base, prior),
        "implies": [role_ref(base, r) for r in implies],
    }


def inference(base: str, prior: RoleRecord, implied: RoleRecord) -> dict[str, Any]:
    """The document of one implied-role rule (``prior`` implies ``implied``), with its link."""
    return {"role_inference": {"prior_role": role_ref(base, prior),
                               "implies": role_ref(base, implied)},
            "links": {"self": f"{base}/v3/roles/{prior.id}/implies/{implied.id}"}}


def region(base: str, r: RegionRecord) -> dict[str, Any]:
    return {**(r.extra or {}), "id": r.id, "description": r.description or "",
            "parent_region_id": r.parent_region_id, "links": _link(base, f"regions/{r.id}")}


def service(base: str, s: ServiceRecord) -> dict[str, Any]:
    extra = dict(s.extra or {})
    out = {**extra, "id": s.id, "type": s.type, "enabled": s.enabled,
           "links": _link(base, f"services/{s.id}")}
    return out


def endpoint(base: str, e: EndpointRecord) -> dict[str, Any]:
    return {**(e.extra or {}), "id": e.id, "interface": e.interface, "region_id": e.region_id,
            "region": e.region_id, "service_id": e.service_id, "url": e.url,
            "enabled": e.enabled, "links": _link(base, f"endpoints/{e.id}")}


def app_cred(base: str, a: AppCredRecord, roles: list[dict[str, Any]],
             secret: str | None = None) -> dict[str, Any]:
    out = {
        "id": a.id,
        "name": a.name,
        "user_id": a.user_id,
        "project_id": a.project_id,
        "description": a.description,
        # Keystone echoes an application credential's expiry without a zone designator.
        "expires_at": a.expires_at.isoformat() if a.expires_at else None,
        "unrestricted": a.unrestricted,
        "system": a.system,
        "roles": roles,
        "access_rules": [
            {"id": r["id"], "service": r["service"], "path": r["path"], "method": r["method"]}
            for r in a.access_rules or []
        ],
        "links": _link(base, f"users/{a.user_id}/application_credentials/{a.id}"),
    }
    if secret is not None:
        out["secret"] = secret
    return out


def access_rule(base: str, r: AccessRuleRecord) -> dict[str, Any]:
    return {"id": r.id, "service": r.service, "path": r.path, "method": r.method,
            "links": _link(base, f"users/{r.user_id}/access_rules/{r.id}")}


def credential(base: str, c: CredentialRecord, blob: str) -> dict[str, Any]:
    return {**(c.extra or {}), "id": c.id, "user_id": c.user_id, "project_id": c.project_id,
            "type": c.type, "blob": blob, "links": _link(base, f"credentials/{c.id}")}
