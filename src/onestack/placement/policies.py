"""Default placement policy: administrators and services only, as Placement itself ships
(``GET /usages`` also for the readers of the project asked about).

Operators may override any rule in ``policy_file`` (e.g. let a ``reader`` list providers).
"""

from __future__ import annotations

ADMIN_OR_SERVICE = "rule:admin_or_service_api"

_ACTIONS = [
    "resource_providers:list", "resource_providers:create", "resource_providers:show",
    "resource_providers:update", "resource_providers:delete",
    "resource_providers:inventories:list", "resource_providers:inventories:create",
    "resource_providers:inventories:show", "resource_providers:inventories:update",
    "resource_providers:inventories:delete",
    "resource_providers:aggregates:list", "resource_providers:aggregates:update",
    "resource_providers:usages", "resource_providers:allocations:list",
    "resource_providers:traits:list", "resource_providers:traits:update",
    "resource_providers:traits:delete",
    "resource_classes:list", "resource_classes:create", "resource_classes:show",
    "resource_classes:update", "resource_classes:delete",
    "traits:list", "traits:show", "traits:update", "traits:delete",
    "allocations:list", "allocations:manage", "allocations:update", "allocations:delete",
    "allocation_candidates:list", "usages",
]

RULES: dict[str, str] = {
    "admin_api": "role:admin or is_admin:True",
    "service_api": "role:service",
    "admin_or_service_api": "rule:admin_api or rule:service_api",
    "project_reader_api": "role:reader and project_id:%(project_id)s",
    "admin_or_project_reader_or_service_api": "role:admin or rule:project_reader_api or "
                                              "role:service",
    "default": ADMIN_OR_SERVICE,
    **{f"placement:{action}": ADMIN_OR_SERVICE for action in _ACTIONS},
    # Total usages of a project: also that project's readers (Placement's default).
    "placement:usages": "rule:admin_or_project_reader_or_service_api",
    "placement:reshaper:reshape": "rule:service_api",
}
