"""Application credentials (with access rules) and credentials (encrypted blobs). Part of
``IdentityManager`` (``CredentialStore``)."""

from __future__ import annotations

import datetime as dt
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from onestack.common.errors import BadRequest, Conflict, Forbidden, NotFound
from onestack.common.ids import new_id
from onestack.common.timeutils import utcnow
from onestack.db.identity import AccessRule, ApplicationCredential, Credential
from onestack.identity import passwords
from onestack.identity.store import IdentityState, _apply, _where_given

#: The records a user owns, which another user's request must not find.
_Owned = TypeVar("_Owned", ApplicationCredential, AccessRule)


class CredentialStore(IdentityState):
    """Application credentials (with access rules) and credentials (encrypted blobs)."""

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

    @staticmethod
    def _owned(s: Session, model: type[_Owned], key: str, user_id: str | None,
               kind: str) -> _Owned:
        """The ``model`` row of id ``key`` when it is ``user_id``'s (any user's when None),
        else Keystone's 404 ``Could not find {kind}: {key}.``"""
        row = s.get(model, key)
        if row is None or (user_id is not None and row.user_id != user_id):
            raise NotFound(f"Could not find {kind}: {key}.")
        return row

    def get_app_cred(self, app_cred_id: str, user_id: str | None = None
                     ) -> ApplicationCredential:
        with self.db.reader() as s:
            return self._owned(s, ApplicationCredential, app_cred_id, user_id,
                               "Application Credential")

    def find_app_cred(self, user_id: str, name: str) -> ApplicationCredential | None:
        with self.db.reader() as s:
            return s.scalar(select(ApplicationCredential).where(
                ApplicationCredential.user_id == user_id, ApplicationCredential.name == name))

    def list_app_creds(self, user_id: str, name: str | None = None
                       ) -> list[ApplicationCredential]:
        with self.db.reader() as s:
            q = _where_given(select(ApplicationCredential), ApplicationCredential,
                             user_id=user_id, name=name)
            return list(s.scalars(q.order_by(ApplicationCredential.name)))

    def delete_app_cred(self, app_cred_id: str, user_id: str) -> None:
        with self.write() as s:
            s.delete(self._owned(s, ApplicationCredential, app_cred_id, user_id,
                                 "Application Credential"))
        self.revoke(app_cred_id=app_cred_id)

    def list_access_rules(self, user_id: str) -> list[AccessRule]:
        with self.db.reader() as s:
            return list(s.scalars(select(AccessRule).where(AccessRule.user_id == user_id)))

    def get_access_rule(self, user_id: str, rule_id: str) -> AccessRule:
        with self.db.reader() as s:
            return self._owned(s, AccessRule, rule_id, user_id, "Access Rule")

    def delete_access_rule(self, user_id: str, rule_id: str) -> None:
        with self.write() as s:
            r = self._owned(s, AccessRule, rule_id, user_id, "Access Rule")
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
        return self._fetch(Credential, credential_id, "credential")

    def list_credentials(self, user_id: str | None = None, type: str | None = None
                         ) -> list[Credential]:
        with self.db.reader() as s:
            q = _where_given(select(Credential), Credential, user_id=user_id, type=type)
            return list(s.scalars(q))

    def update_credential(self, credential_id: str, changes: dict[str, Any]) -> Credential:
        with self.write() as s:
            c = self._fetch(Credential, credential_id, "credential", s)
            if "user_id" in changes:
                self.get_user(changes["user_id"], s)
            _apply(c, changes, ("user_id", "project_id", "type"), merge=("extra",))
            if "blob" in changes:
                c.encrypted_blob = self._encrypt_blob(changes["blob"])
        return c

    def delete_credential(self, credential_id: str) -> None:
        with self.write() as s:
            s.delete(self._fetch(Credential, credential_id, "credential", s))
