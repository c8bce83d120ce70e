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
from onestack.compute.network import nic_order
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
        """What a create request means, once ``server_schemas`` passed its shape for ``v``
        (types, sizes and which fields exist at which microversion): each part checked
        against the cloud, in Nova's order. Returns (instance spec, boot request)."""
        ctx = req.ctx
        name = schemas.name(srv["name"], "name")
        flavor = self._flavor(req, srv["flavorRef"])
        disks, image_id, image = self._root_disk(req, srv, flavor)
        networks = srv.get("networks")
        requested_networks = self._requested_networks(networks)
        key_name = srv.get("key_name")
        key_data = None
        if key_name is not None:
            try:
                key_data = self.m.get_keypair(ctx.user_id or "", key_name)["public_key"]
            except NotFound:
                raise BadRequest("Invalid key_name provided.") from None
        # The metadata_items quota is checked with the others when the rows are written.
        meta = schemas.metadata(srv.get("metadata", {}))
        if srv.get("personality") is not None:
            self._check_personality(req, srv["personality"])
        user_data = srv.get("user_data")
        if user_data is not None:
            user_data = schemas.user_data(user_data)
        az = srv.get("availability_zone")
        zone = self._zone(req, az) if az is not None else None
        req_host, req_node = srv.get("host"), srv.get("hypervisor_hostname")
        if (req_host or req_node) and v >= "2.74":
            self._check_destination(req, req_host, req_node)
        sg_names = self._security_groups(req, srv.get("security_groups"), networks)
        group = hints.get("group") if hints else None
        if group is not None:
            if not schemas.is_uuid(group):
                raise ValidationError(f"Invalid input for field/attribute group. Value: "
                                      f"{group}.")
            try:
                self.m.get_group(ctx, group)
            except NotFound:
                raise BadRequest(f"Instance group {group} could not be found.") from None
        tags = schemas.tags(srv["tags"]) if srv.get("tags") is not None else []
        ipv4, ipv6 = srv.get("accessIPv4"), srv.get("accessIPv6")
        if ipv4:
            ipv4 = schemas.ipv4(ipv4, "accessIPv4")
        if ipv6:
            ipv6 = schemas.ipv6(ipv6, "accessIPv6")
        config_drive = srv.get("config_drive")
        spec = {"name": name, "flavor": flavor,
                "image_ref": image_id, "key_name": key_name, "key_data": key_data,
                "user_data": user_data, "metadata": meta, "availability_zone": zone,
                "config_drive": bool(config_drive) and config_drive not in ("", "False"),
                "tags": tags, "access_ip_v4": ipv4 or None, "access_ip_v6": ipv6 or None,
                "description": srv.get("description"), "hostname": srv.get("hostname"),
                "group": group,
                "system_metadata": {"image_properties": image["properties"],
                                    "security_groups": sg_names,
                                    "disk_config": srv.get("OS-DCF:diskConfig", "MANUAL"),
                                    "requested_networks": requested_networks,
                                    "networks": [], "preserve_ports": [],
                                    "requested_az": zone,
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

    def _flavor(self, req: ApiRequest, flavor_ref: Any) -> dict[str, Any]:
        """The flavor a boot names (400 when unknown or disabled)."""
        fid = schemas.ref_id(flavor_ref, "flavorRef")
        try:
            flavor = self.m.get_flavor(req.ctx, fid)
        except NotFound:
            raise BadRequest(f"Flavor {fid} could not be found.") from None
        if flavor["disabled"]:
            raise BadRequest(f"Flavor {fid} could not be found.")
        return flavor

    def _root_disk(self, req: ApiRequest, srv: dict[str, Any], flavor: dict[str, Any]
                   ) -> tuple[boot_volumes.BootDisks, str, dict[str, Any]]:
        """The boot's disks (block device mappings), its image id ("" for a volume-backed
        server) and the image's facts; the image must fit the flavor."""
        seen: dict[str, dict[str, Any]] = {}  # one image lookup per image and request

        def image_info(iid: str) -> dict[str, Any]:
            if iid not in seen:
                seen[iid] = self.api.image_info(req, iid)
            return dict(seen[iid])
        disks = boot_volumes.parse(req.ctx, srv, srv.get("imageRef"), self.volumes,
                                   image_info,
                                   schemas.integer(srv.get("max_count", 1), "max_count", 1))
        if disks.volume_backed:
            return disks, "", {"properties": disks.root_properties or {}}
        image_id = schemas.ref_id(disks.image_ref, "imageRef")
        if not schemas.is_uuid(image_id):
            raise BadRequest(f"Invalid imageRef provided. Image {image_id} could not be found.")
        image = image_info(image_id)
        if image["min_ram"] and flavor["memory_mb"] < image["min_ram"]:
            raise BadRequest("Flavor's memory is too small for requested image.")
        root_gb = flavor["root_gb"]
        if root_gb and (image["min_disk"] and root_gb < image["min_disk"]
                        or image["size"] > root_gb * 1024 ** 3):
            raise BadRequest("Flavor's disk is too small for requested image.")
        if not root_gb and not req.allowed("os_compute_api:servers:create:zero_disk_flavor",
                                           {"project_id": req.ctx.project_id or ""}):
            raise Forbidden("Only volume-backed servers are allowed for flavors with zero "
                            "disk.")
        return disks, image_id, image

    def _requested_networks(self, networks: Any) -> list[dict[str, Any]]:
        """The networks and ports a boot asks for (``"none"``/``"auto"``: none named);
        without a network service none can be found."""
        if not isinstance(networks, list):
            return []
        for net in networks:
            if self.network is None:
                if net.get("port"):
                    raise BadRequest(f"Port {net['port']} could not be found.")
                raise BadRequest(f"Network {net.get('uuid')} could not be found.")
        return list(networks)

    def _check_personality(self, req: ApiRequest, files: list[dict[str, Any]]) -> None:
        """Injected files (before 2.57) within the project's limits, their contents base64."""
        ctx = req.ctx
        limits = self.m.quota_limits(ctx.project_id or "", ctx.user_id)
        if 0 <= limits["injected_files"] < len(files):
            raise Forbidden("Personality file limit exceeded")
        for f in files:
            if "path" not in f:
                raise ValidationError("Invalid input for field/attribute personality.")
            if len(str(f["path"])) > limits["injected_file_path_bytes"] >= 0:
                raise Forbidden("Personality file path exceeds maximum "
                                f"{limits['injected_file_path_bytes']}")
            try:
                content = base64.b64decode(f.get("contents", ""), validate=True)
            except Exception:  # noqa: BLE001
                raise BadRequest(f"Personality content for {f['path']} cannot be "
                                 "decoded") from None
            if len(content) > limits["injected_file_content_bytes"] >= 0:
                raise Forbidden("Personality file content exceeds maximum "
                                f"{limits['injected_file_content_bytes']}")

    def _zone(self, req: ApiRequest, az: str) -> str | None:
        """The zone of ``zone[:host[:node]]`` (None when empty; a host needs the forced-host
        policy); 400 for a zone this cloud does not have."""
        zone = az.split(":", 1)[0]
        if ":" in az:
            req.enforce("os_compute_api:servers:create:forced_host", tgt(req))
        if zone:
            known = {z["name"] for z in self.m.availability_zones() if z["name"] != "internal"}
            if zone not in known:
                raise BadRequest("The requested availability zone is not available")
        return zone or None

    def _check_destination(self, req: ApiRequest, host: str | None, node: str | None) -> None:
        """A requested host or node (2.74): allowed by policy, and known."""
        req.enforce("os_compute_api:servers:create:requested_destination", tgt(req))
        if host and not any(n["host"] == host for n in self.m.list_nodes()):
            raise BadRequest(f"Compute host {host} could not be found.")
        if node and self.m.node_by_name(node) is None:
            raise BadRequest(f"Compute host {node} could not be found.")

    def _security_groups(self, req: ApiRequest, groups: list[dict[str, Any]] | None,
                         networks: Any) -> list[str]:
        """The security group names of a boot (``default`` when it names none, none for
        ``networks: "none"``), each once; only ``default`` without a network service."""
        if groups is None:
            return [] if networks == "none" else ["default"]
        names: list[str] = []
        for sg in groups:
            if not isinstance(sg.get("name"), str):
                raise ValidationError("Invalid input for field/attribute security_groups.")
            if sg["name"] != "default" and self.network is None:
                raise BadRequest(f"Security group {sg['name']} not found for project "
                                 f"{req.ctx.project_id}.")
            if sg["name"] not in names:
                names.append(sg["name"])
        return names

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
        sm["nic_order"] = nic_order(plan)
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

