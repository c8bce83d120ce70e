"""Tenancy matrix: roles reader/member/manager/admin x own/other project x every resource and
action of compute and network (and the main ones of image, placement and identity), against
a TABLE of the status codes OpenStack's default policies give (Nova's, Neutron's, Glance's,
Placement's and Keystone's secure-RBAC defaults).

One cloud (fake compute driver, two fake hosts). Project ``alpha`` is the callers' own
project: four users hold exactly one role on it each (``reader``, ``member``, ``manager``,
``admin``; Keystone's implied roles add the lower ones to their tokens). Project ``beta`` is
the other project; its resources are made by its own member. A row's ``own`` codes are for
``alpha``'s resources, ``other`` for ``beta``'s (``-``: not applicable). Rows marked
``fresh`` get a new resource for every cell (deletes, state-changing actions).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import RunningCloud, start_cloud

ROLES = ("reader", "member", "manager", "admin")
#: Microversions the rows are written for (Nova 2.79: tags, keypair generation...).
VERSIONS = {"compute": {"OpenStack-API-Version": "compute 2.79"},
            "placement": {"OpenStack-API-Version": "placement latest"}}

# (service, label, method, path, body, own codes, other codes[, fresh factory])
# Codes: reader member manager admin. Paths and bodies interpolate {name} from the scope's
# resources ({cell} is unique per cell); a fresh factory's resource is {fresh}.
TABLE: list[tuple[Any, ...]] = [
    # ------------------------------------------------------------------ compute (Nova)
    ("compute", "list servers", "GET", "/v2.1/servers", None,
     "200 200 200 200", "-"),
    ("compute", "list servers of all projects", "GET", "/v2.1/servers/detail?all_tenants=1",
     None, "403 403 403 200", "-"),
    ("compute", "create server", "POST", "/v2.1/servers",
     {"server": {"name": "m-{cell}", "imageRef": "{image}", "flavorRef": "42",
                 "networks": "none"}}, "403 202 202 202", "-"),
    ("compute", "create server on an external network (admin)", "POST", "/v2.1/servers",
     {"server": {"name": "x-{cell}", "imageRef": "{image}", "flavorRef": "42",
                 "networks": [{"uuid": "{external}"}]}}, "403 403 403 202", "-"),
    ("compute", "show server", "GET", "/v2.1/servers/{server}", None,
     "200 200 200 200", "404 404 404 200"),
    ("compute", "old-style URL, own project", "GET", "/v2.1/{alpha}/servers/{server}", None,
     "200 200 200 200", "-"),
    ("compute", "old-style URL, another project", "GET", "/v2.1/{beta}/servers", None,
     "400 400 400 400", "-"),
    ("compute", "old-style URL, a made-up project", "DELETE", "/v2.1/1234/servers/{server}",
     None, "400 400 400 400", "-"),
    ("compute", "update server", "PUT", "/v2.1/servers/{server}",
     {"server": {"name": "renamed-{cell}"}}, "403 200 200 200", "404 404 404 200"),
    ("compute", "delete server", "DELETE", "/v2.1/servers/{fresh}", None,
     "403 204 204 204", "404 404 404 204", "server"),
    ("compute", "stop server", "POST", "/v2.1/servers/{fresh}/action", {"os-stop": None},
     "403 202 202 202", "404 404 404 202", "active_server"),
    ("compute", "lock server", "POST", "/v2.1/servers/{fresh}/action", {"lock": None},
     "403 202 202 202", "404 404 404 202", "active_server"),
    ("compute", "cold-migrate server (manager)", "POST", "/v2.1/servers/{fresh}/action",
     {"migrate": None}, "403 403 202 202", "404 404 404 202", "active_server"),
    ("compute", "reboot server", "POST", "/v2.1/servers/{fresh}/action",
     {"reboot": {"type": "SOFT"}}, "403 202 202 202", "404 404 404 202", "active_server"),
    ("compute", "pause server", "POST", "/v2.1/servers/{fresh}/action", {"pause": None},
     "403 202 202 202", "404 404 404 202", "active_server"),
    ("compute", "live-migrate server (manager)", "POST", "/v2.1/servers/{fresh}/action",
     {"os-migrateLive": {"host": None, "block_migration": "auto"}},
     "403 403 202 202", "404 404 404 202", "active_server"),
    ("compute", "live-migrate to a named host (admin)", "POST",
     "/v2.1/servers/{server}/action",
     {"os-migrateLive": {"host": "nowhere", "block_migration": "auto"}},
     "403 403 403 400", "404 404 404 400"),
    ("compute", "suspend server", "POST", "/v2.1/servers/{fresh}/action", {"suspend": None},
     "403 202 202 202", "404 404 404 202", "active_server"),
    ("compute", "rescue server", "POST", "/v2.1/servers/{fresh}/action", {"rescue": None},
     "403 200 200 200", "404 404 404 200", "active_server"),
    ("compute", "resize server", "POST", "/v2.1/servers/{fresh}/action",
     {"resize": {"flavorRef": "84"}}, "403 202 202 202", "404 404 404 202", "active_server"),
    ("compute", "rebuild server", "POST", "/v2.1/servers/{fresh}/action",
     {"rebuild": {"imageRef": "{image}"}}, "403 202 202 202", "404 404 404 202",
     "active_server"),
    ("compute", "snapshot server", "POST", "/v2.1/servers/{fresh}/action",
     {"createImage": {"name": "snap-{cell}"}}, "403 202 202 202", "404 404 404 202",
     "active_server"),
    ("compute", "shelve server", "POST", "/v2.1/servers/{fresh}/action", {"shelve": None},
     "403 202 202 202", "404 404 404 202", "active_server"),
    ("compute", "reset server state (admin)", "POST", "/v2.1/servers/{server}/action",
     {"os-resetState": {"state": "active"}}, "403 403 403 202", "404 404 404 202"),
    ("compute", "console output", "POST", "/v2.1/servers/{server}/action",
     {"os-getConsoleOutput": {"length": 5}}, "403 200 200 200", "404 404 404 200"),
    ("compute", "list server metadata", "GET", "/v2.1/servers/{server}/metadata", None,
     "200 200 200 200", "404 404 404 200"),
    ("compute", "update server metadata", "POST", "/v2.1/servers/{server}/metadata",
     {"metadata": {"k-{cell}": "v"}}, "403 200 200 200", "404 404 404 200"),
    ("compute", "set server metadata item", "PUT", "/v2.1/servers/{server}/metadata/k",
     {"meta": {"k": "v"}}, "403 200 200 200", "404 404 404 200"),
    ("compute", "delete server metadata item", "DELETE",
     "/v2.1/servers/{server}/metadata/{key}", None, "403 204 204 204", "404 404 404 204",
     "meta_key"),
    ("compute", "list server tags", "GET", "/v2.1/servers/{server}/tags", None,
     "200 200 200 200", "404 404 404 200"),
    ("compute", "add server tag", "PUT", "/v2.1/servers/{server}/tags/t-{cell}", None,
     "403 201 201 201", "404 404 404 201"),
    ("compute", "delete server tag", "DELETE", "/v2.1/servers/{server}/tags/{tag}", None,
     "403 204 204 204", "404 404 404 204", "server_tag"),
    ("compute", "replace server tags", "PUT", "/v2.1/servers/{server}/tags",
     {"tags": ["a-{cell}"]}, "403 200 200 200", "404 404 404 200"),
    ("compute", "attach an interface", "POST", "/v2.1/servers/{server}/os-interface",
     {"interfaceAttachment": {"net_id": "{network}"}}, "403 200 200 200", "404 404 404 200"),
    ("compute", "server addresses", "GET", "/v2.1/servers/{server}/ips", None,
     "200 200 200 200", "404 404 404 200"),
    ("compute", "server interfaces", "GET", "/v2.1/servers/{server}/os-interface", None,
     "200 200 200 200", "404 404 404 200"),
    ("compute", "server actions", "GET", "/v2.1/servers/{server}/os-instance-actions", None,
     "200 200 200 200", "404 404 404 200"),
    ("compute", "server password", "GET", "/v2.1/servers/{server}/os-server-password", None,
     "200 200 200 200", "404 404 404 200"),
    ("compute", "clear server password", "DELETE", "/v2.1/servers/{server}/os-server-password",
     None, "403 204 204 204", "404 404 404 204"),
    ("compute", "server security groups", "GET", "/v2.1/servers/{server}/os-security-groups",
     None, "200 200 200 200", "404 404 404 200"),
    ("compute", "server diagnostics (admin)", "GET", "/v2.1/servers/{server}/diagnostics",
     None, "403 403 403 200", "404 404 404 200"),
    ("compute", "server migrations (manager)", "GET", "/v2.1/servers/{server}/migrations",
     None, "403 403 200 200", "404 404 404 200"),
    ("compute", "list flavors", "GET", "/v2.1/flavors/detail", None, "200 200 200 200", "-"),
    ("compute", "flavor extra specs", "GET", "/v2.1/flavors/42/os-extra_specs", None,
     "200 200 200 200", "-"),
    ("compute", "create flavor (admin)", "POST", "/v2.1/flavors",
     {"flavor": {"name": "f-{cell}", "ram": 64, "vcpus": 1, "disk": 0}},
     "403 403 403 200", "-"),
    ("compute", "update flavor (admin)", "PUT", "/v2.1/flavors/42",
     {"flavor": {"description": "d-{cell}"}}, "403 403 403 200", "-"),
    ("compute", "set flavor extra specs (admin)", "POST", "/v2.1/flavors/42/os-extra_specs",
     {"extra_specs": {"hw:k": "v"}}, "403 403 403 200", "-"),
    ("compute", "create keypair (any user)", "POST", "/v2.1/os-keypairs",
     {"keypair": {"name": "k-{cell}"}}, "201 201 201 201", "-"),
    ("compute", "list keypairs", "GET", "/v2.1/os-keypairs", None, "200 200 200 200", "-"),
    ("compute", "another user's keypair", "GET",
     "/v2.1/os-keypairs/{keypair}?user_id={owner_id}", None, "-", "403 403 403 200"),
    ("compute", "create server group", "POST", "/v2.1/os-server-groups",
     {"server_group": {"name": "g-{cell}", "policy": "affinity"}},
     "403 200 200 200", "-"),
    ("compute", "list server groups", "GET", "/v2.1/os-server-groups", None,
     "200 200 200 200", "-"),
    ("compute", "show server group", "GET", "/v2.1/os-server-groups/{group}", None,
     "200 200 200 200", "404 404 404 200"),
    ("compute", "delete server group", "DELETE", "/v2.1/os-server-groups/{fresh}", None,
     "403 204 204 204", "404 404 404 204", "group"),
    ("compute", "show quotas", "GET", "/v2.1/os-quota-sets/{project}", None,
     "200 200 200 200", "403 403 403 200"),
    ("compute", "show quota usage", "GET", "/v2.1/os-quota-sets/{project}/detail", None,
     "200 200 200 200", "403 403 403 200"),
    ("compute", "update quotas (admin)", "PUT", "/v2.1/os-quota-sets/{project}",
     {"quota_set": {"metadata_items": 128}}, "403 403 403 200", "403 403 403 200"),
    ("compute", "limits", "GET", "/v2.1/limits", None, "200 200 200 200", "-"),
    ("compute", "usage of a project", "GET", "/v2.1/os-simple-tenant-usage/{project}", None,
     "200 200 200 200", "403 403 403 200"),
    ("compute", "usage of all projects (admin)", "GET", "/v2.1/os-simple-tenant-usage",
     None, "403 403 403 200", "-"),
    ("compute", "availability zones", "GET", "/v2.1/os-availability-zone", None,
     "200 200 200 200", "-"),
    ("compute", "availability zones detail (admin)", "GET",
     "/v2.1/os-availability-zone/detail", None, "403 403 403 200", "-"),
    ("compute", "migrations of the project (manager)", "GET",
     "/v2.1/os-migrations?project_id={project}", None, "403 403 200 200", "403 403 403 200"),
    ("compute", "hypervisors (admin)", "GET", "/v2.1/os-hypervisors", None,
     "403 403 403 200", "-"),
    ("compute", "services (admin)", "GET", "/v2.1/os-services", None, "403 403 403 200", "-"),
    ("compute", "aggregates (admin)", "GET", "/v2.1/os-aggregates", None,
     "403 403 403 200", "-"),
    ("compute", "create aggregate (admin)", "POST", "/v2.1/os-aggregates",
     {"aggregate": {"name": "a-{cell}"}}, "403 403 403 200", "-"),
    ("compute", "quota class (admin)", "GET", "/v2.1/os-quota-class-sets/default", None,
     "403 403 403 200", "-"),
    ("compute", "server external events (service, admin)", "POST",
     "/v2.1/os-server-external-events",
     {"events": [{"name": "network-changed", "server_uuid": "{server}"}]},
     "403 403 403 200", "-"),
    # ------------------------------------------------------------------ network (Neutron)
    ("network", "list networks", "GET", "/v2.0/networks", None, "200 200 200 200", "-"),
    ("network", "create network", "POST", "/v2.0/networks",
     {"network": {"name": "n-{cell}", "project_id": "{project}"}},
     "403 201 201 201", "403 403 403 201"),
    ("network", "create external network (admin)", "POST", "/v2.0/networks",
     {"network": {"name": "e-{cell}", "router:external": True}}, "403 403 403 201", "-"),
    ("network", "create provider network (admin)", "POST", "/v2.0/networks",
     {"network": {"name": "v-{cell}", "provider:network_type": "vxlan"}},
     "403 403 403 201", "-"),
    ("network", "create shared network (admin)", "POST", "/v2.0/networks",
     {"network": {"name": "s-{cell}", "shared": True}}, "403 403 403 201", "-"),
    ("network", "show network", "GET", "/v2.0/networks/{network}", None,
     "200 200 200 200", "404 404 404 200"),
    ("network", "update network", "PUT", "/v2.0/networks/{network}",
     {"network": {"name": "r-{cell}"}}, "403 200 200 200", "404 404 404 200"),
    ("network", "delete network", "DELETE", "/v2.0/networks/{fresh}", None,
     "403 204 204 204", "404 404 404 204", "network"),
    ("network", "show another project's shared network", "GET", "/v2.0/networks/{shared}",
     None, "-", "200 200 200 200"),
    ("network", "update another project's shared network", "PUT", "/v2.0/networks/{shared}",
     {"network": {"name": "sh-{cell}"}}, "-", "403 403 403 200"),
    ("network", "port on another project's shared network", "POST", "/v2.0/ports",
     {"port": {"network_id": "{shared}"}}, "-", "201 201 201 201"),
    ("network", "port with a chosen IP on another project's shared network", "POST",
     "/v2.0/ports", {"port": {"network_id": "{shared}",
                              "fixed_ips": [{"ip_address": "{ip}"}]}},
     "-", "403 403 403 201", "ip"),
    ("network", "port with address pairs on another project's shared network", "POST",
     "/v2.0/ports", {"port": {"network_id": "{shared}",
                              "allowed_address_pairs": [{"ip_address": "10.9.9.9"}]}},
     "-", "403 403 403 201"),
    ("network", "tag network", "PUT", "/v2.0/networks/{network}/tags/t-{cell}", None,
     "403 201 201 201", "404 404 404 201"),
    ("network", "delete network tag", "DELETE", "/v2.0/networks/{network}/tags/{tag}", None,
     "403 204 204 204", "404 404 404 204", "network_tag"),
    ("network", "replace network tags", "PUT", "/v2.0/networks/{network}/tags",
     {"tags": ["a-{cell}"]}, "403 200 200 200", "404 404 404 200"),
    ("network", "list network tags", "GET", "/v2.0/networks/{network}/tags", None,
     "200 200 200 200", "404 404 404 200"),
    ("network", "create subnet", "POST", "/v2.0/subnets",
     {"subnet": {"network_id": "{network}", "ip_version": 4, "cidr": "{cidr}"}},
     "403 201 201 201", "404 404 404 201", "cidr"),
    ("network", "show subnet", "GET", "/v2.0/subnets/{subnet}", None,
     "200 200 200 200", "404 404 404 200"),
    ("network", "update subnet", "PUT", "/v2.0/subnets/{subnet}",
     {"subnet": {"name": "r-{cell}"}}, "403 200 200 200", "404 404 404 200"),
    ("network", "delete subnet", "DELETE", "/v2.0/subnets/{fresh}", None,
     "403 204 204 204", "404 404 404 204", "subnet"),
    ("network", "create port", "POST", "/v2.0/ports", {"port": {"network_id": "{network}"}},
     "403 201 201 201", "404 404 404 201"),
    ("network", "create port bound to a host (admin, service)", "POST", "/v2.0/ports",
     {"port": {"network_id": "{network}", "binding:host_id": "somehost"}},
     "403 403 403 201", "404 404 404 201"),
    ("network", "show port", "GET", "/v2.0/ports/{port}", None,
     "200 200 200 200", "404 404 404 200"),
    ("network", "update port", "PUT", "/v2.0/ports/{port}", {"port": {"name": "r-{cell}"}},
     "403 200 200 200", "404 404 404 200"),
    ("network", "change a port's MAC (manager)", "PUT", "/v2.0/ports/{port}",
     {"port": {"mac_address": "{mac}"}}, "403 403 200 200", "404 404 404 200", "mac"),
    ("network", "delete port", "DELETE", "/v2.0/ports/{fresh}", None,
     "403 204 204 204", "404 404 404 204", "port"),
    ("network", "create security group", "POST", "/v2.0/security-groups",
     {"security_group": {"name": "g-{cell}"}}, "403 201 201 201", "-"),
    ("network", "show security group", "GET", "/v2.0/security-groups/{sg}", None,
     "200 200 200 200", "404 404 404 200"),
    ("network", "update security group", "PUT", "/v2.0/security-groups/{sg}",
     {"security_group": {"description": "d-{cell}"}}, "403 200 200 200", "404 404 404 200"),
    ("network", "delete security group", "DELETE", "/v2.0/security-groups/{fresh}", None,
     "403 204 204 204", "404 404 404 204", "sg"),
    ("network", "create security group rule", "POST", "/v2.0/security-group-rules",
     {"security_group_rule": {"security_group_id": "{sg}", "direction": "ingress",
                              "protocol": "tcp", "port_range_min": "{port_no}",
                              "port_range_max": "{port_no}"}},
     "403 201 201 201", "403 403 403 201", "port_no"),
    ("network", "show security group rule", "GET", "/v2.0/security-group-rules/{rule}", None,
     "200 200 200 200", "404 404 404 200"),
    ("network", "delete security group rule", "DELETE", "/v2.0/security-group-rules/{fresh}",
     None, "403 204 204 204", "404 404 404 204", "rule"),
    ("network", "create router", "POST", "/v2.0/routers", {"router": {"name": "r-{cell}"}},
     "403 201 201 201", "-"),
    ("network", "create router with a gateway", "POST", "/v2.0/routers",
     {"router": {"name": "g-{cell}", "external_gateway_info": {"network_id": "{external}"}}},
     "403 201 201 201", "-"),
    ("network", "create router without SNAT (admin)", "POST", "/v2.0/routers",
     {"router": {"name": "s-{cell}", "external_gateway_info": {
         "network_id": "{external}", "enable_snat": False}}}, "403 403 403 201", "-"),
    ("network", "show router", "GET", "/v2.0/routers/{router}", None,
     "200 200 200 200", "404 404 404 200"),
    ("network", "update router", "PUT", "/v2.0/routers/{router}",
     {"router": {"name": "r-{cell}"}}, "403 200 200 200", "404 404 404 200"),
    ("network", "add router interface", "PUT", "/v2.0/routers/{fresh}/add_router_interface",
     {"subnet_id": "{fresh_subnet}"}, "403 200 200 200", "404 404 404 200",
     "router_and_subnet"),
    ("network", "remove router interface", "PUT",
     "/v2.0/routers/{fresh}/remove_router_interface", {"subnet_id": "{fresh_subnet}"},
     "403 200 200 200", "404 404 404 200", "router_with_interface"),
    ("network", "delete router", "DELETE", "/v2.0/routers/{fresh}", None,
     "403 204 204 204", "404 404 404 204", "router"),
    ("network", "create floating IP", "POST", "/v2.0/floatingips",
     {"floatingip": {"floating_network_id": "{external}"}}, "403 201 201 201", "-"),
    ("network", "show floating IP", "GET", "/v2.0/floatingips/{fip}", None,
     "200 200 200 200", "404 404 404 200"),
    ("network", "update floating IP", "PUT", "/v2.0/floatingips/{fip}",
     {"floatingip": {"description": "d-{cell}"}}, "403 200 200 200", "404 404 404 200"),
    ("network", "delete floating IP", "DELETE", "/v2.0/floatingips/{fresh}", None,
     "403 204 204 204", "404 404 404 204", "fip"),
    ("network", "create subnet pool", "POST", "/v2.0/subnetpools",
     {"subnetpool": {"name": "p-{cell}", "prefixes": ["100.{octet}.0.0/16"]}},
     "403 201 201 201", "-", "octet"),
    ("network", "show subnet pool", "GET", "/v2.0/subnetpools/{pool}", None,
     "200 200 200 200", "404 404 404 200"),
    ("network", "update subnet pool", "PUT", "/v2.0/subnetpools/{pool}",
     {"subnetpool": {"description": "d-{cell}"}}, "403 200 200 200", "404 404 404 200"),
    ("network", "delete subnet pool", "DELETE", "/v2.0/subnetpools/{fresh}", None,
     "403 204 204 204", "404 404 404 204", "pool"),
    ("network", "quota details", "GET", "/v2.0/quotas/{project}/details", None,
     "200 200 200 200", "403 403 200 200"),
    ("network", "default quotas", "GET", "/v2.0/quotas/{project}/default", None,
     "200 200 200 200", "403 403 200 200"),
    ("network", "availability zones", "GET", "/v2.0/availability_zones", None,
     "200 200 200 200", "-"),
    ("network", "show an agent (admin; hidden from others)", "GET", "/v2.0/agents/{agent}",
     None, "404 404 404 200", "-"),
    ("network", "show quotas", "GET", "/v2.0/quotas/{project}", None,
     "200 200 200 200", "403 403 200 200"),
    ("network", "list quotas (manager)", "GET", "/v2.0/quotas", None,
     "403 403 200 200", "-"),
    ("network", "update quotas (admin)", "PUT", "/v2.0/quotas/{project}",
     {"quota": {"network": 100}}, "403 403 403 200", "403 403 403 200"),
    ("network", "IP availability (admin)", "GET", "/v2.0/network-ip-availabilities", None,
     "403 403 403 200", "-"),
    # Last network row: it puts the projects' network quotas back to the defaults.
    ("network", "reset quotas (admin)", "DELETE", "/v2.0/quotas/{project}", None,
     "403 403 403 204", "403 403 403 204"),
    # ------------------------------------------------------------------ image (Glance)
    ("image", "list images", "GET", "/v2/images", None, "200 200 200 200", "-"),
    ("image", "create image", "POST", "/v2/images",
     {"name": "i-{cell}", "disk_format": "raw", "container_format": "bare"},
     "403 201 201 201", "-"),
    ("image", "show private image", "GET", "/v2/images/{private_image}", None,
     "200 200 200 200", "404 404 404 200"),
    ("image", "download an image (members, not readers)", "GET", "/v2/images/{image}/file",
     None, "403 200 200 200", "-"),
    ("image", "list tasks (admin)", "GET", "/v2/tasks", None, "403 403 403 200", "-"),
    ("image", "delete private image", "DELETE", "/v2/images/{fresh}", None,
     "403 204 204 204", "404 404 404 204", "image"),
    # ------------------------------------------------------------------ placement
    ("placement", "list resource providers (admin)", "GET", "/resource_providers", None,
     "403 403 403 200", "-"),
    ("placement", "create resource class (admin)", "POST", "/resource_classes",
     {"name": "CUSTOM_C{octet}"}, "403 403 403 201", "-", "octet"),
    ("placement", "usages of a project", "GET", "/usages?project_id={project}", None,
     "200 200 200 200", "403 403 403 200"),
    # ------------------------------------------------------------------ identity (Keystone)
    ("identity", "show project", "GET", "/v3/projects/{project}", None,
     "200 200 200 200", "403 403 403 200"),
    ("identity", "list users (admin)", "GET", "/v3/users", None, "403 403 403 200", "-"),
    ("identity", "create project (admin)", "POST", "/v3/projects",
     {"project": {"name": "p-{cell}"}}, "403 403 403 201", "-"),
    ("identity", "show a user", "GET", "/v3/users/{owner_id}", None,
     "403 403 403 200", "403 403 403 200"),
    ("identity", "list roles (admin)", "GET", "/v3/roles", None, "403 403 403 200", "-"),
    ("identity", "my projects", "GET", "/v3/auth/projects", None, "200 200 200 200", "-"),
]

#: Where onestack knowingly differs from OpenStack (none: every cell must match).
DIFFERENCES: dict[tuple[str, str, str], str] = {}


@dataclass
class Scope:
    """One project: its id, its owner's token and its resources by name."""

    name: str
    project: str
    owner_token: str
    owner_id: str
    ids: dict[str, str] = field(default_factory=dict)


