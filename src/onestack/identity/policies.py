"""Default identity policy rules (Keystone's defaults, condensed).

The ``admin`` role in any scope is a cloud administrator, as in Keystone's defaults; readers
of a domain may read inside it; users may read themselves, their own projects, credentials
and application credentials. Operators override any rule with ``policy_file``.
"""

from __future__ import annotations

ADMIN = "rule:admin_required"
OWNER = "user_id:%(target.user.id)s"
ADMIN_OR_OWNER = f"{ADMIN} or {OWNER}"
DOMAIN_READER = "(role:reader and domain_id:%(target.domain_id)s)"
SYSTEM_READER = "(role:reader and system_scope:all)"
ADMIN_OR_READER = f"{ADMIN} or {SYSTEM_READER} or {DOMAIN_READER}"

RULES: dict[str, str] = {
    "admin_required": "role:admin or is_admin:1",
    "service_role": "role:service",
    "service_or_admin": "rule:admin_required or rule:service_role",
    "owner": "user_id:%(user_id)s",
    "admin_or_owner": "rule:admin_required or rule:owner",
    "token_subject": "user_id:%(target.token.user_id)s",
    "admin_or_token_subject": "rule:admin_required or rule:token_subject",
    "service_admin_or_token_subject": "rule:service_or_admin or rule:token_subject",
    "default": ADMIN,
    # tokens
    "identity:check_token": "rule:service_admin_or_token_subject",
    "identity:validate_token": "rule:service_admin_or_token_subject",
    "identity:revoke_token": "rule:admin_or_token_subject",
    "identity:get_auth_catalog": "",
    "identity:get_auth_projects": "",
    "identity:get_auth_domains": "",
    "identity:get_auth_system": "",
    "identity:revocation_list": "rule:service_or_admin",
    # domains
    "identity:get_domain": (f"{ADMIN} or {SYSTEM_READER} or domain_id:%(target.domain.id)s "
                            "or project_domain_id:%(target.domain.id)s"),
    "identity:list_domains": f"{ADMIN} or {SYSTEM_READER}",
    "identity:create_domain": ADMIN,
    "identity:update_domain": ADMIN,
    "identity:delete_domain": ADMIN,
    # projects
    "identity:get_project": (f"{ADMIN} or {SYSTEM_READER} or project_id:%(target.project.id)s"
                             " or (role:reader and domain_id:%(target.project.domain_id)s)"),
    "identity:list_projects": ADMIN_OR_READER,
    "identity:list_user_projects": (f"{ADMIN_OR_OWNER} or {SYSTEM_READER} or "
                                    "(role:reader and domain_id:%(target.user.domain_id)s)"),
    "identity:create_project": ADMIN,
    "identity:update_project": ADMIN,
    "identity:delete_project": ADMIN,
    "identity:list_project_tags": ("rule:identity:get_project"),
    "identity:get_project_tag": ("rule:identity:get_project"),
    "identity:update_project_tags": ADMIN,
    "identity:create_project_tag": ADMIN,
    "identity:delete_project_tag": ADMIN,
    "identity:delete_project_tags": ADMIN,
    # users
    "identity:get_user": (f"{ADMIN_OR_OWNER} or {SYSTEM_READER} or "
                          "(role:reader and domain_id:%(target.user.domain_id)s)"),
    "identity:list_users": ADMIN_OR_READER,
    "identity:create_user": ADMIN,
    "identity:update_user": ADMIN,
    "identity:delete_user": ADMIN,
    "identity:change_password": OWNER,
    "identity:list_groups_for_user": (f"{ADMIN_OR_OWNER} or {SYSTEM_READER} or "
                                      "(role:reader and domain_id:%(target.user.domain_id)s)"),
    # groups
    "identity:get_group": (f"{ADMIN} or {SYSTEM_READER} or "
                           "(role:reader and domain_id:%(target.group.domain_id)s)"),
    "identity:list_groups": ADMIN_OR_READER,
    "identity:create_group": ADMIN,
    "identity:update_group": ADMIN,
    "identity:delete_group": ADMIN,
    "identity:list_users_in_group": (f"{ADMIN} or {SYSTEM_READER} or "
                                     "(role:reader and domain_id:%(target.group.domain_id)s)"),
    "identity:remove_user_from_group": ADMIN,
    "identity:check_user_in_group": (f"{ADMIN} or {SYSTEM_READER} or "
                                     "(role:reader and domain_id:%(target.group.domain_id)s)"),
    "identity:add_user_to_group": ADMIN,
    # roles
    "identity:get_role": f"{ADMIN} or {SYSTEM_READER}",
    "identity:list_roles": f"{ADMIN} or {SYSTEM_READER}",
    "identity:create_role": ADMIN,
    "identity:update_role": ADMIN,
    "identity:delete_role": ADMIN,
    "identity:get_domain_role": ADMIN_OR_READER,
    "identity:list_domain_roles": ADMIN_OR_READER,
    "identity:create_domain_role": ADMIN,
    "identity:update_domain_role": ADMIN,
    "identity:delete_domain_role": ADMIN,
    "identity:get_implied_role": f"{ADMIN} or {SYSTEM_READER}",
    "identity:list_implied_roles": f"{ADMIN} or {SYSTEM_READER}",
    "identity:create_implied_role": ADMIN,
    "identity:delete_implied_role": ADMIN,
    "identity:list_role_inference_rules": f"{ADMIN} or {SYSTEM_READER}",
    "identity:check_implied_role": f"{ADMIN} or {SYSTEM_READER}",
    # grants and assignments
    "identity:check_grant": ADMIN_OR_READER,
    "identity:list_grants": ADMIN_OR_READER,
    "identity:create_grant": ADMIN,
    "identity:revoke_grant": ADMIN,
    "identity:list_system_grants_for_user": f"{ADMIN} or {SYSTEM_READER}",
    "identity:check_system_grant_for_user": f"{ADMIN} or {SYSTEM_READER}",
    "identity:create_system_grant_for_user": ADMIN,
    "identity:revoke_system_grant_for_user": ADMIN,
    "identity:list_system_grants_for_group": f"{ADMIN} or {SYSTEM_READER}",
    "identity:check_system_grant_for_group": f"{ADMIN} or {SYSTEM_READER}",
    "identity:create_system_grant_for_group": ADMIN,
    "identity:revoke_system_grant_for_group": ADMIN,
    "identity:list_role_assignments": (f"{ADMIN} or {SYSTEM_READER} or "
                                       "(role:reader and domain_id:%(target.domain_id)s)"),
    "identity:list_role_assignments_for_tree": (f"{ADMIN} or (role:reader and "
                                                "project_id:%(target.project.id)s)"),
    # catalog
    "identity:get_region": "",
    "identity:list_regions": "",
    "identity:create_region": ADMIN,
    "identity:update_region": ADMIN,
    "identity:delete_region": ADMIN,
    "identity:get_service": f"{ADMIN} or {SYSTEM_READER}",
    "identity:list_services": f"{ADMIN} or {SYSTEM_READER}",
    "identity:create_service": ADMIN,
    "identity:update_service": ADMIN,
    "identity:delete_service": ADMIN,
    "identity:get_endpoint": f"{ADMIN} or {SYSTEM_READER}",
    "identity:list_endpoints": f"{ADMIN} or {SYSTEM_READER}",
    "identity:create_endpoint": ADMIN,
    "identity:update_endpoint": ADMIN,
    "identity:delete_endpoint": ADMIN,
    # application credentials and access rules
    "identity:get_application_credential": f"{ADMIN} or {SYSTEM_READER} or {OWNER}",
    "identity:list_application_credentials": f"{ADMIN} or {SYSTEM_READER} or {OWNER}",
    "identity:create_application_credential": OWNER,
    "identity:delete_application_credential": ADMIN_OR_OWNER,
    "identity:get_access_rule": f"{ADMIN} or {SYSTEM_READER} or {OWNER}",
    "identity:list_access_rules": f"{ADMIN} or {SYSTEM_READER} or {OWNER}",
    "identity:delete_access_rule": ADMIN_OR_OWNER,
    # unified limits
    "identity:get_registered_limit": "",
    "identity:list_registered_limits": "",
    "identity:create_registered_limits": ADMIN,
    "identity:update_registered_limit": ADMIN,
    "identity:delete_registered_limit": ADMIN,
    "identity:get_limit_model": "",
    "identity:get_limit": (f"{ADMIN} or {SYSTEM_READER} or "
                           "domain_id:%(target.limit.domain_id)s or "
                           "domain_id:%(target.limit.project.domain_id)s or "
                           "project_id:%(target.limit.project_id)s"),
    "identity:list_limits": "",
    "identity:create_limits": ADMIN,
    "identity:update_limit": ADMIN,
    "identity:delete_limit": ADMIN,
    # credentials
    "identity:get_credential": (f"{ADMIN} or {SYSTEM_READER} or "
                                "user_id:%(target.credential.user_id)s"),
    "identity:list_credentials": (f"{ADMIN} or {SYSTEM_READER} or "
                                  "user_id:%(target.credential.user_id)s"),
    "identity:create_credential": f"{ADMIN} or user_id:%(target.credential.user_id)s",
    "identity:update_credential": f"{ADMIN} or user_id:%(target.credential.user_id)s",
    "identity:delete_credential": f"{ADMIN} or user_id:%(target.credential.user_id)s",
}
