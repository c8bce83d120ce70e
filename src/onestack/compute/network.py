"""The compute side of the network service (Neutron): the seam between compute and network.

``ComputeNetwork`` is everything compute asks of the network service, in Nova's terms
(``nova/network/neutron.py`` is its model): validate a boot request's ``networks``, create or
claim the ports of new servers (all or nothing), bind them to the host that builds the guest,
release them on delete, attach/detach interfaces, and the ``addresses`` of many servers at
once (one batch per page of ``GET /servers/detail``, never a lookup per server).

``LocalNetwork`` implements it over ``NeutronApi`` (``compute/neutron.py``), which the
in-process ``onestack.network.manager.NetworkManager`` satisfies (``onestack up`` runs both
services in one process). When the compute API runs on a host without the network service,
a client of Neutron's REST API with the same methods (keystoneauth session to the
``network`` endpoint: ``GET /v2.0/ports?device_id=…``, ``POST /v2.0/ports``, …) can be
given to ``LocalNetwork`` instead; nothing else changes.

Every method is synchronous (the API runs them in worker threads) and raises compute-style
``APIError``s carrying Nova's messages and status codes.

A *plan* (``plan_networks``) is the validated request, one entry per interface, in order:
``{"network_id": id, "fixed_ip": ip | None}`` (a port to create) or
``{"port_id": id, "network_id": id}`` (a user's port to claim). Its order is the guest's NIC
order (Nova's: the first requested is ``eth0``): ``nic_order`` keeps it on the instance
(``system_metadata.nic_order``), and ``bind``, ``network_info`` and ``guest_ports`` give a
server's ports in that order, the ports attached later after them.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import re
from collections import defaultdict
from typing import Any, Protocol

from onestack.common.context import RequestContext
from onestack.common.errors import APIError, BadRequest, Conflict, NotFound
from onestack.compute.neutron import NeutronApi

LOG = logging.getLogger(__name__)

DEVICE_OWNER = "compute:nova"


class ComputeNetwork(Protocol):
    """What the compute API and agents need of the network service (see module docstring).

    ``n`` is the network service itself in Neutron's terms (Nova's proxy APIs use it)."""

    n: NeutronApi

    # ------------------------------------------------------------------ boot
    def plan_networks(self, ctx: RequestContext, networks: Any, count: int) -> list[
            dict[str, Any]]: ...

    def is_external(self, ctx: RequestContext, net_id: str) -> bool: ...

    def security_group_ids(self, ctx: RequestContext, names: list[str]) -> list[str]: ...

    def allocate(self, ctx: RequestContext, instance_uuid: str, plan: list[dict[str, Any]],
                 security_groups: list[str] | None) -> list[dict[str, Any]]: ...

    def deallocate(self, instance_uuid: str, preserve: list[str]) -> None: ...

    # ------------------------------------------------------------------ agents
    def port_count(self, instance_uuid: str) -> int: ...

    def compute_port_devices(self) -> set[str]: ...

    def bind(self, instance_uuid: str, host: str,
             order: NicOrder | None = None) -> list[dict[str, Any]]: ...

    def network_info(self, instance_uuid: str,
                     order: NicOrder | None = None) -> list[dict[str, Any]]: ...

    # ------------------------------------------------------------------ addresses
    def addresses(self, instance_uuids: list[str]) -> dict[str, dict[str, list[dict[
            str, Any]]]]: ...

    def cached_addresses(self, caches: dict[str, list[dict[str, Any]] | None]
                         ) -> dict[str, dict[str, list[dict[str, Any]]]]: ...

    def instances_by_ip(self, pattern: str, version: int | None = None) -> list[str]: ...

    # ------------------------------------------------------------------ interfaces
    def interfaces(self, instance_uuid: str) -> list[dict[str, Any]]: ...

    def attach_interface(self, ctx: RequestContext, instance_uuid: str,
                         net_id: str | None, port_id: str | None,
                         fixed_ips: list[dict[str, str]] | None, host: str | None,
                         security_groups: list[str] | None) -> dict[str, Any]: ...

    def detach_interface(self, instance_uuid: str, port_id: str, preserve: bool) -> None: ...

    def add_fixed_ip(self, instance_uuid: str, net_id: str) -> None: ...

    def remove_fixed_ip(self, instance_uuid: str, address: str) -> None: ...

    def set_security_groups(self, instance_uuid: str, group_ids: list[str]) -> None: ...

    def security_groups_of(self, instance_uuid: str) -> list[dict[str, Any]]: ...


#: A boot request's NICs in its order: ``["port", id]`` (a user's port) or ``["network", id]``
#: (a port compute made on that network), as kept in ``system_metadata.nic_order``.
NicOrder = list[list[str]]


def nic_order(plan: list[dict[str, Any]]) -> NicOrder:
    """The plan's NICs in order (what ``in_nic_order`` sorts by)."""
    return [["port", str(e["port_id"])] if e.get("port_id")
            else ["network", str(e["network_id"])] for e in plan]


