"""Network business logic: the only place network state changes.

Every public method takes the caller's ``RequestContext`` and enforces tenancy itself: a
project sees its own resources plus shared and external networks (and their subnets);
anything else is a 404, as in Neutron. Administrators see everything.

Writes run in ``_tx``, one database transaction retried on a unique-key clash or deadlock
(a concurrent allocator took the same IP, MAC or segment id); the clash can never commit
because ``net_ip_allocation``'s primary key is ``(subnet_id, ip_address)``. Subnet rows are
locked (``SELECT ... FOR UPDATE`` on MariaDB/PostgreSQL; SQLite serialises writers) while
addresses are chosen, so retries are rare.

The compute service uses the device API at the end of the class: ``create_port_for_device``,
``bind_port``, ``unbind_port``, ``delete_ports_for_device`` and ``device_ports``.
"""

from __future__ import annotations

import ipaddress
import random
import socket
import threading
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from onestack.api.policy import Policy
from onestack.common.context import RequestContext
from onestack.common.errors import APIError, NotFound
from onestack.common.timeutils import isotime, utcnow
from onestack.config import Settings
from onestack.db import network as t
from onestack.db.engine import Database
from onestack.drivers.network.base import NetworkDriver
from onestack.drivers.network.noop import NoopDriver
from onestack.network import ipam, views
from onestack.network import schemas as sc
from onestack.network.authz import Authorizer, owned_target
from onestack.network.base import ManagerBase
from onestack.network.common import (
    DEFAULT_QUOTAS,
    FLOATINGIP_OWNER,
    LOG,
    ROUTER_GATEWAY,
    ROUTER_INTERFACE,
    TAGGABLE,
    conflict,
    not_found,
)
from onestack.network.networks import NetworksMixin
from onestack.network.security_groups import SecurityGroupsMixin
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
    _DriverStatement,
    _ip_text,
    _PortRow,
    _PortWrites,
)
from onestack.network.subnets import SubnetsMixin
from onestack.network.writer import WriterMixin

__all__ = ["TAGGABLE", "NetworkManager"]


def _parse_ranges(text: str, with_physnet: bool) -> dict[str, list[tuple[int, int]]]:
    """``physnet:1:10,physnet2`` (VLAN) or ``1:1000,2000:3000`` (tunnels, key '')."""
    out: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        parts = item.split(":")
        if with_physnet:
            name = parts[0]
            out.setdefault(name, [])
            if len(parts) == 3:
                out[name].append((int(parts[1]), int(parts[2])))
        elif len(parts) == 2:
            out[""].append((int(parts[0]), int(parts[1])))
    return dict(out)



