"""Neutron's authorization order for one resource, and the policy targets of its rows.

The manager first finds a row the caller may see (another project's private resource is not
found: 404), then asks the policy here:

* a create is checked against ``create_<resource>`` with the new resource as target (403);
* an update, delete or member action (``add_router_interface``...) is checked against its
  rule; when it is refused the caller learns the resource exists only if it may read it
  (``get_<resource>``): 403, otherwise 404 — as Neutron hides what a project cannot see.

Targets carry the resource's ``project_id`` plus what Neutron's rules look at: the owner of
the network a port or subnet is on (``network:project_id``), whether that network is
``shared``/``router:external``, the owner of a rule's security group
(``security_group:project_id``) and a port's ``device_owner``.
"""

from __future__ import annotations

from typing import Any

from onestack.api.policy import Policy
from onestack.common.context import RequestContext
from onestack.common.errors import Forbidden, NotFound
from onestack.db import network as t


class Authorizer:
    """Checks one action of one resource (see the module docstring)."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy

    def denied(self, action: str) -> Forbidden:
        return Forbidden(self.policy.denied.format(action=action),
                         kind=self.policy.denied_kind)

    def create(self, ctx: RequestContext, resource: str, target: dict[str, Any]) -> None:
        """``create_<resource>`` or 403."""
        action = f"create_{resource}"
        if not self.policy.check(action, ctx.policy_creds(), target):
            raise self.denied(action)

    def change(self, ctx: RequestContext, action: str, resource: str,
               target: dict[str, Any], missing: NotFound) -> None:
        """``action`` on a row the caller found, or 403 when it may read the row, else
        ``missing`` (404)."""
        creds = ctx.policy_creds()
        if self.policy.check(action, creds, target):
            return
        if self.policy.check(f"get_{resource}", creds, target):
            raise self.denied(action)
        raise missing

    def allowed(self, ctx: RequestContext, action: str, target: dict[str, Any]) -> bool:
        return self.policy.check(action, ctx.policy_creds(), target)

    def attributes(self, ctx: RequestContext, action: str, body: dict[str, Any],
                   target: dict[str, Any]) -> None:
        """Neutron's per-attribute rules (``<action>:<attribute>``) of the attributes a
        create/update sets explicitly (403 for the first refused one)."""
        creds = ctx.policy_creds()
        for rule in attribute_rules(action, body):
            if rule in self.policy.rules and not self.policy.check(
                    rule, creds, {**target, **_set_fields(body)}):
                raise self.denied(rule)


#: Port attributes with a rule of their own (spoofing and binding protection).
_PORT_ATTRIBUTES = ("mac_address", "port_security_enabled", "allowed_address_pairs",
                    "device_owner", "binding:host_id", "binding:profile")


def attribute_rules(action: str, body: dict[str, Any]) -> list[str]:
    """The ``<action>:<attribute>`` rules of the port attributes ``body`` sets."""
    rules = [f"{action}:{key}" for key in _PORT_ATTRIBUTES if key in body]
    if "fixed_ips" in body:
        rules.append(f"{action}:fixed_ips")
        entries = body["fixed_ips"] if isinstance(body["fixed_ips"], list) else []
        if any(isinstance(e, dict) and "ip_address" in e for e in entries):
            rules.append(f"{action}:fixed_ips:ip_address")
        if any(isinstance(e, dict) and "subnet_id" in e for e in entries):
            rules.append(f"{action}:fixed_ips:subnet_id")
    return rules


def _set_fields(body: dict[str, Any]) -> dict[str, Any]:
    """The body's scalar fields a ``field:`` check may read (``device_owner``)."""
    owner = body.get("device_owner")
    return {"device_owner": owner} if isinstance(owner, str) else {}


def network_target(net: t.Network) -> dict[str, Any]:
    return {"id": net.id, "project_id": net.project_id, "tenant_id": net.project_id,
            "shared": bool(net.shared), "router:external": bool(net.external)}


def on_network_target(row: Any, net: t.Network | None) -> dict[str, Any]:
    """A port's or subnet's target: its owner and its network's owner and sharing."""
    doc = {"id": row.id, "project_id": row.project_id, "tenant_id": row.project_id,
           "network_id": row.network_id,
           "network:project_id": net.project_id if net is not None else "",
           "shared": bool(net.shared) if net is not None else False,
           "router:external": bool(net.external) if net is not None else False}
    owner = getattr(row, "device_owner", None)
    if owner is not None:
        doc["device_owner"] = owner
    return doc


def owned_target(row: Any, **extra: Any) -> dict[str, Any]:
    """Any other resource's target: its owner (and ``extra`` fields)."""
    return {"id": row.id, "project_id": row.project_id, "tenant_id": row.project_id,
            **extra}
