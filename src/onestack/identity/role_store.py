"""The assignment backend: roles, implied roles, grants, effective roles and the role data tokens
carry. Part of ``IdentityManager`` (``RoleStore``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from onestack.common.errors import BadRequest, Forbidden, NotFound
from onestack.common.ids import new_id
from onestack.db.identity import (
    NULL_DOMAIN,
    Assignment,
    Domain,
    GroupMembership,
    ImpliedRole,
    Project,
    Role,
    User,
)
from onestack.identity.records import Grant
from onestack.identity.store import (
    GROUP_DOMAIN,
    GROUP_PROJECT,
    GROUP_SYSTEM,
    PROHIBITED_IMPLIED,
    SYSTEM_ALL,
    USER_DOMAIN,
    USER_PROJECT,
    USER_SYSTEM,
    IdentityState,
    RoleRef,
    ScopeInfo,
    UserInfo,
    _apply,
    _name_free,
    _rename_free,
    _where_given,
)

#: An assignment's primary key: (type, actor id, target id, role id, inherited).
GrantKey = tuple[str, str, str, str, bool]


class RoleStore(IdentityState):
    """The assignment backend: roles, implied roles, grants, effective roles and the role data
    tokens carry."""

    # ------------------------------------------------------------------ roles
    def get_role(self, role_id: str, s: Session | None = None) -> Role:
        return self._fetch(Role, role_id, "role", s)

    def find_role(self, name: str, domain_id: str | None = None) -> Role | None:
        with self.db.reader() as s:
            return s.scalar(select(Role).where(Role.name == name,
                                               Role.domain_id == (domain_id or NULL_DOMAIN)))

    def list_roles(self, name: str | None = None, domain_id: str | None = None) -> list[Role]:
        with self.db.reader() as s:
            q = _where_given(select(Role).order_by(Role.name), Role,
                             domain_id=domain_id or NULL_DOMAIN, name=name)
            return list(s.scalars(q))

    def create_role(self, name: str, domain_id: str | None = None,
                    description: str | None = None, role_id: str | None = None,
                    options: dict[str, Any] | None = None,
                    extra: dict[str, Any] | None = None) -> Role:
        with self.write() as s:
            if domain_id:
                self.get_domain(domain_id, s)
            _name_free(s, Role, "role", name, domain_id or NULL_DOMAIN, show_domain=False)
            r = Role(id=role_id or new_id(), name=name, domain_id=domain_id or NULL_DOMAIN,
                     description=description, options=options or {}, extra=extra or {})
            s.add(r)
        return r

    def update_role(self, role_id: str, changes: dict[str, Any]) -> Role:
        with self.write() as s:
            r = self.get_role(role_id, s)
            if (r.options or {}).get("immutable") and not (
                set(changes) == {"options"} and "immutable" in changes["options"]
            ):
                raise Forbidden(f"Role {role_id} is immutable and cannot be modified.")
            if "domain_id" in changes and (changes["domain_id"] or NULL_DOMAIN) != r.domain_id:
                raise BadRequest("Update of `domain_id` is not allowed.")
            _rename_free(s, r, "role", changes, show_domain=False)
            _apply(r, changes, ("name", "description"), merge=("extra",))
            if "options" in changes:
                opts = {**(r.options or {}), **changes["options"]}
                r.options = {k: v for k, v in opts.items() if v is not None}
        return r

    def delete_role(self, role_id: str) -> None:
        with self.write() as s:
            r = self.get_role(role_id, s)
            if (r.options or {}).get("immutable"):
                raise Forbidden(f"Role {role_id} is immutable and cannot be deleted.")
            actors = list(s.scalars(select(Assignment.actor_id)
                                    .where(Assignment.role_id == r.id)))
            s.execute(delete(Assignment).where(Assignment.role_id == r.id))
            s.execute(delete(ImpliedRole).where(or_(ImpliedRole.prior_role_id == r.id,
                                                    ImpliedRole.implied_role_id == r.id)))
            s.delete(r)
        for actor in set(actors):
            self.revoke(user_id=actor)

    def create_implied_role(self, prior_id: str, implied_id: str) -> tuple[Role, Role]:
        with self.write() as s:
            prior = self.get_role(prior_id, s)
            implied = self.get_role(implied_id, s)
            if implied.name in PROHIBITED_IMPLIED and implied.domain_id == NULL_DOMAIN:
                raise Forbidden(f"{implied.name} may not be implied by another role.")
            # Refuse cycles.
            if prior_id == implied_id or prior_id in self.implied_closure(s, [implied_id]):
                raise Forbidden(
                    f"Implied role {implied_id} would create a cycle with {prior_id}.")
            if s.get(ImpliedRole, (prior_id, implied_id)) is None:
                s.add(ImpliedRole(prior_role_id=prior_id, implied_role_id=implied_id))
        return prior, implied

    def _implication(self, s: Session, prior_id: str, implied_id: str
                     ) -> tuple[Role, Role, ImpliedRole]:
        """The two roles and the rule that the first implies the second (404 when either
        role or the rule is missing)."""
        prior = self.get_role(prior_id, s)
        implied = self.get_role(implied_id, s)
        row = s.get(ImpliedRole, (prior_id, implied_id))
        if row is None:
            raise NotFound(f"{prior_id} does not imply {implied_id}.")
        return prior, implied, row

    def get_implied_role(self, prior_id: str, implied_id: str) -> tuple[Role, Role]:
        with self.db.reader() as s:
            prior, implied, _ = self._implication(s, prior_id, implied_id)
            return prior, implied

    def delete_implied_role(self, prior_id: str, implied_id: str) -> None:
        with self.write() as s:
            s.delete(self._implication(s, prior_id, implied_id)[2])

    def list_implied_roles(self, prior_id: str | None = None) -> list[tuple[Role, list[Role]]]:
        with self.db.reader() as s:
            q = select(ImpliedRole)
            if prior_id is not None:
                self.get_role(prior_id, s)
                q = q.where(ImpliedRole.prior_role_id == prior_id)
            rows = list(s.scalars(q))
            ids = {r.prior_role_id for r in rows} | {r.implied_role_id for r in rows}
            if prior_id:
                ids.add(prior_id)
            roles = {r.id: r for r in s.scalars(select(Role).where(Role.id.in_(ids)))}
            grouped: dict[str, list[Role]] = {}
            if prior_id:
                grouped[prior_id] = []
            for r in rows:
                grouped.setdefault(r.prior_role_id, []).append(roles[r.implied_role_id])
            return [(roles[p], imp) for p, imp in grouped.items()]

    def implied_closure(self, s: Session, role_ids: Iterable[str]) -> set[str]:
        """``role_ids`` and every role they imply, directly or through others (the rules
        cached until a role or rule changes)."""
        rules = self.cache.get(("implied-rules",), lambda: self.load_implied(s))
        out = set(role_ids)
        frontier = list(out)
        while frontier:
            nxt = []
            for rid in frontier:
                for imp in rules.get(rid, ()):
                    if imp not in out:
                        out.add(imp)
                        nxt.append(imp)
            frontier = nxt
        return out

    def load_implied(self, s: Session) -> dict[str, list[str]]:
        """Every implied-role rule from the database: prior role id -> the ids it implies."""
        rules: dict[str, list[str]] = {}
        for row in s.scalars(select(ImpliedRole)):
            rules.setdefault(row.prior_role_id, []).append(row.implied_role_id)
        return rules
    # ------------------------------------------------------------------ grants
    def _grant_target(self, s: Session, grant: Grant) -> tuple[str, str]:
        if grant.project_id:
            self.get_project(grant.project_id, s)
            return "Project", grant.project_id
        if grant.domain_id:
            self.get_domain(grant.domain_id, s)
            return "Domain", grant.domain_id
        if grant.system:
            return "System", SYSTEM_ALL
        raise BadRequest("Specify a project, domain or system.")

    def _grant_actor(self, s: Session, grant: Grant) -> tuple[str, str]:
        if grant.user_id:
            self.get_user(grant.user_id, s)
            return "User", grant.user_id
        if grant.group_id:
            self.get_group(grant.group_id, s)
            return "Group", grant.group_id
        raise BadRequest("Specify a user or group.")

    def _grant_key(self, s: Session, role_id: str, grant: Grant) -> tuple[Role, str, GrantKey]:
        """A grant's role, actor kind (``User``/``Group``) and assignment key (type, actor,
        target, role, inherited), the role, actor and target each checked to exist."""
        role = self.get_role(role_id, s)
        actor_kind, actor = self._grant_actor(s, grant)
        target_kind, target = self._grant_target(s, grant)
        return role, actor_kind, (actor_kind + target_kind, actor, target, role_id,
                                  grant.inherited)

    @staticmethod
    def _assignment(s: Session, actor_kind: str, key: GrantKey) -> Assignment:
        """The assignment row of ``key``, or Keystone's 404 naming the role, actor and
        target."""
        row = s.get(Assignment, key)
        if row is None:
            _, actor, target, role_id, _ = key
            raise NotFound(f"Could not find role assignment with role: {role_id}, "
                           f"{actor_kind.lower()}: {actor}, target: {target}.")
        return row

    def create_grant(self, role_id: str, grant: Grant) -> None:
        """Grant the role (idempotent). A domain-specific role only on its own domain or that
        domain's projects (403)."""
        with self.write() as s:
            role, _, key = self._grant_key(s, role_id, grant)
            if role.domain_id != NULL_DOMAIN:
                target_domain = grant.domain_id or (
                    self.get_project(grant.project_id, s).domain_id if grant.project_id
                    else None)
                if target_domain != role.domain_id:
                    raise Forbidden(
                        "Domain-specific roles can only be granted on their own domain.")
            if s.get(Assignment, key) is None:
                s.add(Assignment(type=key[0], actor_id=key[1], target_id=key[2],
                                 role_id=role_id, inherited=grant.inherited))

    def check_grant(self, role_id: str, grant: Grant) -> None:
        """Nothing if the role is granted so, else 404."""
        with self.db.reader() as s:
            _, actor_kind, key = self._grant_key(s, role_id, grant)
            self._assignment(s, actor_kind, key)

    def delete_grant(self, role_id: str, grant: Grant) -> None:
        """Revoke the role (404 if not granted) and the tokens it scoped."""
        with self.write() as s:
            _, actor_kind, key = self._grant_key(s, role_id, grant)
            s.delete(self._assignment(s, actor_kind, key))
            actor = key[1]
            members = [actor] if actor_kind == "User" else list(s.scalars(
                select(GroupMembership.user_id).where(GroupMembership.group_id == actor)))
        for uid in members:
            if grant.project_id:
                self.revoke(user_id=uid, project_id=grant.project_id)
            else:
                self.revoke(user_id=uid)

    def list_grants(self, grant: Grant) -> list[Role]:
        """The roles granted to ``grant``'s actor on its target, by name."""
        with self.db.reader() as s:
            actor_kind, actor = self._grant_actor(s, grant)
            target_kind, target = self._grant_target(s, grant)
            q = (select(Role).join(Assignment, Assignment.role_id == Role.id)
                 .where(Assignment.type == actor_kind + target_kind,
                        Assignment.actor_id == actor, Assignment.target_id == target,
                        Assignment.inherited == grant.inherited).order_by(Role.name))
            return list(s.scalars(q))

    # ------------------------------------------------------------------ effective roles
    def _user_group_ids(self, s: Session, user_id: str) -> list[str]:
        return list(s.scalars(select(GroupMembership.group_id)
                              .where(GroupMembership.user_id == user_id)))

    def _project_chain(self, s: Session, project_id: str) -> list[Project]:
        """The project and its ancestors, nearest first."""
        chain: list[Project] = []
        p = s.get(Project, project_id)
        seen: set[str] = set()
        while p is not None and p.id not in seen:
            chain.append(p)
            seen.add(p.id)
            p = s.get(Project, p.parent_id) if p.parent_id else None
        return chain

    def _direct_role_ids(self, s: Session, user_id: str, project_id: str | None,
                         domain_id: str | None, system: bool) -> set[str]:
        actors = [user_id, *self._user_group_ids(s, user_id)]
        conds = []
        if project_id:
            chain = self._project_chain(s, project_id)
            if not chain:
                return set()
            conds.append((Assignment.target_id == project_id) & (Assignment.inherited.is_(False))
                         & Assignment.type.in_((USER_PROJECT, GROUP_PROJECT)))
            parents = [p.id for p in chain[1:]]
            if parents:
                conds.append(Assignment.target_id.in_(parents) & Assignment.inherited.is_(True)
                             & Assignment.type.in_((USER_PROJECT, GROUP_PROJECT)))
            conds.append((Assignment.target_id == chain[0].domain_id)
                         & Assignment.inherited.is_(True)
                         & Assignment.type.in_((USER_DOMAIN, GROUP_DOMAIN)))
        elif domain_id:
            conds.append((Assignment.target_id == domain_id) & Assignment.inherited.is_(False)
                         & Assignment.type.in_((USER_DOMAIN, GROUP_DOMAIN)))
        elif system:
            conds.append((Assignment.target_id == SYSTEM_ALL)
                         & Assignment.type.in_((USER_SYSTEM, GROUP_SYSTEM)))
        else:
            return set()
        q = select(Assignment.role_id).where(Assignment.actor_id.in_(actors), or_(*conds))
        return set(s.scalars(q))

    def effective_roles(self, user_id: str, project_id: str | None = None,
                        domain_id: str | None = None, system: bool = False,
                        restrict_to: Iterable[str] | None = None) -> list[RoleRef]:
        """Roles the user holds on the scope, implied roles expanded (cached)."""
        key = ("roles", user_id, project_id, domain_id, system)

        def load() -> list[RoleRef]:
            with self.db.reader() as s:
                direct = self._direct_role_ids(s, user_id, project_id, domain_id, system)
                ids = self.implied_closure(s, direct)
                rows = s.scalars(select(Role).where(Role.id.in_(ids))).all() if ids else []
                # Domain-specific roles only carry the global roles they imply.
                return sorted((RoleRef(r.id, r.name) for r in rows
                               if r.domain_id == NULL_DOMAIN), key=lambda r: r.name)

        roles = self.cache.get(key, load)
        if restrict_to is not None:
            allowed = set(restrict_to)
            roles = [r for r in roles if r.id in allowed]
        return roles

    def user_projects(self, user_id: str) -> list[Project]:
        """Projects on which the user has any effective role."""
        with self.db.reader() as s:
            actors = [user_id, *self._user_group_ids(s, user_id)]
            rows = s.execute(select(Assignment.type, Assignment.target_id, Assignment.inherited)
                             .where(Assignment.actor_id.in_(actors))).all()
            direct = {t for k, t, inh in rows if k.endswith("Project") and not inh}
            inherited_projects = {t for k, t, inh in rows if k.endswith("Project") and inh}
            inherited_domains = {t for k, t, inh in rows if k.endswith("Domain") and inh}
            ids = set(direct)
            if inherited_domains:
                ids |= set(s.scalars(select(Project.id)
                                     .where(Project.domain_id.in_(inherited_domains))))
            frontier = list(inherited_projects)
            while frontier:
                kids = [c.id for c in self._children(s, frontier)]
                ids |= set(kids)
                frontier = kids
            if not ids:
                return []
            return list(s.scalars(select(Project).where(Project.id.in_(ids))
                                  .order_by(Project.name)))

    def user_domains(self, user_id: str) -> list[Domain]:
        with self.db.reader() as s:
            actors = [user_id, *self._user_group_ids(s, user_id)]
            ids = set(s.scalars(select(Assignment.target_id).where(
                Assignment.actor_id.in_(actors),
                Assignment.type.in_((USER_DOMAIN, GROUP_DOMAIN)),
                Assignment.inherited.is_(False))))
            if not ids:
                return []
            return list(s.scalars(select(Domain).where(Domain.id.in_(ids))
                                  .order_by(Domain.name)))
    # ------------------------------------------------------------------ cached token data
    def user_info(self, user_id: str) -> UserInfo | None:
        def load() -> UserInfo | None:
            with self.db.reader() as s:
                u = s.get(User, user_id)
                if u is None:
                    return None
                d = s.get(Domain, u.domain_id)
                return UserInfo(u.id, u.name, u.domain_id, d.name if d else u.domain_id,
                                u.enabled, bool(d and d.enabled), u.password_expires_at,
                                u.default_project_id)

        return self.cache.get(("user", user_id), load)

    def project_info(self, project_id: str) -> ScopeInfo | None:
        def load() -> ScopeInfo | None:
            with self.db.reader() as s:
                p = s.get(Project, project_id)
                if p is None:
                    return None
                d = s.get(Domain, p.domain_id)
                enabled = p.enabled and bool(d and d.enabled)
                # A disabled ancestor disables the subtree.
                for anc in self._project_chain(s, p.id)[1:]:
                    enabled = enabled and anc.enabled
                return ScopeInfo(p.id, p.name, p.domain_id, d.name if d else None, enabled)

        return self.cache.get(("project", project_id), load)

    def project_info_by_name(self, name: str, domain_id: str) -> ScopeInfo | None:
        def load() -> str | None:
            with self.db.reader() as s:
                return s.scalar(select(Project.id).where(Project.name == name,
                                                         Project.domain_id == domain_id))

        pid = self.cache.get(("project-name", name, domain_id), load)
        return self.project_info(pid) if pid else None

    def domain_info(self, domain_id: str) -> ScopeInfo | None:
        def load() -> ScopeInfo | None:
            with self.db.reader() as s:
                d = s.get(Domain, domain_id)
                if d is None:
                    return None
                return ScopeInfo(d.id, d.name, None, None, d.enabled, True)

        return self.cache.get(("domain", domain_id), load)

    def domain_id_by_name(self, name: str) -> str | None:
        def load() -> str | None:
            with self.db.reader() as s:
                return s.scalar(select(Domain.id).where(Domain.name == name))

        return self.cache.get(("domain-name", name), load)
