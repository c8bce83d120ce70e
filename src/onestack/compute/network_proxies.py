"""Compute API: Nova's network proxy APIs (microversions 2.1-2.35).

Before 2.36 Nova answers ``os-security-groups``, ``os-security-group-rules``,
``os-floating-ips``, ``os-floating-ip-pools``, ``os-networks`` and ``os-tenant-networks`` (and
the ``addFloatingIp``/``removeFloatingIp`` server actions) by calling Neutron with the user's
credentials and reshaping the answers; from 2.36 on these URLs are 404. onestack does the same
against its network service in-process: Nova's policies first, then the network service's own
tenancy rules, and Nova's status codes where they differ from Neutron's (a Neutron conflict
on a rule or group becomes a 400, an exhausted pool a 404, a quota a 403).

``NetworkProxyRoutes`` is mixed into ``ComputeAPI`` (``api.py``); it expects ``self.network``
(the compute side of the network service, ``compute/network.py``) and ``self._r``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any, TypeVar

from starlette.responses import Response

from onestack.api.app import ApiRequest
from onestack.api.routes import serves
from onestack.common.errors import (
    APIError,
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    ValidationError,
)
from onestack.common.ids import is_uuid
from onestack.compute.microversions import APIVersion, version_of
from onestack.compute.neutron import NeutronApi
from onestack.compute.resource_base import ResourceHandler

#: The last microversion with the proxy APIs.
MAX_PROXY = APIVersion("2.35")
_GONE = "The resource could not be found."
T = TypeVar("T")
#: How a proxy route shows one network: (request, network API, Neutron's network) -> entry.
NetworkView = Callable[[ApiRequest, NeutronApi, dict[str, Any]], dict[str, Any]]


def nova_rule(rule: dict[str, Any], groups: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """A Neutron ingress rule in Nova's shape (ports of a protocol-wide rule spelled out as
    Nova does: 1-65535 for TCP/UDP, -1 otherwise); None for a rule naming a vanished group."""
    proto = rule.get("protocol")
    lo, hi = rule.get("port_range_min"), rule.get("port_range_max")
    if proto and lo is None and hi is None:
        lo, hi = (1, 65535) if str(proto).lower() in ("tcp", "udp") else (-1, -1)
    out: dict[str, Any] = {"id": rule["id"], "parent_group_id": rule["security_group_id"],
                           "ip_protocol": proto, "from_port": lo, "to_port": hi,
                           "group": {}, "ip_range": {}}
    remote = rule.get("remote_group_id")
    if remote:
        src = groups.get(remote)
        if src is None:
            return None
        out["group"] = {"name": src.get("name"), "tenant_id": src.get("project_id")}
    else:
        out["ip_range"] = {"cidr": rule.get("remote_ip_prefix") or (
            "::/0" if rule.get("ethertype") == "IPv6" else "0.0.0.0/0")}
    return out


def nova_group(group: dict[str, Any], groups: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A Neutron security group in Nova's ``os-security-groups`` shape (ingress rules only:
    Nova has no egress rules)."""
    known = {**groups, group["id"]: group}
    rules = [nova_rule(r, known) for r in group.get("security_group_rules") or []
             if r.get("direction") == "ingress"]
    return {"id": group["id"], "name": group["name"],
            "description": group.get("description", ""), "tenant_id": group["project_id"],
            "rules": [r for r in rules if r is not None]}


def _property(value: Any, name: str) -> str:
    """Nova's check of a group's name/description: a string of 1-255 characters once
    stripped; the value is kept as given (spaces included)."""
    if not isinstance(value, str):
        raise BadRequest(f"Security group {name} is not a string or unicode")
    stripped = value.strip()
    if not 1 <= len(stripped) <= 255:
        raise BadRequest(f"{name} has a minimum character requirement of 1."
                         if not stripped else
                         f"{name} has more than 255 characters.")
    return value


def _limited(items: list[Any], req: ApiRequest) -> list[Any]:
    """Nova's ``common.limited``: ``offset`` and ``limit`` query parameters."""
    values = {}
    for key in ("offset", "limit"):
        raw = req.query.get(key)
        if raw is None:
            continue
        try:
            values[key] = int(raw)
        except ValueError:
            raise BadRequest(f"{key} param must be an integer") from None
        if values[key] < 0:
            raise BadRequest(f"{key} param must be positive")
    offset = values.get("offset", 0)
    limit = values.get("limit")
    return items[offset:offset + limit] if limit else items[offset:]