class NetworkManager(SecurityGroupsMixin, SubnetsMixin, NetworksMixin, WriterMixin, ManagerBase):
    """Networks, subnets, subnet pools, ports + IPAM, security groups, routers, floating IPs,
    quotas, tags and agents of the network service."""

    def __init__(self, db: Database, settings: Settings, policy: Policy,
                 driver: NetworkDriver | None = None) -> None:
        self.db = db
        self.settings = settings
        self.policy = policy
        self.authz = Authorizer(policy)
        self.driver = driver or NoopDriver()
        self.host = settings.network_host or socket.gethostname()
        self.flat_networks = {p.strip() for p in settings.network_flat_networks.split(",")
                              if p.strip()}
        self.vlan_ranges = _parse_ranges(settings.network_vlan_ranges, True)
        self.tunnel_ranges = {
            "vxlan": _parse_ranges(settings.network_vxlan_ranges, False).get("", []),
            "geneve": _parse_ranges(settings.network_geneve_ranges, False).get("", []),
        }
        self.tenant_types = [x.strip() for x in settings.network_tenant_network_types.split(",")
                             if x.strip()] or ["vxlan"]
        self.started = utcnow()
        #: Last address handed out per subnet (a hint only; the database decides).
        self._cursors: dict[str, int] = {}
        #: Parsed pools per subnet: (pools, gateway, ranges, size, gateway as int).
        self._pools: dict[str, tuple[Any, Any, list[tuple[int, int]], int, int | None]] = {}
        #: Default security group id per project (cleared on any write race).
        self._default_sgs: dict[str, str] = {}
        #: ``create_ports_nowait``'s own connection (SQLite), its DBAPI connection, a lock.
        self._nowait_conn: Connection | None = None
        self._nowait_raw: Any = None
        self._nowait_lock = threading.Lock()
        #: Port-creation statements compiled for the sqlite3 connection (``_PortWrites``).
        self._driver_statements: dict[Any, _DriverStatement] = {}
        #: Commits of that connection, pages in the WAL after the last background
        #: checkpoint, and a lock held while one runs (``_nowait_committed``).
        self._nowait_commits = 0
        self._wal_pages = 0
        self._checkpoint_lock = threading.Lock()

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
        port.name = sc.to_str(body.get("name", ""), "name") or ""
        port.description = sc.to_str(body.get("description", ""), "description") or ""
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
            sid = item.get("subnet_id")
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
            current = {(a.subnet_id, a.ip_address): a for a in s.execute(
                select(t.IPAllocation).where(t.IPAllocation.port_id == port.id)).scalars()}
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

    # ================================================================== routers
    def list_routers(self, ctx: RequestContext) -> list[dict[str, Any]]:
        def run(s: Session) -> list[dict[str, Any]]:
            stmt = select(t.Router).order_by(t.Router.created_at, t.Router.id)
            if not ctx.is_admin:
                stmt = stmt.where(t.Router.project_id == (ctx.project_id or ""))
            return self._router_views(s, ctx, list(s.execute(stmt).scalars()))
        return self._read(run)

    def get_router(self, ctx: RequestContext, rid: str) -> dict[str, Any]:
        return self._read(lambda s: self._router_views(
            s, ctx, [self._readable(s, ctx, self._owned(s, ctx, t.Router, rid))])[0])

    def create_routers(self, ctx: RequestContext, bodies: list[dict[str, Any]]
                       ) -> list[dict[str, Any]]:
        def run(s: Session) -> list[dict[str, Any]]:
            rows = []
            for body in bodies:
                sc.check_keys(body, sc.ROUTER_KEYS, "router")
                project = self._owner_for_create(ctx, body, "router")
                self._check_quota(s, project, "router")
                r = self._stamp(t.Router(id=str(uuid.uuid4()), project_id=project))
                r.name = sc.to_str(body.get("name", ""), "name") or ""
                r.description = sc.to_str(body.get("description", ""), "description") or ""
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
                self._set_tags(s, r.id, body.get("tags"))
                rows.append(r)
            s.flush()
            return self._router_views(s, ctx, rows)
        docs = self._tx(run)
        for d in docs:
            self.driver.router_updated(d, [], [])
        return docs

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
        if not s.execute(select(t.IPAllocation).where(t.IPAllocation.port_id == port.id)
                         ).first():
            subnets = self._subnets_of(s, net_id)
            if not subnets:
                raise sc.bad(f"Bad router request: No subnets on external network {net_id}.",
                             "BadRequest")
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
            if "name" in body:
                r.name = sc.to_str(body["name"], "name") or ""
            if "description" in body:
                r.description = sc.to_str(body["description"], "description") or ""
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
                cidrs = []
                for port in self._router_interfaces(s, r.id):
                    for a in s.execute(select(t.IPAllocation).where(
                            t.IPAllocation.port_id == port.id)).scalars():
                        sub = s.get(t.Subnet, a.subnet_id)
                        if sub is not None:
                            cidrs.append(ipaddress.ip_network(sub.cidr))
                if r.gw_port_id:
                    for a in s.execute(select(t.IPAllocation).where(
                            t.IPAllocation.port_id == r.gw_port_id)).scalars():
                        sub = s.get(t.Subnet, a.subnet_id)
                        if sub is not None:
                            cidrs.append(ipaddress.ip_network(sub.cidr))
                for route in routes:
                    hop = ipaddress.ip_address(route["nexthop"])
                    if not any(hop in c for c in cidrs):
                        raise sc.bad(f"Invalid format for routes: {route}, the nexthop is not "
                                     "connected with router", "InvalidRoutes")
                r.routes = routes
            if "tags" in body:
                self._replace_tags(s, r.id, body["tags"])
            self._touch(r)
            s.flush()
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

    def add_router_interface(self, ctx: RequestContext, rid: str, body: Any
                             ) -> dict[str, Any]:
        """Attach a subnet (a new port on its gateway IP) or an existing port to a router."""
        def run(s: Session) -> dict[str, Any]:
            if not isinstance(body, dict):
                raise sc.bad("Bad router request: body must be an object.")
            r = self._owned(s, ctx, t.Router, rid)
            self._change(ctx, "add_router_interface", "router", owned_target(r), t.Router)
            sid, pid = body.get("subnet_id"), body.get("port_id")
            if sid and pid:
                raise sc.bad("Bad router request: Cannot specify both subnet-id and port-id",
                             "BadRequest")
            if not sid and not pid:
                raise sc.bad("Bad router request: Either subnet_id or port_id must be "
                             "specified", "BadRequest")
            existing = []
            for port in self._router_interfaces(s, r.id):
                for a in s.execute(select(t.IPAllocation).where(
                        t.IPAllocation.port_id == port.id)).scalars():
                    sub = s.get(t.Subnet, a.subnet_id)
                    if sub is not None:
                        existing.append(sub)
            if pid:
                port = self._visible_port(s, ctx, str(pid))
                if port.device_id or port.device_owner:
                    raise conflict(f"Unable to complete operation on port {pid} for network "
                                   f"{port.network_id}. Port already has an attached device "
                                   f"{port.device_id}.", "PortInUse")
                allocs = list(s.execute(select(t.IPAllocation).where(
                    t.IPAllocation.port_id == port.id)).scalars())
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
            if not isinstance(body, dict):
                raise sc.bad("Bad router request: body must be an object.")
            r = self._owned(s, ctx, t.Router, rid)
            self._change(ctx, "remove_router_interface", "router", owned_target(r), t.Router)
            sid, pid = body.get("subnet_id"), body.get("port_id")
            if not sid and not pid:
                raise sc.bad("Bad router request: Either subnet_id or port_id must be "
                             "specified", "BadRequest")
            ports = self._router_interfaces(s, r.id)
            target: t.Port | None = None
            if pid:
                target = next((p for p in ports if p.id == pid), None)
                if target is None:
                    raise NotFound(f"Router {rid} does not have an interface with id {pid}",
                                   kind="RouterInterfaceNotFound")
                allocs = list(s.execute(select(t.IPAllocation).where(
                    t.IPAllocation.port_id == target.id)).scalars())
                if sid and not any(a.subnet_id == sid for a in allocs):
                    raise conflict(f"Subnet {sid} is not associated with port {pid}",
                                   "SubnetMismatchForPort")
            else:
                self._visible_subnet(s, ctx, str(sid))
                for p in ports:
                    allocs = list(s.execute(select(t.IPAllocation).where(
                        t.IPAllocation.port_id == p.id)).scalars())
                    if any(a.subnet_id == sid for a in allocs):
                        target = p
                        break
                if target is None:
                    raise NotFound(f"Router {rid} has no interface on subnet {sid}",
                                   kind="RouterInterfaceNotFoundForSubnet")
            allocs = list(s.execute(select(t.IPAllocation).where(
                t.IPAllocation.port_id == target.id)).scalars())
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
        def run(s: Session) -> list[dict[str, Any]]:
            stmt = select(t.FloatingIP).order_by(t.FloatingIP.created_at, t.FloatingIP.id)
            if not ctx.is_admin:
                stmt = stmt.where(t.FloatingIP.project_id == (ctx.project_id or ""))
            return self._fip_views(s, list(s.execute(stmt).scalars()))
        return self._read(run)

    def get_floatingip(self, ctx: RequestContext, fid: str) -> dict[str, Any]:
        return self._read(lambda s: self._fip_views(
            s, [self._readable(s, ctx, self._owned(s, ctx, t.FloatingIP, fid))])[0])

    def create_floatingips(self, ctx: RequestContext, bodies: list[dict[str, Any]]
                           ) -> list[dict[str, Any]]:
        def run(s: Session) -> list[dict[str, Any]]:
            rows = [self._create_fip(s, ctx, b) for b in bodies]
            s.flush()
            return self._fip_views(s, rows)
        return self._tx(run)

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
        self._set_tags(s, fip.id, body.get("tags"))
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
        allocs = [a for a in s.execute(select(t.IPAllocation).where(
            t.IPAllocation.port_id == port.id)).scalars()
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
        def run(s: Session) -> dict[str, Any]:
            sc.check_keys(body, sc.FLOATINGIP_KEYS, "floatingip")
            fip = self._owned(s, ctx, t.FloatingIP, fid)
            self._change(ctx, "update_floatingip", "floatingip", owned_target(fip),
                         t.FloatingIP)
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
            if "tags" in body:
                self._replace_tags(s, fip.id, body["tags"])
            self._touch(fip)
            s.flush()
            return self._fip_views(s, [fip])[0]
        return self._tx(run)

    def delete_floatingip(self, ctx: RequestContext, fid: str,
                          revision: int | None = None) -> None:
        def run(s: Session) -> None:
            fip = self._owned(s, ctx, t.FloatingIP, fid)
            self._change(ctx, "delete_floatingip", "floatingip", owned_target(fip),
                         t.FloatingIP)
            self._check_revision(fip, revision)
            port = s.get(t.Port, fip.floating_port_id)
            s.execute(delete(t.Tag).where(t.Tag.resource_id == fid))
            s.delete(fip)
            s.flush()
            if port is not None:
                self._delete_port_row(s, port)
        self._tx(run)

    # ================================================================== tags
    def _taggable(self, s: Session, ctx: RequestContext, resource: str, rid: str,
                  action: str) -> Any:
        """The tagged row the caller may see, then ``<action>_<resource>:tags`` (403)."""
        model = TAGGABLE.get(resource)
        if model is None:
            raise NotFound(f"Resource {resource} does not support tags.", kind="NotFound")
        if model is t.Network:
            row: Any = self._visible_net(s, ctx, rid)
        elif model is t.Subnet:
            row = self._visible_subnet(s, ctx, rid)
        elif model is t.Port:
            row = self._visible_port(s, ctx, rid)
        elif model is t.SubnetPool:
            row = s.get(t.SubnetPool, rid)
            if row is None or not self._pool_visible(ctx, row):
                raise not_found(t.SubnetPool, rid)
        else:
            row = self._owned(s, ctx, model, rid)
        name, target = self._row_target(s, ctx, row)
        rule = f"{action}_{name}:tags"
        if not self.authz.allowed(ctx, rule, target):
            raise self.authz.denied(rule)
        return row

    def get_tags(self, ctx: RequestContext, resource: str, rid: str) -> list[str]:
        def run(s: Session) -> list[str]:
            self._taggable(s, ctx, resource, rid, "get")
            return self._tags(s, [rid])[rid]
        return self._read(run)

    def has_tag(self, ctx: RequestContext, resource: str, rid: str, tag: str) -> bool:
        return tag in self.get_tags(ctx, resource, rid)

    def set_tags(self, ctx: RequestContext, resource: str, rid: str, tags: Any,
                 revision: int | None = None) -> list[str]:
        """Replace every tag of a resource."""
        def run(s: Session) -> list[str]:
            row = self._taggable(s, ctx, resource, rid, "update")
            self._check_revision(row, revision)
            clean = self._valid_tags(tags)
            s.execute(delete(t.Tag).where(t.Tag.resource_id == rid))
            s.flush()
            self._set_tags(s, rid, clean)
            self._touch(row)
            return sorted(set(clean))
        return self._tx(run)

    def add_tag(self, ctx: RequestContext, resource: str, rid: str, tag: str,
                revision: int | None = None) -> None:
        def run(s: Session) -> None:
            row = self._taggable(s, ctx, resource, rid, "update")
            self._check_revision(row, revision)
            self._valid_tags([tag])
            if s.get(t.Tag, (rid, tag)) is None:
                s.add(t.Tag(resource_id=rid, tag=tag))
                self._touch(row)
        self._tx(run)

    def delete_tag(self, ctx: RequestContext, resource: str, rid: str, tag: str | None,
                   revision: int | None = None) -> None:
        def run(s: Session) -> None:
            row = self._taggable(s, ctx, resource, rid, "delete")
            self._check_revision(row, revision)
            if tag is None:
                s.execute(delete(t.Tag).where(t.Tag.resource_id == rid))
            else:
                existing = s.get(t.Tag, (rid, tag))
                if existing is None:
                    raise NotFound(f"Tag {tag} could not be found for resource {rid}.",
                                   kind="TagNotFound")
                s.delete(existing)
            self._touch(row)
        self._tx(run)

    # ================================================================== quotas
    def _quota_target(self, ctx: RequestContext, project_id: str) -> None:
        """Another project's quota needs ``get_quota`` (Neutron checks it against the
        caller's own project: admins and project managers)."""
        if project_id != ctx.project_id:
            self._quota_rule(ctx, "get_quota")

    def _quota_rule(self, ctx: RequestContext, action: str) -> None:
        self._enforce(ctx, action, {"project_id": ctx.project_id or ""})

    def get_quota(self, ctx: RequestContext, project_id: str) -> dict[str, int]:
        self._quota_target(ctx, project_id)
        return self._read(self._quota_limits, project_id)

    def default_quota(self) -> dict[str, int]:
        return dict(DEFAULT_QUOTAS)

    def quota_details(self, ctx: RequestContext, project_id: str) -> dict[str, Any]:
        self._quota_target(ctx, project_id)

        def run(s: Session) -> dict[str, Any]:
            limits = self._quota_limits(s, project_id)
            return {k: {"limit": v, "used": self._usage(s, project_id, k), "reserved": 0}
                    for k, v in limits.items()}
        return self._read(run)

    def list_quotas(self, ctx: RequestContext) -> list[dict[str, Any]]:
        self._quota_rule(ctx, "get_quota")

        def run(s: Session) -> list[dict[str, Any]]:
            projects = sorted(set(s.execute(select(t.Quota.project_id)).scalars()))
            out = []
            for p in projects:
                doc: dict[str, Any] = dict(self._quota_limits(s, p))
                doc.update(project_id=p, tenant_id=p)
                out.append(doc)
            return out
        return self._read(run)

    def update_quota(self, ctx: RequestContext, project_id: str, body: Any) -> dict[str, int]:
        self._quota_rule(ctx, "update_quota")
        if not isinstance(body, dict):
            raise sc.bad("Invalid input for quota: a 'quota' object is required.")
        changes = {}
        for key, value in body.items():
            if key in ("project_id", "tenant_id", "force", "check_limit"):
                continue
            if key not in DEFAULT_QUOTAS:
                raise sc.bad(f"Unrecognized attribute(s) '{key}'")
            changes[key] = sc.to_int(value, key, minimum=-1)

        def run(s: Session) -> dict[str, int]:
            for key, limit in changes.items():
                row = s.get(t.Quota, (project_id, key))
                if row is None:
                    s.add(t.Quota(project_id=project_id, resource=key, limit=limit))
                else:
                    row.limit = limit
            s.flush()
            return self._quota_limits(s, project_id)
        return self._tx(run)

    def delete_quota(self, ctx: RequestContext, project_id: str) -> None:
        self._quota_rule(ctx, "delete_quota")

        def run(s: Session) -> None:
            s.execute(delete(t.Quota).where(t.Quota.project_id == project_id))
        self._tx(run)

    # ================================================================== availability
    def ip_availabilities(self, ctx: RequestContext) -> list[dict[str, Any]]:
        """Per-network (and per-subnet) totals of pool addresses and used addresses."""
        def run(s: Session) -> list[dict[str, Any]]:
            nets = list(s.execute(select(t.Network).order_by(t.Network.created_at)).scalars())
            subs: dict[str, list[t.Subnet]] = defaultdict(list)
            for sub in s.execute(select(t.Subnet).order_by(t.Subnet.created_at)).scalars():
                subs[sub.network_id].append(sub)
            used = dict(s.execute(select(t.IPAllocation.subnet_id, func.count())
                                  .group_by(t.IPAllocation.subnet_id)).all())
            out = []
            for net in nets:
                items = []
                for sub in subs[net.id]:
                    items.append({"subnet_id": sub.id, "subnet_name": sub.name,
                                  "cidr": sub.cidr, "ip_version": sub.ip_version,
                                  "total_ips": ipam.pool_size(sub.allocation_pools or []),
                                  "used_ips": int(used.get(sub.id, 0))})
                out.append({"network_id": net.id, "network_name": net.name,
                            "tenant_id": net.project_id, "project_id": net.project_id,
                            "total_ips": sum(i["total_ips"] for i in items),
                            "used_ips": sum(i["used_ips"] for i in items),
                            "subnet_ip_availability": items})
            return out
        return self._read(run)

    # ================================================================== agents
    def ensure_agents(self) -> None:
        """Register this host's agents (the data plane's services) once."""
        def run(s: Session) -> None:
            for spec in self.driver.agents() or NoopDriver().agents():
                aid = str(uuid.uuid5(uuid.NAMESPACE_URL,
                                     f"onestack-agent:{self.host}:{spec['binary']}"))
                row = s.get(t.Agent, aid)
                now = utcnow()
                if row is None:
                    s.add(t.Agent(id=aid, agent_type=spec["agent_type"],
                                  binary=spec["binary"], host=self.host,
                                  topic=spec.get("topic", ""),
                                  availability_zone="nova" if spec["agent_type"] in (
                                      "L3 agent", "DHCP agent") else None,
                                  configurations=spec.get("configurations", {}),
                                  created_at=now, started_at=now))
                else:
                    row.started_at = now
        self._tx(run)

    def _agent_view(self, row: t.Agent) -> dict[str, Any]:
        alive = row.host == self.host
        return views.agent(row, alive, str(utcnow().replace(microsecond=0)) if alive else
                           isotime(row.started_at))

    def list_agents(self, ctx: RequestContext) -> list[dict[str, Any]]:
        if not self.authz.allowed(ctx, "get_agent", {}):
            return []
        return self._read(lambda s: [self._agent_view(a) for a in s.execute(
            select(t.Agent).order_by(t.Agent.agent_type)).scalars()])

    def get_agent(self, ctx: RequestContext, aid: str) -> dict[str, Any]:
        # Neutron hides what its policy does not let the caller read: 404.
        self._change(ctx, "get_agent", "agent", {"id": aid}, t.Agent)
        return self._read(lambda s: self._agent_view(self._get(s, t.Agent, aid)))

    def update_agent(self, ctx: RequestContext, aid: str, body: dict[str, Any]
                     ) -> dict[str, Any]:
        self._change(ctx, "update_agent", "agent", {"id": aid}, t.Agent)
        sc.check_keys(body, ("admin_state_up", "description"), "agent")

        def run(s: Session) -> dict[str, Any]:
            row = self._get(s, t.Agent, aid)
            if "admin_state_up" in body:
                row.admin_state_up = sc.to_bool(body["admin_state_up"], "admin_state_up")
            if "description" in body:
                row.description = sc.to_str(body["description"] or "", "description") or ""
            s.flush()
            return self._agent_view(row)
        return self._tx(run)

    def delete_agent(self, ctx: RequestContext, aid: str) -> None:
        self._change(ctx, "delete_agent", "agent", {"id": aid}, t.Agent)
        self._tx(lambda s: s.delete(self._get(s, t.Agent, aid)))

    # ================================================================== first start
    def ensure_defaults(self, admin_project: str, demo_project: str | None) -> None:
        """DevStack's defaults, once: external flat ``public`` (+ ``public-subnet``) and, for
        the demo project, ``private``/``private-subnet`` behind ``router1``."""
        self.ensure_agents()
        if not self.settings.network_create_defaults:
            return
        with self.db.reader() as s:
            exists = s.execute(select(t.Network.id).where(
                t.Network.name == "public", t.Network.project_id == admin_project)).first()
        if exists:
            return
        admin = RequestContext.admin()
        admin.project_id = admin_project
        st = self.settings
        public = self.create_networks(admin, [{
            "name": "public", "router:external": True, "shared": False,
            "provider:network_type": "flat",
            "provider:physical_network": st.network_public_physical_network,
            "project_id": admin_project}])[0]
        self.create_subnets(admin, [{
            "name": "public-subnet", "network_id": public["id"], "ip_version": 4,
            "cidr": st.network_public_subnet_range, "gateway_ip": st.network_public_gateway,
            "enable_dhcp": False, "project_id": admin_project}])
        if not demo_project:
            return
        private = self.create_networks(admin, [{"name": "private",
                                                "project_id": demo_project}])[0]
        subnet = self.create_subnets(admin, [{
            "name": "private-subnet", "network_id": private["id"], "ip_version": 4,
            "cidr": st.network_private_subnet_range, "project_id": demo_project}])[0]
        router = self.create_routers(admin, [{
            "name": "router1", "project_id": demo_project,
            "external_gateway_info": {"network_id": public["id"]}}])[0]
        self.add_router_interface(admin, router["id"], {"subnet_id": subnet["id"]})
        self.ensure_default_security_group(demo_project)
        LOG.info("created the default networks public, private and router1")

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
