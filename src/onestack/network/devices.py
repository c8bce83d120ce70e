"""The device API the compute service uses: ports created, bound, unbound and deleted for a
server."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from onestack.common.context import RequestContext
from onestack.db import network as t
from onestack.network import views
from onestack.network.base import ManagerBase
from onestack.network.common import conflict


class DevicesMixin(ManagerBase):
    """The device API the compute service uses: ports created, bound, unbound and deleted for a
    server."""

    # ================================================================== compute API
    def create_port_for_device(self, ctx: RequestContext, network_id: str, device_id: str,
                               *, device_owner: str = "compute:nova",
                               fixed_ips: list[dict[str, str]] | None = None,
                               security_groups: list[str] | None = None,
                               host: str | None = None,
                               name: str = "") -> dict[str, Any]:
        """Create a port on ``network_id`` for a server (``device_id``) as ``ctx``'s project.

        ``fixed_ips`` as in the API (``[{"subnet_id"|"ip_address": ...}]``); ``security_groups``
        ids (default: the project's ``default`` group); ``host`` binds it at once. Raises the
        API's errors (404 NetworkNotFound, 409 IpAddressGenerationFailure/OverQuota, ...).
        """
        body: dict[str, Any] = {"network_id": network_id, "device_id": device_id,
                                "device_owner": device_owner, "name": name}
        if fixed_ips is not None:
            body["fixed_ips"] = fixed_ips
        if security_groups is not None:
            body["security_groups"] = security_groups
        if host:
            body["binding:host_id"] = host
        admin = RequestContext.admin()
        admin.project_id = ctx.project_id
        # Visibility of the network is the caller's; binding is the service's right.
        self.get_network(ctx, network_id)
        return self.create_ports(admin, [body])[0]

    def attach_port(self, ctx: RequestContext, port_id: str, device_id: str,
                    device_owner: str = "compute:nova") -> dict[str, Any]:
        """Claim an existing (user-made) port for a server; 409 PortInUse if it has one."""
        def run(s: Session) -> dict[str, Any]:
            port = self._visible_port(s, ctx, port_id)
            if port.device_id and port.device_id != device_id:
                raise conflict(f"Port {port_id} is still in use.", "PortInUse")
            port.device_id, port.device_owner = device_id, device_owner
            self._touch(port)
            s.flush()
            return self._port_views(s, RequestContext.admin(), [port])[0]
        return self._tx(run)

    def bind_port(self, port_id: str, host: str, profile: dict[str, Any] | None = None,
                  vnic_type: str | None = None) -> dict[str, Any]:
        """Bind a port to ``host`` through the driver (sets vif_type/vif_details, ACTIVE)."""
        body: dict[str, Any] = {"binding:host_id": host}
        if profile is not None:
            body["binding:profile"] = profile
        if vnic_type is not None:
            body["binding:vnic_type"] = vnic_type
        return self.update_port(RequestContext.admin(), port_id, body)

    def unbind_port(self, port_id: str, detach: bool = False) -> dict[str, Any]:
        """Clear a port's binding (status DOWN); with ``detach`` also its device_id/owner."""
        body: dict[str, Any] = {"binding:host_id": "", "binding:profile": {}}
        if detach:
            body.update(device_id="", device_owner="")
        return self.update_port(RequestContext.admin(), port_id, body)

    def delete_ports_for_device(self, device_id: str, only_owner_prefix: str = "compute:"
                                ) -> list[str]:
        """Delete the ports of a server whose ``device_owner`` starts with the prefix and
        return their ids. Ports the user made and attached (``attach_port``) should be
        released first with ``unbind_port(port_id, detach=True)`` so they survive."""
        deleted: list[str] = []
        for port in self.list_ports(RequestContext.admin(), device_id=device_id):
            if port["device_owner"].startswith(only_owner_prefix):
                self.delete_port(RequestContext.admin(), port["id"], internal=True)
                deleted.append(port["id"])
        return deleted

    def device_ports(self, device_id: str) -> list[dict[str, Any]]:
        """A server's ports with network details: each port view plus ``floating_ips``
        (``[{"floating_ip_address", "fixed_ip_address", "id"}]``), ``network_name``,
        ``mtu`` and ``subnets`` (``{id: {cidr, gateway_ip, dns_nameservers, ...}}``)."""
        admin = RequestContext.admin()
        ports = self.list_ports(admin, device_id=device_id)
        if not ports:
            return []

        def run(s: Session) -> list[dict[str, Any]]:
            ids = [p["id"] for p in ports]
            fips: dict[str, list[dict[str, Any]]] = defaultdict(list)
            for fip in s.execute(select(t.FloatingIP).where(t.FloatingIP.port_id.in_(ids))
                                 ).scalars():
                fips[fip.port_id or ""].append({
                    "id": fip.id, "floating_ip_address": fip.floating_ip_address,
                    "fixed_ip_address": fip.fixed_ip_address})
            out = []
            for p in ports:
                net = s.get(t.Network, p["network_id"])
                subs = {}
                for ip in p["fixed_ips"]:
                    sub = s.get(t.Subnet, ip["subnet_id"])
                    if sub is not None:
                        subs[sub.id] = views.subnet(sub, [])
                out.append({**p, "floating_ips": fips[p["id"]],
                            "network_name": net.name if net else "",
                            "mtu": net.mtu if net else 1500, "subnets": subs})
            return out
        return self._read(run)