class NetworkProxyRoutes(ResourceHandler):
    """Handlers of Nova's network proxy APIs (see the module docstring)."""

    # ------------------------------------------------------------------ helpers
    def _proxy(self, req: ApiRequest, rule: str) -> NeutronApi:
        """Version gate, Nova's policy, and the network manager (404 without one)."""
        if version_of(req.request.scope) > MAX_PROXY:
            raise NotFound(_GONE)
        req.enforce(rule, {"project_id": req.ctx.project_id or "",
                           "user_id": req.ctx.user_id or ""})
        if self.network is None:
            raise NotFound(_GONE)
        return self.network.n

    @staticmethod
    def _groups_by_id(req: ApiRequest, n: NeutronApi) -> dict[str, dict[str, Any]]:
        return {g["id"]: g for g in n.list_security_groups(req.ctx)}

    def _sg(self, req: ApiRequest, n: NeutronApi, sg_id: str) -> dict[str, Any]:
        if not is_uuid(sg_id):
            raise BadRequest("Security group id should be uuid")
        return _found(f"Security group {sg_id} not found.", n.get_security_group, req.ctx,
                      sg_id)

    # ------------------------------------------------------------------ security groups
    @serves("GET", "/v2.1/os-security-groups")
    async def list_sgs(self, req: ApiRequest) -> dict[str, Any]:
        n = self._proxy(req, "os_compute_api:os-security-groups:get")
        all_tenants = "all_tenants" in req.query and req.ctx.is_admin

        def run() -> list[dict[str, Any]]:
            groups = self._groups_by_id(req, n)
            mine = [g for g in groups.values()
                    if all_tenants or g["project_id"] == (req.ctx.project_id or "")]
            return [nova_group(g, groups) for g in mine]
        result = _limited(await req.run(run), req)
        return {"security_groups": sorted(result, key=lambda g: (g["tenant_id"], g["name"]))}

    @serves("GET", "/v2.1/os-security-groups/{sg_id}")
    async def show_sg(self, req: ApiRequest) -> dict[str, Any]:
        n = self._proxy(req, "os_compute_api:os-security-groups:show")
        sg_id = req.param("sg_id")

        def run() -> dict[str, Any]:
            return nova_group(self._sg(req, n, sg_id), self._groups_by_id(req, n))
        return {"security_group": await req.run(run)}

    @staticmethod
    async def _sg_body(req: ApiRequest) -> tuple[str, str]:
        body = await req.json(required=False)
        if not body:
            raise BadRequest("The request body can't be empty")
        sg = body.get("security_group") if isinstance(body, dict) else None
        if not isinstance(sg, dict):
            raise BadRequest("Missing parameter security_group")
        return _property(sg.get("name"), "name"), _property(sg.get("description"),
                                                            "description")

    @serves("POST", "/v2.1/os-security-groups")
    async def create_sg(self, req: ApiRequest) -> dict[str, Any]:
        n = self._proxy(req, "os_compute_api:os-security-groups:create")
        name, description = await self._sg_body(req)

        def run() -> dict[str, Any]:
            group = _as_nova(n.create_security_groups, req.ctx,
                             [{"name": name, "description": description}])[0]
            return nova_group(group, {})
        return {"security_group": await req.run(run)}

    @serves("PUT", "/v2.1/os-security-groups/{sg_id}")
    async def update_sg(self, req: ApiRequest) -> dict[str, Any]:
        n = self._proxy(req, "os_compute_api:os-security-groups:update")
        sg_id = req.param("sg_id")
        await req.run(self._sg, req, n, sg_id)
        name, description = await self._sg_body(req)

        def run() -> dict[str, Any]:
            group = _as_nova(n.update_security_group, req.ctx, sg_id,
                             {"name": name, "description": description})
            return nova_group(group, self._groups_by_id(req, n))
        return {"security_group": await req.run(run)}

    @serves("DELETE", "/v2.1/os-security-groups/{sg_id}")
    async def delete_sg(self, req: ApiRequest) -> Response:
        n = self._proxy(req, "os_compute_api:os-security-groups:delete")
        sg_id = req.param("sg_id")

        def run() -> None:
            self._sg(req, n, sg_id)
            _as_nova(n.delete_security_group, req.ctx, sg_id)
        await req.run(run)
        return Response(status_code=202)

    # ------------------------------------------------------------------ rules
    @serves("POST", "/v2.1/os-security-group-rules")
    async def create_sg_rule(self, req: ApiRequest) -> dict[str, Any]:
        n = self._proxy(req, "os_compute_api:os-security-groups:rule:create")
        body = await req.json(required=False)
        if not body:
            raise BadRequest("The request body can't be empty")
        rule = body.get("security_group_rule") if isinstance(body, dict) else None
        if not isinstance(rule, dict):
            raise BadRequest("Missing parameter security_group_rule")

        def run() -> dict[str, Any]:
            parent = self._sg(req, n, str(rule.get("parent_group_id")))
            new = _neutron_rule(rule)
            if new.get("remote_group_id"):
                self._sg(req, n, new["remote_group_id"])
            new["security_group_id"] = parent["id"]
            made = _as_nova(n.create_security_group_rules, req.ctx, [new])[0]
            out = nova_rule(made, self._groups_by_id(req, n))
            assert out is not None
            return out
        return {"security_group_rule": await req.run(run)}

    @serves("DELETE", "/v2.1/os-security-group-rules/{rule_id}")
    async def delete_sg_rule(self, req: ApiRequest) -> Response:
        n = self._proxy(req, "os_compute_api:os-security-groups:rule:delete")
        rule_id = req.param("rule_id")
        if not is_uuid(rule_id):
            raise BadRequest("Security group id should be uuid")

        def run() -> None:
            try:
                n.get_security_group_rule(req.ctx, rule_id)
                n.delete_security_group_rule(req.ctx, rule_id)
            except NotFound:
                raise NotFound(f"Security group rule {rule_id} not found.") from None
            except APIError as exc:
                raise _nova_error(exc) from None
        await req.run(run)
        return Response(status_code=202)

    # ------------------------------------------------------------------ floating IPs
    @staticmethod
    def _pools(req: ApiRequest, n: NeutronApi) -> list[dict[str, Any]]:
        return [net for net in n.list_networks(req.ctx) if net.get("router:external")]

    def _nova_fip(self, req: ApiRequest, n: NeutronApi, fip: dict[str, Any],
                  names: dict[str, str] | None = None) -> dict[str, Any]:
        if names is None:
            names = {p["id"]: p["name"] or p["id"] for p in self._pools(req, n)}
        instance = None
        if fip.get("port_id"):
            try:
                instance = n.get_port(_admin(), fip["port_id"]).get("device_id") or None
            except NotFound:
                instance = None
        return {"id": fip["id"], "ip": fip["floating_ip_address"],
                "fixed_ip": fip.get("fixed_ip_address"), "instance_id": instance,
                "pool": names.get(fip["floating_network_id"], fip["floating_network_id"])}

    @serves("GET", "/v2.1/os-floating-ip-pools")
    async def list_fip_pools(self, req: ApiRequest) -> dict[str, Any]:
        n = self._proxy(req, "os_compute_api:os-floating-ip-pools")
        pools = await req.run(self._pools, req, n)
        return {"floating_ip_pools": [{"name": p["name"] or p["id"]} for p in pools]}

    @serves("GET", "/v2.1/os-floating-ips")
    async def list_fips(self, req: ApiRequest) -> dict[str, Any]:
        n = self._proxy(req, "os_compute_api:os-floating-ips:list")

        def run() -> list[dict[str, Any]]:
            names = {p["id"]: p["name"] or p["id"] for p in self._pools(req, n)}
            pid = req.ctx.project_id or ""
            return [self._nova_fip(req, n, f, names) for f in n.list_floatingips(req.ctx)
                    if f["project_id"] == pid]
        return {"floating_ips": await req.run(run)}

    def _fip(self, req: ApiRequest, n: NeutronApi, fip_id: str) -> dict[str, Any]:
        message = f"Floating IP not found for ID {fip_id}"
        if not is_uuid(fip_id):
            raise NotFound(message)
        return _found(message, n.get_floatingip, req.ctx, fip_id)

    @serves("GET", "/v2.1/os-floating-ips/{fip_id}")
    async def show_fip(self, req: ApiRequest) -> dict[str, Any]:
        n = self._proxy(req, "os_compute_api:os-floating-ips:show")
        fip_id = req.param("fip_id")
        return {"floating_ip": await req.run(
            lambda: self._nova_fip(req, n, self._fip(req, n, fip_id)))}

    @serves("POST", "/v2.1/os-floating-ips")
    async def create_fip(self, req: ApiRequest) -> dict[str, Any]:
        n = self._proxy(req, "os_compute_api:os-floating-ips:create")
        body = await req.json(required=False)
        pool = body.get("pool") if isinstance(body, dict) else None
        if pool is not None and not isinstance(pool, str):
            raise ValidationError("Invalid input for field/attribute pool.")

        def run() -> dict[str, Any]:
            pools = self._pools(req, n)
            if pool is None:
                chosen = next((p for p in pools if p["name"] == "public"),
                              pools[0] if len(pools) == 1 else None)
            else:
                chosen = next((p for p in pools if pool in (p["name"], p["id"])), None)
            if chosen is None:
                raise NotFound("Floating IP pool not found.")
            try:
                fip = n.create_floatingips(req.ctx, [{"floating_network_id": chosen["id"]}])[0]
            except APIError as exc:
                if getattr(exc, "kind", "") == "OverQuota" or exc.status == 403:
                    raise Forbidden("Maximum number of floating IPs exceeded") from None
                if exc.status in (400, 409):
                    raise NotFound(f"No more floating IPs in pool "
                                   f"{chosen['name'] or chosen['id']}.") from None
                raise
            return self._nova_fip(req, n, fip)
        return {"floating_ip": await req.run(run)}

    @serves("DELETE", "/v2.1/os-floating-ips/{fip_id}")
    async def delete_fip(self, req: ApiRequest) -> Response:
        n = self._proxy(req, "os_compute_api:os-floating-ips:delete")
        fip_id = req.param("fip_id")

        def run() -> None:
            self._fip(req, n, fip_id)
            _found(f"Floating IP not found for ID {fip_id}", n.delete_floatingip, req.ctx,
                   fip_id)
        await req.run(run)
        return Response(status_code=202)

    def _fip_by_address(self, req: ApiRequest, n: NeutronApi, address: str) -> dict[str, Any]:
        for fip in n.list_floatingips(req.ctx):
            if fip["floating_ip_address"] == address:
                return dict(fip)
        raise NotFound(f"Floating IP not found for address {address}.")

    async def a_add_floating_ip(self, req: ApiRequest, inst: Any, args: Any) -> None:
        """``addFloatingIp`` (below 2.44 in Nova; accepted at every version, as the other
        network actions here, because openstacksdk sends them at its newest version)."""
        address, fixed = _fip_action_args(args, True)
        if self.network is None:
            raise NotFound(f"Floating IP not found for address {address}.")
        n = self.network.n

        def run() -> None:
            ports = [p for p in self.network.interfaces(inst["uuid"])]
            candidates = [(p, ip["ip_address"]) for p in ports for ip in p["fixed_ips"]]
            if not candidates:
                raise BadRequest("No fixed IPs associated to instance")
            if fixed is not None:
                chosen = next((c for c in candidates if c[1] == fixed), None)
                if chosen is None:
                    raise BadRequest("Specified fixed address not assigned to instance")
            else:
                chosen = next((c for c in candidates
                               if ipaddress.ip_address(c[1]).version == 4), None)
                if chosen is None:
                    raise BadRequest(f"Unable to associate floating IP {address} to any fixed "
                                     f"IPs for instance {inst['uuid']}. Instance has no fixed "
                                     "IPv4 addresses to associate.")
            fip = self._fip_by_address(req, n, address)
            try:
                n.update_floatingip(req.ctx, fip["id"], {"port_id": chosen[0]["id"],
                                                         "fixed_ip_address": chosen[1]})
            except APIError as exc:
                raise BadRequest(f"Unable to associate floating IP {address} to fixed IP "
                                 f"{chosen[1]} for instance {inst['uuid']}. Error: "
                                 f"{exc.message}") from None
        await req.run(run)

    async def a_remove_floating_ip(self, req: ApiRequest, inst: Any, args: Any) -> None:
        address, _ = _fip_action_args(args, False)
        if self.network is None:
            raise NotFound(f"Floating IP not found for address {address}.")
        n = self.network.n

        def run() -> None:
            fip = self._fip_by_address(req, n, address)
            ports = {p["id"] for p in self.network.interfaces(inst["uuid"])}
            if fip.get("port_id") not in ports:
                raise Conflict(f"Floating IP {address} is not associated with instance "
                               f"{inst['uuid']}.")
            n.update_floatingip(req.ctx, fip["id"], {"port_id": None})
        await req.run(run)

    # ------------------------------------------------------------------ networks
    @staticmethod
    def _visible_networks(req: ApiRequest, n: NeutronApi) -> list[dict[str, Any]]:
        """What the network service lists for the caller (Nova lists Neutron's networks
        with the user's token: an admin sees every network)."""
        return list(n.list_networks(req.ctx))

    def _cidr(self, req: ApiRequest, n: NeutronApi, net: dict[str, Any]) -> str | None:
        for sid in net.get("subnets") or []:
            try:
                return str(n.get_subnet(req.ctx, sid)["cidr"])
            except (NotFound, KeyError):
                continue
        return None

    def _nova_network(self, req: ApiRequest, n: NeutronApi, net: dict[str, Any]) -> dict[str, Any]:
        """Nova's ``os-networks`` entry: with Neutron only ``id`` and ``label`` carry data
        (the nova-network fields are null); admins see the admin fields too."""
        fields = ["cidr", "netmask", "gateway", "broadcast", "dns1", "dns2", "cidr_v6",
                  "gateway_v6", "netmask_v6"]
        if req.ctx.is_admin:
            fields += ["created_at", "updated_at", "deleted_at", "deleted", "injected",
                       "bridge", "vlan", "vpn_public_address", "vpn_public_port",
                       "vpn_private_address", "dhcp_start", "project_id", "host",
                       "bridge_interface", "multi_host", "priority", "rxtx_base", "mtu",
                       "dhcp_server", "enable_dhcp", "share_address"]
        out: dict[str, Any] = {"id": net["id"], "label": net["name"]}
        out.update(dict.fromkeys(fields))
        return out

    def _network(self, req: ApiRequest, n: NeutronApi, net_id: str) -> dict[str, Any]:
        net = next((x for x in self._visible_networks(req, n) if x["id"] == net_id), None)
        if net is None:
            raise NotFound("Network not found")
        return net

    async def _list_networks(self, req: ApiRequest, rule: str,
                             view: NetworkView) -> dict[str, Any]:
        """A list route of networks: ``view`` of each network the caller sees."""
        n = self._proxy(req, rule)
        return {"networks": await req.run(lambda: [
            view(req, n, x) for x in self._visible_networks(req, n)])}

    async def _show_network(self, req: ApiRequest, rule: str,
                            view: NetworkView) -> dict[str, Any]:
        """A show route of a network: ``view`` of the caller's network ``net_id``."""
        n = self._proxy(req, rule)
        net_id = req.param("net_id")
        return {"network": await req.run(
            lambda: view(req, n, self._network(req, n, net_id)))}

    @serves("GET", "/v2.1/os-networks")
    async def list_nova_networks(self, req: ApiRequest) -> dict[str, Any]:
        return await self._list_networks(req, "os_compute_api:os-networks:list",
                                         self._nova_network)

    @serves("GET", "/v2.1/os-networks/{net_id}")
    async def show_nova_network(self, req: ApiRequest) -> dict[str, Any]:
        return await self._show_network(req, "os_compute_api:os-networks:show",
                                        self._nova_network)

    def _tenant_network(self, req: ApiRequest, n: NeutronApi,
                        net: dict[str, Any]) -> dict[str, Any]:
        return {"id": net["id"], "label": net["name"], "cidr": str(self._cidr(req, n, net))}

    @serves("GET", "/v2.1/os-tenant-networks")
    async def list_tenant_networks(self, req: ApiRequest) -> dict[str, Any]:
        return await self._list_networks(req, "os_compute_api:os-tenant-networks:list",
                                         self._tenant_network)

    @serves("GET", "/v2.1/os-tenant-networks/{net_id}")
    async def show_tenant_network(self, req: ApiRequest) -> dict[str, Any]:
        return await self._show_network(req, "os_compute_api:os-tenant-networks:show",
                                        self._tenant_network)

    @serves("POST", "/v2.1/os-networks")
    @serves("DELETE", "/v2.1/os-networks/{net_id}")
    @serves("POST", "/v2.1/os-networks/add")
    @serves("POST", "/v2.1/os-networks/{net_id}/action")
    @serves("POST", "/v2.1/os-tenant-networks")
    @serves("DELETE", "/v2.1/os-tenant-networks/{net_id}")
    async def nova_network_gone(self, req: ApiRequest) -> Response:
        """nova-network's write APIs: 410 since Nova dropped nova-network (404 from 2.36)."""
        if version_of(req.request.scope) > MAX_PROXY:
            raise NotFound(_GONE)
        raise APIError("Network creation, deletion and association is no longer supported "
                       "(the network service manages networks).", status=410)


