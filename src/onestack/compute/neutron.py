"""``NeutronApi``: the calls compute makes on the network service, in Neutron's own terms
(networks, ports and their binding, security groups, floating IPs, subnets) with plain dicts
in and out, as Neutron's REST API has them. ``LocalNetwork`` (``compute/network.py``) and
Nova's proxy APIs (``compute/network_proxies.py``) are written against this protocol only;
``onestack up`` passes the in-process ``onestack.network.manager.NetworkManager``, a compute
host elsewhere would pass a client of ``/v2.0`` with the same methods.

Every method raises the network service's ``APIError``s (404, 409 …) with Neutron's kinds.
"""

from __future__ import annotations

from typing import Any, Protocol

from onestack.common.context import RequestContext

Doc = dict[str, Any]


class NeutronApi(Protocol):
    """The network service as compute sees it (see the module docstring)."""

    # ------------------------------------------------------------------ networks, subnets
    def list_networks(self, ctx: RequestContext) -> list[Doc]: ...

    def get_network(self, ctx: RequestContext, net_id: str) -> Doc: ...

    def get_subnet(self, ctx: RequestContext, sid: str) -> Doc: ...

    # ------------------------------------------------------------------ ports
    def list_ports(self, ctx: RequestContext, **eq: Any) -> list[Doc]: ...

    def get_port(self, ctx: RequestContext, pid: str) -> Doc: ...

    def update_port(self, ctx: RequestContext, pid: str, body: Doc,
                    revision: int | None = None) -> Doc: ...

    def delete_port(self, ctx: RequestContext, pid: str, revision: int | None = None,
                    internal: bool = False) -> None: ...

    def create_port_for_device(self, ctx: RequestContext, network_id: str, device_id: str,
                               *, device_owner: str = "compute:nova",
                               fixed_ips: list[dict[str, str]] | None = None,
                               security_groups: list[str] | None = None,
                               host: str | None = None, name: str = "") -> Doc:
        """A new port on ``network_id`` for a server (``device_id``)."""
        ...

    def attach_port(self, ctx: RequestContext, port_id: str, device_id: str,
                    device_owner: str = "compute:nova") -> Doc:
        """Claim a user's port for a server (409 when it has a device)."""
        ...

    def bind_port(self, port_id: str, host: str, profile: Doc | None = None,
                  vnic_type: str | None = None) -> Doc:
        """Bind a port to ``host`` (vif type and details set, status ACTIVE)."""
        ...

    def unbind_port(self, port_id: str, detach: bool = False) -> Doc: ...

    def device_ports(self, device_id: str) -> list[Doc]:
        """A server's ports with their networks' names, MTUs, subnets and floating IPs."""
        ...

    def delete_ports_for_device(self, device_id: str, only_owner_prefix: str = "compute:"
                                ) -> list[str]: ...

    # ------------------------------------------------------------------ security groups
    def ensure_default_security_group(self, project_id: str) -> str: ...

    def list_security_groups(self, ctx: RequestContext) -> list[Doc]: ...

    def get_security_group(self, ctx: RequestContext, gid: str) -> Doc: ...

    def create_security_groups(self, ctx: RequestContext, bodies: list[Doc]) -> list[Doc]: ...

    def update_security_group(self, ctx: RequestContext, gid: str, body: Doc,
                              revision: int | None = None) -> Doc: ...

    def delete_security_group(self, ctx: RequestContext, gid: str,
                              revision: int | None = None) -> None: ...

    def get_security_group_rule(self, ctx: RequestContext, rid: str) -> Doc: ...

    def create_security_group_rules(self, ctx: RequestContext,
                                    bodies: list[Doc]) -> list[Doc]: ...

    def delete_security_group_rule(self, ctx: RequestContext, rid: str,
                                   revision: int | None = None) -> None: ...

    # ------------------------------------------------------------------ floating IPs
    def list_floatingips(self, ctx: RequestContext) -> list[Doc]: ...

    def get_floatingip(self, ctx: RequestContext, fid: str) -> Doc: ...

    def create_floatingips(self, ctx: RequestContext, bodies: list[Doc]) -> list[Doc]: ...

    def update_floatingip(self, ctx: RequestContext, fid: str, body: Doc,
                          revision: int | None = None) -> Doc: ...

    def delete_floatingip(self, ctx: RequestContext, fid: str,
                          revision: int | None = None) -> None: ...
