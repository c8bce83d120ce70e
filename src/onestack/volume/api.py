"""Block-storage API routes (Cinder v3, microversions 3.0–3.71): parse -> manager -> view.

Creates, deletes and extends answer 202 at once; the storage work runs in a worker thread
afterwards (``VolumeManager.finish_*``), as Cinder's volume service does it after the API.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from starlette.responses import Response

from onestack.api.app import ApiRequest, FastJSON, Service, route
from onestack.api.policy import Policy
from onestack.api.versions import healthcheck
from onestack.common.errors import APIError, BadRequest, NotFound
from onestack.common.pagination import parse_limit
from onestack.db.volume import Snapshot, Volume
from onestack.volume import views
from onestack.volume.manager import VOLUME_STATUSES, VolumeManager
from onestack.volume.microversion import MAX_VERSION, MIN_VERSION, url_project, version_of
from onestack.volume.policies import RULES

LOG = logging.getLogger(__name__)
FAULT_KINDS = {400: "badRequest", 401: "unauthorized", 403: "forbidden", 404: "itemNotFound",
               405: "badMethod", 409: "conflictingRequest", 413: "overLimit",
               415: "badMediaType"}
_MAX_STR = 255
VOLUME_SORT_KEYS = ("created_at", "updated_at", "id", "name", "size", "status",
                    "availability_zone", "bootable")


def cinder_fault(err: APIError) -> tuple[dict[str, Any], str]:
    """Cinder's ``{"itemNotFound": {"code": 404, "message": ...}}``."""
    kind = FAULT_KINDS.get(err.status, "computeFault")
    return {kind: {"code": err.status, "message": err.message}}, "application/json"


def build_policy(policy_file: str | None) -> Policy:
    return Policy(RULES, policy_file, denied="Policy doesn't allow {action} to be performed.")


# ---------------------------------------------------------------------- input checks
def _obj(body: Any, key: str) -> dict[str, Any]:
    if not isinstance(body, dict) or not isinstance(body.get(key), dict):
        raise BadRequest(f"Missing required element '{key}' in request body.")
    return body[key]


def _text(value: Any, field: str, nullable: bool = True) -> str | None:
    if value is None and nullable:
        return None
    if not isinstance(value, str):
        raise BadRequest(f"Invalid input for field/attribute {field}. Value: {value}. "
                         f"{value!r} is not of type 'string'")
    if len(value) > _MAX_STR:
        raise BadRequest(f"Invalid input for field/attribute {field}. Value: {value}. "
                         f"'{value[:40]}...' is too long")
    return value


def _size(value: Any, field: str = "size") -> int:
    if isinstance(value, bool):
        raise BadRequest(f"Invalid input for field/attribute {field}. Value: {value}.")
    try:
        n = int(str(value).strip())
    except (TypeError, ValueError):
        raise BadRequest(f"Invalid input for field/attribute {field}. Value: {value}. "
                         f"{value!r} is not a valid integer") from None
    if n < 1 or n > 2**31 - 1:
        raise BadRequest(f"Invalid input for field/attribute {field}. Value: {value}. "
                         f"{value} must be an integer and greater than 0.")
    return n


def _metadata(value: Any, field: str = "metadata") -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > 128:
        raise BadRequest(f"Invalid input for field/attribute {field}. Value: {value}.")
    out = {}
    for k, v in value.items():
        if not isinstance(k, str) or not k or len(k) > _MAX_STR:
            raise BadRequest(f"Invalid input for field/attribute {field}: metadata keys are "
                             "strings of 1-255 characters.")
        if not isinstance(v, str) or len(v) > _MAX_STR:
            raise BadRequest(f"Invalid input for field/attribute {field}: metadata values "
                             "are strings of at most 255 characters.")
        out[k] = v
    return out


def _bool(value: Any, field: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes",
                                                             "no", "on", "off", "y", "n"):
        return value.strip().lower() in ("true", "1", "yes", "on", "y")
    raise BadRequest(f"Invalid input for field/attribute {field}. Value: {value}. "
                     f"{value!r} is not a valid boolean")