def in_nic_order(ports: list[dict[str, Any]], order: NicOrder | None) -> list[dict[str, Any]]:
    """``ports`` (in creation order) as the boot request listed them: each ``port`` entry
    takes that port, each ``network`` entry the first remaining port compute made on that
    network; ports the request did not name (attached later) follow in their own order."""
    if not order:
        return ports
    named = {ref for kind, ref in order if kind == "port"}
    rest = list(ports)
    out: list[dict[str, Any]] = []
    for kind, ref in order:
        for i, p in enumerate(rest):
            if (p["id"] == ref) if kind == "port" else (
                    p.get("network_id") == ref and p["id"] not in named):
                out.append(rest.pop(i))
                break
    return out + rest


def nova_error(exc: APIError) -> APIError:
    """A network service error re-worded as Nova reports it at server create."""
    kind = getattr(exc, "kind", "")
    if kind == "NetworkNotFound" or (exc.status == 404 and "Network" in exc.message):
        return BadRequest(exc.message)
    if kind == "PortNotFound":
        return BadRequest(exc.message.replace("Port ", "Port id ", 1)
                          if not exc.message.startswith("Port id") else exc.message)
    if kind in ("IpAddressAlreadyAllocated", "IpAddressInUse"):
        ip = re.search(r"IP address (\S+)", exc.message)
        return BadRequest(f"Fixed IP address {ip.group(1) if ip else ''} is already in "
                          "use.")
    if kind == "IpAddressGenerationFailure":
        return BadRequest(f"No fixed IP addresses available for network: {exc.message}")
    if kind == "OverQuota":
        return APIError("Maximum number of ports exceeded", status=403)
    if exc.status == 409:
        return Conflict(exc.message)
    if exc.status >= 500:
        return exc
    return BadRequest(exc.message)


def _version(addr: str) -> int:
    return 6 if ":" in addr else 4


def _subnets_list(port: dict[str, Any]) -> list[dict[str, Any]]:
    subs = port.get("subnets") or {}
    if isinstance(subs, dict):
        return [dict(v, id=v.get("id", k)) for k, v in subs.items()]
    return list(subs)


def driver_port(port: dict[str, Any]) -> dict[str, Any]:
    """The hypervisor driver's view of a port (``drivers/hypervisor/base.py``)."""
    return {"id": port["id"], "port_id": port["id"], "network_id": port["network_id"],
            "mac_address": port["mac_address"], "mtu": port.get("mtu") or 1500,
            "fixed_ips": [dict(ip) for ip in port.get("fixed_ips") or []],
            "subnets": _subnets_list(port), "network_name": port.get("network_name", ""),
            "binding:vif_type": port.get("binding:vif_type"),
            "binding:vif_details": port.get("binding:vif_details") or {},
            "binding:host_id": port.get("binding:host_id") or "",
            "security_groups": list(port.get("security_groups") or [])}


