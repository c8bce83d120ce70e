"""Compute API: booting servers (``POST /servers``): the request validated against the
flavor, image, volumes, key pair, zones, groups and the network service; the rows written, the
user's volumes reserved and the ports made before the 202 (all or nothing); then the scheduler
is cast to."""

from __future__ import annotations

import base64
import logging
from typing import Any

from starlette.responses import Response

from onestack.api.app import ApiRequest, FastJSON
from onestack.api.routes import serves
from onestack.common.errors import BadRequest, Forbidden, NotFound, ValidationError
from onestack.compute import block_devices, boot_volumes, schemas, server_schemas, views
from onestack.compute.api_actions import admin_password
from onestack.compute.boot_request import BootRequest
from onestack.compute.manager import InstanceDict
from onestack.compute.microversions import APIVersion, ver
from onestack.compute.resource_base import ResourceHandler, external_attach, tgt

LOG = logging.getLogger(__name__)


class Boot(ResourceHandler):
    """Server create: validation, reservation of volumes and ports, the cast to the scheduler."""

    @serves("POST", "/v2.1/servers")
    async def create_server(self, req: ApiRequest) -> Response:
        v = ver(req)
        req.enforce("os_compute_api:servers:create", tgt(req))
        body = await req.json()
        srv = schemas.obj(body, "server")
        server_schemas.check_create(body, v.minor)
        hints = body.get("os:scheduler_hints") or body.get("OS-SCH-HNT:scheduler_hints") or {}
        min_count = schemas.integer(srv.get("min_count", 1), "min_count", 1)
        max_count = schemas.integer(srv.get("max_count", min_count), "max_count", 1)
        if min_count > max_count:
            raise BadRequest("min_count must be <= max_count")
        spec, request = await self.m.db.run(self._prepare, req, srv, hints, v)
        # Kept with the instance (Nova's RequestSpec) so a boot whose scheduling was lost
        # in a crash can be scheduled again (compute/recovery.py).
        spec["system_metadata"]["schedule_request"] = request.schedule_record()
        plan: list[dict[str, Any]] = []
        sg_ids: list[str] | None = None
        if self.network is not None:
            plan, sg_ids = await self.m.db.run(self._plan_network, req, srv, spec, max_count)
        admin_pass = srv.get("adminPass") or admin_password()
        request.admin_pass = admin_pass
        insts = await self.m.db.run(self.m.create_instances, req.ctx, spec, max_count,
                                    min_count)
        if spec["system_metadata"].get("block_devices"):
            # The user's volumes are reserved for the server before the 202 (as Nova).
            try:
                await req.run(self._reserve_volumes, req.ctx, insts[0]["uuid"],
                              spec["system_metadata"]["block_devices"])
            except BaseException:
                await req.run(self.m.purge_instances, [i["uuid"] for i in insts])
                raise
        if plan:
            # Ports are made in the request, before the 202: a failure leaves nothing.
            try:
                await req.run(self._allocate_all, req.ctx, insts, plan, sg_ids)
            except BaseException:
                await req.run(self._release_reserved, insts[0]["uuid"])
                await req.run(self.m.purge_instances, [i["uuid"] for i in insts])
                raise
        first = insts[0]
        # What the scheduler and the agent need, so neither has to read the rows back.
        request.instance = {
            "flavor": spec["flavor"], "project_id": first["project_id"],
            "user_id": first["user_id"], "image_ref": first["image_ref"],
            "key_data": first["key_data"], "user_data": first["user_data"],
            "metadata": first["metadata"], "config_drive": first["config_drive"],
            "system_metadata": first["system_metadata"]}
        request.names = {i["uuid"]: i["name"] for i in insts}
        await self.bus.cast("scheduler", "build_instances",
                            instance_uuids=[i["uuid"] for i in insts],
                            request=request.to_wire())
        if srv.get("return_reservation_id") in (True, "True", "true"):
            return FastJSON({"reservation_id": insts[0]["reservation_id"]}, status_code=202)
        first = insts[0]
        doc: dict[str, Any] = {"id": first["uuid"],
                               "links": views.links(req.base_url, "servers", first["uuid"]),
                               "OS-DCF:diskConfig": spec["system_metadata"]["disk_config"]}
        if spec["system_metadata"]["security_groups"]:
            doc["security_groups"] = [{"name": n} for n in
                                      spec["system_metadata"]["security_groups"]]
        doc["adminPass"] = admin_pass
        return FastJSON({"server": doc}, status_code=202,
                        headers={"Location": doc["links"][0]["href"]})

    def _prepare(self, req: ApiRequest, srv: dict[str, Any], hints: dict[str, Any],
                 v: APIVersion) -> tuple[dict[str, Any], BootRequest]:
        """Validate a create request; returns (instance spec, boot request)."""
        ctx = req.ctx
        name = schemas.name(srv.get("name"), "name")
        flavor_ref = srv.get("flavorRef")
        if flavor_ref is None:
            raise ValidationError("Invalid input for field/attribute server. 'flavorRef' is a "
                                  "required property")
        fid = schemas.ref_id(flavor_ref, "flavorRef")
        try:
            flavor = self.m.get_flavor(ctx, fid)
        except NotFound:
            raise BadRequest(f"Flavor {fid} could not be found.") from None
        if flavor["disabled"]:
            raise BadRequest(f"Flavor {fid} could not be found.")
        seen: dict[str, dict[str, Any]] = {}  # one image lookup per image and request

        def image_info(iid: str) -> dict[str, Any]:
            if iid not in seen:
                seen[iid] = self.api.image_info(req, iid)
            return dict(seen[iid])
        disks = boot_volumes.parse(ctx, srv, srv.get("imageRef"), self.volumes, image_info,
                                   schemas.integer(srv.get("max_count", 1), "max_count", 1))
        if disks.volume_backed:
            image_id = ""
            image = {"properties": disks.root_properties or {}}
        else:
            image_id = schemas.ref_id(disks.image_ref, "imageRef")
            if not schemas.is_uuid(image_id):
                raise BadRequest(f"Invalid imageRef provided. Image {image_id} could not "
                                 "be found.")
            image = image_info(image_id)
            if image["min_ram"] and flavor["memory_mb"] < image["min_ram"]:
                raise BadRequest("Flavor's memory is too small for requested image.")
            if image["min_disk"] and flavor["root_gb"] and \
                    flavor["root_gb"] < image["min_disk"]:
                raise BadRequest("Flavor's disk is too small for requested image.")
            if flavor["root_gb"] and image["size"] > flavor["root_gb"] * 1024 ** 3:
                raise BadRequest("Flavor's disk is too small for requested image.")
            if not flavor["root_gb"] and not req.allowed(
                    "os_compute_api:servers:create:zero_disk_flavor",
                    {"project_id": ctx.project_id or ""}):
                raise Forbidden("Only volume-backed servers are allowed for flavors with "
                                "zero disk.")
        networks = srv.get("networks")
        requested_networks: list[dict[str, Any]] = []
        if v >= "2.37" and networks is None:
            raise ValidationError("Invalid input for field/attribute server. 'networks' is a "
                                  "required property")
        if isinstance(networks, str):
            if networks not in ("none", "auto") or v < "2.37":
                raise ValidationError(f"Invalid input for field/attribute networks. Value: "
                                      f"{networks}.")
        elif isinstance(networks, list):
            for net in networks:
                if not isinstance(net, dict):
                    raise ValidationError("Invalid input for field/attribute networks.")
                for key in ("uuid", "port", "fixed_ip"):
                    if net.get(key) is not None and not isinstance(net[key], str):
                        raise ValidationError(f"Invalid input for field/attribute {key}.")
                if self.network is None:
                    if net.get("port"):
                        raise BadRequest(f"Port {net['port']} could not be found.")
                    raise BadRequest(f"Network {net.get('uuid')} could not be found.")
                requested_networks.append(net)
        elif networks is not None:
            raise ValidationError("Invalid input for field/attribute networks.")
        key_data = None
        key_name = srv.get("key_name")
        if key_name is not None:
            if not isinstance(key_name, str):
                raise ValidationError("Invalid input for field/attribute key_name.")
            try:
                key_data = self.m.get_keypair(ctx.user_id or "", key_name)["public_key"]
            except NotFound:
                raise BadRequest("Invalid key_name provided.") from None
        # The metadata_items quota is checked with the others when the rows are written.
        meta = schemas.metadata(srv.get("metadata", {}))
        personality = srv.get("personality")
        if personality is not None:
            if v >= "2.57":
                raise ValidationError("Invalid input for field/attribute server. Additional "
                                      "properties are not allowed ('personality' was "
                                      "unexpected)")
            if not isinstance(personality, list):
                raise ValidationError("Invalid input for field/attribute personality.")
            limits = self.m.quota_limits(ctx.project_id or "", ctx.user_id)
            if 0 <= limits["injected_files"] < len(personality):
                raise Forbidden("Personality file limit exceeded")
            for f in personality:
                if not isinstance(f, dict) or "path" not in f:
                    raise ValidationError("Invalid input for field/attribute personality.")
                if len(str(f["path"])) > limits["injected_file_path_bytes"] >= 0:
                    raise Forbidden("Personality file path exceeds maximum "
                                    f"{limits['injected_file_path_bytes']}")
                try:
                    content = base64.b64decode(f.get("contents", ""), validate=True)
                except Exception:  # noqa: BLE001
                    raise BadRequest("Personality content for "
                                     f"{f['path']} cannot be decoded") from None
                if len(content) > limits["injected_file_content_bytes"] >= 0:
                    raise Forbidden("Personality file content exceeds maximum "
                                    f"{limits['injected_file_content_bytes']}")
        user_data = srv.get("user_data")
        if user_data is not None:
            user_data = schemas.user_data(user_data)
        az = srv.get("availability_zone")
        if az is not None:
            if not isinstance(az, str) or not az:
                raise ValidationError("Invalid input for field/attribute availability_zone.")
            zone = az.split(":", 1)[0]
            if ":" in az:
                req.enforce("os_compute_api:servers:create:forced_host", tgt(req))
            if zone:
                known = {z["name"] for z in self.m.availability_zones()
                         if z["name"] != "internal"}
                if zone not in known:
                    raise BadRequest("The requested availability zone is not available")
        req_host = srv.get("host")
        req_node = srv.get("hypervisor_hostname")
        if (req_host or req_node) and v >= "2.74":
            req.enforce("os_compute_api:servers:create:requested_destination", tgt(req))
            if req_host and not any(n["host"] == req_host for n in self.m.list_nodes()):
                raise BadRequest(f"Compute host {req_host} could not be found.")
            if req_node and self.m.node_by_name(req_node) is None:
                raise BadRequest(f"Compute host {req_node} could not be found.")
        sgs = srv.get("security_groups")
        sg_names = ["default"]
        if sgs is not None:
            if not isinstance(sgs, list):
                raise ValidationError("Invalid input for field/attribute security_groups.")
            sg_names = []
            for sg in sgs:
                if not isinstance(sg, dict) or not isinstance(sg.get("name"), str):
                    raise ValidationError("Invalid input for field/attribute security_groups.")
                if sg["name"] != "default" and self.network is None:
                    raise BadRequest(f"Security group {sg['name']} not found for project "
                                     f"{ctx.project_id}.")
                if sg["name"] not in sg_names:
                    sg_names.append(sg["name"])
        if isinstance(networks, str) and networks == "none":
            sg_names = sg_names if sgs is not None else []
        group = None
        if hints:
            if not isinstance(hints, dict):
                raise ValidationError("Invalid input for field/attribute os:scheduler_hints.")
            group = hints.get("group")
            if group is not None:
                if not schemas.is_uuid(group):
                    raise ValidationError(f"Invalid input for field/attribute group. Value: "
                                          f"{group}.")
                try:
                    self.m.get_group(ctx, group)
                except NotFound:
                    raise BadRequest(f"Instance group {group} could not be found.") from None
        tags = []
        if srv.get("tags") is not None:
            if v < "2.52":
                raise ValidationError("Invalid input for field/attribute server. Additional "
                                      "properties are not allowed ('tags' was unexpected)")
            tags = schemas.tags(srv["tags"])
        description = srv.get("description")
        if description is not None:
            if v < "2.19":
                raise ValidationError("Invalid input for field/attribute server. Additional "
                                      "properties are not allowed ('description' was "
                                      "unexpected)")
            if not isinstance(description, str) or len(description) > 255:
                raise ValidationError("Invalid input for field/attribute description.")
        hostname = srv.get("hostname")
        if hostname is not None and v < "2.90":
            raise ValidationError("Invalid input for field/attribute server. Additional "
                                  "properties are not allowed ('hostname' was unexpected)")
        ipv4 = srv.get("accessIPv4")
        ipv6 = srv.get("accessIPv6")
        if ipv4 is not None and ipv4 != "":
            ipv4 = schemas.ipv4(ipv4, "accessIPv4")
        if ipv6 is not None and ipv6 != "":
            ipv6 = schemas.ipv6(ipv6, "accessIPv6")
        config_drive = srv.get("config_drive")
        if config_drive is not None and not isinstance(config_drive, bool | str):
            raise ValidationError("Invalid input for field/attribute config_drive.")
        disk_config = srv.get("OS-DCF:diskConfig", "MANUAL")
        if disk_config not in ("AUTO", "MANUAL"):
            raise ValidationError("Invalid input for field/attribute OS-DCF:diskConfig.")
        admin_pass = srv.get("adminPass")
        if admin_pass is not None and not isinstance(admin_pass, str):
            raise ValidationError("Invalid input for field/attribute adminPass.")
        spec = {"name": name, "flavor": flavor, "image_ref": image_id,
                "key_name": key_name, "key_data": key_data, "user_data": user_data,
                "metadata": meta, "availability_zone": (az.split(":", 1)[0] or None)
                if az else None,
                "config_drive": bool(config_drive) and config_drive not in ("", "False"),
                "tags": tags, "access_ip_v4": ipv4 or None, "access_ip_v6": ipv6 or None,
                "description": description, "hostname": hostname, "group": group,
                "system_metadata": {"image_properties": image["properties"],
                                    "security_groups": sg_names, "disk_config": disk_config,
                                    "requested_networks": requested_networks,
                                    "networks": [], "preserve_ports": [],
                                    "requested_az": az.split(":", 1)[0] or None
                                    if az else None,
                                    "scheduler_hints": dict(hints or {})}}
        if disks.volumes:
            spec["system_metadata"]["block_devices"] = disks.volumes
        if disks.boot_image:
            spec["system_metadata"]["boot_image"] = disks.boot_image
        request = BootRequest(availability_zone=az, image_properties=image["properties"],
                              group=group, hints={k: v2 for k, v2 in (hints or {}).items()
                                                  if k != "group"},
                              host=req_host, hypervisor_hostname=req_node)
        return spec, request

    def _reserve_volumes(self, ctx: Any, uuid: str, bdms: list[dict[str, Any]]) -> None:
        """Reserve the existing volumes a boot names (all or none)."""
        done: list[str] = []
        store = block_devices.BlockDevices(self.m)
        try:
            for bdm in bdms:
                if bdm.get("volume_id") and not bdm.get("attachment_id"):
                    aid = self.volumes.reserve(ctx, bdm["volume_id"], uuid)
                    done.append(aid)
                    store.update(uuid, bdm["volume_id"], attachment_id=aid)
        except BaseException:
            for aid in done:
                self.volumes.release(aid)
            raise

    def _release_reserved(self, uuid: str) -> None:
        inst = self.m.get_instance(None, uuid)
        for bdm in block_devices.of(inst):
            if bdm.get("attachment_id"):
                self.volumes.release(bdm["attachment_id"])

    def _plan_network(self, req: ApiRequest, srv: dict[str, Any], spec: dict[str, Any],
                      count: int) -> tuple[list[dict[str, Any]], list[str] | None]:
        """Validate ``networks``/``security_groups`` with the network service (Nova's
        400/409 rules, see ``compute/network.py``); records the user's ports to keep."""
        assert self.network is not None
        sm = spec["system_metadata"]
        plan = self.network.plan_networks(req.ctx, srv.get("networks"), count)
        for entry in plan:
            if entry.get("external"):
                external_attach(req, entry["network_id"])
        names = sm["security_groups"]
        sg_ids = None
        if plan or srv.get("security_groups") is not None:
            sg_ids = self.network.security_group_ids(req.ctx, names or ["default"])
        sm["preserve_ports"] = [e["port_id"] for e in plan if e.get("port_id")]
        sm["port_count"] = len(plan)
        return plan, sg_ids

    def _allocate_all(self, ctx: Any, insts: list[InstanceDict], plan: list[dict[str, Any]],
                      sg_ids: list[str] | None) -> None:
        """Ports for every new instance, all or nothing."""
        assert self.network is not None
        done: list[str] = []
        try:
            for inst in insts:
                self.network.allocate(ctx, inst["uuid"], plan, sg_ids)
                done.append(inst["uuid"])
        except BaseException:
            preserve = [e["port_id"] for e in plan if e.get("port_id")]
            for uuid in done:
                try:
                    self.network.deallocate(uuid, preserve)
                except Exception:  # noqa: BLE001 - keep rolling back, then re-raise
                    LOG.exception("could not release the ports of %s", uuid)
            raise

