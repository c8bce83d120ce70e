"""Ports: creation, fixed-IP allocation (IPAM), bindings, address pairs, updates and deletion."""

from __future__ import annotations

import ipaddress
import random
import uuid
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from onestack.common.context import RequestContext
from onestack.db import network as t
from onestack.network import ipam
from onestack.network import schemas as sc
from onestack.network.base import ManagerBase
from onestack.network.common import (
    DEFAULT_QUOTAS,
    FLOATINGIP_OWNER,
    ROUTER_GATEWAY,
    ROUTER_INTERFACE,
    conflict,
    not_found,
)
from onestack.network.store import (
    _PROBE,
    _Q_ALL_TAKEN,
    _Q_GROUP,
    _Q_LOCK_SUBNET,
    _Q_MAC_USED,
    _Q_NETWORK_SUBNETS,
    _Q_NETWORK_SUBNETS_QUOTA,
    _Q_TAKEN,
    _SQLITE_TAKEN,
    _SUBNET_KEYS,
    _ip_text,
    _PortRow,
    _PortWrites,
)


class PortsMixin(ManagerBase):
    """Ports: creation, fixed-IP allocation (IPAM), bindings, address pairs, updates and
    deletion."""

    # ================================================================== ports + IPAM
    def list_ports(self, ctx: RequestContext, **eq: Any) -> list[dict[str, Any]]:
        """Ports the caller may see; ``eq`` pushes simple equality filters into SQL
        (``network_id``, ``device_id``, ``device_owner``, ``project_id``, ``id``)."""
        def run(s: Session) -> list[dict[str, Any]]:
            stmt = select(t.Port).order_by(t.Port.created_at, t.Port.id)
            for key, values in eq.items():
                col = getattr(t.Port, key)
                stmt = stmt.where(col.in_(values) if isinstance(values, list | tuple | set)
                                  else col == values)
            if not ctx.is_admin:
                owned = select(t.Network.id).where(
                    t.Network.project_id == (ctx.project_id or ""))
                stmt = stmt.where((t.Port.project_id == (ctx.project_id or ""))
                                  | t.Port.network_id.in_(owned))
            return self._port_views(s, ctx, list(s.execute(stmt).scalars()))
        return self._read(run)

    def get_port(self, ctx: RequestContext, pid: str) -> dict[str, Any]:
        return self._read(lambda s: self._port_views(
            s, ctx, [self._readable(s, ctx, self._visible_port(s, ctx, pid))])[0])

    def create_ports(self, ctx: RequestContext, bodies: list[dict[str, Any]]
                     ) -> list[dict[str, Any]]:
        """Create ports (all or nothing): MACs, fixed IPs, security groups, binding."""
        docs = self._tx(self._create_ports_in, ctx, bodies)
        for d in docs:
            self.driver.port_updated(d)
        return docs

    def _subnets_of(self, s: Session, net_id: str) -> list[t.Subnet]:
        return list(s.execute(select(t.Subnet).where(t.Subnet.network_id == net_id)
                              .order_by(t.Subnet.created_at, t.Subnet.id)).scalars())

    def _port_network(self, w: _PortWrites, ctx: RequestContext, net_id: str,
                      project: Any = None) -> tuple[Any, list[Any]]:
        """The (visible) network of a new port and its subnets, read once per transaction
        (with the port quota state of ``project`` when that is not known yet)."""
        cached = w.nets.get(net_id)
        if cached is None:
            if isinstance(project, str) and project and project not in w.quota:
                rows = w.rows(_Q_NETWORK_SUBNETS_QUOTA, {
                    "id": net_id, "pid": project, "res": "port",
                    "default": DEFAULT_QUOTAS["port"]})
                if rows:
                    w.quota[project] = [int(rows[0].q_limit), int(rows[0].q_used)]
            else:
                rows = w.rows(_Q_NETWORK_SUBNETS, {"id": net_id})
            net = rows[0] if rows else None
            subnets = [SimpleNamespace(**{k: getattr(row, "s_" + k) for k in _SUBNET_KEYS})
                       for row in rows if row.s_id is not None]
            cached = w.nets[net_id] = (net, subnets)
        net, subnets = cached
        if net is None or not self._net_visible(ctx, net):
            raise not_found(t.Network, net_id)
        return net, subnets

    def _check_port_quota(self, w: _PortWrites, project: str) -> None:
        if not project:
            return
        state = w.quota.get(project)
        if state is None:
            state = w.quota[project] = self._quota_state(w.rows, project, "port")
        if 0 <= state[0] < state[1] + 1:
            raise conflict("Quota exceeded for resources: ['port'].", "OverQuota")
        state[1] += 1

    def _create_port(self, s: Session | None, ctx: RequestContext, body: dict[str, Any],
                     internal: bool = False, w: _PortWrites | None = None) -> _PortRow:
        """Validate one port and buffer its rows in ``w`` (written at once without it;
        ``s`` may then be None: ``w`` opens a session if one is needed)."""
        own = w is None
        if w is None:
            w = _PortWrites(s)
        sc.check_keys(body, sc.PORT_KEYS, "port")
        if "network_id" not in body:
            raise sc.bad("Failed to parse request. Required attribute 'network_id' not "
                         "specified")
        likely_project = body.get("project_id") or body.get("tenant_id") or ctx.project_id
        net, subnets = self._port_network(
            w, ctx, sc.to_str(body["network_id"], "network_id") or "", likely_project)
        project = self._owner_for_create(ctx, body) if not internal else (
            sc.project_of(body, ctx.project_id) or "")
        if not internal:
            self._on_network_create(ctx, "port", project, net)
        device_owner = sc.to_str(body.get("device_owner", ""), "device_owner") or ""
        if not internal:
            self.authz.attributes(ctx, "create_port", body, {
                "project_id": project, "network:project_id": net.project_id,
                "shared": bool(net.shared), "device_owner": device_owner})
        self._check_port_quota(w, project)
        port = self._stamp(_PortRow(id=str(uuid.uuid4()), network_id=net.id,
                                    project_id=project))
        self._set_text(port, body, create=True)
        port.admin_state_up = sc.to_bool(body.get("admin_state_up", True), "admin_state_up")
        port.device_id = sc.to_str(body.get("device_id", ""), "device_id") or ""
        port.device_owner = device_owner
        port.dns_name = sc.to_str(body.get("dns_name", ""), "dns_name") or ""
        port.port_security_enabled = sc.to_bool(
            body.get("port_security_enabled", net.port_security_enabled),
            "port_security_enabled")
        mac = body.get("mac_address")
        if mac is not None:
            if not ipam.valid_mac(mac):
                raise sc.invalid("mac_address", mac, f"'{mac}' is not a valid MAC address")
            mac = mac.lower()
            if (net.id, mac) in w.macs or w.rows(_Q_MAC_USED, {"nid": net.id, "mac": mac}):
                raise conflict(f"Unable to complete operation for network {net.id}. The mac "
                               f"address {mac} is in use.", "MacAddressInUse")
            port.mac_address = mac
        else:
            # A clash with an existing port (1 in 2**24) fails the insert: _tx retries.
            port.mac_address = ipam.random_mac(self.settings.network_base_mac)
            while (net.id, port.mac_address) in w.macs:
                port.mac_address = ipam.random_mac(self.settings.network_base_mac)
        w.macs.add((net.id, port.mac_address))
        port.extra_dhcp_opts = self._dhcp_opts(body.get("extra_dhcp_opts", []))
        port.status = "ACTIVE" if device_owner.startswith("network:") else "DOWN"
        self._set_binding(port, body, ctx, internal)
        if "fixed_ips" in body and body["fixed_ips"] is not None:
            requests = self._fixed_ip_requests(w.orm, net, subnets, body["fixed_ips"])
        else:
            requests = self._auto_requests(subnets)
        self._allocate(s, port, subnets, requests, auto="fixed_ips" not in body
                       or body["fixed_ips"] is None, w=w)
        pairs = body.get("allowed_address_pairs", [])
        port.allowed_address_pairs = self._address_pairs(pairs, port)
        if port.allowed_address_pairs and not port.port_security_enabled:
            raise conflict("Port Security must be enabled in order to have allowed address "
                           "pairs on a port.", "AddressPairAndPortSecurityRequired")
        if "security_groups" in body and body["security_groups"] is not None:
            groups = self._check_groups(
                lambda gid: next(iter(w.rows(_Q_GROUP, {"id": gid})), None), ctx, project,
                body["security_groups"])
        elif port.port_security_enabled and not device_owner.startswith("network:"):
            sid = self._default_sgs.get(project) if project else None
            if sid is None and project:
                sid = self._ensure_default_sg(w.orm(), project)
            groups = [sid] if sid else []
        else:
            groups = []
        if groups and not port.port_security_enabled:
            raise conflict("Port has security group associated. Cannot disable port security "
                           "or ip address until security group is removed",
                           "PortSecurityPortHasSecurityGroup")
        tags = body.get("tags")
        w.add_port(port, groups, sorted(set(self._valid_tags(tags))) if tags is not None
                   else [])
        if own:
            w.flush()
        return port

    def _set_binding(self, port: t.Port, body: dict[str, Any], ctx: RequestContext,
                     internal: bool) -> None:
        if "binding:vnic_type" in body:
            vnic = body["binding:vnic_type"]
            if vnic not in sc.VNIC_TYPES:
                raise sc.invalid("binding:vnic_type", vnic, f"'{vnic}' is not in "
                                 f"{list(sc.VNIC_TYPES)}")
            port.binding_vnic_type = vnic
        if "binding:profile" in body:
            port.binding_profile = sc.to_dict(body["binding:profile"], "binding:profile")
        if "binding:host_id" in body:
            host = sc.to_str(body["binding:host_id"] or "", "binding:host_id") or ""
            self._bind(port, host)

    def _bind(self, port: t.Port, host: str) -> None:
        port.binding_host_id = host
        if not host:
            port.binding_vif_type = "unbound"
            port.binding_vif_details = {}
            if not port.device_owner.startswith("network:"):
                port.status = "DOWN"
            return
        view = {"id": port.id, "network_id": port.network_id, "mac_address": port.mac_address,
                "binding:vnic_type": port.binding_vnic_type}
        result = self.driver.bind_port(view, host)
        if result is None:
            port.binding_vif_type = "binding_failed"
            port.binding_vif_details = {}
            port.status = "DOWN"
        else:
            port.binding_vif_type = result.vif_type
            port.binding_vif_details = dict(result.vif_details)
            port.status = "ACTIVE" if result.active and port.admin_state_up else "DOWN"

    @staticmethod
    def _dhcp_opts(value: Any) -> list[dict[str, Any]]:
        out = []
        for opt in sc.to_list(value or [], "extra_dhcp_opts"):
            if not isinstance(opt, dict) or "opt_name" not in opt:
                raise sc.bad("Invalid input for extra_dhcp_opts. Reason: each option needs "
                             "'opt_name' and 'opt_value'.")
            version = sc.to_int(opt.get("ip_version", 4), "ip_version")
            out.append({"opt_name": str(opt["opt_name"]), "opt_value": opt.get("opt_value"),
                        "ip_version": version})
        return out

    def _address_pairs(self, value: Any, port: t.Port) -> list[dict[str, str]]:
        out: list[dict[str, str]] = []
        for pair in sc.to_list(value or [], "allowed_address_pairs"):
            if not isinstance(pair, dict) or "ip_address" not in pair or set(pair) - {
                    "ip_address", "mac_address"}:
                raise sc.bad("Invalid input for allowed_address_pairs. Reason: each pair "
                             "needs an 'ip_address' (and optionally 'mac_address').",
                             "AllowedAddressPairsMissingIP")
            ip = pair["ip_address"]
            try:
                if not isinstance(ip, str):
                    raise ValueError(ip)
                if "/" in ip:
                    ipaddress.ip_network(ip, strict=False)
                else:
                    ipaddress.ip_address(ip)
            except ValueError:
                raise sc.invalid("allowed_address_pairs", ip,
                                 f"'{ip}' is not a valid IP address.") from None
            mac = pair.get("mac_address") or port.mac_address
            if not ipam.valid_mac(mac):
                raise sc.invalid("allowed_address_pairs", mac, f"'{mac}' is not a valid MAC "
                                 "address")
            item = {"ip_address": ip, "mac_address": mac.lower()}
            if item in out:
                raise sc.bad("Request contains duplicate address pair: "
                              f"mac_address {mac} ip_address {ip}.",
                              "DuplicateAddressPairInRequest")
            out.append(item)
        if len(out) > 10:
            raise sc.bad("Exceeded maximum amount of allowed address pairs (10).",
                         "AllowedAddressPairExhausted")
        return out

    def _check_groups(self, find: Callable[[str], Any], ctx: RequestContext, project: str,
                      value: Any) -> list[str]:
        """The ids of security groups ``value`` (``find`` reads a group's ``project_id``)."""
        groups = sc.to_list(value, "security_groups")
        out = []
        for gid in groups:
            sg = find(gid) if isinstance(gid, str) else None
            if sg is None or not (ctx.is_admin or sg.project_id in (ctx.project_id, project)):
                raise not_found(t.SecurityGroup, str(gid))
            if gid not in out:
                out.append(gid)
        return out

    def _fixed_ip_requests(self, session: Callable[[], Session], net: t.Network,
                           subnets: list[t.Subnet], value: Any
                           ) -> list[tuple[t.Subnet, str | None]]:
        """[(subnet, ip or None)] from a ``fixed_ips`` request (``session`` is asked for
        only to tell an unknown subnet from another network's)."""
        out: list[tuple[t.Subnet, str | None]] = []
        by_id = {sub.id: sub for sub in subnets}
        for item in sc.to_list(value, "fixed_ips"):
            if not isinstance(item, dict) or not item or set(item) - {"subnet_id",
                                                                      "ip_address"}:
                raise sc.bad("Invalid input for fixed_ips. Reason: each entry takes "
                             "'subnet_id' and/or 'ip_address'.")
            sid = sc.to_str(item.get("subnet_id"), "fixed_ips", nullable=True)
            ip = item.get("ip_address")
            sub: t.Subnet | None = None
            if sid is not None:
                sub = by_id.get(sid)
                if sub is None:
                    if session().get(t.Subnet, sid) is None:
                        raise not_found(t.Subnet, str(sid))
                    raise sc.bad(f"Invalid input for operation: Failed to create port on "
                                 f"network {net.id}, because fixed_ips included invalid "
                                 f"subnet {sid}.", "InvalidInput")
            if ip is not None:
                addr = ipam.parse_ip(ip, "fixed_ips")
                if sub is None:
                    sub = next((x for x in subnets if addr in ipaddress.ip_network(x.cidr)),
                               None)
                    if sub is None:
                        raise sc.bad(f"Invalid input for operation: IP address {ip} is not a "
                                     f"valid IP for any of the subnets on the specified "
                                     f"network.", "InvalidIpForNetwork")
                cidr = ipaddress.ip_network(sub.cidr)
                if addr.version != cidr.version or addr not in cidr:
                    raise sc.bad(f"IP address {ip} is not a valid IP for the specified "
                                 "subnet.", "InvalidIpForSubnet")
                if cidr.version == 4 and cidr.prefixlen < 31 and addr in (
                        cidr.network_address, cidr.broadcast_address):
                    raise sc.bad(f"IP address {ip} is not a valid IP for the specified "
                                 "subnet.", "InvalidIpForSubnet")
                ip = str(addr)
            assert sub is not None
            if any(r[0].id == sub.id and r[1] == ip for r in out):
                raise sc.bad("Duplicate IP address in fixed_ips.", "InvalidInput")
            out.append((sub, ip))
        return out

    @staticmethod
    def _auto_requests(subnets: list[t.Subnet]) -> list[tuple[t.Subnet, str | None]]:
        out: list[tuple[t.Subnet, str | None]] = []
        v4 = [x for x in subnets if x.ip_version == 4]
        if v4:
            out.append((v4[0], None))
        stateful_done = False
        for sub in subnets:
            if sub.ip_version != 6:
                continue
            if sub.ipv6_address_mode in ("slaac", "dhcpv6-stateless"):
                out.append((sub, None))
            elif not stateful_done:
                out.append((sub, None))
                stateful_done = True
        return out

    def _allocate(self, s: Session | None, port: Any, subnets: list[Any],
                  requests: list[tuple[Any, str | None]], auto: bool = False,
                  w: _PortWrites | None = None) -> None:
        """Buffer the fixed IPs of ``port`` in ``w`` (409 when a requested one is taken);
        without ``w`` they are inserted at once."""
        own = w is None
        if w is None:
            w = _PortWrites(s)
        v4_auto = [r for r in requests if r[1] is None and r[0].ip_version == 4]
        router_port = port.device_owner in (ROUTER_INTERFACE, "network:router_ha_interface")
        for sub, ip in requests:
            if ip is None and sub.ip_version == 6 and sub.ipv6_address_mode in (
                    "slaac", "dhcpv6-stateless") and not router_port:
                cidr = ipaddress.ip_network(sub.cidr)
                if cidr.prefixlen == 64:
                    ip = ipam.eui64(cidr, port.mac_address)
            if ip is not None:
                if ip == sub.gateway_ip and not router_port and not port.device_owner.startswith(
                        "network:"):
                    raise conflict(f"IP address {ip} already allocated in subnet {sub.id}",
                                   "IpAddressAlreadyAllocated")
                n = int(ipaddress.ip_address(ip))
                if n in w.taken[sub.id] or self._first_free(w, sub.id, sub.ip_version,
                                                            [n]) is None:
                    raise conflict(f"IP address {ip} already allocated in subnet {sub.id}",
                                   "IpAddressAlreadyAllocated")
                w.add_ip(port, sub.id, ip, n)
                continue
            candidates = [sub]
            if auto and sub.ip_version == 4 and v4_auto and sub is v4_auto[0][0]:
                candidates = [x for x in subnets if x.ip_version == 4]
            chosen = None
            for cand in candidates:
                chosen = self._next_free(w, cand)
                if chosen is not None:
                    sub = cand
                    break
            if chosen is None:
                raise conflict(f"No more IP addresses available on network "
                               f"{port.network_id}.", "IpAddressGenerationFailure")
            w.add_ip(port, sub.id, _ip_text(sub.ip_version, chosen), chosen)
        if own:
            w.flush()

    def _next_free(self, w: _PortWrites, sub: Any) -> int | None:
        """A free pool address of ``sub`` (as an integer).

        Steady state is one indexed query: the ``_PROBE`` addresses after a per-subnet
        cursor (the last address handed out by this process; only a hint, the primary key
        decides). When they are all taken (or there is no cursor yet) the subnet's
        allocations are read once and the first free address after the cursor is taken,
        wrapping around, so freed addresses are found again. Huge (IPv6) pools are probed at
        random instead. Addresses this transaction has buffered (``w.taken``) count as used.
        """
        if self.db.backend != "sqlite" and sub.id not in w.locked:
            # Serialise allocators of this subnet (SQLite's writers are serial already).
            w.rows(_Q_LOCK_SUBNET, {"sid": sub.id})
            w.locked.add(sub.id)
        ranges, size, gateway = self._pool_info(sub)
        if not ranges:
            return None
        version = sub.ip_version
        skip = w.taken[sub.id]
        if gateway is not None:
            skip = skip | {gateway}
        if size > 1 << 20:
            for _ in range(32):
                batch = {random.randint(*random.choice(ranges)) for _i in range(_PROBE)}
                found = self._first_free(w, sub.id, version, [n for n in batch
                                                              if n not in skip])
                if found is not None:
                    return found
            return None
        cursor = self._cursors.get(sub.id)
        if cursor is not None:
            probe: list[int] = []
            for n in self._pool_order(ranges, cursor):
                if n not in skip:
                    probe.append(n)
                    if len(probe) == _PROBE:
                        break
            found = self._first_free(w, sub.id, version, probe)
            if found is not None:
                self._cursors[sub.id] = found
                return found
            if len(probe) < _PROBE:
                return None  # the probe covered the whole pool
        taken = {int(ipaddress.ip_address(r[0])) for r in
                 w.rows(_Q_ALL_TAKEN, {"sid": sub.id})}
        for n in self._pool_order(ranges, cursor):
            if n not in taken and n not in skip:
                self._cursors[sub.id] = n
                return n
        return None

    def _pool_info(self, sub: Any) -> tuple[list[tuple[int, int]], int, int | None]:
        """A subnet's sorted pool ranges, their size and its gateway as an integer
        (parsed once per subnet and pool/gateway change)."""
        pools, gateway = sub.allocation_pools or [], sub.gateway_ip
        cached = self._pools.get(sub.id)
        if cached is None or cached[0] != pools or cached[1] != gateway:
            ranges = sorted(ipam.pool_ranges(pools))
            cached = (pools, gateway, ranges, sum(b - a + 1 for a, b in ranges),
                      int(ipaddress.ip_address(gateway)) if gateway else None)
            self._pools[sub.id] = cached
        return cached[2], cached[3], cached[4]

    @staticmethod
    def _pool_order(ranges: list[tuple[int, int]], cursor: int | None) -> Iterator[int]:
        """Pool addresses from just after ``cursor`` to the end, then from the start."""
        start = cursor + 1 if cursor is not None else ranges[0][0]
        for a, b in ranges:
            if b >= start:
                yield from range(max(a, start), b + 1)
        for a, b in ranges:
            if a >= start:
                break
            yield from range(a, min(b, start - 1) + 1)

    @staticmethod
    def _first_free(w: _PortWrites, subnet_id: str, version: int, addrs: list[int]
                    ) -> int | None:
        """The first of (at most ``_PROBE``) ``addrs`` not allocated in the subnet."""
        if not addrs:
            return None
        texts = [_ip_text(version, n) for n in addrs]
        padded = texts + [texts[-1]] * (_PROBE - len(texts))
        raw = w.raw
        if raw is None and w.conn.dialect.name == "sqlite":
            raw = w.conn.connection.driver_connection  # (in the same transaction)
        if raw is not None:
            # Strings in, strings out: straight to the driver, without the ~20 us
            # SQLAlchemy adds to each execution.
            taken = {r[0] for r in raw.execute(_SQLITE_TAKEN, [subnet_id, *padded])}
        else:
            params = {f"ip{i}": ip for i, ip in enumerate(padded)}
            params["sid"] = subnet_id
            taken = {r[0] for r in w.rows(_Q_TAKEN, params)}
        for n, text in zip(addrs, texts, strict=True):
            if text not in taken:
                return n
        return None

    def update_port(self, ctx: RequestContext, pid: str, body: dict[str, Any],
                    revision: int | None = None) -> dict[str, Any]:
        def run(s: Session) -> dict[str, Any]:
            sc.check_keys(body, sc.PORT_KEYS, "port")
            port = self._visible_port(s, ctx, pid)
            target = self._row_target(s, ctx, port)[1]
            self._change(ctx, "update_port", "port", target, t.Port)
            self.authz.attributes(ctx, "update_port", body, target)
            self._check_revision(port, revision)
            for ro in ("network_id", "project_id", "tenant_id"):
                if ro in body and body[ro] != getattr(port, ro if ro != "tenant_id"
                                                      else "project_id"):
                    raise sc.bad(f"Cannot update read-only attribute {ro}")
            self._apply_port_update(s, ctx, port, body)
            self._touch(port)
            s.flush()
            return self._port_views(s, ctx, [port])[0]
        doc = self._tx(run)
        self.driver.port_updated(doc)
        return doc

    def _apply_port_update(self, s: Session, ctx: RequestContext, port: t.Port,
                           body: dict[str, Any]) -> None:
        for key in ("name", "description", "device_id", "device_owner", "dns_name"):
            if key in body:
                setattr(port, key, sc.to_str(body[key] if body[key] is not None else "", key)
                        or "")
        if "admin_state_up" in body:
            port.admin_state_up = sc.to_bool(body["admin_state_up"], "admin_state_up")
        if "mac_address" in body and body["mac_address"] != port.mac_address:
            mac = body["mac_address"]
            if not ipam.valid_mac(mac):
                raise sc.invalid("mac_address", mac, f"'{mac}' is not a valid MAC address")
            if port.binding_host_id:
                raise conflict("Port is bound; its MAC address cannot be changed.",
                               "PortBound")
            if s.execute(select(t.Port.id).where(t.Port.network_id == port.network_id,
                                                 t.Port.mac_address == mac.lower())).first():
                raise conflict(f"The mac address {mac} is in use.", "MacAddressInUse")
            port.mac_address = mac.lower()
        if "extra_dhcp_opts" in body:
            port.extra_dhcp_opts = self._dhcp_opts(body["extra_dhcp_opts"])
        if "port_security_enabled" in body:
            port.port_security_enabled = sc.to_bool(body["port_security_enabled"],
                                                    "port_security_enabled")
        if "fixed_ips" in body:
            net = s.get(t.Network, port.network_id)
            assert net is not None
            subnets = self._subnets_of(s, net.id)
            requests = self._fixed_ip_requests(lambda: s, net, subnets, body["fixed_ips"] or [])
            current = {(a.subnet_id, a.ip_address): a for a in self._allocations(s, port.id)}
            keep: set[tuple[str, str]] = set()
            new: list[tuple[t.Subnet, str | None]] = []
            for sub, ip in requests:
                if ip is not None and (sub.id, ip) in current:
                    keep.add((sub.id, ip))
                elif ip is None and any(k[0] == sub.id and k not in keep for k in current):
                    k = next(k for k in current if k[0] == sub.id and k not in keep)
                    keep.add(k)
                else:
                    new.append((sub, ip))
            for key, alloc in current.items():
                if key not in keep:
                    s.delete(alloc)
            s.flush()
            if new:
                self._allocate(s, port, subnets, new)
        if "allowed_address_pairs" in body:
            port.allowed_address_pairs = self._address_pairs(body["allowed_address_pairs"],
                                                             port)
        if "security_groups" in body:
            groups = self._check_groups(lambda gid: s.get(t.SecurityGroup, gid), ctx,
                                        port.project_id, body["security_groups"] or [])
            s.execute(delete(t.PortSecurityGroup).where(t.PortSecurityGroup.port_id == port.id))
            s.flush()
            for gid in groups:
                s.add(t.PortSecurityGroup(port_id=port.id, security_group_id=gid))
        if not port.port_security_enabled:
            has_groups = s.execute(select(t.PortSecurityGroup.port_id).where(
                t.PortSecurityGroup.port_id == port.id)).first()
            if has_groups and "security_groups" not in body:
                raise conflict("Port has security group associated. Cannot disable port "
                               "security or ip address until security group is removed",
                               "PortSecurityPortHasSecurityGroup")
            if has_groups:
                raise conflict("Port security must be enabled and port must have an IP "
                               "address in order to use security groups.",
                               "PortSecurityAndIPRequiredForSecurityGroups")
            if port.allowed_address_pairs:
                raise conflict("Port Security must be enabled in order to have allowed "
                               "address pairs on a port.",
                               "AddressPairAndPortSecurityRequired")
        if "binding:vnic_type" in body or "binding:profile" in body or \
                "binding:host_id" in body:
            self._set_binding(port, body, ctx, True)
        if "tags" in body:
            self._replace_tags(s, port.id, body["tags"])

    def delete_port(self, ctx: RequestContext, pid: str, revision: int | None = None,
                    internal: bool = False) -> None:
        def run(s: Session) -> dict[str, Any]:
            port = self._visible_port(s, ctx, pid)
            if not internal:
                self._change(ctx, "delete_port", *self._row_target(s, ctx, port), t.Port)
            self._check_revision(port, revision)
            if not internal and port.device_owner in (ROUTER_INTERFACE, ROUTER_GATEWAY,
                                                      FLOATINGIP_OWNER):
                raise conflict(f"Port {pid} cannot be deleted directly via the port API: has "
                               f"device owner {port.device_owner}.", "L3PortInUse")
            view = self._port_views(s, ctx, [port])[0]
            self._delete_port_row(s, port)
            return view
        view = self._tx(run)
        self.driver.port_deleted(view)

    def _delete_port_row(self, s: Session, port: t.Port) -> None:
        for fip in s.execute(select(t.FloatingIP).where(t.FloatingIP.port_id == port.id)
                             ).scalars():
            fip.port_id = fip.fixed_ip_address = fip.router_id = None
            fip.status = "DOWN"
            self._touch(fip)
        s.execute(delete(t.IPAllocation).where(t.IPAllocation.port_id == port.id))
        s.execute(delete(t.PortSecurityGroup).where(t.PortSecurityGroup.port_id == port.id))
        s.execute(delete(t.Tag).where(t.Tag.resource_id == port.id))
        s.delete(port)
        s.flush()
