"""Default network policy rules: Neutron's secure-RBAC defaults (reader < member < manager <
admin, project scope, and the ``service`` role), as data.

Who may *see* a resource (own, shared or external networks, ports on the caller's networks)
is decided in the manager's queries: another project's private resource is a 404. The
manager then checks these rules in Neutron's order (``network/authz.py``): a refused create
is a 403; a refused update/delete/action is a 403 when the caller may read the resource,
else a 404. Targets carry ``project_id``, ``network:project_id`` (the owner of a port's or
subnet's network), ``security_group:project_id``, ``shared`` and ``router:external``, which
the ``field:`` checks below read.

Keystone's implied roles (admin => manager => member => reader) put every lower role into
the token. Operators override any rule with ``policy_file``.
"""

from __future__ import annotations

ADMIN = "rule:admin_only"
ADMIN_OR_MANAGER = "(rule:admin_only) or (role:manager and project_id:%(project_id)s)"
ADMIN_OR_MEMBER = "(rule:admin_only) or (role:member and project_id:%(project_id)s)"
ADMIN_OR_READER = "(rule:admin_only) or (role:reader and project_id:%(project_id)s)"

#: Neutron's defaults (neutron/conf/policies/*.py) of the resources onestack serves.
RULES: dict[str, str] = {
    # base
    "context_is_admin": "role:admin",
    "context_with_global_access": "!",
    "service_api": "role:service",
    "owner": "project_id:%(project_id)s",
    "admin_or_owner": "rule:context_is_admin or rule:owner",
    "context_is_advsvc": "role:advsvc",
    "admin_or_network_owner": "rule:context_is_admin or project_id:%(network:project_id)s",
    "admin_owner_or_network_owner": "rule:owner or rule:admin_or_network_owner",
    "network_owner": "project_id:%(network:project_id)s",
    "admin_only": "rule:context_is_admin",
    "regular_user": "",
    "shared": "field:networks:shared=True",
    "default": "rule:admin_or_owner",
    "admin_or_ext_parent_owner": (
        "rule:context_is_admin or project_id:%(ext_parent:project_id)s"),
    "ext_parent_owner": "project_id:%(ext_parent:project_id)s",
    "sg_owner": "project_id:%(security_group:project_id)s",
    # network
    "external": "field:networks:router:external=True",
    "create_network": ADMIN_OR_MEMBER,
    "create_network:shared": ADMIN,
    "create_network:router:external": ADMIN,
    "create_network:is_default": ADMIN,
    "create_network:port_security_enabled": ADMIN_OR_MEMBER,
    "create_network:segments": ADMIN,
    "create_network:provider:network_type": ADMIN,
    "create_network:provider:physical_network": ADMIN,
    "create_network:provider:segmentation_id": ADMIN,
    "create_network:tags": ADMIN_OR_MEMBER,
    "get_network": (
        "(rule:admin_only) or (role:reader and project_id:%(project_id)s) or "
        "rule:service_api or rule:shared or rule:external or rule:context_is_advsvc"),
    "get_network:segments": ADMIN,
    "get_network:provider:network_type": ADMIN,
    "get_network:provider:physical_network": ADMIN,
    "get_network:provider:segmentation_id": ADMIN,
    "get_network:tags": (
        "(rule:admin_only) or (role:reader and project_id:%(project_id)s) or rule:shared "
        "or rule:external or rule:context_is_advsvc"),
    "update_network": ADMIN_OR_MEMBER,
    "update_network:segments": ADMIN,
    "update_network:shared": ADMIN,
    "update_network:provider:network_type": ADMIN,
    "update_network:provider:physical_network": ADMIN,
    "update_network:provider:segmentation_id": ADMIN,
    "update_network:router:external": ADMIN,
    "update_network:is_default": ADMIN,
    "update_network:port_security_enabled": ADMIN_OR_MEMBER,
    "update_network:tags": ADMIN_OR_MEMBER,
    "delete_network": ADMIN_OR_MEMBER,
    "delete_network:tags": ADMIN_OR_MEMBER,
    # subnet
    "external_network": "field:subnets:router:external=True",
    "create_subnet": "(rule:admin_only) or (role:member and rule:network_owner)",
    "create_subnet:segment_id": ADMIN,
    "create_subnet:service_types": ADMIN,
    "create_subnet:tags": (
        "role:member and project_id:%(project_id)s or (rule:admin_only) or (role:member "
        "and rule:network_owner)"),
    "get_subnet": (
        "role:reader and project_id:%(project_id)s or rule:shared or "
        "rule:external_network or (rule:admin_only) or (role:reader and "
        "rule:network_owner) or rule:service_api"),
    "get_subnet:segment_id": ADMIN,
    "get_subnet:tags": (
        "role:reader and project_id:%(project_id)s or rule:shared or "
        "rule:external_network or (rule:admin_only) or (role:reader and "
        "rule:network_owner)"),
    "update_subnet": (
        "role:member and project_id:%(project_id)s or (rule:admin_only) or (role:member "
        "and rule:network_owner)"),
    "update_subnet:segment_id": ADMIN,
    "update_subnet:service_types": ADMIN,
    "update_subnet:tags": (
        "role:member and project_id:%(project_id)s or (rule:admin_only) or (role:member "
        "and rule:network_owner)"),
    "delete_subnet": (
        "role:member and project_id:%(project_id)s or (rule:admin_only) or (role:member "
        "and rule:network_owner)"),
    "delete_subnet:tags": (
        "role:member and project_id:%(project_id)s or (rule:admin_only) or (role:member "
        "and rule:network_owner)"),
    # address scope
    "shared_address_scopes": "field:address_scopes:shared=True",
    "create_address_scope": ADMIN_OR_MEMBER,
    "create_address_scope:shared": ADMIN,
    "get_address_scope": (
        "(rule:admin_only) or (role:reader and project_id:%(project_id)s) or "
        "rule:shared_address_scopes"),
    "update_address_scope": ADMIN_OR_MEMBER,
    "update_address_scope:shared": ADMIN,
    "delete_address_scope": ADMIN_OR_MEMBER,
    # subnetpool
    "shared_subnetpools": "field:subnetpools:shared=True",
    "create_subnetpool": ADMIN_OR_MEMBER,
    "create_subnetpool:shared": ADMIN,
    "create_subnetpool:is_default": ADMIN,
    "create_subnetpool:tags": ADMIN_OR_MEMBER,
    "get_subnetpool": (
        "(rule:admin_only) or (role:reader and project_id:%(project_id)s) or "
        "rule:shared_subnetpools"),
    "get_subnetpool:tags": (
        "(rule:admin_only) or (role:reader and project_id:%(project_id)s) or "
        "rule:shared_subnetpools"),
    "update_subnetpool": ADMIN_OR_MEMBER,
    "update_subnetpool:is_default": ADMIN,
    "update_subnetpool:tags": ADMIN_OR_MEMBER,
    "delete_subnetpool": ADMIN_OR_MEMBER,
    "delete_subnetpool:tags": ADMIN_OR_MEMBER,
    "onboard_network_subnets": ADMIN_OR_MEMBER,
    "add_prefixes": ADMIN_OR_MEMBER,
    "remove_prefixes": ADMIN_OR_MEMBER,
    # port
    "network_device": "field:port:device_owner=~^network:",
    "admin_or_data_plane_int": "rule:context_is_admin or role:data_plane_integrator",
    "create_port": (
        "(rule:admin_only) or (rule:service_api) or role:member and rule:network_owner or"
        " rule:shared"),
    "create_port:device_id": (
        "(rule:admin_only) or (role:member and project_id:%(project_id)s) or "
        "rule:service_api"),
    "create_port:device_owner": (
        "not rule:network_device or (rule:admin_only) or (rule:service_api) or "
        "role:member and rule:network_owner"),
    "create_port:mac_address": (
        "(rule:admin_only) or (rule:service_api) or role:member and rule:network_owner"),
    "create_port:fixed_ips": (
        "(rule:admin_only) or (rule:service_api) or role:member and rule:network_owner or"
        " rule:shared"),
    "create_port:fixed_ips:ip_address": (
        "(rule:admin_only) or (rule:service_api) or role:member and rule:network_owner"),
    "create_port:fixed_ips:subnet_id": (
        "(rule:admin_only) or (rule:service_api) or role:member and rule:network_owner or"
        " rule:shared"),
    "create_port:port_security_enabled": (
        "(rule:admin_only) or (rule:service_api) or role:member and rule:network_owner"),
    "create_port:binding:host_id": "(rule:admin_only) or (rule:service_api)",
    "create_port:binding:profile": "rule:service_api",
    "create_port:binding:vnic_type": (
        "(rule:admin_only) or (role:member and project_id:%(project_id)s) or "
        "rule:service_api"),
    "create_port:allowed_address_pairs": (
        "(rule:admin_only) or (role:member and rule:network_owner) or rule:service_api"),
    "create_port:allowed_address_pairs:mac_address": (
        "(rule:admin_only) or (role:member and rule:network_owner) or rule:service_api"),
    "create_port:allowed_address_pairs:ip_address": (
        "(rule:admin_only) or (role:member and rule:network_owner) or rule:service_api"),
    "create_port:hints": ADMIN,
    "create_port:trusted": ADMIN,
    "create_port:tags": (
        "(rule:admin_only) or (role:member and project_id:%(project_id)s) or "
        "rule:context_is_advsvc"),
    "get_port": (
        "(rule:admin_only) or (rule:service_api) or role:reader and rule:network_owner or"
        " role:reader and project_id:%(project_id)s"),
    "get_port:binding:vif_type": "(rule:admin_only) or (rule:service_api)",
    "get_port:binding:vif_details": "(rule:admin_only) or (rule:service_api)",
    "get_port:binding:host_id": "(rule:admin_only) or (rule:service_api)",
    "get_port:binding:profile": "(rule:admin_only) or (rule:service_api)",
    "get_port:resource_request": ADMIN,
    "get_port:hints": ADMIN,
    "get_port:trusted": ADMIN,
    "get_port:tags": (
        "rule:context_is_advsvc or (rule:admin_only) or (role:reader and "
        "rule:network_owner) or role:reader and project_id:%(project_id)s"),
    "update_port": (
        "(rule:admin_only) or (rule:service_api) or role:member and "
        "project_id:%(project_id)s"),
    "update_port:device_id": (
        "(rule:admin_only) or (role:member and project_id:%(project_id)s) or "
        "rule:service_api"),
    "update_port:device_owner": (
        "not rule:network_device or (rule:admin_only) or (rule:service_api) or "
        "role:member and rule:network_owner"),
    "update_port:mac_address": (
        "(rule:admin_only) or (rule:service_api) or role:manager and rule:network_owner"),
    "update_port:fixed_ips": (
        "(rule:admin_only) or (rule:service_api) or role:member and rule:network_owner"),
    "update_port:fixed_ips:ip_address": (
        "(rule:admin_only) or (rule:service_api) or role:member and rule:network_owner"),
    "update_port:fixed_ips:subnet_id": (
        "(rule:admin_only) or (rule:service_api) or role:member and rule:network_owner or"
        " rule:shared"),
    "update_port:port_security_enabled": (
        "(rule:admin_only) or (rule:service_api) or role:member and rule:network_owner"),
    "update_port:binding:host_id": "(rule:admin_only) or (rule:service_api)",
    "update_port:binding:profile": "rule:service_api",
    "update_port:binding:vnic_type": (
        "(rule:admin_only) or (rule:service_api) or role:member and "
        "project_id:%(project_id)s"),
    "update_port:allowed_address_pairs": (
        "(rule:admin_only) or (role:member and rule:network_owner) or rule:service_api"),
    "update_port:allowed_address_pairs:mac_address": (
        "(rule:admin_only) or (role:member and rule:network_owner) or rule:service_api"),
    "update_port:allowed_address_pairs:ip_address": (
        "(rule:admin_only) or (role:member and rule:network_owner) or rule:service_api"),
    "update_port:data_plane_status": "rule:admin_only or role:data_plane_integrator",
    "update_port:hints": ADMIN,
    "update_port:trusted": ADMIN,
    "update_port:tags": (
        "(rule:admin_only) or (role:member and project_id:%(project_id)s) or "
        "rule:context_is_advsvc"),
    "delete_port": (
        "(rule:admin_only) or (rule:service_api) or role:member and rule:network_owner or"
        " role:member and project_id:%(project_id)s"),
    "delete_port:tags": (
        "rule:context_is_advsvc or role:member and project_id:%(project_id)s or "
        "(rule:admin_only) or (role:member and rule:network_owner)"),
    # security group
    "admin_or_sg_owner": "rule:context_is_admin or project_id:%(security_group:project_id)s",
    "admin_owner_or_sg_owner": "rule:owner or rule:admin_or_sg_owner",
    "shared_security_group": "field:security_groups:shared=True",
    "rule_default_sg": "field:security_group_rules:belongs_to_default_sg=True",
    "create_security_group": ADMIN_OR_MEMBER,
    "create_security_group:tags": ADMIN_OR_MEMBER,
    "get_security_group": (
        "(rule:admin_only) or (role:reader and project_id:%(project_id)s) or "
        "rule:shared_security_group"),
    "get_security_group:tags": (
        "(rule:admin_only) or (role:reader and project_id:%(project_id)s) or "
        "rule:shared_security_group"),
    "update_security_group": ADMIN_OR_MEMBER,
    "update_security_group:tags": ADMIN_OR_MEMBER,
    "delete_security_group": ADMIN_OR_MEMBER,
    "delete_security_group:tags": ADMIN_OR_MEMBER,
    "create_security_group_rule": "(rule:admin_only) or (role:member and rule:sg_owner)",
    "get_security_group_rule": "(rule:admin_only) or (role:reader and rule:sg_owner)",
    "delete_security_group_rule": "(rule:admin_only) or (role:member and rule:sg_owner)",
    # service providers
    "get_service_provider": "rule:regular_user",
    # router
    "create_router": ADMIN_OR_MEMBER,
    "create_router:distributed": ADMIN,
    "create_router:ha": ADMIN,
    "create_router:external_gateway_info": ADMIN_OR_MEMBER,
    "create_router:external_gateway_info:network_id": ADMIN_OR_MEMBER,
    "create_router:external_gateway_info:enable_snat": ADMIN,
    "create_router:external_gateway_info:external_fixed_ips": ADMIN,
    "create_router:enable_default_route_bfd": ADMIN,
    "create_router:enable_default_route_ecmp": ADMIN,
    "create_router:tags": ADMIN_OR_MEMBER,
    "get_router": ADMIN_OR_READER,
    "get_router:distributed": ADMIN,
    "get_router:ha": ADMIN,
    "get_router:tags": ADMIN_OR_READER,
    "update_router": ADMIN_OR_MEMBER,
    "update_router:distributed": ADMIN,
    "update_router:ha": ADMIN,
    "update_router:external_gateway_info": ADMIN_OR_MEMBER,
    "update_router:external_gateway_info:network_id": ADMIN_OR_MEMBER,
    "update_router:external_gateway_info:enable_snat": ADMIN,
    "update_router:external_gateway_info:external_fixed_ips": ADMIN,
    "update_router:enable_default_route_bfd": ADMIN,
    "update_router:enable_default_route_ecmp": ADMIN,
    "update_router:tags": ADMIN_OR_MEMBER,
    "delete_router": ADMIN_OR_MEMBER,
    "delete_router:tags": ADMIN_OR_MEMBER,
    "add_router_interface": ADMIN_OR_MEMBER,
    "remove_router_interface": ADMIN_OR_MEMBER,
    "add_extraroutes": ADMIN_OR_MEMBER,
    "remove_extraroutes": ADMIN_OR_MEMBER,
    "add_external_gateways": ADMIN_OR_MEMBER,
    "add_external_gateways:external_gateways": ADMIN_OR_MEMBER,
    "add_external_gateways:external_gateways:network_id": ADMIN_OR_MEMBER,
    "add_external_gateways:external_gateways:enable_snat": ADMIN,
    "add_external_gateways:external_gateways:external_fixed_ips": ADMIN,
    "update_external_gateways": ADMIN_OR_MEMBER,
    "update_external_gateways:external_gateways": ADMIN_OR_MEMBER,
    "update_external_gateways:external_gateways:network_id": ADMIN_OR_MEMBER,
    "update_external_gateways:external_gateways:enable_snat": ADMIN,
    "update_external_gateways:external_gateways:external_fixed_ips": ADMIN,
    "remove_external_gateways": ADMIN_OR_MEMBER,
    "remove_external_gateways:external_gateways": ADMIN_OR_MEMBER,
    # floatingip
    "create_floatingip": ADMIN_OR_MEMBER,
    "create_floatingip:floating_ip_address": ADMIN_OR_MANAGER,
    "create_floatingip:tags": ADMIN_OR_MEMBER,
    "get_floatingip": ADMIN_OR_READER,
    "get_floatingip:tags": ADMIN_OR_READER,
    "update_floatingip": ADMIN_OR_MEMBER,
    "update_floatingip:tags": ADMIN_OR_MEMBER,
    "delete_floatingip": ADMIN_OR_MEMBER,
    "delete_floatingip:tags": ADMIN_OR_MEMBER,
    # floatingip pools
    "get_floatingip_pool": ADMIN_OR_READER,
    # quotas
    "get_quota": ADMIN_OR_MANAGER,
    "update_quota": ADMIN,
    "delete_quota": ADMIN,
    # network ip availability
    "get_network_ip_availability": "(rule:admin_only) or (rule:service_api)",
    # agent
    "create_agent": ADMIN,
    "get_agent": ADMIN,
    "update_agent": ADMIN,
    "delete_agent": ADMIN,
    "create_dhcp-network": ADMIN,
    "get_dhcp-networks": ADMIN,
    "delete_dhcp-network": ADMIN,
    "create_l3-router": ADMIN,
    "get_l3-routers": ADMIN,
    "update_l3-router": ADMIN,
    "delete_l3-router": ADMIN,
    "get_dhcp-agents": ADMIN,
    "get_l3-agents": ADMIN,
    # availability zone
    "get_availability_zone": "role:reader",
}
RULES["context_is_admin"] = "role:admin or is_admin:True"
