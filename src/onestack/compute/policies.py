"""Default compute policy rules (Nova's defaults, condensed).

Project members act on their project's servers (tenancy is also enforced in the manager,
where another project's server is simply not found); cloud administrators (``admin`` role)
run the admin APIs. Operators override any rule with ``policy_file``.
"""

from __future__ import annotations

ADMIN = "rule:admin_api"
MEMBER = "rule:project_member_or_admin"
READER = "rule:project_reader_or_admin"

RULES: dict[str, str] = {
    "admin_api": "role:admin or is_admin:1",
    "project_member_or_admin": "rule:admin_api or project_id:%(project_id)s",
    "project_reader_or_admin": "rule:admin_api or project_id:%(project_id)s",
    "default": MEMBER,
    # servers
    "os_compute_api:servers:index": READER,
    "os_compute_api:servers:detail": READER,
    "os_compute_api:servers:index:get_all_tenants": ADMIN,
    "os_compute_api:servers:detail:get_all_tenants": ADMIN,
    "os_compute_api:servers:allow_all_filters": ADMIN,
    "os_compute_api:servers:show": READER,
    "os_compute_api:servers:show:host_status": ADMIN,
    "os_compute_api:servers:create": MEMBER,
    "os_compute_api:servers:create:forced_host": ADMIN,
    "os_compute_api:servers:create:requested_destination": ADMIN,
    "os_compute_api:servers:update": MEMBER,
    "os_compute_api:servers:delete": MEMBER,
    "os_compute_api:servers:action": MEMBER,
    "os_compute_api:servers:migrations": ADMIN,
    "os_compute_api:os-admin-actions:reset_state": ADMIN,
    "os_compute_api:os-migrate-server:migrate": ADMIN,
    "os_compute_api:os-migrate-server:migrate_live": ADMIN,
    "os_compute_api:os-lock-server:unlock:unlock_override": ADMIN,
    "os_compute_api:os-server-diagnostics": ADMIN,
    "os_compute_api:os-shelve:shelve_offload": ADMIN,
    "os_compute_api:os-attach-interfaces:list": READER,
    "os_compute_api:os-attach-interfaces:show": READER,
    "os_compute_api:os-attach-interfaces:create": MEMBER,
    "os_compute_api:os-attach-interfaces:delete": MEMBER,
    # flavors
    "os_compute_api:os-flavor-manage:create": ADMIN,
    "os_compute_api:os-flavor-manage:update": ADMIN,
    "os_compute_api:os-flavor-manage:delete": ADMIN,
    "os_compute_api:os-flavor-extra-specs:create": ADMIN,
    "os_compute_api:os-flavor-extra-specs:update": ADMIN,
    "os_compute_api:os-flavor-extra-specs:delete": ADMIN,
    "os_compute_api:os-flavor-access": ADMIN,
    "os_compute_api:os-flavor-access:add_tenant_access": ADMIN,
    "os_compute_api:os-flavor-access:remove_tenant_access": ADMIN,
    # keypairs (other users' keypairs need admin)
    "os_compute_api:os-keypairs:other_user": ADMIN,
    # admin APIs
    "os_compute_api:os-hypervisors": ADMIN,
    "os_compute_api:os-services": ADMIN,
    "os_compute_api:os-aggregates": ADMIN,
    "os_compute_api:os-availability-zone:detail": ADMIN,
    "os_compute_api:os-quota-sets:update": ADMIN,
    "os_compute_api:os-quota-sets:delete": ADMIN,
    "os_compute_api:os-quota-sets:show": "rule:admin_api or project_id:%(project_id)s",
    "os_compute_api:os-quota-class-sets:show": "rule:admin_api or "
                                               "quota_class:%(quota_class)s",
    "os_compute_api:os-quota-class-sets:update": ADMIN,
    "os_compute_api:os-simple-tenant-usage:list": ADMIN,
    "os_compute_api:os-simple-tenant-usage:show": "rule:admin_api or "
                                                  "project_id:%(project_id)s",
    "os_compute_api:os-migrations:index": ADMIN,
    "os_compute_api:os-server-groups:index:all_projects": ADMIN,
    "os_compute_api:limits:other_project": ADMIN,
    "os_compute_api:os-server-external-events:create": ADMIN,
    "os_compute_api:os-console-auth-tokens": ADMIN,
    "os_compute_api:os-hosts": ADMIN,
    "os_compute_api:os-instance-usage-audit-log": ADMIN,
}
