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
from onestack.common.errors import APIError, BadRequest, Conflict, NotFound
from onestack.common.ids import is_uuid
from onestack.common.pagination import parse_limit
from onestack.common.timeutils import isotime
from onestack.db.volume import Snapshot, Volume
from onestack.volume import attach_actions as aa
from onestack.volume import reimage, views
from onestack.volume.manager import VOLUME_STATUSES, VolumeManager
from onestack.volume.microversion import (
    MAX_VERSION,
    MIN_VERSION,
    request_path,
    url_project,
    version_of,
)
from onestack.volume.params import _bool, _metadata, _obj, _size, _text
from onestack.volume.policies import RULES

LOG = logging.getLogger(__name__)
FAULT_KINDS = {400: "badRequest", 401: "unauthorized", 403: "forbidden", 404: "itemNotFound",
               405: "badMethod", 409: "conflictingRequest", 413: "overLimit",
               415: "badMediaType"}
VOLUME_SORT_KEYS = ("created_at", "updated_at", "id", "name", "size", "status",
                    "availability_zone", "bootable")


#: action -> (policy, ``f(args) -> change of the volume``).
ATTACH_ACTIONS: dict[str, tuple[str, Callable[[dict[str, Any]], Callable[[Volume], None]]]] = {
    "os-reserve": ("volume_extension:volume_actions:reserve", lambda a: aa.reserve),
    "os-unreserve": ("volume_extension:volume_actions:unreserve", lambda a: aa.unreserve),
    "os-attach": ("volume_extension:volume_actions:attach", aa.attach),
    "os-begin_detaching": ("volume_extension:volume_actions:begin_detaching",
                           lambda a: aa.begin_detaching),
    "os-roll_detaching": ("volume_extension:volume_actions:roll_detaching",
                          lambda a: aa.roll_detaching),
    "os-detach": ("volume_extension:volume_actions:detach", aa.detach),
    "os-force_detach": ("volume_extension:volume_admin_actions:force_detach",
                        lambda a: aa.detach(a, force=True)),
}


def cinder_fault(err: APIError) -> tuple[dict[str, Any], str]:
    """Cinder's ``{"itemNotFound": {"code": 404, "message": ...}}``."""
    kind = FAULT_KINDS.get(err.status, "computeFault")
    return {kind: {"code": err.status, "message": err.message}}, "application/json"


def build_policy(policy_file: str | None) -> Policy:
    return Policy(RULES, policy_file, denied="Policy doesn't allow {action} to be performed.")


def _updates(body: dict[str, Any], what: str) -> dict[str, Any]:
    """The name, description (or their ``display_`` aliases) and metadata a volume or
    snapshot update sets; 400 when it sets none."""
    changes: dict[str, Any] = {}
    for key, alias in (("name", "display_name"), ("description", "display_description")):
        if key in body or alias in body:
            changes[key] = _text(body.get(key, body.get(alias)), key)
    if "metadata" in body:
        changes["metadata"] = _metadata(body["metadata"])
    if not changes:
        raise BadRequest(f"Invalid input received: a {what} update needs a name, a "
                         "description or metadata.")
    return changes


class MetadataRoutes:
    """The ``…/{id}/metadata[/{key}]`` routes of volumes or snapshots (the same in both)."""

    def __init__(self, label: str, get: Callable[..., Any], set_: Callable[..., Any],
                 delete: Callable[..., Any], read_policy: str) -> None:
        self.label, self.get, self.set, self.delete = label, get, set_, delete
        self.read_policy = read_policy

    async def show(self, req: ApiRequest) -> dict[str, Any]:
        row = await req.run(self.get, req.ctx, req.param("id"))
        req.enforce(self.read_policy, {"project_id": row.project_id})
        return {"metadata": dict(row.metadata_ or {})}

    async def add(self, req: ApiRequest) -> dict[str, Any]:
        meta = _metadata(_obj(await req.json(), "metadata"))
        return {"metadata": await req.run(self.set, req.ctx, req.param("id"), meta, False)}

    async def replace(self, req: ApiRequest) -> dict[str, Any]:
        meta = _metadata(_obj(await req.json(), "metadata"))
        return {"metadata": await req.run(self.set, req.ctx, req.param("id"), meta, True)}

    async def item(self, req: ApiRequest) -> dict[str, Any]:
        meta = (await self.show(req))["metadata"]
        key = req.param("key")
        if key not in meta:
            raise NotFound(f"{self.label} {req.param('id')} has no metadata with key {key}.")
        return {"meta": {key: meta[key]}}

    async def put_item(self, req: ApiRequest) -> dict[str, Any]:
        meta = _metadata(_obj(await req.json(), "meta"), "meta")
        if list(meta) != [req.param("key")]:
            raise BadRequest("Request body and URI mismatch")
        await req.run(self.set, req.ctx, req.param("id"), meta, False)
        return {"meta": meta}

    async def delete_item(self, req: ApiRequest) -> Response:
        await req.run(self.delete, req.ctx, req.param("id"), req.param("key"))
        return Response(status_code=200)


