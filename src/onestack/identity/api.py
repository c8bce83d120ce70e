"""Identity API (Keystone v3): the service, its route table (the hot token paths first:
routes match in order) and the handlers of each resource (``api_tokens.py`` ...
``api_catalog.py``, over ``api_base.py``): parse -> manager -> view."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from onestack.api.app import Service, route
from onestack.api.policy import Policy
from onestack.api.versions import healthcheck
from onestack.identity.api_base import keystone_fault
from onestack.identity.api_catalog import CatalogRoutes
from onestack.identity.api_credentials import CredentialRoutes
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
        # One handler per resource; the route table below keeps Keystone's order.
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
    def _add_routes(self) -> None:  # noqa: PLR0915 - a table of routes
        r = self._r
        # the hot paths first: routes are matched in order
        r("/v3/auth/tokens", self.tok.check_token_head, ["HEAD"])
        r("/v3/auth/tokens", self.tok.validate_token, ["GET"])
        r("/v3/auth/tokens", self.tok.issue_token, ["POST"], public=True)
        r("/", self.tok.versions, ["GET"], public=True)
        r("/v3", self.tok.version, ["GET"], public=True)
        r("/v3/", self.tok.version, ["GET"], public=True)
        r("/healthcheck", healthcheck, ["GET"], public=True)
        r("/v3/auth/tokens", self.tok.revoke_token, ["DELETE"])
        r("/v3/auth/catalog", self.tok.auth_catalog, ["GET"])
        r("/v3/auth/projects", self.tok.auth_projects, ["GET"])
        r("/v3/auth/domains", self.tok.auth_domains, ["GET"])
        r("/v3/auth/system", self.tok.auth_system, ["GET"])
        r("/v3/auth/tokens/OS-PKI/revoked", self.tok.pki_revoked, ["GET"])
        r("/v3/OS-REVOKE/events", self.tok.revoke_events, ["GET"])
        # domains
        r("/v3/domains", self.proj.list_domains, ["GET"])
        r("/v3/domains", self.proj.create_domain, ["POST"])
        r("/v3/domains/{domain_id}", self.proj.get_domain, ["GET"])
        r("/v3/domains/{domain_id}", self.proj.update_domain, ["PATCH"])
        r("/v3/domains/{domain_id}", self.proj.delete_domain, ["DELETE"])
        # projects
        r("/v3/projects", self.proj.list_projects, ["GET"])
        r("/v3/projects", self.proj.create_project, ["POST"])
        r("/v3/projects/{project_id}", self.proj.get_project, ["GET"])
        r("/v3/projects/{project_id}", self.proj.update_project, ["PATCH"])
        r("/v3/projects/{project_id}", self.proj.delete_project, ["DELETE"])
        r("/v3/projects/{project_id}/tags", self.proj.list_tags, ["GET"])
        r("/v3/projects/{project_id}/tags", self.proj.put_tags, ["PUT"])
        r("/v3/projects/{project_id}/tags", self.proj.delete_tags, ["DELETE"])
        r("/v3/projects/{project_id}/tags/{tag}", self.proj.check_tag, ["GET"])
        r("/v3/projects/{project_id}/tags/{tag}", self.proj.add_tag, ["PUT"])
        r("/v3/projects/{project_id}/tags/{tag}", self.proj.delete_tag, ["DELETE"])
        # users
        r("/v3/users", self.users.list_users, ["GET"])
        r("/v3/users", self.users.create_user, ["POST"])
        r("/v3/users/{user_id}", self.users.get_user, ["GET"])
        r("/v3/users/{user_id}", self.users.update_user, ["PATCH"])
        r("/v3/users/{user_id}", self.users.delete_user, ["DELETE"])
        r("/v3/users/{user_id}/password", self.users.change_password, ["POST"], public=True)
        r("/v3/users/{user_id}/groups", self.users.user_groups, ["GET"])
        r("/v3/users/{user_id}/projects", self.users.user_projects, ["GET"])
        r("/v3/users/{user_id}/application_credentials", self.creds.list_app_creds, ["GET"])
        r("/v3/users/{user_id}/application_credentials", self.creds.create_app_cred, ["POST"])
        r("/v3/users/{user_id}/application_credentials/{app_cred_id}", self.creds.get_app_cred,
          ["GET"])
        r("/v3/users/{user_id}/application_credentials/{app_cred_id}", self.creds.delete_app_cred,
          ["DELETE"])
        r("/v3/users/{user_id}/access_rules", self.creds.list_access_rules, ["GET"])
        r("/v3/users/{user_id}/access_rules/{rule_id}", self.creds.get_access_rule, ["GET"])
        r("/v3/users/{user_id}/access_rules/{rule_id}", self.creds.delete_access_rule, ["DELETE"])
        # groups
        r("/v3/groups", self.users.list_groups, ["GET"])
        r("/v3/groups", self.users.create_group, ["POST"])
        r("/v3/groups/{group_id}", self.users.get_group, ["GET"])
        r("/v3/groups/{group_id}", self.users.update_group, ["PATCH"])
        r("/v3/groups/{group_id}", self.users.delete_group, ["DELETE"])
        r("/v3/groups/{group_id}/users", self.users.group_users, ["GET"])
        r("/v3/groups/{group_id}/users/{user_id}", self.users.check_member, ["GET", "HEAD"])
        r("/v3/groups/{group_id}/users/{user_id}", self.users.add_member, ["PUT"])
        r("/v3/groups/{group_id}/users/{user_id}", self.users.remove_member, ["DELETE"])
        # roles
        r("/v3/roles", self.roles.list_roles, ["GET"])
        r("/v3/roles", self.roles.create_role, ["POST"])
        r("/v3/roles/{role_id}", self.roles.get_role, ["GET"])
        r("/v3/roles/{role_id}", self.roles.update_role, ["PATCH"])
        r("/v3/roles/{role_id}", self.roles.delete_role, ["DELETE"])
        r("/v3/roles/{prior_id}/implies", self.roles.list_implies, ["GET"])
        r("/v3/roles/{prior_id}/implies/{implied_id}", self.roles.check_implied, ["HEAD"])
        r("/v3/roles/{prior_id}/implies/{implied_id}", self.roles.get_implied, ["GET"])
        r("/v3/roles/{prior_id}/implies/{implied_id}", self.roles.create_implied, ["PUT"])
        r("/v3/roles/{prior_id}/implies/{implied_id}", self.roles.delete_implied, ["DELETE"])
        r("/v3/role_inferences", self.roles.role_inferences, ["GET"])
        r("/v3/role_assignments", self.roles.role_assignments, ["GET"])
        # grants
        g = self.roles
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
        # catalog
        r("/v3/regions", self.catalog.list_regions, ["GET"])
        r("/v3/regions", self.catalog.create_region, ["POST"])
        r("/v3/regions/{region_id}", self.catalog.get_region, ["GET"])
        r("/v3/regions/{region_id}", self.catalog.put_region, ["PUT"])
        r("/v3/regions/{region_id}", self.catalog.update_region, ["PATCH"])
        r("/v3/regions/{region_id}", self.catalog.delete_region, ["DELETE"])
        r("/v3/services", self.catalog.list_services, ["GET"])
        r("/v3/services", self.catalog.create_service, ["POST"])
        r("/v3/services/{service_id}", self.catalog.get_service, ["GET"])
        r("/v3/services/{service_id}", self.catalog.update_service, ["PATCH"])
        r("/v3/services/{service_id}", self.catalog.delete_service, ["DELETE"])
        r("/v3/endpoints", self.catalog.list_endpoints, ["GET"])
        r("/v3/endpoints", self.catalog.create_endpoint, ["POST"])
        r("/v3/endpoints/{endpoint_id}", self.catalog.get_endpoint, ["GET"])
        r("/v3/endpoints/{endpoint_id}", self.catalog.update_endpoint, ["PATCH"])
        r("/v3/endpoints/{endpoint_id}", self.catalog.delete_endpoint, ["DELETE"])
        # credentials
        r("/v3/credentials", self.creds.list_credentials, ["GET"])
        r("/v3/credentials", self.creds.create_credential, ["POST"])
        r("/v3/credentials/{credential_id}", self.creds.get_credential, ["GET"])
        r("/v3/credentials/{credential_id}", self.creds.update_credential, ["PATCH"])
        r("/v3/credentials/{credential_id}", self.creds.delete_credential, ["DELETE"])
        # The OS-* extensions' and unified limits' routes are added by ``identity.service``
        # (their own modules).


def build_policy(override_file: str | None) -> Policy:
    return Policy(RULES, override_file or None)
