"""The identity backend: users (passwords and their history) and groups. Part of
``IdentityManager`` (``UserStore``)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from onestack.common.errors import BadRequest, NotFound, Unauthorized
from onestack.common.ids import new_id
from onestack.common.timeutils import utcnow
from onestack.db.identity import (
    AccessRule,
    ApplicationCredential,
    Assignment,
    Credential,
    Group,
    GroupMembership,
    User,
)
from onestack.identity import passwords
from onestack.identity.store import IdentityState, _apply, _name_free, _rename_free


class UserStore(IdentityState):
    """The identity backend: users (passwords and their history) and groups."""

    # ------------------------------------------------------------------ users
    def get_user(self, user_id: str, s: Session | None = None) -> User:
        return self._fetch(User, user_id, "user", s)

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
            _rename_free(s, u, "user", changes)
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
        return self._fetch(Group, group_id, "group", s)

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
            _rename_free(s, g, "group", changes)
            _apply(g, changes, ("name", "description"), merge=("extra",))
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
