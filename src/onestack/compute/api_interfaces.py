"""Compute API: a server's addresses and network interfaces (``/servers/{id}/ips``,
``/os-interface`` attach and detach with hot-plug by the host agent, ``/os-security-groups``)
over the network service's seam (``compute/network.py``)."""

from __future__ import annotations

import logging
from typing import Any

from starlette.responses import Response

from onestack.api.app import ApiRequest
from onestack.api.routes import serves
from onestack.common.errors import APIError, BadRequest, Conflict, NotFound, ValidationError
from onestack.common.ids import new_uuid
from onestack.compute import schemas, states
from onestack.compute.manager import InstanceDict
from onestack.compute.microversions import ver
from onestack.compute.network import interface_view
from onestack.compute.network_proxies import nova_group
from onestack.compute.resource_base import (
    ResourceHandler,
    external_attach,
    preserved,
    project_ctx,
)

LOG = logging.getLogger(__name__)

#: How long an interface attach/detach waits for the compute host (hot-plug, guest
#: release).
NIC_TIMEOUT = 90


class Interfaces(ResourceHandler):
    """A server's IPs, interfaces and security groups."""

    async def _basic_ips(self, req: ApiRequest, rule: str) -> dict[str, list[dict[str, Any]]]:
        inst = await self.find_server(req, rule)
        addrs = (await self.api.addresses(req, [inst["uuid"]])).get(inst["uuid"], {})
        return {net: [{"version": a["version"], "addr": a["addr"]} for a in entries]
                for net, entries in addrs.items()}

    @serves("GET", "/v2.1/servers/{server_id}/ips")
    async def list_ips(self, req: ApiRequest) -> dict[str, Any]:
        return {"addresses": await self._basic_ips(req, "os_compute_api:ips:index")}

    @serves("GET", "/v2.1/servers/{server_id}/ips/{network}")
    async def show_ips(self, req: ApiRequest) -> dict[str, Any]:
        addrs = await self._basic_ips(req, "os_compute_api:ips:show")
        net = req.param("network")
        if net not in addrs:
            raise NotFound("Instance is not a member of specified network")
        return {net: addrs[net]}

    @serves("GET", "/v2.1/servers/{server_id}/os-interface")
    async def list_interfaces(self, req: ApiRequest) -> dict[str, Any]:
        inst = await self.find_server(req, "os_compute_api:os-attach-interfaces:list")
        if self.network is None:
            return {"interfaceAttachments": []}
        ports = await req.run(self.network.interfaces, inst["uuid"])
        return {"interfaceAttachments": [self._iface(req, p) for p in ports]}

    def _iface(self, req: ApiRequest, port: dict[str, Any]) -> dict[str, Any]:
        doc = interface_view(port)
        if ver(req) >= "2.70":
            doc["tag"] = None
        return doc

    @serves("GET", "/v2.1/servers/{server_id}/os-interface/{port_id}")
    async def show_interface(self, req: ApiRequest) -> dict[str, Any]:
        inst = await self.find_server(req, "os_compute_api:os-attach-interfaces:show")
        port_id = req.param("port_id")
        ports = ([] if self.network is None
                 else await req.run(self.network.interfaces, inst["uuid"]))
        for p in ports:
            if p["id"] == port_id:
                return {"interfaceAttachment": self._iface(req, p)}
        raise NotFound(f"Port {port_id} is not attached")

    def _iface_state(self, inst: InstanceDict, action: str) -> None:
        if inst["locked"]:
            raise Conflict(f"Instance {inst['uuid']} is locked")
        if inst["vm_state"] not in (states.ACTIVE, states.PAUSED, states.STOPPED) or \
                inst["task_state"] is not None:
            raise Conflict(f"Cannot '{action}' instance {inst['uuid']} while it is in "
                           f"vm_state {inst['vm_state']}")

    @serves("POST", "/v2.1/servers/{server_id}/os-interface")
    async def attach_interface(self, req: ApiRequest) -> dict[str, Any]:
        inst = await self.find_server(req, "os_compute_api:os-attach-interfaces:create")
        if self.network is None:
            raise BadRequest("Network service is not available in this cloud.")
        body = await req.json()
        att = schemas.obj(body, "interfaceAttachment") if isinstance(body, dict) and \
            "interfaceAttachment" in body else {}
        schemas.only(att, {"net_id", "port_id", "fixed_ips", "tag"}, "interfaceAttachment")
        net_id = att.get("net_id")
        port_id = att.get("port_id")
        fixed = att.get("fixed_ips")
        for key, val in (("net_id", net_id), ("port_id", port_id)):
            if val is not None and (not isinstance(val, str) or not schemas.is_uuid(val)):
                raise ValidationError(f"Invalid input for field/attribute {key}.")
        if fixed is not None:
            if not isinstance(fixed, list) or len(fixed) != 1 or not isinstance(
                    fixed[0], dict) or not isinstance(fixed[0].get("ip_address"), str):
                raise ValidationError("Invalid input for field/attribute fixed_ips.")
            schemas.ipv4(fixed[0]["ip_address"], "ip_address") if ":" not in \
                fixed[0]["ip_address"] else schemas.ipv6(fixed[0]["ip_address"], "ip_address")
        if net_id and port_id:
            raise BadRequest("Must not input both network_id and port_id")
        if fixed and not net_id:
            raise BadRequest("Must input network_id when request IP address")
        self._iface_state(inst, "attach_interface")
        if net_id and not req.ctx.is_admin and await req.run(self.network.is_external,
                                                             req.ctx, net_id):
            external_attach(req, net_id)
        sg_ids = None
        names = inst["system_metadata"].get("security_groups") or []
        if not port_id:
            ctx = req.ctx if req.ctx.project_id == inst["project_id"] else \
                project_ctx(inst["project_id"])
            sg_ids = await req.run(self._sg_ids_quiet, ctx, names or ["default"])
        else:
            ctx = req.ctx
        port = await req.run(self.network.attach_interface, ctx, inst["uuid"], net_id,
                             port_id, fixed, inst["host"], sg_ids)
        nics = await self.api.refresh_nics(req, inst)
        if inst["host"]:
            # The guest gets the NIC now (hot-plug) or at its next start; a failure
            # undoes the port's attachment.
            error = await self._agent_nic(inst, "attach_interface", nics, port["id"])
            if error:
                await req.run(self.network.detach_interface, inst["uuid"], port["id"],
                              bool(port_id))
                await self.api.refresh_nics(req, inst)
                raise Conflict(f"Failed to attach network adapter device to "
                               f"{inst['uuid']}: {error}")
        await self.record_done(req, inst, "attach_interface")
        if port_id:
            keep = preserved(inst) + [port["id"]]
            await req.run(self.m.update_system_metadata, inst["uuid"], preserve_ports=keep)
        return {"interfaceAttachment": self._iface(req, port)}

    async def _agent_nic(self, inst: InstanceDict, method: str, nics: list[dict[str, Any]],
                         port_id: str) -> Any:
        """Have the server's agent ``method`` (attach or detach) the NIC of port ``port_id``
        (as ``nics`` describe it); the error it reports, or None when it did it."""
        nic = next((n for n in nics if n.get("id") == port_id), {"id": port_id})
        try:
            res = await self.api.call(inst, method, timeout=NIC_TIMEOUT,
                                      instance_uuid=inst["uuid"], port=nic)
        except Conflict as exc:
            res = {"error": exc.message}
        return res.get("error") if isinstance(res, dict) else None

    def _sg_ids_quiet(self, ctx: Any, names: list[str]) -> list[str] | None:
        assert self.network is not None
        try:
            return list(self.network.security_group_ids(ctx, names))
        except APIError:
            return None

    @serves("DELETE", "/v2.1/servers/{server_id}/os-interface/{port_id}")
    async def detach_interface(self, req: ApiRequest) -> Response:
        inst = await self.find_server(req, "os_compute_api:os-attach-interfaces:delete")
        port_id = req.param("port_id")
        if self.network is None:
            raise NotFound(f"Port {port_id} is not attached")
        self._iface_state(inst, "detach_interface")
        attached = {p["id"]: p for p in await req.run(self.network.interfaces, inst["uuid"])}
        if port_id not in attached:
            raise NotFound(f"Port {port_id} is not attached")
        if inst["host"]:
            # The guest lets go of the NIC first; if it does not, the port stays attached.
            error = await self._agent_nic(inst, "detach_interface",
                                          inst["system_metadata"].get("networks") or [],
                                          port_id)
            if error:
                raise Conflict(f"Failed to detach network adapter device from "
                               f"{inst['uuid']}: {error}")
        preserve = preserved(inst)
        await req.run(self.network.detach_interface, inst["uuid"], port_id,
                      port_id in preserve)
        await self.record_done(req, inst, "detach_interface")
        if port_id in preserve:
            await req.run(self.m.update_system_metadata, inst["uuid"],
                          preserve_ports=[p for p in preserve if p != port_id])
        await self.api.refresh_nics(req, inst)
        return Response(status_code=202)

    @serves("GET", "/v2.1/servers/{server_id}/os-security-groups")
    async def server_sgs(self, req: ApiRequest) -> dict[str, Any]:
        inst = await self.find_server(req, "os_compute_api:os-security-groups:list")
        if self.network is not None:
            groups = await req.run(self.network.security_groups_of, inst["uuid"])
            if groups:
                known = {g["id"]: g for g in groups}
                return {"security_groups": sorted(
                    (nova_group(g, known) for g in groups),
                    key=lambda g: (g["tenant_id"], g["name"]))}
        return {"security_groups": [
            {"name": n, "id": new_uuid(), "description": "", "rules": [],
             "tenant_id": inst["project_id"]}
            for n in inst["system_metadata"].get("security_groups") or []]}

    async def a_add_security_group(self, req: ApiRequest, inst: InstanceDict,
                                   args: Any) -> None:
        await self._security_group(req, inst, args, True)

    async def a_remove_security_group(self, req: ApiRequest, inst: InstanceDict,
                                      args: Any) -> None:
        await self._security_group(req, inst, args, False)

    async def _security_group(self, req: ApiRequest, inst: InstanceDict, args: Any,
                              add: bool) -> None:
        """Membership is recorded on the instance and, with networking, applied to every
        port of the server (without it only the ``default`` group exists)."""
        name = args.get("name") if isinstance(args, dict) else None
        if not isinstance(name, str) or not name.strip():
            raise BadRequest("Security group name cannot be empty")
        groups = list(inst["system_metadata"].get("security_groups") or [])
        if self.network is not None:
            ctx = project_ctx(inst["project_id"])
            try:
                await req.run(self.network.security_group_ids, ctx, [name])
            except BadRequest:
                raise NotFound(f"Security group {name} not found for project "
                               f"{inst['project_id']}.") from None
        if add:
            if name != "default" and self.network is None:
                raise NotFound(f"Security group {name} not found for project "
                               f"{inst['project_id']}.")
            if name in groups:
                raise BadRequest(f"Security group {name} is already associated with the "
                                 f"instance {inst['uuid']}")
            groups.append(name)
        else:
            if name not in groups:
                if name != "default" and self.network is None:
                    raise NotFound(f"Security group {name} not found for project "
                                   f"{inst['project_id']}.")
                raise BadRequest(f"Security group {name} not associated with the instance "
                                 f"{inst['uuid']}")
            groups.remove(name)
        if self.network is not None:
            ids = await req.run(self.network.security_group_ids,
                                project_ctx(inst["project_id"]), groups)
            await req.run(self.network.set_security_groups, inst["uuid"], ids)
        await req.run(self.m.update_system_metadata, inst["uuid"], security_groups=groups)

    async def a_add_fixed_ip(self, req: ApiRequest, inst: InstanceDict, args: Any) -> None:
        """``addFixedIp``: one more address on the server's port on the network. Nova
        removed it in 2.44; it is accepted at every microversion because openstacksdk (so
        ``openstack server remove fixed ip``) sends these actions at its newest one."""
        net_id = args.get("networkId") if isinstance(args, dict) else None
        if not isinstance(net_id, str | int) or not str(net_id):
            raise ValidationError("Invalid input for field/attribute networkId.")
        if self.network is None:
            raise BadRequest(f"Error: Network could not be found for instance "
                             f"{inst['uuid']}.")
        await req.run(self.network.add_fixed_ip, inst["uuid"], str(net_id))
        await self.api.refresh_nics(req, inst)

    async def a_remove_fixed_ip(self, req: ApiRequest, inst: InstanceDict,
                                args: Any) -> None:
        """``removeFixedIp`` (see ``a_add_fixed_ip`` on microversions)."""
        address = args.get("address") if isinstance(args, dict) else None
        if not isinstance(address, str) or not address:
            raise ValidationError("Invalid input for field/attribute address.")
        if self.network is None:
            raise BadRequest(f"Instance {inst['uuid']} has no fixed IP '{address}'.")
        await req.run(self.network.remove_fixed_ip, inst["uuid"], address)
        await self.api.refresh_nics(req, inst)

