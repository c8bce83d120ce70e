"""Default network policy rules (Neutron's defaults, condensed).

Ownership and visibility (404 for what a project cannot see) are decided in the manager's
queries; these rules gate the admin-only attributes and actions.
"""

from __future__ import annotations

ADMIN = "rule:context_is_admin"

RULES: dict[str, str] = {
    "context_is_admin": "role:admin or is_admin:1",
    "default": "rule:context_is_admin or project_id:%(project_id)s",
    "create_network:shared": ADMIN,
    "create_network:router:external": ADMIN,
    "create_network:is_default": ADMIN,
    "create_network:provider:network_type": ADMIN,
    "update_network:shared": ADMIN,
    "update_network:router:external": ADMIN,
    "update_network:is_default": ADMIN,
    "update_network:provider:network_type": ADMIN,
    "create_subnetpool:shared": ADMIN,
    "create_subnetpool:is_default": ADMIN,
    "update_subnetpool:is_default": ADMIN,
    "create_port:binding:host_id": ADMIN,
    "update_port:binding:host_id": ADMIN,
    "update_port:mac_address": ADMIN,
    "create_router:distributed": ADMIN,
    "create_router:ha": ADMIN,
    "update_router:distributed": ADMIN,
    "update_router:ha": ADMIN,
    "update_router:external_gateway_info:enable_snat": ADMIN,
    "update_router:external_gateway_info:external_fixed_ips": ADMIN,
    "create_floatingip:floating_ip_address": ADMIN,
    "get_network_ip_availability": ADMIN,
}