@dataclass
class World:
    cloud: RunningCloud
    admin_token: str
    tokens: dict[str, str]
    scopes: dict[str, Scope]
    http: httpx.Client
    counter: list[int] = field(default_factory=lambda: [0])

    def call(self, service: str, method: str, path: str, token: str, body: Any = None,
             expect: int | None = None) -> httpx.Response:
        headers = {"X-Auth-Token": token, **VERSIONS.get(service, {})}
        r = self.http.request(method, self.cloud.url(service) + path, json=body,
                              headers=headers)
        if expect is not None:
            assert r.status_code == expect, f"{method} {path}: {r.status_code} {r.text}"
        return r

    def next(self) -> int:
        self.counter[0] += 1
        return self.counter[0]


def _identity(w: World, method: str, path: str, body: Any = None,
              expect: int | None = None) -> Any:
    r = w.call("identity", method, path, w.admin_token, body, expect)
    return r.json() if r.content else None


def _user_with_role(w: World, name: str, project: str, role: str) -> tuple[str, str]:
    pw = "pw-" + uuid.uuid4().hex[:12]
    uid = _identity(w, "POST", "/v3/users", {"user": {"name": name, "password": pw}},
                    201)["user"]["id"]
    rid = _identity(w, "GET", f"/v3/roles?name={role}", None, 200)["roles"][0]["id"]
    _identity(w, "PUT", f"/v3/projects/{project}/users/{uid}/roles/{rid}", None, 204)
    return uid, pw


