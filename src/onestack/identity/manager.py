"""Identity business logic: the only code that changes identity tables.

Covers the resource backend (domains, projects, tags), identity backend (users, groups,
passwords), assignments (roles, implied roles, grants, effective roles), catalog (regions,
services, endpoints), application credentials, credentials and revocation events. Token
issuance and validation live in ``identity.auth`` and read through the cache kept here.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from onestack.common.errors import BadRequest, Conflict, Forbidden, NotFound, Unauthorized
from onestack.common.ids import new_id
from onestack.common.timeutils import utcnow
from onestack.config import Settings
from onestack.db.engine import Database
from onestack.db.identity import (
    NULL_DOMAIN,
    AccessRule,
    ApplicationCredential,
    Assignment,
    CacheGeneration,
    Credential,
    Domain,
    Endpoint,
    Group,
    GroupMembership,
    ImpliedRole,
    Project,
    ProjectTag,
    Region,
    Role,
    Service,
    User,
)
from onestack.db.identity import RevocationEvent as RevocationRow
from onestack.identity import passwords
from onestack.identity.cache import IdentityCache, RevocationEvent, RevocationList
from onestack.identity.coherence import ChangeHint
from onestack.identity.tokens import FernetCodec

USER_PROJECT, GROUP_PROJECT = "UserProject", "GroupProject"
USER_DOMAIN, GROUP_DOMAIN = "UserDomain", "GroupDomain"
USER_SYSTEM, GROUP_SYSTEM = "UserSystem", "GroupSystem"
SYSTEM_ALL = "system"

INTERFACES = ("public", "internal", "admin")
#: Roles no other role may imply (Keystone's ``prohibited_implied_role`` default).
PROHIBITED_IMPLIED = frozenset({"admin"})


@dataclass(frozen=True)
class UserInfo:
    """What tokens need to know about a user."""

    id: str
    name: str
    domain_id: str
    domain_name: str
    enabled: bool
    domain_enabled: bool
    password_expires_at: dt.datetime | None
    default_project_id: str | None


@dataclass(frozen=True)
class ScopeInfo:
    """A project or domain a token may be scoped to."""

    id: str
    name: str
    domain_id: str | None
    domain_name: str | None
    enabled: bool
    is_domain: bool = False


@dataclass(frozen=True)
class RoleRef:
    id: str
    name: str
    domain_id: str | None = None


class IdentityManager:
    """Identity state and its rules. Methods are synchronous (run them in a thread)."""

    def __init__(self, db: Database, settings: Settings, credential_codec: FernetCodec) -> None:
        self.db = db
        self.settings = settings
        self.cache = IdentityCache()
        self.revocations = RevocationList()
        self.credential_codec = credential_codec
        self.db_generation = -1
        self._refresh_lock = threading.Lock()
        #: Shared change marker of the processes serving identity on this host (optional).
        self.hint: ChangeHint | None = None

    def announce(self) -> None:
        """Tell this host's other identity processes that identity data changed."""
        if self.hint is not None:
            self.hint.bump()

    def poll(self) -> None:
        """Refresh from the database now if another process on this host changed something.

        A cheap check (a read of shared memory) made before answering from the caches.
        """
        if self.hint is not None and self.hint.changed():
            self.refresh()

    # ------------------------------------------------------------------ transactions
    @contextlib.contextmanager
    def write(self) -> Iterator[Session]:
        """A write transaction that bumps the cache generation and drops local caches."""
        try:
            with self.db.transaction() as s:
                yield s
                s.execute(
                    update(CacheGeneration)
                    .where(CacheGeneration.id == 1)
                    .values(generation=CacheGeneration.generation + 1)
                )
        except IntegrityError as exc:
            self.cache.invalidate()
            raise Conflict(f"Conflict occurred attempting to store data - {_short(exc)}") from exc
        self.cache.invalidate()
        self.announce()

    def refresh(self) -> bool:
        """Pick up changes made by other processes: generation and new revocation events.

        Returns True when caches were dropped. Called periodically, off the hot path.
        """
        with self._refresh_lock, self.db.reader() as s:
            gen = s.scalar(select(CacheGeneration.generation).where(CacheGeneration.id == 1))
            rows = s.scalars(
                select(RevocationRow)
                .where(RevocationRow.id > self.revocations.last_seen_id)
                .order_by(RevocationRow.id)
            ).all()
        for row in rows:
            self.revocations.add(_event(row))
            self.revocations.last_seen_id = max(self.revocations.last_seen_id, row.id)
        if gen is not None and gen != self.db_generation:
            self.db_generation = gen
            self.cache.invalidate()
            return True
        return False

    def ensure_generation_row(self) -> None:
        with self.db.transaction() as s:
            if s.get(CacheGeneration, 1) is None:
                s.add(CacheGeneration(id=1, generation=0))

    # ------------------------------------------------------------------ revocation
    def revoke(self, **fields: Any) -> None:
        """Record a revocation event (tokens issued up to now that match ``fields``)."""
        now = time.time()
        row = RevocationRow(issued_before=now, revoked_at=now, **fields)
        with self.db.transaction() as s:
            s.add(row)
        self.revocations.add(_event(row))
        self.announce()

    def prune_revocations(self, older_than: float) -> int:
        with self.db.transaction() as s:
            res = s.execute(delete(RevocationRow).where(RevocationRow.revoked_at < older_than))
            return int(res.rowcount or 0)

    def list_revocations(self, since: float | None = None) -> list[RevocationRow]:
        with self.db.reader() as s:
            q = select(RevocationRow).order_by(RevocationRow.id)
            if since is not None:
                q = q.where(RevocationRow.revoked_at >= since)
            return list(s.scalars(q))

    # ------------------------------------------------------------------ domains
    def get_domain(self, domain_id: str, s: Session | None = None) -> Domain:
        if s is None:
            with self.db.reader() as s2:
                return self.get_domain(domain_id, s2)
        d = s.get(Domain, domain_id)
        if d is None:
            raise NotFound(f"Could not find domain: {domain_id}.")
        return d

    def list_domains(self, name: str | None = None, enabled: bool | None = None,
                     ids: Iterable[str] | None = None) -> list[Domain]:
        with self.db.reader() as s:
            q = select(Domain).order_by(Domain.name)
            if name is not None:
                q = q.where(Domain.name == name)
            if enabled is not None:
                q = q.where(Domain.enabled == enabled)
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
        if s is None:
            with self.db.reader() as s2:
                return self.get_project(project_id, s2)
        p = s.get(Project, project_id)
        if p is None:
            raise NotFound(f"Could not find project: {project_id}.")
        return p

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
                if "name" in changes and changes["name"].lower() != p.name.lower():
                    _name_free(s, Project, "project", changes["name"], p.domain_id)
                _apply(p, changes, ("name", "description", "enabled"))
                if "extra" in changes:
                    p.extra = {**(p.extra or {}), **changes["extra"]}
                if "options" in changes:
                    p.options = {**(p.options or {}), **changes["options"]}
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

    # ------------------------------------------------------------------ users
    def get_user(self, user_id: str, s: Session | None = None) -> User:
        if s is None:
            with self.db.reader() as s2:
                return self.get_user(user_id, s2)
        u = s.get(User, user_id)
        if u is None:
            raise NotFound(f"Could not find user: {user_id}.")
        return u

    def find_user(self, name: str, domain_id: str) -> User | None:
        with self.db.reader() as s:
            return s.scalar(select(User).where(User.name == name, User.domain_id == domain_id))

    def list_users(self, filters: dict[str, Any] | None = None) -> list[User]:
        filters = filters or {}
        with self.db.reader() as s:
            q = select(User).order_by(User.name)
            for key in ("name", "domain_id", "enabled", "default_project_id"):
                if key in filters:
                    q = q.where(getattr(User, key) == filters[key])
            if "ids" in filters:
                q = q.where(User.id.in_(filters["ids"]))
            return list(s.scalars(q))

    def _password_expiry(self, user: User, now: dt.datetime) -> dt.datetime | None:
        days = self.settings.password_expires_days
        ignore = (user.options or {}).get("ignore_password_expiry")
        if days and not ignore:
            return now + dt.timedelta(days=days)
        return None

    def _set_password(self, user: User, password: str | None) -> None:
        if password is None:
            user.password_hash = None
            user.password_created_at = None
            user.password_expires_at = None
            return
        now = utcnow()
        keep = self.settings.unique_last_password_count
        history = list(user.password_history or [])
        if keep > 1 and any(passwords.check_password(password, h) for h in history[-(keep - 1):]):
            raise BadRequest(
                "The new password cannot be identical to a previous password. The total number "
                f"which includes the new password must be unique is {keep}."
            )
        user.password_hash = passwords.hash_password(password, self.settings.bcrypt_rounds)
        if keep > 1:
            user.password_history = [*history, user.password_hash][-keep:]
        user.password_created_at = now
        user.password_expires_at = self._password_expiry(user, now)
        user.failed_auth_count = 0

    def create_user(self, name: str, domain_id: str, password: str | None = None,
                    enabled: bool = True, default_project_id: str | None = None,
                    extra: dict[str, Any] | None = None,
                    options: dict[str, Any] | None = None) -> User:
        # Hash outside the transaction: bcrypt is slow and must not hold a DB lock.
        u = User(id=new_id(), name=name, domain_id=domain_id, enabled=enabled,
                 default_project_id=default_project_id, extra=extra or {},
                 options=options or {}, created_at=utcnow(), failed_auth_count=0,
                 password_history=[])
        self._set_password(u, password)
        with self.write() as s:
            self.get_domain(domain_id, s)
            _name_free(s, User, "user", name, domain_id)
            s.add(u)
        return u

    def update_user(self, user_id: str, changes: dict[str, Any]) -> User:
        prepared: User | None = None
        if "password" in changes:
            prepared = self.get_user(user_id)
            self._set_password(prepared, changes["password"])
        with self.write() as s:
            u = self.get_user(user_id, s)
            if "domain_id" in changes and changes["domain_id"] != u.domain_id:
                raise BadRequest("Update of `domain_id` is not allowed.")
            if "name" in changes and changes["name"].lower() != u.name.lower():
                _name_free(s, User, "user", changes["name"], u.domain_id)
            _apply(u, changes, ("name", "enabled", "default_project_id"))
            if "extra" in changes:
                merged = {**(u.extra or {}), **changes["extra"]}
                u.extra = {k: v for k, v in merged.items() if v is not None or k == "email"}
            if "options" in changes:
                opts = {**(u.options or {}), **changes["options"]}
                u.options = {k: v for k, v in opts.items() if v is not None}
            if prepared is not None:
                u.password_hash = prepared.password_hash
                u.password_created_at = prepared.password_created_at
                u.password_expires_at = prepared.password_expires_at
                u.password_history = prepared.password_history
                u.failed_auth_count = 0
            if changes.get("enabled") is True:
                u.failed_auth_count = 0
        if changes.get("enabled") is False or "password" in changes:
            self.revoke(user_id=user_id)
        return u

    def change_password(self, user_id: str, original: str, new: str) -> None:
        try:
            u = self.get_user(user_id)
        except NotFound:
            passwords.check_password(original, None)
            raise Unauthorized("The request you have made requires authentication.") from None
        if not u.enabled or not passwords.check_password(original, u.password_hash):
            raise Unauthorized("The request you have made requires authentication.")
        self.update_user(user_id, {"password": new})

    def delete_user(self, user_id: str) -> None:
        with self.write() as s:
            u = self.get_user(user_id, s)
            s.execute(delete(Assignment).where(Assignment.actor_id == u.id))
            s.execute(delete(GroupMembership).where(GroupMembership.user_id == u.id))
            s.execute(delete(ApplicationCredential).where(
                ApplicationCredential.user_id == u.id))
            s.execute(delete(AccessRule).where(AccessRule.user_id == u.id))
            s.execute(delete(Credential).where(Credential.user_id == u.id))
            s.delete(u)
        self.revoke(user_id=user_id)

    def record_auth_failure(self, user_id: str) -> None:
        with self.db.transaction() as s:
            s.execute(update(User).where(User.id == user_id).values(
                failed_auth_count=User.failed_auth_count + 1, last_failed_auth_at=utcnow()))

    def record_auth_success(self, user: User) -> None:
        if user.failed_auth_count or self.settings.lockout_failure_attempts:
            with self.db.transaction() as s:
                s.execute(update(User).where(User.id == user.id).values(
                    failed_auth_count=0, last_active_at=utcnow()))

    # ------------------------------------------------------------------ groups
    def get_group(self, group_id: str, s: Session | None = None) -> Group:
        if s is None:
            with self.db.reader() as s2:
                return self.get_group(group_id, s2)
        g = s.get(Group, group_id)
        if g is None:
            raise NotFound(f"Could not find group: {group_id}.")
        return g

    def list_groups(self, filters: dict[str, Any] | None = None) -> list[Group]:
        filters = filters or {}
        with self.db.reader() as s:
            q = select(Group).order_by(Group.name)
            for key in ("name", "domain_id"):
                if key in filters:
                    q = q.where(getattr(Group, key) == filters[key])
            if "user_id" in filters:
                q = q.join(GroupMembership, GroupMembership.group_id == Group.id).where(
                    GroupMembership.user_id == filters["user_id"])
            return list(s.scalars(q))

    def create_group(self, name: str, domain_id: str, description: str | None = None,
                     extra: dict[str, Any] | None = None) -> Group:
        with self.write() as s:
            self.get_domain(domain_id, s)
            _name_free(s, Group, "group", name, domain_id)
            g = Group(id=new_id(), name=name, domain_id=domain_id, description=description,
                      extra=extra or {})
            s.add(g)
        return g

    def update_group(self, group_id: str, changes: dict[str, Any]) -> Group:
        with self.write() as s:
            g = self.get_group(group_id, s)
            if "domain_id" in changes and changes["domain_id"] != g.domain_id:
                raise BadRequest("Update of `domain_id` is not allowed.")
            if "name" in changes and changes["name"].lower() != g.name.lower():
                _name_free(s, Group, "group", changes["name"], g.domain_id)
            _apply(g, changes, ("name", "description"))
            if "extra" in changes:
                g.extra = {**(g.extra or {}), **changes["extra"]}
        return g

    def delete_group(self, group_id: str) -> None:
        with self.write() as s:
            g = self.get_group(group_id, s)
            members = list(s.scalars(select(GroupMembership.user_id)
                                     .where(GroupMembership.group_id == g.id)))
            s.execute(delete(Assignment).where(Assignment.actor_id == g.id))
            s.execute(delete(GroupMembership).where(GroupMembership.group_id == g.id))
            s.delete(g)
        for uid in members:
            self.revoke(user_id=uid)

    def group_members(self, group_id: str) -> list[User]:
        self.get_group(group_id)
        with self.db.reader() as s:
            return list(s.scalars(
                select(User).join(GroupMembership, GroupMembership.user_id == User.id)
                .where(GroupMembership.group_id == group_id).order_by(User.name)))

    def is_member(self, group_id: str, user_id: str) -> bool:
        with self.db.reader() as s:
            self.get_group(group_id, s)
            self.get_user(user_id, s)
            return s.get(GroupMembership, (user_id, group_id)) is not None

    def add_member(self, group_id: str, user_id: str) -> None:
        with self.write() as s:
            self.get_group(group_id, s)
            self.get_user(user_id, s)
            if s.get(GroupMembership, (user_id, group_id)) is None:
                s.add(GroupMembership(user_id=user_id, group_id=group_id))

    def remove_member(self, group_id: str, user_id: str) -> None:
        with self.write() as s:
            self.get_group(group_id, s)
            self.get_user(user_id, s)
            m = s.get(GroupMembership, (user_id, group_id))
            if m is None:
                raise NotFound(f"Could not find user: {user_id} in group {group_id}.")
            s.delete(m)
        self.revoke(user_id=user_id)

    # ------------------------------------------------------------------ roles
    def get_role(self, role_id: str, s: Session | None = None) -> Role:
        if s is None:
            with self.db.reader() as s2:
                return self.get_role(role_id, s2)
        r = s.get(Role, role_id)
        if r is None:
            raise NotFound(f"Could not find role: {role_id}.")
        return r

    def find_role(self, name: str, domain_id: str | None = None) -> Role | None:
        with self.db.reader() as s:
            return s.scalar(select(Role).where(Role.name == name,
                                               Role.domain_id == (domain_id or NULL_DOMAIN)))

    def list_roles(self, name: str | None = None, domain_id: str | None = None) -> list[Role]:
        with self.db.reader() as s:
            q = select(Role).order_by(Role.name).where(
                Role.domain_id == (domain_id or NULL_DOMAIN))
            if name is not None:
                q = q.where(Role.name == name)
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
            if "name" in changes and changes["name"].lower() != r.name.lower():
                _name_free(s, Role, "role", changes["name"], r.domain_id, show_domain=False)
            _apply(r, changes, ("name", "description"))
            if "options" in changes:
                opts = {**(r.options or {}), **changes["options"]}
                r.options = {k: v for k, v in opts.items() if v is not None}
            if "extra" in changes:
                r.extra = {**(r.extra or {}), **changes["extra"]}
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
            if prior_id == implied_id or prior_id in self._implied_closure(s, [implied_id]):
                raise Forbidden(
                    f"Implied role {implied_id} would create a cycle with {prior_id}.")
            if s.get(ImpliedRole, (prior_id, implied_id)) is None:
                s.add(ImpliedRole(prior_role_id=prior_id, implied_role_id=implied_id))
        return prior, implied

    def get_implied_role(self, prior_id: str, implied_id: str) -> tuple[Role, Role]:
        with self.db.reader() as s:
            prior = self.get_role(prior_id, s)
            implied = self.get_role(implied_id, s)
            if s.get(ImpliedRole, (prior_id, implied_id)) is None:
                raise NotFound(f"{prior_id} does not imply {implied_id}.")
            return prior, implied

    def delete_implied_role(self, prior_id: str, implied_id: str) -> None:
        with self.write() as s:
            self.get_role(prior_id, s)
            self.get_role(implied_id, s)
            row = s.get(ImpliedRole, (prior_id, implied_id))
            if row is None:
                raise NotFound(f"{prior_id} does not imply {implied_id}.")
            s.delete(row)

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

    def _implied_closure(self, s: Session, role_ids: Iterable[str]) -> set[str]:
        rules = self.cache.get(("implied-rules",), lambda: self._load_implied(s))
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

    def _load_implied(self, s: Session) -> dict[str, list[str]]:
        rules: dict[str, list[str]] = {}
        for row in s.scalars(select(ImpliedRole)):
            rules.setdefault(row.prior_role_id, []).append(row.implied_role_id)
        return rules

    # ------------------------------------------------------------------ grants
    def _grant_target(self, s: Session, project_id: str | None, domain_id: str | None,
                      system: str | None) -> tuple[str, str]:
        if project_id:
            self.get_project(project_id, s)
            return "Project", project_id
        if domain_id:
            self.get_domain(domain_id, s)
            return "Domain", domain_id
        if system:
            return "System", SYSTEM_ALL
        raise BadRequest("Specify a project, domain or system.")

    def _grant_actor(self, s: Session, user_id: str | None, group_id: str | None
                     ) -> tuple[str, str]:
        if user_id:
            self.get_user(user_id, s)
            return "User", user_id
        if group_id:
            self.get_group(group_id, s)
            return "Group", group_id
        raise BadRequest("Specify a user or group.")

    def create_grant(self, role_id: str, *, user_id: str | None = None,
                     group_id: str | None = None, project_id: str | None = None,
                     domain_id: str | None = None, system: str | None = None,
                     inherited: bool = False) -> None:
        with self.write() as s:
            role = self.get_role(role_id, s)
            actor_kind, actor = self._grant_actor(s, user_id, group_id)
            target_kind, target = self._grant_target(s, project_id, domain_id, system)
            if role.domain_id != NULL_DOMAIN:
                target_domain = domain_id or (
                    self.get_project(project_id, s).domain_id if project_id else None)
                if target_domain != role.domain_id:
                    raise Forbidden(
                        "Domain-specific roles can only be granted on their own domain.")
            key = (actor_kind + target_kind, actor, target, role_id, inherited)
            if s.get(Assignment, key) is None:
                s.add(Assignment(type=key[0], actor_id=actor, target_id=target,
                                 role_id=role_id, inherited=inherited))

    def check_grant(self, role_id: str, *, user_id: str | None = None,
                    group_id: str | None = None, project_id: str | None = None,
                    domain_id: str | None = None, system: str | None = None,
                    inherited: bool = False) -> None:
        with self.db.reader() as s:
            self.get_role(role_id, s)
            actor_kind, actor = self._grant_actor(s, user_id, group_id)
            target_kind, target = self._grant_target(s, project_id, domain_id, system)
            if s.get(Assignment, (actor_kind + target_kind, actor, target, role_id,
                                  inherited)) is None:
                raise NotFound(f"Could not find role assignment with role: {role_id}, "
                               f"{actor_kind.lower()}: {actor}, target: {target}.")

    def delete_grant(self, role_id: str, *, user_id: str | None = None,
                     group_id: str | None = None, project_id: str | None = None,
                     domain_id: str | None = None, system: str | None = None,
                     inherited: bool = False) -> None:
        with self.write() as s:
            self.get_role(role_id, s)
            actor_kind, actor = self._grant_actor(s, user_id, group_id)
            target_kind, target = self._grant_target(s, project_id, domain_id, system)
            row = s.get(Assignment, (actor_kind + target_kind, actor, target, role_id,
                                     inherited))
            if row is None:
                raise NotFound(f"Could not find role assignment with role: {role_id}, "
                               f"{actor_kind.lower()}: {actor}, target: {target}.")
            s.delete(row)
            members = [actor] if actor_kind == "User" else list(s.scalars(
                select(GroupMembership.user_id).where(GroupMembership.group_id == actor)))
        for uid in members:
            if project_id:
                self.revoke(user_id=uid, project_id=project_id)
            else:
                self.revoke(user_id=uid)

    def list_grants(self, *, user_id: str | None = None, group_id: str | None = None,
                    project_id: str | None = None, domain_id: str | None = None,
                    system: str | None = None, inherited: bool = False) -> list[Role]:
        with self.db.reader() as s:
            actor_kind, actor = self._grant_actor(s, user_id, group_id)
            target_kind, target = self._grant_target(s, project_id, domain_id, system)
            q = (select(Role).join(Assignment, Assignment.role_id == Role.id)
                 .where(Assignment.type == actor_kind + target_kind,
                        Assignment.actor_id == actor, Assignment.target_id == target,
                        Assignment.inherited == inherited).order_by(Role.name))
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
                ids = self._implied_closure(s, direct)
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

    # ------------------------------------------------------------------ catalog
    def catalog(self) -> list[dict[str, Any]]:
        """The service catalog as tokens carry it (enabled services and endpoints)."""

        def load() -> list[dict[str, Any]]:
            with self.db.reader() as s:
                # A stable order on every database, so two reads of an unchanged catalog
                # (a token issued, then validated) give the same document.
                services = list(s.scalars(select(Service).where(Service.enabled.is_(True))
                                          .order_by(Service.id)))
                endpoints = list(s.scalars(select(Endpoint).where(Endpoint.enabled.is_(True))
                                           .order_by(Endpoint.id)))
            by_service: dict[str, list[dict[str, Any]]] = {}
            for e in endpoints:
                by_service.setdefault(e.service_id, []).append({
                    "id": e.id, "interface": e.interface, "region_id": e.region_id,
                    "url": e.url, "region": e.region_id,
                })
            out = []
            for svc in services:
                out.append({
                    "endpoints": by_service.get(svc.id, []),
                    "id": svc.id,
                    "type": svc.type,
                    "name": (svc.extra or {}).get("name", ""),
                })
            return out

        return self.cache.get(("catalog",), load)

    def get_region(self, region_id: str, s: Session | None = None) -> Region:
        if s is None:
            with self.db.reader() as s2:
                return self.get_region(region_id, s2)
        r = s.get(Region, region_id)
        if r is None:
            raise NotFound(f"Could not find region: {region_id}.")
        return r

    def list_regions(self, parent_region_id: str | None = None) -> list[Region]:
        with self.db.reader() as s:
            q = select(Region).order_by(Region.id)
            if parent_region_id is not None:
                q = q.where(Region.parent_region_id == parent_region_id)
            return list(s.scalars(q))

    def create_region(self, region_id: str | None, description: str | None = None,
                      parent_region_id: str | None = None,
                      extra: dict[str, Any] | None = None) -> Region:
        with self.write() as s:
            rid = region_id or new_id()
            if s.get(Region, rid) is not None:
                raise Conflict(
                    f"Conflict occurred attempting to store region - Duplicate ID, {rid}.")
            if parent_region_id:
                try:
                    self.get_region(parent_region_id, s)
                except NotFound as exc:
                    raise BadRequest(
                        f"The parent region {parent_region_id} does not exist.") from exc
            r = Region(id=rid, description=description or "",
                       parent_region_id=parent_region_id, extra=extra or {})
            s.add(r)
        return r

    def update_region(self, region_id: str, changes: dict[str, Any]) -> Region:
        with self.write() as s:
            r = self.get_region(region_id, s)
            if changes.get("parent_region_id"):
                parent = changes["parent_region_id"]
                try:
                    self.get_region(parent, s)
                except NotFound as exc:
                    raise BadRequest(f"The parent region {parent} does not exist.") from exc
                # Refuse cycles.
                cur: str | None = parent
                while cur:
                    if cur == region_id:
                        raise BadRequest(
                            "Circular reference or a repeated entry found in region tree - "
                            f"{region_id}.")
                    nxt = s.get(Region, cur)
                    cur = nxt.parent_region_id if nxt else None
            _apply(r, changes, ("description", "parent_region_id"))
            if "extra" in changes:
                r.extra = {**(r.extra or {}), **changes["extra"]}
        return r

    def delete_region(self, region_id: str) -> None:
        with self.write() as s:
            r = self.get_region(region_id, s)
            if s.scalar(select(Region.id).where(Region.parent_region_id == region_id)):
                raise Forbidden("Unable to delete region "
                                f"{region_id} because it or its child regions have associated "
                                "endpoints.")
            s.execute(update(Endpoint).where(Endpoint.region_id == region_id)
                      .values(region_id=None))
            s.delete(r)

    def get_service(self, service_id: str, s: Session | None = None) -> Service:
        if s is None:
            with self.db.reader() as s2:
                return self.get_service(service_id, s2)
        svc = s.get(Service, service_id)
        if svc is None:
            raise NotFound(f"Could not find service: {service_id}.")
        return svc

    def list_services(self, type: str | None = None, name: str | None = None) -> list[Service]:
        with self.db.reader() as s:
            q = select(Service).order_by(Service.type)
            if type is not None:
                q = q.where(Service.type == type)
            rows = list(s.scalars(q))
        if name is not None:
            rows = [r for r in rows if (r.extra or {}).get("name") == name]
        return rows

    def create_service(self, type: str, name: str | None = None, description: str | None = None,
                       enabled: bool = True, extra: dict[str, Any] | None = None) -> Service:
        data = dict(extra or {})
        if name is not None:
            data["name"] = name
        if description is not None:
            data["description"] = description
        with self.write() as s:
            svc = Service(id=new_id(), type=type, enabled=enabled, extra=data)
            s.add(svc)
        return svc

    def update_service(self, service_id: str, changes: dict[str, Any]) -> Service:
        with self.write() as s:
            svc = self.get_service(service_id, s)
            _apply(svc, changes, ("type", "enabled"))
            extra = dict(svc.extra or {})
            for key in ("name", "description"):
                if key in changes:
                    extra[key] = changes[key]
            extra.update(changes.get("extra", {}))
            svc.extra = extra
        return svc

    def delete_service(self, service_id: str) -> None:
        with self.write() as s:
            svc = self.get_service(service_id, s)
            s.execute(delete(Endpoint).where(Endpoint.service_id == svc.id))
            s.delete(svc)

    def get_endpoint(self, endpoint_id: str, s: Session | None = None) -> Endpoint:
        if s is None:
            with self.db.reader() as s2:
                return self.get_endpoint(endpoint_id, s2)
        e = s.get(Endpoint, endpoint_id)
        if e is None:
            raise NotFound(f"Could not find endpoint: {endpoint_id}.")
        return e

    def list_endpoints(self, interface: str | None = None, service_id: str | None = None,
                       region_id: str | None = None) -> list[Endpoint]:
        with self.db.reader() as s:
            q = select(Endpoint)
            if interface is not None:
                q = q.where(Endpoint.interface == interface)
            if service_id is not None:
                q = q.where(Endpoint.service_id == service_id)
            if region_id is not None:
                q = q.where(Endpoint.region_id == region_id)
            return list(s.scalars(q))

    def create_endpoint(self, service_id: str, interface: str, url: str,
                        region_id: str | None = None, enabled: bool = True,
                        extra: dict[str, Any] | None = None,
                        legacy_region: str | None = None) -> Endpoint:
        with self.write() as s:
            try:
                self.get_service(service_id, s)
            except NotFound as exc:
                raise BadRequest(f"Could not find service: {service_id}.") from exc
            if region_id and s.get(Region, region_id) is None:
                raise BadRequest(f"Could not find region: {region_id}.")
            if not region_id and legacy_region:
                # The deprecated ``region`` attribute creates its region on demand.
                region_id = legacy_region
                if s.get(Region, region_id) is None:
                    s.add(Region(id=region_id, description="", extra={}))
            e = Endpoint(id=new_id(), service_id=service_id, interface=interface, url=url,
                         region_id=region_id, enabled=enabled, extra=extra or {})
            s.add(e)
        return e

    def update_endpoint(self, endpoint_id: str, changes: dict[str, Any]) -> Endpoint:
        with self.write() as s:
            e = self.get_endpoint(endpoint_id, s)
            if "service_id" in changes and s.get(Service, changes["service_id"]) is None:
                raise BadRequest(f"Could not find service: {changes['service_id']}.")
            if changes.get("region_id") and s.get(Region, changes["region_id"]) is None:
                if not changes.get("legacy_region"):
                    raise BadRequest(f"Could not find region: {changes['region_id']}.")
                # The deprecated ``region`` attribute creates its region on demand.
                s.add(Region(id=changes["region_id"], description="", extra={}))
            _apply(e, changes, ("service_id", "interface", "url", "region_id", "enabled"))
            if "extra" in changes:
                e.extra = {**(e.extra or {}), **changes["extra"]}
        return e

    def delete_endpoint(self, endpoint_id: str) -> None:
        with self.write() as s:
            e = self.get_endpoint(endpoint_id, s)
            s.delete(e)

    # ------------------------------------------------------------------ app credentials
    def create_app_cred(self, user_id: str, project_id: str | None, name: str, secret: str,
                        description: str | None, expires_at: dt.datetime | None,
                        unrestricted: bool, roles: list[str], system: str | None = None,
                        access_rules: list[dict[str, Any]] | None = None,
                        ) -> ApplicationCredential:
        secret_hash = passwords.hash_password(secret, self.settings.bcrypt_rounds)
        with self.write() as s:
            if s.scalar(select(ApplicationCredential.id).where(
                    ApplicationCredential.user_id == user_id,
                    ApplicationCredential.name == name)):
                raise Conflict(
                    "Conflict occurred attempting to store application_credential - "
                    "Duplicate entry found with name " + name + ".")
            rules = self._resolve_access_rules(s, user_id, access_rules or [])
            ac = ApplicationCredential(
                id=new_id(), name=name, user_id=user_id, project_id=project_id,
                secret_hash=secret_hash, description=description, expires_at=expires_at,
                unrestricted=unrestricted, roles=roles, system=system,
                access_rules=rules, created_at=utcnow())
            s.add(ac)
        return ac

    def _resolve_access_rules(self, s: Session, user_id: str,
                              requested: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The rules an application credential is created with, as Keystone resolves them:
        a rule given by ``id`` is the user's existing rule of that id; a rule equal in
        service, path and method to one the user already has is that rule (so credentials
        share it); any other becomes a new rule of the user's (with the given id or a new
        one). Returns the full rules ({id, service, path, method}), each once."""
        existing = {r.id: r for r in s.scalars(
            select(AccessRule).where(AccessRule.user_id == user_id))}
        by_value = {(r.service, r.path, r.method): r for r in existing.values()}
        out: list[dict[str, Any]] = []
        for want in requested:
            rid = want.get("id")
            rule = existing.get(rid) if rid else None
            if rule is None:
                fields = (want.get("service"), want.get("path"), want.get("method"))
                if not all(isinstance(f, str) and f for f in fields):
                    if rid:
                        raise BadRequest(f"Could not find Access Rule: {rid}.")
                    raise BadRequest("An access rule needs a service, a path and a method, "
                                     "or the id of an existing access rule.")
                rule = by_value.get(fields)
            if rule is None:
                rid = rid or new_id()
                if s.get(AccessRule, rid) is not None:  # another user's rule id
                    raise Conflict(f"Conflict occurred attempting to store access_rule - "
                                   f"Duplicate ID, {rid}.")
                rule = AccessRule(id=rid, user_id=user_id, service=want["service"],
                                  path=want["path"], method=want["method"])
                s.add(rule)
                existing[rule.id] = rule
                by_value[(rule.service, rule.path, rule.method)] = rule
            if not any(r["id"] == rule.id for r in out):
                out.append({"id": rule.id, "service": rule.service, "path": rule.path,
                            "method": rule.method})
        return out

    def get_app_cred(self, app_cred_id: str, user_id: str | None = None
                     ) -> ApplicationCredential:
        with self.db.reader() as s:
            ac = s.get(ApplicationCredential, app_cred_id)
        if ac is None or (user_id is not None and ac.user_id != user_id):
            raise NotFound(f"Could not find Application Credential: {app_cred_id}.")
        return ac

    def find_app_cred(self, user_id: str, name: str) -> ApplicationCredential | None:
        with self.db.reader() as s:
            return s.scalar(select(ApplicationCredential).where(
                ApplicationCredential.user_id == user_id, ApplicationCredential.name == name))

    def list_app_creds(self, user_id: str, name: str | None = None
                       ) -> list[ApplicationCredential]:
        with self.db.reader() as s:
            q = select(ApplicationCredential).where(ApplicationCredential.user_id == user_id)
            if name is not None:
                q = q.where(ApplicationCredential.name == name)
            return list(s.scalars(q.order_by(ApplicationCredential.name)))

    def delete_app_cred(self, app_cred_id: str, user_id: str) -> None:
        with self.write() as s:
            ac = s.get(ApplicationCredential, app_cred_id)
            if ac is None or ac.user_id != user_id:
                raise NotFound(f"Could not find Application Credential: {app_cred_id}.")
            s.delete(ac)
        self.revoke(app_cred_id=app_cred_id)

    def list_access_rules(self, user_id: str) -> list[AccessRule]:
        with self.db.reader() as s:
            return list(s.scalars(select(AccessRule).where(AccessRule.user_id == user_id)))

    def get_access_rule(self, user_id: str, rule_id: str) -> AccessRule:
        with self.db.reader() as s:
            r = s.get(AccessRule, rule_id)
        if r is None or r.user_id != user_id:
            raise NotFound(f"Could not find Access Rule: {rule_id}.")
        return r

    def delete_access_rule(self, user_id: str, rule_id: str) -> None:
        with self.write() as s:
            r = s.get(AccessRule, rule_id)
            if r is None or r.user_id != user_id:
                raise NotFound(f"Could not find Access Rule: {rule_id}.")
            for ac in s.scalars(select(ApplicationCredential).where(
                    ApplicationCredential.user_id == user_id)):
                if any(rule.get("id") == rule_id for rule in ac.access_rules or []):
                    raise Forbidden(
                        f"Cannot delete access rule {rule_id}: it is in use by an "
                        "application credential.")
            s.delete(r)

    # ------------------------------------------------------------------ credentials
    def _encrypt_blob(self, blob: str) -> str:
        return self.credential_codec.encrypt(blob.encode("utf-8"))

    def _decrypt_blob(self, enc: str) -> str:
        return self.credential_codec.decrypt(enc).decode("utf-8")

    def credential_blob(self, cred: Credential) -> str:
        return self._decrypt_blob(cred.encrypted_blob)

    def create_credential(self, user_id: str, type: str, blob: str,
                          project_id: str | None = None, credential_id: str | None = None,
                          extra: dict[str, Any] | None = None) -> Credential:
        with self.write() as s:
            self.get_user(user_id, s)
            cid = credential_id or new_id()
            if s.get(Credential, cid) is not None:
                raise Conflict(f"Conflict occurred attempting to store credential - {cid}.")
            c = Credential(id=cid, user_id=user_id, project_id=project_id, type=type,
                           encrypted_blob=self._encrypt_blob(blob), extra=extra or {})
            s.add(c)
        return c

    def get_credential(self, credential_id: str) -> Credential:
        with self.db.reader() as s:
            c = s.get(Credential, credential_id)
        if c is None:
            raise NotFound(f"Could not find credential: {credential_id}.")
        return c

    def list_credentials(self, user_id: str | None = None, type: str | None = None
                         ) -> list[Credential]:
        with self.db.reader() as s:
            q = select(Credential)
            if user_id is not None:
                q = q.where(Credential.user_id == user_id)
            if type is not None:
                q = q.where(Credential.type == type)
            return list(s.scalars(q))

    def update_credential(self, credential_id: str, changes: dict[str, Any]) -> Credential:
        with self.write() as s:
            c = s.get(Credential, credential_id)
            if c is None:
                raise NotFound(f"Could not find credential: {credential_id}.")
            if "user_id" in changes:
                self.get_user(changes["user_id"], s)
            _apply(c, changes, ("user_id", "project_id", "type"))
            if "blob" in changes:
                c.encrypted_blob = self._encrypt_blob(changes["blob"])
            if "extra" in changes:
                c.extra = {**(c.extra or {}), **changes["extra"]}
        return c

    def delete_credential(self, credential_id: str) -> None:
        with self.write() as s:
            c = s.get(Credential, credential_id)
            if c is None:
                raise NotFound(f"Could not find credential: {credential_id}.")
            s.delete(c)


def _apply(obj: Any, changes: dict[str, Any], fields: Iterable[str]) -> None:
    for key in fields:
        if key in changes:
            setattr(obj, key, changes[key])


def _unique(items: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for i in items:
        seen.setdefault(i, None)
    return list(seen)


def _short(exc: Exception) -> str:
    text = str(getattr(exc, "orig", exc)).splitlines()[0]
    return text[:200]


def _event(row: RevocationRow) -> RevocationEvent:
    return RevocationEvent(
        user_id=row.user_id, project_id=row.project_id, domain_id=row.domain_id,
        audit_id=row.audit_id, audit_chain_id=row.audit_chain_id, app_cred_id=row.app_cred_id,
        issued_before=row.issued_before, revoked_at=row.revoked_at,
    )


def _name_free(s: Session, model: Any, kind: str, name: str, domain_id: str | None = None,
               show_domain: bool = True) -> None:
    """Keystone's 409 when another ``kind`` already has ``name`` (names compare without
    case), within ``domain_id`` when given (named in the message when ``show_domain``)."""
    q = select(model.id).where(func.lower(model.name) == name.lower())
    if domain_id is not None:
        q = q.where(model.domain_id == domain_id)
    if s.scalar(q.limit(1)):
        where = f" at domain ID {domain_id}" if domain_id is not None and show_domain else ""
        raise Conflict(f"Conflict occurred attempting to store {kind} - Duplicate entry "
                       f"found with name {name}{where}.")
