"""Compute API: the server actions that move or remake a guest: resize (with confirm and
revert), cold and live migration, rebuild (also of a volume-backed server) and shelve,
offload and unshelve. Found by the action dispatcher (``api_actions.py``) among its
providers."""

from __future__ import annotations

import logging
from typing import Any

from starlette.responses import Response

from onestack.api.app import ApiRequest, FastJSON
from onestack.bus.base import BusError, RemoteError
from onestack.common.context import RequestContext
from onestack.common.errors import APIError, BadRequest, Conflict, NotFound, ValidationError
from onestack.compute import block_devices, schemas, states
from onestack.compute.api_actions import admin_password
from onestack.compute.manager import InstanceDict
from onestack.compute.microversions import APIVersion, v_ge, ver
from onestack.compute.resource_base import ResourceHandler, tgt

LOG = logging.getLogger(__name__)


class ServerMoves(ResourceHandler):
    """Resize, migrate, live-migrate, rebuild and shelve actions."""

    async def a_resize(self, req: ApiRequest, inst: InstanceDict, args: Any) -> None:
        if not isinstance(args, dict) or "flavorRef" not in args:
            raise ValidationError("Invalid input for field/attribute resize.")
        fid = schemas.ref_id(args["flavorRef"], "flavorRef")
        try:
            flavor = await req.run(self.m.get_flavor, req.ctx, fid)
        except NotFound:
            raise BadRequest(f"Flavor {fid} could not be found.") from None
        if flavor["id"] == inst["flavor"]["id"]:
            raise BadRequest("When resizing, instances must change flavor!")
        # A volume-backed server's root disk is its volume: the flavor's disk size does not
        # apply to it (Nova).
        if block_devices.root(inst) is None:
            if flavor["root_gb"] == 0 and inst["flavor"]["root_gb"] != 0:
                raise BadRequest("Resize to zero disk flavor is not allowed.")
            if flavor["root_gb"] < inst["flavor"]["root_gb"]:
                raise BadRequest("Resize error: Unable to resize disk down.")
        used = await req.run(self.m.quota_usage, inst["project_id"])
        limits = await req.run(self.m.quota_limits, inst["project_id"])
        from onestack.compute import quotas

        quotas.check(limits, used, {
            "cores": max(0, flavor["vcpus"] - inst["flavor"]["vcpus"]),
            "ram": max(0, flavor["memory_mb"] - inst["flavor"]["memory_mb"])})
        if args.get("OS-DCF:diskConfig") not in (None, "AUTO", "MANUAL"):
            raise ValidationError("Invalid input for field/attribute OS-DCF:diskConfig.")
        await self._move(req, inst, "resize", flavor)
        await self.api.set_disk_config(req, inst, args)

    async def a_migrate(self, req: ApiRequest, inst: InstanceDict, args: Any) -> None:
        host = None
        # Nova validates the body from 2.56 only (``null`` or an object with an optional
        # host); before, whatever the action carries is ignored (Tempest sends ``{}``).
        if args is not None and ver(req) >= "2.56":
            if not isinstance(args, dict):
                raise ValidationError(f"Invalid input for field/attribute migrate. "
                                      f"Value: {args}. {args!r} is not of type 'object', "
                                      f"'null'")
            schemas.only(args, {"host"}, "migrate")
            host = schemas.host_or_null(args.get("host"))
        if host is not None:
            req.enforce("os_compute_api:os-migrate-server:migrate:host",
                        tgt(req, inst["project_id"]))
        await self._move(req, inst, "migrate", inst["flavor"], host)

    async def _move(self, req: ApiRequest, inst: InstanceDict, action: str,
                    flavor: dict[str, Any], host: str | None = None) -> None:
        sm = dict(inst["system_metadata"], old_vm_state=inst["vm_state"])
        inst = await req.run(self.m.begin_task, req.ctx, inst["uuid"], action, "resize_prep",
                             None, (None,), True, None,
                             {"old_flavor": inst["flavor"], "new_flavor": flavor,
                              "system_metadata": sm})
        mig = await req.run(self.m.create_migration, inst, None, None,
                            "resize" if action == "resize" else "migration",
                            flavor.get("internal_id"))
        ignore = [] if action == "resize" else [inst["host"]]
        try:
            dest = await self.bus.call("scheduler", "select_destination",
                                       instance_uuid=inst["uuid"], consumer=mig["uuid"],
                                       flavor=flavor,
                                       request={"host": host,
                                                "availability_zone": inst["availability_zone"]},
                                       ignore_hosts=ignore)
        except (RemoteError, BusError) as exc:
            await req.run(self.m.set_migration, mig["uuid"], status="error")
            await req.run(self.m.finish_task, inst["uuid"], "resize_prep", None,
                          task_state=None, old_flavor=None, new_flavor=None)
            msg = exc.message if isinstance(exc, RemoteError) else str(exc)
            raise BadRequest(f"No valid host was found. {msg}") from None
        await req.run(self.m.set_migration, mig["uuid"], dest_compute=dest["host"],
                      dest_node=dest["node"])
        await self.api.cast(inst, "resize_instance", instance_uuid=inst["uuid"],
                         migration_uuid=mig["uuid"], dest_host=dest["host"],
                         dest_node=dest["node"], new_flavor=flavor)

    async def _end_resize(self, req: ApiRequest, inst: InstanceDict, action: str, task: str,
                          status: str) -> tuple[InstanceDict, dict[str, Any]]:
        """Begin ``action`` (confirmResize, revertResize) of a resized server as ``task``, its
        finished migration going to ``status`` (409 when the server is not resized); the
        server and the migration."""
        mig = await req.run(self.m.latest_migration, inst["uuid"])
        if inst["vm_state"] != states.RESIZED or mig is None or mig["status"] != "finished":
            raise Conflict(f"Cannot '{action}' instance {inst['uuid']} while it is in "
                           f"vm_state {inst['vm_state']}")
        inst = await req.run(self.m.begin_task, req.ctx, inst["uuid"], action, task)
        await req.run(self.m.set_migration, mig["uuid"], status=status)
        return inst, mig

    async def a_confirm_resize(self, req: ApiRequest, inst: InstanceDict,
                               args: Any) -> Response:
        inst, mig = await self._end_resize(req, inst, "confirmResize", "resize_confirming",
                                           "confirming")
        await self.api.cast(inst, "confirm_resize", instance_uuid=inst["uuid"],
                         migration_uuid=mig["uuid"], source_host=mig["source_compute"])
        return Response(status_code=204)

    async def a_revert_resize(self, req: ApiRequest, inst: InstanceDict, args: Any) -> None:
        inst, mig = await self._end_resize(req, inst, "revertResize", "resize_reverting",
                                           "reverting")
        await self.api.cast(inst, "revert_resize", instance_uuid=inst["uuid"],
                         migration_uuid=mig["uuid"], source_host=mig["source_compute"],
                         source_node=mig["source_node"])

    async def a_live_migrate(self, req: ApiRequest, inst: InstanceDict, args: Any) -> None:
        # Validated before any state change: a bad body leaves the server as it was.
        host = schemas.live_migrate(args, ver(req))
        if host is not None:
            req.enforce("os_compute_api:os-migrate-server:migrate_live:host",
                        tgt(req, inst["project_id"]))
        inst = await req.run(self.m.begin_task, req.ctx, inst["uuid"], "os-migrateLive",
                             "migrating", None, (None,), True, "live-migration")
        mig = await req.run(self.m.create_migration, inst, host, None, "live-migration")
        try:
            dest = await self.bus.call("scheduler", "select_destination",
                                       instance_uuid=inst["uuid"], consumer=mig["uuid"],
                                       flavor=inst["flavor"], request={"host": host},
                                       ignore_hosts=[inst["host"]])
        except (RemoteError, BusError):
            await req.run(self.m.set_migration, mig["uuid"], status="error")
            await req.run(self.m.finish_task, inst["uuid"], "migrating", None,
                          task_state=None)
            if host:
                raise BadRequest(f"Compute service of {host} is unavailable at this "
                                 "time.") from None
            raise BadRequest("No valid host was found.") from None
        await req.run(self.m.set_migration, mig["uuid"], dest_compute=dest["host"],
                      dest_node=dest["node"])
        await self.api.cast(inst, "live_migrate", instance_uuid=inst["uuid"],
                         migration_uuid=mig["uuid"], dest_host=dest["host"],
                         dest_node=dest["node"])

    async def a_rebuild(self, req: ApiRequest, inst: InstanceDict, args: Any) -> Response:
        v = ver(req)
        if not isinstance(args, dict) or "imageRef" not in args:
            raise ValidationError("Invalid input for field/attribute rebuild.")
        image_id = schemas.ref_id(args["imageRef"], "imageRef")
        if not schemas.is_uuid(image_id):
            raise BadRequest(f"Invalid imageRef provided. Image {image_id} could not be "
                             "found.")
        image = await req.run(self.api.image_info, req, image_id)
        extra: dict[str, Any] = {"image_ref": image_id}
        reimage = await self._volume_backed_rebuild(req, inst, image, v)
        if block_devices.root(inst) is not None:
            # An empty image_ref marks a volume-backed server (Nova keeps it so).
            extra.pop("image_ref")
        if "name" in args:
            extra["display_name"] = schemas.name(args["name"])
        if "metadata" in args:
            extra["meta"] = schemas.metadata(args["metadata"])
        if "description" in args and v >= "2.19":
            extra["display_description"] = args["description"]
        if "key_name" in args and v >= "2.54":
            if args["key_name"] is None:
                extra.update(key_name=None, key_data=None)
            else:
                try:
                    kp = await req.run(self.m.get_keypair, req.ctx.user_id or "",
                                       args["key_name"])
                except NotFound:
                    raise BadRequest("Invalid key_name provided.") from None
                extra.update(key_name=kp["name"], key_data=kp["public_key"])
        if "user_data" in args and v >= "2.57":
            extra["user_data"] = (schemas.user_data(args["user_data"])
                                  if args["user_data"] is not None else None)
        for field, col, fn in (("accessIPv4", "access_ip_v4", schemas.ipv4),
                               ("accessIPv6", "access_ip_v6", schemas.ipv6)):
            if args.get(field):
                extra[col] = fn(args[field], field)
        sm = dict(inst["system_metadata"], image_properties=image["properties"])
        if reimage:
            sm["boot_image"] = image_id
        if "OS-DCF:diskConfig" in args:
            if args["OS-DCF:diskConfig"] not in ("AUTO", "MANUAL"):
                raise ValidationError("Invalid input for field/attribute OS-DCF:diskConfig.")
            sm["disk_config"] = args["OS-DCF:diskConfig"]
        extra["system_metadata"] = sm
        password = args.get("adminPass") or admin_password()
        inst = await req.run(self.m.begin_task, req.ctx, inst["uuid"], "rebuild",
                             "rebuilding", None, (None,), True, None, extra)
        await self.api.cast(inst, "rebuild_instance", instance_uuid=inst["uuid"],
                         image_ref=image_id, reimage_volume=reimage)
        doc = await self.api.action_view(req, inst, rebuild=True)
        doc["adminPass"] = password
        return FastJSON({"server": doc}, status_code=202)

    async def _volume_backed_rebuild(self, req: ApiRequest, inst: InstanceDict,
                                     image: dict[str, Any], v: APIVersion) -> str | None:
        """Nova's rules for rebuilding a volume-backed server: the image in its root volume
        again (a plain rebuild), or, from 2.93, a new image written into the root volume
        (returns that volume's id: the agent re-images it); otherwise 400."""
        bdm = block_devices.root(inst)
        if bdm is None or self.volumes is None:
            return None
        vol = await req.run(self.volumes.get, RequestContext.admin(), bdm["volume_id"])
        if vol.get("image_id") == image["id"]:
            return None
        if v < "2.93":
            raise BadRequest(f"Image {image['id']} is unacceptable: Unable to rebuild with a "
                             "different image for a volume-backed server.")
        if len(vol.get("attachments") or []) > 1:
            raise Conflict("Cannot re-image a volume which is attached to more than one "
                           "server.")
        need = max(int(image.get("min_disk") or 0),
                   -(-int(image.get("size") or 0) // (1 << 30)))
        if need > int(vol["size"]):
            raise BadRequest(f"Volume is smaller than the minimum size specified in image "
                             f"metadata. Volume size is {int(vol['size']) << 30} bytes, "
                             f"minimum size is {need << 30} bytes.")
        return str(vol["id"])

    async def a_shelve(self, req: ApiRequest, inst: InstanceDict, args: Any) -> None:
        image_id = None
        # A volume-backed server keeps its disks in its volumes: no snapshot image (Nova).
        if self.images is not None and block_devices.root(inst) is None:
            image_id = await req.run(self.new_image, req, inst,
                                     f"{inst['name']}-shelved", {}, "snapshot")
        sm = dict(inst["system_metadata"], shelved_image_id=image_id)
        try:
            inst = await req.run(self.m.begin_task, req.ctx, inst["uuid"], "shelve",
                                 "shelving", None, (None,), True, None,
                                 {"system_metadata": sm})
        except APIError:
            if image_id:
                await req.run(self.drop_image, image_id)
            raise
        await self.api.cast(inst, "shelve_instance", instance_uuid=inst["uuid"],
                            image_id=image_id, offload=True)

    async def a_shelve_offload(self, req: ApiRequest, inst: InstanceDict, args: Any) -> None:
        await self.simple(req, inst, "shelveOffload", "shelving_offloading",
                           "shelve_offload_instance")

    async def a_unshelve(self, req: ApiRequest, inst: InstanceDict, args: Any) -> None:
        az = None
        host = None
        if isinstance(args, dict) and v_ge(req, "2.77"):
            az = args.get("availability_zone")
            if v_ge(req, "2.91") and args.get("host"):
                req.enforce("os_compute_api:os-shelve:unshelve_to_host",
                            tgt(req, inst["project_id"]))
                host = args["host"]
                if inst["vm_state"] != states.SHELVED_OFFLOADED:
                    raise Conflict(f"Cannot 'unshelve' instance {inst['uuid']} to a host "
                                   f"while it is in vm_state {inst['vm_state']}")
        inst = await req.run(self.m.begin_task, req.ctx, inst["uuid"], "unshelve",
                             "unshelving")
        if inst["vm_state"] == states.SHELVED and inst["host"]:
            await self.api.cast(inst, "unshelve_instance", instance_uuid=inst["uuid"],
                             node=inst["node"])
            return
        try:
            dest = await self.bus.call("scheduler", "select_destination",
                                       instance_uuid=inst["uuid"], consumer=inst["uuid"],
                                       flavor=inst["flavor"],
                                       request={"availability_zone": az
                                                or inst["availability_zone"], "host": host},
                                       ignore_hosts=[])
        except (RemoteError, BusError):
            await req.run(self.m.finish_task, inst["uuid"], "unshelving", None,
                          task_state=None)
            raise BadRequest("No valid host was found.") from None
        await req.run(self.m.set_instance, inst["uuid"], host=dest["host"], node=dest["node"])
        # The guest comes back from the snapshot taken at shelve time (Nova bug 1257594);
        # the agent deletes that image once the guest runs.
        await self.bus.cast(f"compute.{dest['host']}", "unshelve_instance",
                            instance_uuid=inst["uuid"], node=dest["node"],
                            image_ref=inst["system_metadata"].get("shelved_image_id"))

