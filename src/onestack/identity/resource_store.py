"""The resource backend: domains and projects (with tags and the project hierarchy). Part of
``IdentityManager`` (``ResourceStore``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from onestack.common.errors import BadRequest, Forbidden, NotFound
from onestack.common.ids import new_id
from onestack.common.timeutils import utcnow
from onestack.db.identity import (
    AccessRule,
    ApplicationCredential,
    Assignment,
    Credential,
    Domain,
    Group,
    GroupMembership,
    Project,
    ProjectTag,
    Role,
    User,
)
from onestack.identity.store import (
    IdentityState,
    _apply,
    _name_free,
    _rename_free,
    _unique,
    _where_given,
)


class ResourceStore(IdentityState):
    """The resource backend: domains and projects (with tags and the project hierarchy)."""

    # ------------------------------------------------------------------ domains
    def get_domain(self, domain_id: str, s: Session | None = None) -> Domain:
        return self._fetch(Domain, domain_id, "domain", s)

    def list_domains(self, name: str | None = None, enabled: bool | None = None,
                     ids: Iterable[str] | None = None) -> list[Domain]:
        with self.db.reader() as s:
            q = _where_given(select(Domain).order_by(Domain.name), Domain, name=name,
                             enabled=enabled)
            if ids is not None:
                q = q.where(Domain.id.in_(list(ids)))
            return list(s.scalars(q))

    def create_domain(self, name: str, description: str | None = None, enabled: bool = True,
                      domain_id: str | None = None, extra: dict[str, Any] | None = None,
                      ) -> Domain:
        with self.write() as s:
            _name_free(s, Domain, "domain", name)
            d = Domain(id=domain_id or new_id(), name=name, description=description,
                       enabled=enabled, extra=extra or {}, created_at=utcnow())
            s.add(d)
        return d

    def update_domain(self, domain_id: str, changes: dict[str, Any]) -> Domain:
        with self.write() as s:
            d = self.get_domain(domain_id, s)
            if "name" in changes and changes["name"] != d.name:
                _name_free(s, Domain, "domain", changes["name"])
            _apply(d, changes, ("name", "description", "enabled"))
            disabling = changes.get("enabled") is False
        if disabling:
            self.revoke(domain_id=domain_id)
        return d

    def delete_domain(self, domain_id: str) -> None:
        with self.write() as s:
            d = self.get_domain(domain_id, s)
            if d.enabled:
                raise Forbidden(
                    "Cannot delete a domain that is enabled, please disable it first."
                )
            project_ids = list(s.scalars(select(Project.id).where(Project.domain_id == d.id)))
            user_ids = list(s.scalars(select(User.id).where(User.domain_id == d.id)))
            group_ids = list(s.scalars(select(Group.id).where(Group.domain_id == d.id)))
            targets = [d.id, *project_ids]
            actors = [*user_ids, *group_ids]
            s.execute(delete(Assignment).where(
                or_(Assignment.target_id.in_(targets), Assignment.actor_id.in_(actors))))
            role_ids = list(s.scalars(select(Role.id).where(Role.domain_id == d.id)))
            if role_ids:
                s.execute(delete(Assignment).where(Assignment.role_id.in_(role_ids)))
                s.execute(delete(Role).where(Role.id.in_(role_ids)))
            s.execute(delete(ProjectTag).where(ProjectTag.project_id.in_(project_ids)))
            s.execute(delete(GroupMembership).where(or_(
                GroupMembership.user_id.in_(user_ids), GroupMembership.group_id.in_(group_ids))))
            s.execute(delete(ApplicationCredential).where(
                ApplicationCredential.user_id.in_(user_ids)))
            s.execute(delete(AccessRule).where(AccessRule.user_id.in_(user_ids)))
            s.execute(delete(Credential).where(Credential.user_id.in_(user_ids)))
            s.execute(delete(Project).where(Project.domain_id == d.id))
            s.execute(delete(User).where(User.domain_id == d.id))
            s.execute(delete(Group).where(Group.domain_id == d.id))
            s.delete(d)
        self.revoke(domain_id=domain_id)
    # ------------------------------------------------------------------ projects
    def get_project(self, project_id: str, s: Session | None = None) -> Project:
        return self._fetch(Project, project_id, "project", s)

    def project_tags(self, project_ids: list[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {pid: [] for pid in project_ids}
        if not project_ids:
            return out
        with self.db.reader() as s:
            for i in range(0, len(project_ids), 500):
                chunk = project_ids[i:i + 500]
                rows = s.execute(
                    select(ProjectTag.project_id, ProjectTag.name)
                    .where(ProjectTag.project_id.in_(chunk))
                    .order_by(ProjectTag.name)
                )
                for pid, tag in rows:
                    out[pid].append(tag)
        return out

    def domain_project_ids(self, domain_id: str) -> set[str]:
        """The ids of every project in ``domain_id``."""
        with self.db.reader() as s:
            return set(s.scalars(select(Project.id).where(Project.domain_id == domain_id)))

    def domain_of_project(self, project_id: str) -> str | None:
        """The domain of ``project_id`` (None: no such project)."""
        with self.db.reader() as s:
            p = s.get(Project, project_id)
            return p.domain_id if p is not None else None

    def find_project(self, name: str, domain_id: str) -> Project:
        with self.db.reader() as s:
            p = s.scalar(select(Project).where(Project.name == name,
                                               Project.domain_id == domain_id))
        if p is None:
            raise NotFound(f"Could not find project: {name}.")
        return p

    def list_projects(self, filters: dict[str, Any] | None = None,
                      ids: Iterable[str] | None = None) -> list[Project]:
        filters = filters or {}
        with self.db.reader() as s:
            q = select(Project).order_by(Project.name)
            for key in ("name", "domain_id", "enabled", "parent_id"):
                if key in filters:
                    q = q.where(getattr(Project, key) == filters[key])
            if ids is not None:
                q = q.where(Project.id.in_(list(ids)))
            projects = list(s.scalars(q))
            if any(k in filters for k in ("tags", "tags-any", "not-tags", "not-tags-any")):
                tags = self.project_tags([p.id for p in projects])

                def ok(pid: str) -> bool:
                    have = set(tags[pid])
                    if "tags" in filters and not set(filters["tags"]) <= have:
                        return False
                    if "tags-any" in filters and not set(filters["tags-any"]) & have:
                        return False
                    if "not-tags" in filters and set(filters["not-tags"]) <= have:
                        return False
                    return not ("not-tags-any" in filters and set(filters["not-tags-any"]) & have)

                projects = [p for p in projects if ok(p.id)]
            return projects

    def create_project(self, name: str, domain_id: str, description: str | None = None,
                       enabled: bool = True, parent_id: str | None = None,
                       tags: list[str] | None = None, is_domain: bool = False,
                       extra: dict[str, Any] | None = None,
                       options: dict[str, Any] | None = None) -> Project:
        if is_domain:
            d = self.create_domain(name, description, enabled, extra=extra)
            return Project(id=d.id, name=d.name, domain_id=None, description=d.description,
                           enabled=d.enabled, parent_id=None, extra={}, options={})
        with self.write() as s:
            if parent_id:
                parent = s.get(Project, parent_id)
                if parent is None:
                    raise NotFound(f"Could not find project: {parent_id}.")
                if parent.domain_id != domain_id:
                    raise BadRequest(
                        "Cannot create project, the parent and the project must be in the "
                        "same domain."
                    )
            else:
                self.get_domain(domain_id, s)
            _name_free(s, Project, "project", name, domain_id)
            p = Project(id=new_id(), name=name, domain_id=domain_id, parent_id=parent_id,
                        description=description, enabled=enabled, extra=extra or {},
                        options=options or {}, created_at=utcnow())
            s.add(p)
            s.flush()
            for tag in _unique(tags or []):
                s.add(ProjectTag(project_id=p.id, name=tag))
        return p

    def update_project(self, project_id: str, changes: dict[str, Any]) -> Project:
        with self.write() as s:
            p = s.get(Project, project_id)
            if p is None:
                d = s.get(Domain, project_id)
                if d is None:
                    raise NotFound(f"Could not find project: {project_id}.")
            else:
                if "domain_id" in changes and changes["domain_id"] != p.domain_id:
                    raise BadRequest("Update of `domain_id` is not allowed.")
                if "parent_id" in changes and changes["parent_id"] != p.parent_id:
                    raise Forbidden("Update of `parent_id` is not allowed.")
                if "is_domain" in changes and changes["is_domain"]:
                    raise BadRequest("Update of `is_domain` is not allowed.")
                _rename_free(s, p, "project", changes)
                _apply(p, changes, ("name", "description", "enabled"),
                       merge=("extra", "options"))
                if "tags" in changes:
                    s.execute(delete(ProjectTag).where(ProjectTag.project_id == p.id))
                    for tag in _unique(changes["tags"]):
                        s.add(ProjectTag(project_id=p.id, name=tag))
        if p is None:
            self.update_domain(project_id, {k: v for k, v in changes.items()
                                            if k in ("name", "description", "enabled")})
            return self.get_project_or_domain(project_id)
        if changes.get("enabled") is False:
            self.revoke(project_id=project_id)
        return p

    def get_project_or_domain(self, project_id: str) -> Project:
        with self.db.reader() as s:
            p = s.get(Project, project_id)
            if p is not None:
                return p
            d = s.get(Domain, project_id)
        if d is None:
            raise NotFound(f"Could not find project: {project_id}.")
        return Project(id=d.id, name=d.name, domain_id=None, description=d.description,
                       enabled=d.enabled, parent_id=None, extra={}, options={})

    def delete_project(self, project_id: str, cascade: bool = False) -> None:
        with self.write() as s:
            p = self.get_project(project_id, s)
            subtree = self._subtree_ids(s, p.id)
            if subtree and not cascade:
                raise Forbidden(
                    f"Cannot delete the project {p.id} since it is not a leaf in the hierarchy. "
                    "Use the cascade option if you want to delete a whole subtree."
                )
            ids = [p.id, *subtree]
            s.execute(delete(Assignment).where(Assignment.target_id.in_(ids)))
            s.execute(delete(ProjectTag).where(ProjectTag.project_id.in_(ids)))
            s.execute(update(User).where(User.default_project_id.in_(ids))
                      .values(default_project_id=None))
            s.execute(delete(ApplicationCredential).where(
                ApplicationCredential.project_id.in_(ids)))
            for pid in reversed(ids):
                s.execute(delete(Project).where(Project.id == pid))
        for pid in ids:
            self.revoke(project_id=pid)

    def _children(self, s: Session, parent_ids: list[str]) -> list[Project]:
        if not parent_ids:
            return []
        return list(s.scalars(select(Project).where(Project.parent_id.in_(parent_ids))))

    def _subtree_ids(self, s: Session, project_id: str) -> list[str]:
        out: list[str] = []
        frontier = [project_id]
        while frontier:
            kids = [c.id for c in self._children(s, frontier)]
            out.extend(kids)
            frontier = kids
        return out

    def project_subtree(self, project_id: str) -> list[Project]:
        with self.db.reader() as s:
            out: list[Project] = []
            frontier = [project_id]
            while frontier:
                kids = self._children(s, frontier)
                out.extend(kids)
                frontier = [k.id for k in kids]
            return out

    def project_parents(self, project_id: str) -> list[Project]:
        """Ancestors, nearest first."""
        with self.db.reader() as s:
            out: list[Project] = []
            p = self.get_project(project_id, s)
            seen = {p.id}
            while p.parent_id and p.parent_id not in seen:
                parent = s.get(Project, p.parent_id)
                if parent is None:
                    break
                out.append(parent)
                seen.add(parent.id)
                p = parent
            return out

    def set_project_tags(self, project_id: str, tags: list[str]) -> list[str]:
        self.update_project(project_id, {"tags": tags})
        return self.project_tags([project_id])[project_id]

    def add_project_tag(self, project_id: str, tag: str) -> None:
        tags = self.project_tags([project_id])[project_id]
        self.get_project(project_id)
        if tag not in tags:
            if len(tags) >= 80:
                raise BadRequest("A project may have at most 80 tags.")
            with self.write() as s:
                s.add(ProjectTag(project_id=project_id, name=tag))

    def delete_project_tag(self, project_id: str, tag: str) -> None:
        self.get_project(project_id)
        with self.write() as s:
            res = s.execute(delete(ProjectTag).where(ProjectTag.project_id == project_id,
                                                     ProjectTag.name == tag))
            if not res.rowcount:
                raise NotFound(f"Could not find project tag: {tag}.")