def _wait_active(w: World, token: str, server: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        s = w.call("compute", "GET", f"/v2.1/servers/{server}", token, None, 200
                   ).json()["server"]
        if s["status"] == "ACTIVE" and s["OS-EXT-STS:task_state"] is None:
            return
        assert s["status"] != "ERROR" and time.monotonic() < deadline, s["status"]
        time.sleep(0.05)


def _factory(w: World, kind: str, sc: Scope) -> dict[str, Any]:
    """A new resource of ``kind`` in ``sc`` made by its owner: the cell's variables."""
    n = w.next()
    tok = sc.owner_token
    if kind in ("server", "active_server"):
        sid = w.call("compute", "POST", "/v2.1/servers", tok, {"server": {
            "name": f"f-{n}", "imageRef": w.scopes["alpha"].ids["image"], "flavorRef": "42",
            "networks": "none"}}, 202).json()["server"]["id"]
        if kind == "active_server":
            _wait_active(w, tok, sid)
        return {"fresh": sid}
    if kind == "group":
        return {"fresh": w.call("compute", "POST", "/v2.1/os-server-groups", tok, {
            "server_group": {"name": f"g-{n}", "policy": "affinity"}}, 200
        ).json()["server_group"]["id"]}
    if kind == "network":
        return {"fresh": _net(w, tok, f"n-{n}")}
    if kind == "subnet":
        return {"fresh": _subnet(w, tok, sc.ids["network"], f"10.{n % 250}.{n // 250}.0/24")}
    if kind == "cidr":
        return {"cidr": f"172.16.{n % 250}.0/24"}
    if kind == "port":
        return {"fresh": w.call("network", "POST", "/v2.0/ports", tok, {
            "port": {"network_id": sc.ids["network"]}}, 201).json()["port"]["id"]}
    if kind == "sg":
        return {"fresh": w.call("network", "POST", "/v2.0/security-groups", tok, {
            "security_group": {"name": f"g-{n}"}}, 201).json()["security_group"]["id"]}
    if kind == "port_no":
        return {"port_no": 1000 + n}
    if kind == "rule":
        return {"fresh": _rule(w, tok, sc.ids["sg"], 2000 + n)}
    if kind == "router":
        return {"fresh": _router(w, tok, f"r-{n}")}
    if kind == "router_and_subnet":
        net = _net(w, tok, f"rn-{n}")
        return {"fresh": _router(w, tok, f"r-{n}"),
                "fresh_subnet": _subnet(w, tok, net, "192.168.7.0/24")}
    if kind == "router_with_interface":
        net = _net(w, tok, f"rn-{n}")
        router, subnet = _router(w, tok, f"r-{n}"), _subnet(w, tok, net, "192.168.8.0/24")
        w.call("network", "PUT", f"/v2.0/routers/{router}/add_router_interface", tok,
               {"subnet_id": subnet}, 200)
        return {"fresh": router, "fresh_subnet": subnet}
    if kind == "pool":
        return {"fresh": w.call("network", "POST", "/v2.0/subnetpools", tok, {"subnetpool": {
            "name": f"p-{n}", "prefixes": [f"100.{n % 250}.0.0/16"]}}, 201
        ).json()["subnetpool"]["id"]}
    if kind == "network_tag":
        w.call("network", "PUT", f"/v2.0/networks/{sc.ids['network']}/tags/x-{n}", tok,
               None, 201)
        return {"tag": f"x-{n}"}
    if kind == "server_tag":
        w.call("compute", "PUT", f"/v2.1/servers/{sc.ids['server']}/tags/x-{n}", tok,
               None, 201)
        return {"tag": f"x-{n}"}
    if kind == "meta_key":
        w.call("compute", "PUT", f"/v2.1/servers/{sc.ids['server']}/metadata/x-{n}", tok,
               {"meta": {f"x-{n}": "v"}}, 200)
        return {"key": f"x-{n}"}
    if kind == "ip":
        return {"ip": f"10.251.0.{10 + n % 200}"}
    if kind == "mac":
        return {"mac": f"fa:16:3e:00:{n // 256 % 256:02x}:{n % 256:02x}"}
    if kind == "fip":
        return {"fresh": _fip(w, tok)}
    if kind == "octet":
        return {"octet": n % 250}
    if kind == "image":
        return {"fresh": _image(w, tok, f"i-{n}")}
    raise AssertionError(kind)


def _net(w: World, tok: str, name: str, **extra: Any) -> str:
    return str(w.call("network", "POST", "/v2.0/networks", tok, {
        "network": {"name": name, **extra}}, 201).json()["network"]["id"])


def _subnet(w: World, tok: str, net: str, cidr: str) -> str:
    return str(w.call("network", "POST", "/v2.0/subnets", tok, {"subnet": {
        "network_id": net, "ip_version": 4, "cidr": cidr}}, 201).json()["subnet"]["id"])


def _rule(w: World, tok: str, sg: str, port: int) -> str:
    return str(w.call("network", "POST", "/v2.0/security-group-rules", tok, {
        "security_group_rule": {"security_group_id": sg, "direction": "ingress",
                                "protocol": "tcp", "port_range_min": port,
                                "port_range_max": port}}, 201
    ).json()["security_group_rule"]["id"])


def _router(w: World, tok: str, name: str) -> str:
    return str(w.call("network", "POST", "/v2.0/routers", tok, {"router": {"name": name}},
                      201).json()["router"]["id"])


def _fip(w: World, tok: str) -> str:
    return str(w.call("network", "POST", "/v2.0/floatingips", tok, {"floatingip": {
        "floating_network_id": w.scopes["alpha"].ids["external"]}}, 201
    ).json()["floatingip"]["id"])


def _image(w: World, tok: str, name: str, **extra: Any) -> str:
    return str(w.call("image", "POST", "/v2/images", tok, {
        "name": name, "disk_format": "raw", "container_format": "bare", **extra}, 201
    ).json()["id"])


def _register_agent(data_dir: Path) -> str:
    """An agent row as another host's data plane registers it (this cloud's noop data plane
    runs none), written straight into the cloud's SQLite database."""
    import sqlite3

    aid = str(uuid.uuid4())
    with contextlib.closing(sqlite3.connect(data_dir / "onestack.db")) as db, db:
        db.execute("INSERT INTO net_agent (id, agent_type, binary, host, topic, admin_state_up,"
                   " description, availability_zone, configurations, created_at, started_at)"
                   " VALUES (?, 'L3 agent', 'neutron-l3-agent', 'other-host', 'l3_agent', 1,"
                   " '', 'nova', '{}', '2026-01-01 00:00:00', '2026-01-01 00:00:00')", (aid,))
    return aid


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    tmp = Path(tempfile.mkdtemp(prefix="onestack-tenancy-"))
    cloud = start_cloud(tmp / "data", args=["--fake-hosts", "2"])
    http = httpx.Client(timeout=30)
    try:
        w = World(cloud, cloud.token(), {}, {}, http)
        for name in ("alpha", "beta"):
            pid = _identity(w, "POST", "/v3/projects", {"project": {"name": name}},
                            201)["project"]["id"]
            uid, pw = _user_with_role(w, f"{name}-owner", pid, "member")
            w.scopes[name] = Scope(name, pid, cloud.token(f"{name}-owner", pw, name), uid)
            # Unlimited compute quota: the matrix boots a few dozen servers per project.
            w.call("compute", "PUT", f"/v2.1/os-quota-sets/{pid}", w.admin_token,
                   {"quota_set": {"instances": -1, "cores": -1, "ram": -1,
                                  "server_groups": -1}}, 200)
            quota = w.call("network", "GET", f"/v2.0/quotas/{pid}", w.admin_token, None,
                           200).json()["quota"]
            w.call("network", "PUT", f"/v2.0/quotas/{pid}", w.admin_token,
                   {"quota": dict.fromkeys(quota, -1)}, 200)
        alpha = w.scopes["alpha"]
        for role in ROLES:
            _, pw = _user_with_role(w, f"alpha-{role}", alpha.project, role)
            w.tokens[role] = cloud.token(f"alpha-{role}", pw, "alpha")
        # Shared fixtures: a public image, an external network with a subnet, a network
        # of beta's shared with everyone.
        image = _image(w, w.admin_token, "public", visibility="public")
        r = w.http.put(cloud.url("image") + f"/v2/images/{image}/file", content=b"\0" * 512,
                       headers={"X-Auth-Token": w.admin_token,
                                "Content-Type": "application/octet-stream"})
        assert r.status_code == 204, r.text
        external = _net(w, w.admin_token, "ext", **{"router:external": True})
        _subnet(w, w.admin_token, external, "203.0.113.0/24")
        shared = _net(w, w.admin_token, "shared", shared=True,
                      project_id=w.scopes["beta"].project)
        _subnet(w, w.admin_token, shared, "10.251.0.0/24")
        for sc in w.scopes.values():
            tok = sc.owner_token
            ids = sc.ids
            ids.update(image=image, external=external, shared=shared, project=sc.project,
                       alpha=alpha.project, beta=w.scopes["beta"].project,
                       owner_id=sc.owner_id)
            ids["server"] = w.call("compute", "POST", "/v2.1/servers", tok, {"server": {
                "name": "main", "imageRef": image, "flavorRef": "42", "networks": "none"}},
                202).json()["server"]["id"]
            ids["group"] = _factory(w, "group", sc)["fresh"]
            ids["keypair"] = w.call("compute", "POST", "/v2.1/os-keypairs", tok, {
                "keypair": {"name": f"kp-{sc.name}"}}, 201).json()["keypair"]["name"]
            ids["network"] = _net(w, tok, f"net-{sc.name}")
            ids["subnet"] = _subnet(w, tok, ids["network"], "10.250.0.0/24")
            ids["port"] = _factory(w, "port", sc)["fresh"]
            ids["sg"] = _factory(w, "sg", sc)["fresh"]
            ids["rule"] = _rule(w, tok, ids["sg"], 22)
            ids["router"] = _router(w, tok, f"r-{sc.name}")
            ids["fip"] = _fip(w, tok)
            ids["pool"] = w.call("network", "POST", "/v2.0/subnetpools", tok, {"subnetpool": {
                "name": f"pool-{sc.name}", "prefixes": [f"10.{w.next() + 100}.0.0/16"]}},
                201).json()["subnetpool"]["id"]
            ids["private_image"] = _image(w, tok, f"private-{sc.name}")
        agent_id = _register_agent(tmp / "data")
        for sc in w.scopes.values():
            sc.ids["agent"] = agent_id
            _wait_active(w, sc.owner_token, sc.ids["server"])
        yield w
    finally:
        http.close()
        cloud.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def _fill(value: Any, names: dict[str, Any]) -> Any:
    """``value`` with ``{name}`` replaced (a whole-string placeholder keeps its type)."""
    if isinstance(value, str):
        if value.startswith("{") and value.endswith("}") and value[1:-1] in names:
            return names[value[1:-1]]
        return value.format(**names)
    if isinstance(value, dict):
        return {_fill(k, names): _fill(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, names) for v in value]
    return value


def _cells() -> list[tuple[Any, ...]]:
    out = []
    for row in TABLE:
        service, label, method, path, body, own, other, *fresh = row
        for scope, codes in (("own", own), ("other", other)):
            if codes == "-":
                continue
            for role, code in zip(ROLES, codes.split(), strict=True):
                out.append((service, label, method, path, body, scope, role, int(code),
                            fresh[0] if fresh else None))
    return out


CELLS = _cells()


def test_table_is_well_formed() -> None:
    assert len(CELLS) >= 400
    for row in TABLE:
        for codes in row[5:7]:
            assert codes == "-" or len(codes.split()) == len(ROLES), row


def test_tokens_carry_implied_roles(world: World) -> None:
    """Keystone's bootstrap: admin => manager => member => reader, in every token."""
    want = {"reader": {"reader"}, "member": {"member", "reader"},
            "manager": {"manager", "member", "reader"},
            "admin": {"admin", "manager", "member", "reader"}}
    for role, token in world.tokens.items():
        r = world.http.get(world.cloud.auth_url + "/auth/tokens",
                           headers={"X-Auth-Token": world.admin_token, "X-Subject-Token": token})
        assert r.status_code == 200, r.text
        assert {x["name"] for x in r.json()["token"]["roles"]} == want[role]


def test_tenancy_matrix(world: World) -> None:
    """Every cell of TABLE, in one pass (a few hundred requests); the failures are listed
    together with OpenStack's code and ours."""
    failures: list[str] = []
    started = time.monotonic()
    for service, label, method, path, body, scope, role, want, fresh in CELLS:
        sc = world.scopes["alpha" if scope == "own" else "beta"]
        names: dict[str, Any] = dict(sc.ids, cell=f"{world.next()}")
        if fresh:
            names.update(_factory(world, fresh, sc))
        r = world.call(service, method, _fill(path, names), world.tokens[role],
                       _fill(body, names))
        key = (label, scope, role)
        if r.status_code != want and key not in DIFFERENCES:
            failures.append(f"{service}: {label} [{scope}, {role}] {method} -> "
                            f"{r.status_code}, OpenStack {want}: {r.text[:160]}")
        if r.status_code in (403, 404):
            _assert_fault(service, r)
    took = time.monotonic() - started
    total = len(CELLS)
    print(f"tenancy matrix: {total - len(failures)}/{total} cells as OpenStack "
          f"({100 * (total - len(failures)) / total:.1f} %) in {took:.1f} s")
    assert not failures, "\n".join(failures)


def _assert_fault(service: str, r: httpx.Response) -> None:
    """Refusals carry the service's own fault body."""
    doc = r.json() if r.headers.get("content-type", "").startswith("application/json") \
        else None
    if service == "compute":
        assert doc and {"forbidden", "itemNotFound", "badRequest"} & set(doc), r.text
    elif service == "network":
        assert doc and "NeutronError" in doc, r.text
    elif service == "identity":
        assert doc and doc["error"]["code"] == r.status_code, r.text
    elif service == "placement":
        assert doc and doc["errors"][0]["status"] == r.status_code, r.text



def test_a_role_below_reader_reads_nothing(world: World) -> None:
    """A token whose only role is a custom one: Neutron hides the project's resources
    (``get_*`` refuses: 404), Nova refuses (403), neither lets it write."""
    _identity(world, "POST", "/v3/roles", {"role": {"name": "observer"}}, 201)
    alpha = world.scopes["alpha"]
    _, pw = _user_with_role(world, "alpha-observer", alpha.project, "observer")
    token = world.cloud.token("alpha-observer", pw, "alpha")
    ids = alpha.ids
    assert world.call("network", "GET", f"/v2.0/networks/{ids['network']}", token
                      ).status_code == 404
    assert world.call("network", "GET", f"/v2.0/ports/{ids['port']}", token).status_code == 404
    assert world.call("network", "POST", "/v2.0/networks", token,
                      {"network": {"name": "x"}}).status_code == 403
    r = world.call("compute", "GET", f"/v2.1/servers/{ids['server']}", token)
    assert r.status_code == 403 and "forbidden" in r.json()
    assert world.call("compute", "PUT", f"/v2.1/servers/{ids['server']}", token,
                      {"server": {"name": "x"}}).status_code == 403


def test_project_manager_sees_its_migrations_without_hosts(world: World) -> None:
    """Nova: a project manager lists its project's migrations, the hosts blanked."""
    alpha = world.scopes["alpha"]
    server = _factory(world, "active_server", alpha)["fresh"]
    world.call("compute", "POST", f"/v2.1/servers/{server}/action", world.tokens["admin"],
               {"migrate": None}, 202)
    path = f"/v2.1/os-migrations?project_id={alpha.project}"
    seen = world.call("compute", "GET", path, world.tokens["manager"], None, 200
                      ).json()["migrations"]
    mine = [m for m in seen if m["instance_uuid"] == server]
    assert mine and all(m["source_compute"] is None and m["dest_compute"] is None
                        for m in seen)
    admin = world.call("compute", "GET", path, world.tokens["admin"], None, 200
                       ).json()["migrations"]
    assert any(m["instance_uuid"] == server and m["source_compute"] for m in admin)
