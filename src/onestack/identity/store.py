"""Identity's shared vocabulary: assignment kinds, the small records tokens carry
(``UserInfo``, ``ScopeInfo``, ``RoleRef``), helpers every backend store uses, and the state
they share (``IdentityState``)."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from onestack.common.errors import Conflict, NotFound
from onestack.config import Settings
from onestack.db.engine import Database
from onestack.db.identity import RevocationEvent as RevocationRow
from onestack.identity.cache import IdentityCache, RevocationEvent, RevocationList
from onestack.identity.tokens import FernetCodec

_Row = TypeVar("_Row")

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


def _apply(obj: Any, changes: dict[str, Any], fields: Iterable[str],
           merge: Iterable[str] = ()) -> None:
    """Set each of ``fields`` that ``changes`` has on ``obj``; merge each dict of ``merge``
    it has (``extra``, ``options``) into the one ``obj`` holds."""
    for key in fields:
        if key in changes:
            setattr(obj, key, changes[key])
    for key in merge:
        if key in changes:
            setattr(obj, key, {**(getattr(obj, key) or {}), **changes[key]})


def _where_given(q: Select[tuple[_Row]], model: type[_Row], **values: object
                 ) -> Select[tuple[_Row]]:
    """``q`` narrowed to the rows whose column equals each of ``values`` (one that is None
    does not narrow it): the optional filters of the ``list_*`` reads."""
    for column, value in values.items():
        if value is not None:
            q = q.where(getattr(model, column) == value)
    return q


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


class _Named(Protocol):
    """A record named uniquely within its domain (user, group, project, role)."""

    @property
    def name(self) -> str: ...

    @property
    def domain_id(self) -> str: ...


def _rename_free(s: Session, row: _Named, kind: str, changes: dict[str, Any],
                 show_domain: bool = True) -> None:
    """``_name_free`` for an update: Keystone's 409 when ``changes`` renames ``row`` (beyond
    a change of case) to a name another ``kind`` of its domain has."""
    if "name" in changes and changes["name"].lower() != row.name.lower():
        _name_free(s, type(row), kind, changes["name"], row.domain_id, show_domain)


class IdentityState:
    """What ``IdentityManager`` and the backend stores it is made of share (set by
    ``IdentityManager.__init__``), and the transaction helpers every store uses."""

    db: Database
    settings: Settings
    cache: IdentityCache
    revocations: RevocationList
    credential_codec: FernetCodec

    def write(self) -> contextlib.AbstractContextManager[Session]:
        """A write transaction that refreshes the caches after commit (``IdentityManager``)."""
        raise NotImplementedError

    def _fetch(self, model: type[_Row], key: str, kind: str, s: Session | None = None) -> _Row:
        """The ``model`` row of id ``key``, read in ``s`` (or in a reader of its own), or
        Keystone's 404 ``Could not find {kind}: {key}.``"""
        if s is None:
            with self.db.reader() as s2:
                return self._fetch(model, key, kind, s2)
        row = s.get(model, key)
        if row is None:
            raise NotFound(f"Could not find {kind}: {key}.")
        return row
