"""OS-TRUST: a trustor delegates some of their roles on a project to a trustee.

The trustee then asks for a token scoped with ``{"OS-TRUST:trust": {"id": …}}``; that token
carries the delegated roles the trustor still holds, acts as the trustor when
``impersonation`` is set, expires no later than the trust, and uses up ``remaining_uses``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select, update

from onestack.common.errors import BadRequest, Forbidden, NotFound
from onestack.common.ids import new_id
from onestack.common.timeutils import utcnow
from onestack.db.identity import Trust
from onestack.identity.manager import IdentityManager


class TrustStore:
    """Trust records and their rules (blocking; run in a thread)."""

    def __init__(self, manager: IdentityManager) -> None:
        self.m = manager

    def create(self, trustor_id: str, trustee_id: str, project_id: str | None,
               role_refs: list[dict[str, Any]], impersonation: bool,
               expires_at: dt.datetime | None, remaining_uses: int | None,
               allow_redelegation: bool = False) -> Trust:
        if expires_at is not None and expires_at <= utcnow():
            raise BadRequest("Expiration time of the trust is in the past.")
        if remaining_uses is not None and remaining_uses <= 0:
            raise BadRequest("remaining_uses must be a positive integer or null.")
        self.m.get_user(trustor_id)
        try:
            self.m.get_user(trustee_id)
        except NotFound as exc:
            raise NotFound(f"Could not find user: {trustee_id}.") from exc
        role_ids: list[str] = []
        if project_id:
            self.m.get_project(project_id)
            held = {r.id: r for r in self.m.effective_roles(trustor_id, project_id=project_id)}
            names = {r.name: r.id for r in held.values()}
            for ref in role_refs:
                rid = ref.get("id") or names.get(ref.get("name", ""))
                if rid is None:
                    what = ref.get("id") or ref.get("name")
                    # Keystone reports a role the trustor does not have as not found.
                    raise NotFound(f"Could not find role: {what}.")
                if rid not in held:
                    raise Forbidden(f"The trustor does not hold role {rid} on the project.")
                if rid not in role_ids:
                    role_ids.append(rid)
        elif role_refs:
            raise BadRequest("Roles can only be delegated on a project.")
        t = Trust(id=new_id(), trustor_user_id=trustor_id, trustee_user_id=trustee_id,
                  project_id=project_id, impersonation=impersonation, expires_at=expires_at,
                  remaining_uses=remaining_uses, allow_redelegation=allow_redelegation,
                  roles=role_ids, extra={})
        with self.m.write() as s:
            s.add(t)
        return t

    def get(self, trust_id: str, include_deleted: bool = False) -> Trust:
        with self.m.db.reader() as s:
            t = s.get(Trust, trust_id)
        if t is None or (t.deleted_at is not None and not include_deleted):
            raise NotFound(f"Could not find trust: {trust_id}.")
        return t

    def list(self, trustor_id: str | None = None, trustee_id: str | None = None
             ) -> list[Trust]:
        with self.m.db.reader() as s:
            q = select(Trust).where(Trust.deleted_at.is_(None))
            if trustor_id:
                q = q.where(Trust.trustor_user_id == trustor_id)
            if trustee_id:
                q = q.where(Trust.trustee_user_id == trustee_id)
            return list(s.scalars(q))

    def delete(self, trust_id: str) -> None:
        with self.m.write() as s:
            t = s.get(Trust, trust_id)
            if t is None or t.deleted_at is not None:
                raise NotFound(f"Could not find trust: {trust_id}.")
            t.deleted_at = utcnow()
        # Trust-scoped tokens die with the trust: validation finds it deleted (the write
        # above dropped every cached copy).

    def consume(self, trust: Trust) -> None:
        """Use one of the trust's remaining uses (atomic; 403 when none are left)."""
        if trust.remaining_uses is None:
            return
        with self.m.db.transaction() as s:
            res = s.execute(update(Trust).where(Trust.id == trust.id,
                                                Trust.remaining_uses > 0)
                            .values(remaining_uses=Trust.remaining_uses - 1))
            if not res.rowcount:
                raise Forbidden("The trust has no remaining uses.")

    def usable(self, trust_id: str) -> Trust | None:
        """The trust, if it exists, is not deleted and has not expired."""
        try:
            t = self.get(trust_id)
        except NotFound:
            return None
        if t.expires_at is not None and t.expires_at <= utcnow():
            return None
        return t
