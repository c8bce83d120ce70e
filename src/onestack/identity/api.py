"""Identity API (Keystone v3): the service, its handlers in route order (the hot token paths
first: routes match in order; each handler declares its routes with ``@serves``) and the
handlers of each resource (``api_tokens.py`` ...
``api_catalog.py``, over ``api_base.py``): parse -> manager -> view."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from onestack.api.app import Service, add_declared, route
from onestack.api.policy import Policy
from onestack.api.versions import healthcheck
from onestack.identity.api_base import keystone_fault
from onestack.identity.api_catalog import CatalogRoutes
from onestack.identity.api_credentials import CredentialRoutes
from onestack.identity.api_members import add_members
from onestack.identity.api_projects import ProjectRoutes
from onestack.identity.api_roles import RoleRoutes
from onestack.identity.api_tokens import TokenRoutes
from onestack.identity.api_users import UserRoutes
from onestack.identity.auth import TokenService
from onestack.identity.manager import IdentityManager
from onestack.identity.policies import RULES


class IdentityAPI:
    """Builds the identity service: its routes bound to a manager and token service."""

    def __init__(self, manager: IdentityManager, tokens: TokenService, policy: Policy,
                 auth_uri: str) -> None:
        self.m = manager
        self.tokens = tokens
        self.service = Service(name="identity", routes=[], fault=keystone_fault,
                               policy=policy, auth_uri=auth_uri)
        # One handler per resource, each declaring its routes (``api/routes.py``).
        self.tok = TokenRoutes(manager, tokens)
        self.proj = ProjectRoutes(manager, tokens)
        self.users = UserRoutes(manager, tokens)
        self.creds = CredentialRoutes(manager, tokens)
        self.roles = RoleRoutes(manager, tokens)
        self.catalog = CatalogRoutes(manager, tokens)
        self._add_routes()

    # ------------------------------------------------------------------ helpers
    def _r(self, path: str, handler: Callable[..., Any], methods: list[str],
           public: bool = False) -> None:
        self.service.routes.append(route(self.service, path, handler, methods, public))

    # ------------------------------------------------------------------ routes
    def _add_routes(self) -> None:
        r = self._r
        # the hot paths first (token validation): routes are matched in order
        add_declared(self.service, self.tok)
        r("/healthcheck", healthcheck, ["GET"], public=True)
        add_declared(self.service, self.proj, self.users, self.roles)
        g = self.roles  # grants: one handler made per target and actor
        for target in ("projects", "domains"):
            for actor in ("users", "groups"):
                base = f"/v3/{target}/{{target_id}}/{actor}/{{actor_id}}/roles"
                r(base, g.grant_list(target, actor, False), ["GET"])
                r(base + "/{role_id}", g.grant_check(target, actor, False), ["GET", "HEAD"])
                r(base + "/{role_id}", g.grant_put(target, actor, False), ["PUT"])
                r(base + "/{role_id}", g.grant_delete(target, actor, False), ["DELETE"])
                inh = (f"/v3/OS-INHERIT/{target}/{{target_id}}/{actor}/{{actor_id}}/roles")
                r(inh + "/inherited_to_projects", g.grant_list(target, actor, True),
                  ["GET"])
                r(inh + "/{role_id}/inherited_to_projects",
                  g.grant_check(target, actor, True), ["GET", "HEAD"])
                r(inh + "/{role_id}/inherited_to_projects",
                  g.grant_put(target, actor, True), ["PUT"])
                r(inh + "/{role_id}/inherited_to_projects",
                  g.grant_delete(target, actor, True), ["DELETE"])
        for actor in ("users", "groups"):
            base = f"/v3/system/{actor}/{{actor_id}}/roles"
            r(base, g.grant_list("system", actor, False), ["GET"])
            r(base + "/{role_id}", g.grant_check("system", actor, False), ["GET", "HEAD"])
            r(base + "/{role_id}", g.grant_put("system", actor, False), ["PUT"])
            r(base + "/{role_id}", g.grant_delete("system", actor, False), ["DELETE"])
        add_declared(self.service, self.catalog, self.creds)
        add_members(self.service, self.catalog)
        # The OS-* extensions' and unified limits' routes are added by ``identity.service``
        # (their own modules).


def build_policy(override_file: str | None) -> Policy:
    return Policy(RULES, override_file or None)
