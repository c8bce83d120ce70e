"""``GET /v3/role_assignments``: filters, ``effective`` expansion and ``include_names``."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from onestack.common.errors import ValidationError
from onestack.db.identity import (
    NULL_DOMAIN,
    Assignment,
    Domain,
    Group,
    GroupMembership,
    Project,
    Role,
    User,
)
from onestack.identity.manager import SYSTEM_ALL, IdentityManager


def _truthy(value: str | None) -> bool:
    return value is not None and value.lower() not in ("false", "0", "no", "off")


def list_role_assignments(m: IdentityManager, base: str, q: Any) -> list[dict[str, Any]]:
    """Role assignments as Keystone lists them (blocking)."""
    effective = "effective" in q and _truthy(q.get("effective") or "true")
    include_names = _truthy(q.get("include_names"))
    include_subtree = _truthy(q.get("include_subtree"))
    f_user, f_group, f_role = q.get("user.id"), q.get("group.id"), q.get("role.id")
    f_project, f_domain = q.get("scope.project.id"), q.get("scope.domain.id")
    f_system = q.get("scope.system")
    f_inherited = q.get("scope.OS-INHERIT:inherited_to")
    if f_project and f_domain:
        raise ValidationError("Specify at most one of scope.project.id and scope.domain.id.")
    if effective and f_group:
        raise ValidationError("Combining effective and group filter will always result in an "
                              "empty list.")
    if include_subtree and not f_project:
        raise ValidationError("scope.project.id must be specified if include_subtree is also "
                              "specified.")
    with m.db.reader() as s:
        rows = list(s.scalars(select(Assignment)))
        projects = {p.id: p for p in s.scalars(select(Project))}
        memberships: dict[str, list[str]] = {}
        for gm in s.scalars(select(GroupMembership)):
            memberships.setdefault(gm.group_id, []).append(gm.user_id)
        implied: dict[str, list[str]] = {}
        domain_roles: set[str] = set()
        if effective:
            for row in m.load_implied(s).items():
                implied[row[0]] = row[1]
            domain_roles = set(s.scalars(select(Role.id).where(Role.domain_id != NULL_DOMAIN)))
        names: dict[str, Any] = {}
        if include_names:
            names["role"] = {r.id: r for r in s.scalars(select(Role))}
            names["user"] = {u.id: u for u in s.scalars(select(User))}
            names["group"] = {g.id: g for g in s.scalars(select(Group))}
            names["domain"] = {d.id: d for d in s.scalars(select(Domain))}
            names["project"] = projects

    # Entries: (actor_kind, actor_id, scope_kind, scope_id, role_id, inherited, extra_links)
    entries: list[tuple[str, str, str, str, str, bool, dict[str, str]]] = []
    for a in rows:
        actor_kind = "user" if a.type.startswith("User") else "group"
        scope_kind = a.type[len(actor_kind):].lower()
        entries.append((actor_kind, a.actor_id, scope_kind, a.target_id, a.role_id,
                        a.inherited, {}))

    def link_for(e: tuple[str, str, str, str, str, bool, dict[str, str]]) -> str:
        actor_kind, actor, scope_kind, scope_id, role_id, inherited, _ = e
        if scope_kind == "system":
            path = f"system/{actor_kind}s/{actor}/roles/{role_id}"
        else:
            path = f"{scope_kind}s/{scope_id}/{actor_kind}s/{actor}/roles/{role_id}"
        if inherited:
            return f"{base}/v3/OS-INHERIT/{path}/inherited_to_projects"
        return f"{base}/v3/{path}"

    if effective:
        children: dict[str | None, list[str]] = {}
        for p in projects.values():
            children.setdefault(p.parent_id, []).append(p.id)

        def subtree(pid: str) -> list[str]:
            out, frontier = [], [pid]
            while frontier:
                nxt = [c for f in frontier for c in children.get(f, [])]
                out.extend(nxt)
                frontier = nxt
            return out

        expanded = []
        for e in entries:
            actor_kind, actor, scope_kind, scope_id, role_id, inherited, links = e
            base_link = link_for(e)
            scopes: list[tuple[str, str]]
            if inherited:
                if scope_kind == "domain":
                    scopes = [("project", p.id) for p in projects.values()
                              if p.domain_id == scope_id]
                else:
                    scopes = [("project", pid) for pid in subtree(scope_id)]
            else:
                scopes = [(scope_kind, scope_id)]
            actors = ([(actor, {})] if actor_kind == "user" else
                      [(u, {"membership": f"{base}/v3/groups/{actor}/users/{u}"})
                       for u in memberships.get(actor, [])])
            for uid, mlinks in actors:
                for sk, sid in scopes:
                    expanded.append(("user", uid, sk, sid, role_id, False,
                                     {"assignment": base_link, **mlinks}))
        # Implied roles.
        final = []
        for e in expanded:
            final.append(e)
            seen = {e[4]}
            frontier = [e[4]]
            while frontier:
                nxt = []
                for rid in frontier:
                    for imp in implied.get(rid, []):
                        if imp not in seen:
                            seen.add(imp)
                            nxt.append(imp)
                            final.append((e[0], e[1], e[2], e[3], imp, False,
                                          {**e[6], "prior_role": f"{base}/v3/roles/{rid}"}))
                frontier = nxt
        # Domain-specific roles never show up in effective assignments (nor in tokens).
        entries = [e for e in final if e[4] not in domain_roles]

    project_filter: set[str] | None = None
    if f_project:
        project_filter = {f_project}
        if include_subtree:
            frontier = [f_project]
            while frontier:
                nxt = [p.id for p in projects.values() if p.parent_id in frontier]
                project_filter |= set(nxt)
                frontier = nxt

    out = []
    for e in entries:
        actor_kind, actor, scope_kind, scope_id, role_id, inherited, links = e
        if f_user and not (actor_kind == "user" and actor == f_user):
            continue
        if f_group and not (actor_kind == "group" and actor == f_group):
            continue
        if f_role and role_id != f_role:
            continue
        if project_filter is not None and not (scope_kind == "project"
                                               and scope_id in project_filter):
            continue
        if f_domain and not (scope_kind == "domain" and scope_id == f_domain):
            continue
        if f_system and scope_kind != "system":
            continue
        if f_inherited and not inherited:
            continue
        item: dict[str, Any] = {"role": {"id": role_id}, actor_kind: {"id": actor}}
        if scope_kind == "system":
            item["scope"] = {"system": {"all": True}}
            del scope_id
            scope_id = SYSTEM_ALL
        else:
            item["scope"] = {scope_kind: {"id": scope_id}}
        if inherited:
            item["scope"]["OS-INHERIT:inherited_to"] = "projects"
        item["links"] = links if links else {"assignment": link_for(e)}
        if include_names:
            _add_names(item, names, actor_kind, actor, scope_kind, scope_id, role_id)
        out.append(item)
    return out


def _add_names(item: dict[str, Any], names: dict[str, Any], actor_kind: str, actor: str,
               scope_kind: str, scope_id: str, role_id: str) -> None:
    domains = names["domain"]

    def dom(did: str | None) -> dict[str, Any]:
        d = domains.get(did)
        return {"id": did, "name": d.name if d else None}

    r = names["role"].get(role_id)
    if r is not None:
        item["role"]["name"] = r.name
        if r.domain_id != NULL_DOMAIN:
            item["role"]["domain"] = dom(r.domain_id)
    a = names[actor_kind].get(actor)
    if a is not None:
        item[actor_kind]["name"] = a.name
        item[actor_kind]["domain"] = dom(a.domain_id)
    if scope_kind == "project":
        p = names["project"].get(scope_id)
        if p is not None:
            item["scope"]["project"]["name"] = p.name
            item["scope"]["project"]["domain"] = dom(p.domain_id)
    elif scope_kind == "domain":
        d = domains.get(scope_id)
        if d is not None:
            item["scope"]["domain"]["name"] = d.name
