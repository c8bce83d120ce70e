"""The identity service's records as the API layer reads them.

Each protocol names exactly the attributes the API handlers and ``views.py`` read (a
project's, user's and group's common ones through ``InDomainRecord``); the rows
the stores return satisfy them as they are (no conversion). The API layer only reads them:
every change of a row is a store method with plain arguments (or ``Grant``, the one value
naming a role grant's actor and target). ``NULL_DOMAIN`` is the ``domain_id`` of a global
role."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Protocol

from onestack.db.identity import NULL_DOMAIN

__all__ = ["NULL_DOMAIN", "AccessRuleRecord", "AppCredRecord", "CredentialRecord",
           "DocumentRecord", "DomainRecord", "EndpointRecord", "Grant", "GroupRecord",
           "InDomainRecord", "ProjectRecord", "RegionRecord", "RoleRecord", "ServiceRecord",
           "TrustRecord", "UserRecord"]


@dataclass(frozen=True)
class Grant:
    """Where a role is (or would be) granted: to one actor (``user_id`` or ``group_id``) on
    one target (``project_id``, ``domain_id`` or ``system``, which is ``all``), and whether
    the grant is inherited by the target's projects rather than held on the target itself.
    The store checks that exactly the actor and target named exist."""

    user_id: str | None = None
    group_id: str | None = None
    project_id: str | None = None
    domain_id: str | None = None
    system: str | None = None
    inherited: bool = False


class DomainRecord(Protocol):
    """A domain as its view reads it."""

    id: str
    name: str
    description: str | None
    enabled: bool
    extra: dict[str, Any]


class InDomainRecord(Protocol):
    """What a project, user or group has as a row in a domain (``db.identity._InDomain``):
    its id, its name (unique in the domain) and the domain's id."""

    id: str
    name: str
    domain_id: str


class ProjectRecord(InDomainRecord, Protocol):
    """A project (or a domain's project row, ``domain_id`` None) as its view reads it."""

    parent_id: str | None
    description: str | None
    enabled: bool
    extra: dict[str, Any]
    options: dict[str, Any]


class UserRecord(InDomainRecord, Protocol):
    """A user as its view and the user handlers read it."""

    enabled: bool
    default_project_id: str | None
    password_expires_at: dt.datetime | None
    extra: dict[str, Any]
    options: dict[str, Any]


class GroupRecord(InDomainRecord, Protocol):
    """A group as its view reads it."""

    description: str | None
    extra: dict[str, Any]


class RoleRecord(Protocol):
    """A role (global when ``domain_id`` is ``NULL_DOMAIN``) as its views read it."""

    id: str
    name: str
    domain_id: str
    description: str | None
    extra: dict[str, Any]
    options: dict[str, Any]


class RegionRecord(Protocol):
    """A region as its view reads it."""

    id: str
    description: str | None
    parent_region_id: str | None
    extra: dict[str, Any]


class ServiceRecord(Protocol):
    """A catalog service as its view reads it."""

    id: str
    type: str
    enabled: bool
    extra: dict[str, Any]


class EndpointRecord(Protocol):
    """A catalog endpoint as its view reads it."""

    id: str
    service_id: str
    interface: str
    url: str
    region_id: str | None
    enabled: bool
    extra: dict[str, Any]


class AppCredRecord(Protocol):
    """An application credential as its view reads it (never its secret's hash)."""

    id: str
    name: str
    user_id: str
    project_id: str | None
    description: str | None
    expires_at: dt.datetime | None
    unrestricted: bool
    system: str | None
    access_rules: list[dict[str, Any]]


class AccessRuleRecord(Protocol):
    """An access rule of a user's application credentials as its view reads it."""

    id: str
    user_id: str
    service: str
    path: str
    method: str


class CredentialRecord(Protocol):
    """A credential as its view reads it (the blob, decrypted, is passed beside it)."""

    id: str
    user_id: str
    project_id: str | None
    type: str
    extra: dict[str, Any]


class DocumentRecord(Protocol):
    """One stored document of an extension (policy, consumer, endpoint group, limit...)."""

    id: str
    data: dict[str, Any]


class TrustRecord(Protocol):
    """A trust as the OS-TRUST handlers read it."""

    id: str
    trustor_user_id: str
    trustee_user_id: str
    project_id: str | None
    impersonation: bool
    expires_at: dt.datetime | None
    remaining_uses: int | None
    allow_redelegation: bool
    redelegation_count: int | None
    roles: list[str]
    extra: dict[str, Any]