def addresses_of(ports: list[dict[str, Any]], names: dict[str, str],
                 fips: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """Nova's ``addresses``: per network name, each fixed IP followed by its floating IPs."""
    out: dict[str, list[dict[str, Any]]] = {}
    for p in ports:
        label = names.get(p["network_id"], p["network_id"])
        entries = out.setdefault(label, [])
        mac = p["mac_address"]
        port_fips = fips.get(p["id"], [])
        for ip in p.get("fixed_ips") or []:
            addr = ip["ip_address"]
            entries.append({"version": _version(addr), "addr": addr,
                            "OS-EXT-IPS:type": "fixed", "OS-EXT-IPS-MAC:mac_addr": mac})
            for f in port_fips:
                if f.get("fixed_ip_address") in (addr, None):
                    fa = f["floating_ip_address"]
                    entries.append({"version": _version(fa), "addr": fa,
                                    "OS-EXT-IPS:type": "floating",
                                    "OS-EXT-IPS-MAC:mac_addr": mac})
    return out


def interface_view(port: dict[str, Any]) -> dict[str, Any]:
    """One ``interfaceAttachment`` (``os-interface``)."""
    return {"port_id": port["id"], "net_id": port["network_id"],
            "mac_addr": port["mac_address"], "port_state": port.get("status", "DOWN"),
            "fixed_ips": [{"subnet_id": ip.get("subnet_id"), "ip_address": ip["ip_address"]}
                          for ip in port.get("fixed_ips") or []]}


class LocalNetwork:
    """``ComputeNetwork`` over an in-process ``NetworkManager`` (public methods only)."""

    def __init__(self, manager: NeutronApi) -> None:
        self.n = manager

    @staticmethod
    def _admin(project_id: str | None = None) -> RequestContext:
        ctx = RequestContext.admin()
        if project_id is not None:
            ctx.project_id = project_id
        return ctx

    # ------------------------------------------------------------------ boot requests
    def available_networks(self, ctx: RequestContext) -> list[dict[str, Any]]:
        """Nova's ``_get_available_networks``: the project's own networks plus shared ones
        (external networks are for floating IPs, not for servers)."""
        pid = ctx.project_id or ""
        nets = self.n.list_networks(ctx)
        return [n for n in nets if (n["shared"] or (n["project_id"] == pid
                                                      and not n["router:external"]))
                and n.get("admin_state_up", True)]

    def _network(self, ctx: RequestContext, net_id: str) -> dict[str, Any]:
        try:
            return dict(self.n.get_network(ctx, net_id))
        except NotFound:
            raise BadRequest(f"Network {net_id} could not be found.") from None

    def _port(self, ctx: RequestContext, port_id: str) -> dict[str, Any]:
        try:
            return dict(self.n.get_port(ctx, port_id))
        except NotFound:
            raise BadRequest(f"Port id {port_id} could not be found.") from None

    def plan_networks(self, ctx: RequestContext, networks: Any, count: int) -> list[
            dict[str, Any]]:
        """Validate ``server.networks`` (None, "auto", "none" or a list) into a plan.

        Nova's rules: with nothing requested (before 2.37) or "auto", exactly one available
        network gets a port (several: 409 NetworkAmbiguous; none: no port, or for "auto"
        400 UnableToAutoAllocateNetwork); unknown networks/ports 400; a port that already
        has a device 409 PortInUse; a fixed IP already taken 400 FixedIpAlreadyInUse; a
        network without subnets 400; ports or fixed IPs with more than one server 400.
        """
        if networks == "none":
            return []
        if networks is None or networks == "auto":
            nets = self.available_networks(ctx)
            if len(nets) > 1:
                raise Conflict("Multiple possible networks found, use a Network ID to be "
                               "more specific.")
            if not nets:
                if networks == "auto":
                    raise BadRequest("Unable to automatically allocate a network for "
                                     f"project {ctx.project_id}")
                return []
            return [{"network_id": nets[0]["id"], "fixed_ip": None}]
        plan: list[dict[str, Any]] = []
        seen_ports: set[str] = set()
        for req in networks:
            port_id = req.get("port")
            fixed_ip = req.get("fixed_ip")
            if port_id:
                if not isinstance(port_id, str):
                    raise BadRequest("Bad networks format")
                if port_id in seen_ports:
                    raise BadRequest(f"Port ID '{port_id}' was specified twice: you cannot "
                                     "attach a port multiple times.")
                if fixed_ip is not None:
                    raise BadRequest(f"Specified Fixed IP '{fixed_ip}' cannot be used with "
                                     f"port '{port_id}': the two cannot be specified "
                                     "together.")
                if count > 1:
                    raise BadRequest("Failed to launch instances: Unable to launch multiple "
                                     "instances with a single configured port ID. Please "
                                     "launch your instance one by one with different ports.")
                seen_ports.add(port_id)
                port = self._port(ctx, port_id)
                if port.get("device_id"):
                    raise Conflict(f"Port {port_id} is still in use.")
                if not port.get("fixed_ips"):
                    raise BadRequest(f"Port {port_id} requires a FixedIP in order to be "
                                     "used.")
                plan.append({"port_id": port_id, "network_id": port["network_id"]})
                continue
            net_id = req.get("uuid")
            if net_id is None:
                raise BadRequest("Bad network format: missing 'uuid'")
            if not isinstance(net_id, str) or not _uuid_like(net_id):
                raise BadRequest("Bad networks format: network uuid is not in proper format "
                                 f"({net_id})")
            net = self._network(ctx, net_id)
            if not net.get("subnets"):
                raise BadRequest(f"Network {net_id} requires a subnet in order to boot "
                                 "instances on.")
            if fixed_ip is not None:
                if count > 1:
                    raise BadRequest("Failed to launch instances: max_count cannot be greater "
                                     "than 1 if an fixed_ip is specified.")
                try:
                    fixed_ip = str(ipaddress.ip_address(fixed_ip))
                except (TypeError, ValueError):
                    raise BadRequest(f"Invalid input for field/attribute fixed_ip. Value: "
                                     f"{fixed_ip}.") from None
                for p in self.n.list_ports(self._admin(), network_id=net_id):
                    if any(ip["ip_address"] == fixed_ip for ip in p["fixed_ips"]):
                        raise BadRequest(f"Fixed IP address {fixed_ip} is already in use on "
                                         f"instance {p['device_id']}.")
            entry: dict[str, Any] = {"network_id": net_id, "fixed_ip": fixed_ip}
            if net.get("router:external") and not net.get("shared"):
                entry["external"] = True  # Nova: network:attach_external_network decides
            plan.append(entry)
        return plan

    def is_external(self, ctx: RequestContext, net_id: str) -> bool:
        """An external, unshared network (attaching servers to it is for admins)."""
        net = self._network(ctx, net_id)
        return bool(net.get("router:external") and not net.get("shared"))

    def security_group_ids(self, ctx: RequestContext, names: list[str]) -> list[str]:
        """Group names (or ids) of ``ctx``'s project to ids; 400 for an unknown one."""
        if not names:
            return []
        if ctx.project_id:
            self.n.ensure_default_security_group(ctx.project_id)
        groups = self.n.list_security_groups(ctx)
        pid = ctx.project_id or ""
        out: list[str] = []
        for name in names:
            by_id = [g for g in groups if g["id"] == name]
            by_name = [g for g in groups if g["name"] == name and g["project_id"] == pid] or \
                [g for g in groups if g["name"] == name]
            match = by_id or by_name
            if not match:
                raise BadRequest(f"Security group {name} not found for project {pid}.")
            if len(match) > 1:
                raise Conflict(f"Multiple security groups found matching '{name}'. Use an "
                               "ID to be more specific.")
            if match[0]["id"] not in out:
                out.append(match[0]["id"])
        return out

    # ------------------------------------------------------------------ ports of servers
    def _groups_for(self, ctx: RequestContext, network_id: str,
                    security_groups: list[str] | None) -> list[str] | None:
        """The groups a new port on ``network_id`` gets: on a network with port security
        off, none when only the project's ``default`` group was asked for (as Nova leaves
        it), a 400 when others were (Nova's SecurityGroupCannotBeApplied)."""
        if not security_groups:
            return security_groups
        try:
            net = self.n.get_network(self._admin(), network_id)
        except APIError:
            return security_groups  # the create reports the network's absence
        if net.get("port_security_enabled", True):
            return security_groups
        default = self.n.ensure_default_security_group(ctx.project_id or "")
        if set(security_groups) <= {default}:
            return []
        raise BadRequest("Network requires port_security_enabled and subnet associated in "
                         "order to apply security groups.")

    def allocate(self, ctx: RequestContext, instance_uuid: str, plan: list[dict[str, Any]],
                 security_groups: list[str] | None) -> list[dict[str, Any]]:
        """Create/claim the plan's ports for one server; on any failure release what this
        call made or claimed and raise (Nova's status codes)."""
        done: list[tuple[str, bool]] = []  # (port id, created here)
        ports: list[dict[str, Any]] = []
        try:
            for entry in plan:
                if entry.get("port_id"):
                    port = self.n.attach_port(ctx, entry["port_id"], instance_uuid,
                                              DEVICE_OWNER)
                    done.append((port["id"], False))
                    if security_groups is not None and entry.get("apply_groups"):
                        port = self.n.update_port(self._admin(), port["id"],
                                                  {"security_groups": security_groups})
                else:
                    fixed = ([{"ip_address": entry["fixed_ip"]}] if entry.get("fixed_ip")
                             else None)
                    port = self.n.create_port_for_device(
                        ctx, entry["network_id"], instance_uuid, device_owner=DEVICE_OWNER,
                        fixed_ips=fixed, security_groups=self._groups_for(
                            ctx, entry["network_id"], security_groups))
                    done.append((port["id"], True))
                ports.append(port)
        except APIError as exc:
            self._undo(done)
            if isinstance(exc, Conflict) and getattr(exc, "kind", "") == "PortInUse":
                raise Conflict(exc.message) from None
            raise nova_error(exc) from None
        except Exception:
            self._undo(done)
            raise
        return ports

    def _undo(self, done: list[tuple[str, bool]]) -> None:
        for port_id, created in reversed(done):
            try:
                if created:
                    self.n.delete_port(self._admin(), port_id, internal=True)
                else:
                    self.n.unbind_port(port_id, detach=True)
            except Exception:  # noqa: BLE001 - best effort, logged
                LOG.exception("could not roll back port %s", port_id)

    def deallocate(self, instance_uuid: str, preserve: list[str]) -> None:
        """A server is going away: its user-supplied ports (``preserve``) are unbound and
        detached (they survive), the ports compute made are deleted."""
        for port in self.n.list_ports(self._admin(), device_id=instance_uuid):
            if port["id"] in preserve:
                with contextlib.suppress(NotFound):
                    self.n.unbind_port(port["id"], detach=True)
        self.n.delete_ports_for_device(instance_uuid, only_owner_prefix="compute:")

    def port_count(self, instance_uuid: str) -> int:
        """How many ports a server has."""
        return len(self.n.list_ports(self._admin(), device_id=instance_uuid))

    def compute_port_devices(self) -> set[str]:
        """The device ids of every port compute made (``compute:*`` owners)."""
        return {p["device_id"] for p in self.n.list_ports(self._admin())
                if str(p.get("device_owner") or "").startswith("compute:")
                and p.get("device_id")}

    def bind(self, instance_uuid: str, host: str,
             order: NicOrder | None = None) -> list[dict[str, Any]]:
        """Bind every port of a server to ``host``; the driver's port dicts, in NIC order."""
        out = []
        for port in in_nic_order(self.n.device_ports(instance_uuid), order):
            if port.get("binding:host_id") != host or port.get(
                    "binding:vif_type") in ("unbound", "binding_failed"):
                bound = self.n.bind_port(port["id"], host)
                port = {**port, **bound}
            out.append(driver_port(port))
        return out

    def network_info(self, instance_uuid: str,
                     order: NicOrder | None = None) -> list[dict[str, Any]]:
        """The driver's port dicts of a server as they are (no binding change), in NIC
        order."""
        return [driver_port(p) for p in in_nic_order(self.n.device_ports(instance_uuid),
                                                     order)]

    def guest_ports(self, instance_uuid: str,
                    order: NicOrder | None = None) -> list[dict[str, Any]]:
        """The driver's port dicts of a server, each with its ``floating_ips``, in NIC order
        (what the metadata service shows the guest: ``metadata.app.PortSource``)."""
        return [{**driver_port(p), "floating_ips": p.get("floating_ips") or []}
                for p in in_nic_order(self.n.device_ports(instance_uuid), order)]

    def addresses(self, instance_uuids: list[str]) -> dict[str, dict[str, list[dict[
            str, Any]]]]:
        """``addresses`` of many servers: one port query, one floating IP query and one
        lookup per distinct network (not per server)."""
        if not instance_uuids:
            return {}
        admin = self._admin()
        if len(instance_uuids) == 1:
            uuid = instance_uuids[0]
            ports = self.n.device_ports(uuid)
            names = {p["network_id"]: p.get("network_name", "") for p in ports}
            fips = {p["id"]: p.get("floating_ips") or [] for p in ports}
            return {uuid: addresses_of(ports, names, fips)} if ports else {}
        all_ports: list[dict[str, Any]] = []
        for i in range(0, len(instance_uuids), 900):
            all_ports.extend(self.n.list_ports(admin,
                                               device_id=list(instance_uuids[i:i + 900])))
        if not all_ports:
            return {}
        by_device: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for p in all_ports:
            by_device[p["device_id"]].append(p)
        names = self._network_names({p["network_id"] for p in all_ports})
        port_ids = {p["id"] for p in all_ports}
        fips: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for f in self.n.list_floatingips(admin):
            if f.get("port_id") in port_ids:
                fips[f["port_id"]].append(f)
        return {uuid: addresses_of(ports, names, fips) for uuid, ports in by_device.items()}

    def cached_addresses(self, caches: dict[str, list[dict[str, Any]] | None]
                         ) -> dict[str, dict[str, list[dict[str, Any]]]]:
        """``addresses`` of a page of servers from their port caches (the driver port dicts
        compute recorded when it bound or changed their ports, like Nova's info cache)
        plus the live floating IPs: one floating IP query for the page. Servers without a
        cache yet (``None``: still building) are read live."""
        live = [u for u, c in caches.items() if c is None]
        out = self.addresses(live) if live else {}
        have = {u: c for u, c in caches.items() if c}
        if not have:
            return out
        port_ids = {p["id"] for c in have.values() for p in c}
        fips: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for f in self.n.list_floatingips(self._admin()):
            if f.get("port_id") in port_ids:
                fips[f["port_id"]].append(f)
        names = {p["network_id"]: p.get("network_name") or p["network_id"]
                 for c in have.values() for p in c}
        for uuid, ports in have.items():
            out[uuid] = addresses_of(ports, names, fips)
        return out

    def _network_names(self, ids: set[str]) -> dict[str, str]:
        admin = self._admin()
        names = {}
        for nid in ids:
            try:
                names[nid] = self.n.get_network(admin, nid)["name"]
            except NotFound:
                names[nid] = nid
        return names

    def instances_by_ip(self, pattern: str, version: int | None = None) -> list[str]:
        """Servers with a fixed IP matching the regex ``pattern`` (Nova's ``ip`` filter)."""
        try:
            rx = re.compile(pattern)
        except re.error:
            return []
        out: list[str] = []
        for p in self.n.list_ports(self._admin()):
            if not p["device_owner"].startswith("compute:") or not p["device_id"]:
                continue
            for ip in p["fixed_ips"]:
                addr = ip["ip_address"]
                if (version is None or _version(addr) == version) and rx.search(addr):
                    out.append(p["device_id"])
                    break
        return out

    # ------------------------------------------------------------------ interfaces
    def interfaces(self, instance_uuid: str) -> list[dict[str, Any]]:
        return list(self.n.list_ports(self._admin(), device_id=instance_uuid))

    def attach_interface(self, ctx: RequestContext, instance_uuid: str,
                         net_id: str | None, port_id: str | None,
                         fixed_ips: list[dict[str, str]] | None, host: str | None,
                         security_groups: list[str] | None) -> dict[str, Any]:
        """Nova's interface attach (``os-interface``): a new port on ``net_id`` (or the
        project's only network) or a user's port; bound to ``host``. Errors as Nova's."""
        if port_id:
            try:
                port = self.n.get_port(ctx, port_id)
            except NotFound:
                raise NotFound(f"Port {port_id} could not be found.") from None
            if port.get("device_id"):
                raise Conflict(f"Port {port_id} is still in use.")
            try:
                port = self.n.attach_port(ctx, port_id, instance_uuid, DEVICE_OWNER)
            except APIError as exc:
                if exc.status == 409:
                    raise Conflict(f"Port {port_id} is still in use.") from None
                raise
        else:
            if not net_id:
                nets = self.available_networks(ctx)
                if len(nets) > 1:
                    raise BadRequest("Multiple possible networks found, use a Network ID to "
                                     "be more specific.")
                if not nets:
                    raise BadRequest(f"No network is available to attach the instance "
                                     f"{instance_uuid} to.")
                net_id = nets[0]["id"]
            try:
                self.n.get_network(ctx, net_id)
            except NotFound:
                raise NotFound(f"Network {net_id} could not be found.") from None
            fixed = None
            if fixed_ips:
                fixed = [{"ip_address": f["ip_address"]} for f in fixed_ips]
            try:
                port = self.n.create_port_for_device(
                    ctx, net_id, instance_uuid, device_owner=DEVICE_OWNER, fixed_ips=fixed,
                    security_groups=security_groups)
            except APIError as exc:
                kind = getattr(exc, "kind", "")
                if kind in ("IpAddressAlreadyAllocated", "IpAddressInUse"):
                    ip = fixed[0]["ip_address"] if fixed else ""
                    raise Conflict(f"Fixed IP address {ip} is already in use on instance "
                                   f"{instance_uuid}.") from None
                if kind == "IpAddressGenerationFailure":
                    raise BadRequest(f"No fixed IP addresses available for network: "
                                     f"{net_id}") from None
                if kind == "OverQuota":
                    raise APIError("Maximum number of ports exceeded", status=403) from None
                if exc.status == 404:
                    raise NotFound(exc.message) from None
                if exc.status == 409:
                    raise Conflict(exc.message) from None
                raise BadRequest(exc.message) from None
        if host:
            try:
                port = {**port, **self.n.bind_port(port["id"], host)}
            except APIError:
                LOG.warning("could not bind port %s to %s", port["id"], host)
        return dict(port)

    def detach_interface(self, instance_uuid: str, port_id: str, preserve: bool) -> None:
        ports = {p["id"]: p for p in self.interfaces(instance_uuid)}
        if port_id not in ports:
            raise NotFound(f"Port {port_id} is not attached")
        if preserve:
            self.n.unbind_port(port_id, detach=True)
        else:
            self.n.delete_port(self._admin(), port_id, internal=True)

    def add_fixed_ip(self, instance_uuid: str, net_id: str) -> None:
        """``addFixedIp``: one more address on the server's port on ``net_id``."""
        admin = self._admin()
        ports = [p for p in self.interfaces(instance_uuid) if p["network_id"] == net_id]
        if not ports:
            raise BadRequest(f"Error: Network could not be found for instance "
                             f"{instance_uuid}.")
        try:
            subnets = self.n.get_network(admin, net_id)["subnets"]
        except NotFound:
            subnets = []
        port = ports[0]
        used = {ip["subnet_id"] for ip in port["fixed_ips"]}
        target = next((s for s in subnets if s not in used), subnets[0] if subnets else None)
        if target is None:
            raise BadRequest(f"Error: Network could not be found for instance "
                             f"{instance_uuid}.")
        fixed = [{"subnet_id": ip["subnet_id"], "ip_address": ip["ip_address"]}
                 for ip in port["fixed_ips"]] + [{"subnet_id": target}]
        try:
            self.n.update_port(admin, port["id"], {"fixed_ips": fixed})
        except APIError as exc:
            raise BadRequest(exc.message) from None

    def remove_fixed_ip(self, instance_uuid: str, address: str) -> None:
        """``removeFixedIp``: drop the address from the server's port holding it."""
        admin = self._admin()
        for port in self.interfaces(instance_uuid):
            ips = port["fixed_ips"]
            if any(ip["ip_address"] == address for ip in ips):
                keep = [{"subnet_id": ip["subnet_id"], "ip_address": ip["ip_address"]}
                        for ip in ips if ip["ip_address"] != address]
                try:
                    self.n.update_port(admin, port["id"], {"fixed_ips": keep})
                except APIError as exc:
                    raise BadRequest(exc.message) from None
                return
        raise BadRequest(f"Instance {instance_uuid} has no fixed IP '{address}'.")

    def set_security_groups(self, instance_uuid: str, group_ids: list[str]) -> None:
        """Apply the groups to every port of the server (add/removeSecurityGroup)."""
        admin = self._admin()
        for port in self.interfaces(instance_uuid):
            if port.get("port_security_enabled", True):
                self.n.update_port(admin, port["id"], {"security_groups": group_ids})

    def security_groups_of(self, instance_uuid: str) -> list[dict[str, Any]]:
        """The groups on the server's ports (``os-security-groups`` of a server)."""
        admin = self._admin()
        ids: list[str] = []
        for port in self.interfaces(instance_uuid):
            for gid in port.get("security_groups") or []:
                if gid not in ids:
                    ids.append(gid)
        out = []
        for gid in ids:
            try:
                out.append(self.n.get_security_group(admin, gid))
            except NotFound:
                continue
        return out


def _uuid_like(value: str) -> bool:
    try:
        import uuid

        uuid.UUID(value)
    except ValueError:
        return False
    return True
