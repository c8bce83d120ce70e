"""Routers (gateways, SNAT, interfaces) and floating IPs."""

from __future__ import annotations

import ipaddress
import uuid
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from onestack.common.context import RequestContext
from onestack.common.errors import APIError, NotFound
from onestack.db import network as t
from onestack.network import ipam
from onestack.network import schemas as sc
from onestack.network.authz import owned_target
from onestack.network.base import ManagerBase
from onestack.network.common import (
    FLOATINGIP_OWNER,
    ROUTER_GATEWAY,
    ROUTER_INTERFACE,
    conflict,
    not_found,
)


class RoutersMixin(ManagerBase):
    """Routers (gateways, SNAT, interfaces) and floating IPs."""

    # ================================================================== routers
    def list_routers(self, ctx: RequestContext) -> list[dict[str, Any]]:
        return self._read(lambda s: self._router_views(s, ctx, self._project_rows(
            s, ctx, t.Router, t.Router.created_at, t.Router.id)))

    def get_router(self, ctx: RequestContext, rid: str) -> dict[str, Any]:
        return self._read(lambda s: self._router_views(
            s, ctx, [self._readable(s, ctx, self._owned(s, ctx, t.Router, rid))])[0])

    def create_routers(self, ctx: RequestContext, bodies: list[dict[str, Any]]
                       ) -> list[dict[str, Any]]:
        docs = self._create_all(ctx, bodies, self._create_router,
                                lambda s, rows: self._router_views(s, ctx, rows))
        for d in docs:
            self.driver.router_updated(d, [], [])
        return docs

    def _create_router(self, s: Session, ctx: RequestContext, body: dict[str, Any]
                       ) -> t.Router:
        sc.check_keys(body, sc.ROUTER_KEYS, "router")
        project = self._owner_for_create(ctx, body, "router")
        self._check_quota(s, project, "router")
        r = self._stamp(t.Router(id=str(uuid.uuid4()), project_id=project))
        self._set_text(r, body, create=True)
        r.admin_state_up = sc.to_bool(body.get("admin_state_up", True),
                                      "admin_state_up")
        for key in ("distributed", "ha"):
            if key in body:
                self._enforce(ctx, f"create_router:{key}", {"project_id": project})
                setattr(r, key, sc.to_bool(body[key], key))
        hints = sc.to_list(body.get("availability_zone_hints", []),
                           "availability_zone_hints")
        for h in hints:
            if h != "nova":
                raise NotFound(f"AvailabilityZone {h} could not be found.",
                               kind="AvailabilityZoneNotFound")
        r.availability_zone_hints = list(hints)
        r.routes = []
        s.add(r)
        s.flush()
        if body.get("external_gateway_info"):
            self._set_gateway(s, ctx, r, body["external_gateway_info"])
        if body.get("routes"):
            raise sc.bad("Routes can only be set on update.", "InvalidInput")
        return r

    def _set_gateway(self, s: Session, ctx: RequestContext, r: t.Router, info: Any) -> None:
        info = sc.to_dict(info, "external_gateway_info")
        if info and set(info) - {"network_id", "enable_snat", "external_fixed_ips",
                                 "qos_policy_id"}:
            raise sc.bad("Invalid input for external_gateway_info. Reason: unexpected keys.")
        if not info or not info.get("network_id"):
            if info and "network_id" not in info:
                raise sc.bad("Invalid input for external_gateway_info. Reason: network_id is "
                             "required.")
            self._clear_gateway(s, r)
            return
        net_id = str(info["network_id"])
        net = s.get(t.Network, net_id)
        if net is None or not self._net_visible(ctx, net):
            raise not_found(t.Network, net_id)
        if not net.external:
            raise sc.bad(f"Bad router request: Network {net_id} is not an external network.",
                         "BadRequest")
        if "enable_snat" in info:
            snat = sc.to_bool(info["enable_snat"], "enable_snat")
            if snat != r.enable_snat or not ctx.is_admin:
                self._enforce(ctx, "update_router:external_gateway_info:enable_snat",
                              {"project_id": r.project_id})
            r.enable_snat = snat
        elif r.gw_network_id != net_id:
            r.enable_snat = True
        fixed = info.get("external_fixed_ips")
        if fixed is not None:
            self._enforce(ctx, "update_router:external_gateway_info:external_fixed_ips",
                          {"project_id": r.project_id})
        if r.gw_network_id == net_id and r.gw_port_id and fixed is None:
            return
        if r.gw_network_id and r.gw_network_id != net_id:
            self._check_fips_via(s, r)
        old = s.get(t.Port, r.gw_port_id) if r.gw_port_id else None
        if old is not None:
            if r.gw_network_id == net_id and fixed is not None:
                self._apply_port_update(s, RequestContext.admin(), old,
                                        {"fixed_ips": fixed})
                r.gw_network_id = net_id
                return
            self._delete_port_row(s, old)
        port = self._create_port(s, RequestContext.admin(), {
            "network_id": net_id, "device_owner": ROUTER_GATEWAY, "device_id": r.id,
            "project_id": "", "fixed_ips": fixed}, internal=True)
        # An external network without subnets gives a gateway port without addresses,
        # which Neutron accepts (the router then has no SNAT address until one exists).
        r.gw_network_id = net_id
        r.gw_port_id = port.id

    def _check_fips_via(self, s: Session, r: t.Router) -> None:
        if s.execute(select(t.FloatingIP.id).where(t.FloatingIP.router_id == r.id)).first():
            raise conflict(f"Gateway cannot be updated for router {r.id}, since a gateway to "
                           f"external network {r.gw_network_id} is required by one or more "
                           "floating IPs.", "RouterExternalGatewayInUseByFloatingIp")

    def _clear_gateway(self, s: Session, r: t.Router) -> None:
        if not r.gw_network_id:
            return
        self._check_fips_via(s, r)
        if r.gw_port_id:
            old = s.get(t.Port, r.gw_port_id)
            if old is not None:
                self._delete_port_row(s, old)
        r.gw_port_id = None
        r.gw_network_id = None
        r.enable_snat = True

    def _port_subnets(self, s: Session, port_ids: list[str]) -> list[t.Subnet]:
        """The subnets of the ports' IP allocations, port by port."""
        subnets = []
        for port_id in port_ids:
            for a in self._allocations(s, port_id):
                sub = s.get(t.Subnet, a.subnet_id)
                if sub is not None:
                    subnets.append(sub)
        return subnets

    def _router_interfaces(self, s: Session, rid: str) -> list[t.Port]:
        return list(s.execute(select(t.Port).where(
            t.Port.device_id == rid, t.Port.device_owner == ROUTER_INTERFACE)).scalars())

    def update_router(self, ctx: RequestContext, rid: str, body: dict[str, Any],
                      revision: int | None = None) -> dict[str, Any]:
        def run(s: Session) -> dict[str, Any]:
            sc.check_keys(body, sc.ROUTER_KEYS, "router")
            r = self._owned(s, ctx, t.Router, rid)
            self._change(ctx, "update_router", "router", owned_target(r), t.Router)
            self._check_revision(r, revision)
            self._set_text(r, body)
            if "admin_state_up" in body:
                r.admin_state_up = sc.to_bool(body["admin_state_up"], "admin_state_up")
            for key in ("distributed", "ha"):
                if key in body:
                    self._enforce(ctx, f"update_router:{key}", {"project_id": r.project_id})
                    setattr(r, key, sc.to_bool(body[key], key))
            if "external_gateway_info" in body:
                self._set_gateway(s, ctx, r, body["external_gateway_info"])
            if "routes" in body:
                routes = self._routes(body["routes"] or [], None, "routes")
                port_ids = [p.id for p in self._router_interfaces(s, r.id)]
                if r.gw_port_id:
                    port_ids.append(r.gw_port_id)
                cidrs = [ipaddress.ip_network(sub.cidr)
                         for sub in self._port_subnets(s, port_ids)]
                for route in routes:
                    hop = ipaddress.ip_address(route["nexthop"])
                    if not any(hop in c for c in cidrs):
                        raise sc.bad(f"Invalid format for routes: {route}, the nexthop is not "
                                     "connected with router", "InvalidRoutes")
                r.routes = routes
            self._updated(s, r, body)
            return self._router_views(s, ctx, [r])[0]
        doc = self._tx(run)
        self.driver.router_updated(doc, [], [])
        return doc

    def delete_router(self, ctx: RequestContext, rid: str, revision: int | None = None) -> None:
        def run(s: Session) -> None:
            r = self._owned(s, ctx, t.Router, rid)
            self._change(ctx, "delete_router", "router", owned_target(r), t.Router)
            self._check_revision(r, revision)
            if self._router_interfaces(s, rid):
                raise conflict(f"Router {rid} still has ports", "RouterInUse")
            for fip in s.execute(select(t.FloatingIP).where(t.FloatingIP.router_id == rid)
                                 ).scalars():
                fip.port_id = fip.fixed_ip_address = fip.router_id = None
                fip.status = "DOWN"
            s.flush()
            self._clear_gateway(s, r)
            s.execute(delete(t.Tag).where(t.Tag.resource_id == rid))
            s.delete(r)
        self._tx(run)
        self.driver.router_deleted(rid)

    def _interface_request(self, s: Session, ctx: RequestContext, rid: str, body: Any,
                           action: str) -> tuple[t.Router, Any, Any]:
        """The router of an interface request (``action`` allowed on it) and the subnet and
        port ids the body names; 400 unless it names at least one."""
        if not isinstance(body, dict):
            raise sc.bad("Bad router request: body must be an object.")
        r = self._owned(s, ctx, t.Router, rid)
        self._change(ctx, action, "router", owned_target(r), t.Router)
        sid, pid = body.get("subnet_id"), body.get("port_id")
        if not sid and not pid:
            raise sc.bad("Bad router request: Either subnet_id or port_id must be "
                         "specified", "BadRequest")
        return r, sid, pid

    def add_router_interface(self, ctx: RequestContext, rid: str, body: Any
                             ) -> dict[str, Any]:
        """Attach a subnet (a new port on its gateway IP) or an existing port to a router."""
        def run(s: Session) -> dict[str, Any]:
            r, sid, pid = self._interface_request(s, ctx, rid, body, "add_router_interface")
            if sid and pid:
                raise sc.bad("Bad router request: Cannot specify both subnet-id and port-id",
                             "BadRequest")
            existing = self._port_subnets(s, [p.id for p in self._router_interfaces(s, r.id)])
            if pid:
                port = self._visible_port(s, ctx, str(pid))
                if port.device_id or port.device_owner:
                    raise conflict(f"Unable to complete operation on port {pid} for network "
                                   f"{port.network_id}. Port already has an attached device "
                                   f"{port.device_id}.", "PortInUse")
                allocs = self._allocations(s, port.id)
                if not allocs:
                    raise sc.bad("Bad router request: Router port must have at least one "
                                 "fixed IP", "BadRequest")
                subs = [s.get(t.Subnet, a.subnet_id) for a in allocs]
                self._check_overlap(existing, [x for x in subs if x is not None], r.id)
                port.device_id = r.id
                port.device_owner = ROUTER_INTERFACE
                port.status = "ACTIVE"
                self._touch(port)
            else:
                sub = self._visible_subnet(s, ctx, str(sid))
                if not ctx.is_admin and sub.project_id != ctx.project_id:
                    net = s.get(t.Network, sub.network_id)
                    if net is None or not net.shared:
                        raise not_found(t.Subnet, str(sid))
                if not sub.gateway_ip:
                    raise sc.bad(f"Bad router request: Subnet {sub.id} does not have a "
                                 "gateway IP", "BadRequest")
                self._check_overlap(existing, [sub], r.id)
                port = self._create_port(s, RequestContext.admin(), {
                    "network_id": sub.network_id, "device_owner": ROUTER_INTERFACE,
                    "device_id": r.id, "project_id": r.project_id,
                    "fixed_ips": [{"subnet_id": sub.id, "ip_address": sub.gateway_ip}]},
                    internal=True)
                subs = [sub]
                allocs = []
            self._touch(r)
            s.flush()
            sub_ids = [x.id for x in subs if x is not None]
            return {"id": r.id, "tenant_id": r.project_id, "project_id": r.project_id,
                    "port_id": port.id, "subnet_id": sub_ids[0] if sub_ids else None,
                    "subnet_ids": sub_ids, "network_id": port.network_id}
        doc = self._tx(run)
        self.driver.router_updated({"id": rid}, [], [])
        return doc

    @staticmethod
    def _check_overlap(existing: list[t.Subnet], new: list[t.Subnet], rid: str) -> None:
        for sub in new:
            cidr = ipaddress.ip_network(sub.cidr)
            for other in existing:
                if other.id == sub.id:
                    raise sc.bad(f"Bad router request: Router already has a port on subnet "
                                 f"{sub.id}.", "BadRequest")
                if ipaddress.ip_network(other.cidr).overlaps(cidr):
                    raise sc.bad(f"Bad router request: Cidr {sub.cidr} of subnet {sub.id} "
                                 f"overlaps with cidr {other.cidr} of subnet {other.id}.",
                                 "BadRequest")

    def remove_router_interface(self, ctx: RequestContext, rid: str, body: Any
                                ) -> dict[str, Any]:
        def run(s: Session) -> dict[str, Any]:
            r, sid, pid = self._interface_request(s, ctx, rid, body, "remove_router_interface")
            ports = self._router_interfaces(s, r.id)
            target: t.Port | None = None
            if pid:
                target = next((p for p in ports if p.id == pid), None)
                if target is None:
                    raise NotFound(f"Router {rid} does not have an interface with id {pid}",
                                   kind="RouterInterfaceNotFound")
                allocs = self._allocations(s, target.id)
                if sid and not any(a.subnet_id == sid for a in allocs):
                    raise conflict(f"Subnet {sid} is not associated with port {pid}",
                                   "SubnetMismatchForPort")
            else:
                self._visible_subnet(s, ctx, str(sid))
                for p in ports:
                    allocs = self._allocations(s, p.id)
                    if any(a.subnet_id == sid for a in allocs):
                        target = p
                        break
                if target is None:
                    raise NotFound(f"Router {rid} has no interface on subnet {sid}",
                                   kind="RouterInterfaceNotFoundForSubnet")
            allocs = self._allocations(s, target.id)
            sub_ids = [a.subnet_id for a in allocs]
            for a in allocs:
                cidr = ipaddress.ip_network(s.get(t.Subnet, a.subnet_id).cidr)  # type: ignore
                for fip in s.execute(select(t.FloatingIP).where(
                        t.FloatingIP.router_id == r.id)).scalars():
                    if fip.fixed_ip_address and ipaddress.ip_address(
                            fip.fixed_ip_address) in cidr:
                        raise conflict(f"Router interface for subnet {a.subnet_id} on router "
                                       f"{rid} cannot be deleted, as it is required by one or "
                                       "more floating IPs.", "RouterInterfaceInUseByFloatingIP")
                for route in r.routes or []:
                    if ipaddress.ip_address(route["nexthop"]) in cidr:
                        raise conflict(f"Router interface for subnet {a.subnet_id} on router "
                                       f"{rid} cannot be deleted, as it is required by one or "
                                       "more routes.", "RouterInterfaceInUseByRoute")
            result = {"id": r.id, "tenant_id": r.project_id, "project_id": r.project_id,
                      "port_id": target.id, "subnet_id": sub_ids[0] if sub_ids else None,
                      "subnet_ids": sub_ids, "network_id": target.network_id}
            self._delete_port_row(s, target)
            self._touch(r)
            return result
        doc = self._tx(run)
        self.driver.router_updated({"id": rid}, [], [])
        return doc

    # ================================================================== floating IPs
    def list_floatingips(self, ctx: RequestContext) -> list[dict[str, Any]]:
        return self._read(lambda s: self._fip_views(s, self._project_rows(
            s, ctx, t.FloatingIP, t.FloatingIP.created_at, t.FloatingIP.id)))

    def get_floatingip(self, ctx: RequestContext, fid: str) -> dict[str, Any]:
        return self._read(lambda s: self._fip_views(
            s, [self._readable(s, ctx, self._owned(s, ctx, t.FloatingIP, fid))])[0])

    def create_floatingips(self, ctx: RequestContext, bodies: list[dict[str, Any]]
                           ) -> list[dict[str, Any]]:
        docs = self._create_all(ctx, bodies, self._create_fip, self._fip_views)
        self._fips_moved({d.get("router_id") for d in docs})
        return docs

    def _fips_moved(self, router_ids: set[str | None]) -> None:
        """Tell the data plane which routers' floating IPs changed (NAT, addresses)."""
        for rid in sorted(r for r in router_ids if r):
            self.driver.router_updated({"id": rid}, [], [])

    def _create_fip(self, s: Session, ctx: RequestContext, body: dict[str, Any]
                    ) -> t.FloatingIP:
        sc.check_keys(body, sc.FLOATINGIP_KEYS, "floatingip")
        if not body.get("floating_network_id"):
            raise sc.bad("Failed to parse request. Required attribute 'floating_network_id' "
                         "not specified")
        project = self._owner_for_create(ctx, body, "floatingip")
        net_id = str(body["floating_network_id"])
        net = s.get(t.Network, net_id)
        if net is None or not self._net_visible(ctx, net):
            raise not_found(t.Network, net_id)
        if not net.external:
            raise sc.bad(f"Bad floatingip request: Network {net_id} is not a valid external "
                         "network.", "BadRequest")
        self._check_quota(s, project, "floatingip")
        fip = self._stamp(t.FloatingIP(id=str(uuid.uuid4()), project_id=project,
                                       floating_network_id=net_id))
        fip.description = sc.to_str(body.get("description", ""), "description") or ""
        fixed: list[dict[str, Any]] = []
        if body.get("floating_ip_address") is not None:
            self._enforce(ctx, "create_floatingip:floating_ip_address",
                          {"project_id": project})
            item: dict[str, Any] = {"ip_address": body["floating_ip_address"]}
            if body.get("subnet_id"):
                item["subnet_id"] = body["subnet_id"]
            fixed = [item]
        elif body.get("subnet_id"):
            fixed = [{"subnet_id": body["subnet_id"]}]
        else:
            v4 = [x for x in self._subnets_of(s, net_id) if x.ip_version == 4]
            if not v4:
                raise sc.bad(f"Bad floatingip request: Network {net_id} has no IPv4 subnet.",
                             "BadRequest")
        try:
            port = self._create_port(s, RequestContext.admin(), {
                "network_id": net_id, "device_owner": FLOATINGIP_OWNER, "device_id": fip.id,
                "project_id": "", "fixed_ips": fixed or None}, internal=True)
        except APIError as exc:
            if exc.kind == "IpAddressGenerationFailure":
                raise conflict(f"No more IP addresses available on network {net_id}.",
                               "IpAddressGenerationFailure") from exc
            raise
        alloc = s.execute(select(t.IPAllocation).join(
            t.Subnet, t.Subnet.id == t.IPAllocation.subnet_id).where(
            t.IPAllocation.port_id == port.id, t.Subnet.ip_version == 4)).scalars().first()
        if alloc is None:
            raise sc.bad("Bad floatingip request: no IPv4 address could be allocated.",
                         "BadRequest")
        fip.floating_ip_address = alloc.ip_address
        fip.floating_port_id = port.id
        s.add(fip)
        s.flush()
        if body.get("port_id"):
            self._associate(s, ctx, fip, str(body["port_id"]), body.get("fixed_ip_address"))
        return fip

    def _associate(self, s: Session, ctx: RequestContext, fip: t.FloatingIP, port_id: str,
                   fixed_ip: Any) -> None:
        port = s.get(t.Port, port_id)
        if port is None or not (ctx.is_admin or port.project_id in (ctx.project_id,
                                                                      fip.project_id)):
            raise not_found(t.Port, port_id)
        if port.device_owner in (ROUTER_INTERFACE, ROUTER_GATEWAY, FLOATINGIP_OWNER,
                                 "network:dhcp"):
            raise sc.bad(f"Bad floatingip request: Port {port_id} is a network device port "
                         "and cannot have a floating IP.", "BadRequest")
        allocs = [a for a in self._allocations(s, port.id)
                  if ipaddress.ip_address(a.ip_address).version == 4]
        if fixed_ip is not None:
            ipam.parse_ip(fixed_ip, "fixed_ip_address")
            chosen = next((a for a in allocs if a.ip_address == fixed_ip), None)
            if chosen is None:
                raise sc.bad(f"Bad floatingip request: Port {port_id} does not have fixed ip "
                             f"{fixed_ip}.", "BadRequest")
        else:
            if not allocs:
                raise sc.bad(f"Bad floatingip request: Port {port_id} does not have any IPv4 "
                             "address.", "BadRequest")
            chosen = allocs[0]
        if port.network_id == fip.floating_network_id:
            raise sc.bad("Bad floatingip request: the port is on the floating IP's own "
                         "network.", "BadRequest")
        other = s.execute(select(t.FloatingIP).where(
            t.FloatingIP.port_id == port.id, t.FloatingIP.fixed_ip_address == chosen.ip_address,
            t.FloatingIP.id != fip.id)).scalars().first()
        if other is not None:
            raise conflict(f"Cannot associate floating IP {fip.floating_ip_address} "
                           f"({fip.id}) with port {port_id} using fixed IP "
                           f"{chosen.ip_address}, as that fixed IP already has a floating IP "
                           f"on external network {fip.floating_network_id}.",
                           "FloatingIPPortAlreadyAssociated")
        router_id = self._router_for(s, chosen.subnet_id, fip.floating_network_id)
        if router_id is None:
            raise NotFound(f"External network {fip.floating_network_id} is not reachable from "
                           f"subnet {chosen.subnet_id}. Therefore, cannot associate Port "
                           f"{port_id} with a Floating IP.",
                           kind="ExternalGatewayForFloatingIPNotFound")
        fip.port_id = port.id
        fip.fixed_ip_address = chosen.ip_address
        fip.router_id = router_id
        fip.status = "ACTIVE"

    def _router_for(self, s: Session, subnet_id: str, ext_net: str) -> str | None:
        rows = s.execute(select(t.Router.id).join(
            t.Port, (t.Port.device_id == t.Router.id)
            & (t.Port.device_owner == ROUTER_INTERFACE)).join(
            t.IPAllocation, t.IPAllocation.port_id == t.Port.id).where(
            t.Router.gw_network_id == ext_net, t.IPAllocation.subnet_id == subnet_id)).first()
        return rows[0] if rows else None

    def update_floatingip(self, ctx: RequestContext, fid: str, body: dict[str, Any],
                          revision: int | None = None) -> dict[str, Any]:
        before: list[str | None] = []

        def run(s: Session) -> dict[str, Any]:
            sc.check_keys(body, sc.FLOATINGIP_KEYS, "floatingip")
            fip = self._owned(s, ctx, t.FloatingIP, fid)
            self._change(ctx, "update_floatingip", "floatingip", owned_target(fip),
                         t.FloatingIP)
            before[:] = [fip.router_id]
            self._check_revision(fip, revision)
            for ro in ("floating_network_id", "floating_ip_address", "subnet_id"):
                if ro in body and body[ro] != getattr(fip, ro, None):
                    raise sc.bad(f"Cannot update read-only attribute {ro}")
            if "description" in body:
                fip.description = sc.to_str(body["description"], "description") or ""
            if "port_id" in body:
                if body["port_id"]:
                    self._associate(s, ctx, fip, str(body["port_id"]),
                                    body.get("fixed_ip_address"))
                else:
                    fip.port_id = fip.fixed_ip_address = fip.router_id = None
                    fip.status = "DOWN"
            elif body.get("fixed_ip_address") and fip.port_id:
                self._associate(s, ctx, fip, fip.port_id, body["fixed_ip_address"])
            self._updated(s, fip, body)
            return self._fip_views(s, [fip])[0]
        doc = self._tx(run)
        self._fips_moved({doc.get("router_id"), *before})
        return doc

    def delete_floatingip(self, ctx: RequestContext, fid: str,
                          revision: int | None = None) -> None:
        def run(s: Session) -> None:
            fip = self._owned(s, ctx, t.FloatingIP, fid)
            self._change(ctx, "delete_floatingip", "floatingip", owned_target(fip),
                         t.FloatingIP)
            self._check_revision(fip, revision)
            port = s.get(t.Port, fip.floating_port_id)
            rid = fip.router_id
            s.execute(delete(t.Tag).where(t.Tag.resource_id == fid))
            s.delete(fip)
            s.flush()
            if port is not None:
                self._delete_port_row(s, port)
            return rid
        self._fips_moved({self._tx(run)})
