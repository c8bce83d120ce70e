"""The request context: who is calling, with which scope and roles."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from onestack.common.access_rules import AccessRules


@dataclass
class RequestContext:
    """Authenticated caller of one request.

    Built by the auth middleware from a validated token; passed to policy checks and managers.
    ``project_id`` is set for project-scoped tokens, ``domain_id`` for domain-scoped ones and
    ``system_scope`` (``"all"``) for system-scoped ones. ``access_rules`` is set when the
    token comes from an application credential with access rules: then only the requests
    they match may be made (``onestack.api.access`` checks every request against them).
    """

    request_id: str = ""
    token: str | None = None
    user_id: str | None = None
    user_name: str | None = None
    user_domain_id: str | None = None
    user_domain_name: str | None = None
    project_id: str | None = None
    project_name: str | None = None
    project_domain_id: str | None = None
    project_domain_name: str | None = None
    domain_id: str | None = None
    domain_name: str | None = None
    system_scope: str | None = None
    roles: list[str] = field(default_factory=list)
    role_ids: list[str] = field(default_factory=list)
    audit_ids: list[str] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)
    app_cred_id: str | None = None
    access_rules: AccessRules | None = None
    expires_at: float | None = None
    is_admin_internal: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def authenticated(self) -> bool:
        return self.user_id is not None or self.is_admin_internal

    @property
    def is_admin(self) -> bool:
        """Cloud administrator: the ``admin`` role in any scope (OpenStack's default)."""
        return self.is_admin_internal or "admin" in self.roles

    def policy_creds(self) -> dict[str, Any]:
        """The credentials policy rules see (``roles_lower``: the role names in lower case,
        so each ``role:`` check is one set lookup)."""
        return {
            "user_id": self.user_id,
            "user_domain_id": self.user_domain_id,
            "project_id": self.project_id,
            "project_domain_id": self.project_domain_id,
            "domain_id": self.domain_id,
            "system_scope": self.system_scope,
            "roles": self.roles,
            "roles_lower": frozenset(r.lower() for r in self.roles),
            "is_admin": self.is_admin_internal,
            "token": {"app_cred_id": self.app_cred_id},
        }

    @classmethod
    def admin(cls) -> RequestContext:
        """An internal context for the cloud's own work (bootstrap, agents, one service
        calling another): an admin holding the ``service`` role, as OpenStack's service
        users do (rules such as Neutron's ``binding:profile`` are for services only)."""
        return cls(is_admin_internal=True, roles=["admin", "manager", "member", "reader",
                                                  "service"],
                   system_scope="all")
