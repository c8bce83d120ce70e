"""Default placement policy: administrators and services only, as Placement itself ships.

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
    "default": ADMIN_OR_SERVICE,
    **{f"placement:{action}": ADMIN_OR_SERVICE for action in _ACTIONS},
}
