"""Subnets (CIDRs, gateways, allocation pools, DNS, host routes) and subnet pools."""

from __future__ import annotations

import ipaddress
import uuid
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from onestack.common.context import RequestContext
from onestack.db import network as t
from onestack.network import ipam
from onestack.network import schemas as sc
from onestack.network.base import ManagerBase
from onestack.network.common import ROUTER_INTERFACE, T, conflict, not_found


def _at_most(items: list[T], limit: int, what: str, fault: str) -> list[T]:
    """``items``, or the subnet's ``fault`` (400) when there are more than ``limit``."""
    if len(items) > limit:
        raise sc.bad(f"Unable to complete operation for the subnet. The number of {what} "
                     f"exceeds the limit {limit}.", fault)
    return items


class SubnetsMixin(ManagerBase):
    """Subnets (CIDRs, gateways, allocation pools, DNS, host routes) and subnet pools."""

    # ================================================================== subnets
    def list_subnets(self, ctx: RequestContext) -> list[dict[str, Any]]:
        def run(s: Session) -> list[dict[str, Any]]:
            stmt = select(t.Subnet).order_by(t.Subnet.created_at, t.Subnet.id)
            if not ctx.is_admin:
                visible = select(t.Network.id).where(
                    (t.Network.project_id == (ctx.project_id or "")) | t.Network.shared)
                stmt = stmt.where((t.Subnet.project_id == (ctx.project_id or ""))
                                  | t.Subnet.network_id.in_(visible))
            return self._subnet_views(s, list(s.execute(stmt).scalars()))
        return self._read(run)

    def get_subnet(self, ctx: RequestContext, sid: str) -> dict[str, Any]:
        return self._read(lambda s: self._subnet_views(
            s, [self._readable(s, ctx, self._visible_subnet(s, ctx, sid))])[0])

    def create_subnets(self, ctx: RequestContext, bodies: list[dict[str, Any]]
                       ) -> list[dict[str, Any]]:
        """Create subnets (all or nothing) with their pools, routes and name servers."""
        docs = self._create_all(ctx, bodies, self._create_subnet, self._subnet_views)
        self._subnets_changed(docs)
        return docs

    def _subnets_changed(self, docs: list[dict[str, Any]]) -> None:
        """Tell the data plane (DHCP, routes) which networks' subnets changed."""
        by_net: dict[str, list[dict[str, Any]]] = {}
        for d in docs:
            by_net.setdefault(d["network_id"], []).append(d)
        for net_id, subnets in by_net.items():
            self.driver.network_updated({"id": net_id}, subnets)

    def _default_pool(self, s: Session, version: int) -> t.SubnetPool | None:
        return s.execute(select(t.SubnetPool).where(
            t.SubnetPool.is_default, t.SubnetPool.ip_version == version)).scalars().first()

    def _create_subnet(self, s: Session, ctx: RequestContext, body: dict[str, Any]) -> t.Subnet:
        sc.check_keys(body, sc.SUBNET_KEYS, "subnet")
        if "network_id" not in body:
            raise sc.bad("Failed to parse request. Required attribute 'network_id' not "
                         "specified")
        net = self._visible_net(s, ctx, sc.to_str(body["network_id"], "network_id") or "")
        project = self._owner_for_create(ctx, body)
        self._on_network_create(ctx, "subnet", project, net)
        if body.get("segment_id") is not None:
            raise sc.bad("Segments are not supported.", "InvalidInput")
        self._check_quota(s, project, "subnet")
        version = sc.to_int(body.get("ip_version", 4), "ip_version")
        if version not in (4, 6):
            raise sc.invalid("ip_version", version, f"{version} is not in [4, 6]")
        pool: t.SubnetPool | None = None
        pool_id = body.get("subnetpool_id")
        if pool_id is not None:
            pool = s.get(t.SubnetPool, pool_id)
            if pool is None or not (ctx.is_admin or pool.shared
                                    or pool.project_id == ctx.project_id):
                raise not_found(t.SubnetPool, str(pool_id))
        elif body.get("use_default_subnetpool") and sc.to_bool(
                body["use_default_subnetpool"], "use_default_subnetpool"):
            pool = self._default_pool(s, version)
            if pool is None:
                raise sc.bad(f"No default subnetpool found for IPv{version}")
        elif body.get("cidr") is None:
            pool = None
            if "prefixlen" in body:
                pool = self._default_pool(s, version)
            if pool is None:
                raise sc.bad("Bad subnets request: a cidr must be specified in the absence "
                             "of a subnet pool")
        if pool is not None and pool.ip_version != version and "ip_version" in body:
            raise sc.bad("Bad subnets request: cannot allocate an IPv"
                          f"{version} subnet from an IPv{pool.ip_version} subnet pool")
        if pool is not None:
            version = pool.ip_version
            cidr = self._cidr_from_pool(s, pool, body)
        else:
            cidr = ipam.parse_cidr(body.get("cidr"))
        if cidr.version != version:
            raise sc.bad(f"Invalid input for operation: cidr '{cidr}' does not match "
                         f"ip_version '{version}'", "InvalidInput")
        if cidr.prefixlen == 0:
            raise sc.bad(f"Invalid input for operation: 0 is not allowed as CIDR prefix "
                         f"length ({cidr}).", "InvalidInput")
        for other in s.execute(select(t.Subnet.id, t.Subnet.cidr).where(
                t.Subnet.network_id == net.id)):
            if ipaddress.ip_network(other.cidr).overlaps(cidr):
                raise sc.bad(f"Invalid input for operation: Requested subnet with cidr: "
                             f"{cidr} for network: {net.id} overlaps with another subnet.",
                             "InvalidInput")
        sub = self._stamp(t.Subnet(id=str(uuid.uuid4()), network_id=net.id,
                                   project_id=project, ip_version=version, cidr=str(cidr)))
        sub.subnetpool_id = pool.id if pool is not None else None
        self._set_text(sub, body, create=True)
        sub.enable_dhcp = sc.to_bool(body.get("enable_dhcp", True), "enable_dhcp")
        ra = body.get("ipv6_ra_mode")
        mode = body.get("ipv6_address_mode")
        for name, val in (("ipv6_ra_mode", ra), ("ipv6_address_mode", mode)):
            if val is not None:
                if val not in sc.IPV6_MODES:
                    raise sc.invalid(name, val, f"'{val}' is not in {list(sc.IPV6_MODES)}")
                if version != 4:
                    continue
                raise sc.bad("Invalid input for operation: ipv6_ra_mode or ipv6_address_mode "
                             "cannot be set when enable_dhcp is set to False or ip_version is "
                             "4.", "InvalidInput")
        if ra and mode and ra != mode:
            raise sc.bad(f"Invalid input for operation: ipv6_ra_mode set to '{ra}' with "
                         f"ipv6_address_mode set to '{mode}' is not valid.", "InvalidInput")
        sub.ipv6_ra_mode, sub.ipv6_address_mode = ra, mode
        if "gateway_ip" in body:
            gw = body["gateway_ip"]
            if gw is not None:
                self._check_gateway(cidr, gw)
                gw = str(ipaddress.ip_address(gw))
        else:
            gw = str(cidr.network_address + 1) if cidr.num_addresses > 2 or version == 6 \
                else None
        sub.gateway_ip = gw
        if body.get("allocation_pools") is not None:
            sub.allocation_pools = ipam.validate_pools(cidr, body["allocation_pools"], gw)
        else:
            sub.allocation_pools = ipam.default_pools(cidr, gw)
        sub.dns_nameservers = self._dns(body.get("dns_nameservers", []), version)
        sub.host_routes = self._routes(body.get("host_routes", []), version, "host_routes")
        sub.service_types = list(sc.to_list(body.get("service_types", []), "service_types"))
        s.add(sub)
        s.flush()
        return sub

    @staticmethod
    def _check_gateway(cidr: ipam.Net, gw: Any) -> None:
        ip = ipam.parse_ip(gw, "gateway_ip")
        if ip.version != cidr.version or ip not in cidr:
            raise sc.bad(f"Invalid input for operation: Gateway is not valid on subnet "
                         f"({gw}).", "InvalidInput")
        if ip == cidr.network_address and cidr.prefixlen < (31 if cidr.version == 4 else 127):
            raise sc.bad(f"Gateway IP {gw} conflicts with the subnet's network address.",
                         "InvalidInput")
        if cidr.version == 4 and ip == cidr.broadcast_address and cidr.prefixlen < 31:
            raise sc.bad(f"Gateway IP {gw} conflicts with the subnet's broadcast address.",
                         "InvalidInput")

    @staticmethod
    def _dns(value: Any, version: int) -> list[str]:
        servers = sc.to_list(value, "dns_nameservers")
        seen: list[str] = []
        for srv in servers:
            ip = ipam.parse_ip(srv, "dns_nameservers")
            if str(ip) in seen or srv in seen:
                raise sc.bad(f"Invalid input for dns_nameservers. Reason: Duplicate "
                             f"nameserver '{srv}'.")
            seen.append(srv)
        return _at_most(seen, 5, "DNS nameservers", "DNSNameServersExhausted")

    @staticmethod
    def _routes(value: Any, version: int | None, field: str) -> list[dict[str, str]]:
        routes = sc.to_list(value, field)
        out: list[dict[str, str]] = []
        for r in routes:
            if not isinstance(r, dict) or set(r) != {"destination", "nexthop"}:
                raise sc.bad(f"Invalid input for {field}. Reason: Validation of dictionary's "
                             "keys failed. Expected keys: {'destination', 'nexthop'}.")
            dest = ipaddress.ip_network(str(r["destination"]), strict=False) if isinstance(
                r["destination"], str) and "/" in r["destination"] else None
            if dest is None:
                raise sc.bad(f"Invalid input for {field}. Reason: '{r['destination']}' is not "
                             "a valid IP subnet.")
            hop = ipam.parse_ip(r["nexthop"], field)
            if version is not None and (dest.version != version or hop.version != version):
                raise sc.bad(f"Invalid input for {field}: IP version mismatch.",
                             "InvalidInput")
            item = {"destination": str(dest), "nexthop": str(hop)}
            if item in out:
                raise sc.bad(f"Invalid input for {field}. Reason: Duplicate route "
                             f"'{item}'.")
            out.append(item)
        return _at_most(out, 20, "host routes", "HostRoutesExhausted")

    def _cidr_from_pool(self, s: Session, pool: t.SubnetPool, body: dict[str, Any]
                        ) -> ipam.Net:
        prefixes = [ipaddress.ip_network(p) for p in pool.prefixes]
        used = [ipaddress.ip_network(c) for c in s.execute(select(t.Subnet.cidr).where(
            t.Subnet.subnetpool_id == pool.id)).scalars()]
        if body.get("cidr") is not None:
            cidr = ipam.parse_cidr(body["cidr"])
            if not any(cidr.version == p.version and cidr.subnet_of(p)  # type: ignore[arg-type]
                       for p in prefixes):
                raise sc.bad(f"Cidr {cidr} is not within the prefixes of subnet pool "
                             f"{pool.id}.", "InvalidInput")
            if any(cidr.overlaps(u) for u in used):
                raise conflict(f"Cidr {cidr} overlaps with another subnet of pool "
                               f"{pool.id}.", "SubnetAllocationError")
            return cidr
        plen = sc.to_int(body.get("prefixlen", pool.default_prefixlen), "prefixlen")
        assert plen is not None
        if plen < pool.min_prefixlen or plen > pool.max_prefixlen:
            raise sc.bad(f"Illegal prefix bounds: prefixlen={plen}, "
                         f"min_prefixlen={pool.min_prefixlen}, "
                         f"max_prefixlen={pool.max_prefixlen}.", "IllegalSubnetPoolPrefixBounds")
        for prefix in prefixes:
            if plen < prefix.prefixlen:
                continue
            for cand in prefix.subnets(new_prefix=plen):
                if not any(cand.overlaps(u) for u in used):
                    return cand
                if cand.num_addresses * 4096 < prefix.num_addresses and len(used) > 4096:
                    break
        raise conflict(f"Insufficient prefix space to allocate subnet size /{plen}.",
                       "SubnetAllocationError")

    def update_subnet(self, ctx: RequestContext, sid: str, body: dict[str, Any],
                      revision: int | None = None) -> dict[str, Any]:
        def run(s: Session) -> dict[str, Any]:
            sc.check_keys(body, sc.SUBNET_KEYS, "subnet")
            sub = self._visible_subnet(s, ctx, sid)
            self._change(ctx, "update_subnet", *self._row_target(s, ctx, sub), t.Subnet)
            self._check_revision(sub, revision)
            for ro in ("cidr", "ip_version", "network_id", "subnetpool_id", "prefixlen",
                       "ipv6_ra_mode", "ipv6_address_mode", "project_id", "tenant_id"):
                if ro in body and body[ro] != getattr(sub, ro, object()):
                    raise sc.bad(f"Cannot update read-only attribute {ro}")
            cidr = ipaddress.ip_network(sub.cidr)
            self._set_text(sub, body)
            if "enable_dhcp" in body:
                sub.enable_dhcp = sc.to_bool(body["enable_dhcp"], "enable_dhcp")
            gw = sub.gateway_ip
            if "gateway_ip" in body:
                gw = body["gateway_ip"]
                if gw is not None:
                    self._check_gateway(cidr, gw)
                    gw = str(ipaddress.ip_address(gw))
                    used = s.execute(select(t.IPAllocation).where(
                        t.IPAllocation.subnet_id == sub.id,
                        t.IPAllocation.ip_address == gw)).scalar_one_or_none()
                    if used is not None and gw != sub.gateway_ip:
                        raise conflict(f"Gateway ip {gw} conflicts with an allocated port "
                                       "address.", "GatewayIpInUse")
            if "allocation_pools" in body:
                pools = body["allocation_pools"]
                sub.allocation_pools = (ipam.validate_pools(cidr, pools, gw)
                                        if pools is not None else ipam.default_pools(cidr, gw))
            elif "gateway_ip" in body and gw and ipam.in_pools(ipaddress.ip_address(gw),
                                                               sub.allocation_pools):
                raise conflict(f"Gateway ip {gw} conflicts with allocation pool.",
                               "GatewayConflictWithAllocationPools")
            sub.gateway_ip = gw
            if "dns_nameservers" in body:
                sub.dns_nameservers = self._dns(body["dns_nameservers"] or [], sub.ip_version)
            if "host_routes" in body:
                sub.host_routes = self._routes(body["host_routes"] or [], sub.ip_version,
                                               "host_routes")
            if "service_types" in body:
                sub.service_types = list(sc.to_list(body["service_types"], "service_types"))
            self._updated(s, sub, body)
            return self._subnet_views(s, [sub])[0]
        doc = self._tx(run)
        self._subnets_changed([doc])
        return doc

    def delete_subnet(self, ctx: RequestContext, sid: str, revision: int | None = None) -> None:
        def run(s: Session) -> str:
            sub = self._visible_subnet(s, ctx, sid)
            self._change(ctx, "delete_subnet", *self._row_target(s, ctx, sub), t.Subnet)
            self._check_revision(sub, revision)
            stmt = select(func.count()).select_from(t.IPAllocation).join(
                t.Port, t.Port.id == t.IPAllocation.port_id).where(
                t.IPAllocation.subnet_id == sub.id, t.Port.device_owner != "network:dhcp")
            if sub.ipv6_address_mode in ("slaac", "dhcpv6-stateless"):
                # Auto-addressed: only router interfaces keep the subnet in use.
                stmt = stmt.where(t.Port.device_owner == ROUTER_INTERFACE)
            in_use = s.execute(stmt).scalar_one()
            if in_use:
                raise conflict(f"Unable to complete operation on subnet {sub.id}: One or more "
                               "ports have an IP allocation from this subnet.", "SubnetInUse")
            s.execute(delete(t.IPAllocation).where(t.IPAllocation.subnet_id == sub.id))
            s.execute(delete(t.Tag).where(t.Tag.resource_id == sub.id))
            s.delete(sub)
            return sub.network_id
        net_id = self._tx(run)
        self._cursors.pop(sid, None)  # the allocation hints of the subnet
        self.driver.network_updated({"id": net_id}, [])
        self._pools.pop(sid, None)

    # ================================================================== subnet pools
    def _pool_visible(self, ctx: RequestContext, pool: t.SubnetPool) -> bool:
        return ctx.is_admin or pool.shared or pool.project_id == ctx.project_id

    def list_subnetpools(self, ctx: RequestContext) -> list[dict[str, Any]]:
        def run(s: Session) -> list[dict[str, Any]]:
            rows = [p for p in s.execute(select(t.SubnetPool).order_by(
                t.SubnetPool.created_at)).scalars() if self._pool_visible(ctx, p)]
            return self._pool_views(s, rows)
        return self._read(run)

    def get_subnetpool(self, ctx: RequestContext, pid: str) -> dict[str, Any]:
        def run(s: Session) -> dict[str, Any]:
            pool = s.get(t.SubnetPool, pid)
            if pool is None or not self._pool_visible(ctx, pool):
                raise not_found(t.SubnetPool, pid)
            return self._pool_views(s, [self._readable(s, ctx, pool)])[0]
        return self._read(run)

    @staticmethod
    def _prefixes(value: Any) -> list[ipam.Net]:
        items = sc.to_list(value, "prefixes")
        if not items:
            raise sc.bad("Invalid input for prefixes. Reason: at least one prefix is needed.")
        nets = [ipam.parse_cidr(p, "prefixes") if isinstance(p, str) else
                ipam.parse_cidr(p, "prefixes") for p in items]
        if len({n.version for n in nets}) > 1:
            raise sc.bad("Illegal subnetpool association: prefixes of different IP "
                         "versions.", "PrefixVersionMismatch")
        return list(ipaddress.collapse_addresses(nets))  # type: ignore[type-var]

    def create_subnetpools(self, ctx: RequestContext, bodies: list[dict[str, Any]]
                           ) -> list[dict[str, Any]]:
        return self._create_all(ctx, bodies, self._create_pool, self._pool_views)

    def _pool_bounds(self, pool: t.SubnetPool, body: dict[str, Any]) -> None:
        maxlen = 32 if pool.ip_version == 4 else 128
        for key in ("min_prefixlen", "max_prefixlen", "default_prefixlen"):
            if key in body and body[key] is not None:
                setattr(pool, key, sc.to_int(body[key], key, minimum=0, maximum=maxlen))
        smallest = min(ipaddress.ip_network(p).prefixlen for p in pool.prefixes)
        if pool.min_prefixlen < smallest and "min_prefixlen" not in body:
            pool.min_prefixlen = smallest
        if "default_prefixlen" not in body or body.get("default_prefixlen") is None:
            pool.default_prefixlen = max(pool.default_prefixlen or 0, pool.min_prefixlen)
        if not (pool.min_prefixlen <= pool.default_prefixlen <= pool.max_prefixlen):
            raise sc.bad(f"Illegal prefix bounds: min_prefixlen={pool.min_prefixlen}, "
                         f"default_prefixlen={pool.default_prefixlen}, "
                         f"max_prefixlen={pool.max_prefixlen}.",
                         "IllegalSubnetPoolPrefixBounds")

    def _check_default_pool(self, s: Session, pool: t.SubnetPool) -> None:
        if pool.is_default:
            other = s.execute(select(t.SubnetPool.id).where(
                t.SubnetPool.is_default, t.SubnetPool.ip_version == pool.ip_version,
                t.SubnetPool.id != pool.id)).first()
            if other is not None:
                raise sc.bad(f"Invalid input for operation: A default subnetpool for this IP "
                             f"family has already been set. Only one default may exist per "
                             f"IP family ({other[0]}).", "InvalidInput")

    def _create_pool(self, s: Session, ctx: RequestContext, body: dict[str, Any]
                     ) -> t.SubnetPool:
        sc.check_keys(body, sc.SUBNETPOOL_KEYS, "subnetpool")
        project = self._owner_for_create(ctx, body, "subnetpool")
        if "prefixes" not in body:
            raise sc.bad("Failed to parse request. Required attribute 'prefixes' not "
                         "specified")
        nets = self._prefixes(body["prefixes"])
        version = nets[0].version
        pool = self._stamp(t.SubnetPool(id=str(uuid.uuid4()), project_id=project,
                                        ip_version=version, prefixes=[str(n) for n in nets]))
        self._set_text(pool, body, create=True)
        pool.min_prefixlen = 8 if version == 4 else 64
        pool.max_prefixlen = 32 if version == 4 else 128
        pool.default_prefixlen = 0
        self._pool_bounds(pool, body)
        for key, action in (("shared", "create_subnetpool:shared"),
                            ("is_default", "create_subnetpool:is_default")):
            if key in body and sc.to_bool(body[key], key):
                self._enforce(ctx, action, {"project_id": project})
        pool.shared = sc.to_bool(body.get("shared", False), "shared")
        pool.is_default = sc.to_bool(body.get("is_default", False), "is_default")
        pool.default_quota = sc.to_int(body.get("default_quota"), "default_quota",
                                       nullable=True, minimum=0)
        self._bind_scope(s, ctx, pool, body.get("address_scope_id"))
        self._check_quota(s, project, "subnetpool")
        self._check_default_pool(s, pool)
        s.add(pool)
        s.flush()
        return pool

    def update_subnetpool(self, ctx: RequestContext, pid: str, body: dict[str, Any],
                          revision: int | None = None) -> dict[str, Any]:
        def run(s: Session) -> dict[str, Any]:
            sc.check_keys(body, sc.SUBNETPOOL_KEYS, "subnetpool")
            pool = s.get(t.SubnetPool, pid)
            if pool is None or not self._pool_visible(ctx, pool):
                raise not_found(t.SubnetPool, pid)
            self._change(ctx, "update_subnetpool", *self._row_target(s, ctx, pool), t.SubnetPool)
            self._check_revision(pool, revision)
            if "prefixes" in body:
                nets = self._prefixes(body["prefixes"])
                if nets[0].version != pool.ip_version:
                    raise sc.bad("Prefixes must be of the pool's IP version.",
                                 "PrefixVersionMismatch")
                for old in pool.prefixes:
                    o = ipaddress.ip_network(old)
                    if not any(o.subnet_of(n) for n in nets):  # type: ignore[arg-type]
                        raise sc.bad(f"Illegal update to prefixes: {old} would be removed; "
                                     "prefixes can only be added or grown.",
                                     "IllegalPrefixUpdate")
                pool.prefixes = [str(n) for n in nets]
                if pool.address_scope_id and "address_scope_id" not in body:
                    self._check_scope_prefixes(s, pool.address_scope_id, pool.id,
                                               pool.prefixes)
            if "address_scope_id" in body:
                self._bind_scope(s, ctx, pool, body["address_scope_id"])
            self._set_text(pool, body)
            self._pool_bounds(pool, body)
            if "is_default" in body:
                self._enforce(ctx, "update_subnetpool:is_default",
                              {"project_id": pool.project_id})
                pool.is_default = sc.to_bool(body["is_default"], "is_default")
                self._check_default_pool(s, pool)
            if "default_quota" in body:
                pool.default_quota = sc.to_int(body["default_quota"], "default_quota",
                                               nullable=True, minimum=0)
            self._updated(s, pool, body)
            return self._pool_views(s, [pool])[0]
        return self._tx(run)

    def delete_subnetpool(self, ctx: RequestContext, pid: str,
                          revision: int | None = None) -> None:
        def run(s: Session) -> None:
            pool = s.get(t.SubnetPool, pid)
            if pool is None or not self._pool_visible(ctx, pool):
                raise not_found(t.SubnetPool, pid)
            self._change(ctx, "delete_subnetpool", *self._row_target(s, ctx, pool), t.SubnetPool)
            self._check_revision(pool, revision)
            if s.execute(select(t.Subnet.id).where(t.Subnet.subnetpool_id == pid)).first():
                raise conflict(f"Unable to delete subnet pool: {pid}: subnets use it.",
                               "SubnetPoolInUse")
            s.execute(delete(t.Tag).where(t.Tag.resource_id == pid))
            s.delete(pool)
        self._tx(run)