class VolumeAPI:
    """Builds the volume service: routes bound to a manager."""

    def __init__(self, manager: VolumeManager, policy: Policy, auth_uri: str,
                 max_limit: int = 1000, backups: Any = None) -> None:
        """The volume, snapshot, zone, limit and quota routes; ``volume.setup`` adds the
        other resources' (types, transfers, QoS, groups, backups, operator routes)."""
        self.m = manager
        self.backups = backups
        #: The attachments (set by ``volume.setup``; the compute service uses them too).
        self.attachments: Any = None
        #: Where servers hear that their volume grew: ``async volume_extended(volume_id,
        #: server_ids, new_size)`` (the compute service; None: nobody is told).
        self.compute_events: Any = None
        #: Where uploads in formats other than raw are converted (None: the temp dir).
        self.scratch_dir: str | None = None
        self.max_limit = max_limit
        self.service = Service(name="volume", routes=[], fault=cinder_fault, policy=policy,
                               auth_uri=auth_uri, request_check=self._check_project,
                               service_type="block-storage")
        self._tasks: set[asyncio.Future[Any]] = set()
        self._volume_meta = MetadataRoutes(
            "Volume", manager.get_volume, manager.set_volume_metadata,
            manager.delete_volume_metadata, "volume:get_volume_metadata")
        self._snapshot_meta = MetadataRoutes(
            "Snapshot", manager.get_snapshot, manager.set_snapshot_metadata,
            manager.delete_snapshot_metadata, "volume:get_snapshot_metadata")
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
        r("/v3/volumes/summary", self.volume_summary, ["GET"])
        r("/v3/volumes", self.create_volume, ["POST"])
        r("/v3/volumes/{id}", self.show_volume, ["GET"])
        r("/v3/volumes/{id}", self.update_volume, ["PUT"])
        r("/v3/volumes/{id}", self.delete_volume, ["DELETE"])
        r("/v3/volumes/{id}/action", self.volume_action, ["POST"])
        r("/v3/snapshots", self.list_snapshots, ["GET"])
        r("/v3/snapshots/detail", self.list_snapshots, ["GET"])
        r("/v3/snapshots", self.create_snapshot, ["POST"])
        r("/v3/snapshots/{id}", self.show_snapshot, ["GET"])
        r("/v3/snapshots/{id}", self.update_snapshot, ["PUT"])
        r("/v3/snapshots/{id}", self.delete_snapshot, ["DELETE"])
        r("/v3/snapshots/{id}/action", self.snapshot_action, ["POST"])
        for kind, meta in (("volumes", self._volume_meta), ("snapshots", self._snapshot_meta)):
            r(f"/v3/{kind}/{{id}}/metadata", meta.show, ["GET"])
            r(f"/v3/{kind}/{{id}}/metadata", meta.add, ["POST"])
            r(f"/v3/{kind}/{{id}}/metadata", meta.replace, ["PUT"])
            r(f"/v3/{kind}/{{id}}/metadata/{{key}}", meta.item, ["GET"])
            r(f"/v3/{kind}/{{id}}/metadata/{{key}}", meta.put_item, ["PUT"])
            r(f"/v3/{kind}/{{id}}/metadata/{{key}}", meta.delete_item, ["DELETE"])
        r("/v3/os-availability-zone", self.availability_zones, ["GET"])
        r("/v3/limits", self.limits, ["GET"])
        r("/v3/os-quota-sets/{project_id}", self.show_quotas, ["GET"])
        r("/v3/os-quota-sets/{project_id}/defaults", self.default_quotas, ["GET"])
        r("/v3/os-quota-sets/{project_id}", self.update_quotas, ["PUT"])
        r("/v3/os-quota-sets/{project_id}", self.delete_quotas, ["DELETE"])
        # The other resources' routes are added by ``volume.setup`` (their own modules).

    # ------------------------------------------------------------------ background work
    def _later(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run the storage half of an operation in a worker thread, after the answer."""
        self._track(asyncio.get_running_loop().run_in_executor(None, fn, *args))

    def _track(self, fut: asyncio.Future[Any]) -> None:
        self._tasks.add(fut)

        def done(f: asyncio.Future[Any]) -> None:
            self._tasks.discard(f)
            if not f.cancelled() and f.exception() is not None:
                LOG.error("volume background work failed", exc_info=f.exception())
        fut.add_done_callback(done)

    async def _extend(self, volume_id: str, new_size: int) -> None:
        """Grow the volume, then tell the servers using it (Nova's ``volume-extended``)."""
        servers = await asyncio.to_thread(self.m.finish_extend, volume_id, new_size)
        if servers and self.compute_events is not None:
            await self.compute_events.volume_extended(volume_id, servers, new_size)

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
        # Cinder drops the filter for whoever may not use it (its API removes filters a
        # non-admin may not pass): the project's own volumes, no 403. python-cinderclient
        # looks names up with all_tenants=1, whoever asks.
        return want and req.allowed("volume:get_all_tenants",
                                    {"project_id": req.ctx.project_id or ""})

    def _filtered(self, req: ApiRequest, rows: list[Volume], links: dict[str, Any]
                  ) -> list[Volume]:
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
        return self._sorted_page(req, rows, VOLUME_SORT_KEYS, links)

    def _sorted_page(self, req: ApiRequest, rows: list[Any], keys: tuple[str, ...],
                     links: dict[str, Any] | None = None) -> list[Any]:
        """Sort (``sort=k:d,…`` or ``sort_key``/``sort_dir``), ``marker``/``offset`` and
        ``limit``; with ``links``, a ``next`` link is put there when a page is cut short."""
        sort: list[tuple[str, str]] = []
        if "sort" in req.query:
            for part in req.query["sort"].split(","):
                key, _, direction = part.strip().partition(":")
                sort.append((key, direction or "desc"))
        elif "sort_key" in req.query:
            sort.append((req.query["sort_key"], req.query.get("sort_dir", "desc")))
        aliases = {"display_name": "name", "display_description": "description"}
        sort = [(aliases.get(k, k), d.lower()) for k, d in sort]
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
        if "offset" in req.query:
            try:
                offset = int(req.query["offset"])
            except ValueError:
                offset = -1
            if offset < 0:
                raise BadRequest("Invalid input received: offset must be a non-negative "
                                 "integer.")
            rows = rows[offset:]
        if "limit" in req.query:
            limit = parse_limit(req.query, self.max_limit, self.max_limit)
            # Cinder links a next page whenever a page is full.
            if links is not None and limit and len(rows) >= limit:
                from urllib.parse import urlencode
                q = [(k, v) for k, v in req.query.multi_items() if k not in ("marker",
                                                                             "offset")]
                q.append(("marker", rows[limit - 1].id))
                base = req.base_url + request_path(req.request.scope)
                links["links"] = [{"href": f"{base}?{urlencode(q)}", "rel": "next"}]
            rows = rows[:limit]
        return rows

    async def _volume_rows(self, req: ApiRequest, links: dict[str, Any]) -> list[Volume]:
        req.enforce("volume:get_all", {"project_id": req.ctx.project_id or ""})
        all_projects = self._all_projects(req)
        rows = await req.run(self.m.list_volumes, req.ctx, all_projects,
                             req.query.get("project_id"))
        return self._filtered(req, rows, links)

    def _with_count(self, req: ApiRequest, doc: dict[str, Any], n: int,
                    links: dict[str, Any] | None = None) -> dict[str, Any]:
        if links and links.get("links"):
            doc[f"{next(iter(doc))}_links"] = links["links"]
        if version_of(req.request.scope) >= "3.45" and "with_count" in req.query and _bool(
                req.query["with_count"], "with_count"):
            doc["count"] = n
        return doc

    async def list_volumes(self, req: ApiRequest) -> dict[str, Any]:
        links: dict[str, Any] = {}
        rows = await self._volume_rows(req, links)
        return self._with_count(req, {"volumes": [views.volume_summary(req.base_url, v)
                                                  for v in rows]}, len(rows), links)

    async def list_volumes_detail(self, req: ApiRequest) -> dict[str, Any]:
        links: dict[str, Any] = {}
        rows = await self._volume_rows(req, links)
        names = await req.run(self.m.type_names)
        ver = version_of(req.request.scope)
        return self._with_count(req, {"volumes": [
            views.volume(req.base_url, v, req.ctx, ver, names) for v in rows]}, len(rows),
            links)

    async def volume_summary(self, req: ApiRequest) -> dict[str, Any]:
        """Counts and GiB of the volumes listed (3.12; their metadata values at 3.36)."""
        if version_of(req.request.scope) < "3.12":
            raise NotFound("Volume summary could not be found.")
        rows = await self._volume_rows(req, {})
        doc: dict[str, Any] = {"total_size": sum(v.size for v in rows),
                               "total_count": len(rows)}
        if version_of(req.request.scope) >= "3.36":
            meta: dict[str, list[str]] = {}
            for v in rows:
                for k, val in (v.metadata_ or {}).items():
                    if val not in meta.setdefault(k, []):
                        meta[k].append(val)
            doc["metadata"] = meta
        return {"volume-summary": doc}

    async def _volume_doc(self, req: ApiRequest, v: Volume, extended: bool = True
                          ) -> dict[str, Any]:
        names = await req.run(self.m.type_names)
        return {"volume": views.volume(req.base_url, v, req.ctx,
                                       version_of(req.request.scope), names, extended)}

    async def show_volume(self, req: ApiRequest) -> dict[str, Any]:
        v = await req.run(self.m.get_volume, req.ctx, req.param("id"))
        req.enforce("volume:get", {"project_id": v.project_id})
        return await self._volume_doc(req, v)

    async def create_volume(self, req: ApiRequest) -> Response:
        body = _obj(await req.json(), "volume")
        req.enforce("volume:create", {"project_id": req.ctx.project_id or ""})
        if body.get("backup_id"):
            raise BadRequest("Invalid input received: volumes from backups are not "
                             "supported by this cloud yet.")
        image = None
        image_ref = body.get("imageRef", body.get("image_id"))
        snapshot_id = _text(body.get("snapshot_id"), "snapshot_id")
        if image_ref is not None:
            if self.m.images is None:
                raise BadRequest("Invalid input received: no image service to create a "
                                 "volume from.")
            image_ref = _text(image_ref, "imageRef", nullable=False) or ""
            # 3.46: Nova's snapshot of a volume-backed server (an image without data whose
            # block device mapping names volume snapshots) gives the boot snapshot's copy.
            boot_snapshot = None
            if version_of(req.request.scope) >= "3.46":
                boot_snapshot = await req.run(self.m.images.boot_snapshot, req.ctx,
                                              image_ref)
            if boot_snapshot is not None:
                try:
                    await req.run(self.m.get_snapshot, req.ctx, boot_snapshot)
                except NotFound:
                    raise NotFound(f"Nova specific image is found, but boot volume "
                                   f"snapshot id:{boot_snapshot} not found.") from None
                snapshot_id = boot_snapshot
            else:
                image = await req.run(self.m.images.volume_image, req.ctx, image_ref)
        size = _size(body["size"]) if body.get("size") is not None else None
        if size is None and not (snapshot_id or body.get("source_volid")):
            raise BadRequest("Invalid input for field/attribute size. Value: None. None is "
                             "not of type 'integer', 'string'")
        vtype = body.get("volume_type")
        group_id = None
        if body.get("group_id") is not None:
            if version_of(req.request.scope) < "3.13":
                raise BadRequest("Invalid input received: group_id needs microversion 3.13.")
            group_id = _text(body["group_id"], "group_id", nullable=False)
        v = await req.run(
            self.m.create_volume, req.ctx, size,
            _text(body.get("name", body.get("display_name")), "name"),
            _text(body.get("description", body.get("display_description")), "description"),
            _text(vtype, "volume_type"), _metadata(body.get("metadata")),
            _text(body.get("availability_zone"), "availability_zone"),
            snapshot_id, _text(body.get("source_volid"), "source_volid"),
            _bool(body.get("multiattach", False), "multiattach"), image, group_id)
        self._later(self.m.finish_create, v.id, image)
        return FastJSON(await self._volume_doc(req, v, extended=False), status_code=202)

    async def update_volume(self, req: ApiRequest) -> dict[str, Any]:
        changes = _updates(_obj(await req.json(), "volume"), "volume")
        v = await req.run(self.m.update_volume, req.ctx, req.param("id"), changes)
        return await self._volume_doc(req, v, extended=False)

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
            await req.run(self.m.begin_extend, req.ctx, vid, new,
                          version_of(req.request.scope) >= "3.42")
            self._track(asyncio.ensure_future(self._extend(vid, new)))
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
        if action == "os-reimage":
            return await self._reimage(req, vid, arg)
        if action == "os-volume_upload_image":
            return await self._upload_image(req, vid, _obj(body, action))
        if action == "os-retype":
            args = _obj(body, action)
            policy = args.get("migration_policy", "never")
            if policy not in ("never", "on-demand"):
                raise BadRequest(f"Invalid input received: migration_policy '{policy}' is "
                                 "not 'never' or 'on-demand'.")
            await req.run(self.m.retype, req.ctx, vid,
                          _text(args.get("new_type"), "new_type", nullable=False), policy)
            return Response(status_code=202)
        if action in ("os-set_image_metadata", "os-unset_image_metadata",
                      "os-show_image_metadata"):
            meta = await self._image_metadata(req, vid, action, arg)
            if action == "os-unset_image_metadata":
                return Response(status_code=200)
            return FastJSON({"metadata": meta})
        if action in ATTACH_ACTIONS:
            policy, make = ATTACH_ACTIONS[action]
            args = arg if isinstance(arg, dict) else {}
            if action in ("os-detach", "os-force_detach"):
                await req.run(self.guard_nova, req.ctx, vid, args.get("attachment_id"))
            await req.run(self.m.volume_action, req.ctx, vid, policy, make(args))
            return Response(status_code=202)
        if action == "os-initialize_connection":
            v = await req.run(self.m.get_volume, req.ctx, vid)
            req.enforce("volume_extension:volume_actions:initialize_connection",
                        {"project_id": v.project_id})
            if not isinstance(arg, dict) or not isinstance(arg.get("connector"), dict):
                raise BadRequest("Must specify 'connector'")
            if not v.provider_location:
                raise BadRequest(f"Invalid volume: Volume {vid} has no data yet.")
            info = await req.run(self.m.driver.connection_info, v.provider_location, v.id)
            return FastJSON({"connection_info": info}, status_code=200)
        if action == "os-terminate_connection":
            v = await req.run(self.m.get_volume, req.ctx, vid)
            req.enforce("volume_extension:volume_actions:terminate_connection",
                        {"project_id": v.project_id})
            if not isinstance(arg, dict) or not isinstance(arg.get("connector"), dict):
                raise BadRequest("Must specify 'connector'")
            await req.run(self.guard_nova, req.ctx, vid, None)
            return Response(status_code=202)
        raise BadRequest(f"There is no such action: {action}")

    async def _reimage(self, req: ApiRequest, vid: str, args: Any) -> Response:
        """``os-reimage`` (3.68): the volume's data replaced by an image's disk."""
        if version_of(req.request.scope) < "3.68":
            raise NotFound("There is no such action: os-reimage")
        if not isinstance(args, dict) or set(args) - {"image_id", "reimage_reserved"}:
            raise BadRequest("Invalid input for field/attribute os-reimage: only image_id "
                             "and reimage_reserved are allowed.")
        image_id = args.get("image_id")
        if not isinstance(image_id, str) or not is_uuid(image_id):
            raise BadRequest("Invalid input for field/attribute image_id: a UUID is "
                             "required.")
        reserved = _bool(args.get("reimage_reserved", False), "reimage_reserved")
        if self.m.images is None:
            raise BadRequest("Invalid input received: no image service to re-image from.")
        image = await req.run(self.m.images.volume_image, req.ctx, image_id)
        await req.run(reimage.begin, self.m, req.ctx, vid, image, reserved)
        self._later(reimage.finish, self.m, vid, image)
        return Response(status_code=202)

    def guard_nova(self, ctx: Any, volume_id: str, attachment_id: Any) -> None:
        """Cinder's rule since OSSA-2023-003: an attachment the compute service uses (its
        server has the volume attached) is removed through the Compute API only (409).
        Compute itself runs in this process and does not come through here; no caller
        over HTTP holds a service token this cloud would accept."""
        if self.compute_events is None:
            return
        v = self.m.get_volume(ctx, volume_id)
        for a in v.attachments or []:
            if attachment_id is not None and a.get("id") != attachment_id:
                continue
            server = a.get("server_id")
            if server and self.compute_events.uses_volume(server, v.id):
                raise Conflict(f"Detach volume from instance {server} using the Compute "
                               "API")

    async def _upload_image(self, req: ApiRequest, vid: str, args: dict[str, Any]
                            ) -> Response:
        """Copy a volume into a new image (raw data; Cinder's ``os-volume_upload_image``)."""
        if self.m.images is None:
            raise BadRequest("Invalid input received: no image service to upload to.")
        name = _text(args.get("image_name"), "image_name", nullable=False) or ""
        disk_format = args.get("disk_format", "raw")
        if disk_format not in ("raw", "qcow2", "vmdk", "vdi", "vhdx"):
            raise BadRequest(f"Invalid input received: disk_format {disk_format} is not "
                             "one of raw, qcow2, vmdk, vdi, vhdx.")
        container = args.get("container_format", "bare")
        if container != "bare":
            raise BadRequest(f"Invalid input received: container_format {container} is "
                             "not supported (bare only).")
        visibility = args.get("visibility", "private")
        protected = _bool(args.get("protected", False), "protected")
        force = _bool(args.get("force", False), "force")
        vol = await req.run(self.m.begin_upload, req.ctx, vid, force)
        try:
            image_id = await req.run(self.m.images.new_image, req.ctx, name, disk_format,
                                     container, str(visibility), protected)
        except Exception:
            await req.run(self.m.end_upload, vid)
            raise
        self._later(self.m.finish_upload, vid, image_id, disk_format, self.scratch_dir)
        names = await req.run(self.m.type_names)
        return FastJSON({"os-volume_upload_image": {
            "id": vol.id, "updated_at": isotime(vol.updated_at, subsecond=True),
            "status": "uploading", "display_description": vol.description, "size": vol.size,
            "volume_type": {"name": names.get(vol.volume_type_id or "")},
            "image_id": image_id, "container_format": container,
            "disk_format": disk_format, "image_name": name}}, status_code=202)

    async def _image_metadata(self, req: ApiRequest, vid: str, action: str,
                              arg: Any) -> dict[str, str]:
        """``volume_image_metadata``: set keys, unset one, or show it."""
        if action == "os-show_image_metadata":
            v = await req.run(self.m.get_volume, req.ctx, vid)
            req.enforce("volume_extension:volume_image_metadata:show",
                        {"project_id": v.project_id})
            return dict(v.image_metadata or {})
        if not isinstance(arg, dict):
            raise BadRequest(f"Malformed request body: {action} needs an object.")
        out: dict[str, str] = {}
        if action == "os-set_image_metadata":
            meta = _metadata(arg.get("metadata"))

            def change(v: Volume) -> None:
                v.image_metadata = {**(v.image_metadata or {}), **meta}
                out.update(v.image_metadata)
        else:
            key = arg.get("key")
            if not isinstance(key, str) or not key:
                raise BadRequest("Malformed request body: os-unset_image_metadata needs a "
                                 "key.")

            def change(v: Volume) -> None:
                meta = dict(v.image_metadata or {})
                if key not in meta:
                    raise NotFound(f"Glance metadata for volume {v.id} cannot be found.")
                del meta[key]
                v.image_metadata = meta
                out.update(meta)
        await req.run(self.m.volume_action, req.ctx, vid,
                      "volume_extension:volume_image_metadata:set", change)
        return out

    # ------------------------------------------------------------------ snapshots
    def _snap_doc(self, req: ApiRequest, s: Snapshot, extended: bool = True
                  ) -> dict[str, Any]:
        return {"snapshot": views.snapshot(req.base_url, s, version_of(req.request.scope),
                                           extended)}

    async def list_snapshots(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce("volume:get_all_snapshots", {"project_id": req.ctx.project_id or ""})
        rows = await req.run(self.m.list_snapshots, req.ctx, self._all_projects(req))
        for key in ("name", "status", "volume_id"):
            if key in req.query:
                rows = [s for s in rows if getattr(s, key) == req.query[key]]
        links: dict[str, Any] = {}
        rows = self._sorted_page(req, rows, ("created_at", "updated_at", "id", "name",
                                             "size", "status"), links)
        ver = version_of(req.request.scope)
        detail = req.request.url.path.endswith("/detail")
        return self._with_count(req, {"snapshots": [
            views.snapshot(req.base_url, s, ver, detail) for s in rows]}, len(rows), links)

    async def show_snapshot(self, req: ApiRequest) -> dict[str, Any]:
        s = await req.run(self.m.get_snapshot, req.ctx, req.param("id"))
        req.enforce("volume:get_snapshot", {"project_id": s.project_id})
        return self._snap_doc(req, s)

    async def create_snapshot(self, req: ApiRequest) -> Response:
        body = _obj(await req.json(), "snapshot")
        req.enforce("volume:create_snapshot", {"project_id": req.ctx.project_id or ""})
        vid = body.get("volume_id")
        if not isinstance(vid, str) or not vid:
            raise NotFound(f"Volume {vid} could not be found.")
        s = await req.run(
            self.m.create_snapshot, req.ctx, vid,
            _text(body.get("name", body.get("display_name")), "name"),
            _text(body.get("description", body.get("display_description")), "description"),
            _bool(body.get("force", False), "force"), _metadata(body.get("metadata")),
            version_of(req.request.scope) >= "3.66")
        self.copy_quiesced(vid, self.m.finish_snapshot, s.id)
        return FastJSON(self._snap_doc(req, s, extended=False), status_code=202)

    def copy_quiesced(self, volume_id: str | None, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` (a copy of the volume's data) in a worker thread after the
        answer; the guests using the volume (an ``in-use`` one) have their I/O paused
        meanwhile, so the copy is one point in time (the role of Nova's assisted snapshots
        for Cinder's file-based drivers). ``volume_id`` None: nothing to pause."""
        async def run() -> None:
            servers = [] if volume_id is None else await asyncio.to_thread(
                self.servers_using, volume_id)
            paused: list[str] = []
            if servers and self.compute_events is not None:
                paused = await self.compute_events.pause_io(volume_id, servers)
            try:
                await asyncio.to_thread(fn, *args)
            finally:
                if paused:
                    await self.compute_events.resume_io(volume_id, paused)
        self._track(asyncio.ensure_future(run()))

    def servers_using(self, volume_id: str) -> list[str]:
        """The servers the compute service has this volume attached to."""
        if self.compute_events is None:
            return []
        from onestack.common.context import RequestContext

        try:
            v = self.m.get_volume(RequestContext.admin(), volume_id)
        except NotFound:
            return []
        return [str(a["server_id"]) for a in v.attachments or [] if a.get("server_id")
                and self.compute_events.uses_volume(a["server_id"], volume_id)]

    async def update_snapshot(self, req: ApiRequest) -> dict[str, Any]:
        changes = _updates(_obj(await req.json(), "snapshot"), "snapshot")
        s = await req.run(self.m.update_snapshot, req.ctx, req.param("id"), changes)
        return self._snap_doc(req, s, extended=False)

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
        if "os-update_snapshot_status" in body:
            args = _obj(body, "os-update_snapshot_status")
            status, progress = args.get("status"), args.get("progress")
            allowed = {"creating": {"creating", "available", "error"},
                       "deleting": {"deleting", "error_deleting"}}

            def update(s: Snapshot) -> None:
                if status not in allowed.get(s.status, set()):
                    raise BadRequest(f"Invalid input received: snapshot status update from "
                                     f"{s.status} to {status} is not allowed.")
                s.status = status
                if isinstance(progress, str):
                    s.progress = progress[:16]
            await req.run(self.m.snapshot_action, req.ctx, sid,
                          "snapshot_extension:snapshot_actions:update_snapshot_status", update)
            return Response(status_code=202)
        if "os-force_delete" in body:
            await req.run(self.m.begin_delete_snapshot, req.ctx, sid, True)
            self._later(self.m.finish_delete_snapshot, sid)
            return Response(status_code=202)
        raise BadRequest(f"There is no such action: {next(iter(body))}")

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

    async def delete_quotas(self, req: ApiRequest) -> Response:
        project = req.param("project_id")
        req.enforce("volume_extension:quotas:delete", {"project_id": project})
        await req.run(self.m.delete_quotas, project)
        return Response(status_code=200)