class VolumeAPI:
    """Builds the volume service: routes bound to a manager."""

    def __init__(self, manager: VolumeManager, policy: Policy, auth_uri: str,
                 max_limit: int = 1000) -> None:
        self.m = manager
        self.max_limit = max_limit
        self.service = Service(name="volume", routes=[], fault=cinder_fault, policy=policy,
                               auth_uri=auth_uri, request_check=self._check_project,
                               service_type="block-storage")
        self._tasks: set[asyncio.Future[Any]] = set()
        self._add_routes()

    @staticmethod
    def _check_project(req: ApiRequest) -> None:
        project = url_project(req.request.scope)
        if project is not None and project != req.ctx.project_id:
            raise BadRequest(f"Malformed request url: URL's project_id '{project}' doesn't "
                             f"match Context's project_id '{req.ctx.project_id}'")

    def _r(self, path: str, handler: Callable[..., Any], methods: list[str],
           public: bool = False) -> None:
        self.service.routes.append(route(self.service, path, handler, methods, public))

    def _add_routes(self) -> None:
        r = self._r
        r("/", self.versions, ["GET"], public=True)
        r("/healthcheck", healthcheck, ["GET", "HEAD"], public=True)
        r("/v3", self.version, ["GET"], public=True)
        r("/v3/", self.version, ["GET"], public=True)
        r("/v3/volumes", self.list_volumes, ["GET"])
        r("/v3/volumes/detail", self.list_volumes_detail, ["GET"])
        r("/v3/volumes", self.create_volume, ["POST"])
        r("/v3/volumes/{id}", self.show_volume, ["GET"])
        r("/v3/volumes/{id}", self.update_volume, ["PUT"])
        r("/v3/volumes/{id}", self.delete_volume, ["DELETE"])
        r("/v3/volumes/{id}/action", self.volume_action, ["POST"])
        r("/v3/volumes/{id}/metadata", self.volume_metadata, ["GET"])
        r("/v3/volumes/{id}/metadata", self.add_volume_metadata, ["POST"])
        r("/v3/volumes/{id}/metadata", self.replace_volume_metadata, ["PUT"])
        r("/v3/volumes/{id}/metadata/{key}", self.volume_metadata_item, ["GET"])
        r("/v3/volumes/{id}/metadata/{key}", self.put_volume_metadata_item, ["PUT"])
        r("/v3/volumes/{id}/metadata/{key}", self.delete_volume_metadata_item, ["DELETE"])
        r("/v3/snapshots", self.list_snapshots, ["GET"])
        r("/v3/snapshots/detail", self.list_snapshots, ["GET"])
        r("/v3/snapshots", self.create_snapshot, ["POST"])
        r("/v3/snapshots/{id}", self.show_snapshot, ["GET"])
        r("/v3/snapshots/{id}", self.update_snapshot, ["PUT"])
        r("/v3/snapshots/{id}", self.delete_snapshot, ["DELETE"])
        r("/v3/snapshots/{id}/action", self.snapshot_action, ["POST"])
        r("/v3/snapshots/{id}/metadata", self.snapshot_metadata, ["GET"])
        r("/v3/snapshots/{id}/metadata", self.add_snapshot_metadata, ["POST"])
        r("/v3/snapshots/{id}/metadata", self.replace_snapshot_metadata, ["PUT"])
        r("/v3/snapshots/{id}/metadata/{key}", self.snapshot_metadata_item, ["GET"])
        r("/v3/snapshots/{id}/metadata/{key}", self.put_snapshot_metadata_item, ["PUT"])
        r("/v3/snapshots/{id}/metadata/{key}", self.delete_snapshot_metadata_item,
          ["DELETE"])
        r("/v3/types", self.list_types, ["GET"])
        r("/v3/types", self.create_type, ["POST"])
        r("/v3/types/{id}", self.show_type, ["GET"])
        r("/v3/types/{id}", self.update_type, ["PUT"])
        r("/v3/types/{id}", self.delete_type, ["DELETE"])
        r("/v3/types/{id}/action", self.type_action, ["POST"])
        r("/v3/types/{id}/os-volume-type-access", self.type_access, ["GET"])
        r("/v3/types/{id}/extra_specs", self.extra_specs, ["GET"])
        r("/v3/types/{id}/extra_specs", self.add_extra_specs, ["POST"])
        r("/v3/types/{id}/extra_specs/{key}", self.extra_spec, ["GET"])
        r("/v3/types/{id}/extra_specs/{key}", self.put_extra_spec, ["PUT"])
        r("/v3/types/{id}/extra_specs/{key}", self.delete_extra_spec, ["DELETE"])
        r("/v3/os-availability-zone", self.availability_zones, ["GET"])
        r("/v3/limits", self.limits, ["GET"])
        r("/v3/os-quota-sets/{project_id}", self.show_quotas, ["GET"])
        r("/v3/os-quota-sets/{project_id}/defaults", self.default_quotas, ["GET"])
        r("/v3/os-quota-sets/{project_id}", self.update_quotas, ["PUT"])
        r("/v3/os-quota-sets/{project_id}", self.delete_quotas, ["DELETE"])
        r("/v3/extensions", self.extensions, ["GET"])
        r("/v3/os-services", self.services, ["GET"])
        r("/v3/scheduler-stats/get_pools", self.pools, ["GET"])

    # ------------------------------------------------------------------ background work
    def _later(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run the storage half of an operation in a worker thread, after the answer."""
        fut = asyncio.get_running_loop().run_in_executor(None, fn, *args)
        self._tasks.add(fut)

        def done(f: asyncio.Future[Any]) -> None:
            self._tasks.discard(f)
            if not f.cancelled() and f.exception() is not None:
                LOG.error("volume background work failed", exc_info=f.exception())
        fut.add_done_callback(done)

    async def drain(self) -> None:
        """Wait for the background work started so far (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # ------------------------------------------------------------------ versions
    @staticmethod
    def _version_doc(base: str) -> dict[str, Any]:
        return {"id": "v3.0", "status": "CURRENT", "version": MAX_VERSION,
                "min_version": MIN_VERSION, "updated": "2023-08-31T00:00:00Z",
                "links": [{"rel": "describedby", "type": "text/html",
                           "href": "https://docs.openstack.org/"},
                          {"rel": "self", "href": f"{base}/v3/"}],
                "media-types": [{"base": "application/json",
                                 "type": "application/vnd.openstack.volume+json;version=3"}]}

    async def versions(self, req: ApiRequest) -> Response:
        return FastJSON({"versions": [self._version_doc(req.base_url)]}, status_code=300)

    async def version(self, req: ApiRequest) -> dict[str, Any]:
        return {"versions": [self._version_doc(req.base_url)]}

    # ------------------------------------------------------------------ volumes
    def _all_projects(self, req: ApiRequest) -> bool:
        raw = req.query.get("all_tenants") or req.query.get("all_projects")
        if raw is None:
            return False
        want = _bool(raw, "all_tenants") if raw != "" else True
        if want:
            req.enforce("volume:get_all_tenants", {"project_id": req.ctx.project_id or ""})
        return want

    def _filtered(self, req: ApiRequest, rows: list[Volume]) -> list[Volume]:
        q = req.query
        if "name" in q:
            rows = [v for v in rows if v.name == q["name"]]
        if "status" in q:
            rows = [v for v in rows if v.status == q["status"]]
        if "availability_zone" in q:
            rows = [v for v in rows if v.availability_zone == q["availability_zone"]]
        if "bootable" in q:
            want = _bool(q["bootable"], "bootable")
            rows = [v for v in rows if v.bootable == want]
        if "metadata" in q:
            import ast
            import json
            try:
                meta = json.loads(q["metadata"])
            except ValueError:
                try:
                    meta = ast.literal_eval(q["metadata"])
                except (ValueError, SyntaxError):
                    raise BadRequest("Invalid filter: metadata must be a JSON object.") \
                        from None
            if not isinstance(meta, dict):
                raise BadRequest("Invalid filter: metadata must be a JSON object.")
            rows = [v for v in rows if all((v.metadata_ or {}).get(k) == val
                                           for k, val in meta.items())]
        return self._sorted_page(req, rows, VOLUME_SORT_KEYS)

    def _sorted_page(self, req: ApiRequest, rows: list[Any], keys: tuple[str, ...]
                     ) -> list[Any]:
        sort: list[tuple[str, str]] = []
        if "sort" in req.query:
            for part in req.query["sort"].split(","):
                key, _, direction = part.strip().partition(":")
                sort.append((key, direction or "desc"))
        elif "sort_key" in req.query:
            sort.append((req.query["sort_key"], req.query.get("sort_dir", "desc")))
        for key, direction in reversed(sort):
            if key not in keys or direction not in ("asc", "desc"):
                raise BadRequest(f"Invalid input received: Invalid sort key or direction: "
                                 f"{key}:{direction}")
            rows.sort(key=lambda r, k=key: (getattr(r, k) is None, getattr(r, k) or ""),
                      reverse=direction == "desc")
        marker = req.query.get("marker")
        if marker:
            idx = next((i for i, r in enumerate(rows) if r.id == marker), None)
            if idx is None:
                raise NotFound(f"Marker {marker} could not be found.")
            rows = rows[idx + 1:]
        if "limit" in req.query:
            rows = rows[:parse_limit(req.query, self.max_limit, self.max_limit)]
        return rows

    async def _volume_rows(self, req: ApiRequest) -> list[Volume]:
        req.enforce("volume:get_all", {"project_id": req.ctx.project_id or ""})
        all_projects = self._all_projects(req)
        rows = await req.run(self.m.list_volumes, req.ctx, all_projects,
                             req.query.get("project_id"))
        return self._filtered(req, rows)

    def _with_count(self, req: ApiRequest, doc: dict[str, Any], n: int) -> dict[str, Any]:
        if version_of(req.request.scope) >= "3.45" and "with_count" in req.query and _bool(
                req.query["with_count"], "with_count"):
            doc["count"] = n
        return doc

    async def list_volumes(self, req: ApiRequest) -> dict[str, Any]:
        rows = await self._volume_rows(req)
        return self._with_count(req, {"volumes": [views.volume_summary(req.base_url, v)
                                                  for v in rows]}, len(rows))

    async def list_volumes_detail(self, req: ApiRequest) -> dict[str, Any]:
        rows = await self._volume_rows(req)
        names = await req.run(self.m.type_names)
        ver = version_of(req.request.scope)
        return self._with_count(req, {"volumes": [
            views.volume(req.base_url, v, req.ctx, ver, names) for v in rows]}, len(rows))

    async def _volume_doc(self, req: ApiRequest, v: Volume) -> dict[str, Any]:
        names = await req.run(self.m.type_names)
        return {"volume": views.volume(req.base_url, v, req.ctx,
                                       version_of(req.request.scope), names)}

    async def show_volume(self, req: ApiRequest) -> dict[str, Any]:
        v = await req.run(self.m.get_volume, req.ctx, req.param("id"))
        req.enforce("volume:get", {"project_id": v.project_id})
        return await self._volume_doc(req, v)

    async def create_volume(self, req: ApiRequest) -> Response:
        body = _obj(await req.json(), "volume")
        req.enforce("volume:create", {"project_id": req.ctx.project_id or ""})
        if body.get("imageRef") or body.get("backup_id"):
            raise BadRequest("Invalid input received: volumes from images and backups are "
                             "not supported by this cloud yet.")
        size = _size(body["size"]) if body.get("size") is not None else None
        if size is None and not (body.get("snapshot_id") or body.get("source_volid")):
            raise BadRequest("Invalid input for field/attribute size. Value: None. None is "
                             "not of type 'integer', 'string'")
        vtype = body.get("volume_type")
        v = await req.run(
            self.m.create_volume, req.ctx, size,
            _text(body.get("name", body.get("display_name")), "name"),
            _text(body.get("description", body.get("display_description")), "description"),
            _text(vtype, "volume_type"), _metadata(body.get("metadata")),
            _text(body.get("availability_zone"), "availability_zone"),
            _text(body.get("snapshot_id"), "snapshot_id"),
            _text(body.get("source_volid"), "source_volid"),
            _bool(body.get("multiattach", False), "multiattach"))
        self._later(self.m.finish_create, v.id)
        return FastJSON(await self._volume_doc(req, v), status_code=202)

    async def update_volume(self, req: ApiRequest) -> dict[str, Any]:
        body = _obj(await req.json(), "volume")
        changes: dict[str, Any] = {}
        for key, alias in (("name", "display_name"), ("description", "display_description")):
            if key in body or alias in body:
                changes[key] = _text(body.get(key, body.get(alias)), key)
        if "metadata" in body:
            changes["metadata"] = _metadata(body["metadata"])
        if not changes:
            raise BadRequest("Invalid input received: a volume update needs a name, a "
                             "description or metadata.")
        v = await req.run(self.m.update_volume, req.ctx, req.param("id"), changes)
        return await self._volume_doc(req, v)

    async def delete_volume(self, req: ApiRequest) -> Response:
        vid = req.param("id")
        cascade = _bool(req.query.get("cascade", "false"), "cascade")
        force = "force" in req.query and _bool(req.query["force"], "force")
        await req.run(self.m.begin_delete, req.ctx, vid, force, cascade)
        self._later(self.m.finish_delete, vid)
        return Response(status_code=202)

    async def volume_action(self, req: ApiRequest) -> Response:
        body = await req.json()
        if not isinstance(body, dict) or len(body) != 1:
            raise BadRequest("There is no such action: a volume action body names exactly "
                             "one action.")
        (action, arg), = body.items()
        vid = req.param("id")
        if action == "os-extend":
            new = _size(_obj(body, action).get("new_size"), "new_size")
            await req.run(self.m.begin_extend, req.ctx, vid, new)
            self._later(self.m.finish_extend, vid, new)
            return Response(status_code=202)
        if action == "os-set_bootable":
            flag = _bool(_obj(body, action).get("bootable"), "bootable")
            await req.run(self.m.volume_action, req.ctx, vid,
                          "volume_extension:volume_actions:set_bootable",
                          lambda v: setattr(v, "bootable", flag))
            return Response(status_code=200)
        if action == "os-update_readonly_flag":
            flag = _bool(_obj(body, action).get("readonly"), "readonly")

            def readonly(v: Volume) -> None:
                v.admin_metadata = {**(v.admin_metadata or {}),
                                    "readonly": "True" if flag else "False"}
                v.metadata_ = {**(v.metadata_ or {}), "readonly": "True" if flag else "False"}
            await req.run(self.m.volume_action, req.ctx, vid, "volume:update_readonly_flag",
                          readonly)
            return Response(status_code=202)
        if action == "os-reset_status":
            args = _obj(body, action)
            status = args.get("status")
            if status not in VOLUME_STATUSES:
                raise BadRequest(f"Invalid input received: '{status}' is not a valid "
                                 "volume status.")
            attach = args.get("attach_status")
            if attach is not None and attach not in ("attached", "detached"):
                raise BadRequest(f"Invalid input received: '{attach}' is not a valid "
                                 "attach status.")

            def reset(v: Volume) -> None:
                v.status = status
                if attach is not None:
                    v.attach_status = attach
            await req.run(self.m.volume_action, req.ctx, vid,
                          "volume_extension:volume_admin_actions:reset_status", reset)
            return Response(status_code=202)
        if action == "os-force_delete":
            await req.run(self.m.begin_delete, req.ctx, vid, True, True)
            self._later(self.m.finish_delete, vid)
            return Response(status_code=202)
        del arg
        raise BadRequest(f"There is no such action: {action}")

    # volume metadata
    async def volume_metadata(self, req: ApiRequest) -> dict[str, Any]:
        v = await req.run(self.m.get_volume, req.ctx, req.param("id"))
        req.enforce("volume:get_volume_metadata", {"project_id": v.project_id})
        return {"metadata": dict(v.metadata_ or {})}

    async def add_volume_metadata(self, req: ApiRequest) -> dict[str, Any]:
        meta = _metadata(_obj(await req.json(), "metadata"))
        return {"metadata": await req.run(self.m.set_volume_metadata, req.ctx,
                                          req.param("id"), meta, False)}

    async def replace_volume_metadata(self, req: ApiRequest) -> dict[str, Any]:
        meta = _metadata(_obj(await req.json(), "metadata"))
        return {"metadata": await req.run(self.m.set_volume_metadata, req.ctx,
                                          req.param("id"), meta, True)}

    async def volume_metadata_item(self, req: ApiRequest) -> dict[str, Any]:
        meta = (await self.volume_metadata(req))["metadata"]
        key = req.param("key")
        if key not in meta:
            raise NotFound(f"Volume {req.param('id')} has no metadata with key {key}.")
        return {"meta": {key: meta[key]}}

    async def put_volume_metadata_item(self, req: ApiRequest) -> dict[str, Any]:
        meta = _metadata(_obj(await req.json(), "meta"), "meta")
        key = req.param("key")
        if list(meta) != [key]:
            raise BadRequest("Request body and URI mismatch")
        await req.run(self.m.set_volume_metadata, req.ctx, req.param("id"), meta, False)
        return {"meta": meta}

    async def delete_volume_metadata_item(self, req: ApiRequest) -> None:
        await req.run(self.m.delete_volume_metadata, req.ctx, req.param("id"),
                      req.param("key"))

    # ------------------------------------------------------------------ snapshots
    def _snap_doc(self, req: ApiRequest, s: Snapshot) -> dict[str, Any]:
        return {"snapshot": views.snapshot(req.base_url, s, version_of(req.request.scope))}

    async def list_snapshots(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("volume:get_all_snapshots", {"project_id": req.ctx.project_id or ""})
        rows = await req.run(self.m.list_snapshots, req.ctx, self._all_projects(req))
        for key in ("name", "status", "volume_id"):
            if key in req.query:
                rows = [s for s in rows if getattr(s, key) == req.query[key]]
        rows = self._sorted_page(req, rows, ("created_at", "updated_at", "id", "name",
                                             "size", "status"))
        ver = version_of(req.request.scope)
        return self._with_count(req, {"snapshots": [
            views.snapshot(req.base_url, s, ver) for s in rows]}, len(rows))

    async def show_snapshot(self, req: ApiRequest) -> dict[str, Any]:
        s = await req.run(self.m.get_snapshot, req.ctx, req.param("id"))
        req.enforce("volume:get_snapshot", {"project_id": s.project_id})
        return self._snap_doc(req, s)

    async def create_snapshot(self, req: ApiRequest) -> Response:
        body = _obj(await req.json(), "snapshot")
        req.enforce("volume:create_snapshot", {"project_id": req.ctx.project_id or ""})
        vid = body.get("volume_id")
        if not isinstance(vid, str) or not vid:
            raise BadRequest("Invalid input for field/attribute volume_id. Value: None.")
        s = await req.run(
            self.m.create_snapshot, req.ctx, vid,
            _text(body.get("name", body.get("display_name")), "name"),
            _text(body.get("description", body.get("display_description")), "description"),
            _bool(body.get("force", False), "force"), _metadata(body.get("metadata")))
        self._later(self.m.finish_snapshot, s.id)
        return FastJSON(self._snap_doc(req, s), status_code=202)

    async def update_snapshot(self, req: ApiRequest) -> dict[str, Any]:
        body = _obj(await req.json(), "snapshot")
        changes: dict[str, Any] = {}
        for key, alias in (("name", "display_name"), ("description", "display_description")):
            if key in body or alias in body:
                changes[key] = _text(body.get(key, body.get(alias)), key)
        if "metadata" in body:
            changes["metadata"] = _metadata(body["metadata"])
        if not changes:
            raise BadRequest("Invalid input received: a snapshot update needs a name, a "
                             "description or metadata.")
        s = await req.run(self.m.update_snapshot, req.ctx, req.param("id"), changes)
        return self._snap_doc(req, s)

    async def delete_snapshot(self, req: ApiRequest) -> Response:
        sid = req.param("id")
        await req.run(self.m.begin_delete_snapshot, req.ctx, sid, False)
        self._later(self.m.finish_delete_snapshot, sid)
        return Response(status_code=202)

    async def snapshot_action(self, req: ApiRequest) -> Response:
        body = await req.json()
        if not isinstance(body, dict) or len(body) != 1:
            raise BadRequest("There is no such action: a snapshot action body names exactly "
                             "one action.")
        sid = req.param("id")
        if "os-reset_status" in body:
            status = _obj(body, "os-reset_status").get("status")
            if status not in ("creating", "available", "deleting", "error",
                              "error_deleting"):
                raise BadRequest(f"Invalid input received: '{status}' is not a valid "
                                 "snapshot status.")
            await req.run(self.m.snapshot_action, req.ctx, sid,
                          "volume_extension:snapshot_admin_actions:reset_status",
                          lambda s: setattr(s, "status", status))
            return Response(status_code=202)
        if "os-force_delete" in body:
            await req.run(self.m.begin_delete_snapshot, req.ctx, sid, True)
            self._later(self.m.finish_delete_snapshot, sid)
            return Response(status_code=202)
        raise BadRequest(f"There is no such action: {next(iter(body))}")

    async def snapshot_metadata(self, req: ApiRequest) -> dict[str, Any]:
        s = await req.run(self.m.get_snapshot, req.ctx, req.param("id"))
        req.enforce("volume:get_snapshot_metadata", {"project_id": s.project_id})
        return {"metadata": dict(s.metadata_ or {})}

    async def add_snapshot_metadata(self, req: ApiRequest) -> dict[str, Any]:
        meta = _metadata(_obj(await req.json(), "metadata"))
        return {"metadata": await req.run(self.m.set_snapshot_metadata, req.ctx,
                                          req.param("id"), meta, False)}

    async def replace_snapshot_metadata(self, req: ApiRequest) -> dict[str, Any]:
        meta = _metadata(_obj(await req.json(), "metadata"))
        return {"metadata": await req.run(self.m.set_snapshot_metadata, req.ctx,
                                          req.param("id"), meta, True)}

    async def snapshot_metadata_item(self, req: ApiRequest) -> dict[str, Any]:
        meta = (await self.snapshot_metadata(req))["metadata"]
        key = req.param("key")
        if key not in meta:
            raise NotFound(f"Snapshot {req.param('id')} has no metadata with key {key}.")
        return {"meta": {key: meta[key]}}

    async def put_snapshot_metadata_item(self, req: ApiRequest) -> dict[str, Any]:
        meta = _metadata(_obj(await req.json(), "meta"), "meta")
        if list(meta) != [req.param("key")]:
            raise BadRequest("Request body and URI mismatch")
        await req.run(self.m.set_snapshot_metadata, req.ctx, req.param("id"), meta, False)
        return {"meta": meta}

    async def delete_snapshot_metadata_item(self, req: ApiRequest) -> None:
        await req.run(self.m.delete_snapshot_metadata, req.ctx, req.param("id"),
                      req.param("key"))

    # ------------------------------------------------------------------ types
    async def list_types(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("volume_extension:type_get_all", {"project_id": req.ctx.project_id or ""})
        rows = await req.run(self.m.list_types, req.ctx, req.query.get("is_public"))
        return {"volume_types": [views.volume_type(t, req.ctx.is_admin) for t in rows]}

    async def show_type(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("volume_extension:type_get", {"project_id": req.ctx.project_id or ""})
        t = await req.run(self.m.get_type, req.ctx, req.param("id"))
        return {"volume_type": views.volume_type(t, req.ctx.is_admin)}

    def _admin(self, req: ApiRequest, action: str = "volume_extension:types_manage") -> None:
        req.enforce(action, {"project_id": req.ctx.project_id or ""})

    async def create_type(self, req: ApiRequest) -> dict[str, Any]:
        self._admin(req)
        body = _obj(await req.json(), "volume_type")
        name = _text(body.get("name"), "name", nullable=False) or ""
        if not name.strip():
            raise BadRequest("Invalid input for field/attribute name: a volume type needs a "
                             "name.")
        public = _bool(body.get("os-volume-type-access:is_public",
                                body.get("is_public", True)), "is_public")
        t = await req.run(self.m.create_type, name, _text(body.get("description"),
                                                          "description"),
                          public, _metadata(body.get("extra_specs"), "extra_specs"))
        return {"volume_type": views.volume_type(t, True)}

    async def update_type(self, req: ApiRequest) -> dict[str, Any]:
        self._admin(req)
        body = _obj(await req.json(), "volume_type")
        changes: dict[str, Any] = {}
        if "name" in body:
            changes["name"] = _text(body["name"], "name", nullable=False)
        if "description" in body:
            changes["description"] = _text(body["description"], "description")
        if "is_public" in body:
            changes["is_public"] = _bool(body["is_public"], "is_public")
        if not changes:
            raise BadRequest("Invalid input received: a volume type update needs a name, a "
                             "description or is_public.")
        t = await req.run(self.m.update_type, req.param("id"), changes)
        return {"volume_type": views.volume_type(t, True)}

    async def delete_type(self, req: ApiRequest) -> Response:
        self._admin(req)
        await req.run(self.m.delete_type, req.param("id"))
        return Response(status_code=202)

    async def type_action(self, req: ApiRequest) -> Response:
        body = await req.json()
        for action, add in (("addProjectAccess", True), ("removeProjectAccess", False)):
            if isinstance(body, dict) and action in body:
                self._admin(req, f"volume_extension:volume_type_access:{action}")
                project = _obj(body, action).get("project")
                if not isinstance(project, str) or not project:
                    raise BadRequest("Access list requires a project.")
                await req.run(self.m.set_type_access, req.param("id"), project, add)
                return Response(status_code=202)
        raise BadRequest("There is no such action.")

    async def type_access(self, req: ApiRequest) -> dict[str, Any]:
        self._admin(req, "volume_extension:volume_type_access")
        t = await req.run(self.m.get_type, req.ctx, req.param("id"))
        if t.is_public:
            raise NotFound("Access list not available for public volume types.")
        return {"volume_type_access": [{"volume_type_id": t.id, "project_id": p}
                                       for p in t.projects or []]}

    async def extra_specs(self, req: ApiRequest) -> dict[str, Any]:
        self._admin(req, "volume_extension:access_types_extra_specs")
        t = await req.run(self.m.get_type, req.ctx, req.param("id"))
        return {"extra_specs": dict(t.extra_specs or {})}

    async def add_extra_specs(self, req: ApiRequest) -> dict[str, Any]:
        self._admin(req)
        specs = _metadata(_obj(await req.json(), "extra_specs"), "extra_specs")
        return {"extra_specs": await req.run(self.m.set_extra_specs, req.param("id"), specs)}

    async def extra_spec(self, req: ApiRequest) -> dict[str, Any]:
        specs = (await self.extra_specs(req))["extra_specs"]
        key = req.param("key")
        if key not in specs:
            raise NotFound(f"Volume Type {req.param('id')} has no extra specs with key "
                           f"{key}.")
        return {key: specs[key]}

    async def put_extra_spec(self, req: ApiRequest) -> dict[str, Any]:
        self._admin(req)
        body = await req.json()
        spec = _metadata(body, "extra_specs")
        if list(spec) != [req.param("key")]:
            raise BadRequest("Request body and URI mismatch")
        await req.run(self.m.set_extra_specs, req.param("id"), spec)
        return spec

    async def delete_extra_spec(self, req: ApiRequest) -> Response:
        self._admin(req)
        await req.run(self.m.delete_extra_spec, req.param("id"), req.param("key"))
        return Response(status_code=202)

    # ------------------------------------------------------------------ zones, limits, quotas
    async def availability_zones(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("volume_extension:availability_zone_list",
                    {"project_id": req.ctx.project_id or ""})
        return {"availabilityZoneInfo": [{"zoneName": self.m.availability_zone,
                                          "zoneState": {"available": True}}]}

    async def limits(self, req: ApiRequest) -> dict[str, Any]:
        project = req.ctx.project_id or ""
        req.enforce("limits_extension:used_limits", {"project_id": project})
        lim, used = await req.run(self.m.get_quotas, project)
        return views.limits(lim, used)

    async def show_quotas(self, req: ApiRequest) -> dict[str, Any]:
        project = req.param("project_id")
        req.enforce("volume_extension:quotas:show", {"project_id": project})
        lim, used = await req.run(self.m.get_quotas, project)
        usage = "usage" in req.query and _bool(req.query["usage"], "usage")
        return {"quota_set": views.quota_set(project, lim, used if usage else None)}

    async def default_quotas(self, req: ApiRequest) -> dict[str, Any]:
        project = req.param("project_id")
        req.enforce("volume_extension:quotas:show", {"project_id": project})
        return {"quota_set": views.quota_set(project, await req.run(self.m.default_quotas))}

    async def update_quotas(self, req: ApiRequest) -> dict[str, Any]:
        project = req.param("project_id")
        req.enforce("volume_extension:quotas:update", {"project_id": project})
        body = _obj(await req.json(), "quota_set")
        values: dict[str, int] = {}
        for k, v in body.items():
            if k in ("id", "tenant_id", "project_id"):
                continue
            try:
                n = int(v) if not isinstance(v, bool) else None
            except (TypeError, ValueError):
                n = None
            if n is None or n < -1 or n > 2**31 - 1:
                raise BadRequest(f"Invalid input received: Quota limit {v} for {k} must be "
                                 "an integer -1 or greater.")
            values[k] = n
        lim = await req.run(self.m.set_quotas, project, values)
        doc = views.quota_set(project, lim)
        doc.pop("id", None)
        return {"quota_set": doc}

    async def delete_quotas(self, req: ApiRequest) -> None:
        project = req.param("project_id")
        req.enforce("volume_extension:quotas:delete", {"project_id": project})
        await req.run(self.m.delete_quotas, project)

    # ------------------------------------------------------------------ discovery, admin
    async def extensions(self, req: ApiRequest) -> dict[str, Any]:
        names = [("AvailabilityZones", "os-availability-zone"), ("Quotas", "os-quota-sets"),
                 ("Types", "types"), ("TypesManage", "types-manage"),
                 ("ExtendedSnapshotAttributes", "os-extended-snapshot-attributes"),
                 ("VolumeActions", "os-volume-actions"),
                 ("AdminActions", "os-admin-actions"),
                 ("VolumeTenantAttribute", "os-vol-tenant-attr"),
                 ("VolumeHostAttribute", "os-vol-host-attr"),
                 ("Services", "os-services"), ("SchedulerStats", "scheduler-stats")]
        return {"extensions": [{"name": n, "alias": a, "description": f"{n} support.",
                                "updated": "2023-01-01T00:00:00+00:00", "links": []}
                               for n, a in names]}

    async def services(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("volume_extension:services:index", {"project_id": req.ctx.project_id or ""})
        host = self.m.host.split("#", 1)[0]
        items = [{"binary": "cinder-scheduler", "host": host.split("@", 1)[0],
                  "zone": self.m.availability_zone, "status": "enabled", "state": "up",
                  "updated_at": None, "disabled_reason": None},
                 {"binary": "cinder-volume", "host": host,
                  "zone": self.m.availability_zone, "status": "enabled", "state": "up",
                  "updated_at": None, "disabled_reason": None}]
        for key in ("binary", "host"):
            if key in req.query:
                items = [i for i in items if i[key] == req.query[key]]
        return {"services": items}

    async def pools(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("scheduler_extension:scheduler_stats:get_pools",
                    {"project_id": req.ctx.project_id or ""})
        cap = await req.run(self.m.driver.capacity)
        pool: dict[str, Any] = {"name": self.m.host}
        if "detail" in req.query and _bool(req.query["detail"], "detail"):
            pool["capabilities"] = {
                "pool_name": self.m.driver.backend_name,
                "volume_backend_name": self.m.driver.backend_name,
                "storage_protocol": self.m.driver.protocol, "vendor_name": "onestack",
                "driver_version": "1.0", "total_capacity_gb": cap.total_gb,
                "free_capacity_gb": cap.free_gb,
                "provisioned_capacity_gb": cap.provisioned_gb,
                "thin_provisioning_support": True, "thick_provisioning_support": False,
                "reserved_percentage": 0, "multiattach": False, "timestamp": None}
        return {"pools": [pool]}
