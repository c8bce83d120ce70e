"""Block-storage API service (Cinder v3, microversions 3.0–3.71): the ``VolumeAPI`` the route
modules (``api_*``, attached by ``volume.setup``) register on, its versions documents, Cinder's
fault bodies, and the background work the routes start.

Creates, deletes and extends answer 202 at once; the storage work runs in a worker thread
afterwards (``VolumeManager.finish_*``), as Cinder's volume service does it after the API.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from starlette.responses import Response

from onestack.api.app import ApiRequest, FastJSON, Service, add_declared, route
from onestack.api.policy import Policy
from onestack.api.routes import serves
from onestack.api.versions import healthcheck
from onestack.common.errors import APIError, BadRequest, Conflict, NotFound
from onestack.tasks import BackgroundWork
from onestack.volume.compute_events import ComputeEvents
from onestack.volume.manager import VolumeManager
from onestack.volume.microversion import MAX_VERSION, MIN_VERSION, url_project
from onestack.volume.policies import RULES

FAULT_KINDS = {400: "badRequest", 401: "unauthorized", 403: "forbidden", 404: "itemNotFound",
               405: "badMethod", 409: "conflictingRequest", 413: "overLimit",
               415: "badMediaType"}


def cinder_fault(err: APIError) -> tuple[dict[str, Any], str]:
    """Cinder's ``{"itemNotFound": {"code": 404, "message": ...}}``."""
    kind = FAULT_KINDS.get(err.status, "computeFault")
    return {kind: {"code": err.status, "message": err.message}}, "application/json"


def build_policy(policy_file: str | None) -> Policy:
    return Policy(RULES, policy_file, denied="Policy doesn't allow {action} to be performed.")


class VolumeAPI:
    """Builds the volume service: routes bound to a manager."""

    def __init__(self, manager: VolumeManager, policy: Policy, auth_uri: str,
                 max_limit: int = 1000, backups: Any = None) -> None:
        """The versions routes; ``volume.setup`` adds every resource's (the ``api_*``
        modules: volumes, their actions, snapshots, metadata, quotas, types, transfers,
        QoS, groups, backups, operator routes, attachments)."""
        self.m = manager
        self.backups = backups
        #: The attachments (set by ``volume.setup``; the compute service uses them too).
        self.attachments: Any = None
        #: Where servers hear that their volume grew: ``async volume_extended(volume_id,
        #: server_ids, new_size)`` (the compute service; None: nobody is told).
        self.compute_events: ComputeEvents | None = None
        #: Where uploads in formats other than raw are converted (None: the temp dir).
        self.scratch_dir: str | None = None
        self.max_limit = max_limit
        self.service = Service(name="volume", routes=[], fault=cinder_fault, policy=policy,
                               auth_uri=auth_uri, request_check=self._check_project,
                               service_type="block-storage")
        self.background = BackgroundWork("volume background work")
        self._add_routes()

    @staticmethod
    def _check_project(req: ApiRequest) -> None:
        project = url_project(req.request.scope)
        if project is not None and project != req.ctx.project_id:
            raise BadRequest(f"Malformed request url: URL's project_id '{project}' doesn't "
                             f"match Context's project_id '{req.ctx.project_id}'")

    def add_route(self, path: str, handler: Callable[..., Any], methods: list[str],
                  public: bool = False) -> None:
        """Serve ``handler`` at ``path`` for ``methods`` (``public``: without a token); for
        routes a module builds itself rather than declares."""
        self.service.routes.append(route(self.service, path, handler, methods, public))

    def _add_routes(self) -> None:
        add_declared(self.service, self)
        self.add_route("/healthcheck", healthcheck, ["GET", "HEAD"], public=True)
        # The resources' routes are added by ``volume.setup`` (their own modules).

    # ------------------------------------------------------------------ background work
    def later(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run the storage half of an operation in a worker thread, after the answer."""
        self.background.track(asyncio.get_running_loop().run_in_executor(None, fn, *args))

    async def delete_later(self, req: ApiRequest, begin: Callable[..., None],
                           finish: Callable[[str], None], rid: str, *flags: bool) -> Response:
        """A two-phase delete: ``begin(ctx, rid, *flags)`` now (the row turns ``deleting``),
        ``finish(rid)`` (the storage work) in a worker thread after the 202."""
        await req.run(begin, req.ctx, rid, *flags)
        self.later(finish, rid)
        return Response(status_code=202)

    # ------------------------------------------------------------------ the guests of a volume
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
        self.background.track(asyncio.ensure_future(run()))

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

    @serves("GET", "/", public=True)
    async def versions(self, req: ApiRequest) -> Response:
        return FastJSON({"versions": [self._version_doc(req.base_url)]}, status_code=300)

    @serves("GET", "/v3", public=True)
    @serves("GET", "/v3/", public=True)
    async def version(self, req: ApiRequest) -> dict[str, Any]:
        return {"versions": [self._version_doc(req.base_url)]}