def _admin() -> Any:
    from onestack.common.context import RequestContext

    return RequestContext.admin()


def _as_nova(call: Callable[..., T], *args: Any) -> T:
    """``call(*args)``, a Neutron failure raised as Nova's (``_nova_error``)."""
    try:
        return call(*args)
    except APIError as exc:
        raise _nova_error(exc) from None


def _found(message: str, call: Callable[..., T], *args: Any) -> T:
    """``call(*args)``, Neutron's 404 raised with Nova's own ``message`` instead."""
    try:
        return call(*args)
    except NotFound:
        raise NotFound(message) from None


def _nova_error(exc: APIError) -> APIError:
    """Nova's status for a Neutron failure behind a proxy call."""
    if exc.status == 404:
        return NotFound(exc.message)
    if getattr(exc, "kind", "") == "OverQuota":
        return Forbidden(exc.message)
    if exc.status in (400, 409):
        return BadRequest(exc.message)
    return exc


def _port(value: Any, proto: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        if proto.upper() == "ICMP":
            raise BadRequest("Type and Code must be integers for ICMP protocol type") from None
        raise BadRequest("To and From ports must be integers") from None


def _neutron_rule(rule: dict[str, Any]) -> dict[str, Any]:
    """Nova's ingress rule arguments turned into a Neutron rule body (Nova's checks)."""
    group_id = rule.get("group_id")
    cidr = rule.get("cidr")
    proto, lo, hi = rule.get("ip_protocol"), rule.get("from_port"), rule.get("to_port")
    out: dict[str, Any] = {"direction": "ingress", "ethertype": "IPv4"}
    if group_id is not None:
        if not is_uuid(group_id):
            raise BadRequest("Security group id should be uuid")
        out["remote_group_id"] = str(group_id)
    else:
        if cidr in (None, ""):
            cidr = "0.0.0.0/0"
        try:
            net = ipaddress.ip_network(str(cidr), strict=False)
        except ValueError:
            raise BadRequest(f"Invalid cidr {cidr}.") from None
        if net.prefixlen == 0 and str(net.network_address) not in ("0.0.0.0", "::"):
            raise BadRequest(f"Bad prefix for network in cidr {cidr}")
        out["remote_ip_prefix"] = str(cidr)  # as given: Neutron keeps host bits too
        out["ethertype"] = "IPv6" if net.version == 6 else "IPv4"
    if proto and lo is not None and hi is not None:
        proto = str(proto)
        lo, hi = _port(lo, proto), _port(hi, proto)
        kind = proto.upper()
        if kind not in ("TCP", "UDP", "ICMP"):
            raise BadRequest(f"Invalid IP protocol {proto}.")
        if kind in ("TCP", "UDP") and lo > hi:
            raise BadRequest(f"Invalid port range {lo}:{hi}. Former value cannot be greater "
                             "than the later")
        if kind in ("TCP", "UDP") and (lo < 1 or hi > 65535):
            raise BadRequest(f"Invalid port range {lo}:{hi}. Valid {kind} ports should be "
                             "between 1-65535")
        if kind == "ICMP" and not (-1 <= lo <= 255 and -1 <= hi <= 255):
            raise BadRequest(f"Invalid port range {lo}:{hi}. For ICMP, the type:code must "
                             "be valid")
        out["protocol"] = proto.lower()
        if lo != -1:
            out["port_range_min"] = lo
        if hi != -1:
            out["port_range_max"] = hi
    elif group_id is None:
        raise BadRequest("Not enough parameters to build a valid rule.")
    return out


def _fip_action_args(args: Any, add: bool) -> tuple[str, str | None]:
    action = "addFloatingIp" if add else "removeFloatingIp"
    if not isinstance(args, dict) or not isinstance(args.get("address"), str):
        raise ValidationError(f"Invalid input for field/attribute {action}. Value: {args}. "
                              "'address' is a required property")
    try:
        ipaddress.ip_address(args["address"])
    except ValueError:
        raise ValidationError(f"Invalid input for field/attribute address. Value: "
                              f"{args['address']}. '{args['address']}' is not a "
                              "'ipv4' or 'ipv6'") from None
    fixed = args.get("fixed_address") if add else None
    if fixed is not None:
        try:
            ipaddress.ip_address(str(fixed))
        except ValueError:
            raise ValidationError(f"Invalid input for field/attribute fixed_address. "
                                  f"Value: {fixed}.") from None
    return args["address"], fixed
