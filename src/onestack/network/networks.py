"""Networks and their segments (provider types, VLAN/VXLAN/Geneve ids, MTU)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from onestack.common.context import RequestContext
from onestack.common.errors import APIError, BadRequest, NotFound
from onestack.db import network as t
from onestack.network import schemas as sc
from onestack.network.authz import network_target
from onestack.network.base import ManagerBase
from onestack.network.common import conflict


class NetworksMixin(ManagerBase):
    """Networks and their segments (provider types, VLAN/VXLAN/Geneve ids, MTU)."""

    # ================================================================== networks
    def list_networks(self, ctx: RequestContext) -> list[dict[str, Any]]:
        """Every network the caller may see."""
        def run(s: Session) -> list[dict[str, Any]]:
            stmt = select(t.Network).order_by(t.Network.created_at, t.Network.id)
            if not ctx.is_admin:
                stmt = stmt.where((t.Network.project_id == (ctx.project_id or ""))
                                  | t.Network.shared | t.Network.external)
            return self._network_views(s, ctx, list(s.execute(stmt).scalars()))
        return self._read(run)

    def get_network(self, ctx: RequestContext, net_id: str) -> dict[str, Any]:
        def run(s: Session) -> dict[str, Any]:
            return self._network_views(
                s, ctx, [self._readable(s, ctx, self._visible_net(s, ctx, net_id))])[0]
        return self._read(run)

    def create_networks(self, ctx: RequestContext, bodies: list[dict[str, Any]]
                        ) -> list[dict[str, Any]]:
        """Create networks (all or nothing), allocating their segments."""
        docs = self._create_all(ctx, bodies, self._create_network,
                                lambda s, rows: self._network_views(s, ctx, rows))
        for d in docs:
            self.driver.network_updated(d, [])
        return docs

    def _create_network(self, s: Session, ctx: RequestContext, body: dict[str, Any]
                        ) -> t.Network:
        sc.check_keys(body, sc.NETWORK_KEYS, "network")
        project = self._owner_for_create(ctx, body, "network")
        for key, action in (("shared", "create_network:shared"),
                            ("router:external", "create_network:router:external"),
                            ("is_default", "create_network:is_default")):
            if key in body and sc.to_bool(body[key], key):
                self._enforce(ctx, action, {"project_id": project})
        if any(k.startswith("provider:") for k in body) or "segments" in body:
            self._enforce(ctx, "create_network:provider:network_type", {"project_id": project})
        if "segments" in body:
            segs = sc.to_list(body["segments"], "segments")
            if len(segs) != 1 or not isinstance(segs[0], dict):
                raise sc.bad("Only a single segment per network is supported.")
            for k, v in segs[0].items():
                body.setdefault(k, v)
        self._check_quota(s, project, "network")
        net = self._stamp(t.Network(id=str(uuid.uuid4()), project_id=project))
        self._set_text(net, body, create=True)
        net.admin_state_up = sc.to_bool(body.get("admin_state_up", True), "admin_state_up")
        net.shared = sc.to_bool(body.get("shared", False), "shared")
        net.external = sc.to_bool(body.get("router:external", False), "router:external")
        net.is_default = sc.to_bool(body.get("is_default", False), "is_default")
        if net.is_default and not net.external:
            raise sc.bad("A default network must be external.")
        net.port_security_enabled = sc.to_bool(body.get("port_security_enabled", True),
                                               "port_security_enabled")
        hints = body.get("availability_zone_hints", [])
        for h in sc.to_list(hints, "availability_zone_hints"):
            if h != "nova":
                raise NotFound(f"AvailabilityZone {h} could not be found.",
                               kind="AvailabilityZoneNotFound")
        net.availability_zone_hints = list(hints)
        net.dns_domain = sc.to_str(body.get("dns_domain", ""), "dns_domain") or ""
        s.add(net)
        s.flush()
        self._allocate_segment(s, net, body)
        if "mtu" in body and body["mtu"] is not None:
            mtu = sc.to_int(body["mtu"], "mtu", minimum=68)
            assert mtu is not None
            if mtu > net.mtu:
                raise sc.bad(f"Requested MTU is too big, maximum is {net.mtu}", "InvalidInput")
            net.mtu = mtu
        return net

    def _type_mtu(self, network_type: str) -> int:
        base = self.settings.network_physnet_mtu
        return base - 50 if network_type in ("vxlan", "geneve", "gre") else base

    def _allocate_segment(self, s: Session, net: t.Network, body: dict[str, Any]) -> None:
        ntype = body.get("provider:network_type")
        physnet = body.get("provider:physical_network")
        seg = body.get("provider:segmentation_id")
        if ntype is None:
            if physnet is not None or seg is not None:
                raise sc.bad("provider:network_type required", "InvalidInput")
            for candidate in self.tenant_types:
                try:
                    self._claim(s, net, candidate, None, None)
                    return
                except APIError:
                    continue
            raise APIError("Unable to create the network. No tenant network is available "
                           "for allocation.", status=503, kind="NoNetworkAvailable")
        if ntype not in ("flat", "vlan", "vxlan", "geneve", "local", "gre"):
            raise sc.bad(f"Invalid input for operation: network_type value '{ntype}' not "
                         "supported.", "InvalidInput")
        if physnet is not None:
            physnet = sc.to_str(physnet, "provider:physical_network", 64)
        if seg is not None:
            seg = sc.to_int(seg, "provider:segmentation_id")
        self._claim(s, net, str(ntype), physnet, seg)

    def _claim(self, s: Session, net: t.Network, ntype: str, physnet: str | None,
               seg: int | None) -> None:
        def invalid(msg: str) -> BadRequest:
            return sc.bad(f"Invalid input for operation: {msg}", "InvalidInput")

        key_phys = ""
        if ntype == "local":
            if physnet or seg is not None:
                raise invalid("local networks take no physical network or segmentation id.")
        elif ntype == "flat":
            if seg is not None:
                raise invalid("segmentation_id specified for flat network.")
            if not physnet:
                raise invalid("physical_network required for flat provider network.")
            if "*" not in self.flat_networks and physnet not in self.flat_networks:
                raise invalid(f"physical_network '{physnet}' unknown for flat provider "
                              "network.")
            if s.get(t.SegmentAllocation, ("flat", physnet, 0)) is not None:
                raise conflict(f"Unable to create the flat network. Physical network "
                               f"{physnet} is in use.", "FlatNetworkInUse")
            s.add(t.SegmentAllocation(network_type="flat", physical_network=physnet,
                                      segmentation_id=0, network_id=net.id))
            net.network_type, net.physical_network, net.segmentation_id = "flat", physnet, None
            net.mtu = self._type_mtu("flat")
            s.flush()
            return
        elif ntype == "vlan":
            if physnet is None:
                candidates = [p for p, r in self.vlan_ranges.items() if r]
                if not candidates:
                    raise invalid("no VLAN ranges are configured.")
                physnet = candidates[0]
            elif physnet not in self.vlan_ranges:
                raise invalid(f"physical_network '{physnet}' unknown for VLAN provider "
                              "network.")
            if seg is not None and not 1 <= seg <= 4094:
                raise invalid(f"segmentation_id out of range ({seg}); must be 1-4094.")
            key_phys = physnet
        else:  # tunnels
            if physnet:
                raise invalid(f"provider:physical_network specified for {ntype} network.")
            if seg is not None and not 1 <= seg <= (1 << 24) - 1:
                raise invalid(f"segmentation_id out of range ({seg}).")
        if ntype != "local":
            if seg is None:
                ranges = (self.vlan_ranges.get(key_phys, []) if ntype == "vlan"
                          else self.tunnel_ranges.get(ntype, [(1, 65535)]))
                used = set(s.execute(select(t.SegmentAllocation.segmentation_id).where(
                    t.SegmentAllocation.network_type == ntype,
                    t.SegmentAllocation.physical_network == key_phys)).scalars())
                seg = next((n for a, b in ranges for n in range(a, b + 1) if n not in used),
                           None)
                if seg is None:
                    raise APIError("Unable to create the network. No tenant network is "
                                   "available for allocation.", status=503,
                                   kind="NoNetworkAvailable")
            elif s.get(t.SegmentAllocation, (ntype, key_phys, seg)) is not None:
                what = "VLAN" if ntype == "vlan" else "tunnel"
                raise conflict(f"Unable to create the network. The {what} {seg} on physical "
                               f"network {key_phys or '-'} is in use.",
                               "VlanIdInUse" if ntype == "vlan" else "TunnelIdInUse")
            s.add(t.SegmentAllocation(network_type=ntype, physical_network=key_phys,
                                      segmentation_id=seg, network_id=net.id))
        net.network_type = ntype
        net.physical_network = physnet if ntype in ("vlan",) else None
        net.segmentation_id = seg
        net.mtu = self._type_mtu(ntype)
        s.flush()

    def update_network(self, ctx: RequestContext, net_id: str, body: dict[str, Any],
                       revision: int | None = None) -> dict[str, Any]:
        def run(s: Session) -> dict[str, Any]:
            sc.check_keys(body, sc.NETWORK_KEYS, "network")
            net = self._visible_net(s, ctx, net_id)
            self._change(ctx, "update_network", "network", network_target(net), t.Network)
            self._check_revision(net, revision)
            for key in ("provider:network_type", "provider:physical_network",
                        "provider:segmentation_id", "segments"):
                if key in body:
                    self._enforce(ctx, "update_network:provider:network_type",
                                  {"project_id": net.project_id})
                    raise sc.bad("Plugin does not support updating provider attributes.",
                                 "InvalidInput")
            if "project_id" in body or "tenant_id" in body:
                raise sc.bad("Cannot update read-only attribute project_id")
            self._set_text(net, body)
            if "admin_state_up" in body:
                net.admin_state_up = sc.to_bool(body["admin_state_up"], "admin_state_up")
            if "port_security_enabled" in body:
                net.port_security_enabled = sc.to_bool(body["port_security_enabled"],
                                                       "port_security_enabled")
            if "shared" in body:
                shared = sc.to_bool(body["shared"], "shared")
                self._enforce(ctx, "update_network:shared", {"project_id": net.project_id})
                if net.shared and not shared:
                    others = s.execute(select(func.count()).select_from(t.Port).where(
                        t.Port.network_id == net.id, t.Port.project_id != net.project_id,
                        t.Port.project_id != "")).scalar_one()
                    if others:
                        raise conflict(f"Unable to reconfigure sharing settings for network "
                                       f"{net.id}. Multiple tenants are using it.",
                                       "InvalidSharedSetting")
                net.shared = shared
            if "router:external" in body:
                ext = sc.to_bool(body["router:external"], "router:external")
                self._enforce(ctx, "update_network:router:external",
                              {"project_id": net.project_id})
                if net.external and not ext:
                    used = s.execute(select(func.count()).select_from(t.Router).where(
                        t.Router.gw_network_id == net.id)).scalar_one()
                    if used:
                        raise conflict(f"External network {net.id} cannot be updated to be "
                                       "internal: routers use it as gateway.",
                                       "ExternalNetworkInUse")
                net.external = ext
            if "is_default" in body:
                self._enforce(ctx, "update_network:is_default", {"project_id": net.project_id})
                net.is_default = sc.to_bool(body["is_default"], "is_default")
            if "mtu" in body:
                mtu = sc.to_int(body["mtu"], "mtu", minimum=68)
                assert mtu is not None
                if mtu > self._type_mtu(net.network_type):
                    raise sc.bad(f"Requested MTU is too big, maximum is "
                                 f"{self._type_mtu(net.network_type)}", "InvalidInput")
                net.mtu = mtu
            if "dns_domain" in body:
                net.dns_domain = sc.to_str(body["dns_domain"], "dns_domain") or ""
            self._updated(s, net, body)
            return self._network_views(s, ctx, [net])[0]
        doc = self._tx(run)
        self.driver.network_updated(doc, [])
        return doc

    def delete_network(self, ctx: RequestContext, net_id: str,
                       revision: int | None = None) -> None:
        def run(s: Session) -> None:
            net = self._visible_net(s, ctx, net_id)
            self._change(ctx, "delete_network", "network", network_target(net), t.Network)
            self._check_revision(net, revision)
            for fip in list(s.execute(select(t.FloatingIP).where(
                    t.FloatingIP.floating_network_id == net.id,
                    t.FloatingIP.port_id.is_(None))).scalars()):
                fport = s.get(t.Port, fip.floating_port_id)
                s.execute(delete(t.Tag).where(t.Tag.resource_id == fip.id))
                s.delete(fip)
                s.flush()
                if fport is not None:
                    self._delete_port_row(s, fport)
            ports = s.execute(select(func.count()).select_from(t.Port).where(
                t.Port.network_id == net.id, t.Port.device_owner != "network:dhcp")
            ).scalar_one()
            if ports:
                raise conflict(f"Unable to complete operation on network {net.id}. There are "
                               "one or more ports still in use on the network.", "NetworkInUse")
            sub_ids = list(s.execute(select(t.Subnet.id).where(t.Subnet.network_id == net.id))
                           .scalars())
            s.execute(delete(t.Port).where(t.Port.network_id == net.id))
            s.execute(delete(t.Tag).where(t.Tag.resource_id.in_([net.id, *sub_ids])))
            s.execute(delete(t.Subnet).where(t.Subnet.network_id == net.id))
            s.execute(delete(t.SegmentAllocation).where(
                t.SegmentAllocation.network_id == net.id))
            s.delete(net)
        self._tx(run)
        self.driver.network_deleted(net_id)
